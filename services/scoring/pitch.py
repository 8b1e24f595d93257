"""Pitch tracks in speaker-normalised semitones (praat-parselmouth).

Comparing raw hertz punishes a low-voiced learner against a high-voiced
reference for a difference that is not an error. Each track is therefore
converted to semitones around the speaker's own median pitch,
`12 * log2(f0 / median)`, so an octave-lower voice with the same melody gives
the same contour. Short voiced islands (under 30 ms, usually tracking errors
in noise) are dropped.

The track is made in two passes, as intonation research does (De Looze & Hirst
2008; Hirst 2011): a first pass over the wide default range (60-500 Hz) finds
the speaker's quartiles, and the second is restricted to 0.75 x Q1 .. 1.5 x Q3 (made only when some frame
of the first lies outside that range, so clean tracks cost one pass).
In the wide range, autocorrelation trackers jump an octave up on some frames
and follow creak down to the floor at the end of a phrase (a neural voice
reading "Front right" had a run of frames at +12 st, "Front center" ended at
61 Hz, -9.5 st): in a long sentence such frames are diluted, in a two-word
clip they are a large share of the voiced frames and decide the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soriflow.scoring.features import HOP_S

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_MIN_VOICED_RUN = 3
#: The second pass tracks between these multiples of the first pass's quartiles (Hirst 2011).
_FLOOR_OF_Q1, _CEILING_OF_Q3 = 0.75, 1.5
#: Fewer voiced frames than this in the first pass: its quartiles mean nothing, keep it.
_MIN_FRAMES_FOR_RANGE = 20


@dataclass(frozen=True)
class PitchTrack:
    """Pitch on the 10 ms frame grid: frame k is at k * 10 ms."""

    f0_hz: FloatArray
    voiced: BoolArray
    median_hz: float
    semitones: FloatArray  # 0 where unvoiced

    @property
    def voiced_count(self) -> int:
        return int(self.voiced.sum())

    def range_semitones(self) -> float:
        """Spread of the voiced semitones, 5th to 95th percentile (0 with too few voiced frames)."""
        values = self.semitones[self.voiced]
        if values.size < 5:
            return 0.0
        return float(np.percentile(values, 95) - np.percentile(values, 5))


def _drop_short_runs(mask: BoolArray, min_run: int) -> BoolArray:
    out = mask.copy()
    n = len(mask)
    i = 0
    while i < n:
        if not mask[i]:
            i += 1
            continue
        j = i
        while j < n and mask[j]:
            j += 1
        if j - i < min_run:
            out[i:j] = False
        i = j
    return out


def semitones_from_hz(f0_hz: FloatArray, voiced: BoolArray) -> tuple[FloatArray, float]:
    """Semitones around the median of the voiced frames (clipped to one octave) and that median."""
    if not voiced.any():
        return np.zeros_like(f0_hz), 0.0
    median = float(np.median(f0_hz[voiced]))
    st = np.zeros_like(f0_hz)
    st[voiced] = np.clip(12.0 * np.log2(f0_hz[voiced] / median), -12.0, 12.0)
    return st, median


def track_from_hz(f0_hz: FloatArray) -> PitchTrack:
    """A `PitchTrack` from per-frame f0 (0 = unvoiced), with short voiced islands removed."""
    f0 = np.nan_to_num(np.asarray(f0_hz, dtype=np.float64), nan=0.0)
    voiced = _drop_short_runs(f0 > 0, _MIN_VOICED_RUN)
    st, median = semitones_from_hz(f0, voiced)
    return PitchTrack(np.where(voiced, f0, 0.0), voiced, median, st)


def _praat_f0(sound: object, n_frames: int, floor_hz: float, ceiling_hz: float) -> FloatArray:
    """Praat's autocorrelation pitch on the 10 ms grid (0 = unvoiced)."""
    import parselmouth

    try:
        pitch = sound.to_pitch(time_step=HOP_S, pitch_floor=floor_hz, pitch_ceiling=ceiling_hz)  # type: ignore[attr-defined]
    except parselmouth.PraatError:  # shorter than the analysis window: nothing is voiced
        return np.zeros(n_frames)
    f0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    times = np.asarray(pitch.xs(), dtype=np.float64)
    grid = np.arange(n_frames) * HOP_S
    if not len(f0):
        return np.zeros(n_frames)
    # nearest Praat frame for each grid frame; outside Praat's span: unvoiced
    idx = np.clip(np.round((grid - times[0]) / HOP_S).astype(int), 0, len(f0) - 1)
    gridded: FloatArray = f0[idx]
    gridded[(grid < times[0] - HOP_S) | (grid > times[-1] + HOP_S)] = 0.0
    return gridded


def extract_pitch(
    samples: npt.NDArray[np.floating], rate: int, *, floor_hz: float = 60.0, ceiling_hz: float = 500.0
) -> PitchTrack:
    """Praat's autocorrelation pitch on the 10 ms grid, second pass in the speaker's own range."""
    import parselmouth

    n_frames = max(1, int(np.ceil(len(samples) / round(HOP_S * rate))))
    sound = parselmouth.Sound(np.asarray(samples, dtype=np.float64), sampling_frequency=rate)
    f0 = _praat_f0(sound, n_frames, floor_hz, ceiling_hz)
    voiced = f0[f0 > 0]
    if voiced.size >= _MIN_FRAMES_FOR_RANGE:
        q1, q3 = np.percentile(voiced, [25, 75])
        floor2 = max(floor_hz, _FLOOR_OF_Q1 * float(q1))
        ceiling2 = min(ceiling_hz, _CEILING_OF_Q3 * float(q3))
        strays = bool(((voiced < floor2) | (voiced > ceiling2)).any())
        # only when pass one strayed (it costs a second Praat run); a degenerate range keeps pass one
        if strays and ceiling2 > floor2 * 1.5:
            f0 = _praat_f0(sound, n_frames, floor2, ceiling2)
    return track_from_hz(f0)


@dataclass(frozen=True)
class Contour:
    """A pitch track downsampled for plotting."""

    times_s: FloatArray
    semitones: FloatArray
    voiced: BoolArray
    median_hz: float


def downsample(track: PitchTrack, points: int) -> Contour:
    """`points` evenly spaced bins over the track: median voiced semitone per bin, voiced if any frame is."""
    n = len(track.semitones)
    points = max(1, min(points, n))
    edges = np.linspace(0, n, points + 1).round().astype(int)
    times = np.zeros(points)
    values = np.zeros(points)
    voiced = np.zeros(points, dtype=bool)
    for k in range(points):
        lo, hi = edges[k], max(edges[k + 1], edges[k] + 1)
        times[k] = (lo + hi - 1) / 2 * HOP_S
        sel = track.voiced[lo:hi]
        if sel.any():
            voiced[k] = True
            values[k] = float(np.median(track.semitones[lo:hi][sel]))
    return Contour(times, values, voiced, track.median_hz)
