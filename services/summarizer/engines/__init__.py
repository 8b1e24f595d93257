"""Loading the engines the settings name.

A server always runs the extractive engine (no model; the fallback for
languages the model does not write) and the faithful engine (no model; the
default for the `inquiry` style and the replacement for summaries that fail
the grounding check), plus the configured model engine unless
`SORIFLOW_SUMMARIZER_ENGINE=extractive`: transformers (`causal-lm`,
`seq2seq`), a GGUF file in llama.cpp (`llama-cpp`), or an OpenAI-compatible
chat server (`openai`, which loads nothing here). The service, the CLI and the
benchmarks all load engines through `load_engines`.
"""

from __future__ import annotations

import logging
import time

from ..models import locate_gguf, locate_model
from ..settings import Settings
from .base import Engine, EngineInfo, Generation, OnText, Task
from .extractive import ExtractiveEngine

__all__ = ["Engine", "EngineInfo", "Generation", "OnText", "Task", "load_engines", "load_model_engine"]

log = logging.getLogger("soriflow.summarizer.engines")


def load_model_engine(settings: Settings) -> Engine:
    """The configured model engine, model (and adapter) loaded."""
    started = time.perf_counter()
    engine: Engine
    if settings.summarizer_engine == "openai":
        from . import openai_chat

        engine = openai_chat.load(settings)
        log.info("summaries from %s at %s", engine.info.model, settings.summarizer_openai_base_url)
        return engine
    if settings.summarizer_engine == "llama-cpp":
        from . import llamacpp

        engine = llamacpp.load(locate_gguf(settings.summarizer_model, settings), settings)
        log.info("loaded %s (llama-cpp) in %.1fs", engine.info.model, time.perf_counter() - started)
        return engine
    files = locate_model(settings.summarizer_model, settings)
    if settings.summarizer_engine == "seq2seq":
        from . import seq2seq

        engine = seq2seq.load(files, settings)
    else:
        from . import causal

        engine = causal.load(files, settings)
    info = engine.info
    log.info(
        "loaded %s (%s%s) on %s in %.1fs%s",
        info.model,
        info.engine,
        f" + adapter {info.adapter}" if info.adapter else "",
        info.device,
        time.perf_counter() - started,
        f" (GGUF converted in {files.conversion_s:.1f}s)" if files.conversion_s else "",
    )
    return engine


def load_engines(settings: Settings, *, model: bool = True) -> dict[str, Engine]:
    """Engines by name: the configured one first (unless `model` is false), then `extractive` and
    `faithful` (no model; the inquiry default and the grounding fallback)."""
    from .faithful import FaithfulEngine

    engines: dict[str, Engine] = {}
    if model and settings.summarizer_engine != "extractive":
        engine = load_model_engine(settings)
        engines[engine.info.engine] = engine
    engines["extractive"] = ExtractiveEngine(chunk_words=settings.summarizer_chunk_tokens)
    engines["faithful"] = FaithfulEngine(chunk_words=settings.summarizer_chunk_tokens)
    return engines
