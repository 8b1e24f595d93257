"""`soriflow score`: pronunciation assessment from the command line.

Without `--server` the scorer runs in this process and asks the STT service
at `--stt` (default SORIFLOW_STT_ADDRESS) for word timestamps; when nothing
answers there and the STT package is installed, a speech recogniser is
started inside this process instead, so the command works on its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from soriflow.scoring.settings import Settings
    from soriflow.v1 import scoring_pb2

console = Console(stderr=True, soft_wrap=True)  # error messages stay whole lines (grep-able)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def build_request(
    audio: Path,
    reference_audio: Path | None,
    reference_text: str | None,
    language: str,
    feedback_language: str,
) -> scoring_pb2.ScoreRequest:
    """A ScoreRequest with the files inline."""
    from soriflow.v1 import audio_pb2, scoring_pb2

    for path in (audio, reference_audio):
        if path is not None and not path.is_file():
            _fail(f"{path} does not exist or is not a file")
    request = scoring_pb2.ScoreRequest(
        audio=audio_pb2.AudioInput(content=audio.read_bytes()),
        reference_text=reference_text or "",
        language_code=language,
        feedback_language_code=feedback_language,
    )
    if reference_audio is not None:
        request.reference_audio.CopyFrom(audio_pb2.AudioInput(content=reference_audio.read_bytes()))
    return request


async def _score_remote(
    request: scoring_pb2.ScoreRequest, server: str, timeout: float
) -> scoring_pb2.ScoreResponse:
    import grpc

    from soriflow.client import open_channel
    from soriflow.errors import from_rpc_error
    from soriflow.v1 import scoring_pb2_grpc

    async with open_channel(server) as channel:
        try:
            response: scoring_pb2.ScoreResponse = await scoring_pb2_grpc.PronunciationScoringServiceStub(
                channel
            ).Score(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, service=f"scoring at {server}") from exc
    return response


async def _score_local(
    request: scoring_pb2.ScoreRequest, settings: Settings, stt_address: str
) -> scoring_pb2.ScoreResponse:
    from soriflow.client import wait_for_serving
    from soriflow.scoring.pipeline import score_request
    from soriflow.scoring.scorer import Scorer
    from soriflow.scoring.stt_client import SttClient

    scorer = Scorer(settings)
    await asyncio.to_thread(scorer.load)
    try:
        await wait_for_serving(stt_address, settings, timeout=1.0, interval=0.2)
    except (TimeoutError, OSError):
        return await _score_with_local_stt(request, settings, scorer, stt_address)
    client = SttClient(stt_address, settings, timeout_s=settings.scoring_stt_timeout_s)
    try:
        response: scoring_pb2.ScoreResponse = await score_request(
            request, scorer=scorer, stt=client, settings=settings
        )
        return response
    finally:
        await client.close()


async def _score_with_local_stt(
    request: scoring_pb2.ScoreRequest, settings: Settings, scorer: Any, stt_address: str
) -> scoring_pb2.ScoreResponse:
    from soriflow.errors import SoriflowError
    from soriflow.registry import get_service
    from soriflow.scoring.pipeline import score_request
    from soriflow.scoring.stt_client import SttClient
    from soriflow.server import running

    try:
        entry = get_service("stt")
        stt_settings = entry.load_settings(host="127.0.0.1", port=0, metrics_port=None)
        service = entry.create(stt_settings)
    except SoriflowError as exc:
        raise SoriflowError(
            f"no STT service answers at {stt_address} and none can run here: {exc.message}"
        ) from exc
    console.print(
        f"[yellow]no STT service at {stt_address}: running speech recognition in this process[/yellow]"
    )
    async with running(service) as server:
        client = SttClient(server.address, settings, timeout_s=settings.scoring_stt_timeout_s)
        try:
            response: scoring_pb2.ScoreResponse = await score_request(
                request, scorer=scorer, stt=client, settings=settings
            )
            return response
        finally:
            await client.close()


def print_table(response: scoring_pb2.ScoreResponse) -> None:
    """Scores, words, timing and feedback as readable tables on stdout."""
    from soriflow.scoring.report import print_score

    print_score(response, Console())


def register(app: typer.Typer, groups: Any = None) -> None:
    """Adds `soriflow score`."""

    @app.command("score")
    def score(
        audio: Annotated[Path, typer.Option("--audio", help="The learner's recording")],
        reference_audio: Annotated[
            Path | None, typer.Option("--reference-audio", help="A native recording of the sentence")
        ] = None,
        reference_text: Annotated[str | None, typer.Option("--reference-text", help="The sentence")] = None,
        language: Annotated[str, typer.Option(help="Language of the speech (ISO 639-1)")] = "en",
        feedback_language: Annotated[str, typer.Option(help="Language of the feedback: en or ko")] = "en",
        json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
        plot: Annotated[Path | None, typer.Option(help="Write both pitch contours to this PNG")] = None,
        server: Annotated[str | None, typer.Option(help="Score on the scoring service at host:port")] = None,
        stt: Annotated[
            str | None, typer.Option(help="STT service for in-process scoring (host:port)")
        ] = None,
        timeout: Annotated[float, typer.Option(help="Seconds to wait for the result")] = 300.0,
    ) -> None:
        """Score a learner's reading of a sentence against reference audio and/or text."""
        from soriflow.errors import SoriflowError
        from soriflow.scoring.messages import to_json
        from soriflow.scoring.settings import Settings

        if reference_audio is None and not (reference_text or "").strip():
            _fail("give --reference-audio, --reference-text, or both")
        request = build_request(audio, reference_audio, reference_text, language, feedback_language)
        try:
            if server:
                response = asyncio.run(_score_remote(request, server, timeout))
            else:
                settings = Settings()
                response = asyncio.run(
                    asyncio.wait_for(_score_local(request, settings, stt or settings.stt_address), timeout)
                )
        except SoriflowError as exc:
            _fail(exc.message)
        except TimeoutError:
            _fail(f"no result within {timeout:g} s (--timeout)")
        if json_output:
            sys.stdout.write(json.dumps(to_json(response), ensure_ascii=False, indent=2) + "\n")
        else:
            print_table(response)
        if plot is not None:
            from soriflow.scoring.plot import plot_contours

            plot_contours(response, plot)
            console.print(f"pitch contours written to {plot}")
