"""Summarizer throughput: dynamic batching vs one request at a time, tokens/s, time to first token.

Two real servers on loopback run the bundled SmolLM2-135M on this machine's
CPU: one batches up to N concurrent requests into one padded `generate`, the
other has `max_batch_size=1` (the baseline: requests run one after another).
Each round sends the same N distinct requests concurrently to both, in
alternating order; figures are medians over rounds. Output lengths vary with
the model's end token, so throughput is reported as requests/s and generated
tokens/s. Streaming: time to the first text delta against the whole stream's
time for one request on an idle server.

    python -m bench.summarizer_batching [--n 8] [--tokens 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import median, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "I was in a car accident yesterday and I want to know if my insurance covers the repair of my car.",
    "My package was supposed to arrive last Monday but never came. I would like a refund for the order.",
    "I cannot log in to my bank account because the password reset email never arrives.",
    "My flight to Seoul was cancelled this morning. I need a new ticket for tomorrow and a hotel tonight.",
    "The internet at my home has been down for two days and the technician did not come as promised.",
    "I was charged twice for the same phone bill this month and want one of the payments returned.",
    "I would like to change the delivery address of my order to my office in Busan.",
    "My new washing machine leaks water from the bottom. Can someone repair or replace it?",
    "I want to cancel my gym membership but the website gives an error when I try.",
    "The hotel room I booked has no hot water and the front desk does not answer the phone.",
    "Please explain why my credit card was declined at the store even though I paid the balance.",
    "My child's school bus pass was lost and I need a replacement before Monday.",
]


async def _burst(address: str, n: int, tokens: int) -> tuple[float, int]:
    """Wall time and generated tokens of n concurrent Summarize calls."""
    from soriflow.client import open_channel
    from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc

    async with open_channel(address) as channel:
        stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)
        requests = [
            summarizer_pb2.SummarizeRequest(text=TEXTS[i % len(TEXTS)], max_output_tokens=tokens)
            for i in range(n)
        ]
        started = time.perf_counter()
        responses = await asyncio.gather(*(stub.Summarize(r, timeout=900) for r in requests))
        elapsed = time.perf_counter() - started
    return elapsed, sum(r.output_tokens for r in responses)


async def _stream(address: str, tokens: int) -> tuple[float, float, int]:
    """(time to first delta, total time, output tokens) of one SummarizeStream call."""
    from soriflow.client import open_channel
    from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc

    async with open_channel(address) as channel:
        stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)
        request = summarizer_pb2.SummarizeStreamRequest(
            request=summarizer_pb2.SummarizeRequest(text=TEXTS[0], max_output_tokens=tokens)
        )
        started = time.perf_counter()
        first = None
        output = 0
        async for event in stub.SummarizeStream(request, timeout=900):
            if event.HasField("result"):
                output = event.result.output_tokens
            elif first is None:
                first = time.perf_counter() - started
        total = time.perf_counter() - started
    return first or total, total, output


async def main(n: int, tokens: int, rounds: int, cache: Path) -> dict[str, Any]:
    from soriflow.server import running
    from soriflow.summarizer.service import create_service
    from soriflow.summarizer.settings import Settings

    def settings(batch: int) -> Settings:
        return Settings(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            log_format="text",
            cache_dir=cache,
            summarizer_device="cpu",
            summarizer_max_batch_size=batch,
            summarizer_max_wait_ms=50,
            # The one-at-a-time baseline queues 8 requests on a loaded 2-core machine: minutes, by design.
            summarizer_generation_timeout_s=900,
        )

    started = time.perf_counter()
    async with (
        running(create_service(settings(n))) as batched,
        running(create_service(settings(1))) as single,
    ):
        load_s = time.perf_counter() - started
        await _burst(batched.address, 2, 4)  # warm both
        await _burst(single.address, 1, 4)
        runs: dict[str, list[tuple[float, int]]] = {"batched": [], "sequential": []}
        for index in range(rounds):
            order = [("batched", batched), ("sequential", single)]
            for name, server in order if index % 2 == 0 else reversed(order):
                runs[name].append(await _burst(server.address, n, tokens))
                print(
                    f"round {index + 1} {name}: {runs[name][-1][0]:.1f}s, {runs[name][-1][1]} tokens",
                    flush=True,
                )
        streams = [await _stream(single.address, tokens) for _ in range(rounds + 1)]
        stats = batched.service.summarizer.batchers["causal-lm"].stats  # type: ignore[attr-defined]
    figures: dict[str, Any] = {
        "concurrent_requests": n,
        "max_output_tokens": tokens,
        "rounds": rounds,
        "servers_ready_s": round(load_s, 2),
    }
    for name, values in runs.items():
        seconds = median([v[0] for v in values])
        produced = median([float(v[1]) for v in values])
        figures[f"{name}_wall_s"] = round(seconds, 2)
        figures[f"{name}_requests_per_s"] = round(n / seconds, 3)
        figures[f"{name}_tokens_per_s"] = round(produced / seconds, 2)
    figures["throughput_ratio_batched_vs_sequential"] = round(
        figures["batched_tokens_per_s"] / figures["sequential_tokens_per_s"], 2
    )
    figures["batched_largest_batch"] = stats.largest_batch
    figures["batched_mean_batch"] = round(stats.mean_batch, 2)
    ttft = median([s[0] for s in streams])
    total = median([s[1] for s in streams])
    figures["stream_time_to_first_token_s"] = round(ttft, 3)
    figures["stream_total_s"] = round(total, 3)
    figures["stream_first_token_fraction"] = round(ttft / total, 3)
    figures["stream_tokens_per_s"] = round(median([s[2] / s[1] for s in streams]), 2)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=8, help="concurrent requests per burst")
    parser.add_argument("--tokens", type=int, default=32, help="max_output_tokens per request")
    parser.add_argument("--rounds", type=int, default=2, help="bursts per configuration")
    args = parser.parse_args()
    cache = Path(os.environ.get("SORIFLOW_CACHE_DIR") or Path(tempfile.gettempdir()) / "soriflow-bench-cache")
    figures = asyncio.run(main(args.n, args.tokens, args.rounds, cache))
    report(
        "summarizer_batching",
        figures,
        summary=(
            f"SmolLM2-135M on CPU, {args.n} concurrent requests: dynamic batching gives "
            f"{figures['throughput_ratio_batched_vs_sequential']}x the tokens/s of one-at-a-time; "
            "streaming's first token after "
            f"{figures['stream_first_token_fraction'] * 100:.0f}% of the total time"
        ),
    )
