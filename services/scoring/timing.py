"""Pauses, speech rate and runs: the timing half of fluency.

A pause is a silence *between two words inside the utterance*: leading and
trailing silence are not pauses, and neither is a word's own duration.
Recogniser timestamps are imprecise (Whisper often stretches a word over the
silence next to it), so each junction between consecutive words is checked
on the signal: the longest run of silent 10 ms frames between the two words
(with speech on both sides of it) is the pause, when it lasts at least the
pause threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from soriflow.scoring.features import HOP_S

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Span:
    """A word's position in a recording, in seconds."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)

    @property
    def mid_s(self) -> float:
        return (self.start_s + self.end_s) / 2


@dataclass(frozen=True)
class Pause:
    """A silence between word `after_word - 1` and `after_word` (indices into the timed word list)."""

    start_s: float
    end_s: float
    after_word: int
    word_before: str = ""
    word_after: str = ""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Fluency:
    """Timing of one recording (the FluencyMetrics message)."""

    speech_duration_s: float = 0.0
    syllables: int = 0
    words: int = 0
    speech_rate: float = 0.0
    articulation_rate: float = 0.0
    words_per_minute: float = 0.0
    mean_length_of_run: float = 0.0
    pauses: list[Pause] = field(default_factory=list)
    total_pause_s: float = 0.0
    longest_pause_s: float = 0.0


def _silent_runs(mask: BoolArray) -> list[tuple[int, int]]:
    """(start, length) of every run of True in mask."""
    runs: list[tuple[int, int]] = []
    start = -1
    for k, value in enumerate(mask):
        if value and start < 0:
            start = k
        elif not value and start >= 0:
            runs.append((start, k - start))
            start = -1
    if start >= 0:
        runs.append((start, len(mask) - start))
    return runs


def _longest_inner_run(mask: BoolArray) -> tuple[int, int]:
    """The longest silent run with speech on both sides of it inside the window; (0, 0) if none.

    Requiring speech on both sides keeps leading and trailing silence, which
    a recogniser may include in the first or last word's span, from counting
    as a pause between two words.
    """
    best = (0, 0)
    for start, length in _silent_runs(mask):
        inner = start > 0 and start + length < len(mask)
        if inner and length > best[1]:
            best = (start, length)
    return best


def find_pauses(spans: Sequence[Span], silent: BoolArray, threshold_s: float) -> list[Pause]:
    """Pauses at the junctions of consecutive words (in time order), from the per-frame silence mask.

    Each junction is searched from the start of the word before to the end
    of the word after: a silence of 200 ms or more cannot be inside a real
    word (stop closures last well under that), so wherever the recogniser put
    the boundary, the silence found there is the pause between the two.
    """
    pauses: list[Pause] = []
    n_frames = len(silent)
    for k in range(1, len(spans)):
        before, after = spans[k - 1], spans[k]
        lo = max(0, int(np.floor(min(before.start_s, after.start_s) / HOP_S)))
        hi = min(n_frames, int(np.ceil(max(after.end_s, before.end_s) / HOP_S)))
        if hi - lo <= 2:
            continue
        start, length = _longest_inner_run(silent[lo:hi])
        if length * HOP_S >= threshold_s - 1e-9:
            begin = (lo + start) * HOP_S
            pauses.append(Pause(begin, begin + length * HOP_S, k))
    return pauses


def measure_fluency(spans: Sequence[Span], syllables: Sequence[int], pauses: Sequence[Pause]) -> Fluency:
    """Rates and runs of one recording; all zero (never NaN) when there is nothing to measure."""
    if not spans:
        return Fluency()
    duration = max(0.0, spans[-1].end_s - spans[0].start_s)
    total_pause = float(sum(p.duration_s for p in pauses))
    n_syllables = int(sum(syllables))
    speaking = max(duration - total_pause, 0.0)
    return Fluency(
        speech_duration_s=duration,
        syllables=n_syllables,
        words=len(spans),
        speech_rate=n_syllables / duration if duration > 0 else 0.0,
        articulation_rate=n_syllables / speaking if speaking > 0 else 0.0,
        words_per_minute=60.0 * len(spans) / duration if duration > 0 else 0.0,
        mean_length_of_run=len(spans) / (len(pauses) + 1),
        pauses=list(pauses),
        total_pause_s=total_pause,
        longest_pause_s=max((p.duration_s for p in pauses), default=0.0),
    )


def relative_gaps(spans: Sequence[Span], pauses: Sequence[Pause]) -> dict[int, float]:
    """Pause length at each junction (index of the word after) divided by the mean word duration.

    Dividing by the speaker's own mean word duration makes the pattern
    tempo-independent: the same reading slowed down has the same gaps.
    """
    if not spans:
        return {}
    mean_word = float(np.mean([s.duration_s for s in spans])) or 1.0
    return {p.after_word: p.duration_s / max(mean_word, 1e-3) for p in pauses}


def pause_similarity(
    learner_gaps: Sequence[float], reference_gaps: Sequence[float], *, smoothing: float = 1.0
) -> float:
    """1 - sum|a - b| / (sum a + sum b + smoothing) over junction-aligned relative gaps, in [0, 1].

    Identical pause patterns give 1, and so does the same pattern at another
    tempo (the gaps are relative). Pauses at different places count fully
    against each other. `smoothing` (one mean word duration) keeps a single
    short pause from making two otherwise pause-free readings dissimilar.
    """
    a = np.asarray(learner_gaps, dtype=np.float64)
    b = np.asarray(reference_gaps, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("gap vectors must be junction-aligned")
    diff = float(np.abs(a - b).sum())
    total = float(a.sum() + b.sum()) + smoothing
    return float(np.clip(1.0 - diff / total, 0.0, 1.0))


def rate_component(speed_ratio: float, *, tolerance: float = 1.5) -> float:
    """exp(-ln(r)^2 / (2 ln(tol)^2)): 1 at the reference pace, 0.61 at 1.5x or 1/1.5x, falling smoothly."""
    if speed_ratio <= 0 or not np.isfinite(speed_ratio):
        return 0.0
    return float(np.exp(-(np.log(speed_ratio) ** 2) / (2.0 * np.log(tolerance) ** 2)))
