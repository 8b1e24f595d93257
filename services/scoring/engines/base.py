"""The accuracy engine interface: how well each expected word was pronounced.

An engine gets the learner audio (16 kHz mono) and the words to assess, each
with the time span the recogniser gave it, and returns one `WordAccuracy`
per word, in order: a 0-100 score, how it was measured, refined times and,
when the engine works at phone level, phone scores. Engines never raise for
a word they cannot place; they fall back to the recogniser's confidence for
it and say so in `note`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from soriflow.scoring.timing import Span

Method = Literal["gop", "confidence"]


@dataclass(frozen=True)
class WordToAssess:
    """A word to score in the learner audio: the reference word, or the learner's own for insertions.

    `heard` is what the recogniser heard in its place when that differs (a
    substitution): engines align with it, so a wrong word does not drag its
    neighbours' boundaries, and then score `word` inside the span found.
    """

    word: str
    span: Span | None
    confidence: float | None
    heard: str | None = None


@dataclass(frozen=True)
class PhoneAccuracy:
    """One phone of a word: ARPAbet symbol, times, per-frame GOP and its 0-100 score."""

    phone: str
    start_s: float
    end_s: float
    gop: float
    score: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class WordAccuracy:
    """The assessment of one word."""

    score: float
    method: Method
    span: Span | None
    phones: list[PhoneAccuracy] = field(default_factory=list)
    note: str | None = None


class AccuracyEngine(Protocol):
    """Scores words of the learner audio; implementations must be safe to call from several threads."""

    name: str

    def load(self) -> None:
        """Loads models (called once at service start, off the event loop)."""

    def assess(
        self, samples: npt.NDArray[np.float32], words: Sequence[WordToAssess], cancel: threading.Event
    ) -> list[WordAccuracy]:
        """One result per word, in order."""

    def relative(self, learner: WordAccuracy, reference: Sequence[PhoneAccuracy]) -> WordAccuracy:
        """The learner's word re-scored against the native's phones of the same word (reference audio)."""


def confidence_result(item: WordToAssess, note: str | None = None) -> WordAccuracy:
    """Accuracy from the recogniser's confidence (0-1 -> 0-100); 100 when none was given, with a note."""
    if item.confidence is None:
        return WordAccuracy(
            100.0,
            "confidence",
            item.span,
            [],
            note or f"no confidence was given for '{item.word}': its accuracy is not measured",
        )
    return WordAccuracy(float(np.clip(item.confidence, 0.0, 1.0)) * 100.0, "confidence", item.span, [], note)
