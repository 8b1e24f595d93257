"""Intonation and rhythm: pitch and energy contours compared after time alignment, nPVI.

The two recordings are aligned in time by DTW on MFCCs (what is being said),
not on pitch itself: warping on the pitch contours would bend a flat reading
onto the reference's melody and call it similar. Pitch and energy are then
compared frame by frame along that path.

Pitch similarity, 0-1, is what a listener compares in two melodies (see
docs/scoring.md): `range * (0.5 * shape + 0.5 * ending)`.

* shape: max(0, Pearson r) of the aligned, speaker-normalised semitone
  contours: the melody rises and falls in the same places;
* ending: whether both end with the same movement (a statement's fall, a
  question's or continuation's rise, level), from the pitch change over the
  last 250 ms of voicing, each side squashed by tanh(change / 2 st);
* range: whether the voice moves as much, `exp(-ln(sd_l / sd_r)^2 / (2 ln(2)^2))`,
  1 for the same spread, 0.61 at half or twice, near 0 for a flat reading.

Frame correlation alone was the measure before, with a mean absolute
difference term. On a long sentence it works (many accents, a clear
melody); on a two- or three-syllable clip the correlation only sees where the
accent falls and the micro-movements inside each syllable, which two correct
speakers place differently (the alsa-utils speaker reads "Front ... Center"
with a continuation rise on the first word, a neural voice reads it with
a high first word and a steady fall: r = -0.14), while the mean-difference
term gave a flat reading more credit than a correct, more expressive one.
The ending and the range carry what short clips have in common when they
are read correctly, and both are 0-ish for a flat or inverted reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soriflow.scoring.dtw import align_features
from soriflow.scoring.features import mfcc, speech_bounds
from soriflow.scoring.pitch import PitchTrack

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Fewer aligned voiced frame pairs than this: intonation cannot be compared.
MIN_VOICED_PAIRS = 10
#: The final movement is measured over this many voiced frames (10 ms each) at the end.
ENDING_FRAMES = 25
#: A final movement of this many semitones counts as a clear fall or rise (tanh scale).
ENDING_SCALE_ST = 2.0
#: Ratio of pitch spreads at which the range term falls to exp(-1/2) = 0.61.
RANGE_TOLERANCE_RATIO = 2.0


def speech_path(
    learner: npt.NDArray[np.floating],
    learner_rate: int,
    learner_levels_db: FloatArray,
    reference: npt.NDArray[np.floating],
    reference_rate: int,
    reference_levels_db: FloatArray,
) -> IntArray:
    """DTW path (learner frame, reference frame) between the two recordings' speech, on MFCCs.

    Leading and trailing silence is trimmed first, so the path starts and
    ends on speech whatever silence each recording has around it.
    """
    lo_l, hi_l = speech_bounds(learner_levels_db)
    lo_r, hi_r = speech_bounds(reference_levels_db)
    path = align_features(mfcc(learner, learner_rate)[lo_l:hi_l], mfcc(reference, reference_rate)[lo_r:hi_r])
    out: IntArray = path + np.array([lo_l, lo_r], dtype=np.int64)
    return out


def pearson(a: FloatArray, b: FloatArray) -> float:
    """Correlation coefficient; 0 when either side is constant or there are < 3 values."""
    if len(a) < 3:
        return 0.0
    sa, sb = float(np.std(a)), float(np.std(b))
    if sa < 1e-9 or sb < 1e-9:
        return 0.0
    r = float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))
    return float(np.clip(r, -1.0, 1.0))


def final_movement_st(track: PitchTrack, last_frame: int) -> float:
    """Pitch change in semitones over the last `ENDING_FRAMES` voiced frames up to `last_frame`.

    A line fit rather than last minus first frame: the last voiced frames of a
    phrase are the least reliable ones (creak, breathiness), and a fit over a
    quarter of a second is not decided by any one of them.
    """
    frames = np.flatnonzero(track.voiced[: last_frame + 1])[-ENDING_FRAMES:]
    if len(frames) < 5:
        return 0.0
    slope = float(np.polyfit(frames.astype(np.float64), track.semitones[frames], 1)[0])
    return slope * float(frames[-1] - frames[0])


def ending_agreement(learner_change_st: float, reference_change_st: float) -> float:
    """1 when both endings move the same way (fall, level, rise), 0 for a fall against a rise; in [0, 1]."""
    a = np.tanh(learner_change_st / ENDING_SCALE_ST)
    b = np.tanh(reference_change_st / ENDING_SCALE_ST)
    return float(np.clip(1.0 - abs(a - b) / 2.0, 0.0, 1.0))


def range_agreement(learner_sd_st: float, reference_sd_st: float) -> float:
    """1 for the same pitch spread, 0.61 at `RANGE_TOLERANCE_RATIO` times more or less, toward 0 when flat."""
    ratio = (learner_sd_st + 1e-6) / (reference_sd_st + 1e-6)
    return float(np.exp(-(np.log(ratio) ** 2) / (2.0 * np.log(RANGE_TOLERANCE_RATIO) ** 2)))


@dataclass(frozen=True)
class PitchComparison:
    """The parts of pitch similarity, kept apart for the evaluation and for explaining a score."""

    shape: float
    ending: float
    range: float
    voiced_pairs: int

    @property
    def similarity(self) -> float:
        return float(np.clip(self.range * (0.5 * self.shape + 0.5 * self.ending), 0.0, 1.0))


def compare_pitch(learner: PitchTrack, reference: PitchTrack, path: IntArray) -> PitchComparison | None:
    """Shape, ending and range of the melodies along the path; None with too few frames voiced in both."""
    if len(path) == 0:
        return None
    i, j = path[:, 0], path[:, 1]
    ok = (i < len(learner.voiced)) & (j < len(reference.voiced))
    i, j = i[ok], j[ok]
    both = learner.voiced[i] & reference.voiced[j]
    if both.sum() < MIN_VOICED_PAIRS:
        return None
    a, b = learner.semitones[i[both]], reference.semitones[j[both]]
    ending = ending_agreement(
        final_movement_st(learner, int(i.max())), final_movement_st(reference, int(j.max()))
    )
    return PitchComparison(
        shape=max(0.0, pearson(a, b)),
        ending=ending,
        range=range_agreement(float(np.std(a)), float(np.std(b))),
        voiced_pairs=int(both.sum()),
    )


def pitch_similarity(learner: PitchTrack, reference: PitchTrack, path: IntArray) -> float | None:
    """Similarity of the two melodies in [0, 1] (`compare_pitch`); None with too few frames voiced in both."""
    comparison = compare_pitch(learner, reference, path)
    return None if comparison is None else comparison.similarity


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
