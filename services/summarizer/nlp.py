"""Morphology for Korean (kiwipiepy) and lemmas for English (lemminflect), loaded once per process.

Both libraries ship their data inside their PyPI wheels, so nothing is
downloaded at run time:

- **kiwipiepy** (Kiwi): a Korean morphological analyser; its model comes in the
  `kiwipiepy_model` wheel. About 1 s to load, then well under a millisecond
  per sentence. Tags are the Sejong set (NNG common noun, VV verb, EF final
  ending, ...); the "-R"/"-I" regular/irregular marks Kiwi adds to verb tags
  are dropped here.
- **lemminflect**: English lemmas and inflections from a dictionary (AGID and
  corpus counts) with rules for unknown words. It also tells which parts of
  speech a word can be (`getAllLemmas` keys), which is what the grounding check
  and the faithful engine need; no statistical tagger is involved (spaCy's and
  NLTK's taggers download their models, which this project never does).
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Any

_LOCK = threading.Lock()
_KIWI: Any = None


@dataclass(frozen=True)
class Morph:
    """One Korean morpheme: surface form, coarse Sejong tag, character offset and length."""

    form: str
    tag: str
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length


def kiwi() -> Any:
    """The process's Kiwi analyser (loaded on first use; thread-safe to call)."""
    global _KIWI
    if _KIWI is None:
        with _LOCK:
            if _KIWI is None:
                from kiwipiepy import Kiwi

                _KIWI = Kiwi()
    return _KIWI


@functools.lru_cache(maxsize=4096)
def _analyse(text: str) -> tuple[Morph, ...]:
    tokens = kiwi().tokenize(text)
    return tuple(Morph(t.form, t.tag.split("-")[0], t.start, t.len) for t in tokens)


#: Texts longer than this (characters) are analysed without caching (a whole long call).
CACHE_MAX_CHARS = 2000


def morphemes(text: str) -> list[Morph]:
    """Kiwi's best analysis of `text` (cached for sentences and short texts)."""
    if len(text) > CACHE_MAX_CHARS:
        tokens = kiwi().tokenize(text)
        return [Morph(t.form, t.tag.split("-")[0], t.start, t.len) for t in tokens]
    return list(_analyse(text))


def join_korean(parts: list[tuple[str, str]]) -> str:
    """Morphemes (form, tag) joined into written Korean with Kiwi's conjugation rules."""
    return str(kiwi().join(parts))


#: Tags that make up the noun part of a Korean word (a head noun plus prefixes, suffixes, units).
NOUN_PART_TAGS = frozenset({"NNG", "NNP", "NR", "SN", "SL", "SH", "XSN", "XPN", "NNB"})
HEAD_NOUN_TAGS = frozenset({"NNG", "NNP", "NR", "SN", "SL", "SH"})


