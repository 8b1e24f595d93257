"""`soriflow summarize`, `soriflow eval summarize` and `soriflow train summarizer`.

Without `--server` the engines run in this process with the same settings
(`SORIFLOW_SUMMARIZER_*`) and the same pipeline as the service; with it the
command calls a running service. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from soriflow.errors import SoriflowError

if TYPE_CHECKING:
    from soriflow.v1 import audio_pb2

    from .pipeline import SummaryRequest, SummaryResult

STYLES = ("inquiry", "bullets", "abstract", "custom")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _read_input(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        _fail(f"{source} does not exist")
    raw = path.read_bytes()
    from .evaluation.data import decode_bytes

    return decode_bytes(raw)[0]


def transcript_from_json(text: str) -> audio_pb2.Transcript | None:
    """A Transcript from `soriflow transcribe --json` output, or None when `text` is not that."""
    from soriflow.v1 import audio_pb2

    stripped = text.lstrip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not ({"segments", "text"} & data.keys()):
        return None
    transcript = audio_pb2.Transcript(
        text=str(data.get("text", "")),
        language_code=str(data.get("language", data.get("language_code", ""))),
        channel_count=int(data.get("channel_count", 1) or 1),
    )
    for index, segment in enumerate(data.get("segments") or []):
        transcript.segments.add(
            id=int(segment.get("id", index)),
            text=str(segment.get("text", "")),
            speaker=str(segment.get("speaker", "")),
            channel=int(segment.get("channel", 0)),
            start_ms=int(segment.get("start_ms", 0)),
            end_ms=int(segment.get("end_ms", 0)),
        )
    return transcript


def _result_dict(result: SummaryResult) -> dict[str, Any]:
    return {
        "summary": result.summary,
        "bullets": result.bullets,
        "model": result.model,
        "engine": result.engine,
        "language": result.language,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "chunk_count": result.chunk_count,
        "processing_ms": result.processing_ms,
        "grounded": result.grounding.grounded,
        "unsupported_terms": result.grounding.unsupported,
        "fallback": result.grounding.fallback.name.lower(),
        "rejected_terms": result.grounding.rejected_terms,
        "rejected_engine": result.grounding.rejected_engine,
    }


async def _summarize_local(request: SummaryRequest, stream: bool) -> SummaryResult:
    from .pipeline import Summarizer, SummaryResult
    from .settings import Settings

    settings = Settings()
    summarizer = await asyncio.to_thread(Summarizer.load, settings, _needs_model(request, settings))
    try:
        if not stream:
            return await summarizer.summarize(request)
        async for event in summarizer.stream(request):
            if isinstance(event, SummaryResult):
                sys.stdout.write("\n")
                return event
            sys.stdout.write(event)
            sys.stdout.flush()
        raise RuntimeError("the stream ended without a result")
    finally:
        await summarizer.close()


def _needs_model(request: SummaryRequest, settings: Any) -> bool:
    """Whether a local run must load the configured model: not for an inquiry the faithful engine
    writes (seconds saved); the model's grounding fallback is the faithful engine anyway."""
    from .styles import Style

    if request.engine:
        return request.engine not in ("faithful", "extractive")
    return not (request.style is Style.INQUIRY and settings.summarizer_inquiry_engine == "faithful")


async def _summarize_remote(
    address: str,
    request: SummaryRequest,
    transcript: audio_pb2.Transcript | None,
    stream: bool,
    timeout: float,
) -> SummaryResult:
    from soriflow.client import open_channel
    from soriflow.errors import from_rpc_error
    from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc

    from .messages import STYLE_VALUES, grounding_from_proto
    from .pipeline import SummaryResult

    message = summarizer_pb2.SummarizeRequest(
        language_code=request.language,
        style=STYLE_VALUES[request.style],
        prompt=request.prompt,
        max_output_tokens=request.max_output_tokens,
        engine=request.engine,
        focus_speaker=request.focus_speaker,
    )
    if transcript is not None:
        message.transcript.CopyFrom(transcript)
    else:
        message.text = request.text
    import grpc

    async with open_channel(address) as channel:
        stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)
        try:
            if not stream:
                response = await stub.Summarize(message, timeout=timeout)
            else:
                response = None
                call = stub.SummarizeStream(
                    summarizer_pb2.SummarizeStreamRequest(request=message), timeout=timeout
                )
                async for event in call:
                    if event.HasField("result"):
                        response = event.result
                        sys.stdout.write("\n")
                    else:
                        sys.stdout.write(event.text_delta)
                        sys.stdout.flush()
                if response is None:
                    raise RuntimeError("the stream ended without a result")
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, service="summarizer") from exc
    return SummaryResult(
        summary=response.summary,
        bullets=list(response.bullets),
        model=response.model,
        engine=response.engine,
        language=response.language_code,
        input_tokens=response.input_tokens,
        output_tokens=response.output_tokens,
        chunk_count=response.chunk_count,
        processing_ms=response.processing_time_ms,
        grounding=grounding_from_proto(response),
    )


