"""Prometheus metrics of the summarizer (besides the runtime's RPC metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BATCH_SIZE = Histogram(
    "soriflow_summarizer_batch_size",
    "Generations run together in one padded batch, by engine.",
    ["engine"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128),
)
BATCH_WAIT = Histogram(
    "soriflow_summarizer_batch_wait_seconds",
    "Time a generation waited in the batcher before its batch started, by engine.",
    ["engine"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TOKENS = Counter(
    "soriflow_summarizer_tokens_total",
    "Tokens read (input) and written (output), by engine.",
    ["engine", "direction"],
)
CHUNKS = Histogram(
    "soriflow_summarizer_chunks",
    "Chunks an input was split into (1 when it fit the model's context).",
    buckets=(1, 2, 3, 4, 6, 8, 16, 32, 64),
)
TIME_TO_FIRST_TEXT = Histogram(
    "soriflow_summarizer_time_to_first_text_seconds",
    "From a SummarizeStream request to its first text delta, by engine.",
    ["engine"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
DEADLINES = Counter(
    "soriflow_summarizer_deadline_exceeded_total",
    "Requests stopped by the generation deadline (SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S or the RPC's).",
)
GROUNDING = Counter(
    "soriflow_summarizer_grounding_total",
    "Grounding checks by the engine that wrote the first summary and the outcome: grounded, ungrounded "
    "(a failed check; reported, or followed by strict_retry / faithful_engine when enforced).",
    ["engine", "outcome"],
)
