"""Runs one job's pipeline: stages in dependency order, in parallel where they can be.

Per stage: a deadline per attempt and the stage's `RetryPolicy` (tenacity:
exponential backoff with jitter on retryable status codes only, honouring the
service's RetryInfo), outputs stored before the stage counts as done, and its
result saved so a re-run after a crash resumes from the last finished stage
instead of repeating work. INVALID_ARGUMENT and other permanent errors fail
the stage at once. Optional stages may fail without failing the job (it ends
PARTIAL). When the job fails for good, the pipeline's `on_failure` stages run
(the failure path), and only final states are notified: a retryable failure
that the queue will deliver again is not the end of the job.

The runner knows no stage kind in particular: what a stage calls, stores,
adds to the job's result and records elsewhere are its `StageKind`'s hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from soriflow.errors import FailedPrecondition, SoriflowError
from soriflow.gateway import gates
from soriflow.gateway.clients import ServiceClients
from soriflow.gateway.events import EventLog
from soriflow.gateway.notify import Notifier
from soriflow.gateway.outputs import OutputWriter
from soriflow.gateway.pipelines import PipelineDef, PipelineRegistry, StageDef
from soriflow.gateway.retry import classify
from soriflow.gateway.stages import KINDS, StageContext, StageKind
from soriflow.gateway.states import JobState, StageState
from soriflow.gateway.store import (
    Claim,
    JobRecord,
    JobStore,
    OutputRecord,
    StageRecord,
    job_state_event,
    utcnow,
)
from soriflow.v1 import gateway_pb2

log = logging.getLogger("soriflow.gateway.runner")


class Outcome(enum.Enum):
    """What became of a stage in this run (NOT_APPLICABLE: its `when` parameter was unset)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not applicable"

    @property
    def ok(self) -> bool:
        """Stages that need it may run."""
        return self in (Outcome.SUCCEEDED, Outcome.NOT_APPLICABLE)


@dataclass
class StageFailure:
    code: str
    message: str
    retryable: bool


@dataclass
class Completion:
    """A stage's success, its outputs already in S3, waiting to be recorded in the store."""

    attempt: int
    result: Message
    outputs: list[OutputRecord]
    job_result: gateway_pb2.JobResult
    duration_ms: int
    ended_at: dt.datetime


StageRun = tuple[str, Outcome, StageFailure | None, Completion | None]


