"""Prometheus metrics of the TTS service (the runtime adds per-RPC counts and latency)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ENGINE_CALLS = Histogram(
    "soriflow_tts_engine_call_duration_seconds",
    "Wall time of one engine call (one chunk of text), by engine.",
    ["engine"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
ENGINE_FAILURES = Counter(
    "soriflow_tts_engine_failures_total",
    "Engine calls that failed and reset the engine, by engine.",
    ["engine"],
)
AUDIO_SECONDS = Counter(
    "soriflow_tts_audio_seconds_total",
    "Seconds of audio synthesized, by engine.",
    ["engine"],
)
CHARACTERS = Counter(
    "soriflow_tts_characters_total",
    "Characters sent to engines (what Google bills), by engine.",
    ["engine"],
)
