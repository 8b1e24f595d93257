"""Intonation and rhythm: pitch and energy contours compared after time alignment, nPVI.

The two recordings are aligned in time by DTW on MFCCs (what is being said),
not on pitch itself: warping on the pitch contours would bend a flat reading
onto the reference's melody and call it similar. Pitch and energy are then
compared frame by frame along that path.

Pitch similarity, 0-1, mixes shape and size (see docs/scoring.md):
`0.5 * max(0, r) * min(sd_l, sd_r) / max(sd_l, sd_r) + 0.5 * max(0, 1 - MAD / 4 st)`,
with r the Pearson correlation of the aligned, speaker-normalised semitone
contours (the melody goes up and down in the same places), sd their standard
deviations and MAD their mean absolute difference: r alone is blind to a
flattened reading whose contour still moves the same way by a fifth of the
amount, so it is scaled by the ratio of the spreads, and MAD measures how far
apart the two melodies are in semitones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from soriflow.scoring.pitch import PitchTrack

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Semitone difference at which the size term of pitch similarity reaches 0.
PITCH_MAD_SCALE_ST = 4.0
#: Fewer aligned voiced frame pairs than this: intonation cannot be compared.
MIN_VOICED_PAIRS = 10


def pearson(a: FloatArray, b: FloatArray) -> float:
    """Correlation coefficient; 0 when either side is constant or there are < 3 values."""
    if len(a) < 3:
        return 0.0
    sa, sb = float(np.std(a)), float(np.std(b))
    if sa < 1e-9 or sb < 1e-9:
        return 0.0
    r = float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))
    return float(np.clip(r, -1.0, 1.0))


def pitch_similarity(learner: PitchTrack, reference: PitchTrack, path: IntArray) -> float | None:
    """Similarity of the aligned semitone contours in [0, 1]; None when too few frames are voiced in both."""
    if len(path) == 0:
        return None
    i, j = path[:, 0], path[:, 1]
    ok = (i < len(learner.voiced)) & (j < len(reference.voiced))
    i, j = i[ok], j[ok]
    both = learner.voiced[i] & reference.voiced[j]
    if both.sum() < MIN_VOICED_PAIRS:
        return None
    a, b = learner.semitones[i[both]], reference.semitones[j[both]]
    sa, sb = float(np.std(a)), float(np.std(b))
    spread = min(sa, sb) / max(sa, sb) if max(sa, sb) > 1e-9 else 1.0
    shape = max(0.0, pearson(a, b)) * spread
    mad = float(np.mean(np.minimum(np.abs(a - b), 12.0)))
    size = max(0.0, 1.0 - mad / PITCH_MAD_SCALE_ST)
    return float(np.clip(0.5 * shape + 0.5 * size, 0.0, 1.0))


def energy_similarity(learner_db: FloatArray, reference_db: FloatArray, path: IntArray) -> float:
    """max(0, Pearson r) of the aligned energy envelopes (dB, so gain does not matter), in [0, 1]."""
    if len(path) == 0:
        return 0.0
    i = np.minimum(path[:, 0], len(learner_db) - 1)
    j = np.minimum(path[:, 1], len(reference_db) - 1)
    return max(0.0, pearson(learner_db[i], reference_db[j]))


def npvi(durations: Sequence[float]) -> float:
    """Normalised pairwise variability index (Grabe & Low 2002): 100 * mean |d_k - d_k+1| / mean(d_k, d_k+1).

    Stress-timed English reads around 55-70 on vowel durations; an even,
    syllable-by-syllable delivery scores much lower. 0 with fewer than two
    positive durations.
    """
    d = np.asarray([x for x in durations if x > 0], dtype=np.float64)
    if len(d) < 2:
        return 0.0
    pairs = np.abs(np.diff(d)) / ((d[:-1] + d[1:]) / 2.0)
    return float(100.0 * pairs.mean())


def rhythm_similarity(learner_durations: Sequence[float], reference_durations: Sequence[float]) -> float:
    """1 - total variation distance between the word-duration shares of matched words, in [0, 1].

    Each side's durations are divided by their sum, so a slower or faster
    reading with the same stress pattern scores 1; stretching the wrong
    words (or reading every word alike) lowers it. 0 with fewer than two words.
    """
    a = np.asarray(learner_durations, dtype=np.float64)
    b = np.asarray(reference_durations, dtype=np.float64)
    if len(a) < 2 or len(a) != len(b) or a.sum() <= 0 or b.sum() <= 0:
        return 0.0
    return float(np.clip(1.0 - 0.5 * np.abs(a / a.sum() - b / b.sum()).sum(), 0.0, 1.0))


def is_monotone(learner_range_st: float, reference_range_st: float | None, threshold_st: float) -> bool:
    """A flat reading: the learner's range is under the threshold, while the reference's (if any) is not."""
    if learner_range_st <= 0:
        return False  # nothing voiced: no pitch to call flat (reported as unvoiced instead)
    if learner_range_st >= threshold_st:
        return False
    return reference_range_st is None or reference_range_st >= threshold_st
