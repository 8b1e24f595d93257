"""BERTScore over a local encoder model, without the `bert-score` package.

BERTScore (Zhang et al., 2020) matches each token of the candidate with its
most similar token of the reference (cosine of contextual embeddings) and
the other way round: precision is the mean best match of candidate tokens,
recall that of reference tokens, F1 their harmonic mean. The `bert-score`
package downloads models and baseline files from the hub, which Soriflow
never does, so this reimplements the unweighted variant over any local HF
encoder (a folder, `s3://` or `pkg:` spec): embeddings from the last hidden
layer (or `layer`), special tokens excluded, no IDF weighting and no
baseline rescaling. Scores are therefore on the raw scale (about 0.6-1.0
for BERT-like models): compare them between runs with the same encoder only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soriflow.config import CommonSettings
from soriflow.models import resolve_model


@dataclass(frozen=True)
class BertScore:
    precision: float
    recall: float
    f1: float


class BertScorer:
    """Greedy-matching BERTScore with one local encoder."""

    def __init__(
        self,
        spec: str,
        settings: CommonSettings | None = None,
        *,
        layer: int | None = None,
        device: str = "cpu",
        max_length: int = 512,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(spec, settings).path
        self.name = path.name
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.layer = layer
        self.device = device
        self.max_length = max_length

    def _embed(self, texts: list[str]) -> list[Any]:
        import torch

        encoded = self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_special_tokens_mask=True,
        )
        special = encoded.pop("special_tokens_mask")
        encoded = {k: v.to(self.device) for k, v in encoded.items()}
        with torch.inference_mode():
            output = self.model(**encoded, output_hidden_states=self.layer is not None)
        hidden = output.hidden_states[self.layer] if self.layer is not None else output.last_hidden_state
        hidden = torch.nn.functional.normalize(hidden.float(), dim=-1)
        keep = encoded["attention_mask"].bool() & ~special.bool().to(self.device)
        return [hidden[i][keep[i]] for i in range(len(texts))]

    def score(self, predictions: list[str], references: list[str], batch_size: int = 16) -> list[BertScore]:
        scores: list[BertScore] = []
        for start in range(0, len(predictions), batch_size):
            cands = self._embed(predictions[start : start + batch_size])
            refs = self._embed(references[start : start + batch_size])
            for cand, ref in zip(cands, refs, strict=True):
                if len(cand) == 0 or len(ref) == 0:
                    scores.append(BertScore(0.0, 0.0, 0.0))
                    continue
                similarity = cand @ ref.T
                precision = float(similarity.max(dim=1).values.mean())
                recall = float(similarity.max(dim=0).values.mean())
                f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
                scores.append(BertScore(precision, recall, f1))
        return scores
