"""Pitch normalisation, DTW, contour similarity, nPVI, rhythm and monotone detection."""

from __future__ import annotations

import numpy as np
import pytest

from soriflow.scoring.dtw import accumulated_cost, align_features, euclidean_cost, map_times, warping_path
from soriflow.scoring.pitch import PitchTrack, downsample, extract_pitch, track_from_hz
from soriflow.scoring.prosody import (
    compare_pitch,
    ending_agreement,
    energy_similarity,
    is_monotone,
    npvi,
    pearson,
    pitch_similarity,
    range_agreement,
    rhythm_similarity,
)

RATE = 16000


def naive_dtw(cost: np.ndarray) -> np.ndarray:
    n, m = cost.shape
    acc = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            best = (
                0.0
                if i == j == 0
                else min(
                    acc[i - 1, j - 1] if i and j else np.inf,
                    acc[i - 1, j] if i else np.inf,
                    acc[i, j - 1] if j else np.inf,
                )
            )
            acc[i, j] = cost[i, j] + best
    return acc


def melody(duration_s: float, shape: float = 1.0) -> np.ndarray:
    """A rise-fall intonation contour in semitones, 10 ms frames."""
    t = np.linspace(0, 1, int(duration_s * 100))
    return shape * (4 * np.sin(np.pi * t) - 2 * t + 1.5 * np.sin(5 * np.pi * t))


def track(semitones: np.ndarray, median_hz: float, voiced_every: int = 1) -> PitchTrack:
    f0 = median_hz * 2 ** (semitones / 12)
    f0[np.arange(len(f0)) % voiced_every != 0] = 0
    return track_from_hz(f0)


def diagonal_path(n: int) -> np.ndarray:
    return np.stack([np.arange(n), np.arange(n)], axis=1)


def test_vectorised_dtw_equals_the_textbook_recursion() -> None:
    rng = np.random.default_rng(3)
    cost = rng.random((37, 23))
    assert np.allclose(accumulated_cost(cost), naive_dtw(cost))
    path = warping_path(cost)
    assert tuple(path[0]) == (0, 0)
    assert tuple(path[-1]) == (36, 22)
    steps = np.diff(path, axis=0)
    assert (steps >= 0).all()
    assert (steps.sum(axis=1) >= 1).all()
    assert (steps.max(axis=1) <= 1).all()
    assert np.isclose(cost[path[:, 0], path[:, 1]].sum(), accumulated_cost(cost)[-1, -1])


def test_dtw_recovers_a_time_stretch() -> None:
    base = np.stack([np.sin(np.linspace(0, 12, 200)), np.cos(np.linspace(0, 7, 200))], axis=1)
    stretched = base[np.clip((np.arange(300) / 1.5).round().astype(int), 0, 199)]
    path = align_features(stretched, base)
    mapped = map_times(path, len(stretched))
    assert np.abs(mapped - np.arange(300) / 1.5).mean() < 2.0
    decimated = align_features(stretched, base, max_cells=5000)  # long inputs are decimated, not refused
    assert tuple(decimated[-1]) == (299, 199) or np.abs(decimated[-1] - [299, 199]).max() <= 3
    assert euclidean_cost(base[:2], base[:2]).diagonal() == pytest.approx([0, 0], abs=1e-6)


def test_identical_contours_are_fully_similar() -> None:
    st = melody(2.0)
    assert pitch_similarity(track(st, 120), track(st, 120), diagonal_path(200)) == pytest.approx(1.0)


def test_same_melody_an_octave_lower_scores_the_same() -> None:
    st = melody(2.0)
    high = track(st, 220)
    low = track(st, 110)  # a low-voiced learner reading with the same intonation
    assert high.median_hz == pytest.approx(2 * low.median_hz)
    assert np.allclose(low.semitones, high.semitones, atol=1e-6)
    assert pitch_similarity(low, high, diagonal_path(200)) == pytest.approx(1.0)


def test_octave_on_real_audio_via_praat() -> None:
    t = np.arange(int(1.5 * RATE)) / RATE
    st = 3 * np.sin(2 * np.pi * 0.8 * t)

    def hum(median: float) -> np.ndarray:
        phase = 2 * np.pi * np.cumsum(median * 2 ** (st / 12)) / RATE
        return (0.3 * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase))).astype(np.float32)

    high, low = extract_pitch(hum(240), RATE), extract_pitch(hum(120), RATE)
    assert high.median_hz == pytest.approx(2 * low.median_hz, rel=0.05)
    n = min(len(high.voiced), len(low.voiced))
    similarity = pitch_similarity(low, high, diagonal_path(n))
    assert similarity is not None
    assert similarity > 0.95


def test_time_stretched_contour_still_similar_and_different_contour_lower() -> None:
    ref = melody(2.0)
    slow = np.interp(np.linspace(0, 199, 300), np.arange(200), ref)  # the same melody 1.5x slower
    path = np.stack([np.arange(300), np.clip((np.arange(300) / 1.5).round().astype(int), 0, 199)], axis=1)
    stretched = pitch_similarity(track(slow, 100), track(ref, 200), path)
    other = pitch_similarity(track(-melody(2.0), 100), track(ref, 200), diagonal_path(200))
    flat = pitch_similarity(track(0.2 * ref, 100), track(ref, 200), diagonal_path(200))
    assert stretched is not None
    assert other is not None
    assert flat is not None
    assert stretched > 0.9
    assert other < 0.5
    assert flat < 0.2  # the melody moves the same way but a fifth as much: the range term sees it


