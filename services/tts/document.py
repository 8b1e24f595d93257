"""The text of a request as sentences, and what each engine is given for them.

Plain text and SSML end up in one shape: a list of sentences, each a list of
pieces (a stretch of text, a kept-whole SSML element, or a pause), every piece
remembering the SSML containers around it (`<prosody>`, `<emphasis>`, ...).
Rendering a sentence for an engine then takes one of two forms:

- SSML (Google; espeak-ng when the input was SSML): the pieces re-serialised
  inside their containers, so `<prosody rate="slow">A. B.</prosody>` becomes
  `<prosody rate="slow">A.</prosody>` and `<prosody rate="slow">B.</prosody>`;
  lexicon entries become `<sub alias>` (Google) or respelled text (espeak-ng);
- plain text with pauses (piper, and espeak-ng for plain input): the text
  engines should say (`<sub>`'s alias, the words inside `<say-as>`) and each
  `<break>` as silence.

The written text of each sentence (what a caption shows) is kept alongside.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

from soriflow.errors import InvalidArgument
from soriflow.text.sentences import normalize_text, sentence_spans
from soriflow.tts import ssml as S
from soriflow.tts.lexicon import LanguageLexicon
from soriflow.tts.sentences import split_long, utf8_len

_WS = re.compile(r"\s+")

LexiconMode = Literal["rewrite", "sub"]


def has_words(text: str) -> bool:
    """Whether text has anything to pronounce: a letter, a digit, or a symbol engines name
    ("$", "%", emoji); punctuation and spaces alone are silence."""
    return any(
        unicodedata.category(c)[0] in "LN" or unicodedata.category(c) in ("Sc", "Sm", "So") for c in text
    )


@dataclass(frozen=True)
class Wrapper:
    """An SSML container around a piece (its tag and attributes)."""

    tag: str
    attrib: tuple[tuple[str, str], ...]

    def open(self) -> str:
        return S.open_tag(self.tag, dict(self.attrib))

    def close(self) -> str:
        return f"</{self.tag}>"


@dataclass(frozen=True)
class Piece:
    """Text, one element kept whole, or a pause, with the containers around it."""

    kind: Literal["text", "element", "pause"]
    #: What a reader sees: the text, or the element's text.
    written: str
    #: What engines without SSML say (a `<sub>`'s alias; the written text otherwise).
    spoken: str = ""
    #: The element's SSML (kind "element" and "pause").
    xml: str = ""
    pause_ms: int = 0
    wrappers: tuple[Wrapper, ...] = ()


@dataclass
class Sentence:
    pieces: list[Piece] = field(default_factory=list)

    @property
    def written(self) -> str:
        return _WS.sub(" ", "".join(p.written for p in self.pieces)).strip()

    def has_text(self) -> bool:
        return any(p.kind != "pause" and has_words(p.spoken) for p in self.pieces)


@dataclass(frozen=True)
class Pause:
    ms: int


#: What an engine is given for one sentence: SSML (one fragment, no <speak>) or text and pauses.
Part = str | Pause


@dataclass
class Rendered:
    """One sentence as a given engine receives it."""

    written: str
    ssml: bool
    #: SSML: one fragment (without `<speak>`); plain: text and pauses in order.
    parts: list[Part]

    def size(self) -> int:
        """UTF-8 bytes of the text sent to the engine (the limits are on this)."""
        return sum(utf8_len(p) for p in self.parts if isinstance(p, str)) + max(0, len(self.parts) - 1)


class Document:
    """A request's text cut into sentences; `max_piece_bytes` bounds any one stretch of text."""

    def __init__(self, sentences: list[Sentence], *, is_ssml: bool) -> None:
        self.sentences = [s for s in sentences if s.pieces]
        self.is_ssml = is_ssml

    @classmethod
    def from_text(cls, text: str, *, max_piece_bytes: int) -> Document:
        sentences: list[Sentence] = []
        for piece, _ in sentence_spans(normalize_text(text)):
            for part in split_long(piece, max_piece_bytes) if piece.strip() else []:
                sentences.append(Sentence([Piece("text", part, part)]))
        return cls(sentences, is_ssml=False)

    @classmethod
    def from_ssml(cls, root: ET.Element, *, max_piece_bytes: int) -> Document:
        builder = _Builder(max_piece_bytes)
        builder.walk(root, ())
        builder.close()
        return cls(builder.sentences, is_ssml=True)

    @property
    def written(self) -> str:
        return " ".join(s.written for s in self.sentences)

    def has_text(self) -> bool:
        return any(s.has_text() for s in self.sentences)

    def lexicon_matches(self, lexicon: LanguageLexicon | None) -> bool:
        return lexicon is not None and any(
            lexicon.matches(p.written) for s in self.sentences for p in s.pieces if p.kind == "text"
        )

    def render(
        self, *, ssml: bool, lexicon: LanguageLexicon | None, lexicon_mode: LexiconMode
    ) -> list[Rendered]:
        """Every sentence as SSML fragments (`ssml`) or text with pauses, lexicon applied."""
        return [
            _render_ssml(s, lexicon, lexicon_mode) if ssml else _render_plain(s, lexicon)
            for s in self.sentences
            if s.has_text() or any(p.kind == "pause" for p in s.pieces)
        ]


