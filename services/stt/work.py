"""Running engine calls off the event loop, and stopping them when the caller goes away.

`soriflow.concurrency.run_blocking` returns the moment the caller is
cancelled while the thread winds down on its own. For inference that is not
enough: the request's `WorkQueue` slot would be handed to the next request
while the cancelled decode still holds the CPU, so more decodes would run at
once than the queue allows. Here the cancel event is set and the slot stays
held until the engine has noticed it (one segment or window at most), and
each stop is counted, which is how tests and dashboards see that cancelled
work really stopped rather than ran to the end unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from prometheus_client import Counter

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
        cancel = cancel or threading.Event()
        future = asyncio.get_running_loop().run_in_executor(self._pool, fn, cancel)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(future), _WIND_DOWN_S)
            if future.done() and not future.cancelled() and isinstance(future.exception(), Cancelled):
                CANCELLED.labels(path).inc()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
