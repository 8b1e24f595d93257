"""Sentence splitting for Korean and English (and most scripts), and cutting to engine limits.

Streaming speaks one sentence at a time, and every engine has a limit on the
text of one call (Google: 5,000 bytes), so text is cut at sentence ends:
`.`, `?`, `!`, `…` followed by a space or the end (Korean "…습니다." and
"…요?" included), the full-width `。！？` even without a space, and line
breaks. A period after a common abbreviation ("Dr.", "e.g.") or a single
capital initial ("J. Smith") does not end a sentence, and one inside a number
("3.5") never does. A sentence still over the limit is cut at the last clause
mark (`,;:、，`), else the last space, else (text with no spaces at all)
at a character boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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
_CLAUSE = re.compile(r"[,;:、，；：]\s")
_SPACES = re.compile(r"[ \t\r\f\v]+")


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


def sentence_spans(text: str) -> list[tuple[str, bool]]:
    """`text` cut after each sentence end, whitespace kept: (piece, ends_a_sentence) pairs.

    The pieces concatenate back to `text`; the last one may not end a sentence
    (SSML text that an element continues, e.g. "Call <say-as>...").
    """
    spans: list[tuple[str, bool]] = []
    start = 0
    for match in _END.finditer(text):
        if match.group(0) == "." and _is_abbreviation(text, match.end()):
            continue
        spans.append((text[start : match.end()], True))
        start = match.end()
    if start < len(text):
        spans.append((text[start:], False))
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of plain `text`, stripped, in order; empty text gives an empty list."""
    return [piece.strip() for piece, _ in sentence_spans(normalize_text(text)) if piece.strip()]


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut_at_bytes(text: str, max_bytes: int) -> int:
    """The largest character index whose prefix fits in `max_bytes` UTF-8 bytes."""
    encoded = text.encode("utf-8")[:max_bytes]
    return len(encoded.decode("utf-8", errors="ignore"))


def split_long(text: str, max_bytes: int) -> list[str]:
    """`text` in pieces of at most `max_bytes` UTF-8 bytes, cut at clause marks, then spaces."""
    if max_bytes < 4:
        raise ValueError("max_bytes must leave room for at least one character")
    pieces: list[str] = []
    rest = text.strip()
    while utf8_len(rest) > max_bytes:
        limit = _cut_at_bytes(rest, max_bytes)
        window = rest[:limit]
        cut = 0
        for match in _CLAUSE.finditer(window):
            cut = match.start() + 1
        if cut < limit // 3:  # a clause mark near the start would leave a tiny piece: prefer a space
            space = window.rfind(" ")
            cut = space if space > 0 else (cut or limit)
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


def pack(sizes: Iterable[int], max_bytes: int, separator_bytes: int = 1) -> list[range]:
    """Groups consecutive items (by their byte sizes) so that each group fits in `max_bytes`.

    Items are never reordered or split; an item over the limit forms its own group (the
    caller has cut items to the limit beforehand).
    """
    groups: list[range] = []
    start, total = 0, 0
    sizes = list(sizes)
    for i, size in enumerate(sizes):
        if i > start and total + separator_bytes + size > max_bytes:
            groups.append(range(start, i))
            start, total = i, size
        else:
            total = size if i == start else total + separator_bytes + size
    if sizes:
        groups.append(range(start, len(sizes)))
    return groups
