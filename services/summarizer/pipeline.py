"""Summarizing one request: validation, limits, language routing, map-reduce, batching, streaming.

This is the whole service minus gRPC, so the CLI runs exactly what the server
runs. A request goes through:

1. validation: empty input is INVALID_ARGUMENT; input over
   `summarizer_max_input_chars` (or `_tokens`) is RESOURCE_EXHAUSTED naming
   the limit and its setting;
2. language: the request's, else the transcript's, else detected from the script;
3. engine: the request's, else the configured model when it writes that
   language, else extractive TextRank;
4. map-reduce when the input does not fit one generation: the input is cut
   into token-counted chunks at sentence boundaries, each chunk is summarized
   (the chunks of one request batch together; each partial may use its share
   of one chunk, at least 32 tokens), and the partial summaries are summarized
   again in the requested style, repeated until they fit. Nothing
   is truncated silently; `chunk_count` says how many chunks there were;
5. generation through the engine's dynamic batcher, or streamed for
   SummarizeStream (the last step only: partial summaries are not the answer);
6. grounding (`grounding.py`): the summary's content words must occur in the
   source. With `summarizer_grounding=enforce` a summary from a model engine
   that fails is written again once with the stricter prompt (`Task.strict`),
   and if that fails too the faithful engine writes it; the result says which
   (`fallback`), what was unsupported and which engine was overruled. Custom
   prompts are checked and reported, never replaced (the caller asked for free
   text). When a stream's summary is replaced, its deltas were the rejected
   attempt: the final result's `summary` is the answer.
7. a deadline over all of it: `summarizer_generation_timeout_s`, or the
   request's own gRPC deadline when that is sooner. Past it the generation is
   cancelled (engines stop between tokens; a remote request is closed) and the
   request fails with DEADLINE_EXCEEDED naming the setting: a summary cut off
   mid-sentence would be read back to a caller as if it were whole.

`generate` (the Generate RPC) shares 1, 3 (instruction LMs only), 5 and 7 for
free text from a prompt: no styles, no map-reduce (a prompt that does not fit
the context is refused) and no grounding (the text is meant to be new).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from soriflow.concurrency import WorkQueue, run_blocking
from soriflow.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ResourceExhausted,
)
from soriflow.inputs import clean_text, has_words

from .batching import DynamicBatcher
from .chunking import split_into_chunks
from .engines.base import Engine, Generation, Task
from .engines.faithful import LANGUAGES as INQUIRY_LANGUAGES
from .grounding import check_grounding, source_text
from .metrics import CHUNKS, DEADLINES, GROUNDING, TIME_TO_FIRST_TEXT, TOKENS
from .settings import Settings
from .styles import Style, parse_bullets
from .text import detect_language, normalize_language

log = logging.getLogger("soriflow.summarizer")

T = TypeVar("T")

#: Rounds of summarizing summaries before giving up (each shrinks the text many times over).
MAX_REDUCE_ROUNDS = 6
#: Smallest length of a partial summary, in tokens (a quarter of the chunk size if that is less).
MIN_PARTIAL_TOKENS = 32
#: A chunk must leave at least this many tokens for text, else the settings cannot work.
MIN_BUDGET = 16
#: Part of a gRPC deadline kept to send our own DEADLINE_EXCEEDED before the client's timer fires.
DEADLINE_MARGIN = 0.1


@dataclass(frozen=True)
class SummaryRequest:
    """A summarization request, independent of protobuf."""

    text: str
    #: `text` is a transcript: one "speaker: words" line per turn.
    transcript: bool = False
    language: str = ""
    style: Style = Style.ABSTRACT
    prompt: str = ""
    max_output_tokens: int = 0
    engine: str = ""
    focus_speaker: str = ""


class Fallback(enum.Enum):
    """What the grounding check did (proto `SummaryFallback`)."""

    UNSPECIFIED = 0  # not checked
    NONE = 1
    STRICT_RETRY = 2
    FAITHFUL_ENGINE = 3


@dataclass(frozen=True)
class GroundingReport:
    """The grounding check of a result: of the returned summary, and of what it replaced."""

    checked: bool = False
    grounded: bool = False
    unsupported: list[str] = dataclasses.field(default_factory=list)
    fallback: Fallback = Fallback.UNSPECIFIED
    #: Unsupported terms of the rejected attempts (first and strict retry).
    rejected_terms: list[str] = dataclasses.field(default_factory=list)
    #: The engine whose summaries were rejected ("" when none were).
    rejected_engine: str = ""

    @property
    def first_grounded(self) -> bool:
        """Whether the first engine's own summary passed (what `eval` counts per engine)."""
        return self.checked and self.fallback is Fallback.NONE and self.grounded


