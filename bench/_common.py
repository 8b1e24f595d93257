"""What every benchmark shares: timing helpers and the result record.

Each benchmark prints its figures, ends with one JSON line, and saves
`bench/results/<name>.json`, from which scripts/benchmarks_doc.py renders
docs/benchmarks.md. Figures are ratios against a baseline measured in the
same run wherever a comparison is meant: these machines are noisy.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def timeit(fn: Callable[[], Any], *, repeat: int = 5, warmup: int = 1) -> list[float]:
    """Wall times of `repeat` calls after `warmup` untimed ones, in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100) of a non-empty list."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }


def _invocation() -> str:
    """How to rerun this benchmark from the repository root.

    Benchmarks import `bench._common`, so they only run as modules
    (`python -m bench.x`); a path in sys.argv[0] is turned back into that form.
    """
    module = Path(sys.argv[0]).stem
    return " ".join(["python", "-m", f"bench.{module}", *sys.argv[1:]])


def report(name: str, figures: dict[str, Any], *, summary: str, command: str | None = None) -> dict[str, Any]:
    """Prints the final JSON line and saves bench/results/<name>.json."""
    record = {
        "name": name,
        "summary": summary,
        "command": command or _invocation(),
        "figures": figures,
        "machine": machine(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(record, ensure_ascii=False))
    return record
