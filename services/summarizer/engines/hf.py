"""What the two transformers engines share: loading, devices, LoRA, batching, streaming.

Both engines hold one model and its tokenizer, run `generate` on padded
batches under a lock (one batch at a time per model: on a GPU a bigger
batch is nearly free, on a CPU two concurrent generates only fight over the
cores), and stream through a `TextStreamer` whose finalized text goes
through the style's `OutputShaper` so streamed deltas add up to the summary.
Two stopping criteria run in every generate: the cancel event (client gone
or deadline passed), and the end of an `inquiry` line per batch row.

A LoRA adapter (peft) is loaded on top of the base model and merged into its
weights, so serving it costs nothing extra per token.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from soriflow.errors import Cancelled, InvalidArgument
from soriflow.models import resolve_model

from ..models import ModelFiles
from ..settings import Settings
from ..styles import OutputShaper, Style, shape
from .base import Engine, EngineInfo, Generation, OnText, Task

if TYPE_CHECKING:
    import torch

log = logging.getLogger("soriflow.summarizer.engines")

#: Tokens kept free between prompt and context end, for template tokens counted approximately.
CONTEXT_MARGIN = 8


def resolve_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument("SORIFLOW_SUMMARIZER_DEVICE=cuda but no CUDA device is visible to torch")
    return setting


def resolve_dtype(setting: str, device: str) -> torch.dtype:
    import torch

    if setting == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    dtype: torch.dtype = getattr(torch, setting)
    return dtype


def context_length(config: Any, override: int | None) -> int:
    """The model's context window in tokens (the settings' override wins)."""
    if override:
        return override
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def load_adapter(model: Any, spec: str, settings: Settings) -> tuple[Any, str]:
    """`model` with the LoRA adapter `spec` merged in; returns (model, adapter path)."""
    from peft import PeftModel

    path = resolve_model(spec, settings).path
    if not (path / "adapter_config.json").is_file():
        raise InvalidArgument(f"{spec}: {path} is not a LoRA adapter (no adapter_config.json)")
    peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    return peft_model.merge_and_unload(), str(path)


class _StopCriteria:
    """Per-row stop flags for `generate`: cancellation, an external stop, inquiry lines that ended."""

    def __init__(
        self,
        tokenizer: Any,
        cancel: threading.Event,
        stop: threading.Event | None,
        inquiry_rows: Sequence[int] = (),
        prompt_length: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.cancel = cancel
        self.stop = stop
        self.inquiry_rows = list(inquiry_rows)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        import torch

        batch = input_ids.shape[0]
        if self.cancel.is_set() or (self.stop is not None and self.stop.is_set()):
            return torch.ones(batch, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]
        done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        for row in self.inquiry_rows:
            new = input_ids[row, self.prompt_length :]
            if len(new) and self.tokenizer.decode(new[-4:], skip_special_tokens=True).count("\n"):
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                if "\n" in text.lstrip():
                    done[row] = True
        return done  # type: ignore[return-value]


def _stopping_list(*criteria: _StopCriteria) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Wrapped(StoppingCriteria):
        def __init__(self, inner: _StopCriteria) -> None:
            self.inner = inner

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return self.inner(input_ids, scores, **kwargs)

    return StoppingCriteriaList([Wrapped(c) for c in criteria])


def _streamer(tokenizer: Any, shaper: OutputShaper, on_text: OnText, stop: threading.Event) -> Any:
    """A TextStreamer whose finalized text is shaped and handed to `on_text`."""
    from transformers import TextStreamer

    class ShapedStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if stop.is_set():
                return
            piece = shaper.feed(text)
            if piece and not on_text(piece):
                stop.set()
            if shaper.done:
                stop.set()

    return ShapedStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


class HfEngine(Engine, abc.ABC):
    """A transformers model and tokenizer with batched and streamed generation."""

    engine_name = "hf"

    def __init__(
        self,
        files: ModelFiles,
        settings: Settings,
        model: Any,
        tokenizer: Any,
        device: str,
        adapter: str = "",
    ) -> None:
        self.settings = settings
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.files = files
        languages = settings.summarizer_languages
        if languages is None:
            languages = list(files.languages or ())
        self.info = EngineInfo(
            engine=self.engine_name,
            model=files.name,
            adapter=adapter,
            device=device,
            languages=tuple(code.lower() for code in languages),
        )
        self.context = context_length(model.config, settings.summarizer_context_tokens)
        self._lock = threading.Lock()
        # A fast tokenizer's Rust state changes when a call pads or truncates; two threads calling it
        # at once fail with "Already borrowed". Every tokenizer call goes through this lock.
        self.tokenizer_lock = threading.RLock()
        self.num_beams = settings.summarizer_num_beams or self.default_beams

    default_beams = 1

    # --- what subclasses provide ------------------------------------------------------------

    @abc.abstractmethod
    def _encode(self, tasks: Sequence[Task]) -> dict[str, Any]:
        """Tokenized, padded model inputs for a batch of tasks."""

    @abc.abstractmethod
    def _new_tokens(self, output: Any, inputs: dict[str, Any]) -> Any:
        """The generated part of `generate`'s output (rows of token ids)."""

    def _decoder_offset(self, inputs: dict[str, Any]) -> int:
        """Where generated tokens start in the ids that stopping criteria see."""
        return 0

    def _generate_kwargs(self) -> dict[str, Any]:
        return {}

    # --- shared --------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        with self.tokenizer_lock:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return sorted(ids)

    def max_output_tokens(self) -> int | None:
        """Most tokens the model can write at all (None: no limit of its own)."""
        return None

    def _kwargs(self, max_new_tokens: int, temperature: float = 0.0) -> dict[str, Any]:
        limit = self.max_output_tokens()
        kwargs: dict[str, Any] = {
            "max_new_tokens": min(max_new_tokens, limit) if limit else max_new_tokens,
            "do_sample": False,
            "num_beams": self.num_beams,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self._eos_ids() or None,
            "no_repeat_ngram_size": self.settings.summarizer_no_repeat_ngram_size,
        }
        # Sampling settings a model's generation_config may carry would only warn with do_sample=False.
        kwargs.update(temperature=None, top_p=None, top_k=None)
        if temperature > 0:  # a Generate request that samples (summaries are always greedy)
            kwargs.update(do_sample=True, temperature=temperature, num_beams=1)
        if kwargs["num_beams"] > 1:
            kwargs["early_stopping"] = True
        kwargs.update(self._generate_kwargs())
        return kwargs

    def _cut(self, ids: Any, limit: int) -> list[int]:
        """Generated ids up to the first end/pad token, at most `limit` of them."""
        stop = set(self._eos_ids())
        if self.tokenizer.pad_token_id is not None:
            stop.add(int(self.tokenizer.pad_token_id))
        kept: list[int] = []
        for token in ids if isinstance(ids, list) else ids.tolist():
            if token in stop:
                break
            kept.append(int(token))
        return kept[:limit]

    def generate(self, tasks: Sequence[Task], cancel: threading.Event) -> list[Generation]:
        """Greedy tasks run as one batch; sampled ones (Generate with a temperature) in batches of
        the same temperature and seed, since `generate` samples a whole batch one way."""
        groups: dict[tuple[float, int | None], list[int]] = {}
        for index, task in enumerate(tasks):
            key = (task.temperature, task.seed) if task.sampled else (0.0, None)
            groups.setdefault(key, []).append(index)
        if len(groups) <= 1:
            return self._generate_batch(tasks, cancel)
        results: list[Generation | None] = [None] * len(tasks)
        for indices in groups.values():
            for index, generation in zip(
                indices, self._generate_batch([tasks[i] for i in indices], cancel), strict=True
            ):
                results[index] = generation
        return [r for r in results if r is not None]

    def _generate_batch(self, tasks: Sequence[Task], cancel: threading.Event) -> list[Generation]:
        import torch

        if not tasks:
            return []
        with self.tokenizer_lock:
            inputs = self._encode(tasks)
        inquiry_rows = [i for i, t in enumerate(tasks) if t.style is Style.INQUIRY and not t.partial]
        criteria = _StopCriteria(
            self.tokenizer,
            cancel,
            None,
            inquiry_rows if self.num_beams == 1 else (),
            self._decoder_offset(inputs),
        )
        with self._lock, torch.inference_mode():
            if cancel.is_set():
                raise Cancelled("summarization cancelled")
            if tasks[0].sampled and tasks[0].seed is not None:
                torch.manual_seed(tasks[0].seed)  # under the model's lock: nobody else draws meanwhile
            output = self.model.generate(
                **inputs,
                **self._kwargs(max(t.max_new_tokens for t in tasks), tasks[0].temperature),
                stopping_criteria=_stopping_list(criteria),
            )
        if cancel.is_set():
            raise Cancelled("summarization cancelled")
        new = self._new_tokens(output, inputs)
        results = []
        mask = inputs["attention_mask"]
        for row, task in enumerate(tasks):
            ids = self._cut(new[row], task.max_new_tokens)
            raw = self.tokenizer.decode(ids, skip_special_tokens=True)
            results.append(
                Generation(
                    self._finish(task, raw),
                    int(mask[row].sum()),
                    len(ids),
                    truncated=len(ids) >= self._cap(task.max_new_tokens),
                )
            )
        return results

    def _cap(self, max_new_tokens: int) -> int:
        """The tokens a row may write at most (the request's cap, or the model's own limit)."""
        limit = self.max_output_tokens()
        return min(max_new_tokens, limit) if limit else max_new_tokens

    def _finish(self, task: Task, raw: str) -> str:
        return shape(task.style if not task.partial else Style.ABSTRACT, raw)

    def _can_stream(self, task: Task) -> bool:
        """Whether tokens can be streamed (transformers streams greedy search only)."""
        return self.num_beams == 1

    def stream(self, task: Task, cancel: threading.Event, on_text: OnText) -> Generation:
        import torch

        if not self._can_stream(task):
            # Beam search keeps several hypotheses until the end: the summary comes as one piece.
            generation = self.generate([task], cancel)[0]
            if generation.text:
                on_text(generation.text)
            return generation
        with self.tokenizer_lock:
            inputs = self._encode([task])
        shaper = OutputShaper(task.style if not task.partial else Style.ABSTRACT)
        stop = threading.Event()
        streamer = _streamer(self.tokenizer, shaper, on_text, stop)
        criteria = _StopCriteria(self.tokenizer, cancel, stop)
        with self._lock, torch.inference_mode():
            if cancel.is_set():
                raise Cancelled("summarization cancelled")
            if task.sampled and task.seed is not None:
                torch.manual_seed(task.seed)
            output = self.model.generate(
                **inputs,
                **self._kwargs(task.max_new_tokens, task.temperature),
                stopping_criteria=_stopping_list(criteria),
                streamer=streamer,
            )
        if cancel.is_set():
            raise Cancelled("summarization cancelled")
        stopped_early = shaper.done
        shaper.finish()
        ids = self._cut(self._new_tokens(output, inputs)[0], task.max_new_tokens)
        truncated = not stopped_early and len(ids) >= self._cap(task.max_new_tokens)
        return Generation(shaper.text, int(inputs["attention_mask"][0].sum()), len(ids), truncated=truncated)

    def close(self) -> None:
        self.model = None


