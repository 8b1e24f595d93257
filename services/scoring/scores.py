"""The sub-scores and the overall score, 0-100 (formulas and rationale in docs/scoring.md).

Every function guards its divisions and clips its result, so no input can
produce NaN or a value outside 0-100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Overall = weighted sum, as Azure's PronScore: accuracy weighs most, the rest evenly.
WEIGHTS = {"accuracy": 0.4, "fluency": 0.2, "completeness": 0.2, "prosody": 0.2}
#: Fluency = pause pattern, pace and runs.
FLUENCY_WEIGHTS = {"pauses": 0.4, "rate": 0.4, "runs": 0.2}
#: Prosody against reference audio = pitch contour, energy envelope, rhythm.
PROSODY_WEIGHTS = {"pitch": 0.5, "energy": 0.2, "rhythm": 0.3}
#: Prosody against text only = pitch range, rhythm variability.
TEXT_PROSODY_WEIGHTS = {"range": 0.7, "rhythm": 0.3}
#: Learner pitch range (semitones) from which the text-only intonation term is 0, and full.
RANGE_FLOOR_ST, RANGE_FULL_ST = 1.0, 4.0
#: nPVI (vowel or word durations) at which the text-only rhythm term is full.
NPVI_FULL = 50.0


def clip100(value: float) -> float:
    """Clamps to [0, 100]; NaN or infinity (which should never reach here) become 0."""
    if not math.isfinite(value):
        return 0.0
    return float(min(100.0, max(0.0, value)))


def completeness(matched: int, reference_words: int) -> float:
    """Share of reference words spoken as themselves (correct or mispronounced), in percent."""
    return clip100(100.0 * matched / reference_words) if reference_words > 0 else 0.0


def accuracy(word_scores: Sequence[float]) -> float:
    """Mean accuracy of the reference words the learner said something for (omissions excluded)."""
    return clip100(float(np.mean(word_scores))) if len(word_scores) else 0.0


def runs_component(learner_pauses: int, allowed_pauses: int) -> float:
    """(allowed + 1) / (learner + 1), at most 1: the mean-length-of-run ratio, robust to omitted words."""
    return min(1.0, (allowed_pauses + 1) / (learner_pauses + 1))


def fluency(pause_similarity: float, rate: float, runs: float) -> float:
    w = FLUENCY_WEIGHTS
    return clip100(100.0 * (w["pauses"] * pause_similarity + w["rate"] * rate + w["runs"] * runs))


def prosody_with_reference(
    pitch_similarity: float, energy_similarity: float, rhythm_similarity: float
) -> float:
    w = PROSODY_WEIGHTS
    return clip100(
        100.0
        * (w["pitch"] * pitch_similarity + w["energy"] * energy_similarity + w["rhythm"] * rhythm_similarity)
    )


def prosody_text_only(pitch_range_st: float, npvi: float) -> float:
    """Without reference audio: a lively pitch range and a stress-timed (varied) rhythm."""
    range_term = min(1.0, max(0.0, (pitch_range_st - RANGE_FLOOR_ST) / (RANGE_FULL_ST - RANGE_FLOOR_ST)))
    rhythm_term = min(1.0, max(0.0, npvi / NPVI_FULL))
    w = TEXT_PROSODY_WEIGHTS
    return clip100(100.0 * (w["range"] * range_term + w["rhythm"] * rhythm_term))


def overall(
    accuracy_score: float, fluency_score: float, completeness_score: float, prosody_score: float
) -> float:
    """Weighted sum; fluency and prosody count for the share of the sentence that was read.

    They describe how the words that were said were said, so reading a third
    of the sentence (or another sentence) fluently earns a third of their
    weight: `0.4 A + 0.2 C + 0.2 (C/100) F + 0.2 (C/100) P`.
    """
    w = WEIGHTS
    coverage = min(1.0, max(0.0, completeness_score / 100.0))
    return clip100(
        w["accuracy"] * accuracy_score
        + w["fluency"] * fluency_score * coverage
        + w["completeness"] * completeness_score
        + w["prosody"] * prosody_score * coverage
    )
