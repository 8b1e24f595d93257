"""Extractive summaries with TextRank: no model, any language.

Sentences (split with Korean endings in mind, see `text.split_sentences`)
are nodes of a graph whose edges are the cosine similarity of their TF-IDF
term vectors; PageRank over that graph ranks the sentences that share the
most content with the rest. Terms are lower-cased words for Latin and other
spaced scripts, and character bigrams inside Hangul words: Korean attaches
particles and endings to stems (보험이, 보험은, 보험을), so whole words rarely
match while their bigrams do.

What it writes per style:
- `inquiry`: the top-ranked sentence, with leading fillers ("네", "저기",
  "um") and the final period removed. For this style sentences that state a
  request (싶어요, 궁금합니다, 문의, 확인, "can you", "I want", a question
  mark) weigh 1.5 times their rank. This is a fallback: it quotes the
  customer, it does not rephrase ("자동차 사고 보험 여부 확인 요청" needs a
  fine-tuned model).
- `abstract`: the best sentences (about a third, at most three) in their
  original order.
- `bullets`: the best three to five sentences in order, one per bullet.
Greetings and thanks ("안녕하세요", "감사합니다", "thank you") are never
chosen while other sentences exist, and sentences of fewer than four words
(a car number, "yes, that's right") are weighted down. Bigrams of Korean
endings and particles (…니다, …어요, …에서) are not terms: every sentence
has them. Lengths are whitespace words: the
"tokens" of this engine.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Sequence

import numpy as np

from soriflow.errors import Cancelled

from ..styles import Style, format_bullets
from ..text import is_hangul_word, split_sentences, words
from .base import Engine, EngineInfo, Generation, OnText, Task

DAMPING = 0.85
_SPEAKER = re.compile(r"^([^:\n]{1,40}):\s+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "by",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "i",
        "you",
        "he",
        "she",
        "it",
        "we",
        "they",
        "me",
        "my",
        "your",
        "our",
        "their",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "so",
        "just",
        "very",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "have",
        "has",
        "had",
        "not",
        "no",
        "yes",
        "oh",
        "um",
        "uh",
        "well",
        "okay",
        "ok",
    ]
)
# Bigrams of Korean endings and particles (…입니다, …어요, …에서, …으로): shared by almost every
# sentence, they would link unrelated sentences the way stopwords do.
_KO_STOP_BIGRAMS = frozenset(
    [
        "니다",
        "습니",
        "입니",
        "합니",
        "됩니",
        "어요",
        "아요",
        "에요",
        "예요",
        "해요",
        "세요",
        "네요",
        "데요",
        "는데",
        "하고",
        "에서",
        "으로",
        "지요",
        "까요",
        "나요",
        "겠습",
        "했습",
        "있습",
        "없습",
        "드립",
        "드려",
        "주세",
        "거든",
        "은데",
        "는지",
        "어서",
        "아서",
        "해서",
        "이요",
    ]
)
# Phrases that state a request or a reason for calling; an inquiry line is such a sentence.
_REQUEST_CUE = re.compile(
    r"싶|궁금|문의|요청|확인|가능한|되나요|되는지|할 수 있|해 주세요|해주세요|부탁|전화(?:드렸|했)|"
    r"\bwant|\bwould like|\bneed\b|\bcan you|\bcould you|\bplease|\bcheck|\bwonder|\bcalling|\?",
    re.IGNORECASE,
)
#: Weight of a sentence with a request cue when choosing an inquiry line.
REQUEST_BONUS = 1.5
#: Sentences shorter than this many words are weighted down (a car number, "yes, that's right").
SHORT_WORDS = 4
_FILLER_SENTENCE = re.compile(
    r"^(?:네|예|아|음|어|안녕하세요|안녕하십니까|감사합니다|고맙습니다|수고하세요|여보세요|알겠습니다|"
    r"hi|hello|hey|thanks|thank you|thank you very much|good morning|good afternoon|bye|goodbye|yes|no|"
    r"okay|ok|sure|right)[\s.!?,~]*$",
    re.IGNORECASE,
)
_LEADING_FILLER = re.compile(
    r"^(?:(?:네|예|아|음|어|저|저기|그|그게|저기요|혹시|um|uh|so|well|oh|yeah|hi|hello|hey|okay|ok)[\s,.]+)+",
    re.IGNORECASE,
)


def sentence_terms(sentence: str) -> list[str]:
    """Index terms: Hangul words as character bigrams, other words whole (minus stopwords)."""
    terms: list[str] = []
    for word in words(sentence):
        if is_hangul_word(word):
            terms.extend(word[i : i + 2] for i in range(len(word) - 1)) if len(word) > 1 else terms.append(
                word
            )
        elif word not in _STOPWORDS and (len(word) > 1 or word.isdigit()):
            terms.append(word)
    return terms


def textrank(sentences: Sequence[str]) -> list[float]:
    """PageRank scores of `sentences` on their TF-IDF cosine-similarity graph (sum to 1)."""
    n = len(sentences)
    if n == 0:
        return []
    if n == 1:
        return [1.0]
    bags = [Counter(sentence_terms(s)) for s in sentences]
    df: Counter[str] = Counter()
    for bag in bags:
        df.update(bag.keys())
    vocab = {term: i for i, term in enumerate(df)}
    matrix = np.zeros((n, max(1, len(vocab))), dtype=np.float64)
    for row, bag in enumerate(bags):
        for term, count in bag.items():
            matrix[row, vocab[term]] = (1 + math.log(count)) * (math.log((1 + n) / (1 + df[term])) + 1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    weights = matrix @ matrix.T
    np.fill_diagonal(weights, 0.0)
    out_weight = weights.sum(axis=1, keepdims=True)
    # Sentences sharing nothing with the rest link to every sentence evenly (no rank sink).
    transition = np.where(out_weight > 0, weights / np.where(out_weight > 0, out_weight, 1), 1.0 / n)
    scores = np.full(n, 1.0 / n)
    for _ in range(100):
        updated = (1 - DAMPING) / n + DAMPING * transition.T @ scores
        if np.abs(updated - scores).sum() < 1e-9:
            scores = updated
            break
        scores = updated
    total = float(scores.sum())
    return [float(s) / total for s in scores]


def trim_inquiry(sentence: str) -> str:
    """A sentence read back as an inquiry line: no leading fillers, no final period."""
    trimmed = _LEADING_FILLER.sub("", sentence).strip() or sentence.strip()
    return trimmed.rstrip(" .。")


def _limit_words(text: str, max_words: int) -> str:
    parts = text.split()
    return text if len(parts) <= max_words else " ".join(parts[:max_words])


def candidates(task: Task) -> tuple[list[str], list[str]]:
    """(sentences, their speakers) of the task's text; transcript speaker labels stripped."""
    sentences: list[str] = []
    speakers: list[str] = []
    for line in task.text.splitlines():
        speaker = ""
        match = _SPEAKER.match(line) if task.transcript else None
        if match:
            speaker, line = match.group(1).strip(), line[match.end() :]
        for sentence in split_sentences(line):
            sentences.append(sentence)
            speakers.append(speaker)
    return sentences, speakers


