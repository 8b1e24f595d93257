"""One sentence splitter for every service: English, Korean (punctuated or not) and most scripts.

TTS speaks one sentence at a time and the summarizer ranks, chunks and
compresses sentences, so both cut text the same way:

- `.`, `?`, `!` and `…` (with any closing quotes or brackets) end a sentence
  when whitespace or the end of the text follows; the full-width `。！？` end
  one even without a space; a line break always does.
- A period does not end a sentence after a common abbreviation ("Dr.",
  "e.g.", "p.m."), after a single capital initial ("J. Smith"), inside a
  number ("3.5"), or when the next word starts with a lower-case Latin letter
  (a continuation, as after "approx." or "etc." mid-sentence).
- Korean speech-to-text output often has no punctuation at all. A long
  unpunctuated run containing Hangul (`KO_SPLIT_MIN_CHARS`) is also cut after
  the endings that close a spoken sentence (…습니다, …어요, …데요, …죠,
  …까요, …나요 …) when a space follows; a piece shorter than
  `KO_MIN_PIECE_CHARS` stays with its neighbour, since endings such as "요"
  and "다" also close a word mid-sentence now and then.

It is rule-based on purpose: the runtime stays light (no morphological
analyser in the TTS or gateway images), and the same text is cut the same way
in every service whether or not kiwipiepy is installed. The summarizer does
its morphological work (kiwipiepy) inside the sentences found here.
"""

from __future__ import annotations

import re

#: Words whose trailing period is not a sentence end (compared in lower case, without the period).
ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "no",
        "fig",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
        "corp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "a.m",
        "p.m",
    }
)

_END = re.compile(
    r"""(?:[.!?…]+["'”’)\]」』]*(?=\s|$))   # western end marks, then closing quotes, before a space
      | (?:[。！？]+["'”’)\]」』]*)          # full-width end marks, no space needed
      | (?:\n\s*)                            # a line break
    """,
    re.VERBOSE,
)
# Spoken Korean sentence endings, for unpunctuated STT text: a cut after them when a space follows.
# The ending closes a longer word: "다" or "요" standing alone is an adverb or a particle ("다 보냈어요").
_KO_ENDINGS = re.compile(
    r"(?<=[\uac00-\ud7a3])"
    r"(?:습니다|니다|어요|아요|에요|예요|해요|세요|네요|데요|군요|지요|까요|나요|래요|거든요|죠|요|다)(?=\s)"
)
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_SPACES = re.compile(r"[ \t\r\f\v]+")
#: Unpunctuated runs containing Hangul longer than this (characters) are cut at spoken endings.
KO_SPLIT_MIN_CHARS = 40
#: Pieces shorter than this (characters, spaces excluded at the ends) stay with their neighbour.
KO_MIN_PIECE_CHARS = 8


def normalize_text(text: str) -> str:
    """Collapses runs of spaces and blank lines, keeping single line breaks (they end sentences)."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def _is_abbreviation(text: str, end: int) -> bool:
    """Whether the period ending at `end` belongs to an abbreviation or an initial."""
    match = re.search(r"([\w.]+)\.$", text[:end])
    if match is None:
        return False
    word = match.group(1)
    if word.lower() in ABBREVIATIONS:
        return True
    return len(word) == 1 and word.isupper() and word.isascii()


def _continues(text: str, end: int) -> bool:
    """Whether the word after a period at `end` starts with a lower-case Latin letter."""
    rest = text[end:].lstrip(" \t")
    return bool(rest) and "a" <= rest[0] <= "z"


def _spoken_cuts(text: str, start: int, stop: int) -> list[int]:
    """Cut offsets after spoken Korean endings inside text[start:stop] (an unpunctuated run)."""
    run = text[start:stop]
    if len(run.strip()) < KO_SPLIT_MIN_CHARS or not _HANGUL.search(run):
        return []
    cuts: list[int] = []
    last = start
    for match in _KO_ENDINGS.finditer(run):
        cut = start + match.end()
        if len(text[last:cut].strip()) < KO_MIN_PIECE_CHARS:
            continue  # the piece so far is too short: keep it with what follows
        if len(text[cut:stop].strip()) < KO_MIN_PIECE_CHARS:
            break  # the rest would be too short: it stays with this piece
        cuts.append(cut)
        last = cut
    return cuts


def sentence_spans(text: str) -> list[tuple[str, bool]]:
    """`text` cut after each sentence end, whitespace kept: (piece, ends_a_sentence) pairs.

    The pieces concatenate back to `text`; the last one may not end a sentence
    (SSML text that an element continues, e.g. "Call <say-as>...").
    """
    ends: list[int] = []
    for match in _END.finditer(text):
        mark = match.group(0)
        if (
            mark.startswith(".")
            and mark.rstrip("\"'”’)]」』") == "."
            and (_is_abbreviation(text, match.start() + 1) or _continues(text, match.end()))
        ):
            continue
        ends.append(match.end())
    spans: list[tuple[str, bool]] = []
    start = 0
    for end in [*ends, len(text)]:
        for cut in _spoken_cuts(text, start, end):
            spans.append((text[start:cut], True))
            start = cut
        if end > start:
            spans.append((text[start:end], end in ends))
        start = end
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of plain `text`, whitespace-normalized, in order; empty text gives an empty list."""
    return [piece.strip() for piece, _ in sentence_spans(normalize_text(text)) if piece.strip()]