def test_range_and_ending_agreement() -> None:
    assert range_agreement(2.0, 2.0) == pytest.approx(1.0)
    assert range_agreement(4.0, 2.0) == pytest.approx(np.exp(-0.5))  # twice the movement
    assert range_agreement(1.0, 2.0) == pytest.approx(np.exp(-0.5))  # half
    assert range_agreement(0.05, 2.0) < 0.01  # flat
    assert ending_agreement(-6.0, -3.0) > 0.9  # both fall, by different amounts: the same ending
    assert ending_agreement(3.0, -3.0) < 0.1  # a question's rise against a statement's fall
    assert 0.4 < ending_agreement(0.0, -3.0) < 0.6  # level against a fall: half way


def short_phrase(first: float, second: float, end: float) -> np.ndarray:
    """Two 'words' of 250 ms, 150 ms apart: levels `first`, `second` (semitones), then a move of `end`."""
    word1 = np.full(25, first) + np.linspace(0, 0.5, 25)
    word2 = np.concatenate([np.full(5, second), second + np.linspace(0, end, 20)])
    return np.concatenate([word1, np.full(15, np.nan), word2])


def st_track(st: np.ndarray, median_hz: float) -> PitchTrack:
    return track_from_hz(np.where(np.isnan(st), 0.0, median_hz * 2 ** (np.nan_to_num(st) / 12)))


def test_short_phrase_with_the_accent_elsewhere_still_scores() -> None:
    """Two correct readings of a two-word label, accent on different words, both ending in a fall.

    Frame correlation alone is negative here (the old score: 0); the ending and range keep a
    real score, and a flat or question-like reading of the same words scores lower.
    """
    reference = st_track(short_phrase(2.0, -1.0, -3.0), 110)  # high first word, falling
    learner = st_track(short_phrase(-2.0, 2.0, -5.0), 210)  # low first word, high second, falling
    flat = st_track(0.05 * short_phrase(-2.0, 2.0, -5.0), 210)
    question = st_track(short_phrase(-2.0, -1.0, 5.0), 210)  # ends rising
    path = diagonal_path(65)
    parts = compare_pitch(learner, reference, path)
    assert parts is not None
    assert parts.shape == 0.0
    assert parts.ending > 0.9
    correct = pitch_similarity(learner, reference, path)
    assert correct is not None
    assert correct > 0.3
    for wrong in (flat, question):
        similarity = pitch_similarity(wrong, reference, path)
        assert similarity is not None
        assert similarity < correct - 0.2


def test_second_pass_drops_creak_under_the_speakers_range() -> None:
    """A final stretch at a third of the voice's pitch (creak, or a tracker halving) is not kept as melody."""
    t = np.arange(int(1.2 * RATE)) / RATE
    f0 = 200 * 2 ** (2 * np.sin(2 * np.pi * 1.0 * t) / 12)
    f0[t > 1.0] = 66.0  # the last 200 ms
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    hum = (0.3 * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase))).astype(np.float32)
    track = extract_pitch(hum, RATE)
    kept = track.f0_hz[track.voiced]
    assert kept.size > 60
    assert kept.min() > 120  # nothing down at 66 Hz: 0.75 x the first quartile (~190 Hz) is the floor
    assert track.range_semitones() < 6  # the melody's own +-2 st, not a -18 st plunge


def test_too_few_voiced_frames_gives_none() -> None:
    st = melody(1.0)
    assert pitch_similarity(track(st, 100, voiced_every=50), track(st, 100), diagonal_path(100)) is None
    assert pitch_similarity(track(st, 100), track(st, 100), np.zeros((0, 2), dtype=np.int64)) is None


def test_short_voiced_islands_are_dropped() -> None:
    f0 = np.zeros(50)
    f0[10:12] = 150  # 20 ms blip: a tracking error
    f0[20:40] = 120
    t = track_from_hz(f0)
    assert not t.voiced[10:12].any()
    assert t.voiced[20:40].all()


def test_downsample_for_plotting() -> None:
    t = track(melody(2.0), 150)
    c = downsample(t, 40)
    assert len(c.times_s) == 40
    assert c.voiced.all()
    assert np.isfinite(c.semitones).all()
    assert downsample(t, 5000).times_s.size == 200  # never more points than frames


def test_npvi() -> None:
    assert npvi([0.1, 0.1, 0.1, 0.1]) == 0.0
    assert npvi([0.1, 0.3]) == pytest.approx(100.0)
    assert npvi([0.2, 0.1, 0.2, 0.1]) > npvi([0.2, 0.18, 0.2, 0.18])
    assert npvi([0.2]) == 0.0
    assert npvi([]) == 0.0


def test_rhythm_similarity_is_tempo_independent() -> None:
    ref = [0.2, 0.4, 0.1, 0.5]
    assert rhythm_similarity([2 * d for d in ref], ref) == pytest.approx(1.0)
    assert rhythm_similarity([0.3, 0.3, 0.3, 0.3], ref) < 0.9
    assert rhythm_similarity([0.1], [0.2]) == 0.0


def test_energy_similarity_and_pearson_guards() -> None:
    env = np.concatenate([np.linspace(-60, -20, 50), np.linspace(-20, -50, 50)])
    assert energy_similarity(env + 10, env, diagonal_path(100)) == pytest.approx(1.0)  # gain does not matter
    assert pearson(np.ones(10), np.arange(10.0)) == 0.0


def test_monotone() -> None:
    assert is_monotone(1.2, 8.0, 2.5)
    assert not is_monotone(6.0, 8.0, 2.5)
    assert not is_monotone(1.2, 1.5, 2.5)  # the reference is flat too
    assert is_monotone(1.2, None, 2.5)
    assert not is_monotone(0.0, 8.0, 2.5)  # nothing voiced: reported as unvoiced, not monotone