def focus_sentences(task: Task) -> list[str]:
    """The sentences of the speaker in focus (all of them without a focus or when it never speaks)."""
    sentences, speakers = candidates(task)
    if task.focus_speaker:
        focus = task.focus_speaker.casefold()
        focused = [s for s, who in zip(sentences, speakers, strict=True) if who.casefold() == focus]
        return focused or sentences
    return sentences


class ExtractiveEngine(Engine):
    """TextRank over sentences; deterministic, instant, language-agnostic."""

    def __init__(self, chunk_words: int = 1536) -> None:
        self.info = EngineInfo(engine="extractive", model="textrank", device="cpu", languages=())
        self.chunk_words = chunk_words

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def input_budget(self, task: Task) -> int:
        return self.chunk_words

    def summarize(self, task: Task) -> str:
        sentences, speakers = candidates(task)
        if not sentences:
            return ""
        scores = textrank(sentences)
        eligible = [i for i, s in enumerate(sentences) if not _FILLER_SENTENCE.match(s)] or list(
            range(len(sentences))
        )
        if task.focus_speaker:
            focus = task.focus_speaker.casefold()
            focused = [i for i in eligible if speakers[i].casefold() == focus]
            eligible = focused or eligible
        style = Style.ABSTRACT if task.style is Style.CUSTOM else task.style
        inquiry = style is Style.INQUIRY and not task.partial

        def weight(i: int) -> float:
            length = min(1.0, (len(sentences[i].split()) + 1) / (SHORT_WORDS + 1))
            cue = REQUEST_BONUS if inquiry and _REQUEST_CUE.search(sentences[i]) else 1.0
            return scores[i] * length * cue

        ranked = sorted(eligible, key=lambda i: (-weight(i), i))
        budget = max(1, task.max_new_tokens)
        if inquiry:
            return _limit_words(trim_inquiry(sentences[ranked[0]]), budget)
        if style is Style.BULLETS and not task.partial:
            count = min(5, max(3, math.ceil(len(eligible) * 0.3)))
        elif task.partial:
            count = max(1, math.ceil(len(eligible) * 0.3))
        else:
            count = min(3, max(1, math.ceil(len(eligible) * 0.3)))
        chosen: list[int] = []
        used = 0
        for index in ranked[:count]:
            length = len(sentences[index].split())
            if chosen and used + length > budget:
                continue
            chosen.append(index)
            used += length
        chosen.sort()
        picked = [
            _limit_words(_LEADING_FILLER.sub("", sentences[i]).strip() or sentences[i], budget)
            for i in chosen
        ]
        if style is Style.BULLETS and not task.partial:
            return format_bullets(picked)
        return " ".join(picked)

    def generate(self, tasks: Sequence[Task], cancel: threading.Event) -> list[Generation]:
        results = []
        for task in tasks:
            if cancel.is_set():
                raise Cancelled("summarization cancelled")
            text = self.summarize(task)
            results.append(Generation(text, self.count_tokens(task.text), self.count_tokens(text)))
        return results

    def stream(self, task: Task, cancel: threading.Event, on_text: OnText) -> Generation:
        """Sends the summary sentence by sentence (the ranking needs the whole input first)."""
        generation = self.generate([task], cancel)[0]
        for piece in re.split(r"(?<=[.!?。\n])", generation.text):
            if piece and not on_text(piece):
                break
        return generation
