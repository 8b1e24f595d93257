"""Dynamic batching: concurrent generations share one padded `generate` call.

A generation step costs nearly the same for one sequence as for eight (on a
GPU, and on a CPU too while the model is small and the time goes into per-layer
overhead rather than arithmetic), so requests that arrive together are run
together. The first request of a batch waits at most `max_wait_s` for others
to join, a batch holds at most `max_batch_size`, and while a batch runs the
next one fills up, so under load batches grow by themselves and an idle
server adds at most `max_wait_s` to a request's latency.

One worker per engine runs batches one after another in a thread; results go
back to each caller's future. A caller that goes away (cancelled RPC,
deadline) leaves the batch; when every caller of a running batch is gone the
engine is told to stop. At most `max_waiting` generations wait; beyond that
callers get RESOURCE_EXHAUSTED with a retry hint right away.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

from soriflow.errors import ResourceExhausted, Unavailable

from .engines.base import Engine, Generation, Task
from .metrics import BATCH_SIZE, BATCH_WAIT

log = logging.getLogger("soriflow.summarizer.batching")


@dataclass
class BatchStats:
    """What the batcher has done, for tests, benchmarks and logs."""

    batches: int = 0
    generations: int = 0
    largest_batch: int = 0
    sizes: collections.Counter[int] = field(default_factory=collections.Counter)

    @property
    def mean_batch(self) -> float:
        return self.generations / self.batches if self.batches else 0.0


@dataclass
class _Item:
    task: Task
    future: asyncio.Future[Generation]
    enqueued: float


class DynamicBatcher:
    """Collects generations for one engine into batches of up to `max_batch_size`."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_waiting: int,
        retry_after_s: float = 1.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_waiting = max_waiting
        self.retry_after_s = retry_after_s
        self.stats = BatchStats()
        self._pending: collections.deque[_Item] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def submit(self, task: Task) -> Generation:
        """The engine's generation for `task`, run in whichever batch it joins."""
        if self._closed:
            raise Unavailable("the summarizer is shutting down; retry on another replica")
        if len(self._pending) >= self.max_waiting + self.max_batch_size:
            raise ResourceExhausted(
                f"the {self.engine.info.engine} summarizer is busy: {len(self._pending)} generations waiting "
                f"(limit {self.max_waiting}); retry in {self.retry_after_s:g}s or add replicas",
                retry_after_s=self.retry_after_s,
            )
        loop = asyncio.get_running_loop()
        item = _Item(task, loop.create_future(), time.perf_counter())
        self._pending.append(item)
        self._wake()
        return await item.future  # a cancelled caller cancels the future: it leaves the batch

    def _wake(self) -> None:
        if self._arrived is None:
            self._arrived = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="summarizer-batcher")
        self._arrived.set()

    def _live(self) -> int:
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()
        return sum(1 for item in self._pending if not item.future.done())

    async def _collect(self) -> list[_Item]:
        """Waits for a first generation, then up to `max_wait_s` (from its arrival) for a full batch."""
        assert self._arrived is not None
        while not self._live():
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._pending[0].enqueued + self.max_wait_s
        while self._live() < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        batch: list[_Item] = []
        while self._pending and len(batch) < self.max_batch_size:
            item = self._pending.popleft()
            if not item.future.done():
                batch.append(item)
        return batch

    async def _run(self) -> None:
        while not self._closed:
            batch = await self._collect()
            if batch:
                try:
                    await self._execute(batch)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # the worker must outlive any one batch
                    log.exception("summarizer batch failed: %s", exc)

    async def _execute(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        name = self.engine.info.engine
        for item in batch:
            BATCH_WAIT.labels(name).observe(started - item.enqueued)
        BATCH_SIZE.labels(name).observe(len(batch))
        self.stats.batches += 1
        self.stats.generations += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self.stats.sizes[len(batch)] += 1
        cancel = threading.Event()

        def abandoned(_: object) -> None:
            if all(item.future.done() for item in batch):
                cancel.set()

        for item in batch:
            item.future.add_done_callback(abandoned)
        tasks = [item.task for item in batch]
        try:
            results = await asyncio.to_thread(self.engine.generate, tasks, cancel)
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def close(self) -> None:
        """Stops the worker; generations still waiting get UNAVAILABLE."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(BaseException):
                await self._worker
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(Unavailable("the summarizer is shutting down; retry"))
