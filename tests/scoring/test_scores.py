"""The score formulas of scores.py against docs/scoring.md, with numbers worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from soriflow.scoring import scores
from soriflow.scoring.timing import rate_component

DOC = (Path(__file__).resolve().parents[2] / "docs" / "scoring.md").read_text(encoding="utf-8")


def test_the_documented_formulas_are_the_ones_in_the_code() -> None:
    """The doc's formula lines, verbatim: a weight changed on one side only fails here."""
    for line in (
        "overall = 0.4 · accuracy + 0.2 · completeness + 0.2 · c · fluency + 0.2 · c · prosody,"
        "   c = completeness / 100",
        "fluency = 100 × (0.4 · pause similarity + 0.4 · rate + 0.2 · runs)",
        "runs    = min(1, (reference pauses + 1) / (learner pauses + 1))",
        "with reference audio: 100 × (0.5 · pitch similarity + 0.2 · energy similarity"
        " + 0.3 · rhythm similarity)",
        "text only:            100 × (0.7 · clip((range − 1 st) / 3 st, 0, 1) + 0.3 · clip(nPVI / 50, 0, 1))",
        "`completeness = 100 × (correct + mispronounced) / reference words`",
    ):
        assert line in DOC, line
    assert scores.WEIGHTS == {"accuracy": 0.4, "fluency": 0.2, "completeness": 0.2, "prosody": 0.2}
    assert scores.FLUENCY_WEIGHTS == {"pauses": 0.4, "rate": 0.4, "runs": 0.2}
    assert scores.PROSODY_WEIGHTS == {"pitch": 0.5, "energy": 0.2, "rhythm": 0.3}
    assert scores.TEXT_PROSODY_WEIGHTS == {"range": 0.7, "rhythm": 0.3}


def test_overall_weights_fluency_and_prosody_by_coverage() -> None:
    # 0.4*80 + 0.2*50 + 0.2*0.5*70 + 0.2*0.5*60 = 32 + 10 + 7 + 6
    assert scores.overall(80, 70, 50, 60) == pytest.approx(55.0)
    assert scores.overall(100, 100, 100, 100) == pytest.approx(100.0)
    # a third of the sentence read perfectly: 40 + 0.2*(100/3) + 2 * 0.2*(1/3)*100 = 40 + 20
    assert scores.overall(100, 100, 100 / 3, 100) == pytest.approx(60.0)
    # nothing of the sentence read: fluent delivery of something else earns nothing
    assert scores.overall(90, 100, 0, 100) == pytest.approx(36.0)
    assert scores.overall(0, 0, 0, 0) == 0.0


def test_fluency_and_its_components() -> None:
    # 100 * (0.4*0.5 + 0.4*1.0 + 0.2*0.25) = 20 + 40 + 5
    assert scores.fluency(0.5, 1.0, 0.25) == pytest.approx(65.0)
    assert scores.fluency(1.0, 1.0, 1.0) == pytest.approx(100.0)
    assert scores.runs_component(learner_pauses=3, allowed_pauses=1) == pytest.approx(0.5)  # 2/4
    assert scores.runs_component(learner_pauses=0, allowed_pauses=2) == 1.0  # fewer pauses: capped
    assert scores.runs_component(learner_pauses=1, allowed_pauses=1) == 1.0
    assert rate_component(1.0) == 1.0
    # exp(-ln(1.5)^2 / (2 ln(1.5)^2)) = exp(-1/2), the same for 1/1.5
    assert rate_component(1.5) == pytest.approx(math.exp(-0.5))
    assert rate_component(1 / 1.5) == pytest.approx(0.6065, abs=1e-4)
    assert rate_component(0.0) == 0.0
    assert rate_component(float("nan")) == 0.0


def test_prosody_with_and_without_reference_audio() -> None:
    # 100 * (0.5*0.8 + 0.2*0.5 + 0.3*0.6) = 40 + 10 + 18
    assert scores.prosody_with_reference(0.8, 0.5, 0.6) == pytest.approx(68.0)
    # range 2.5 st -> (2.5-1)/3 = 0.5; nPVI 25 -> 0.5: 100 * (0.7*0.5 + 0.3*0.5)
    assert scores.prosody_text_only(2.5, 25.0) == pytest.approx(50.0)
    assert scores.prosody_text_only(0.5, 100.0) == pytest.approx(30.0)  # range under 1 st: 0; nPVI capped
    assert scores.prosody_text_only(10.0, 0.0) == pytest.approx(70.0)  # range capped at 4 st


def test_completeness_accuracy_and_clipping() -> None:
    assert scores.completeness(8, 9) == pytest.approx(800 / 9)
    assert scores.completeness(0, 0) == 0.0  # no reference words: no division by zero
    assert scores.completeness(10, 9) == 100.0
    assert scores.accuracy([50.0, 70.0, 90.0]) == pytest.approx(70.0)
    assert scores.accuracy([]) == 0.0
    assert scores.clip100(-5.0) == 0.0
    assert scores.clip100(150.0) == 100.0
    assert scores.clip100(float("nan")) == 0.0
    assert scores.clip100(float("inf")) == 0.0
    assert scores.fluency(2.0, 2.0, 2.0) == 100.0
