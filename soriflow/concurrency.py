"""Bounded work queues and cancellable blocking calls for inference services.

Models are heavy: running more requests at once than the hardware can serve
only makes every one of them slow. A `WorkQueue` admits a fixed number at a
time, lets a bounded number wait, and turns the rest away at once with
RESOURCE_EXHAUSTED and a retry hint, so callers (the gateway's retry policy,
a load balancer) can go elsewhere instead of timing out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from soriflow.errors import ResourceExhausted
from soriflow.metrics import QUEUE_DEPTH, QUEUE_REJECTED

T = TypeVar("T")


class WorkQueue:
    """At most `max_concurrency` holders at once and `max_waiting` more in line."""

    def __init__(
        self, name: str, *, max_concurrency: int, max_waiting: int, retry_after_s: float = 1.0
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_waiting < 0:
            raise ValueError("max_waiting cannot be negative")
        self.name = name
        self.max_concurrency = max_concurrency
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._waiting = 0
        self._running = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds a worker slot for the body; raises ResourceExhausted when the line is full."""
        if self._semaphore.locked() and self._waiting >= self.max_waiting:
            QUEUE_REJECTED.labels(self.name).inc()
            raise ResourceExhausted(
                f"{self.name} is busy: {self._running} requests running and {self._waiting} waiting "
                f"(limit {self.max_waiting}); retry in {self.retry_after_s:g}s or add replicas",
                retry_after_s=self.retry_after_s,
            )
        self._waiting += 1
        QUEUE_DEPTH.labels(self.name).set(self._waiting)
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
            QUEUE_DEPTH.labels(self.name).set(self._waiting)
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._semaphore.release()


_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="soriflow-work")
    return _EXECUTOR


async def run_blocking(
    fn: Callable[[threading.Event], T],
    *,
    executor: concurrent.futures.Executor | None = None,
    cancel: threading.Event | None = None,
    wind_down_s: float = 60.0,
) -> T:
    """Runs `fn(cancel_event)` in a worker thread; sets the event if the caller is cancelled.

    A thread cannot be killed, so cancellation is cooperative: engines check
    `cancel_event.is_set()` between segments or chunks and stop early. After a
    cancellation this waits (up to `wind_down_s`) for the thread to notice
    before re-raising, so the caller's `WorkQueue` slot stays held while the
    CPU is still busy: otherwise a cancelled decode and the next request's
    would run at once, beyond what the queue allows.
    """
    cancel = cancel or threading.Event()
    future = asyncio.get_running_loop().run_in_executor(executor or _executor(), fn, cancel)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        cancel.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(future), wind_down_s)
        raise
