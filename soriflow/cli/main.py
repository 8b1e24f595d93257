"""`soriflow`: run services, talk to them, and run the local stack.

The core commands live here; each service adds its own (`transcribe`,
`synthesize`, `score`, `summarize`, `submit`, ...) from its `cli.py`, so this
module only wires them in. Heavy imports happen inside command bodies.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import grpc
import typer
from rich.console import Console

import soriflow
from soriflow.errors import SoriflowError

console = Console(stderr=True, soft_wrap=True)

#: `soriflow serve`'s exit code when a service it needs stays unreachable (sysexits' EX_UNAVAILABLE).
EXIT_UNAVAILABLE = 69

app = typer.Typer(
    name="soriflow",
    help="Soriflow: self-hosted speech AI pipeline (STT, scoring, summaries, TTS) over gRPC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dataclass(frozen=True)
class Groups:
    """Command groups that several services add to."""

    models: typer.Typer
    eval: typer.Typer
    train: typer.Typer
    config: typer.Typer


groups = Groups(
    models=typer.Typer(help="Resolve, pull and convert models.", no_args_is_help=True),
    eval=typer.Typer(help="Evaluate models on data sets.", no_args_is_help=True),
    train=typer.Typer(help="Fine-tune models.", no_args_is_help=True),
    config=typer.Typer(help="Show and document settings.", no_args_is_help=True),
)
app.add_typer(groups.models, name="models")
app.add_typer(groups.eval, name="eval")
app.add_typer(groups.train, name="train")
app.add_typer(groups.config, name="config")


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the Soriflow version."""
    print(soriflow.__version__)


@app.command()
def health(
    address: Annotated[str, typer.Argument(help="host:port of a Soriflow service")],
    service: Annotated[str, typer.Option(help="Proto service name; empty checks the whole server")] = "",
    wait: Annotated[float, typer.Option(help="Keep polling up to this many seconds until SERVING")] = 0.0,
    timeout: Annotated[float, typer.Option(help="Timeout of one check, in seconds")] = 5.0,
) -> None:
    """Check a service's gRPC health; exit 0 only when it is SERVING."""
    from soriflow.client import check_health, open_channel, wait_for_serving

    async def run() -> str:
        if wait > 0:
            await wait_for_serving(address, service=service, timeout=wait)
            return "SERVING"
        async with open_channel(address) as channel:
            return await check_health(channel, service, timeout=timeout)

    try:
        status = asyncio.run(run())
    except TimeoutError as exc:
        fail(str(exc))
    except Exception as exc:  # grpc errors: unreachable, TLS mismatch, ...
        details = exc.details() if hasattr(exc, "details") else str(exc)
        fail(f"{address}: {details}")
    print(f"{address} {service or '(server)'}: {status}")
    if status != "SERVING":
        raise typer.Exit(1)


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="gateway, stt, scoring, summarizer, tts or live")],
    port: Annotated[int | None, typer.Option(help="gRPC port (overrides SORIFLOW_PORT)")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (overrides SORIFLOW_HOST)")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port (overrides SORIFLOW_METRICS_PORT)")
    ] = None,
) -> None:
    """Run one service until SIGTERM; health is NOT_SERVING until its models are loaded."""
    from soriflow.logs import configure_logging
    from soriflow.registry import get_service
    from soriflow.stack import bind_to_parent

    bind_to_parent()
    try:
        entry = get_service(service)
        overrides = {
            k: v
            for k, v in {"port": port, "host": host, "metrics_port": metrics_port}.items()
            if v is not None
        }
        settings = entry.load_settings(**overrides)
    except SoriflowError as exc:
        fail(exc.message)
    configure_logging(settings.log_level, settings.log_format, service=entry.name)
    try:
        code = asyncio.run(entry.run(settings))
    except SoriflowError as exc:
        # What stops a service from starting (a database that stays unreachable, a bad pipeline
        # file) is one log record in the service's format, then an exit code; not a traceback.
        logging.getLogger(f"soriflow.{entry.name}").critical(
            "%s cannot start: %s", entry.name, exc.message, extra={"code": exc.code.name}
        )
        raise typer.Exit(EXIT_UNAVAILABLE if exc.code is grpc.StatusCode.UNAVAILABLE else 1) from None
    raise typer.Exit(code)


@groups.config.command("docs")
def config_docs(
    check: Annotated[Path | None, typer.Option(help="Compare with this file instead of printing")] = None,
) -> None:
    """Print docs/configuration.md, generated from the settings classes."""
    from soriflow.configdoc import render

    text = render()
    if check is None:
        sys.stdout.write(text)
        return
    if not check.exists() or check.read_text() != text:
        fail(f"{check} is stale: run `soriflow config docs > {check}`")
    print(f"{check} is current")


@groups.config.command("show")
def config_show(service: Annotated[str, typer.Argument(help="Service whose settings to show")]) -> None:
    """Print the effective settings of a service (secrets masked) as JSON."""
    from soriflow.registry import get_service

    try:
        settings = get_service(service).load_settings()
    except SoriflowError as exc:
        fail(exc.message)
    print(settings.model_dump_json(indent=2))


@groups.models.command("resolve")
def models_resolve(
    spec: Annotated[list[str], typer.Argument(help="Model specs (pkg:, s3://, path)")],
) -> None:
    """Print the local directory of each model spec, copying s3:// models into the cache."""
    from soriflow.models import resolve_model

    try:
        for one in spec:
            print(resolve_model(one).path)
    except SoriflowError as exc:
        fail(exc.message)


@groups.models.command("pull")
def models_pull(
    spec: Annotated[list[str], typer.Argument(help="Model specs to fetch into the cache")],
) -> None:
    """Fetch models into SORIFLOW_CACHE_DIR once (the Helm init container runs this)."""
    models_resolve(spec)


def _register_service_commands() -> None:
    from soriflow.registry import SERVICES

    # Each service's own commands, found through the registry (the runtime imports no service).
    for name in [*(entry.cli_module for entry in SERVICES.values()), "soriflow.cli.local"]:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that part is not built (yet): its commands are simply absent
            raise
        module.register(app, groups)


_register_service_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
