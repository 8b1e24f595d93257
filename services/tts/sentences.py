"""Cutting text to engine limits, for TTS (sentences come from `soriflow.text.sentences`).

Streaming speaks one sentence at a time (the shared splitter decides where
sentences end, Korean included), and every engine has a limit on the text of
one call (Google: 5,000 bytes). A sentence still over the limit is cut at the
last clause mark (`,;:、，`), else the last space, else (text with no spaces at
all) at a character boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CLAUSE = re.compile(r"[,;:、，；：]\s")


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
