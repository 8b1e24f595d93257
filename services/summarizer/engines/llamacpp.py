"""A GGUF model in-process with llama.cpp (`llama-cpp-python`): quantized weights, no torch.

The transformers path (`causal-lm`) dequantizes a GGUF file to float32 and
runs it through torch; llama.cpp runs the quantized file as it is, several
times faster on a CPU (see docs/benchmarks.md). It is optional: the package
compiles llama.cpp from source on install (`make llama`), so the embedded
default stays the transformers engine.

The prompt is the same as the causal engine's: the style's messages
(`prompting.chat_messages`) rendered through the chat template stored in the
GGUF file (Jinja, like transformers), tokenized with its special tokens and
no extra BOS; a file without a template gets "instruction, text, Summary:".
Decoding is greedy with the settings' repetition penalty (llama.cpp has no
n-gram blocking). One context runs one sequence, so generations run one at a
time under a lock (a waiting caller gives up when its cancel event is set);
tokens stream through the style's `OutputShaper` in both `generate` and
`stream`, so an inquiry stops at its line break and a cancelled or timed-out
request stops at the next token.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

from soriflow.errors import Cancelled, InvalidArgument

from ..models import ModelFiles
from ..settings import Settings
from ..styles import OutputShaper, Style
from .base import Engine, EngineInfo, Generation, OnText, Task
from .prompting import chat_messages

log = logging.getLogger("soriflow.summarizer.engines")

ENGINE_NAME = "llama-cpp"
#: Context used when the settings do not name one and the file's is longer (memory for the KV cache).
MAX_DEFAULT_CONTEXT = 4096
#: Tokens kept free between prompt and context end.
CONTEXT_MARGIN = 8
#: How often a caller waiting for the model looks at its cancel event, in seconds.
LOCK_POLL_S = 0.05


class LlamaCppEngine(Engine):
    """A `llama_cpp.Llama` with the file's chat template; greedy, streamed, one generation at a time."""

    follows_prompts = True
    batched = False

    def __init__(self, files: ModelFiles, settings: Settings, llm: Any, device: str = "cpu") -> None:
        self.files = files
        self.settings = settings
        self.llm = llm
        self.context = int(llm.n_ctx())
        languages = settings.summarizer_languages
        if languages is None:
            languages = list(files.languages or ())
        self.info = EngineInfo(
            engine=ENGINE_NAME,
            model=files.name,
            device=device,
            languages=tuple(code.lower() for code in languages),
        )
        self._lock = threading.Lock()
        self._formatter = self._chat_formatter()

    def _chat_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        model = self.llm._model  # token texts for the template's bos_token / eos_token variables
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    # --- prompts -------------------------------------------------------------------------------

    def prompt(self, task: Task) -> str:
        """The full prompt text, special tokens included, ending where the answer starts."""
        messages = chat_messages(task, self.settings)
        if self._formatter is None:
            plain = "".join(m["content"] for m in messages)
            return plain if task.style is Style.GENERATE else plain + "\n\nSummary:"
        try:
            return str(self._formatter(messages=messages).prompt)
        except Exception as exc:  # jinja2 errors: e.g. a template that refuses a system turn
            raise InvalidArgument(
                f"the chat template of {self.info.model} cannot render the prompt ({exc}); "
                "with SORIFLOW_SUMMARIZER_PROMPT_ROLE=system try user"
            ) from exc

    def _prompt_tokens(self, task: Task) -> list[int]:
        # The template writes the special tokens itself: parse them, add no BOS of our own.
        templated = self._formatter is not None
        tokens: list[int] = self.llm.tokenize(
            self.prompt(task).encode("utf-8"), add_bos=not templated, special=templated
        )
        return tokens

    # --- Engine ------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prompt_room(self, task: Task) -> int:
        overhead = len(self._prompt_tokens(dataclasses.replace(task, text="")))
        return self.context - task.max_new_tokens - overhead - CONTEXT_MARGIN

    def input_budget(self, task: Task) -> int:
        return min(self.settings.summarizer_chunk_tokens, self.prompt_room(task))

    def generate(self, tasks: Sequence[Task], cancel: threading.Event) -> list[Generation]:
        return [self._run(task, cancel, None) for task in tasks]

    def stream(self, task: Task, cancel: threading.Event, on_text: OnText) -> Generation:
        return self._run(task, cancel, on_text)

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()

    # --- generation ----------------------------------------------------------------------------

    def _acquire(self, cancel: threading.Event) -> None:
        while not self._lock.acquire(timeout=LOCK_POLL_S):
            if cancel.is_set():
                raise Cancelled("summarization cancelled")

    def _run(self, task: Task, cancel: threading.Event, on_text: OnText | None) -> Generation:
        prompt = self._prompt_tokens(task)
        if len(prompt) + task.max_new_tokens > self.context:
            raise InvalidArgument(
                f"the prompt is {len(prompt)} tokens and max_output_tokens {task.max_new_tokens}: more than "
                f"the context of {self.context} tokens (SORIFLOW_SUMMARIZER_CONTEXT_TOKENS)"
            )
        shaper = OutputShaper(task.style if not task.partial else Style.ABSTRACT)
        produced = 0
        reason = None
        self._acquire(cancel)
        try:
            if cancel.is_set():
                raise Cancelled("summarization cancelled")
            # Every request evaluates its whole prompt: reusing the KV cache of the previous request's
            # common prefix splits the prompt's batch differently, and on CPU that moves the logits
            # enough to change a greedy summary. The same request gets the same text; the prompt
            # costs a fraction of a second.
            self.llm.reset()
            chunks = self.llm.create_completion(
                prompt,
                max_tokens=task.max_new_tokens,
                # Greedy unless a Generate request asks to sample; then seeded, so it can be repeated.
                temperature=task.temperature,
                seed=task.seed if task.sampled else None,
                repeat_penalty=self.settings.summarizer_repetition_penalty,
                stream=True,
            )
            try:
                for chunk in chunks:
                    if cancel.is_set():
                        raise Cancelled("summarization cancelled")
                    choice = chunk["choices"][0]
                    reason = choice.get("finish_reason") or reason
                    produced += 1
                    piece = shaper.feed(choice["text"])
                    if piece and on_text is not None and not on_text(piece):
                        break
                    if shaper.done or produced >= task.max_new_tokens:
                        break
            finally:
                chunks.close()
        finally:
            self._lock.release()
        # Cut off by the cap, not ended by the model (or by the style: an inquiry's line break).
        truncated = not shaper.done and (
            reason == "length" or (reason is None and produced >= task.max_new_tokens)
        )
        shaper.finish()
        return Generation(shaper.text, len(prompt), produced, truncated=truncated)


