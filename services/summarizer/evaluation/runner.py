"""Running a summarizer over a data set and scoring what it wrote.

Predictions come from the engines in-process or from a running server
(`--server`); either way requests are sent concurrently so the service's
dynamic batching applies, as it would in production. Scores per example:
ROUGE-1/2/L F1 on words and on characters (see `rouge.py`), cosine similarity
with the language's sentence encoder (see `similarity.py`), and BERTScore
when an encoder model is configured. The report holds the means, the
per-example rows and notes on what was skipped and why.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..pipeline import Summarizer, SummaryRequest
from ..text import detect_language
from .bertscore import BertScorer
from .data import Example
from .rouge import rouge_scores
from .similarity import Encoders, cosine_pairs


@dataclass(frozen=True)
class Prediction:
    summary: str
    model: str
    engine: str
    language: str


@dataclass
class EvalReport:
    """Means over the data set, per-example scores, and what was skipped."""

    count: int
    metrics: dict[str, float]
    examples: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self, *, with_examples: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "metrics": self.metrics, "notes": self.notes, **self.info}
        if with_examples:
            out["examples"] = self.examples
        return out


def score_predictions(
    examples: Sequence[Example],
    predictions: Sequence[str],
    *,
    encoders: Encoders | None,
    bertscorer: BertScorer | None = None,
    languages: Sequence[str] | None = None,
) -> EvalReport:
    """Scores `predictions` against the examples' reference summaries."""
    if len(examples) != len(predictions):
        raise ValueError("one prediction per example")
    langs = list(languages) if languages else [detect_language(e.input + " " + e.summary) for e in examples]
    rows: list[dict[str, Any]] = []
    for example, prediction, language in zip(examples, predictions, langs, strict=True):
        rows.append(
            {
                "input": example.input,
                "reference": example.summary,
                "prediction": prediction,
                "language": language,
                **rouge_scores(prediction, example.summary),
            }
        )
    notes: list[str] = []
    if encoders is not None:
        by_encoder: dict[str, list[int]] = defaultdict(list)
        for index, language in enumerate(langs):
            by_encoder["en" if language == "en" else "other"].append(index)
        for group, indices in by_encoder.items():
            encoder = encoders.for_language("en" if group == "en" else "xx")
            sims = cosine_pairs(
                encoder, [predictions[i] for i in indices], [examples[i].summary for i in indices]
            )
            for index, sim in zip(indices, sims, strict=True):
                rows[index]["semantic_similarity"] = sim
                rows[index]["encoder"] = encoder.name
    else:
        notes.append("semantic similarity skipped (no sentence encoders)")
    if bertscorer is not None:
        for row, score in zip(
            rows, bertscorer.score(list(predictions), [e.summary for e in examples]), strict=True
        ):
            row.update(
                bertscore_precision=score.precision, bertscore_recall=score.recall, bertscore_f1=score.f1
            )
    else:
        notes.append(
            "BERTScore skipped: no encoder model configured (set --bertscore-model or "
            "SORIFLOW_SUMMARIZER_BERTSCORE_MODEL to a local HF encoder folder)"
        )
    metrics: dict[str, float] = {}
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)] if rows else []
    for key in keys:
        values = [row[key] for row in rows if isinstance(row.get(key), float)]
        metrics[key] = statistics.fmean(values) if values else 0.0
    encoders_used = sorted({row["encoder"] for row in rows if "encoder" in row})
    for name in encoders_used:
        values = [row["semantic_similarity"] for row in rows if row.get("encoder") == name]
        metrics[f"semantic_similarity[{name}]"] = statistics.fmean(values)
    info: dict[str, Any] = {"encoders": encoders_used}
    if bertscorer is not None:
        info["bertscore_model"] = bertscorer.name
    return EvalReport(len(rows), metrics, rows, notes, info)


def _request(
    example: Example, *, style: Any, language: str, engine: str, max_output_tokens: int
) -> SummaryRequest:
    return SummaryRequest(
        text=example.input, style=style, language=language, engine=engine, max_output_tokens=max_output_tokens
    )


async def predict_local(
    summarizer: Summarizer,
    examples: Sequence[Example],
    *,
    style: Any,
    language: str = "",
    engine: str = "",
    max_output_tokens: int = 0,
    concurrency: int = 8,
) -> list[Prediction]:
    """Summaries written by in-process engines, `concurrency` requests at a time (batched)."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(example: Example) -> Prediction:
        async with gate:
            result = await summarizer.summarize(
                _request(
                    example,
                    style=style,
                    language=language,
                    engine=engine,
                    max_output_tokens=max_output_tokens,
                )
            )
        return Prediction(result.summary, result.model, result.engine, result.language)

    return list(await asyncio.gather(*(one(e) for e in examples)))


async def predict_remote(
    address: str,
    examples: Sequence[Example],
    *,
    style: Any,
    language: str = "",
    engine: str = "",
    max_output_tokens: int = 0,
    concurrency: int = 8,
    timeout: float = 600.0,
) -> list[Prediction]:
    """Summaries written by a running summarizer service."""
    from soriflow.client import open_channel
    from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc

    from ..messages import STYLE_VALUES

    gate = asyncio.Semaphore(max(1, concurrency))
    async with open_channel(address) as channel:
        stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)

        async def one(example: Example) -> Prediction:
            request = summarizer_pb2.SummarizeRequest(
                text=example.input,
                style=STYLE_VALUES[style],
                language_code=language,
                engine=engine,
                max_output_tokens=max_output_tokens,
            )
            async with gate:
                response = await stub.Summarize(request, timeout=timeout)
            return Prediction(response.summary, response.model, response.engine, response.language_code)

        return list(await asyncio.gather(*(one(e) for e in examples)))


def timed_report(
    examples: Sequence[Example],
    predictions: Sequence[Prediction],
    seconds: float,
    *,
    encoders: Encoders | None,
    bertscorer: BertScorer | None,
) -> EvalReport:
    """The report for predictions made in `seconds`, with model and throughput in its info."""
    started = time.perf_counter()
    report = score_predictions(
        examples,
        [p.summary for p in predictions],
        encoders=encoders,
        bertscorer=bertscorer,
        languages=[p.language for p in predictions],
    )
    report.info.update(
        models=sorted({f"{p.engine}:{p.model}" for p in predictions}),
        summarize_seconds=round(seconds, 2),
        scoring_seconds=round(time.perf_counter() - started, 2),
    )
    return report
