"""Summaries from an OpenAI-compatible chat server: vLLM, TGI, llama.cpp server, Ollama.

Production teams serve their LLM (Llama 3.2, Qwen, a fine-tune with its LoRA
merged) on a GPU server that batches requests itself; this engine is its
client. Every generation is one `POST {base_url}/chat/completions` with
`stream: true`, whether the caller streams or not: streamed deltas go through
the style's `OutputShaper` (so `SummarizeStream`'s deltas add up to the
summary, and an `inquiry` stops at its first line break by closing the
stream), and the cancel event is honoured between deltas.

Why the official `openai` client and its own retries (not tenacity): it
already retries what should be retried (408, 409, 429, 5xx, connection errors
and timeouts) with jittered exponential backoff (0.5 s doubling, at most 8 s)
and honours `Retry-After`; its async client sleeps with asyncio, so a
cancelled request (client gone, generation deadline passed) stops at once,
mid-retry included. The pipeline bounds the whole request with
`SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S`, so retries never outlast it.

The client runs on an event loop owned by the engine (one thread); the
synchronous `Engine` methods submit coroutines to it and wait, checking the
cancel event. Requests run concurrently (`SORIFLOW_SUMMARIZER_OPENAI_MAX_CONCURRENCY`
in flight, the server batches them); Soriflow's own batcher is not used.

No tokenizer of the served model is at hand, so token counts (for chunking
long inputs) are estimated from UTF-8 bytes, on the high side: one token per
3 bytes, so a chunk never overflows the context (an English chunk is about a
third smaller than it could be). Reported token counts are the server's
`usage` when it sends one, else this estimate for the input and the number of
streamed deltas for the output.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import threading
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from soriflow.errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    SoriflowError,
    Unavailable,
)

from ..settings import Settings
from ..styles import OutputShaper, Style
from .base import Engine, EngineInfo, Generation, OnText, Task
from .prompting import chat_messages

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

log = logging.getLogger("soriflow.summarizer.engines")

T = TypeVar("T")

ENGINE_NAME = "openai"
#: Context window assumed when `SORIFLOW_SUMMARIZER_CONTEXT_TOKENS` is unset (what small served models have).
DEFAULT_CONTEXT = 4096
#: UTF-8 bytes per token of the estimate: low, so estimates run high (English BPE averages ~4).
BYTES_PER_TOKEN = 3
#: Tokens kept free for the chat template's special tokens and role headers.
TEMPLATE_MARGIN = 32
#: How often a waiting thread looks at the cancel event, in seconds.
CANCEL_POLL_S = 0.05
#: Placeholder key for servers without authentication (the client insists on some key).
NO_KEY = "none"


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens of `text` for any BPE tokenizer of a chat model."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def read_api_key(settings: Settings) -> str:
    """The API key: the key file's content, else the setting, else a placeholder."""
    path = settings.summarizer_openai_api_key_file
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidArgument(
                f"SORIFLOW_SUMMARIZER_OPENAI_API_KEY_FILE={path} cannot be read: {exc.strerror or exc}"
            ) from exc
        if not key:
            raise InvalidArgument(f"SORIFLOW_SUMMARIZER_OPENAI_API_KEY_FILE={path} is empty")
        return key
    if settings.summarizer_openai_api_key is not None:
        return settings.summarizer_openai_api_key.get_secret_value()
    return NO_KEY


def _server_message(exc: Any) -> str:
    """The error text a server put in its JSON body (OpenAI's `error.message`), else the exception's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("detail"):
            return str(body["detail"])
    return str(getattr(exc, "message", "") or exc)


def _retry_after(exc: Any) -> float | None:
    """Seconds of a 429's `Retry-After` header (numeric form), to pass on to our caller."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 < seconds < 3600 else None


