"""Encoder-decoder summarizers (KoBART, BART, T5, ...) with beam search.

These models write the one kind of summary they were fine-tuned for, so the
style only shapes the output: `inquiry` keeps the first line, `bullets`
puts each sentence on its own bullet, and `custom` prompts are not followed
(ABSTRACT, as the API documents). The team's settings are the defaults:
4 beams, at most 128 new tokens, no repeated trigrams. T5-style models want
a task prefix (`SORIFLOW_SUMMARIZER_SEQ2SEQ_PREFIX="summarize: "`).

Streaming: transformers streams greedy search only, so with beams the
summary arrives as one piece when it is complete; set
`SORIFLOW_SUMMARIZER_NUM_BEAMS=1` for token-by-token streaming.

A summary is at most the decoder's position count minus two tokens long
(1022 for KoBART), whatever `max_output_tokens` asks: the model cannot write
further.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models import ModelFiles
from ..settings import Settings
from ..styles import Style, format_bullets, shape
from ..text import split_sentences
from .base import Task
from .hf import HfEngine, load_hf


class Seq2SeqEngine(HfEngine):
    """AutoModelForSeq2SeqLM with beam search."""

    engine_name = "seq2seq"
    follows_prompts = False
    batched = True
    default_beams = 4

    def _encode(self, tasks: Sequence[Task]) -> dict[str, Any]:
        prefix = self.settings.summarizer_seq2seq_prefix
        encoded = self.tokenizer([prefix + t.text for t in tasks], return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}

    def _new_tokens(self, output: Any, inputs: dict[str, Any]) -> Any:
        return output

    def _cut(self, ids: Any, limit: int) -> list[int]:
        # The decoder starts with its start token (BART: </s>, T5: <pad>) and maybe a forced BOS:
        # not answer tokens, and BART's start token is also its end token.
        leading = {
            self.model.generation_config.decoder_start_token_id,
            self.model.config.decoder_start_token_id,
            self.tokenizer.bos_token_id,
            self.model.generation_config.forced_bos_token_id,
        }
        values = [int(t) for t in ids.tolist()]
        skip = 0
        while skip < min(2, len(values)) and values[skip] in leading:
            skip += 1
        return super()._cut(values[skip:], limit)

    def _finish(self, task: Task, raw: str) -> str:
        if task.style is Style.BULLETS and not task.partial:
            return format_bullets(split_sentences(raw))
        style = Style.INQUIRY if task.style is Style.INQUIRY and not task.partial else Style.ABSTRACT
        return shape(style, raw)

    def _can_stream(self, task: Task) -> bool:
        return self.num_beams == 1 and (task.style is not Style.BULLETS or task.partial)

    def max_output_tokens(self) -> int | None:
        # BART-style decoders have learned positions: they cannot write past them.
        return self.context - 2

    def input_budget(self, task: Task) -> int:
        prefix = self.count_tokens(self.settings.summarizer_seq2seq_prefix)
        room = self.context - prefix - 2  # the tokenizer's own special tokens (BOS/EOS)
        return min(self.settings.summarizer_chunk_tokens, room)


def load(files: ModelFiles, settings: Settings) -> Seq2SeqEngine:
    model, tokenizer, device, adapter, _ = load_hf(files, settings, seq2seq=True)
    return Seq2SeqEngine(files, settings, model, tokenizer, device, adapter)