def load_hf(files: ModelFiles, settings: Settings, *, seq2seq: bool) -> tuple[Any, Any, str, str, float]:
    """(model, tokenizer, device, adapter path, seconds) for an HF folder, adapter merged."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    cast(Any, hf_logging.disable_progress_bar)()  # per-tensor bars on every load only clutter service logs
    started = time.perf_counter()
    if settings.summarizer_cpu_threads:
        torch.set_num_threads(settings.summarizer_cpu_threads)
    device = resolve_device(settings.summarizer_device)
    dtype = resolve_dtype(settings.summarizer_dtype, device)
    config = AutoConfig.from_pretrained(str(files.path), local_files_only=True)
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    if encoder_decoder != seq2seq:
        want, other = ("seq2seq", "causal-lm") if encoder_decoder else ("causal-lm", "seq2seq")
        raise InvalidArgument(
            f"{files.name} is a {want} model ({type(config).__name__}) but SORIFLOW_SUMMARIZER_ENGINE is "
            f"{other}: set SORIFLOW_SUMMARIZER_ENGINE={want}"
        )
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model: Any = auto.from_pretrained(str(files.path), dtype=dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(files.path), local_files_only=True)
    adapter = ""
    if settings.summarizer_adapter:
        model, adapter = load_adapter(model, settings.summarizer_adapter, settings)
    model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not seq2seq:
        tokenizer.padding_side = "left"  # decoder-only models continue from the last position
    return model, tokenizer, device, adapter, time.perf_counter() - started