def korean_words(text: str, morphs: list[Morph]) -> list[list[Morph]]:
    """Morphemes grouped by whitespace-separated word (eojeol)."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    groups: list[list[Morph]] = [[] for _ in spans]
    index = 0
    for morph in morphs:
        while index < len(spans) - 1 and morph.start >= spans[index][1]:
            index += 1
        if spans:
            groups[index].append(morph)
    return [g for g in groups if g]


def noun_part(word: list[Morph], text: str) -> str:
    """The noun part of a Korean word as written ("보험료를" -> "보험료", "자차로도" -> "자차"), or "".

    Taken from the text, not from the morphemes, so that a compound Kiwi splits oddly
    (자/IC 차, 대/NNB 물) stays the caller's word.
    """
    end = -1
    saw_head = False
    for index, morph in enumerate(word):
        leading = morph.tag in ("IC", "MM", "XPN", "NNB") and index == 0 and len(word) > 1
        if morph.tag in NOUN_PART_TAGS or leading:
            if morph.tag == "NNB" and not saw_head and not leading:
                return ""
            saw_head = saw_head or morph.tag in HEAD_NOUN_TAGS
            end = morph.end
            continue
        break
    if not saw_head or end < 0:
        return ""
    return text[word[0].start : end]


# --- English ---------------------------------------------------------------------------------

_EN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+(?:[.,:]\d+)*")


def english_words(text: str) -> list[str]:
    """Words and numbers of English text, case kept ("$1,200.50" gives "1,200.50")."""
    return _EN_WORD.findall(text)


@functools.lru_cache(maxsize=16384)
def english_pos(word: str) -> dict[str, tuple[str, ...]]:
    """Parts of speech `word` can be (UPOS), each with its lemmas; empty when the dictionary lacks it."""
    import lemminflect

    found: dict[str, tuple[str, ...]] = dict(lemminflect.getAllLemmas(word))
    if not found and word[:1].isupper():
        found = dict(lemminflect.getAllLemmas(word.lower()))
    return found


@functools.lru_cache(maxsize=16384)
def english_lemmas(word: str) -> frozenset[str]:
    """Every lemma `word` may have (any part of speech), lower-cased; the word itself included."""
    lower = word.lower()
    lemmas = {lower}
    for forms in english_pos(word).values():
        lemmas.update(form.lower() for form in forms)
    if len(lemmas) == 1 and lower.endswith("s") and len(lower) > 3:
        lemmas.add(lower[:-1])  # a plural the dictionary does not know
    return frozenset(lemmas)


def inflect(lemma: str, tag: str) -> str:
    """`lemma` inflected for a Penn tag (VBZ, VBD, ...), or the lemma when lemminflect has none."""
    import lemminflect

    forms = lemminflect.getInflection(lemma, tag=tag)
    return str(forms[0]) if forms else lemma


# --- numbers ---------------------------------------------------------------------------------

_EN_NUMBERS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "million": 1_000_000,
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "twice": 2,
    "once": 1,
    "half": 0.5,
}


def english_number(word: str) -> float | None:
    """The value of a digit string or a number word ("1,200" and "twelve" alike), else None."""
    lower = word.lower()
    if lower in _EN_NUMBERS:
        return float(_EN_NUMBERS[lower])
    cleaned = lower.replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


_KO_DIGITS = {
    "영": 0,
    "공": 0,
    "일": 1,
    "이": 2,
    "삼": 3,
    "사": 4,
    "오": 5,
    "육": 6,
    "칠": 7,
    "팔": 8,
    "구": 9,
}
_KO_SMALL = {"십": 10, "백": 100, "천": 1000}
_KO_LARGE = {"만": 10_000, "억": 100_000_000, "조": 1_000_000_000_000}
_KO_NATIVE = {
    "한": 1,
    "하나": 1,
    "두": 2,
    "둘": 2,
    "세": 3,
    "셋": 3,
    "네": 4,
    "넷": 4,
    "다섯": 5,
    "여섯": 6,
    "일곱": 7,
    "여덟": 8,
    "아홉": 9,
    "열": 10,
}


def korean_number(text: str) -> float | None:
    """The value of a Korean number written in digits, Sino-Korean numerals or both ("3만", "삼십만")."""
    text = text.replace(",", "").replace(" ", "")
    if not text:
        return None
    if text in _KO_NATIVE:
        return float(_KO_NATIVE[text])
    total = 0.0
    section = 0.0
    digits = ""
    small = 0.0
    for char in text:
        if char.isdigit() or char == ".":
            digits += char
            continue
        if digits:
            small += float(digits)
            digits = ""
        if char in _KO_DIGITS:
            small += _KO_DIGITS[char]
        elif char in _KO_SMALL:
            section += (small or 1) * _KO_SMALL[char]
            small = 0
        elif char in _KO_LARGE:
            total += ((section + small) or 1) * _KO_LARGE[char]
            section = small = 0
        else:
            return None
    if digits:
        try:
            small += float(digits)
        except ValueError:
            return None
    return total + section + small
