"""`soriflow synthesize` and `soriflow voices`: speak text to a file, list voices.

With `--server ADDR` the running TTS service does the work (`Synthesize`,
`ListVoices`); without it the engines run in this process with the same
settings (`SORIFLOW_TTS_*`), which is handy on a laptop and in scripts.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from soriflow.v1 import tts_pb2

ENCODINGS = {
    "linear16": "LINEAR16",
    "wav": "LINEAR16",
    "mulaw": "MULAW",
    "alaw": "ALAW",
    "mp3": "MP3",
    "ogg-opus": "OGG_OPUS",
    "opus": "OGG_OPUS",
}


def _fail(message: str) -> typer.Exit:
    from soriflow.cli.main import console

    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _rpc_message(exc: Exception) -> str:
    code = exc.code().name if hasattr(exc, "code") else type(exc).__name__
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{code}: {details}"


def build_request(
    text: str,
    *,
    ssml: bool,
    engine: str,
    voice: str,
    language: str,
    encoding: str,
    sample_rate: int,
    rate: float,
    pitch: float,
    volume: float,
    no_lexicon: bool,
) -> tts_pb2.SynthesizeRequest:
    """The SynthesizeRequest for the command's options (SSML when asked or when the text is SSML)."""
    from soriflow.tts.ssml import looks_like_ssml
    from soriflow.v1 import audio_pb2, tts_pb2

    key = encoding.strip().lower().replace("_", "-")
    if key not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; use linear16, mulaw, alaw, mp3 or ogg-opus")
    request = tts_pb2.SynthesizeRequest(
        voice=tts_pb2.VoiceSelection(name=voice, language_code=language, engine=engine),
        audio_config=tts_pb2.AudioOutputConfig(
            encoding=audio_pb2.AudioEncoding.Value(f"AUDIO_ENCODING_{ENCODINGS[key]}"),
            sample_rate_hz=sample_rate,
            speaking_rate=rate,
            pitch_semitones=pitch,
            volume_gain_db=volume,
        ),
        disable_lexicon=no_lexicon,
    )
    if ssml or looks_like_ssml(text):
        request.ssml = text
    else:
        request.text = text
    return request


async def _remote_synthesize(
    address: str, request: tts_pb2.SynthesizeRequest, timeout: float
) -> tts_pb2.SynthesizeResponse:
    from soriflow.client import open_channel
    from soriflow.config import CommonSettings
    from soriflow.v1 import tts_pb2_grpc

    async with open_channel(address, CommonSettings()) as channel:
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
        response: tts_pb2.SynthesizeResponse = await stub.Synthesize(request, timeout=timeout)
        return response


async def _remote_voices(address: str, language: str, engine: str, timeout: float) -> list[Any]:
    from soriflow.client import open_channel
    from soriflow.config import CommonSettings
    from soriflow.v1 import tts_pb2, tts_pb2_grpc

    async with open_channel(address, CommonSettings()) as channel:
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
        response = await stub.ListVoices(
            tts_pb2.ListVoicesRequest(language_code=language, engine=engine), timeout=timeout
        )
        return list(response.voices)


def _local_synthesizer(engine: str) -> Any:
    from soriflow.tts.settings import Settings
    from soriflow.tts.synthesizer import Synthesizer

    settings = Settings()
    synthesizer = Synthesizer(settings)
    synthesizer.load([engine.strip().lower()] if engine.strip() else None)
    return synthesizer


