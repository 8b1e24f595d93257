"""The dynamic batcher with the real extractive engine: batch sizes, waiting, limits, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from soriflow.errors import ResourceExhausted
from soriflow.summarizer.batching import DynamicBatcher
from soriflow.summarizer.engines.base import Task
from soriflow.summarizer.engines.extractive import ExtractiveEngine
from soriflow.summarizer.styles import Style

TEXTS = [
    f"Request {i}: the customer number {i} asks about order {i}. The weather was fine. Order {i} is late."
    for i in range(7)
]


def task(text: str) -> Task:
    return Task(text, Style.INQUIRY, "en", 32)


async def test_concurrent_requests_share_batches_and_get_their_own_answers() -> None:
    batcher = DynamicBatcher(ExtractiveEngine(), max_batch_size=3, max_wait_s=0.5, max_waiting=16)
    try:
        results = await asyncio.gather(*(batcher.submit(task(t)) for t in TEXTS))
        for i, result in enumerate(results):
            assert f"order {i}" in result.text.lower(), result.text
        assert batcher.stats.generations == 7
        assert batcher.stats.largest_batch == 3
        assert sorted(batcher.stats.sizes.elements()) == [1, 3, 3]
    finally:
        await batcher.close()


async def lone_request_seconds(max_wait_s: float) -> float:
    """How long one request alone takes through a batcher that waits `max_wait_s` for company."""
    batcher = DynamicBatcher(ExtractiveEngine(), max_batch_size=8, max_wait_s=max_wait_s, max_waiting=4)
    try:
        await batcher.submit(task(TEXTS[1]))  # warm-up: the first call imports and compiles
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.submit(task(TEXTS[0]))
        elapsed = loop.time() - started
        assert batcher.stats.sizes[1] == 2  # both went alone
        return elapsed
    finally:
        await batcher.close()


async def test_a_lone_request_waits_at_most_max_wait() -> None:
    """The wait is what max_wait says: a 1 s wait costs a second more than a 0.05 s one, no more."""
    short = await lone_request_seconds(0.05)
    long = await lone_request_seconds(1.0)
    assert long >= 1.0  # it did wait for others to join
    assert long - short == pytest.approx(0.95, abs=0.3)  # the same work; only the wait differs


async def test_full_queue_is_refused_with_retry_hint() -> None:
    batcher = DynamicBatcher(
        ExtractiveEngine(), max_batch_size=1, max_wait_s=0.0, max_waiting=1, retry_after_s=3
    )
    try:
        outcomes = await asyncio.gather(*(batcher.submit(task(t)) for t in TEXTS[:4]), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, ResourceExhausted)]
        assert refused
        assert all(r.retry_after_s == 3 and "limit 1" in r.message for r in refused)
        assert any(not isinstance(o, BaseException) for o in outcomes)
    finally:
        await batcher.close()


async def test_cancelled_caller_leaves_the_batch() -> None:
    batcher = DynamicBatcher(ExtractiveEngine(), max_batch_size=4, max_wait_s=0.3, max_waiting=8)
    try:
        gone = asyncio.ensure_future(batcher.submit(task(TEXTS[0])))
        kept = asyncio.ensure_future(batcher.submit(task(TEXTS[1])))
        await asyncio.sleep(0.05)
        gone.cancel()
        result = await kept
        assert "order 1" in result.text.lower()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert batcher.stats.generations == 1
    finally:
        await batcher.close()
