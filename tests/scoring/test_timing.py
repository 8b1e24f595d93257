"""Pauses (silences between words, not word durations), rates, runs, pause similarity, speed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soriflow.scoring.timing import (
    Span,
    find_pauses,
    measure_fluency,
    pause_similarity,
    rate_component,
    relative_gaps,
)


def silence_mask(duration_s: float, silent_spans: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(round(duration_s / 0.01), dtype=bool)
    for a, b in silent_spans:
        mask[round(a / 0.01) : round(b / 0.01)] = True
    return mask


def test_pause_is_the_silence_between_words_not_word_durations() -> None:
    spans = [Span(0.5, 0.9), Span(0.9, 1.3), Span(2.5, 3.0)]  # a 1.2 s gap before the third word
    mask = silence_mask(3.5, [(0.0, 0.5), (1.3, 2.5), (3.0, 3.5)])
    pauses = find_pauses(spans, mask, 0.2)
    assert len(pauses) == 1
    assert pauses[0].after_word == 2
    assert pauses[0].duration_s == pytest.approx(1.2, abs=0.011)
    # leading and trailing silence are not pauses
    assert all(0.5 < p.start_s < 3.0 for p in pauses)


def test_silence_hidden_inside_recogniser_word_spans_is_found() -> None:
    # the recogniser stretched the first word over the silence (Whisper does this)
    spans = [Span(0.0, 1.6), Span(1.6, 2.0)]
    mask = silence_mask(2.0, [(0.5, 1.5)])
    pauses = find_pauses(spans, mask, 0.2)
    assert len(pauses) == 1
    assert pauses[0].duration_s == pytest.approx(1.0, abs=0.011)


def test_gap_without_silence_is_no_pause_and_short_silence_is_ignored() -> None:
    spans = [Span(0.0, 0.4), Span(0.8, 1.2), Span(1.3, 1.6)]
    mask = silence_mask(1.6, [(1.2, 1.3)])  # the 0.4 s recogniser gap is speech (e.g. a breathy onset)
    assert find_pauses(spans, mask, 0.2) == []


def test_fluency_measures() -> None:
    spans = [Span(0.0, 0.5), Span(0.5, 1.0), Span(2.0, 2.5), Span(2.5, 3.0)]
    pauses = find_pauses(spans, silence_mask(3.0, [(1.0, 2.0)]), 0.2)
    f = measure_fluency(spans, [2, 1, 1, 2], pauses)
    assert f.speech_duration_s == pytest.approx(3.0)
    assert f.speech_rate == pytest.approx(6 / 3.0)
    assert f.articulation_rate == pytest.approx(6 / 2.0, rel=0.02)
    assert f.mean_length_of_run == pytest.approx(2.0)
    assert f.total_pause_s == pytest.approx(1.0, abs=0.011) == f.longest_pause_s
    assert f.words_per_minute == pytest.approx(80.0)


def test_fluency_of_nothing_is_zero_not_nan() -> None:
    f = measure_fluency([], [], [])
    assert f.speech_rate == 0
    assert f.articulation_rate == 0
    assert f.mean_length_of_run == 0
    one = measure_fluency([Span(1.0, 1.0)], [1], [])
    assert all(math.isfinite(v) for v in (one.speech_rate, one.articulation_rate, one.words_per_minute))


def test_pause_similarity_properties() -> None:
    assert pause_similarity([0.0, 0.0], [0.0, 0.0]) == 1.0
    assert pause_similarity([0.5, 0.0, 1.0], [0.5, 0.0, 1.0]) == 1.0
    one = pause_similarity([1.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    two = pause_similarity([1.0, 1.0, 0.0], [0.0, 0.0, 0.0])
    three = pause_similarity([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    assert 1.0 > one > two > three > 0.0
    assert pause_similarity([0.0, 1.0], [1.0, 0.0]) < pause_similarity([1.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="junction"):
        pause_similarity([1.0], [1.0, 2.0])


def test_relative_gaps_are_tempo_independent() -> None:
    spans = [Span(0.0, 0.3), Span(0.8, 1.1), Span(1.1, 1.4)]
    pauses = find_pauses(spans, silence_mask(1.4, [(0.3, 0.8)]), 0.2)
    slow_spans = [Span(s.start_s * 2, s.end_s * 2) for s in spans]
    slow_pauses = find_pauses(slow_spans, silence_mask(2.8, [(0.6, 1.6)]), 0.2)
    fast, slow = relative_gaps(spans, pauses), relative_gaps(slow_spans, slow_pauses)
    assert fast.keys() == slow.keys() == {1}
    assert fast[1] == pytest.approx(slow[1], rel=0.05)


def test_rate_component_falls_both_ways() -> None:
    assert rate_component(1.0) == 1.0
    assert rate_component(0.9) > rate_component(0.7) > rate_component(0.5) > rate_component(0.3)
    assert rate_component(1.2) > rate_component(1.5) > rate_component(2.0)
    assert rate_component(1.5) == pytest.approx(rate_component(1 / 1.5))
    assert rate_component(0.0) == 0.0
    assert rate_component(float("nan")) == 0.0
