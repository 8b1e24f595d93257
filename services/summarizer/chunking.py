"""Token-aware splitting of long inputs into chunks that fit the model.

Chunks end at sentence boundaries (transcript turns stay whole where they
fit, and a turn split across chunks keeps its speaker label on every piece).
A sentence longer than a chunk is split at word boundaries, and a "word"
longer than a chunk (a URL, a run of text without spaces) by characters, so
nothing is ever dropped: the chunks together hold every sentence of the input.
Token counts come from the engine's tokenizer; pieces are packed to 95% of
the budget because tokens at a join can differ slightly from the parts'.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .text import split_sentences

PACKING = 0.95
_SPEAKER = re.compile(r"^([^:\n]{1,40}):\s+")


def _split_long(unit: str, budget: int, count: Callable[[str], int]) -> list[str]:
    """Pieces of one over-long sentence, each within `budget` tokens."""
    words = unit.split()
    if len(words) <= 1:
        # No spaces to split at: halve by characters until the halves fit.
        if count(unit) <= budget or len(unit) <= 1:
            return [unit]
        middle = len(unit) // 2
        return _split_long(unit[:middle], budget, count) + _split_long(unit[middle:], budget, count)
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for word in words:
        size = count(word) + (1 if current else 0)
        if count(word) > budget:
            if current:
                pieces.append(" ".join(current))
                current, used = [], 0
            pieces.extend(_split_long(word, budget, count))
            continue
        if current and used + size > budget:
            pieces.append(" ".join(current))
            current, used = [], 0
            size = count(word)
        current.append(word)
        used += size
    if current:
        pieces.append(" ".join(current))
    return pieces


def _units(text: str, transcript: bool) -> list[str]:
    """Sentences of `text`; for transcripts, sentences labelled with their speaker."""
    if not transcript:
        return split_sentences(text)
    units: list[str] = []
    for line in text.splitlines():
        match = _SPEAKER.match(line)
        label, body = (match.group(0), line[match.end() :]) if match else ("", line)
        units.extend(f"{label}{sentence}" for sentence in split_sentences(body))
    return units


def split_into_chunks(
    text: str, budget: int, count: Callable[[str], int], *, transcript: bool = False
) -> list[str]:
    """Chunks of `text` of at most about `budget` tokens each, in order, covering all of it."""
    if budget < 1:
        raise ValueError("chunk budget must be positive")
    limit = max(1, int(budget * PACKING))
    separator = "\n" if transcript else " "
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for unit in _units(text, transcript):
        size = count(unit)
        pieces = [unit] if size <= limit else _split_long(unit, limit, count)
        label = _SPEAKER.match(unit) if transcript and len(pieces) > 1 else None
        if label:
            pieces = [pieces[0], *(f"{label.group(0)}{piece}" for piece in pieces[1:])]
        for piece in pieces:
            piece_size = size if len(pieces) == 1 else count(piece)
            if current and used + piece_size + 1 > limit:
                chunks.append(separator.join(current))
                current, used = [], 0
            current.append(piece)
            used += piece_size + (1 if len(current) > 1 else 0)
    if current:
        chunks.append(separator.join(current))
    return chunks
