"""ROUGE-1/2/L that works for Korean, on two explicit tokenizations.

`rouge-score`'s tokenizer keeps only [a-z0-9], so every Korean token
vanishes. Here ROUGE is computed twice:

- `words`: lower-cased runs of letters and digits (`\\w+`, any script). For
  Korean these are eojeol (word + particles), so 보험을 and 보험은 differ: a
  strict measure.
- `chars`: every non-space, non-punctuation character. For Korean each token
  is a Hangul syllable, which matches stems across particles and endings
  without a morphological analyser (the usual practice for Korean ROUGE
  without MeCab); for English it is a letter-level measure.

F1 is reported per example and averaged over the data set.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_WORD = re.compile(r"\w+", re.UNICODE)


def word_tokens(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def char_tokens(text: str) -> list[str]:
    return [
        c.lower()
        for c in text
        if not c.isspace() and not unicodedata.category(c).startswith(("P", "S", "Z", "C"))
    ]


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"words": word_tokens, "chars": char_tokens}


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    f1: float


def _f1(overlap: int, predicted: int, reference: int) -> Score:
    if predicted == 0 or reference == 0 or overlap == 0:
        return Score(0.0, 0.0, 0.0)
    p, r = overlap / predicted, overlap / reference
    return Score(p, r, 2 * p * r / (p + r))


def rouge_n(prediction: Sequence[str], reference: Sequence[str], n: int) -> Score:
    pred = Counter(tuple(prediction[i : i + n]) for i in range(len(prediction) - n + 1))
    ref = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
    overlap = sum((pred & ref).values())
    return _f1(overlap, sum(pred.values()), sum(ref.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: Sequence[str], reference: Sequence[str]) -> Score:
    return _f1(lcs_length(prediction, reference), len(prediction), len(reference))


def rouge_scores(prediction: str, reference: str) -> dict[str, float]:
    """F1 of ROUGE-1, -2 and -L on both tokenizations: keys like `rouge1_words`, `rougeL_chars`."""
    scores: dict[str, float] = {}
    for name, tokenize in TOKENIZERS.items():
        pred, ref = tokenize(prediction), tokenize(reference)
        scores[f"rouge1_{name}"] = rouge_n(pred, ref, 1).f1
        scores[f"rouge2_{name}"] = rouge_n(pred, ref, 2).f1
        scores[f"rougeL_{name}"] = rouge_l(pred, ref).f1
    return scores
