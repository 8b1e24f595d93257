"""Job events: stored in order (the history a late WatchJob subscriber replays) and announced.

The store writes each state change's event in the same transaction as the
change; this module wakes the watchers in this process when a job has news.
The store is the source of truth, so a watcher on another replica sees
everything by polling.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from soriflow.gateway.store import JobStore
from soriflow.v1 import gateway_pb2


class EventBus:
    """Wakes the watchers of a job in this process when it has new events."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, job_id: str) -> None:
        for waiter in self._waiters.get(job_id, ()):
            waiter.set()

    async def wait(self, job_id: str, timeout: float) -> None:
        """Returns when the job has news or after `timeout` (to poll other replicas' events)."""
        waiter = asyncio.Event()
        self._waiters[job_id].add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters[job_id].discard(waiter)
            if not self._waiters[job_id]:
                self._waiters.pop(job_id, None)


class EventLog:
    """Appends events that are not state changes (notes) to the store, and announces them."""

    def __init__(self, store: JobStore, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    async def emit(self, job_id: str, event: gateway_pb2.JobEvent) -> gateway_pb2.JobEvent:
        stored = await asyncio.to_thread(self.store.append_event, job_id, event)
        self.bus.notify(job_id)
        return stored
