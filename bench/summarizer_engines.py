"""Every summarizer engine side by side on the shipped inquiry sets (Korean and English).

`bench/data/inquiries_{ko,en}.csv` hold 40 caller inquiries each (반말/존댓말,
angry, sarcastic, pretending-expert; 1-5 sentences; insurance and contact-center
topics), each with a reference one-liner. Rows 1-15 (`dev`) were used while
writing the faithful engine's rules; rows 16-40 (`test`) are held out, and the
headline figures are theirs.

For each engine, in-process, on the `inquiry` style, with the grounding check
in report mode (so each engine's own output is measured):

- overlap with the reference: English content-word F1 (lemmas, template words
  left out), Korean ROUGE-1 on Kiwi morphemes (and character ROUGE-1);
- grounded share: summaries whose every content word occurs in the input;
- one line and shorter than the input;
- milliseconds per summary through the pipeline (median and p95 over single
  requests, grounding check included), and per call of the engines themselves
  (every row three times, warm; p50/p95/max) with the faithful/extractive
  ratio measured in the same run.

The causal LM (SmolLM2-135M, bundled) only writes English (it returns noise
in Korean after minutes), so it runs on the English set; `--no-lm` skips it.
Then the default pipeline (grounding enforced) on the English set shows how
often an LM summary was retried or replaced.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import time
from pathlib import Path
from typing import Any

from bench._common import percentile, report

DATA = Path(__file__).resolve().parent / "data"


def load(language: str) -> list[dict[str, str]]:
    with open(DATA / f"inquiries_{language}.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


async def run_engine(summarizer: Any, engine: str, rows: list[dict[str, str]], language: str) -> list[Any]:
    from soriflow.summarizer.pipeline import SummaryRequest
    from soriflow.summarizer.styles import Style

    results = []
    for row in rows:  # one at a time: the ms per summary is the figure
        request = SummaryRequest(text=row["input"], style=Style.INQUIRY, language=language, engine=engine)
        results.append(await summarizer.summarize(request))
    return results


async def run_concurrent(
    summarizer: Any, engine: str, rows: list[dict[str, str]], language: str
) -> list[Any]:
    """LM rows go concurrently, so the dynamic batcher groups them (as in production)."""
    from soriflow.summarizer.pipeline import SummaryRequest
    from soriflow.summarizer.styles import Style

    requests = [
        SummaryRequest(text=row["input"], style=Style.INQUIRY, language=language, engine=engine)
        for row in rows
    ]
    return list(await asyncio.gather(*(summarizer.summarize(r) for r in requests)))


def score(
    rows: list[dict[str, str]], results: list[Any], language: str, wall_s: float | None = None
) -> dict[str, Any]:
    from soriflow.summarizer.evaluation.rouge import rouge_scores

    figures: dict[str, Any] = {}
    for split in ("dev", "test"):
        picked = [(row, res) for row, res in zip(rows, results, strict=True) if row["split"] == split]
        if not picked:
            continue
        scores = [rouge_scores(res.summary, row["summary"], language) for row, res in picked]
        key = "content_f1" if language == "en" else "rouge1_morphs"
        part: dict[str, Any] = {
            key: round(statistics.fmean(s[key] for s in scores), 4),
            "rouge1_chars": round(statistics.fmean(s["rouge1_chars"] for s in scores), 4),
            "grounded_share": round(statistics.fmean(res.grounding.grounded for _, res in picked), 4),
            "one_line_share": round(
                statistics.fmean("\n" not in res.summary.strip() for _, res in picked), 4
            ),
            "shorter_than_input_share": round(
                statistics.fmean(len(res.summary) < len(row["input"]) for row, res in picked), 4
            ),
            "rows": len(picked),
        }
        fallbacks = [res.grounding.fallback.name.lower() for _, res in picked]
        if any(f not in ("none", "unspecified") for f in fallbacks):
            part["fallbacks"] = {f: fallbacks.count(f) for f in sorted(set(fallbacks))}
        figures[split] = part
    times = [res.processing_ms for res in results]
    figures["ms_median"] = statistics.median(times)
    figures["ms_p95"] = percentile([float(t) for t in times], 95)
    if wall_s is not None:
        figures["wall_s"] = round(wall_s, 2)
    return figures


def engine_times(rows_by_language: dict[str, list[dict[str, str]]], rounds: int = 3) -> dict[str, Any]:
    """Milliseconds per inquiry of the faithful and extractive engines themselves (warm, every row,
    `rounds` times), and the faithful/extractive ratio of the medians."""
    from soriflow.summarizer.engines.base import Task
    from soriflow.summarizer.engines.extractive import ExtractiveEngine
    from soriflow.summarizer.engines.faithful import FaithfulEngine
    from soriflow.summarizer.styles import Style

    engines = {"faithful": FaithfulEngine(), "extractive": ExtractiveEngine()}
    figures: dict[str, Any] = {}
    for language, rows in rows_by_language.items():
        medians = {}
        for name, engine in engines.items():
            tasks = [Task(row["input"], Style.INQUIRY, language, 128) for row in rows]
            for task in tasks:  # warm: Kiwi's and lemminflect's caches, as in a running server
                engine.summarize(task)
            times = []
            for _ in range(rounds):
                for task in tasks:
                    began = time.perf_counter()
                    engine.summarize(task)
                    times.append((time.perf_counter() - began) * 1000)
            medians[name] = statistics.median(times)
            figures[f"{language}.{name}_ms"] = {
                "p50": round(statistics.median(times), 3),
                "p95": round(percentile(times, 95), 3),
                "max": round(max(times), 3),
                "calls": len(times),
            }
        figures[f"{language}.faithful_vs_extractive_ms_ratio"] = round(
            medians["faithful"] / medians["extractive"], 2
        )
    return figures


def examples(rows: list[dict[str, str]], results: list[Any], count: int = 3) -> list[str]:
    test = [(row, res) for row, res in zip(rows, results, strict=True) if row["split"] == "test"]
    return [f"{res.summary}  (ref: {row['summary']})" for row, res in test[:count]]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from soriflow.summarizer.pipeline import Summarizer
    from soriflow.summarizer.settings import Settings

    started = time.perf_counter()
    report_settings = Settings(summarizer_grounding="report")
    summarizer = await asyncio.to_thread(Summarizer.load, report_settings, not args.no_lm)
    load_s = time.perf_counter() - started
    figures: dict[str, Any] = {"engines_load_s": round(load_s, 1)}
    samples: dict[str, list[str]] = {}
    try:
        for language in ("ko", "en"):
            rows = load(language)
            for engine in ("faithful", "extractive"):
                results = await run_engine(summarizer, engine, rows, language)
                figures[f"{language}.{engine}"] = score(rows, results, language)
                samples[f"{language}.{engine}"] = examples(rows, results)
            if language == "en" and "causal-lm" in summarizer.engines:
                test = [r for r in rows if r["split"] == "test"][: args.lm_rows]
                began = time.perf_counter()
                results = await run_concurrent(summarizer, "causal-lm", test, language)
                figures["en.causal-lm"] = score(test, results, language, time.perf_counter() - began)
                samples["en.causal-lm"] = examples(test, results)
    finally:
        await summarizer.close()
    if not args.no_lm:
        enforced = await asyncio.to_thread(Summarizer.load, Settings(summarizer_grounding="enforce"), True)
        try:
            rows = [r for r in load("en") if r["split"] == "test"][: args.lm_rows]
            began = time.perf_counter()
            results = await run_concurrent(enforced, "causal-lm", rows, "en")
            figures["en.causal-lm+grounding"] = score(rows, results, "en", time.perf_counter() - began)
            samples["en.causal-lm+grounding"] = examples(rows, results)
        finally:
            await enforced.close()
    figures["engine_timing"] = engine_times({language: load(language) for language in ("ko", "en")})
    figures["samples"] = samples
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-lm", action="store_true", help="skip the causal LM (SmolLM2)")
    parser.add_argument("--lm-rows", type=int, default=25, help="held-out English rows for the LM")
    args = parser.parse_args()
    figures = asyncio.run(main_async(args))
    ko, en = figures["ko.faithful"]["test"], figures["en.faithful"]["test"]
    timing = figures["engine_timing"]
    report(
        "summarizer_engines",
        figures,
        summary=(
            f"Held-out inquiries, faithful engine: Korean morpheme ROUGE-1 {ko['rouge1_morphs']:.2f} "
            f"(extractive {figures['ko.extractive']['test']['rouge1_morphs']:.2f}), English content-word F1 "
            f"{en['content_f1']:.2f} (extractive {figures['en.extractive']['test']['content_f1']:.2f}"
            + (
                f", SmolLM2 {figures['en.causal-lm']['test']['content_f1']:.2f}"
                if "en.causal-lm" in figures
                else ""
            )
            + f"); grounded {ko['grounded_share']:.0%} / {en['grounded_share']:.0%}; "
            f"{timing['ko.faithful_ms']['p50']:.2f} / {timing['en.faithful_ms']['p50']:.2f} ms per inquiry "
            f"(p95 {timing['ko.faithful_ms']['p95']:.1f} / {timing['en.faithful_ms']['p95']:.1f})"
        ),
    )


if __name__ == "__main__":
    main()
