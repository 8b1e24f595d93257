"""ROUGE with Korean tokenizations and the CSV reader's encoding detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from soriflow.errors import InvalidArgument
from soriflow.summarizer.evaluation.data import read_pairs
from soriflow.summarizer.evaluation.rouge import char_tokens, lcs_length, rouge_scores, word_tokens


def test_rouge_counts_korean_tokens() -> None:
    same = rouge_scores("자동차 사고 보험 여부 확인 요청", "자동차 사고 보험 여부 확인 요청")
    assert all(value == pytest.approx(1.0) for value in same.values())
    # Particles differ (보험을 vs 보험): words miss them, syllables still match.
    scores = rouge_scores("자동차 사고 보험을 확인 요청", "자동차 사고 보험 여부 확인 요청")
    assert 0 < scores["rouge1_words"] < scores["rouge1_chars"] < 1
    assert scores["rougeL_chars"] > 0.8
    assert rouge_scores("환불 요청", "자동차 사고")["rouge1_chars"] == 0.0
    assert rouge_scores("", "자동차")["rougeL_words"] == 0.0


def test_rouge_numbers_for_english() -> None:
    scores = rouge_scores("the cat sat on the mat", "the cat lay on the mat")
    assert scores["rouge1_words"] == pytest.approx(5 / 6)
    assert scores["rouge2_words"] == pytest.approx(3 / 5)
    assert scores["rougeL_words"] == pytest.approx(5 / 6)
    assert word_tokens("Hello, World!") == ["hello", "world"]
    assert char_tokens("보험 여부!") == ["보", "험", "여", "부"]
    assert lcs_length(list("abcde"), list("ace")) == 3


ROWS = [
    ("어제 자동차 사고가 났는데 보험 처리가 되나요?", "자동차 사고 보험 처리 문의"),
    ("환불해 주세요", "환불 요청"),
]


def write_csv(path: Path, encoding: str, header: str = "input,summary") -> Path:
    lines = [header, *(f'"{a}","{b}"' for a, b in ROWS)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


@pytest.mark.parametrize(
    ("encoding", "reported"), [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("euc-kr", "euc-kr")]
)
def test_csv_encodings_are_detected(tmp_path: Path, encoding: str, reported: str) -> None:
    dataset = read_pairs(write_csv(tmp_path / "d.csv", encoding))
    assert dataset.encoding == reported
    assert [(e.input, e.summary) for e in dataset.examples] == ROWS


def test_csv_without_the_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="'summary'"):
        read_pairs(write_csv(tmp_path / "d.csv", "utf-8", header="Input,Target"))
    assert len(read_pairs(write_csv(tmp_path / "e.csv", "utf-8", header=" Input , SUMMARY ")).examples) == 2
