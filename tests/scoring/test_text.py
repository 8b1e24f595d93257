"""Normalisation of reference and recognised words, and syllable counts."""

from __future__ import annotations

import pytest

from soriflow.scoring.text import (
    CONTRACTIONS,
    match_contractions,
    normalize_words,
    number_words,
    syllable_count,
    tokenize,
)


def test_tokenize_strips_case_and_punctuation_and_marks_breaks() -> None:
    tokens = tokenize("Hello, World! It's 10 o'clock — well-known.")
    assert [t.word for t in tokens] == ["hello", "world", "it's", "ten", "o'clock", "well", "known"]
    assert [t.break_after for t in tokens] == [True, True, False, False, True, False, True]


def test_recognised_and_reference_forms_agree() -> None:
    assert normalize_words("Yesterday.") == ["yesterday"]
    assert normalize_words("“Store”") == ["store"]
    assert normalize_words("don’t") == ["don't"]
    assert normalize_words("...") == []
    assert normalize_words("21") == ["twenty", "one"]
    assert normalize_words("&") == ["and"]


def test_numbers_in_words() -> None:
    assert number_words(0) == ["zero"]
    assert number_words(305) == ["three", "hundred", "five"]
    assert number_words(2024) == ["two", "thousand", "twenty", "four"]


def test_digits_stay_digits_outside_english() -> None:
    assert normalize_words("10", "ko") == ["10"]


@pytest.mark.parametrize(
    ("word", "language", "expected"),
    [
        ("yesterday", "en", 3),  # CMU dictionary
        ("store", "en", 1),
        ("beautiful", "en", 3),
        ("zorbleflump", "en", 3),  # not in the dictionary: vowel groups
        ("make", "fr", 1),  # silent final e
        ("안녕하세요", "ko", 5),  # one syllable per Hangul block
        ("", "en", 0),
    ],
)
def test_syllable_count(word: str, language: str, expected: int) -> None:
    assert syllable_count(word, language) == expected


def test_contractions_are_written_as_the_reference_writes_them() -> None:
    assert match_contractions(["so", "we're", "going"], ["so", "we", "are", "going"]) == [
        ["so"],
        ["we", "are"],
        ["going"],
    ]
    assert match_contractions(["we", "are", "going"], ["we're", "going"]) == [["we're"], [], ["going"]]
    # nothing to reconcile: the forms already agree, or the reference has neither
    assert match_contractions(["we", "are"], ["we", "are"]) == [["we"], ["are"]]
    assert match_contractions(["don't", "go"], ["please", "go"]) == [["don't"], ["go"]]
    assert CONTRACTIONS["won't"] == ("will", "not")
    assert CONTRACTIONS["it's"] == ("it", "is")