def load(files: ModelFiles, settings: Settings) -> LlamaCppEngine:
    """The GGUF file `files.path` in llama.cpp, on CUDA when asked for (and llama.cpp was built with it)."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise InvalidArgument(
            "SORIFLOW_SUMMARIZER_ENGINE=llama-cpp needs llama-cpp-python: `make llama` (or "
            '`pip install -e ".[llama]"`; it compiles llama.cpp, minutes on a small CPU)'
        ) from exc
    gpu = settings.summarizer_device == "cuda" or (
        settings.summarizer_device == "auto" and bool(llama_cpp.llama_supports_gpu_offload())
    )
    if settings.summarizer_device == "cuda" and not llama_cpp.llama_supports_gpu_offload():
        raise InvalidArgument(
            "SORIFLOW_SUMMARIZER_DEVICE=cuda but this llama-cpp-python was built without GPU support "
            '(reinstall with CMAKE_ARGS="-DGGML_CUDA=on")'
        )

    def open_model(n_ctx: int) -> Any:
        return llama_cpp.Llama(
            model_path=str(files.path),
            n_ctx=n_ctx,
            n_threads=settings.summarizer_cpu_threads or None,
            n_threads_batch=settings.summarizer_cpu_threads or None,
            n_gpu_layers=-1 if gpu else 0,
            seed=0,
            verbose=False,
        )

    llm = open_model(settings.summarizer_context_tokens or MAX_DEFAULT_CONTEXT)
    arch = llm.metadata.get("general.architecture", "")
    trained = int(llm.metadata.get(f"{arch}.context_length") or 0)
    if not settings.summarizer_context_tokens and 0 < trained < llm.n_ctx():
        # A file trained on a shorter context: use that, as the transformers engine does.
        llm.close()
        llm = open_model(trained)
    return LlamaCppEngine(files, settings, llm, "cuda" if gpu else "cpu")
