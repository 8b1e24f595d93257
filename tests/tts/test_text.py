"""Text handling without engines: sentences, limits, templates, lexicon, SSML, documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from soriflow.errors import InvalidArgument
from soriflow.text.sentences import split_sentences
from soriflow.tts.document import Document, Pause
from soriflow.tts.lexicon import Lexicon
from soriflow.tts.sentences import pack, split_long, utf8_len
from soriflow.tts.ssml import parse_ssml
from soriflow.tts.templates import placeholders, render
from soriflow.tts.voices import match_score, normalize_language

# --------------------------------------------------------------------------- sentences


def test_english_sentences_keep_abbreviations_numbers_and_initials() -> None:
    text = "Hello Dr. Smith. I paid $3.50 today!  Is it ok?\nJ. R. Tolkien wrote it... Really."
    assert split_sentences(text) == [
        "Hello Dr. Smith.",
        "I paid $3.50 today!",
        "Is it ok?",
        "J. R. Tolkien wrote it...",
        "Really.",
    ]


def test_korean_and_cjk_sentences() -> None:
    text = "문의하신 내용이 환불 맞으신가요? 네, 맞습니다. 감사합니다!次の文です。最後"
    assert split_sentences(text) == [
        "문의하신 내용이 환불 맞으신가요?",
        "네, 맞습니다.",
        "감사합니다!次の文です。",
        "最後",
    ]


def test_line_breaks_end_sentences_and_blank_text_has_none() -> None:
    assert split_sentences("Title\n\nBody text") == ["Title", "Body text"]
    assert split_sentences("  \n\t ") == []


def test_split_long_prefers_clauses_then_spaces_and_respects_utf8_bytes() -> None:
    text = "first part, second part, " + "word " * 40
    pieces = split_long(text, 60)
    assert all(utf8_len(p) <= 60 for p in pieces)
    assert pieces[0] == "first part, second part,"
    assert " ".join(pieces).split() == text.split()
    korean = split_long("가" * 50, 40)  # 3 bytes a syllable, no spaces: cut at a character boundary
    assert [utf8_len(p) for p in korean] == [39, 39, 39, 33]


def test_pack_groups_consecutive_items_under_the_limit() -> None:
    assert pack([10, 10, 10, 50, 5], 25) == [range(0, 2), range(2, 3), range(3, 4), range(4, 5)]
    assert pack([], 10) == []


# --------------------------------------------------------------------------- templates


def test_template_renders_names_and_literal_braces() -> None:
    template = "문의하신 내용이 {summary} 맞으신가요? {{ok}}"
    assert placeholders(template) == ["summary"]
    assert render(template, {"summary": "환불", "unused": "x"}) == "문의하신 내용이 환불 맞으신가요? {ok}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{summary} and {name}", "summary, name have no value"),
        ("open { brace", "unmatched '{'"),
        ("{summary.__class__}", "is not a name"),
        ("{0}", "is not a name"),
    ],
)
def test_template_errors_are_invalid_argument(template: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(".", r"\.")):
        render(template, {"other": "x"})


# --------------------------------------------------------------------------- lexicon


def test_korean_entries_match_word_starts_with_endings_attached() -> None:
    ko = Lexicon.load().for_language("ko-KR")
    assert ko is not None
    assert ko.rewrite("문의하신 내용은 문의. 질문의 답") == "무니하신 내용은 무니. 질문의 답"
    assert ko.to_ssml("문의 <&>") == '<sub alias="무니">문의</sub> &lt;&amp;&gt;'


def test_latin_entries_match_whole_words_ignoring_case(tmp_path: Path) -> None:
    override = tmp_path / "lexicon.yaml"
    override.write_text("en:\n  SQL: sequel\n  Soriflow: ''\nko:\n  회의: 회이\n", encoding="utf-8")
    lexicon = Lexicon.load(override=override)
    en = lexicon.for_language("en-US")
    assert en is not None
    assert en.rewrite("SQL, sql and SQLite; Soriflow") == "sequel, sequel and SQLite; Soriflow"
    ko = lexicon.for_language("ko")
    assert ko is not None
    assert ko.rewrite("문의 회의") == "무니 회이"


def test_lexicon_file_errors_say_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"ko": ["not", "a", "mapping"]}', encoding="utf-8")
    with pytest.raises(ValueError, match="expected a mapping"):
        Lexicon.load(override=bad)
    with pytest.raises(ValueError, match="cannot read lexicon file"):
        Lexicon.load(override=tmp_path / "missing.yaml")
    assert Lexicon.load(builtin=False).for_language("ko") is None


# --------------------------------------------------------------------------- SSML


@pytest.mark.parametrize(
    ("ssml", "message"),
    [
        ("<speak>unclosed <emphasis>text</speak>", "mismatched tag"),
        ("<p>no speak root</p>", "root element must be <speak>"),
        ("<speak><video/>x</speak>", "<video> is not supported"),
        ('<speak>a <break time="soon"/></speak>', 'break time="soon"'),
        ('<speak>a <break time="20s"/></speak>', "over the 10 s maximum"),
        ('<speak><!DOCTYPE x [<!ENTITY a "b">]>&a;</speak>', "DOCTYPE"),
        ("<speak><sub>x</sub></speak>", "alias"),
    ],
)
def test_invalid_ssml_is_invalid_argument(ssml: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid SSML") as info:
        parse_ssml(ssml)
    assert message in info.value.message


def test_ssml_sentences_keep_containers_and_reduce_for_plain_engines() -> None:
    root = parse_ssml(
        '<speak xmlns="http://www.w3.org/2001/10/synthesis"><prosody rate="slow">One. 문의하신 '
        '<say-as interpret-as="characters">ABC</say-as></prosody><break time="700ms"/> done! '
        '<p>Para.</p><sub alias="Sori flow">Soriflow</sub> end.<!-- a comment --></speak>'
    )
    document = Document.from_ssml(root, max_piece_bytes=2500)
    ko = Lexicon.load().for_language("ko")
    google = document.render(ssml=True, lexicon=ko, lexicon_mode="sub")
    assert [s.written for s in google] == ["One.", "문의하신 ABC done!", "Para.", "Soriflow end."]
    assert google[0].parts == ['<prosody rate="slow">One.</prosody>']
    assert google[1].parts == [
        '<prosody rate="slow"> <sub alias="무니">문의</sub>하신 '
        '<say-as interpret-as="characters">ABC</say-as></prosody><break time="700ms" /> done!'
    ]
    plain = document.render(ssml=False, lexicon=ko, lexicon_mode="rewrite")
    assert plain[1].parts == ["무니하신 ABC", Pause(700), "done!"]
    assert plain[3].parts == ["Sori flow end."]


def test_plain_documents_cut_long_sentences_under_the_piece_limit() -> None:
    document = Document.from_text("word " * 600 + "end.", max_piece_bytes=500)
    rendered = document.render(ssml=False, lexicon=None, lexicon_mode="rewrite")
    assert len(rendered) >= 6
    assert all(r.size() <= 500 for r in rendered)


# --------------------------------------------------------------------------- languages


def test_language_tags_normalise_and_match_by_subtag_prefix() -> None:
    assert normalize_language("EN_us") == "en-US"
    assert normalize_language("cmn-latn-pinyin") == "cmn-Latn-pinyin"
    assert match_score("en-US", "en-US") == 3
    assert match_score("en", "en-GB") == 2
    assert match_score("ko-KR", "ko") == 1
    assert match_score("en-US", "en-GB") == 0


def test_ssml_namespaces_are_dropped_but_xml_lang_is_kept() -> None:
    root = parse_ssml(
        '<speak xmlns="http://www.w3.org/2001/10/synthesis"><lang xml:lang="fr-FR">bonjour</lang> hi.</speak>'
    )
    [sentence] = Document.from_ssml(root, max_piece_bytes=1000).render(
        ssml=True, lexicon=None, lexicon_mode="sub"
    )
    assert sentence.parts == ['<lang xml:lang="fr-FR">bonjour</lang> hi.']