class OpenAIChatEngine(Engine):
    """Chat completions from an OpenAI-compatible server, streamed, concurrent, retried."""

    follows_prompts = True
    batched = False

    def __init__(self, settings: Settings) -> None:
        import openai

        self.settings = settings
        self.base_url = settings.summarizer_openai_base_url.rstrip("/")
        self.model = settings.summarizer_model
        self.context = settings.summarizer_context_tokens or DEFAULT_CONTEXT
        self.concurrency = settings.summarizer_openai_max_concurrency
        host = urlsplit(self.base_url).netloc or self.base_url
        self.info = EngineInfo(
            engine=ENGINE_NAME,
            model=self.model,
            device=f"remote ({host})",
            languages=tuple(code.lower() for code in settings.summarizer_languages or ()),
        )
        self.client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=read_api_key(settings),
            timeout=openai.Timeout(
                settings.summarizer_openai_read_timeout_s,
                connect=settings.summarizer_openai_connect_timeout_s,
            ),
            max_retries=settings.summarizer_openai_max_retries,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="summarizer-openai", daemon=True)
        self._thread.start()
        self._slots = asyncio.Semaphore(self.concurrency)

    # --- Engine ------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def prompt_room(self, task: Task) -> int:
        empty = dataclasses.replace(task, text="")
        overhead = sum(estimate_tokens(m["content"]) for m in chat_messages(empty, self.settings))
        return self.context - task.max_new_tokens - overhead - TEMPLATE_MARGIN

    def input_budget(self, task: Task) -> int:
        return min(self.settings.summarizer_chunk_tokens, self.prompt_room(task))

    def generate(self, tasks: Sequence[Task], cancel: threading.Event) -> list[Generation]:
        async def all_tasks() -> list[Generation]:
            jobs = [asyncio.ensure_future(self._complete(task, None)) for task in tasks]
            try:
                return list(await asyncio.gather(*jobs))
            except BaseException:
                for job in jobs:  # one failed or all were cancelled: stop the other requests too
                    job.cancel()
                raise

        return self._run(all_tasks(), cancel)

    def stream(self, task: Task, cancel: threading.Event, on_text: OnText) -> Generation:
        return self._run(self._complete(task, on_text), cancel)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.client.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    # --- on the engine's loop ----------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], cancel: threading.Event) -> T:
        """Runs `coro` on the engine's loop; cancels it (closing its HTTP stream) when `cancel` is set."""
        if cancel.is_set():
            coro.close()
            raise Cancelled("summarization cancelled")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        while not concurrent.futures.wait([future], timeout=CANCEL_POLL_S).done:
            if cancel.is_set():
                future.cancel()
                raise Cancelled("summarization cancelled")
        return future.result()

    async def _complete(self, task: Task, on_text: OnText | None) -> Generation:
        import openai

        style = task.style if not task.partial else Style.ABSTRACT
        shaper = OutputShaper(style)
        messages = chat_messages(task, self.settings)
        deltas = 0
        usage: Any = None
        finished = stopped = False
        reason = ""
        # Greedy unless a Generate request samples; its seed goes along (servers that honour it repeat).
        sampling: dict[str, Any] = {"seed": task.seed} if task.sampled and task.seed is not None else {}
        async with self._slots:
            try:
                stream = await self.client.chat.completions.create(
                    model=self.model,
                    messages=cast("list[ChatCompletionMessageParam]", messages),
                    max_tokens=task.max_new_tokens,
                    temperature=task.temperature,
                    stream=True,
                    extra_body=self.settings.summarizer_openai_extra_body or None,
                    **sampling,
                )
                try:
                    async for chunk in stream:
                        if getattr(chunk, "usage", None):
                            usage = chunk.usage
                        for choice in chunk.choices or ():
                            finished = finished or bool(choice.finish_reason)
                            reason = choice.finish_reason or reason
                            content = choice.delta.content if choice.delta else None
                            if not content:
                                continue
                            deltas += 1
                            piece = shaper.feed(content)
                            if piece and on_text is not None and not on_text(piece):
                                shaper.done = True
                        # The server's max_tokens is the cap; this guards against one that ignores it.
                        if shaper.done or deltas >= task.max_new_tokens:
                            stopped = True
                            break
                finally:
                    await stream.close()  # an early stop closes the connection: the server stops too
            except openai.APIError as exc:
                raise self._error(exc) from exc
        if not (finished or stopped):
            # The stream ended without a finish_reason: the answer was cut off (a server restarting,
            # or llama-cpp-python's server interrupting it for a newer request). Never pass that on.
            raise Unavailable(
                f"the chat server at {self.base_url} ended its answer early (no finish_reason after "
                f"{deltas} tokens); retry. A llama-cpp-python server must run with --interrupt_requests false"
            )
        truncated = not shaper.done and (reason == "length" or (stopped and deltas >= task.max_new_tokens))
        shaper.finish()
        prompt_tokens = getattr(usage, "prompt_tokens", None) or sum(
            estimate_tokens(m["content"]) for m in messages
        )
        completion_tokens = getattr(usage, "completion_tokens", None) or deltas
        return Generation(
            shaper.text,
            int(prompt_tokens),
            min(int(completion_tokens), task.max_new_tokens),
            truncated=truncated,
        )

    def _error(self, exc: Exception) -> SoriflowError:
        """The gRPC-status error for what the chat server (or the way to it) did, naming what to fix."""
        import openai

        where = f"the chat server at {self.base_url}"
        retries = self.settings.summarizer_openai_max_retries
        message = _server_message(exc)
        if isinstance(exc, openai.APITimeoutError):
            return DeadlineExceeded(
                f"{where} sent nothing for {self.settings.summarizer_openai_read_timeout_s:g} s "
                f"(SORIFLOW_SUMMARIZER_OPENAI_READ_TIMEOUT_S), {retries} retries included: it is "
                "overloaded or stuck"
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            reason = f"{type(cause).__name__}: {cause}" if cause else message
            return Unavailable(
                f"cannot reach {where} after {retries} retries ({reason}): check "
                "SORIFLOW_SUMMARIZER_OPENAI_BASE_URL and that the server runs"
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return FailedPrecondition(
                f"{where} refused the API key ({exc.status_code}: {message}): set "
                "SORIFLOW_SUMMARIZER_OPENAI_API_KEY_FILE (or SORIFLOW_SUMMARIZER_OPENAI_API_KEY) to a key it "
                "accepts"
            )
        if isinstance(exc, openai.NotFoundError):
            return FailedPrecondition(
                f"{where} answered 404 for model {self.model!r} ({message}): set SORIFLOW_SUMMARIZER_MODEL "
                "to a model it serves, and SORIFLOW_SUMMARIZER_OPENAI_BASE_URL to its API root (…/v1)"
            )
        if isinstance(exc, openai.RateLimitError):
            return ResourceExhausted(
                f"{where} is still rate-limiting after {retries} retries (429: {message}); retry later or "
                "raise the server's limits",
                retry_after_s=_retry_after(exc) or self.settings.summarizer_retry_after_s,
            )
        if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
            return InvalidArgument(
                f"{where} refused the request ({exc.status_code}: {message}); if the input is too long for "
                "the model, set SORIFLOW_SUMMARIZER_CONTEXT_TOKENS to its context window"
            )
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code >= 500:
                return Unavailable(
                    f"{where} failed with {exc.status_code} after {retries} retries ({message}); retry later"
                )
            return Internal(f"{where} answered {exc.status_code}: {message}")
        return Internal(f"{where}: {type(exc).__name__}: {message}")


def load(settings: Settings) -> OpenAIChatEngine:
    """The engine for `SORIFLOW_SUMMARIZER_ENGINE=openai` (nothing is loaded: the server holds the model)."""
    return OpenAIChatEngine(settings)
