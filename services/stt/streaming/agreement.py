"""LocalAgreement-2: commit the words two consecutive decodes agree on.

Whisper is not a streaming model: each decode of a growing buffer may
rewrite its last words. Following whisper_streaming (Macháček et al., 2023),
a word is committed only once two consecutive hypotheses agree on it (the
longest common prefix of the uncommitted parts); committed words never
change, so what a client shows as stable never flickers, and the uncommitted
tail is shown as the tentative rest.

Each new hypothesis covers the buffer, which may still hold audio of words
already committed; those are dropped by time (words whose middle lies before
the end of the last committed word) and by text (an n-gram of up to 5 words at the
start that repeats the end of the committed text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from soriflow.stt.engines.base import Word

#: Slack when comparing a new word's start with the last committed end, in seconds.
_TIME_SLACK_S = 0.1
_MAX_NGRAM = 5
_PUNCT = re.compile(r"[^\w']+")


def norm(word: str) -> str:
    """A word as compared between hypotheses: lower case, punctuation stripped."""
    return _PUNCT.sub("", word.lower())


@dataclass
class LocalAgreement:
    """The committed words of one utterance and the tentative tail of the last hypothesis."""

    committed: list[Word] = field(default_factory=list)
    tentative: list[Word] = field(default_factory=list)
    #: End time of the last committed word, across utterances (seconds from stream start).
    last_committed_end: float = 0.0

    def _fresh(self, words: Sequence[Word]) -> list[Word]:
        """The hypothesis without the words it repeats from the committed text."""
        # By the middle of the word: word timestamps jitter by a few frames between decodes, so a
        # new word may start a little before the last committed one ended, but not its middle.
        new = [w for w in words if (w.start + w.end) / 2 > self.last_committed_end - _TIME_SLACK_S / 2]
        if new and self.committed and abs(new[0].start - self.last_committed_end) < 1.0:
            tail = [norm(w.word) for w in self.committed[-_MAX_NGRAM:]]
            head = [norm(w.word) for w in new[:_MAX_NGRAM]]
            for n in range(min(len(tail), len(head)), 0, -1):
                if tail[-n:] == head[:n]:
                    new = new[n:]
                    break
        return new

    def insert(self, words: Sequence[Word]) -> list[Word]:
        """Takes a new hypothesis; returns the words it newly commits."""
        new = self._fresh(words)
        agreed: list[Word] = []
        for previous, current in zip(self.tentative, new, strict=False):
            if norm(previous.word) != norm(current.word) or not norm(current.word):
                break
            agreed.append(current)
        self.tentative = new[len(agreed) :]
        self._commit(agreed)
        return agreed

    def commit_all(self, words: Sequence[Word] | None = None) -> list[Word]:
        """Ends the utterance: commits `words` (a final decode) or else the tentative tail."""
        rest = self._fresh(words) if words is not None else self.tentative
        self._commit(rest)
        self.tentative = []
        return list(rest)

    def _commit(self, words: Sequence[Word]) -> None:
        """Appends words, keeping times monotonic (two decodes may place a boundary a frame apart)."""
        for word in words:
            if self.committed and word.start < self.committed[-1].start:
                start = self.committed[-1].start
                word = replace(word, start=start, end=max(word.end, start))
            self.committed.append(word)
            self.last_committed_end = max(self.last_committed_end, word.end)

    def reset(self) -> None:
        """Starts the next utterance (the committed-time watermark stays)."""
        self.committed = []
        self.tentative = []

    @property
    def stable_text(self) -> str:
        return " ".join(w.word for w in self.committed)

    @property
    def text(self) -> str:
        return " ".join(w.word for w in (*self.committed, *self.tentative))

    @property
    def stability(self) -> float:
        """Share of the hypothesis's words that are committed (1 when there is nothing tentative)."""
        total = len(self.committed) + len(self.tentative)
        return len(self.committed) / total if total else 1.0
