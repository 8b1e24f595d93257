"""Settings of the pronunciation scoring service (`SORIFLOW_SCORING_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from soriflow.config import ServiceSettings


class Settings(ServiceSettings):
    """Scoring: thresholds and where to get word timestamps."""

    port: int = Field(50052, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9152, ge=0, le=65535, description="Prometheus port (empty disables).")

    scoring_accuracy_engine: Literal["auto", "pocketsphinx", "confidence"] = Field(
        "auto",
        description="How word accuracy is measured: `auto` uses phone goodness of pronunciation from "
        "pocketsphinx for English and the recogniser's word confidence for other languages; `pocketsphinx` "
        "uses GOP for every language (with an acoustic model and dictionary configured for it); "
        "`confidence` uses word confidence everywhere.",
    )
    scoring_acoustic_model: Path | None = Field(
        None,
        description="Pocketsphinx acoustic model folder. Unset: the en-us model in the pocketsphinx wheel.",
    )
    scoring_pronunciation_dict: Path | None = Field(
        None, description="Pronunciation dictionary (CMUdict format). Unset: cmudict-en-us from the wheel."
    )
    scoring_gop_midpoint: float = Field(
        -36.0,
        le=0,
        description="Phone goodness of pronunciation (acoustic score per frame against the best senone) that "
        "maps to a phone score of 50; calibrated on native recordings (docs/scoring.md).",
    )
    scoring_gop_scale: float = Field(
        7.0, gt=0, description="Width of the logistic that maps phone GOP to 0-100 (docs/scoring.md)."
    )
    scoring_mispronunciation_threshold: float = Field(
        60.0,
        gt=0,
        le=100,
        description="Default word accuracy under which a correct word is Mispronunciation.",
    )
    scoring_pause_threshold_ms: int = Field(
        200, ge=50, le=2000, description="Shortest silence between two words that counts as a pause."
    )
    scoring_native_articulation_rate: float = Field(
        4.8,
        gt=0,
        description="Typical native articulation rate, syllables per second: the speed reference when only "
        "reference text is given.",
    )
    scoring_monotone_range_st: float = Field(
        2.5,
        gt=0,
        description="Pitch range (5th-95th percentile, semitones) under which a reading counts as monotone.",
    )
    scoring_pitch_floor_hz: float = Field(60.0, gt=0, description="Lowest pitch tracked, in hertz.")
    scoring_pitch_ceiling_hz: float = Field(500.0, gt=0, description="Highest pitch tracked, in hertz.")
    scoring_min_duration_s: float = Field(
        0.3, gt=0, description="Shorter learner or reference audio is refused with INVALID_ARGUMENT."
    )
    scoring_max_duration_s: float = Field(
        120.0,
        gt=0,
        description="Longer learner or reference audio is refused with RESOURCE_EXHAUSTED (scoring is meant "
        "for sentences; alignment cost grows with the square of the duration).",
    )
    scoring_stt_timeout_s: float = Field(
        60.0, gt=0, description="Timeout of one call to the STT service for word timestamps."
    )
    scoring_max_concurrency: int = Field(
        2, ge=1, le=64, description="Requests scored at once (each holds one aligner); the rest wait in line."
    )
    scoring_max_waiting: int = Field(
        32, ge=0, description="Requests allowed to wait for a slot; beyond that RESOURCE_EXHAUSTED."
    )
    scoring_retry_after_s: float = Field(
        1.0, gt=0, description="Retry hint sent with RESOURCE_EXHAUSTED when the queue is full."
    )
