"""`soriflow transcribe` and `soriflow models convert`.

`transcribe` runs the engine in-process unless `--server` names a running
service; `--stream` sends the file at real-time pace through
StreamingRecognize (to `--server`, or to a service started in-process on
loopback) and shows interim hypotheses as they change. Heavy imports happen
inside the commands so `soriflow --help` stays fast.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from soriflow.cli.main import Groups
    from soriflow.stt.engines.base import Transcript
    from soriflow.stt.settings import Settings
    from soriflow.v1 import stt_pb2

#: Audio per streamed message, in seconds (sent every 0.1 s at real-time pace).
_STREAM_CHUNK_S = 0.1


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _config(
    language: str,
    task: str,
    channels: str,
    labels: str,
    beam_size: int,
    prompt: str,
    hotwords: list[str],
    vad: bool | None,
) -> stt_pb2.RecognitionConfig:
    from soriflow.v1 import stt_pb2

    config = stt_pb2.RecognitionConfig(
        language_code=language,
        task=stt_pb2.RECOGNITION_TASK_TRANSLATE
        if task == "translate"
        else stt_pb2.RECOGNITION_TASK_TRANSCRIBE,
        enable_word_time_offsets=True,
        beam_size=beam_size,
        initial_prompt=prompt,
        hotwords=hotwords,
        channel_mode=stt_pb2.CHANNEL_MODE_SEPARATE if channels == "separate" else stt_pb2.CHANNEL_MODE_MIX,
        channel_labels=[label.strip() for label in labels.split(",") if label.strip()],
    )
    if vad is not None:
        config.vad_filter = vad
    return config


def _local_settings(model: str | None, engine: str | None) -> Settings:
    from soriflow.stt.settings import Settings

    overrides: dict[str, Any] = {}
    if model:
        overrides["stt_model"] = model
    if engine:
        overrides["stt_engine"] = engine
    return Settings(**overrides)


def _recognize_local(
    data: bytes, config: stt_pb2.RecognitionConfig, settings: Settings
) -> tuple[Transcript, int]:
    from soriflow.audio import AudioLimits, decode_audio
    from soriflow.stt.channels import transcribe_channels
    from soriflow.stt.engines import load_engine
    from soriflow.stt.messages import options_from_config
    from soriflow.v1 import stt_pb2

    engine = load_engine(settings)
    started = time.perf_counter()
    options = options_from_config(
        config, engine.info, default_beam_size=settings.stt_beam_size, default_vad=settings.stt_vad_filter
    )
    separate = config.channel_mode == stt_pb2.CHANNEL_MODE_SEPARATE
    audio = decode_audio(data, mono=not separate, limits=AudioLimits.from_settings(settings))
    if separate:
        transcript = transcribe_channels(engine, audio, options, list(config.channel_labels))
    else:
        transcript = engine.transcribe(audio, options)
    return transcript, round((time.perf_counter() - started) * 1000)


async def _recognize_remote(
    address: str, data: bytes, config: stt_pb2.RecognitionConfig, timeout: float
) -> tuple[Transcript, int, str]:
    from soriflow.client import open_channel
    from soriflow.stt.messages import transcript_from_proto
    from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

    async with open_channel(address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        response = await stub.Recognize(
            stt_pb2.RecognizeRequest(audio=audio_pb2.AudioInput(content=data), config=config), timeout=timeout
        )
    return transcript_from_proto(response.transcript), response.processing_time_ms, response.model


async def stream_file(
    address: str, data: bytes, config: stt_pb2.RecognitionConfig, *, pace: float = 1.0, interim: bool = True
) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
    """Streams a file's audio as 16 kHz LINEAR16 at `pace` x real time; yields the server's responses."""
    from soriflow.audio import decode_audio
    from soriflow.client import open_channel
    from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc

    audio = decode_audio(data)
    pcm = (audio.samples.clip(-1, 1) * 32767).astype("<i2").tobytes()
    step = int(_STREAM_CHUNK_S * audio.sample_rate) * 2
    stream_config = stt_pb2.StreamingRecognitionConfig(
        config=config,
        encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hz=audio.sample_rate,
        interim_results=interim,
    )

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(streaming_config=stream_config)
        started = time.perf_counter()
        for i, offset in enumerate(range(0, len(pcm), step)):
            if pace > 0:
                delay = started + i * _STREAM_CHUNK_S / pace - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            yield stt_pb2.StreamingRecognizeRequest(audio_content=pcm[offset : offset + step])

    async with open_channel(address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        async for response in stub.StreamingRecognize(requests()):
            yield response


async def _model_name(address: str) -> str:
    """The model a server runs, as ListModels says."""
    from soriflow.client import open_channel
    from soriflow.v1 import stt_pb2, stt_pb2_grpc

    async with open_channel(address) as channel:
        response = await stt_pb2_grpc.SpeechToTextServiceStub(channel).ListModels(
            stt_pb2.ListModelsRequest(), timeout=30
        )
    return response.models[0].name if response.models else ""


async def _stream(
    address: str | None, data: bytes, config: stt_pb2.RecognitionConfig, settings: Settings, fmt: str
) -> None:
    """Streams the file; prints interims on stderr, finals on stdout (text) or the whole
    transcript at the end (json/srt/vtt) with what the stream gave: each final's words with
    their channel and speaker, the language and its probability, the audio the server
    processed, the model, and the stream's wall time as `processing_time_ms`."""
    from soriflow.stt.engines.base import Segment, Transcript, Word

    segments: list[Segment] = []
    language = ""
    language_probability = 0.0
    processed_ms = 0
    model_name = ""
    tty = sys.stderr.isatty()

    async def consume(target: str) -> None:
        nonlocal language, language_probability, processed_ms, model_name
        shown = ""
        model_name = await _model_name(target)
        async for response in stream_file(target, data, config):
            processed_ms = max(processed_ms, response.audio_processed_ms)
            for result in response.results:
                if result.language_code:
                    language, language_probability = result.language_code, result.language_probability
                if not result.is_final:
                    if result.text != shown:
                        shown = result.text
                        line = f"… {result.text}"
                        sys.stderr.write(f"\r\033[K{line}" if tty else line + "\n")
                        sys.stderr.flush()
                    continue
                if tty:
                    sys.stderr.write("\r\033[K")
                shown = ""
                words = tuple(
                    Word(w.word, w.start_ms / 1000, w.end_ms / 1000, w.confidence, w.channel, w.speaker)
                    for w in result.words
                )
                segments.append(
                    Segment(
                        id=len(segments),
                        start=result.start_ms / 1000,
                        end=result.end_ms / 1000,
                        text=result.text,
                        words=words,
                        channel=words[0].channel if words else 0,
                        speaker=words[0].speaker if words else "",
                    )
                )
                if fmt == "text":
                    print(result.text, flush=True)

    started = time.perf_counter()
    if address:
        await consume(address)
    else:
        from soriflow.server import running
        from soriflow.stt.service import create_service

        local = settings.model_copy(update={"host": "127.0.0.1", "port": 0, "metrics_port": None})
        async with running(create_service(local)) as server:
            started = time.perf_counter()  # the model load is not the stream's
            await consume(server.address)
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    if fmt != "text":
        from soriflow.stt.messages import transcript_to_proto
        from soriflow.transcript import render

        duration = max(processed_ms / 1000, segments[-1].end if segments else 0.0)
        transcript = Transcript(tuple(segments), language, language_probability, duration)
        sys.stdout.write(
            render(
                transcript_to_proto(transcript),
                fmt,  # type: ignore[arg-type]
                model=model_name,
                processing_time_ms=elapsed_ms,
            )
        )


