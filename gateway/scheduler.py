"""Where jobs get a worker slot: SQS jobs, API submissions and orphan recovery share one pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from soriflow.errors import SoriflowError
from soriflow.gateway.pipelines import PipelineDef
from soriflow.gateway.runner import JobRunner
from soriflow.gateway.store import JobRecord, JobStore

log = logging.getLogger("soriflow.gateway.scheduler")


class Scheduler:
    def __init__(self, *, runner: JobRunner, store: JobStore, concurrency: int) -> None:
        self.runner = runner
        self.store = store
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self._background: set[asyncio.Task[JobRecord | None]] = set()

    @property
    def busy(self) -> int:
        return len(self.runner.running)

    async def run_job(
        self, job: JobRecord, pipeline: PipelineDef | None = None, *, last_attempt: bool = True
    ) -> JobRecord | None:
        """Claims and runs a job in a slot; returns it as the run left it, None when not claimed
        (another worker holds it, or it needs no run).

        `pipeline`: the job's, when the caller resolved it already. `last_attempt`: nothing will
        run the job again if it fails retryably (an API job, or the last receive before the
        queue's redrive), so such a failure is final.
        """
        async with self.slots:
            if pipeline is None or pipeline.name != job.pipeline:
                try:
                    pipeline = self.runner.registry.get(job.pipeline)
                except SoriflowError:
                    pipeline = None  # claimed all the same: the runner fails it with the reason
            stages = [(s.name, s.service, s.optional) for s in pipeline.stages] if pipeline else []
            claim = await asyncio.to_thread(
                self.store.claim, job.id, self.runner.worker_id, self.runner.lease_s, stages=stages
            )
            if claim is None:
                await self._end_abandoned_cancels()  # cancelled while its worker was gone
                return None
            self.runner.events.bus.notify(job.id)
            return await self.runner.run(claim, pipeline, last_attempt=last_attempt)

    def submit(self, job: JobRecord, pipeline: PipelineDef | None = None) -> asyncio.Task[JobRecord | None]:
        """Runs a job in the background (API submissions, recovered jobs)."""
        task = asyncio.create_task(self.run_job(job, pipeline), name=f"job-{job.id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def cancel_local(self, job_id: str) -> bool:
        task = self.runner.running.get(job_id)
        if task is None:
            return False
        task.cancel()
        return True

    async def _end_abandoned_cancels(self) -> None:
        for job in await asyncio.to_thread(self.store.cancel_abandoned):
            log.info("job %s: cancelled while no worker held it; now CANCELLED", job.id)
            self.runner.events.bus.notify(job.id)
            await self.runner.announce_final(job)

    async def recover(
        self, stop: asyncio.Event, interval_s: float = 10.0, sqs_stale_s: float = 120.0
    ) -> None:
        """Takes over jobs whose worker died, and ends cancelled jobs nobody holds.

        API jobs and schedule ticks have no message to bring them back, so they are re-run as
        soon as their lease expires (or, still queued, when the replica that made them died before
        running them). SQS jobs normally come back with their message (the visibility timeout
        outlasts the lease); one still abandoned `sqs_stale_s` after its lease expired has lost its
        message and is re-run here too.
        """
        while not stop.is_set():
            try:
                await self._end_abandoned_cancels()
                orphans = await asyncio.to_thread(self.store.orphaned_jobs, origin="api")
                orphans += await asyncio.to_thread(self.store.orphaned_jobs, origin="schedule")
                orphans += await asyncio.to_thread(
                    self.store.orphaned_jobs, origin="sqs", stale_s=sqs_stale_s
                )
                for job in orphans:
                    if job.id not in self.runner.running:
                        log.info("recovering orphaned %s job %s (%s)", job.origin, job.id, job.state)
                        self.submit(job)
            except Exception:
                log.exception("orphan recovery failed; will try again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def shutdown(self, deadline: float) -> None:
        """Lets running jobs finish until `deadline` (event loop time), then hands the rest back."""
        tasks = [t for t in self._background if not t.done()]
        tasks += [t for t in self.runner.running.values() if t not in tasks and not t.done()]
        if not tasks:
            return
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        _, still = await asyncio.wait(tasks, timeout=timeout)
        for task in still:
            task.cancel()
        for task in still:
            with contextlib.suppress(BaseException):
                await task