@dataclass(frozen=True)
class SummaryResult:
    """A finished summary with what produced it."""

    summary: str
    bullets: list[str]
    model: str
    engine: str
    language: str
    input_tokens: int
    output_tokens: int
    chunk_count: int
    processing_ms: int
    grounding: GroundingReport = dataclasses.field(default_factory=GroundingReport)


#: Engines that write from a model (and can invent); the others only reuse the source's words.
MODEL_FREE_ENGINES = frozenset({"extractive", "faithful"})
#: Highest sampling temperature a Generate request may ask for (OpenAI's API takes 0-2 too).
MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class TextRequest:
    """A Generate request (free text from a prompt), independent of protobuf."""

    prompt: str
    max_output_tokens: int = 0
    temperature: float = 0.0
    seed: int | None = None
    engine: str = ""
    language: str = ""


@dataclass(frozen=True)
class TextResult:
    """Free text with what wrote it."""

    text: str
    model: str
    engine: str
    input_tokens: int
    output_tokens: int
    truncated: bool
    processing_ms: int
    #: The seed the text was sampled with; None for greedy decoding.
    seed: int | None = None


class Summarizer:
    """The loaded engines, their batchers, and the request pipeline."""

    def __init__(self, engines: dict[str, Engine], settings: Settings) -> None:
        if not engines:
            raise ValueError("no engines")
        self.engines = engines
        self.settings = settings
        self.default = next(iter(engines.values()))
        self.batchers = {
            name: DynamicBatcher(
                engine,
                max_batch_size=settings.summarizer_max_batch_size,
                max_wait_s=settings.summarizer_max_wait_ms / 1000,
                max_waiting=settings.summarizer_max_waiting,
                retry_after_s=settings.summarizer_retry_after_s,
            )
            for name, engine in engines.items()
            if engine.batched
        }
        # Local models stream one at a time (they share the cores); a remote server takes several.
        self.streams = WorkQueue(
            "summarizer-stream",
            max_concurrency=1,
            max_waiting=settings.summarizer_max_waiting,
            retry_after_s=settings.summarizer_retry_after_s,
        )
        self.engine_streams = {
            name: WorkQueue(
                f"summarizer-stream-{name}",
                max_concurrency=engine.concurrency,
                max_waiting=settings.summarizer_max_waiting,
                retry_after_s=settings.summarizer_retry_after_s,
            )
            for name, engine in engines.items()
            if engine.concurrency > 1
        }

    @classmethod
    def load(cls, settings: Settings, model: bool = True) -> Summarizer:
        """Loads the engines the settings name (without the model engine when `model` is false)."""
        from .engines import load_engines

        return cls(load_engines(settings, model=model), settings)

    # --- request handling --------------------------------------------------------------------

    def choose_engine(self, request: SummaryRequest, language: str) -> Engine:
        if request.engine:
            engine = self.engines.get(request.engine)
            if engine is None:
                raise InvalidArgument(
                    f"engine {request.engine!r} is not loaded on this server; "
                    f"it runs: {', '.join(self.engines)}"
                )
            return engine
        inquiry = self.engines.get(self.settings.summarizer_inquiry_engine)
        if request.style is Style.INQUIRY and inquiry is not None:
            # The faithful engine compresses Korean and English; other languages stay with the
            # model that writes them (or TextRank).
            writes = (
                language in INQUIRY_LANGUAGES
                if inquiry.info.engine == "faithful"
                else inquiry.speaks(language)
            )
            if writes:
                return inquiry
        if self.default.speaks(language):
            return self.default
        return self.engines["extractive"]

    def _check_chars(self, text: str, subject: str, remedy: str) -> None:
        """The character limit, which summaries and free text share."""
        limit = self.settings.summarizer_max_input_chars
        if len(text) > limit:
            raise ResourceExhausted(
                f"{subject} is {len(text)} characters; the limit is {limit} characters "
                f"(SORIFLOW_SUMMARIZER_MAX_INPUT_CHARS): {remedy} or raise the limit"
            )

    def _check_tokens(self, tokens: int, subject: str, remedy: str) -> None:
        """The token limit (when one is set), which summaries and free text share."""
        token_limit = self.settings.summarizer_max_input_tokens
        if token_limit is not None and tokens > token_limit:
            raise ResourceExhausted(
                f"{subject} is {tokens} tokens; the limit is {token_limit} tokens "
                f"(SORIFLOW_SUMMARIZER_MAX_INPUT_TOKENS): {remedy} or raise the limit"
            )

    def _output_tokens(self, requested: int) -> int:
        """The tokens to write: the request's, else the server default, within the cap."""
        max_new = requested or self.settings.summarizer_max_output_tokens
        cap = self.settings.summarizer_max_output_tokens_limit
        if max_new < 0 or max_new > cap:
            raise InvalidArgument(
                f"max_output_tokens must be between 0 (server default) and {cap} "
                "(SORIFLOW_SUMMARIZER_MAX_OUTPUT_TOKENS_LIMIT)"
            )
        return max_new

    def _validate(self, request: SummaryRequest) -> tuple[str, str, Style, int]:
        """(the text cleaned, its language, the style, the output tokens), or the error to answer."""
        if not request.text.strip():
            raise InvalidArgument(
                "empty input: send non-empty `text` or a `transcript` with text or segments"
            )
        self._check_chars(request.text, "input", "split the input")
        text = clean_text(request.text, "the input")
        if not has_words(text):
            # A "summary" of punctuation or invisible characters would hand garbage to a person.
            raise InvalidArgument("the input has no words to summarize (only punctuation or symbols)")
        style = request.style
        if style is Style.CUSTOM and not request.prompt.strip():
            raise InvalidArgument("SUMMARY_STYLE_CUSTOM needs a `prompt` saying what to write")
        max_new = self._output_tokens(request.max_output_tokens)
        language = normalize_language(request.language) or detect_language(request.text)
        return text, language, style, max_new

    async def summarize(
        self, request: SummaryRequest, *, time_remaining_s: float | None = None
    ) -> SummaryResult:
        """The summary; `time_remaining_s` is the request's own deadline (gRPC), if it has one."""
        return await self._within_deadline(self._summarize(request, None), time_remaining_s)

    async def generate(self, request: TextRequest, *, time_remaining_s: float | None = None) -> TextResult:
        """Free text from a prompt (the Generate RPC), under the same deadline as a summary.

        No grounding check: free text is meant to say what the source did not. No map-reduce
        either: a prompt that does not fit the model's context is refused, never cut.
        """
        return await self._within_deadline(self._generate_text(request), time_remaining_s, "generating")

    def _text_engine(self, request: TextRequest) -> Engine:
        """The instruction LM that writes free text: the request's, else the configured one."""
        if request.engine:
            engine = self.engines.get(request.engine)
            if engine is None:
                raise InvalidArgument(
                    f"engine {request.engine!r} is not loaded on this server; "
                    f"it runs: {', '.join(self.engines)}"
                )
            if not engine.follows_prompts:
                raise InvalidArgument(
                    f"the {request.engine} engine cannot write free text (it only summarizes); "
                    f"use an instruction LM: {', '.join(self._text_engines()) or 'none is loaded here'}"
                )
            return engine
        if not self.default.follows_prompts:
            raise FailedPrecondition(
                "this summarizer runs no instruction LM (SORIFLOW_SUMMARIZER_ENGINE="
                f"{self.settings.summarizer_engine}): set it to causal-lm, llama-cpp or openai to "
                "generate text"
            )
        return self.default

    def _text_engines(self) -> list[str]:
        return [name for name, engine in self.engines.items() if engine.follows_prompts]

    async def _generate_text(self, request: TextRequest) -> TextResult:
        started = time.perf_counter()
        if not request.prompt.strip():
            raise InvalidArgument("empty prompt: say what to write")
        self._check_chars(request.prompt, "the prompt", "shorten it")
        prompt = clean_text(request.prompt, "the prompt")
        if not has_words(prompt):
            raise InvalidArgument("the prompt has no words (only punctuation or symbols)")
        if not math.isfinite(request.temperature) or not 0 <= request.temperature <= MAX_TEMPERATURE:
            raise InvalidArgument(
                f"temperature must be between 0 (greedy) and {MAX_TEMPERATURE:g}, not {request.temperature}"
            )
        max_new = self._output_tokens(request.max_output_tokens)
        engine = self._text_engine(request)
        language = normalize_language(request.language)
        if language and not engine.speaks(language):
            raise FailedPrecondition(
                f"{engine.info.model} ({engine.info.engine}) writes {', '.join(engine.info.languages)}, not "
                f"{language!r}: configure a model that writes it (SORIFLOW_SUMMARIZER_MODEL, "
                "SORIFLOW_SUMMARIZER_LANGUAGES) rather than pass on text it cannot write"
            )
        seed = request.seed
        if request.temperature > 0 and seed is None:
            seed = secrets.randbelow(2**31)  # reported, so the text can be written again
        task = Task(
            text=prompt,
            style=Style.GENERATE,
            language=language or "en",
            max_new_tokens=max_new,
            temperature=request.temperature,
            seed=seed if request.temperature > 0 else None,
        )
        tokens = await asyncio.to_thread(engine.count_tokens, task.text)
        self._check_tokens(tokens, "the prompt", "shorten it")
        room = await asyncio.to_thread(engine.prompt_room, task)
        if tokens > room:
            raise ResourceExhausted(
                f"the prompt is {tokens} tokens; with max_output_tokens={max_new} the model's context "
                f"({getattr(engine, 'context', '?')} tokens) leaves room for {max(0, room)}: shorten the "
                "prompt or ask for fewer output tokens"
            )
        if engine.batched and not task.sampled:
            generation = (await self._generate(engine, [task]))[0]
        else:  # sampled, or an engine without a batcher: one at a time per model, queue bounded
            async with self.engine_streams.get(engine.info.engine, self.streams).slot():
                generation = (await run_blocking(lambda cancel: engine.generate([task], cancel)))[0]
        TOKENS.labels(engine.info.engine, "input").inc(generation.input_tokens)
        TOKENS.labels(engine.info.engine, "output").inc(generation.output_tokens)
        return TextResult(
            text=generation.text.strip(),
            model=engine.info.model,
            engine=engine.info.engine,
            input_tokens=generation.input_tokens,
            output_tokens=generation.output_tokens,
            truncated=generation.truncated,
            processing_ms=round((time.perf_counter() - started) * 1000),
            seed=task.seed,
        )

    async def _within_deadline(
        self, work: Coroutine[Any, Any, T], time_remaining_s: float | None, what: str = "summarizing"
    ) -> T:
        """Runs `work` under the generation deadline; past it, DEADLINE_EXCEEDED naming the setting."""
        setting = self.settings.summarizer_generation_timeout_s
        limit = setting
        if time_remaining_s is not None:
            limit = min(limit, max(0.0, time_remaining_s - min(DEADLINE_MARGIN, time_remaining_s / 10)))
        started = time.perf_counter()
        timeout = asyncio.timeout(limit)
        try:
            async with timeout:
                return await work
        except TimeoutError:
            if not timeout.expired():
                raise
            DEADLINES.inc()
            took = time.perf_counter() - started
            if limit < setting:
                raise DeadlineExceeded(
                    f"the request's deadline ({time_remaining_s:.1f} s) passed while {what} "
                    f"(stopped after {took:.1f} s); allow more time, ask for fewer max_output_tokens or "
                    "send less text"
                ) from None
            raise DeadlineExceeded(
                f"{what} took longer than {setting:g} s (SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S) and "
                "was stopped: ask for fewer max_output_tokens, send less text, or raise the setting"
            ) from None

    async def stream(
        self, request: SummaryRequest, *, time_remaining_s: float | None = None
    ) -> AsyncIterator[str | SummaryResult]:
        """Text deltas as they are generated, then the SummaryResult (their concatenation's summary)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def on_text(piece: str) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, piece)
            return True

        work = asyncio.create_task(self._within_deadline(self._summarize(request, on_text), time_remaining_s))
        work.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (piece := await queue.get()) is not None:
                yield piece
            yield work.result()
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work

    async def _summarize(
        self, request: SummaryRequest, on_text: Callable[[str], bool] | None
    ) -> SummaryResult:
        started = time.perf_counter()
        text, language, style, max_new = self._validate(request)
        request = dataclasses.replace(request, text=text)
        engine = self.choose_engine(request, language)
        if style is Style.CUSTOM and not engine.follows_prompts:
            style = Style.ABSTRACT
        task = Task(
            text=request.text,
            style=style,
            language=language,
            max_new_tokens=max_new,
            prompt=request.prompt,
            focus_speaker=request.focus_speaker,
            transcript=request.transcript,
        )
        tokens, budget = await asyncio.to_thread(
            lambda: (engine.count_tokens(task.text), engine.input_budget(task))
        )
        self._check_tokens(tokens, "input", "split the input")
        if budget < MIN_BUDGET:
            raise InvalidArgument(
                f"max_output_tokens={max_new} leaves no room for input in the model's context of "
                f"{getattr(engine, 'context', '?')} tokens: ask for fewer output tokens"
            )
        generations: list[Generation] = []
        chunk_count = 1
        final = task
        if tokens > budget:
            final, chunk_count = await self._map_reduce(engine, task, tokens, budget, generations)
        CHUNKS.observe(chunk_count)
        if on_text is None:
            last = await self._generate(engine, [final])
        else:
            last = [await self._stream(engine, final, on_text, started)]
        generations.extend(last)
        summary = last[0].text
        summary, engine, report = await self._ground(
            request, engine, final, style, language, summary, generations
        )
        input_tokens = sum(g.input_tokens for g in generations)
        output_tokens = sum(g.output_tokens for g in generations)
        TOKENS.labels(engine.info.engine, "input").inc(input_tokens)
        TOKENS.labels(engine.info.engine, "output").inc(output_tokens)
        return SummaryResult(
            summary=summary,
            bullets=parse_bullets(summary) if style is Style.BULLETS else [],
            model=engine.info.model,
            engine=engine.info.engine,
            language=language,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            chunk_count=chunk_count,
            processing_ms=round((time.perf_counter() - started) * 1000),
            grounding=report,
        )

    async def _ground(
        self,
        request: SummaryRequest,
        engine: Engine,
        final: Task,
        style: Style,
        language: str,
        summary: str,
        generations: list[Generation],
    ) -> tuple[str, Engine, GroundingReport]:
        """Checks `summary` against the request's text; retries and replaces it when enforcing."""
        mode = self.settings.summarizer_grounding
        if mode == "off":
            return summary, engine, GroundingReport()
        source = source_text(request.text, request.transcript)

        def check(text: str) -> tuple[bool, list[str]]:
            result = check_grounding(text, source, language)
            return result.grounded, result.unsupported

        grounded, unsupported = await asyncio.to_thread(check, summary)
        grounded = grounded and bool(summary.strip())  # an empty answer says nothing the caller said
        replaceable = (
            mode == "enforce" and engine.info.engine not in MODEL_FREE_ENGINES and style is not Style.CUSTOM
        )
        if grounded or not replaceable:
            GROUNDING.labels(engine.info.engine, "grounded" if grounded else "ungrounded").inc()
            return summary, engine, GroundingReport(True, grounded, unsupported, Fallback.NONE)
        GROUNDING.labels(engine.info.engine, "ungrounded").inc()
        rejected = list(unsupported)
        log.info(
            "%s summary not grounded (%s): retrying with the strict prompt", engine.info.engine, unsupported
        )
        retry = (await self._generate(engine, [dataclasses.replace(final, strict=True)]))[0]
        generations.append(retry)
        grounded, unsupported = await asyncio.to_thread(check, retry.text)
        if grounded and retry.text.strip():
            GROUNDING.labels(engine.info.engine, "strict_retry").inc()
            return (
                retry.text,
                engine,
                GroundingReport(True, True, [], Fallback.STRICT_RETRY, rejected, engine.info.engine),
            )
        rejected += [t for t in unsupported if t not in rejected]
        faithful = self.engines.get("faithful") or self.engines["extractive"]
        task = Task(
            text=request.text,
            style=style,
            language=language,
            max_new_tokens=final.max_new_tokens,
            focus_speaker=request.focus_speaker,
            transcript=request.transcript,
        )
        written = (await self._generate(faithful, [task]))[0]
        generations.append(written)
        grounded, unsupported = await asyncio.to_thread(check, written.text)
        GROUNDING.labels(engine.info.engine, "faithful_engine").inc()
        log.info("%s summary replaced by the %s engine's", engine.info.engine, faithful.info.engine)
        return (
            written.text,
            faithful,
            GroundingReport(
                True, grounded, unsupported, Fallback.FAITHFUL_ENGINE, rejected, engine.info.engine
            ),
        )

    async def _map_reduce(
        self, engine: Engine, task: Task, tokens: int, budget: int, generations: list[Generation]
    ) -> tuple[Task, int]:
        """Summarizes chunks until the partial summaries fit; returns the final task and the chunk count."""
        text, transcript = task.text, task.transcript
        chunk_count = 0
        for _ in range(MAX_REDUCE_ROUNDS):
            chunks = await asyncio.to_thread(
                split_into_chunks, text, budget, engine.count_tokens, transcript=transcript
            )
            chunk_count = chunk_count or len(chunks)
            # Each partial gets a share of one chunk's budget, so that the joined partials fit one
            # generation after a round where they can; never less than a useful sentence.
            share = max(min(MIN_PARTIAL_TOKENS, budget // 4), min(task.max_new_tokens, budget // len(chunks)))
            partial = dataclasses.replace(task, partial=True, transcript=transcript, max_new_tokens=share)
            results = await self._generate(engine, [dataclasses.replace(partial, text=c) for c in chunks])
            generations.extend(results)
            joined = "\n".join(r.text for r in results if r.text.strip())
            if not joined:
                raise Internal(f"the {engine.info.engine} engine wrote empty summaries for every chunk")
            text, transcript = joined, False
            shorter = await asyncio.to_thread(engine.count_tokens, text)
            log.info("map-reduce: %d tokens in %d chunks -> %d tokens", tokens, len(chunks), shorter)
            if shorter <= budget:
                return dataclasses.replace(task, text=text, transcript=False, focus_speaker=""), chunk_count
            if shorter >= tokens:
                raise Internal(
                    f"map-reduce made no progress ({tokens} -> {shorter} tokens): lower max_output_tokens"
                )
            tokens = shorter
        raise ResourceExhausted(
            f"the input needs more than {MAX_REDUCE_ROUNDS} rounds of summarizing summaries: split it "
            "or lower SORIFLOW_SUMMARIZER_MAX_INPUT_CHARS"
        )

    async def _generate(self, engine: Engine, tasks: Sequence[Task]) -> list[Generation]:
        batcher = self.batchers.get(engine.info.engine)
        if batcher is None:
            return await run_blocking(lambda cancel: engine.generate(tasks, cancel))
        return list(await asyncio.gather(*(batcher.submit(task) for task in tasks)))

    async def _stream(
        self, engine: Engine, task: Task, on_text: Callable[[str], bool], started: float
    ) -> Generation:
        first = True

        def timed(piece: str) -> bool:
            nonlocal first
            if first:
                TIME_TO_FIRST_TEXT.labels(engine.info.engine).observe(time.perf_counter() - started)
                first = False
            return on_text(piece)

        async with self.engine_streams.get(engine.info.engine, self.streams).slot():
            return await run_blocking(lambda cancel: engine.stream(task, cancel, timed))

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        for engine in self.engines.values():
            engine.close()


def build_summarizer(settings: Settings) -> Summarizer:
    """Loads the engines the settings name (blocking: seconds to minutes) and wraps them."""
    return Summarizer.load(settings)
