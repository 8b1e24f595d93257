"""The faithful engine: inquiry lines compressed from the caller's own words, no model.

For `inquiry` in Korean and English it writes one line in the style of the
contact center's data — "자차 수리 보험 처리 여부 문의", "Customer asks
whether the repair is covered and if their premium will go up" — from the
sentences of the speaker in focus (see `faithful_ko` and `faithful_en`):
deterministic, a few milliseconds, and every content word comes from the
source. Other styles, partial summaries and other languages are TextRank's
(the extractive engine quotes sentences, which is faithful too), so this
engine can replace any summary that failed the grounding check.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

from soriflow.errors import Cancelled

from .. import faithful_en, faithful_ko, nlp
from ..grounding import check_grounding
from ..styles import Style
from .base import Engine, EngineInfo, Generation, OnText, Task
from .extractive import ExtractiveEngine, focus_sentences, trim_inquiry

log = logging.getLogger("soriflow.summarizer.engines")

#: Languages with an inquiry compressor.
LANGUAGES = ("ko", "en")


_INTENT_HEAD = re.compile(r"^Customer (?:asks|requests|complains(?: that|, asking)?|says) ")


def _capital(text: str) -> str:
    """First letter upper-cased, the rest as written (str.capitalize would lower "Wells Fargo")."""
    return text[:1].upper() + text[1:]


def shorter_than(line: str, source: str, quote: str) -> str:
    """`line`, or a shorter form of it, so that it is shorter than `source` (a read-back longer than
    what the caller said helps nobody): without "Customer" ("Asks how to ..."), the clause alone
    ("how to ..."), the quoted request sentence trimmed, the source trimmed."""
    source = source.strip()
    if line and len(line) < len(source):
        return line
    candidates = []
    if line:
        ask = (
            re.search(r" and ((?:asks|requests) .*)$", line)
            if line.startswith("Customer complains")
            else None
        )
        if ask:  # the complaint goes first: what the caller wants done stays
            candidates.append(f"Customer {ask.group(1)}")
        clause = _INTENT_HEAD.sub("", line)
        candidates += [_capital(line.removeprefix("Customer ")), _capital(clause)]
    candidates += [trim_inquiry(quote).rstrip("?!. "), trim_inquiry(source).rstrip("?!. ")]
    for candidate in candidates:
        if candidate and len(candidate) < len(source):
            return candidate
    return min((c for c in candidates if c), key=len, default=line)


class FaithfulEngine(Engine):
    """Rule-based compression over kiwipiepy morphemes and lemminflect lemmas; TextRank otherwise."""

    def __init__(self, chunk_words: int = 1536) -> None:
        self.info = EngineInfo(engine="faithful", model="kiwipiepy+lemminflect", device="cpu", languages=())
        self.extractive = ExtractiveEngine(chunk_words=chunk_words)
        self.chunk_words = chunk_words
        self._warm()

    def _warm(self) -> None:
        """Loads Kiwi's model and lemminflect's tables now, not in the first request (about 1-2 s)."""
        faithful_ko.inquiry_line(["자동차 보험 처리가 되는지 알고 싶어요?"])
        faithful_en.inquiry_line(["Does my policy cover the repair?"])
        nlp.inflect("cover", "VBZ")

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def input_budget(self, task: Task) -> int:
        return self.chunk_words

    def summarize(self, task: Task) -> str:
        if task.style is not Style.INQUIRY or task.partial or task.language not in LANGUAGES:
            return self.extractive.summarize(task)
        sentences = focus_sentences(task)
        if task.language == "ko":
            line = faithful_ko.inquiry_line(sentences)
        else:
            line = faithful_en.inquiry_line(sentences)
        source = " ".join(sentences)
        quote = self.extractive.summarize(task)
        line = shorter_than(" ".join(line.split()), source, quote)
        if task.language == "en" and not faithful_en.well_formed(line):
            # A rule left the line unfinished ("… will their"): the caller's own words instead.
            log.info("faithful line unfinished, quoting instead: %r", line)
            line = shorter_than("", source, quote)
        if not check_grounding(line, source, task.language).grounded:
            # A rule produced a word the caller did not say (a wrong inflection): quote instead.
            log.warning("faithful line not grounded, quoting instead: %r", line)
            line = shorter_than("", source, quote)
        return line

    def generate(self, tasks: Sequence[Task], cancel: threading.Event) -> list[Generation]:
        results = []
        for task in tasks:
            if cancel.is_set():
                raise Cancelled("summarization cancelled")
            text = self.summarize(task)
            results.append(Generation(text, self.count_tokens(task.text), self.count_tokens(text)))
        return results

    def stream(self, task: Task, cancel: threading.Event, on_text: OnText) -> Generation:
        """Sends the line at once (it is ready in milliseconds)."""
        generation = self.generate([task], cancel)[0]
        if generation.text:
            on_text(generation.text)
        return generation
