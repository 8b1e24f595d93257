"""The grounding check: content words (Korean morphemes, English lemmas) must come from the source."""

from __future__ import annotations

import csv
from pathlib import Path

from soriflow.summarizer.engines.base import Task
from soriflow.summarizer.engines.extractive import ExtractiveEngine
from soriflow.summarizer.grounding import check_grounding, source_text
from soriflow.summarizer.styles import Style

EN_SOURCE = (
    "Hi, I had a small accident this morning and someone backed into my car in a parking lot. "
    "I want to know whether the repair is covered and if my premium will go up. They charged me twice."
)
KO_SOURCE = (
    "안녕하세요. 제가 어제 퇴근길에 접촉 사고가 났는데요. 상대방 보험사에서는 연락이 왔는데 "
    "제 보험으로도 자차 수리가 되는지 궁금합니다. 병원비가 삼십만 원 나왔어요."
)


def test_english_inventions_are_named() -> None:
    # What SmolLM2 wrote for inquiries it had never seen (issue reports).
    invented = check_grounding(
        "Your daughter has been added to your car insurance policy with a $100 deposit", EN_SOURCE, "en"
    )
    assert not invented.grounded
    assert invented.unsupported == ["daughter", "insurance", "policy", "100", "deposit"]
    assert check_grounding("The front bumper isn't broken", EN_SOURCE, "en").unsupported == [
        "front",
        "bumper",
    ]
    night = check_grounding("Customer says an accident happened last night", EN_SOURCE, "en")
    assert night.unsupported == ["last", "night"]


def test_english_paraphrase_within_lemmas_and_numbers_by_value_pass() -> None:
    assert check_grounding(
        "Customer asks whether the repairs are covered and if their premium goes up", EN_SOURCE, "en"
    ).grounded
    assert check_grounding("The customer has 2 charges for the accident", EN_SOURCE, "en").grounded
    assert check_grounding("", EN_SOURCE, "en").grounded


def test_korean_morphemes_numbers_and_the_callers_compounds() -> None:
    assert check_grounding("자차 수리 보험 처리 가능 여부 문의", KO_SOURCE, "ko").unsupported == ["처리"]
    assert check_grounding("자차 수리 보험 가능 여부 문의", KO_SOURCE, "ko").grounded
    # 30만 원 is 삼십만 원; 보험사를 / 보험사에서는 share the morpheme 보험사.
    assert check_grounding("병원비 30만 원 보험사 문의", KO_SOURCE, "ko").grounded
    assert check_grounding("병원비 40만 원 문의", KO_SOURCE, "ko").unsupported == ["40만"]
    # Garbage from unclear audio is never grounded.
    garbage = check_grounding("어깨비옷 콩타콩한 문의", KO_SOURCE, "ko")
    assert not garbage.grounded
    assert "어깨비옷" in garbage.unsupported
    # An English summary of a Korean call names nothing the caller said.
    assert not check_grounding("The customer asks about car insurance", KO_SOURCE, "ko").grounded


def test_other_languages_by_words_and_transcript_labels_are_not_source() -> None:
    assert check_grounding("voiture panne", "Ma voiture est en panne.", "fr").grounded
    assert check_grounding("voiture neuve", "Ma voiture est en panne.", "fr").unsupported == ["neuve"]
    text = source_text("agent: hello\ncustomer: my claim was denied", transcript=True)
    assert text == "hello\nmy claim was denied"
    assert check_grounding("customer claim denied", text, "en").grounded  # "customer" is a template word
    assert not check_grounding("agent claim", "hello\nmy claim was denied", "fr").grounded


def test_quotes_of_the_source_are_always_grounded() -> None:
    """TextRank quotes the source, in every style: the check must never flag the caller's own words."""
    engine = ExtractiveEngine()
    data = Path(__file__).resolve().parents[2] / "bench" / "data"
    for language in ("ko", "en"):
        with open(data / f"inquiries_{language}.csv", encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                for style in (Style.INQUIRY, Style.ABSTRACT, Style.BULLETS):
                    quote = engine.summarize(Task(row["input"], style, language, 128))
                    result = check_grounding(quote, row["input"], language)
                    assert result.grounded, (quote, result.unsupported)
