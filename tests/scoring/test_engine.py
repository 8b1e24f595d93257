"""Phone GOP from the pocketsphinx forced alignment: ordering, fallbacks, confidence engine."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from soriflow.scoring.engines.base import WordToAssess
from soriflow.scoring.engines.confidence import ConfidenceEngine
from soriflow.scoring.engines.pocketsphinx import PocketsphinxEngine
from soriflow.scoring.timing import Span

from .speech import SENTENCE, aligned_words, piper

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine() -> PocketsphinxEngine:
    e = PocketsphinxEngine()
    e.load()
    return e


def items(
    words: list[str], spans: list[Span] | None = None, heard: list[str] | None = None
) -> list[WordToAssess]:
    return [
        WordToAssess(w, spans[k] if spans else None, 0.9, heard[k] if heard else None)
        for k, w in enumerate(words)
    ]


def test_native_words_score_high_with_phones(engine: PocketsphinxEngine) -> None:
    words = ["i", "bought", "a", "new", "toy", "at", "the", "store", "yesterday"]
    results = engine.assess(piper(SENTENCE), items(words), threading.Event())
    assert [r.method for r in results] == ["gop"] * len(words)
    assert float(np.mean([r.score for r in results])) > 85
    toy = results[4]
    assert [p.phone for p in toy.phones] == ["T", "OY"]
    assert toy.span is not None
    assert 0.3 < toy.span.start_s < toy.span.end_s < 1.3
    assert all(p.gop <= 0 for r in results for p in r.phones)  # relative to the frame's best senone


def test_clean_word_scores_above_a_replaced_word(engine: PocketsphinxEngine) -> None:
    clean = piper(SENTENCE)
    replaced = piper("I bought a new boat at the store yesterday.")
    words = ["i", "bought", "a", "new", "toy", "at", "the", "store", "yesterday"]
    spans = [w.span for w in aligned_words(replaced, "i bought a new boat at the store yesterday")]
    ok = engine.assess(clean, items(words), threading.Event())[4]
    # what a recogniser heard ("boat") is aligned; the expected "toy" is scored in its place
    bad = engine.assess(
        replaced, items(words, spans, heard=[*words[:4], "boat", *words[5:]]), threading.Event()
    )
    assert ok.score > 85 > 60 > bad[4].score
    assert bad[4].span is not None
    assert abs(bad[4].span.start_s - spans[4].start_s) < 0.1
    assert min(r.score for k, r in enumerate(bad) if k != 4) > 75  # neighbours keep good boundaries


def test_words_missing_from_the_dictionary_fall_back_to_confidence(engine: PocketsphinxEngine) -> None:
    audio = piper("I bought a zorbleflump at the store.")
    heard = aligned_words(piper("I bought a new toy at the store."), "i bought a new toy at the store")
    spans = [
        heard[0].span,
        heard[1].span,
        heard[2].span,
        Span(heard[3].span.start_s, heard[4].span.end_s),
        heard[5].span,
        heard[6].span,
        heard[7].span,
    ]
    words = ["i", "bought", "a", "zorbleflump", "at", "the", "store"]
    results = engine.assess(audio, items(words, spans), threading.Event())
    assert results[3].method == "confidence"
    assert results[3].score == pytest.approx(90.0)
    assert results[3].note is not None
    assert "not in the pronunciation dictionary" in results[3].note
    assert all(r.method == "gop" for k, r in enumerate(results) if k != 3)


def test_unalignable_audio_falls_back_without_crashing(engine: PocketsphinxEngine) -> None:
    noise = (np.random.default_rng(1).standard_normal(16000) * 0.05).astype(np.float32)
    results = engine.assess(
        noise, items(["yesterday", "tomorrow"], [Span(0.0, 0.5), Span(0.5, 1.0)]), threading.Event()
    )
    assert len(results) == 2
    for r in results:
        assert 0 <= r.score <= 100
        assert r.method == "gop" or (r.note and "could not be aligned" in r.note)


def test_cancel_is_honoured(engine: PocketsphinxEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    from soriflow.errors import Cancelled

    with pytest.raises(Cancelled):
        engine.assess(piper(SENTENCE), items(["i", "bought"]), cancel)


def test_confidence_engine() -> None:
    results = ConfidenceEngine().assess(
        np.zeros(10, dtype=np.float32),
        [WordToAssess("a", None, 0.42), WordToAssess("b", None, None)],
        threading.Event(),
    )
    assert results[0].score == pytest.approx(42.0)
    assert results[0].method == "confidence"
    assert results[1].score == 100.0
    assert results[1].note


def test_relative_to_the_reference_credits_what_the_native_finds_hard(engine: PocketsphinxEngine) -> None:
    from soriflow.scoring.engines.pocketsphinx import NATIVE_GOP

    words = ["i", "bought", "a", "new", "toy", "at", "the", "store", "yesterday"]
    native = engine.assess(piper(SENTENCE), items(words), threading.Event())
    floor = engine.phone_score(NATIVE_GOP)
    for word in native:  # the native against itself: every phone at least a typical native phone
        rescored = engine.relative(word, word.phones)
        assert all(p.score >= floor - 1e-6 for p in rescored.phones)
        assert rescored.score >= word.score
    replaced = piper("I bought a new boat at the store yesterday.")
    spans = [w.span for w in aligned_words(replaced, "i bought a new boat at the store yesterday")]
    heard = [*words[:4], "boat", *words[5:]]
    bad = engine.assess(replaced, items(words, spans, heard=heard), threading.Event())[4]
    assert engine.relative(bad, native[4].phones).score < 60  # a wrong word stays wrong
    assert ConfidenceEngine().relative(bad, native[4].phones) is bad
