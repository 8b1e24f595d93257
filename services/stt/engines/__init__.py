"""Choosing and loading the engine the settings name.

`load_engine(settings)` is the in-process API: it resolves the model (bundled
name, path, `s3://`, `pkg:`), picks device and precision (`auto`: CUDA when
present; int8 on CPU, float16 on GPU for faster-whisper, float32 on CPU for
openai-whisper, whose CPU kernels have no half precision), and returns a
loaded `Engine`. The service, the CLI and benchmarks all call it.
"""

from __future__ import annotations

import os

from soriflow.errors import InvalidArgument
from soriflow.stt.engines.base import Engine, EngineInfo, Segment, TranscribeOptions, Transcript, Word
from soriflow.stt.models import locate_model
from soriflow.stt.settings import Settings

__all__ = [
    "Engine",
    "EngineInfo",
    "Segment",
    "TranscribeOptions",
    "Transcript",
    "Word",
    "load_engine",
    "resolve_device",
]


def _cuda_available(engine: str) -> bool:
    if engine == "openai-whisper":
        import torch

        return bool(torch.cuda.is_available())
    import ctranslate2

    return int(ctranslate2.get_cuda_device_count()) > 0


def resolve_device(settings: Settings) -> tuple[str, str]:
    """(device, compute_type) after applying `auto`."""
    device = settings.stt_device
    if device == "auto":
        device = "cuda" if _cuda_available(settings.stt_engine) else "cpu"
    compute = settings.stt_compute_type
    if compute == "auto":
        if device == "cuda":
            compute = "float16"
        else:
            compute = "int8" if settings.stt_engine == "faster-whisper" else "float32"
    if settings.stt_engine == "openai-whisper" and compute not in ("float16", "float32"):
        raise InvalidArgument(
            f"the openai-whisper engine runs float16 or float32, not {compute!r}: "
            "set SORIFLOW_STT_COMPUTE_TYPE"
        )
    if settings.stt_engine == "openai-whisper" and device == "cpu" and compute == "float16":
        raise InvalidArgument("openai-whisper cannot run float16 on CPU: use float32 or a GPU")
    return device, compute


def cpu_threads(settings: Settings) -> int:
    """Threads per inference: the setting, or the cores this process may use."""
    if settings.stt_cpu_threads:
        return int(settings.stt_cpu_threads)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def load_engine(settings: Settings | None = None) -> Engine:
    """Loads the model the settings name on the engine they name (blocking; seconds)."""
    settings = settings or Settings()
    files = locate_model(settings.stt_model, settings)
    device, compute = resolve_device(settings)
    if settings.stt_engine == "faster-whisper":
        from soriflow.stt.engines.faster import FasterWhisperEngine

        if files.format != "ctranslate2":
            raise InvalidArgument(
                f"{files.path} is an openai-whisper checkpoint; the faster-whisper engine needs a "
                "CTranslate2 model (convert with ct2-transformers-converter) "
                "or set SORIFLOW_STT_ENGINE=openai-whisper"
            )
        batch = settings.stt_batch_size
        if batch < 0:
            batch = 8 if device == "cuda" else 0
        return FasterWhisperEngine(
            files.path,
            name=files.name,
            source=files.source,
            device=device,
            compute_type=compute,
            cpu_threads=cpu_threads(settings),
            workers=settings.stt_max_concurrency,
            batch_size=batch,
        )
    from soriflow.stt.engines.openai import OpenAIWhisperEngine

    return OpenAIWhisperEngine.from_files(
        files, settings=settings, device=device, compute_type=compute, threads=cpu_threads(settings)
    )
