"""Error rates: CER for Korean (spacing and punctuation ignored), WER for English."""

from __future__ import annotations

import pytest

from soriflow.stt.evaluation import corpus_cer, corpus_error_rate


def test_korean_cer_ignores_spacing_and_punctuation_and_counts_characters() -> None:
    assert corpus_cer(["자동차 보험 처리가 되나요?"], ["자동차보험 처리가 되나요"]) == 0.0
    # One wrong particle is one character of eleven, not one word of four.
    assert corpus_cer(["자동차 보험 처리가 되나요?"], ["자동차 보험 처리는 되나요"]) == pytest.approx(1 / 11)
    # Corpus-level: errors over all reference characters.
    assert corpus_cer(["가나다라", "마바"], ["가나다라", "마사"]) == pytest.approx(1 / 6)


def test_error_rate_by_language() -> None:
    assert corpus_error_rate(["보험 청구"], ["보험청구"], "ko-KR") == ("cer", 0.0)
    kind, value = corpus_error_rate(["hello world"], ["hello word"], "en")
    assert kind == "wer"
    assert value == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no reference"):
        corpus_cer(["?!"], ["x"])
