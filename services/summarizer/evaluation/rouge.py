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

For Korean the measure that matters is on **morphemes** (`morphs`, Kiwi's
analysis, punctuation dropped): 보험료를 and 보험료는 share the morpheme 보험료
and the particles count as their own tokens, as with MeCab-based Korean
ROUGE. For English, `content_f1` is the F1 of content-word lemmas (lemminflect;
function words and the inquiry template's words — customer, asks, requests,
complains, whether — left out), which is what a one-line summary has to get
right.

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

_PUNCTUATION_TAGS = frozenset({"SF", "SP", "SS", "SE", "SO", "SW", "SB"})


def morpheme_tokens(text: str) -> list[str]:
    """Kiwi morphemes of (Korean) text, punctuation dropped, Latin lower-cased."""
    from ..nlp import morphemes

    return [m.form.lower() for m in morphemes(text) if m.tag not in _PUNCTUATION_TAGS]


def content_lemmas(text: str) -> list[str]:
    """One canonical lemma per English content word (the shortest lemma), template words left out."""
    from ..grounding import EN_STOPWORDS, EN_TEMPLATE_WORDS
    from ..nlp import english_lemmas, english_words

    out: list[str] = []
    for word in english_words(text):
        if word.lower() in EN_STOPWORDS:
            continue
        lemmas = english_lemmas(word)
        if lemmas & EN_TEMPLATE_WORDS:
            continue
        out.append(min(lemmas, key=lambda lemma: (len(lemma), lemma)))
    return out


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


def rouge_scores(prediction: str, reference: str, language: str = "") -> dict[str, float]:
    """F1 of ROUGE-1, -2 and -L on both tokenizations: keys like `rouge1_words`, `rougeL_chars`.

    Korean (`language="ko"`) adds ROUGE on morphemes (`rouge1_morphs`, ...); English adds
    `content_f1` (content-word lemmas).
    """
    tokenizers = dict(TOKENIZERS)
    if language == "ko":
        tokenizers["morphs"] = morpheme_tokens
    scores: dict[str, float] = {}
    for name, tokenize in tokenizers.items():
        pred, ref = tokenize(prediction), tokenize(reference)
        scores[f"rouge1_{name}"] = rouge_n(pred, ref, 1).f1
        scores[f"rouge2_{name}"] = rouge_n(pred, ref, 2).f1
        scores[f"rougeL_{name}"] = rouge_l(pred, ref).f1
    if language == "en":
        scores["content_f1"] = rouge_n(content_lemmas(prediction), content_lemmas(reference), 1).f1
    return scores
