"""Prometheus metrics of the scoring service."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

AUDIO_SECONDS = Counter("soriflow_scoring_audio_seconds_total", "Seconds of learner audio scored.")
OVERALL_SCORE = Histogram(
    "soriflow_scoring_overall_score",
    "Overall pronunciation scores returned (0-100).",
    buckets=(10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100),
)
SECONDS_PER_AUDIO_SECOND = Histogram(
    "soriflow_scoring_seconds_per_audio_second",
    "Wall time of a Score call divided by the learner audio duration (STT time included).",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
)