class _Builder:
    def __init__(self, max_piece_bytes: int) -> None:
        self.max_piece_bytes = max_piece_bytes
        self.sentences: list[Sentence] = []
        self.current = Sentence()

    def close(self) -> None:
        if self.current.pieces:
            self.sentences.append(self.current)
        self.current = Sentence()

    def text(self, text: str | None, wrappers: tuple[Wrapper, ...]) -> None:
        if not text:
            return
        for piece, ends in sentence_spans(_WS.sub(" ", text)):
            parts = (
                split_long(piece, self.max_piece_bytes) if utf8_len(piece) > self.max_piece_bytes else [piece]
            )
            for i, part in enumerate(parts):
                if part.strip() or self.current.pieces:
                    self.current.pieces.append(Piece("text", part, part, wrappers=wrappers))
                if i < len(parts) - 1 or ends:
                    self.close()

    def walk(self, element: ET.Element, wrappers: tuple[Wrapper, ...]) -> None:
        self.text(element.text, wrappers)
        for child in element:
            if child.tag in S.SENTENCE_ELEMENTS:
                self.close()
                self.walk(child, wrappers)
                self.close()
            elif child.tag in S.CONTAINERS:
                inner = (*wrappers, Wrapper(child.tag, tuple(child.attrib.items())))
                self.walk(child, inner)
            else:
                self.current.pieces.append(_atomic(child, wrappers))
            self.text(child.tail, wrappers)


def _atomic(element: ET.Element, wrappers: tuple[Wrapper, ...]) -> Piece:
    xml = S.serialize(element)
    if element.tag == "break":
        return Piece("pause", "", "", xml=xml, pause_ms=S.break_ms(element), wrappers=wrappers)
    written = _WS.sub(" ", S.element_text(element))
    spoken = element.get("alias", "") if element.tag == "sub" else written
    return Piece("element", written, spoken, xml=xml, wrappers=wrappers)


def _render_ssml(sentence: Sentence, lexicon: LanguageLexicon | None, mode: LexiconMode) -> Rendered:
    out: list[str] = []
    for wrappers, group in itertools.groupby(sentence.pieces, key=lambda p: p.wrappers):
        body: list[str] = []
        for piece in group:
            if piece.kind != "text":
                body.append(piece.xml)
            elif lexicon is None:
                body.append(S.escape_text(piece.written))
            elif mode == "sub":
                body.append(lexicon.to_ssml(piece.written))
            else:
                body.append(S.escape_text(lexicon.rewrite(piece.written)))
        opened = "".join(w.open() for w in wrappers)
        closed = "".join(w.close() for w in reversed(wrappers))
        out.append(f"{opened}{''.join(body)}{closed}")
    return Rendered(sentence.written, True, ["".join(out).strip()])


def _render_plain(sentence: Sentence, lexicon: LanguageLexicon | None) -> Rendered:
    parts: list[Part] = []
    text: list[str] = []

    def flush() -> None:
        joined = _WS.sub(" ", "".join(text)).strip()
        if joined:
            parts.append(joined)
        text.clear()

    for piece in sentence.pieces:
        if piece.kind == "pause":
            flush()
            if piece.pause_ms:
                parts.append(Pause(piece.pause_ms))
        elif piece.kind == "text" and lexicon is not None:
            text.append(lexicon.rewrite(piece.spoken))
        else:
            text.append(piece.spoken)
    flush()
    return Rendered(sentence.written, False, parts)


def check_sizes(rendered: list[Rendered], max_bytes: int, engine: str) -> None:
    """Every sentence must fit one engine call; the builder cut text, but markup adds bytes."""
    for i, sentence in enumerate(rendered):
        for part in sentence.parts:
            if isinstance(part, str) and utf8_len(part) + len("<speak></speak>") > max_bytes:
                raise InvalidArgument(
                    f"sentence {i + 1} is {utf8_len(part)} bytes as sent to {engine}, over its limit of "
                    f"{max_bytes} bytes (SSML markup counts): split the element that holds it"
                )
