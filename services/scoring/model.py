"""What the scorer takes and returns, independent of gRPC (see messages.py for the proto mapping)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from soriflow.scoring.engines.base import Method, PhoneAccuracy
from soriflow.scoring.pitch import Contour
from soriflow.scoring.timing import Fluency, Span

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TimedWord:
    """A word as a recogniser (or the caller) gave it, with its time span."""

    text: str
    span: Span
    confidence: float | None = None


@dataclass(frozen=True)
class Recording:
    """Decoded 16 kHz mono audio and its words (None until the STT service has been asked)."""

    samples: npt.NDArray[np.float32]
    sample_rate: int
    words: list[TimedWord] | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class ScoreInput:
    """One learner recording to score against reference audio and/or text."""

    learner: Recording
    reference: Recording | None = None
    reference_text: str = ""
    language: str = "en"
    feedback_language: str = "en"
    contour_points: int = 200
    mispronunciation_threshold: float = 60.0


class ErrorType(enum.Enum):
    NONE = "none"
    OMISSION = "omission"
    INSERTION = "insertion"
    SUBSTITUTION = "substitution"
    MISPRONUNCIATION = "mispronunciation"


@dataclass(frozen=True)
class WordResult:
    """One step of the reference/learner alignment with its accuracy."""

    word: str
    recognized: str
    error: ErrorType
    accuracy: float
    method: Method | None
    span: Span | None
    reference_index: int
    reference_span: Span | None = None
    pause_before_s: float = 0.0
    phones: list[PhoneAccuracy] = field(default_factory=list)


@dataclass(frozen=True)
class ProsodyResult:
    pitch_similarity: float = 0.0
    learner_range_st: float = 0.0
    reference_range_st: float = 0.0
    monotone: bool = False
    learner_npvi: float = 0.0
    reference_npvi: float = 0.0
    energy_similarity: float = 0.0
    rhythm_similarity: float = 0.0


@dataclass(frozen=True)
class Assessment:
    """The full result of scoring one learner recording."""

    overall: float
    accuracy: float
    fluency: float
    completeness: float
    prosody: float
    speed_ratio: float
    pause_similarity: float
    words: list[WordResult]
    learner_fluency: Fluency
    reference_fluency: Fluency | None
    prosody_metrics: ProsodyResult
    feedback: list[str]
    learner_contour: Contour
    reference_contour: Contour | None
    #: For each learner contour point, the aligned time in the reference audio (None without reference audio).
    learner_contour_reference_times_s: FloatArray | None
    recognized_text: str
    reference_text: str
    duration_s: float
    notes: list[str] = field(default_factory=list)
