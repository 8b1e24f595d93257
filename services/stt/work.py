"""Engine calls on the STT service's own thread pool, with every cancelled call counted.

`soriflow.concurrency.run_blocking` sets the cancel event and keeps the
request's queue slot until the engine has noticed (one segment or window at
most). Here each such stop is also counted, which is how tests and dashboards
see that cancelled work really stopped rather than ran to the end unseen.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from prometheus_client import Counter

from soriflow.concurrency import run_blocking
from soriflow.errors import Cancelled

T = TypeVar("T")

CANCELLED = Counter(
    "soriflow_stt_cancelled_total",
    "Engine calls stopped early because the client cancelled or its deadline passed, by path.",
    ["path"],
)
#: Longest wait for a cancelled engine call to notice (a 30 s window on a slow CPU).
_WIND_DOWN_S = 60.0


class EngineRunner:
    """A thread pool for engine calls that honours cancellation (see the module docstring)."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stt-engine")

    async def run(
        self,
        fn: Callable[[threading.Event], T],
        *,
        path: str = "recognize",
        cancel: threading.Event | None = None,
    ) -> T:
        """`fn(cancel)` in a worker thread; `cancel` (made here unless given) is set if the caller goes."""
        stopped = threading.Event()

        def call(event: threading.Event) -> T:
            try:
                return fn(event)
            except Cancelled:  # the engine noticed the cancellation and stopped early
                stopped.set()
                raise

        try:
            return await run_blocking(call, executor=self._pool, cancel=cancel, wind_down_s=_WIND_DOWN_S)
        except asyncio.CancelledError:
            if stopped.is_set():
                CANCELLED.labels(path).inc()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
