"""`soriflow images serve` (the local stand-in) and `soriflow images generate` (one picture, any engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer, groups: Any) -> None:
    """Adds the `images` command group to `soriflow`."""
    images = typer.Typer(help="Image generation engines and the local stand-in server.", no_args_is_help=True)
    app.add_typer(images, name="images")

    @images.command()
    def serve(
        host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port (0 picks a free one)")] = 8089,
        api_key: Annotated[
            str | None, typer.Option(help="Bearer key OpenAI clients must send (default: any)")
        ] = None,
        block: Annotated[
            list[str] | None,
            typer.Option(help="A word that makes a prompt violate the 'content policy' (repeatable)"),
        ] = None,
    ) -> None:
        """Serve OpenAI's Images API and Bedrock's InvokeModel locally, drawing the prompt as a PNG.

        A stand-in for the local stack and tests, not a model: the picture shows the prompt.
        """
        from soriflow.gateway.images.local import serve as run
        from soriflow.stack import bind_to_parent

        bind_to_parent()  # started by `soriflow up`: go when it goes, even if it is killed outright
        run(host, port, api_key=api_key, blocked=tuple(block or ()))

    @images.command()
    def generate(
        prompt: Annotated[str, typer.Argument(help="What to draw")],
        output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write")] = Path("image.png"),
        size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT (default: SORIFLOW_IMAGE_SIZE)")] = None,
        engine: Annotated[
            str | None, typer.Option(help="openai or bedrock (default: SORIFLOW_IMAGE_ENGINE)")
        ] = None,
        negative: Annotated[str, typer.Option(help="What the picture should not show")] = "",
        seed: Annotated[int | None, typer.Option(help="Seed, where the model takes one")] = None,
    ) -> None:
        """Make one picture with the configured engine (SORIFLOW_IMAGE_*), as the image stage would."""
        from soriflow.errors import SoriflowError
        from soriflow.gateway.images import ImageRequest, create_engine, parse_size
        from soriflow.gateway.images.settings import ImageSettings

        overrides: dict[str, Any] = {"image_engine": engine} if engine else {}
        settings = ImageSettings(**overrides)
        try:
            width, height = parse_size(size or settings.image_size)
            image_engine = create_engine(settings)
            try:
                image = image_engine.generate(
                    ImageRequest(prompt, width, height, negative_prompt=negative, seed=seed)
                )
            finally:
                image_engine.close()
        except SoriflowError as exc:
            err.print(f"[red]error ({exc.code.name}):[/red] {exc.message}")
            raise typer.Exit(1) from exc
        output.write_bytes(image.png)
        revised = f"; revised prompt: {image.revised_prompt}" if image.revised_prompt else ""
        err.print(f"{output}: {image.width}x{image.height} PNG from {image.engine} {image.model}{revised}")
