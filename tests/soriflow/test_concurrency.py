"""WorkQueue admission and run_blocking cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from soriflow.concurrency import WorkQueue, run_blocking
from soriflow.errors import ResourceExhausted


async def test_queue_admits_waits_and_turns_away_with_a_retry_hint() -> None:
    queue = WorkQueue("test", max_concurrency=1, max_waiting=1, retry_after_s=2.5)
    release = asyncio.Event()
    order: list[str] = []

    async def job(name: str) -> None:
        async with queue.slot():
            order.append(name)
            await release.wait()

    first = asyncio.create_task(job("first"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(job("second"))
    await asyncio.sleep(0.01)
    assert (queue.running, queue.waiting) == (1, 1)
    with pytest.raises(ResourceExhausted, match="1 requests running and 1 waiting") as err:
        async with queue.slot():
            pass
    assert err.value.retry_after_s == 2.5
    release.set()
    await asyncio.gather(first, second)
    assert order == ["first", "second"]
    assert (queue.running, queue.waiting) == (0, 0)


async def test_cancelled_work_is_told_to_stop_and_awaited() -> None:
    stopped_at: list[float] = []
    started = threading.Event()

    def work(cancel: threading.Event) -> None:
        started.set()
        while not cancel.is_set():
            time.sleep(0.01)
        time.sleep(0.2)  # winding down takes a moment
        stopped_at.append(time.monotonic())

    task = asyncio.create_task(run_blocking(work))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the caller (and so its queue slot) was released only after the worker had stopped
    assert stopped_at
    assert stopped_at[0] <= time.monotonic()


async def test_results_and_errors_pass_through() -> None:
    assert await run_blocking(lambda cancel: 41 + 1) == 42

    def boom(cancel: threading.Event) -> None:
        raise ValueError("engine failed")

    with pytest.raises(ValueError, match="engine failed"):
        await run_blocking(boom)