def eval_stt(
    data: Annotated[Path, typer.Argument(help="CSV with audio,text columns (audio paths relative to it)")],
    language: Annotated[
        str, typer.Option(help="Language of every clip (ko is scored by CER); empty detects it per clip")
    ] = "",
    server: Annotated[str | None, typer.Option(help="Evaluate a running STT service (host:port)")] = None,
    model: Annotated[str | None, typer.Option(help="In-process model (default SORIFLOW_STT_MODEL)")] = None,
    beam_size: Annotated[int, typer.Option(help="Beam size (0: the default)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object")] = False,
) -> None:
    """Corpus WER (CER for Korean, Japanese, Chinese, Thai) of transcripts against references.

    Korean is scored by characters because its spacing is loose and a word carries its particles:
    a whitespace WER would count 자동차보험 vs 자동차 보험 as wrong.
    """
    import json
    import os

    import grpc

    from soriflow.errors import SoriflowError
    from soriflow.stt.evaluation import corpus_error_rate, read_manifest

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        rows = read_manifest(data)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    config = _config(language, "transcribe", "mix", "", beam_size, "", [], None)
    hypotheses: list[str] = []
    languages: list[str] = []
    started = time.perf_counter()
    try:
        settings = _local_settings(model, None)
        for audio, _ in rows:
            if server:
                transcript, _, _ = asyncio.run(_recognize_remote(server, audio.read_bytes(), config, 600))
            else:
                transcript, _ = _recognize_local(audio.read_bytes(), config, settings)
            hypotheses.append(transcript.text)
            languages.append(transcript.language)
    except SoriflowError as exc:
        raise _fail(exc.message) from None
    except grpc.RpcError as exc:
        raise _fail(f"{server}: {exc.code().name}: {exc.details()}") from None  # type: ignore[attr-defined]
    scored_as = language or max(set(languages), key=languages.count)
    metric, value = corpus_error_rate([t for _, t in rows], hypotheses, scored_as)
    per_clip = [
        {"audio": str(a), "reference": r, "hypothesis": h, "language": lang}
        for (a, r), h, lang in zip(rows, hypotheses, languages, strict=True)
    ]
    report = {
        "clips": len(rows),
        "language": scored_as,
        "metric": metric,
        metric: round(value, 4),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": per_clip,
    }
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
        return
    for row in per_clip:
        typer.echo(f"{row['audio']}\n  ref: {row['reference']}\n  hyp: {row['hypothesis']}")
    typer.echo(f"{metric.upper()} {value:.3f} over {len(rows)} clips ({scored_as})")