def register(app: typer.Typer, groups: Any) -> None:
    """Adds `synthesize` and `voices` to the `soriflow` command."""

    @app.command()
    def synthesize(
        text: Annotated[str | None, typer.Argument(help="Text (or SSML) to speak; omit with -f")] = None,
        output: Annotated[
            Path, typer.Option("-o", "--output", help="Audio file to write ('-': stdout)")
        ] = Path("out.wav"),
        file: Annotated[
            Path | None, typer.Option("-f", "--file", help="Read the text from this file")
        ] = None,
        engine: Annotated[
            str, typer.Option(help="espeak-ng, piper, google or polly (default: the server's)")
        ] = "",
        voice: Annotated[str, typer.Option(help="Voice name (see `soriflow voices`)")] = "",
        language: Annotated[str, typer.Option(help="Language, e.g. en-US, ko-KR")] = "",
        encoding: Annotated[
            str, typer.Option(help="linear16, mulaw (8 kHz Amazon Connect WAV), alaw, mp3, ogg-opus")
        ] = "linear16",
        sample_rate: Annotated[int, typer.Option(help="Output rate in Hz (0: the format's default)")] = 0,
        rate: Annotated[float, typer.Option(help="Speaking rate 0.25-4 (1: natural)")] = 1.0,
        pitch: Annotated[float, typer.Option(help="Pitch shift in semitones, -20 to 20")] = 0.0,
        volume: Annotated[float, typer.Option(help="Volume gain in dB, -96 to 16")] = 0.0,
        ssml: Annotated[
            bool, typer.Option(help="Treat the text as SSML (automatic for '<speak>...')")
        ] = False,
        no_lexicon: Annotated[bool, typer.Option(help="Skip the pronunciation lexicon")] = False,
        server: Annotated[
            str | None, typer.Option(help="Address of a running TTS service (host:port)")
        ] = None,
        timeout: Annotated[float, typer.Option(help="Deadline with --server, in seconds")] = 300.0,
    ) -> None:
        """Speak TEXT (or the file's text) into an audio file."""
        from soriflow.errors import SoriflowError

        if (text is None) == (file is None):
            raise _fail("give the text as an argument or with -f FILE (one of them)")
        try:
            source = file.read_text(encoding="utf-8") if file is not None else str(text)
        except OSError as exc:
            raise _fail(f"cannot read {file}: {exc.strerror}") from None
        try:
            request = build_request(
                source,
                ssml=ssml,
                engine=engine,
                voice=voice,
                language=language,
                encoding=encoding,
                sample_rate=sample_rate,
                rate=rate,
                pitch=pitch,
                volume=volume,
                no_lexicon=no_lexicon,
            )
        except ValueError as exc:
            raise _fail(str(exc)) from None
        try:
            if server:
                response = asyncio.run(_remote_synthesize(server, request, timeout))
            else:
                response = _local_synthesizer(engine).synthesize(request)
        except SoriflowError as exc:
            raise _fail(exc.message) from None
        except Exception as exc:  # grpc errors from --server: unreachable, status codes
            if not hasattr(exc, "code"):
                raise
            raise _fail(_rpc_message(exc)) from None
        if str(output) == "-":
            sys.stdout.buffer.write(response.audio_content)
            sys.stdout.buffer.flush()
        else:
            output.write_bytes(response.audio_content)
        print(
            f"{output}: {response.duration_ms / 1000:.2f} s, {response.mime_type}, "
            f"{response.sample_rate_hz} Hz, voice {response.voice} ({response.engine}), "
            f"{response.sentence_count} sentence(s)",
            file=sys.stderr,
        )

    @app.command()
    def voices(
        language: Annotated[str, typer.Option(help="Only voices for this language (en, ko-KR, ...)")] = "",
        engine: Annotated[str, typer.Option(help="Only this engine's voices")] = "",
        server: Annotated[
            str | None, typer.Option(help="Address of a running TTS service (host:port)")
        ] = None,
        timeout: Annotated[float, typer.Option(help="Deadline with --server, in seconds")] = 30.0,
    ) -> None:
        """List the text-to-speech voices."""
        from soriflow.errors import SoriflowError
        from soriflow.tts.service import voice_to_proto
        from soriflow.v1 import tts_pb2

        try:
            if server:
                found = asyncio.run(_remote_voices(server, language, engine, timeout))
            else:
                found = [voice_to_proto(v) for v in _local_synthesizer(engine).voices(language, engine)]
        except SoriflowError as exc:
            raise _fail(exc.message) from None
        except Exception as exc:
            if not hasattr(exc, "code"):
                raise
            raise _fail(_rpc_message(exc)) from None
        for v in found:
            gender = tts_pb2.VoiceGender.Name(v.gender).removeprefix("VOICE_GENDER_").lower()
            print(
                f"{v.engine:10} {v.name:24} {','.join(v.language_codes):14} {gender:12} "
                f"{v.natural_sample_rate_hz} Hz{'  ssml' if v.supports_ssml else ''}"
            )
