"""Word normalisation and syllable counting.

Reference text and recognised words must compare equal when the learner said
the reference word, whatever the recogniser did with case, punctuation or
digits ("Yesterday." vs "yesterday", "10" vs "ten"), so both sides go through
the same `normalize_word`. Punctuation is not thrown away blindly: a comma or
full stop after a reference word marks a place where a native reader may
pause, which the fluency measures use.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SYMBOLS = {"&": "and", "%": "percent", "+": "plus", "@": "at"}
#: Punctuation after a word where a reader may pause without it being a disfluency.
_BREAK_PUNCTUATION = set(',.;:!?…—–)"”')
_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3


_BE = {"i'm": "am", "you're": "are", "we're": "are", "they're": "are"}
_IS = ("it", "that", "what", "he", "she", "there", "here", "who", "where", "how")
_WILL = ("i", "you", "we", "they", "he", "she", "it", "that")
_HAVE = ("i", "you", "we", "they", "could", "should", "would", "might", "must")
_WOULD = ("i", "you", "we", "they", "he", "she")
_NOT = (
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "have",
    "has",
    "had",
    "could",
    "should",
    "would",
    "must",
    "need",
)
#: English contractions and what they stand for, so "we're" can match the reference's "we are".
CONTRACTIONS: dict[str, tuple[str, str]] = {
    **{c: (c.split("'")[0], full) for c, full in _BE.items()},
    **{f"{w}'s": (w, "is") for w in _IS},
    **{f"{w}'ll": (w, "will") for w in _WILL},
    **{f"{w}'ve": (w, "have") for w in _HAVE},
    **{f"{w}'d": (w, "would") for w in _WOULD},
    **{f"{w}n't": (w, "not") for w in _NOT},
    "let's": ("let", "us"),
    "won't": ("will", "not"),
    "can't": ("can", "not"),
    "cannot": ("can", "not"),
    "shan't": ("shall", "not"),
}


def match_contractions(heard: list[str], reference: list[str]) -> list[list[str]]:
    """Groups of `heard` words rewritten in the reference's form where only contraction differs.

    Whisper writes "we're" for a clearly read "we are" (and may expand a
    contraction the text has); both are the same words, so a heard
    contraction whose expansion is in the reference is split, and a heard
    pair whose contraction is in the reference is joined. The result has one
    list per heard word: its words in the reference's form (two for a split;
    for a join, the joined word and then an empty list for the second word).
    """
    ref_words = set(reference)
    ref_pairs = set(itertools.pairwise(reference))
    out: list[list[str]] = []
    k = 0
    while k < len(heard):
        word = heard[k]
        expansion = CONTRACTIONS.get(word)
        if expansion is not None and word not in ref_words and expansion in ref_pairs:
            out.append(list(expansion))
            k += 1
            continue
        if k + 1 < len(heard):
            pair = (word, heard[k + 1])
            joined = next((c for c, e in CONTRACTIONS.items() if e == pair and c in ref_words), None)
            if joined is not None and pair not in ref_pairs:
                out += [[joined], []]
                k += 2
                continue
        out.append([word])
        k += 1
    return out


@dataclass(frozen=True)
class Token:
    """One normalised word of a text, and whether punctuation follows it (a natural break)."""

    word: str
    raw: str
    break_after: bool = False


def number_words(n: int) -> list[str]:
    """English words for 0 <= n < 1,000,000 ("21" -> twenty one), as Whisper may write digits."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return [_ONES[hundreds], "hundred"] + (number_words(rest) if rest else [])
    thousands, rest = divmod(n, 1000)
    return [*number_words(thousands), "thousand"] + (number_words(rest) if rest else [])


def _strip(word: str) -> str:
    word = unicodedata.normalize("NFKC", word).lower().replace("’", "'").replace("‘", "'")
    word = "".join(ch for ch in word if ch.isalnum() or ch == "'")
    return word.strip("'")


def normalize_words(raw: str, language: str = "en") -> list[str]:
    """The normalised words of one raw token (a token can expand: "10" -> ten, "well-known" -> 2 words)."""
    out: list[str] = []
    for part in re.split(r"[\s\-/]+", raw):
        if part in _SYMBOLS:
            out.append(_SYMBOLS[part])
            continue
        word = _strip(part)
        if not word:
            continue
        if language == "en" and word.isdigit() and len(word) <= 6:
            out.extend(number_words(int(word)))
        else:
            out.append(word)
    return out


def tokenize(text: str, language: str = "en") -> list[Token]:
    """Splits text into normalised tokens, remembering punctuation breaks after each."""
    tokens: list[Token] = []
    for raw in text.split():
        words = normalize_words(raw, language)
        if not words:
            if tokens and any(ch in _BREAK_PUNCTUATION for ch in raw):
                last = tokens[-1]
                tokens[-1] = Token(last.word, last.raw, True)
            continue
        brk = raw.rstrip()[-1:] in _BREAK_PUNCTUATION
        for i, word in enumerate(words):
            tokens.append(Token(word, raw, brk and i == len(words) - 1))
    return tokens


@functools.cache
def _cmudict_vowels(path: str) -> dict[str, int]:
    """Word -> number of vowel phones (= syllables) of its first pronunciation in a CMUdict file."""
    counts: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2 or "(" in parts[0]:
                continue
            counts[parts[0]] = sum(1 for p in parts[1:] if p[:2] in _ARPABET_VOWELS)
    return counts


_ARPABET_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}


def default_dictionary_path() -> Path | None:
    """The CMU dictionary shipped in the pocketsphinx wheel, if pocketsphinx is installed."""
    try:
        import pocketsphinx
    except ImportError:
        return None
    path = Path(pocketsphinx.get_model_path("en-us/cmudict-en-us.dict"))
    return path if path.exists() else None


def _vowel_groups(word: str) -> int:
    """Heuristic syllable count of a Latin-script word: vowel groups, silent final e."""
    w = word.lower()
    groups = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1
    return max(1, groups)


def syllable_count(word: str, language: str = "en", dictionary: Path | None = None) -> int:
    """Syllables in a normalised word: CMUdict vowels (English), Hangul blocks (Korean), else a heuristic."""
    if not word:
        return 0
    hangul = sum(1 for ch in word if _HANGUL_FIRST <= ord(ch) <= _HANGUL_LAST)
    if hangul:
        return hangul
    if language == "en":
        path = dictionary or default_dictionary_path()
        if path is not None:
            count = _cmudict_vowels(str(path)).get(word)
            if count:
                return count
    if any(ord(ch) > 0x2E80 for ch in word):  # CJK: one syllable per character
        return len(word)
    return _vowel_groups(word)