def register(app: typer.Typer, groups: Groups) -> None:
    """Adds `transcribe`, `eval stt` and `models convert` to the `soriflow` CLI."""
    groups.eval.command("stt")(eval_stt)

    @app.command()
    def transcribe(
        file: Annotated[Path, typer.Argument(help="Audio file (WAV, FLAC, MP3, Ogg/WebM Opus, ...)")],
        server: Annotated[
            str | None, typer.Option("--server", help="host:port of a running STT service")
        ] = None,
        language: Annotated[str, typer.Option("--language", help="Language code; empty detects it")] = "",
        fmt: Annotated[str, typer.Option("--format", help="text, json, srt or vtt")] = "text",
        as_json: Annotated[bool, typer.Option("--json", help="Same as --format json")] = False,
        stream: Annotated[
            bool, typer.Option("--stream", help="Stream at real-time pace, showing interims")
        ] = False,
        task: Annotated[str, typer.Option(help="transcribe or translate (to English)")] = "transcribe",
        channels: Annotated[str, typer.Option(help="mix, or separate: one speaker per channel")] = "mix",
        labels: Annotated[str, typer.Option(help="Speaker labels per channel, e.g. agent,customer")] = "",
        beam_size: Annotated[int, typer.Option(help="Beam size (0: server default)")] = 0,
        prompt: Annotated[str, typer.Option(help="Initial prompt (style, vocabulary)")] = "",
        hotword: Annotated[list[str] | None, typer.Option(help="A word to favour (repeatable)")] = None,
        vad: Annotated[
            bool | None, typer.Option("--vad/--no-vad", help="Skip non-speech (default on)")
        ] = None,
        model: Annotated[
            str | None, typer.Option(help="In-process model (default SORIFLOW_STT_MODEL)")
        ] = None,
        engine: Annotated[
            str | None, typer.Option(help="In-process engine: faster-whisper/openai-whisper")
        ] = None,
        timeout: Annotated[float, typer.Option(help="Deadline of the Recognize call, seconds")] = 600.0,
    ) -> None:
        """Transcribe an audio file: text, JSON with words, or SRT/VTT subtitles."""
        import os

        import grpc

        from soriflow.errors import SoriflowError
        from soriflow.stt.messages import transcript_to_proto
        from soriflow.transcript import FORMATS, render

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        fmt = "json" if as_json else fmt
        if fmt not in FORMATS:
            raise _fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        if task not in ("transcribe", "translate"):
            raise _fail("--task must be transcribe or translate")
        if channels not in ("mix", "separate"):
            raise _fail("--channels must be mix or separate")
        if not file.is_file():
            raise _fail(f"{file} does not exist")
        data = file.read_bytes()
        config = _config(language, task, channels, labels, beam_size, prompt, hotword or [], vad)
        try:
            settings = _local_settings(model, engine)
            if stream:
                asyncio.run(_stream(server, data, config, settings, fmt))
                return
            if server:
                transcript, elapsed, model_name = asyncio.run(
                    _recognize_remote(server, data, config, timeout)
                )
            else:
                transcript, elapsed = _recognize_local(data, config, settings)
                model_name = settings.stt_model
        except SoriflowError as exc:
            raise _fail(exc.message) from None
        except grpc.RpcError as exc:  # the server's status and message are for people
            code = exc.code().name if hasattr(exc, "code") else "ERROR"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise _fail(f"{server}: {code}: {details}") from None
        # One renderer for every caller (soriflow.transcript), so these subtitles are the gateway's.
        sys.stdout.write(
            render(
                transcript_to_proto(transcript),
                fmt,  # type: ignore[arg-type]
                model=model_name,
                processing_time_ms=elapsed,
            )
        )

    @groups.models.command("convert")
    def convert(
        src: Annotated[
            str, typer.Argument(help="CTranslate2 Whisper model: directory, model.bin, or a name/spec")
        ],
        out: Annotated[Path, typer.Argument(help="Output openai-whisper checkpoint (.pt)")],
    ) -> None:
        """Convert a CTranslate2 Whisper model to an openai-whisper checkpoint (dims + state dict)."""
        import json

        from soriflow.errors import SoriflowError
        from soriflow.stt.convert import convert_ct2_to_openai

        try:
            path = Path(src)
            if not path.exists():
                from soriflow.stt.models import locate_model

                path = locate_model(src).path
            summary = convert_ct2_to_openai(path, out)
        except SoriflowError as exc:
            raise _fail(exc.message) from None
        typer.echo(json.dumps(summary))
