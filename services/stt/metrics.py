"""Prometheus metrics of the STT service (besides the runtime's RPC metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

AUDIO_SECONDS = Counter(
    "soriflow_stt_audio_seconds_total",
    "Seconds of audio transcribed, by path (recognize or stream).",
    ["path"],
)
REALTIME_FACTOR = Histogram(
    "soriflow_stt_realtime_factor",
    "Processing time over audio duration of Recognize calls (below 1 is faster than real time).",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5),
)
STREAMS_ACTIVE = Gauge("soriflow_stt_streams_active", "Live StreamingRecognize calls.")
STREAM_FINAL_LATENCY = Histogram(
    "soriflow_stt_stream_final_latency_seconds",
    "From the end of an utterance's audio arriving to its final result being sent.",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
)