def summarize(
    source: Annotated[
        str, typer.Argument(help="Text file (UTF-8 or EUC-KR), transcript JSON, or - for stdin")
    ],
    style: Annotated[str, typer.Option(help="inquiry, bullets, abstract or custom")] = "abstract",
    prompt: Annotated[str, typer.Option(help="Instruction for --style custom")] = "",
    language: Annotated[str, typer.Option(help="ISO 639-1 code; empty: detect from the script")] = "",
    engine: Annotated[
        str, typer.Option(help="seq2seq, causal-lm, extractive or faithful; empty: by style and language")
    ] = "",
    max_tokens: Annotated[int, typer.Option(help="Summary length bound in tokens (0: default)")] = 0,
    focus_speaker: Annotated[str, typer.Option(help="Transcript speaker to summarize (e.g. customer)")] = "",
    stream: Annotated[bool, typer.Option(help="Print the summary as it is generated")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    server: Annotated[
        str | None, typer.Option(help="Call this summarizer service instead of running locally")
    ] = None,
    timeout: Annotated[float, typer.Option(help="RPC deadline in seconds (with --server)")] = 600.0,
) -> None:
    """Summarize a text or an STT transcript (`soriflow transcribe --json` output)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .messages import transcript_text
    from .pipeline import SummaryRequest
    from .styles import Style

    if style not in STYLES:
        _fail(f"unknown style {style!r}: use one of {', '.join(STYLES)}")
    text = _read_input(source)
    transcript = transcript_from_json(text)
    labelled = False
    if transcript is not None:
        text, labelled = transcript_text(transcript)
        language = language or transcript.language_code
    request = SummaryRequest(
        text=text,
        transcript=labelled,
        language=language,
        style=Style(style),
        prompt=prompt,
        max_output_tokens=max_tokens,
        engine=engine,
        focus_speaker=focus_speaker,
    )
    live = stream and not as_json
    try:
        if server:
            result = asyncio.run(_summarize_remote(server, request, transcript, live, timeout))
        else:
            result = asyncio.run(_summarize_local(request, live))
    except SoriflowError as exc:
        _fail(exc.message)
    if as_json:
        print(json.dumps(_result_dict(result), ensure_ascii=False))
    elif not live:
        print(result.summary)


def eval_summarize(
    data: Annotated[Path, typer.Argument(help="CSV with input,summary columns (UTF-8 or EUC-KR)")],
    server: Annotated[str | None, typer.Option(help="Evaluate a running summarizer service")] = None,
    style: Annotated[str, typer.Option(help="inquiry, bullets or abstract")] = "inquiry",
    language: Annotated[str, typer.Option(help="ISO 639-1 code for every row; empty: detect per row")] = "",
    engine: Annotated[
        str, typer.Option(help="seq2seq, causal-lm, extractive or faithful; empty: by style and language")
    ] = "",
    max_tokens: Annotated[int, typer.Option(help="Summary length bound in tokens (0: default)")] = 0,
    limit: Annotated[int, typer.Option(help="Evaluate only the first N rows (0: all)")] = 0,
    concurrency: Annotated[int, typer.Option(help="Requests in flight (they batch together)")] = 8,
    bertscore_model: Annotated[
        str | None,
        typer.Option(help="Local HF encoder for BERTScore (default SORIFLOW_SUMMARIZER_BERTSCORE_MODEL)"),
    ] = None,
    similarity: Annotated[bool, typer.Option(help="Score sentence-embedding similarity")] = True,
    predictions: Annotated[
        Path | None, typer.Option(help="Write per-row predictions and scores to this CSV")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object")] = False,
) -> None:
    """ROUGE-1/2/L (words, characters), semantic similarity and BERTScore against reference summaries."""
    import os
    import time

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .evaluation.bertscore import BertScorer
    from .evaluation.data import read_pairs
    from .evaluation.runner import predict_local, predict_remote, timed_report
    from .evaluation.similarity import Encoders
    from .pipeline import build_summarizer
    from .settings import Settings
    from .styles import Style

    if style not in STYLES[:3]:
        _fail(f"unknown style {style!r}: use inquiry, bullets or abstract")
    try:
        settings = Settings()
        dataset = read_pairs(data)
        examples = dataset.examples[:limit] if limit > 0 else dataset.examples
        kwargs: dict[str, Any] = {
            "style": Style(style),
            "language": language,
            "engine": engine,
            "max_output_tokens": max_tokens,
            "concurrency": concurrency,
        }

        async def predict() -> Any:
            if server:
                return await predict_remote(server, examples, **kwargs)
            summarizer = await asyncio.to_thread(build_summarizer, settings)
            try:
                return await predict_local(summarizer, examples, **kwargs)
            finally:
                await summarizer.close()

        started = time.perf_counter()
        made = asyncio.run(predict())
        seconds = time.perf_counter() - started
        spec = bertscore_model or settings.summarizer_bertscore_model
        scorer = BertScorer(spec, settings) if spec else None
        encoders = Encoders(settings) if similarity else None
        report = timed_report(examples, made, seconds, encoders=encoders, bertscorer=scorer)
    except SoriflowError as exc:
        _fail(exc.message)
    report.info.update(data=str(data), encoding=dataset.encoding, style=style)
    if predictions is not None:
        import csv

        with open(predictions, "w", newline="", encoding="utf-8") as handle:
            fields = list(report.examples[0].keys()) if report.examples else []
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(report.examples)
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    print(f"{report.count} rows from {data} ({dataset.encoding}); models: {', '.join(report.info['models'])}")
    print(f"summarized in {report.info['summarize_seconds']}s")
    for key, value in report.metrics.items():
        print(f"  {key:<45} {value:.4f}")
    for note in report.notes:
        print(f"note: {note}")


def train_summarizer(
    data: Annotated[Path, typer.Option(help="CSV with input,summary columns (UTF-8 or EUC-KR)")],
    base: Annotated[str, typer.Option(help="Base model: folder, .gguf, s3:// or bundled name")],
    out: Annotated[Path, typer.Option(help="Folder for the best adapter and soriflow-training.json")],
    lora_r: Annotated[int, typer.Option(help="LoRA rank")] = 8,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha (default 2 x rank)")] = None,
    lr: Annotated[float, typer.Option(help="Learning rate")] = 3e-4,
    epochs: Annotated[int, typer.Option(help="Passes over the training set")] = 3,
    batch_size: Annotated[int, typer.Option(help="Examples per step")] = 8,
    grad_accumulation: Annotated[int, typer.Option(help="Micro-batches per optimizer step")] = 1,
    val_fraction: Annotated[float, typer.Option(help="Share of rows held out for validation")] = 0.1,
    eval_every: Annotated[int, typer.Option(help="Validate every N steps (0: after each epoch)")] = 0,
    eval_samples: Annotated[int, typer.Option(help="Validation rows summarized for ROUGE/similarity")] = 64,
    style: Annotated[
        str, typer.Option(help="Style whose prompt causal LMs learn (inquiry, bullets, abstract)")
    ] = ("inquiry"),
    select_by: Annotated[
        str,
        typer.Option(help="loss, rougeL_chars, rouge1_chars, semantic_similarity or bertscore_f1"),
    ] = "loss",
    quantize: Annotated[
        str, typer.Option(help="auto (4-bit on CUDA with bitsandbytes), 4bit or none")
    ] = "auto",
    max_input_tokens: Annotated[int, typer.Option(help="Training inputs are cut to this many tokens")] = 512,
    max_target_tokens: Annotated[int, typer.Option(help="Summaries are cut to this many tokens")] = 128,
    target_modules: Annotated[
        str, typer.Option(help="Comma-separated module names, or all-linear (default: peft's per model)")
    ] = "",
    similarity: Annotated[bool, typer.Option(help="Score sentence similarity during validation")] = True,
    bertscore_model: Annotated[
        str | None,
        typer.Option(
            help="Local encoder (folder, s3://, pkg:) for BERTScore during validation "
            "(default: SORIFLOW_SUMMARIZER_BERTSCORE_MODEL; unset: skipped)"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and the shuffles")] = 42,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """LoRA (QLoRA on CUDA) fine-tuning with validation; keeps the best adapter for the service."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .styles import Style
    from .training import TrainConfig, Trainer

    if style not in STYLES[:3]:
        _fail("--style must be inquiry, bullets or abstract")
    if select_by not in ("loss", "rougeL_chars", "rouge1_chars", "semantic_similarity", "bertscore_f1"):
        _fail("--select-by must be loss, rougeL_chars, rouge1_chars, semantic_similarity or bertscore_f1")
    if quantize not in ("auto", "4bit", "none") or device not in ("auto", "cpu", "cuda"):
        _fail("--quantize must be auto, 4bit or none; --device auto, cpu or cuda")
    config = TrainConfig(
        data=data,
        base=base,
        out=out,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        grad_accumulation=grad_accumulation,
        val_fraction=val_fraction,
        eval_every=eval_every,
        eval_samples=eval_samples,
        style=Style(style),
        select_by=select_by,  # type: ignore[arg-type]
        quantize=quantize,  # type: ignore[arg-type]
        max_input_tokens=max_input_tokens,
        max_target_tokens=max_target_tokens,
        target_modules=tuple(m.strip() for m in target_modules.split(",") if m.strip()),
        similarity=similarity,
        bertscore_model=bertscore_model,
        seed=seed,
        device=device,  # type: ignore[arg-type]
    )
    try:
        result = Trainer(config, progress=lambda message: print(message, flush=True)).run()
    except SoriflowError as exc:
        _fail(exc.message)
    best = result.best
    print(f"best: step {best['step']} (val_loss {best['val_loss']:.4f}); adapter saved in {result.adapter}")
    print("serve it with " + " ".join(f"{key}={value}" for key, value in result.serve.items()))


def register(app: typer.Typer, groups: Any) -> None:
    """Adds the summarizer's commands to `soriflow`."""
    app.command("summarize")(summarize)
    groups.eval.command("summarize")(eval_summarize)
    groups.train.command("summarizer")(train_summarizer)
