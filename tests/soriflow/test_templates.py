"""The one template language: fields, filters, literal braces, errors, and key patterns read backwards."""

from __future__ import annotations

import pytest

from soriflow.errors import InvalidArgument
from soriflow.text.templates import (
    MAX_RENDERED_CHARS,
    capture_pattern,
    placeholders,
    render,
)

SEED_REFERENCE = (
    "s3://standard-audio-file/{content_type}/level_{level}/{title|replace('_', ' ')}/audio_line_{line}.wav"
)


def test_the_seed_apps_reference_layout() -> None:
    key = "users/42/book/level_3/The_Little_Prince/audio_line_7.wav"
    fields = capture_pattern("users/{user}/{content_type}/level_{level}/{title}/audio_line_{line}.wav")
    match = fields.match(key)
    assert match is not None
    variables = match.groupdict()
    assert variables == {
        "user": "42",
        "content_type": "book",
        "level": "3",
        "title": "The_Little_Prince",
        "line": "7",
    }
    assert render(SEED_REFERENCE, variables) == (
        "s3://standard-audio-file/book/level_3/The Little Prince/audio_line_7.wav"
    )


@pytest.mark.parametrize(
    ("template", "value", "expected"),
    [
        ("{v|lower}", "The Little PRINCE", "the little prince"),
        ("{v|upper}", "ünïcode", "ÜNÏCODE"),
        ("{v|title}", "the little prince's rose", "The Little Prince's Rose"),
        ("{v|replace('_', ' ')|title}", "the_little_prince", "The Little Prince"),
        ('{v|replace("a", "b")|replace("b", "c")}', "abc", "ccc"),
        ("{v|replace(' ', '\\'')}", "a b", "a'b"),
        ("{v|replace('}', ')')}", "f{x}", "f{x)"),
        ("{v|urldecode}", "The%20Little%20Prince+%ED%95%9C", "The Little Prince+한"),
        ("{v|urlencode}", "book/The Little Prince?", "book/The%20Little%20Prince%3F"),
        ("{ v | lower | replace( 'a' , 'b' ) }", "AA", "bb"),
        ("{{{v}}}", "x", "{x}"),
        ("문의하신 내용이 {v} 맞으신가요?", "환불", "문의하신 내용이 환불 맞으신가요?"),
    ],
)
def test_filters(template: str, value: str, expected: str) -> None:
    assert render(template, {"v": value}) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{a} and {b}", "a, b have no value"),
        ("open { brace", "unmatched '{'"),
        ("close } brace", "unmatched '}'"),
        ("{v.__class__}", "is not a name"),
        ("{v[0]}", "is not a name"),
        ("{0}", "is not a name"),
        ("{v|format('x')}", "unknown filter 'format'"),
        ("{v|replace('a')}", "filter replace takes 2 argument(s)"),
        ("{v|lower('a')}", "filter lower takes 0 argument(s)"),
        ("{v|replace('', 'x')}", "non-empty string to replace"),
        ("{v|replace(a, b)}", "quoted strings"),
        ("{v|replace('a' 'b')}", "separated by commas"),
        ("{v|}", "is not a name"),
        ("{-v}", "is not a name"),
        ("{v-}", "is not a name"),
    ],
)
def test_errors_are_invalid_argument_naming_the_problem(template: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        render(template, {"v": "x"})


def test_non_strict_rendering_of_a_template_this_job_cannot_fill() -> None:
    assert render("s3://{bucket}/{missing}.wav", {"bucket": "b"}, strict=False) == ""
    with pytest.raises(InvalidArgument, match="unknown filter"):
        render("{bucket|nope}", {"bucket": "b"}, strict=False), "syntax errors are errors even so"


def test_urldecode_refuses_escapes_that_are_not_utf8() -> None:
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        render("{v|urldecode}", {"v": "%FF"})


def test_rendered_values_are_capped() -> None:
    template = "{v" + "|replace('a', 'aaaaaaaaaa')" * 7 + "}"
    with pytest.raises(InvalidArgument, match=f"over {MAX_RENDERED_CHARS} characters"):
        render(template, {"v": "aaaaaaaaaa"})


def test_stage_names_with_hyphens_are_names() -> None:
    assert render(
        "{picture-prompt|upper}, {stt-learner}", {"picture-prompt": "a cat", "stt-learner": "hi"}
    ) == ("A CAT, hi")
    with pytest.raises(InvalidArgument, match="a captured field is a word"):
        capture_pattern("users/{user-id}/{file}.wav")


def test_placeholders_in_order_of_first_use() -> None:
    assert placeholders("{b|lower} {a} {b}") == ["b", "a"]


def test_key_patterns_capture_one_segment_and_refuse_filters() -> None:
    pattern = capture_pattern("users/{user}/{file}.wav")
    assert pattern.match("users/kim/a.wav") is not None
    assert pattern.match("users/kim/sub/a.wav") is None
    with pytest.raises(InvalidArgument, match="cannot filter"):
        capture_pattern("users/{user|lower}/{file}.wav")
    with pytest.raises(InvalidArgument, match="twice"):
        capture_pattern("users/{user}/{user}.wav")
