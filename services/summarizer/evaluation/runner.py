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

from ..pipeline import Fallback, GroundingReport, Summarizer, SummaryRequest
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
    grounding: GroundingReport = field(default_factory=GroundingReport)


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
                **rouge_scores(prediction, example.summary, language),
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
    # Union over rows: Korean rows add morpheme ROUGE, English rows content-word F1.
    keys = list(dict.fromkeys(k for row in rows for k, v in row.items() if isinstance(v, float)))
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
        return Prediction(result.summary, result.model, result.engine, result.language, result.grounding)

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

    from ..messages import STYLE_VALUES, grounding_from_proto

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
            return Prediction(
                response.summary,
                response.model,
                response.engine,
                response.language_code,
                grounding_from_proto(response),
            )

        return list(await asyncio.gather(*(one(e) for e in examples)))


def add_grounding(report: EvalReport, predictions: Sequence[Prediction]) -> None:
    """Per-row grounding and, per engine that wrote the first summary, the share that failed it.

    With grounding enforced a failed summary was retried or replaced; the row's `engine` is then
    the one that wrote the answer and `first_engine` the one that failed. `ungrounded_share[E]` is
    the share of E's own first summaries that failed the check (0 when it never failed).
    """
    by_engine: dict[str, list[bool]] = defaultdict(list)
    for row, prediction in zip(report.examples, predictions, strict=True):
        check = prediction.grounding
        if not check.checked:
            continue
        first = check.rejected_engine or prediction.engine
        failed = check.fallback in (Fallback.STRICT_RETRY, Fallback.FAITHFUL_ENGINE) or not check.grounded
        row.update(
            grounded=check.grounded,
            unsupported_terms=" ".join(check.unsupported),
            fallback=check.fallback.name.lower(),
            rejected_terms=" ".join(check.rejected_terms),
            first_engine=first,
        )
        by_engine[first].append(failed)
    for engine, failures in sorted(by_engine.items()):
        report.metrics[f"ungrounded_share[{engine}]"] = sum(failures) / len(failures)
    if by_engine:
        report.metrics["grounded_share"] = statistics.fmean(
            1.0 if p.grounding.grounded else 0.0 for p in predictions if p.grounding.checked
        )
    else:
        report.notes.append("grounding not checked (SORIFLOW_SUMMARIZER_GROUNDING=off)")


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
    add_grounding(report, predictions)
    report.info.update(
        models=sorted({f"{p.engine}:{p.model}" for p in predictions}),
        summarize_seconds=round(seconds, 2),
        scoring_seconds=round(time.perf_counter() - started, 2),
    )
    return report
