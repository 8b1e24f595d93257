"""The one sentence splitter every service uses (soriflow.text.sentences)."""

from __future__ import annotations

import pytest

from soriflow.summarizer import text as summarizer_text
from soriflow.text.sentences import sentence_spans, split_sentences
from soriflow.tts import document


def test_abbreviations_initials_numbers_and_continuations_do_not_end_sentences() -> None:
    assert split_sentences("Hello Dr. Smith. I paid $3.50 today!  Is it ok?\nJ. R. Tolkien wrote it.") == [
        "Hello Dr. Smith.",
        "I paid $3.50 today!",
        "Is it ok?",
        "J. R. Tolkien wrote it.",
    ]
    assert split_sentences("It costs approx. three dollars, e.g. the fee. Fine.") == [
        "It costs approx. three dollars, e.g. the fee.",
        "Fine.",
    ]


def test_korean_punctuated_and_spoken_without_punctuation() -> None:
    assert split_sentences("보험 처리 되나요? 네, 됩니다. 감사합니다!次です。最後") == [
        "보험 처리 되나요?",
        "네, 됩니다.",
        "감사합니다!次です。",
        "最後",
    ]
    spoken = (
        "제가 어제 자동차 사고가 났는데요 보험 처리가 되는지 확인하고 싶어서 전화했습니다 상대방이 박았어요"
    )
    assert split_sentences(spoken) == [
        "제가 어제 자동차 사고가 났는데요",
        "보험 처리가 되는지 확인하고 싶어서 전화했습니다",
        "상대방이 박았어요",
    ]
    # "다" on its own is the adverb "all", not an ending.
    assert split_sentences(
        "설계사가 가입할 때는 다 보장된다고 해 놓고 이제 와서 안 된다는 게 말이 됩니까"
    ) == ["설계사가 가입할 때는 다 보장된다고 해 놓고 이제 와서 안 된다는 게 말이 됩니까"]
    # Short unpunctuated Korean stays one sentence.
    assert split_sentences("네 맞아요 감사합니다") == ["네 맞아요 감사합니다"]


@pytest.mark.parametrize(
    "text",
    [
        "Hello Dr. Smith. Bye.",
        "제가 어제 자동차 사고가 났는데요 보험 처리가 되는지 확인하고 싶어서 전화했습니다 상대방이 박았어요",
        "Call <now> please.  Then. ",
        "",
    ],
)
def test_spans_concatenate_back_to_the_text(text: str) -> None:
    assert "".join(piece for piece, _ in sentence_spans(text)) == text


def test_tts_and_summarizer_use_the_same_splitter() -> None:
    """One source: the services import the shared function, so "Dr." is the same for both."""
    assert summarizer_text.split_sentences is split_sentences
    assert document.sentence_spans is sentence_spans
