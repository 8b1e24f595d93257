"""Instruction-tuned causal LMs (Llama 3.2, SmolLM2, Qwen, ...) prompted through their chat template.

Each style has an instruction (see `styles.py`, replaceable by settings).
By default (`SORIFLOW_SUMMARIZER_PROMPT_ROLE=user`) it goes with the text
into the user turn and the model's own default system prompt stays: small
models such as SmolLM2-135M follow it there and misbehave with it as a
system prompt. With `system` the instruction is the system turn and the
text the user turn, as Llama 3.2 and Qwen are tuned for. Batches are
left-padded so every row continues from its own last token. A model without
a chat template gets a plain "instruction, text, Summary:" prompt (a Generate
prompt as it is).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from soriflow.errors import InvalidArgument

from ..models import ModelFiles
from ..settings import Settings
from ..styles import Style
from .base import Task
from .hf import CONTEXT_MARGIN, HfEngine, load_hf
from .prompting import task_prompt_parts


class CausalLmEngine(HfEngine):
    """AutoModelForCausalLM with the model's chat template."""

    engine_name = "causal-lm"
    follows_prompts = True
    batched = True
    default_beams = 1

    def prompt_parts(self, task: Task) -> tuple[str, str]:
        """(instruction, text part) of the style's prompt for `task`."""
        return task_prompt_parts(task, self.settings)

    def prompt(self, task: Task) -> str:
        """The full prompt text, special tokens included, ending where the answer starts."""
        instruction, text = self.prompt_parts(task)
        if not getattr(self.tokenizer, "chat_template", None):
            # A base model continues the text: a free-text prompt is left as it is.
            return text if task.style is Style.GENERATE else f"{instruction}{text}\n\nSummary:"
        if self.settings.summarizer_prompt_role == "system" and instruction.strip():
            messages = [
                {"role": "system", "content": instruction.strip()},
                {"role": "user", "content": text.strip()},
            ]
        else:
            messages = [{"role": "user", "content": instruction + text}]
        try:
            rendered = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja2 TemplateError: e.g. a template that refuses a system turn
            raise InvalidArgument(
                f"the chat template of {self.info.model} cannot render the prompt ({exc}); "
                "with SORIFLOW_SUMMARIZER_PROMPT_ROLE=system try user"
            ) from exc
        return str(rendered)

    def _encode(self, tasks: Sequence[Task]) -> dict[str, Any]:
        templated = bool(getattr(self.tokenizer, "chat_template", None))
        encoded = self.tokenizer(
            [self.prompt(t) for t in tasks],
            return_tensors="pt",
            padding=True,
            # The chat template writes the special tokens (BOS...) itself.
            add_special_tokens=not templated,
        )
        return {k: v.to(self.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}

    def _generate_kwargs(self) -> dict[str, Any]:
        return {"repetition_penalty": self.settings.summarizer_repetition_penalty}

    def _decoder_offset(self, inputs: dict[str, Any]) -> int:
        return int(inputs["input_ids"].shape[1])

    def _new_tokens(self, output: Any, inputs: dict[str, Any]) -> Any:
        return output[:, inputs["input_ids"].shape[1] :]

    def prompt_room(self, task: Task) -> int:
        empty = dataclasses.replace(task, text="")
        with self.tokenizer_lock:
            overhead = len(self.tokenizer(self.prompt(empty), add_special_tokens=False)["input_ids"])
        return self.context - task.max_new_tokens - overhead - CONTEXT_MARGIN

    def input_budget(self, task: Task) -> int:
        return min(self.settings.summarizer_chunk_tokens, self.prompt_room(task))


def load(files: ModelFiles, settings: Settings) -> CausalLmEngine:
    model, tokenizer, device, adapter, _ = load_hf(files, settings, seq2seq=False)
    return CausalLmEngine(files, settings, model, tokenizer, device, adapter)
