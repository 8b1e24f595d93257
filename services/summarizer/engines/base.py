"""The engine interface every summarizer engine implements.

The summarization pipeline (language routing, limits, chunking, map-reduce,
batching, streaming) only sees `Engine`, `Task` and `Generation`; whether a
seq2seq model, an instruction LM or TextRank writes the text is a setting.
Engines are synchronous and thread-safe: the service calls them from worker
threads, one batch at a time per model, and they check the cancel event
between generation steps.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..styles import Style

#: Receives each piece of streamed summary text; returns False to stop generating.
OnText = Callable[[str], bool]


@dataclass(frozen=True)
class Task:
    """One generation: the text to summarize and how."""

    text: str
    style: Style
    language: str
    max_new_tokens: int
    #: Instruction of Style.CUSTOM.
    prompt: str = ""
    #: Speaker whose words matter most (transcripts), e.g. "customer".
    focus_speaker: str = ""
    #: A map step of map-reduce: a partial summary of one chunk.
    partial: bool = False
    #: The text is a transcript, one "speaker: words" line per turn.
    transcript: bool = False
    #: A retry after a summary failed the grounding check: instruction LMs get the stricter prompt
    #: (`styles.STRICT_HINT`: only words and facts from the text); other engines ignore it.
    strict: bool = False
    #: Sampling temperature; 0 is greedy decoding (every summary, and Generate by default).
    temperature: float = 0.0
    #: Seed of the sampling when `temperature` is above 0 (same seed, same text).
    seed: int | None = None

    @property
    def sampled(self) -> bool:
        return self.temperature > 0


@dataclass(frozen=True)
class Generation:
    """What an engine wrote for one task, with token counts."""

    text: str
    input_tokens: int
    output_tokens: int
    #: Stopped by `max_new_tokens` before the model ended its answer (may end mid-sentence).
    truncated: bool = False


@dataclass(frozen=True)
class EngineInfo:
    """What an engine runs, for ListSummarizerModels and responses."""

    engine: str
    model: str
    adapter: str = ""
    device: str = "cpu"
    #: Languages it writes (ISO 639-1); empty means any.
    languages: tuple[str, ...] = ()


class Engine(abc.ABC):
    """A loaded summarizer."""

    info: EngineInfo
    #: Whether Style.CUSTOM prompts are followed (instruction LMs); others fall back to ABSTRACT.
    follows_prompts: bool = False
    #: Whether several tasks in one `generate` call run as one padded batch (worth batching).
    batched: bool = False
    #: Streams that may run at once: 1 for a model in this process (they share its cores and lock);
    #: more for a remote server that batches concurrent requests itself.
    concurrency: int = 1

    def speaks(self, language: str) -> bool:
        return not self.info.languages or language in self.info.languages

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model reads it (no template or special tokens)."""

    @abc.abstractmethod
    def input_budget(self, task: Task) -> int:
        """Most tokens of `task.text` that fit in one generation (the chunk size); 0 or less: none."""

    def prompt_room(self, task: Task) -> int:
        """Most tokens of `task.text` that fit the model's context beside the output, without the
        chunk size's cap (a Generate prompt is never chunked)."""
        return self.input_budget(task)

    @abc.abstractmethod
    def generate(self, tasks: Sequence[Task], cancel: threading.Event) -> list[Generation]:
        """Summaries of `tasks`, in order; stops early (raising Cancelled) when `cancel` is set."""

    @abc.abstractmethod
    def stream(self, task: Task, cancel: threading.Event, on_text: OnText) -> Generation:
        """Generates one summary, passing shaped text to `on_text` as it comes; returns the whole."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Frees the model."""
