"""Aligning the reference words with the recognised words (edit distance).

Each reference word ends up correct (same word), substituted (another word
in its place), or omitted; recognised words left over are insertions. The
substitution cost falls with spelling similarity, so when counts differ the
recogniser's "stair" is paired with the reference "store" rather than with
an unrelated neighbour, which keeps the per-word feedback on the right word.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class Op(enum.Enum):
    MATCH = "match"
    SUBSTITUTION = "substitution"
    OMISSION = "omission"
    INSERTION = "insertion"


@dataclass(frozen=True)
class WordPair:
    """One step of the alignment: indices into the reference and recognised word lists."""

    op: Op
    ref: int | None
    hyp: int | None


def substitution_cost(a: str, b: str) -> float:
    """0 for equal words; 0.6 (similar spelling) up to 1.0 (nothing in common) otherwise."""
    if a == b:
        return 0.0
    return 0.6 + 0.4 * (1.0 - difflib.SequenceMatcher(None, a, b).ratio())


def align_words(reference: Sequence[str], recognized: Sequence[str]) -> list[WordPair]:
    """Minimum-cost alignment (insertion and omission cost 1) in reference order."""
    n, m = len(reference), len(recognized)
    cost = np.zeros((n + 1, m + 1))
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    sub = np.array([[substitution_cost(r, h) for h in recognized] for r in reference]).reshape(n, m)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(
                cost[i - 1, j - 1] + sub[i - 1, j - 1], cost[i - 1, j] + 1.0, cost[i, j - 1] + 1.0
            )
    pairs: list[WordPair] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and np.isclose(cost[i, j], cost[i - 1, j - 1] + sub[i - 1, j - 1]):
            op = Op.MATCH if sub[i - 1, j - 1] == 0 else Op.SUBSTITUTION
            pairs.append(WordPair(op, i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and np.isclose(cost[i, j], cost[i - 1, j] + 1.0):
            pairs.append(WordPair(Op.OMISSION, i - 1, None))
            i -= 1
        else:
            pairs.append(WordPair(Op.INSERTION, None, j - 1))
            j -= 1
    pairs.reverse()
    return pairs
