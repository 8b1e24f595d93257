"""Where jobs get a worker slot: SQS jobs, API submissions and orphan recovery share one pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from soriflow.gateway.runner import JobRunner
from soriflow.gateway.store import JobStore

log = logging.getLogger("soriflow.gateway.scheduler")


class Scheduler:
    def __init__(self, *, runner: JobRunner, store: JobStore, concurrency: int) -> None:
        self.runner = runner
        self.store = store
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self._background: set[asyncio.Task[str | None]] = set()

    @property
    def busy(self) -> int:
        return len(self.runner.running)

    async def run_job(self, job_id: str) -> str | None:
        """Claims and runs a job in a slot; None when another worker has it or it needs no run."""
        async with self.slots:
            if not await asyncio.to_thread(
                self.store.claim, job_id, self.runner.worker_id, self.runner.lease_s
            ):
                return None
            job = await asyncio.to_thread(self.store.get_job, job_id)
            assert job is not None
            return await self.runner.run(job)

    def submit(self, job_id: str) -> asyncio.Task[str | None]:
        """Runs a job in the background (API submissions)."""
        task = asyncio.create_task(self.run_job(job_id), name=f"job-{job_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def cancel_local(self, job_id: str) -> bool:
        task = self.runner.running.get(job_id)
        if task is None:
            return False
        task.cancel()
        return True

    async def recover(self, stop: asyncio.Event, interval_s: float = 10.0) -> None:
        """Re-runs API jobs whose worker died (no SQS message would bring them back)."""
        while not stop.is_set():
            try:
                for job in await asyncio.to_thread(self.store.orphaned_jobs, origin="api"):
                    if job.id not in self.runner.running:
                        log.info("recovering orphaned job %s (%s)", job.id, job.state)
                        self.submit(job.id)
            except Exception:
                log.exception("orphan recovery failed; will try again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def shutdown(self, grace_s: float) -> None:
        """Lets running jobs finish within the grace period, then hands the rest back."""
        tasks = [t for t in self._background if not t.done()]
        tasks += [t for t in self.runner.running.values() if t not in tasks and not t.done()]
        if not tasks:
            return
        _, still = await asyncio.wait(tasks, timeout=grace_s)
        for task in still:
            task.cancel()
        for task in still:
            with contextlib.suppress(BaseException):
                await task