class JobRunner:
    """Executes pipelines for claimed jobs."""

    def __init__(
        self,
        *,
        store: JobStore,
        registry: PipelineRegistry,
        clients: ServiceClients,
        outputs: OutputWriter,
        events: EventLog,
        notifier: Notifier,
        worker_id: str,
        lease_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clients = clients
        self.outputs = outputs
        self.events = events
        self.notifier = notifier
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.rng = rng or random.Random()
        self.running: dict[str, asyncio.Task[Any]] = {}

    async def run(
        self, claim: Claim, pipeline: PipelineDef | None = None, *, last_attempt: bool = True
    ) -> JobRecord:
        """Runs a job this worker has claimed; returns it as its run left it.

        `pipeline`: the job's, when the caller already resolved it. `last_attempt`: nothing runs
        the job again after a retryable failure (an API job, or an SQS message's last receive
        before the dead-letter queue), so such a failure is final. Raises CancelledError when the
        job is handed back (shutdown, lost lease).
        """
        job = claim.job
        task = asyncio.current_task()
        assert task is not None
        self.running[job.id] = task
        heartbeat = asyncio.create_task(self._heartbeat(job.id, task))
        try:
            if pipeline is None or pipeline.name != job.pipeline:
                pipeline = self.registry.get(job.pipeline)
            return await self._run(job, pipeline, claim.stages, last_attempt)
        except SoriflowError as exc:  # e.g. the job's pipeline was removed from the configuration
            return await self._finish(
                job, JobState.FAILED, exc.message, exc.code.name, False, last_attempt=last_attempt
            )
        except Exception as exc:  # a bug must fail the job with a reason, never leave it hanging
            log.exception("job %s: unexpected error in the runner", job.id)
            return await self._finish(
                job,
                JobState.FAILED,
                f"internal error in the gateway: {type(exc).__name__}: {exc}",
                "INTERNAL",
                True,
                last_attempt=last_attempt,
            )
        except asyncio.CancelledError:
            current = await asyncio.to_thread(self.store.get_job, job.id)
            if current is not None and current.cancel_requested:
                return await self._finish(
                    job, JobState.CANCELLED, "cancelled by a caller", "CANCELLED", False
                )
            # Shutdown or a lost lease: leave the job for another worker, do not mark it.
            await asyncio.to_thread(self.store.release, job.id, self.worker_id)
            raise
        finally:
            heartbeat.cancel()
            self.running.pop(job.id, None)

    async def _heartbeat(self, job_id: str, task: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if not await asyncio.to_thread(self.store.renew_lease, job_id, self.worker_id, self.lease_s):
                log.warning("job %s: lease lost or cancellation requested; stopping", job_id)
                task.cancel()
                return

    def _context(
        self, job: JobRecord, results: dict[str, Message], timeout_s: float = 0, stage: str = ""
    ) -> StageContext:
        return StageContext(
            job_id=job.id,
            source_uri=job.source_uri,
            params=job.parameters,
            results=results,
            clients=self.clients,
            timeout_s=timeout_s,
            metadata=job.metadata,
            stage=stage,
        )

    async def _run(
        self, job: JobRecord, pipeline: PipelineDef, stored: list[StageRecord], last_attempt: bool
    ) -> JobRecord:
        main = {s.name: s for s in pipeline.stages}
        if not set(main) <= {r.name for r in stored}:  # claimed without knowing the pipeline
            await asyncio.to_thread(
                self.store.init_stages, job.id, [(s.name, s.service, s.optional) for s in pipeline.stages]
            )
        ctx = self._context(job, {})
        done: dict[str, Outcome] = {}
        failures: dict[str, StageFailure] = {}
        for record in stored:  # resume after a crash or a redelivery: finished stages are not repeated
            if record.state is StageState.SUCCEEDED and record.result is not None and record.name in main:
                ctx.results[record.name] = KINDS[main[record.name].uses].result_type.FromString(record.result)
                done[record.name] = Outcome.SUCCEEDED
        pending = {s.name: s for s in pipeline.topological_order() if s.name not in done}
        tasks: dict[asyncio.Task[StageRun], str] = {}
        while pending or tasks:
            for name, stage in list(pending.items()):
                if any(n not in done for n in stage.needs):
                    continue
                del pending[name]
                if blocked := [n for n in stage.needs if not done[n].ok]:
                    done[name] = Outcome.SKIPPED
                    await self._set_stage(
                        job.id,
                        name,
                        StageState.SKIPPED,
                        error=f"skipped: {', '.join(blocked)} did not succeed",
                    )
                elif stage.when is not None and not job.parameters.get(stage.when):
                    done[name] = Outcome.NOT_APPLICABLE
                    await self._set_stage(
                        job.id, name, StageState.SKIPPED, error=f"not applicable: no {stage.when}"
                    )
                else:
                    tasks[asyncio.create_task(self._run_stage(job, stage, ctx, pipeline))] = name
            if not tasks:
                break
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            completions = []
            for task in finished:
                name = tasks.pop(task)
                _, outcome, failure, completion = task.result()
                done[name] = outcome
                if failure is not None:
                    failures[name] = failure
                if completion is not None:
                    completions.append((name, completion))
            # Recorded before the stages that need them start. When the last one ends the job
            # (nothing else to run, every stage done), the job's success is the same write.
            ends = (
                not pending and not tasks and all(done.get(s.name, Outcome.FAILED).ok for s in main.values())
            )
            for number, (name, completion) in enumerate(completions, start=1):
                ended = await self._record(
                    job, name, completion, ends_job=ends and number == len(completions)
                )
                if ended is not None:
                    return await self._ended(job, ended, last_attempt=last_attempt)
        return await self._conclude(job, pipeline, ctx, done, failures, last_attempt)

    async def _record(
        self, job: JobRecord, name: str, completion: Completion, *, ends_job: bool = False
    ) -> JobRecord | None:
        """Stores a stage's success (with the job's, when `ends_job` and the job is still ours)."""
        values: dict[str, Any] = dict(
            attempt=completion.attempt,
            result=completion.result.SerializeToString(),
            outputs=completion.outputs,
            job_result=completion.job_result,
            ended_at=completion.ended_at,
            duration_ms=completion.duration_ms,
        )
        record = None
        try:
            record = await asyncio.to_thread(
                self.store.complete_stage,
                job.id,
                name,
                succeed_job=self.worker_id if ends_job else None,
                **values,
            )
        except FailedPrecondition:
            if not ends_job:
                raise
            # The job is no longer ours to end (taken over, cancelled): record the stage alone and
            # let the conclusion say why.
            await asyncio.to_thread(self.store.complete_stage, job.id, name, **values)
        self.events.bus.notify(job.id)
        return record

    async def _conclude(
        self,
        job: JobRecord,
        pipeline: PipelineDef,
        ctx: StageContext,
        done: Mapping[str, Outcome],
        failures: Mapping[str, StageFailure],
        last_attempt: bool,
    ) -> JobRecord:
        def bad(stage: StageDef) -> bool:
            outcome = done.get(stage.name)
            return outcome is not None and not outcome.ok

        required_bad = [s for s in pipeline.stages if not s.optional and bad(s)]
        optional_bad = [s for s in pipeline.stages if s.optional and bad(s)]
        if required_bad:
            first = next((s for s in required_bad if s.name in failures), required_bad[0])
            failure = failures.get(first.name) or StageFailure("ABORTED", "a stage it needs failed", False)
            error = f"stage {first.name} failed: {failure.code}: {failure.message}"
            if pipeline.on_failure and (last_attempt or not failure.retryable):
                error += f" ({await self._failure_path(job, pipeline, ctx, done)})"
            return await self._finish(
                job, JobState.FAILED, error, failure.code, failure.retryable, last_attempt=last_attempt
            )
        if optional_bad:
            names = ", ".join(s.name for s in optional_bad)
            details = "; ".join(f"{n}: {f.code}: {f.message}" for n, f in failures.items())
            return await self._finish(
                job,
                JobState.PARTIAL,
                f"optional stages did not complete: {names}" + (f" ({details})" if details else ""),
                "",
                False,
            )
        return await self._finish(job, JobState.SUCCEEDED, "", "", False)

    async def _failure_path(
        self, job: JobRecord, pipeline: PipelineDef, ctx: StageContext, done: Mapping[str, Outcome]
    ) -> str:
        """Runs the `on_failure` stages (in order, each once); returns what became of them."""
        stages = [*pipeline.stages, *pipeline.on_failure]
        await asyncio.to_thread(
            self.store.init_stages,
            job.id,
            [(s.name, s.service, s.optional or s in pipeline.on_failure) for s in stages],
        )
        # A redriven job that fails again does not repeat failure-path stages that already ran.
        succeeded = {
            r.name
            for r in await asyncio.to_thread(self.store.stages, job.id)
            if r.state is StageState.SUCCEEDED
        }
        outcomes = dict(done)
        for stage in pipeline.topological_order(pipeline.on_failure):
            blocked = [n for n in stage.needs if not (n in outcomes and outcomes[n].ok)]
            if stage.name in succeeded:
                outcomes[stage.name] = Outcome.SUCCEEDED
            elif blocked:
                outcomes[stage.name] = Outcome.SKIPPED
                await self._set_stage(
                    job.id,
                    stage.name,
                    StageState.SKIPPED,
                    error=f"skipped: {', '.join(blocked)} did not succeed",
                )
            elif stage.when is not None and not job.parameters.get(stage.when):
                outcomes[stage.name] = Outcome.SKIPPED
                await self._set_stage(
                    job.id, stage.name, StageState.SKIPPED, error=f"not applicable: no {stage.when}"
                )
            else:
                _, outcomes[stage.name], _, completion = await self._run_stage(job, stage, ctx, pipeline)
                if completion is not None:
                    await self._record(job, stage.name, completion)
        return "failure path: " + ", ".join(f"{s.name} {outcomes[s.name].value}" for s in pipeline.on_failure)

    async def _finish(
        self,
        job: JobRecord,
        state: JobState,
        error: str,
        code: str,
        retryable: bool,
        *,
        last_attempt: bool = True,
    ) -> JobRecord:
        message = error or f"job {state.lower()}"
        if state is JobState.FAILED and retryable:
            if not last_attempt:
                message += " (transient: the message will be delivered again and the job retried)"
            elif job.origin == "sqs":
                message += " (transient, but that was the queue's last delivery: the message goes to the DLQ)"
            elif job.origin == "schedule":
                message += " (transient: the schedule's next tick runs the pipeline again)"
            else:
                message += " (transient: submit it again, with the same idempotency key, to retry)"
        try:
            record = await asyncio.to_thread(
                self.store.finish,
                job.id,
                state,
                error=error,
                error_code=code,
                retryable=retryable,
                owner=self.worker_id,
                message=message,
            )
        except FailedPrecondition as exc:  # ended, or taken over, elsewhere meanwhile: theirs to tell
            log.warning("job %s: not recording %s: %s", job.id, state, exc.message)
            return await asyncio.to_thread(self.store.get_job, job.id) or job
        return await self._ended(job, record, last_attempt=last_attempt)

    async def _ended(self, job: JobRecord, record: JobRecord, *, last_attempt: bool) -> JobRecord:
        """After the end is stored: watchers woken, and the final state notified."""
        self.events.bus.notify(job.id)
        log.info("job %s %s %s", job.id, record.state, record.error)
        if record.final or last_attempt:  # else the next delivery runs it again, and notifies then
            await self.announce_final(record)
        return record

    async def announce_final(self, job: JobRecord) -> None:
        """Notifications of a final state; a failed one is noted in the job's events, never raised."""
        note = await self.notifier.job_finished(job)
        if note:
            await self.events.emit(job.id, job_state_event(job.state, note))

    async def _set_stage(
        self, job_id: str, name: str, state: StageState, *, attempt: int = 0, error: str = "", **extra: Any
    ) -> None:
        await asyncio.to_thread(
            self.store.set_stage, job_id, name, state, attempt=attempt, error=error, **extra
        )
        self.events.bus.notify(job_id)

    async def _review(
        self, job: JobRecord, pipeline: PipelineDef, stage: StageDef, ctx: StageContext
    ) -> list[gateway_pb2.ReviewReason]:
        """The failed checks of the stage's gates; recorded with the job (and counted) when new."""
        measure = {s.name: KINDS[s.uses].signals for s in pipeline.stages}
        reasons = gates.evaluate(
            pipeline.gates, stage.gates, ctx.results, measure, {**job.metadata, **job.parameters}
        )
        if reasons:
            new = await asyncio.to_thread(self.store.flag_review, job.id, reasons)
            gates.count(pipeline.name, new)
            self.events.bus.notify(job.id)
        return reasons

    async def _run_stage(
        self, job: JobRecord, stage: StageDef, ctx: StageContext, pipeline: PipelineDef | None = None
    ) -> StageRun:
        """Runs a stage's attempts; a success comes back as a `Completion` for the caller to record.

        A stage with gates (`pipeline` given) is first checked: when one fails the job needs review,
        and the stage is skipped or runs with its `on_review` arguments.
        """
        kind = KINDS[stage.uses]
        reasons: list[gateway_pb2.ReviewReason] = []
        try:
            if stage.gates and pipeline is not None:
                reasons = await self._review(job, pipeline, stage, ctx)
                if reasons and stage.on_review is not None and stage.on_review.skip:
                    why = "; ".join(r.message for r in reasons)
                    await self._set_stage(
                        job.id,
                        stage.name,
                        StageState.SKIPPED,
                        error=f"not applicable: needs review ({why})",
                        ended_at=utcnow(),
                    )
                    return stage.name, Outcome.NOT_APPLICABLE, None, None
            args = kind.arguments(
                stage.arguments_for(gates.failed_gates(reasons)), {**job.metadata, **job.parameters}
            )
        except SoriflowError as exc:
            await self._set_stage(
                job.id,
                stage.name,
                StageState.FAILED,
                attempt=1,
                code=exc.code.name,
                error=exc.message,
                ended_at=utcnow(),
            )
            return stage.name, Outcome.FAILED, StageFailure(exc.code.name, exc.message, False), None
        stage_ctx = self._context(job, ctx.results, stage.timeout_s, stage.name)
        service_ms = 0.0
        attempt_number = 0
        started_write: asyncio.Task[None] | None = None

        async def before_sleep(attempt: int, error: BaseException, delay_s: float) -> None:
            code, message, _ = classify(error)
            await self._set_stage(
                job.id,
                stage.name,
                StageState.RETRYING,
                attempt=attempt,
                code=code,
                error=f"{code}: {message}; retrying in {delay_s:.1f}s",
                duration_ms=int(service_ms),
            )

        try:
            async for attempt in stage.retry.retrying(before_sleep=before_sleep, rng=self.rng):
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    # Recorded while the call is under way: the call does not wait for the store.
                    started_write = asyncio.create_task(
                        self._set_stage(
                            job.id,
                            stage.name,
                            StageState.RUNNING,
                            attempt=attempt_number,
                            started_at=utcnow(),
                        )
                    )
                    started = time.perf_counter()
                    try:
                        result = await asyncio.wait_for(
                            kind.call(stage_ctx, args), timeout=stage.timeout_s + 5
                        )
                    finally:
                        service_ms += (time.perf_counter() - started) * 1000
                        await started_write
                    files = kind.outputs(stage_ctx, args, result)
                    # Written side by side: each is an S3 round trip, and a transcript has four.
                    records = await asyncio.gather(*(self.outputs.write(job.id, f) for f in files))
        except asyncio.CancelledError:
            if started_write is not None and not started_write.done():
                started_write.cancel()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self.store.set_stage,
                    job.id,
                    stage.name,
                    StageState.SKIPPED,
                    error="cancelled",
                    ended_at=utcnow(),
                )
            raise
        except Exception as exc:
            code, message, _ = classify(exc)
            if code == "INTERNAL" and not isinstance(exc, grpc.aio.AioRpcError | SoriflowError):
                log.exception("job %s stage %s crashed", job.id, stage.name)
            await self._set_stage(
                job.id,
                stage.name,
                StageState.FAILED,
                attempt=attempt_number,
                code=code,
                error=message,
                ended_at=utcnow(),
                duration_ms=int(service_ms),
            )
            return stage.name, Outcome.FAILED, StageFailure(code, message, stage.retry.retries(code)), None
        ctx.results[stage.name] = result
        job_result = gateway_pb2.JobResult()
        kind.apply(stage_ctx, args, result, job_result)
        if reasons:
            job_result.needs_review = True
            job_result.review_reasons.extend(reasons)
        if type(kind).persist is not StageKind.persist:  # most kinds keep nothing else: no thread hop
            await asyncio.to_thread(kind.persist, self.store, stage_ctx, args, result)
        completion = Completion(
            attempt=attempt_number,
            result=result,
            outputs=list(records),
            job_result=job_result,
            duration_ms=int(service_ms),
            ended_at=utcnow(),
        )
        return stage.name, Outcome.SUCCEEDED, None, completion


def job_result(
    pipeline: PipelineDef, stages: Mapping[str, bytes | None], job: JobRecord, clients: ServiceClients
) -> gateway_pb2.JobResult:
    """The JobResult of a job, rebuilt from its stored stage results."""
    out = gateway_pb2.JobResult()
    results: dict[str, Message] = {}
    ctx = StageContext(
        job_id=job.id,
        source_uri=job.source_uri,
        params=job.parameters,
        results=results,
        clients=clients,
        timeout_s=0,
        metadata=job.metadata,
    )
    failed = gates.failed_gates(job.review_reasons)
    for stage in [*pipeline.topological_order(), *pipeline.topological_order(pipeline.on_failure)]:
        raw = stages.get(stage.name)
        if raw is None:
            continue
        kind = KINDS[stage.uses]
        result = kind.result_type.FromString(raw)
        results[stage.name] = result
        ctx.stage = stage.name
        args = kind.arguments(stage.arguments_for(failed), {**job.metadata, **job.parameters})
        kind.apply(ctx, args, result, out)
    out.needs_review = job.needs_review
    out.review_reasons.extend(job.review_reasons)
    return out
