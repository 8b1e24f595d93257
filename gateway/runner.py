"""Runs one job's pipeline: stages in dependency order, in parallel where they can be.

Per stage: a deadline per attempt, retries with exponential backoff and
jitter on retryable status codes only (honouring the service's RetryInfo
hint), outputs stored before the stage counts as done, and its result saved
so a re-run after a crash resumes from the last finished stage instead of
repeating work. INVALID_ARGUMENT and other permanent errors fail the stage at
once. Optional stages may fail without failing the job (it ends PARTIAL).
When the job fails for good, the pipeline's `on_failure` stages run (the
failure path), and only final states are notified: a retryable failure that
the queue will deliver again is not the end of the job.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from soriflow.errors import SoriflowError
from soriflow.gateway.clients import ServiceClients
from soriflow.gateway.events import JOB_STATES, EventLog
from soriflow.gateway.notify import Notifier
from soriflow.gateway.outputs import OutputWriter
from soriflow.gateway.pipelines import PipelineDef, PipelineRegistry, StageDef
from soriflow.gateway.stages import KINDS, StageContext, reply_text
from soriflow.gateway.store import JobRecord, JobStore, PronunciationRow, utcnow
from soriflow.interceptors import retry_after_from
from soriflow.storage import S3Uri
from soriflow.v1 import gateway_pb2, scoring_pb2

log = logging.getLogger("soriflow.gateway.runner")


@dataclass
class StageFailure:
    code: str
    message: str
    retryable: bool


def classify(exc: BaseException) -> tuple[str, str, float | None]:
    """(status code name, message, retry hint) of a stage error."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name, exc.details() or exc.code().name, retry_after_from(exc)
    if isinstance(exc, SoriflowError):
        return exc.code.name, exc.message, exc.retry_after_s
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED", "the stage did not finish before its deadline", None
    return "INTERNAL", f"{type(exc).__name__}: {exc}", None


class LeaseLost(Exception):
    """Another worker took the job over (our lease expired): stop without finishing it."""


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
        self.running: dict[str, asyncio.Task[str]] = {}

    async def run(self, job: JobRecord, *, last_attempt: bool = True) -> str:
        """Runs a job this worker has claimed; returns its final state ("RUNNING" if handed back).

        `last_attempt`: nothing runs the job again after a retryable failure (an API job, or an SQS
        message's last receive before the dead-letter queue), so such a failure is final.
        """
        task = asyncio.current_task()
        assert task is not None
        self.running[job.id] = task
        heartbeat = asyncio.create_task(self._heartbeat(job.id, task))
        try:
            return await self._run(job, last_attempt)
        except SoriflowError as exc:  # e.g. the job's pipeline was removed from the configuration
            await self._finish(job, "FAILED", exc.message, exc.code.name, False, last_attempt=last_attempt)
            return "FAILED"
        except Exception as exc:  # a bug must fail the job with a reason, never leave it hanging
            log.exception("job %s: unexpected error in the runner", job.id)
            await self._finish(
                job,
                "FAILED",
                f"internal error in the gateway: {type(exc).__name__}: {exc}",
                "INTERNAL",
                True,
                last_attempt=last_attempt,
            )
            return "FAILED"
        except asyncio.CancelledError:
            current = await asyncio.to_thread(self.store.get_job, job.id)
            if current is not None and current.cancel_requested:
                await self._finish(job, "CANCELLED", "cancelled by a caller", "CANCELLED", False)
                return "CANCELLED"
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

    async def _run(self, job: JobRecord, last_attempt: bool) -> str:
        pipeline = self.registry.get(job.pipeline)
        order = pipeline.topological_order()
        await asyncio.to_thread(
            self.store.init_stages, job.id, [(s.name, s.service, s.optional) for s in pipeline.stages]
        )
        await self.events.job_state(job.id, "RUNNING", f"run {job.runs} on {self.worker_id}")
        ctx = StageContext(
            job_id=job.id,
            source_uri=job.source_uri,
            params=job.parameters,
            results={},
            clients=self.clients,
            timeout_s=0,
            metadata=job.metadata,
        )
        done: dict[str, str] = {}  # stage -> SUCCEEDED / FAILED / SKIPPED / NA
        failures: dict[str, StageFailure] = {}
        main = {s.name: s for s in pipeline.stages}
        for record in await asyncio.to_thread(self.store.stages, job.id):  # resume after a crash
            if record.state == "SUCCEEDED" and record.result is not None and record.name in main:
                stage = main[record.name]
                kind = KINDS[stage.uses]
                ctx.results[stage.name] = kind.result_type.FromString(record.result)
                done[stage.name] = "SUCCEEDED"
        pending = {s.name: s for s in order if s.name not in done}
        tasks: dict[asyncio.Task[tuple[str, str, StageFailure | None]], str] = {}
        while pending or tasks:
            for name, stage in list(pending.items()):
                states = [done.get(n) for n in stage.needs]
                if any(s is None for s in states):
                    continue
                del pending[name]
                if any(s in ("FAILED", "SKIPPED") for s in states):
                    blocked = [n for n in stage.needs if done[n] in ("FAILED", "SKIPPED")]
                    done[name] = "SKIPPED"
                    reason = f"skipped: {', '.join(blocked)} did not succeed"
                    await self._stage_update(job.id, name, "SKIPPED", error=reason)
                    continue
                if stage.when is not None and not job.parameters.get(stage.when):
                    done[name] = "NA"
                    await self._stage_update(
                        job.id, name, "SKIPPED", error=f"not applicable: no {stage.when}"
                    )
                    continue
                tasks[asyncio.create_task(self._run_stage(job, pipeline, stage, ctx))] = name
            if not tasks:
                break
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                name = tasks.pop(task)
                _, state, failure = task.result()
                done[name] = state
                if failure is not None:
                    failures[name] = failure
        return await self._conclude(job, pipeline, ctx, done, failures, last_attempt)

    async def _conclude(
        self,
        job: JobRecord,
        pipeline: PipelineDef,
        ctx: StageContext,
        done: Mapping[str, str],
        failures: Mapping[str, StageFailure],
        last_attempt: bool,
    ) -> str:
        required_bad = [
            s for s in pipeline.stages if not s.optional and done.get(s.name) in ("FAILED", "SKIPPED")
        ]
        optional_bad = [
            s for s in pipeline.stages if s.optional and done.get(s.name) in ("FAILED", "SKIPPED")
        ]
        if required_bad:
            first = next((s for s in required_bad if s.name in failures), required_bad[0])
            failure = failures.get(first.name) or StageFailure("ABORTED", "a stage it needs failed", False)
            error = f"stage {first.name} failed: {failure.code}: {failure.message}"
            if pipeline.on_failure and (last_attempt or not failure.retryable):
                error += f" ({await self._failure_path(job, pipeline, ctx, done)})"
            await self._finish(
                job, "FAILED", error, failure.code, failure.retryable, last_attempt=last_attempt
            )
            return "FAILED"
        if optional_bad:
            names = ", ".join(s.name for s in optional_bad)
            details = "; ".join(f"{n}: {f.code}: {f.message}" for n, f in failures.items())
            await self._finish(
                job,
                "PARTIAL",
                f"optional stages did not complete: {names}" + (f" ({details})" if details else ""),
                "",
                False,
            )
            return "PARTIAL"
        await self._finish(job, "SUCCEEDED", "", "", False)
        return "SUCCEEDED"

    async def _failure_path(
        self, job: JobRecord, pipeline: PipelineDef, ctx: StageContext, done: Mapping[str, str]
    ) -> str:
        """Runs the `on_failure` stages (in order, each once); returns what became of them."""
        stages = [*pipeline.stages, *pipeline.on_failure]
        await asyncio.to_thread(
            self.store.init_stages,
            job.id,
            [(s.name, s.service, s.optional or s in pipeline.on_failure) for s in stages],
        )
        states = dict(done)
        for stage in pipeline.topological_order(pipeline.on_failure):
            blocked = [n for n in stage.needs if states.get(n) not in ("SUCCEEDED", "NA")]
            if blocked:
                states[stage.name] = "SKIPPED"
                reason = f"skipped: {', '.join(blocked)} did not succeed"
                await self._stage_update(job.id, stage.name, "SKIPPED", error=reason)
            elif stage.when is not None and not job.parameters.get(stage.when):
                states[stage.name] = "SKIPPED"
                await self._stage_update(
                    job.id, stage.name, "SKIPPED", error=f"not applicable: no {stage.when}"
                )
            else:
                _, states[stage.name], _ = await self._run_stage(job, pipeline, stage, ctx)
        return "failure path: " + ", ".join(f"{s.name} {states[s.name].lower()}" for s in pipeline.on_failure)

    async def _finish(
        self, job: JobRecord, state: str, error: str, code: str, retryable: bool, *, last_attempt: bool = True
    ) -> None:
        await asyncio.to_thread(
            self.store.finish, job.id, state, error=error, error_code=code, retryable=retryable
        )
        message = error or f"job {state.lower()}"
        final = not (state == "FAILED" and retryable) or last_attempt
        if state == "FAILED" and retryable:
            if not final:
                message += " (transient: the message will be delivered again and the job retried)"
            elif job.origin == "sqs":
                message += " (transient, but that was the queue's last delivery: the message goes to the DLQ)"
            else:
                message += " (transient: submit it again, with the same idempotency key, to retry)"
        log.info("job %s %s %s", job.id, state, error)
        if not final:  # not the end of the job: the next delivery runs it again, and notifies then
            await self.events.job_state(job.id, state, message)
            return
        await self.announce_final(job.id, message)

    async def announce_final(self, job_id: str, message: str) -> None:
        """The final state's event and notifications (a failed notification is noted, never raised)."""
        final = await asyncio.to_thread(self.store.get_job, job_id)
        if final is None:
            return
        note = await self.notifier.job_finished(final)
        await self.events.job_state(job_id, final.state, f"{message}; {note}" if note else message)

    async def _stage_update(
        self,
        job_id: str,
        name: str,
        state: str,
        *,
        attempt: int = 0,
        error: str = "",
        code: str = "",
        **extra: Any,
    ) -> None:
        values: dict[str, Any] = {"state": state, "error": error, "error_code": code, **extra}
        if attempt:
            values["attempt"] = attempt
        await asyncio.to_thread(self.store.update_stage, job_id, name, **values)
        await self.events.stage_state(job_id, name, state, attempt=attempt, message=error)

    async def _run_stage(
        self, job: JobRecord, pipeline: PipelineDef, stage: StageDef, ctx: StageContext
    ) -> tuple[str, str, StageFailure | None]:
        kind = KINDS[stage.uses]
        try:
            args = kind.arguments(stage.with_, {**job.metadata, **job.parameters})
        except SoriflowError as exc:
            await self._stage_update(
                job.id,
                stage.name,
                "FAILED",
                attempt=1,
                code=exc.code.name,
                error=exc.message,
                ended_at=utcnow(),
            )
            return stage.name, "FAILED", StageFailure(exc.code.name, exc.message, False)
        stage_ctx = StageContext(
            job_id=job.id,
            source_uri=job.source_uri,
            params=job.parameters,
            results=ctx.results,
            clients=self.clients,
            timeout_s=stage.timeout_s,
            metadata=job.metadata,
        )
        policy = stage.retry
        service_ms = 0.0
        attempt = 0
        while True:
            attempt += 1
            await self._stage_update(job.id, stage.name, "RUNNING", attempt=attempt, started_at=utcnow())
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(kind.call(stage_ctx, args), timeout=stage.timeout_s + 5)
                service_ms += (time.perf_counter() - started) * 1000
                files = kind.outputs(stage_ctx, args, result)
                # Written side by side: each is an S3 round trip, and a transcript has four.
                records = await asyncio.gather(*(self.outputs.write(job.id, file) for file in files))
                for record in records:
                    await self.events.emit(
                        job.id,
                        gateway_pb2.JobEvent(
                            type=gateway_pb2.JOB_EVENT_TYPE_OUTPUT,
                            stage=stage.name,
                            job_state=JOB_STATES["RUNNING"],
                            output=gateway_pb2.JobOutput(
                                name=record.name,
                                uri=record.uri,
                                content_type=record.content_type,
                                size_bytes=record.size_bytes,
                            ),
                        ),
                    )
            except asyncio.CancelledError:
                await asyncio.to_thread(
                    self.store.update_stage,
                    job.id,
                    stage.name,
                    state="SKIPPED",
                    error="cancelled",
                    ended_at=utcnow(),
                )
                raise
            except Exception as exc:
                service_ms += (time.perf_counter() - started) * 1000
                code, message, hint = classify(exc)
                retryable = code in policy.retry_on
                if retryable and attempt < policy.max_attempts:
                    delay = max(
                        policy.delay_s(attempt, self.rng.random()), min(hint or 0.0, policy.max_backoff_s)
                    )
                    await self._stage_update(
                        job.id,
                        stage.name,
                        "RETRYING",
                        attempt=attempt,
                        code=code,
                        error=f"{code}: {message}; retrying in {delay:.1f}s",
                        duration_ms=int(service_ms),
                    )
                    await asyncio.sleep(delay)
                    continue
                if code == "INTERNAL" and not isinstance(exc, grpc.aio.AioRpcError | SoriflowError):
                    log.exception("job %s stage %s crashed", job.id, stage.name)
                await self._stage_update(
                    job.id,
                    stage.name,
                    "FAILED",
                    attempt=attempt,
                    code=code,
                    error=message,
                    ended_at=utcnow(),
                    duration_ms=int(service_ms),
                )
                return stage.name, "FAILED", StageFailure(code, message, retryable)
            ctx.results[stage.name] = result
            job_result = gateway_pb2.JobResult()
            kind.apply(result, args, job_result)
            if stage.uses == "tts.synthesize":
                job_result.reply_text = reply_text(stage_ctx, args)
            if isinstance(result, scoring_pb2.ScoreResponse):
                await asyncio.to_thread(
                    self.store.save_pronunciation, pronunciation_row(job, pipeline, result)
                )
            await asyncio.to_thread(
                self.store.update_stage,
                job.id,
                stage.name,
                state="SUCCEEDED",
                attempt=attempt,
                ended_at=utcnow(),
                duration_ms=int(service_ms),
                error="",
                error_code="",
                result=result.SerializeToString(),
            )
            await self.events.emit(
                job.id,
                gateway_pb2.JobEvent(
                    type=gateway_pb2.JOB_EVENT_TYPE_STAGE_RESULT,
                    stage=stage.name,
                    attempt=attempt,
                    stage_state=gateway_pb2.STAGE_STATE_SUCCEEDED,
                    job_state=JOB_STATES["RUNNING"],
                    result=job_result,
                ),
            )
            return stage.name, "SUCCEEDED", None


def job_result(
    pipeline: PipelineDef, stages: Mapping[str, bytes | None], job: JobRecord, clients: ServiceClients
) -> gateway_pb2.JobResult:
    """The JobResult of a job, rebuilt from its stored stage results."""
    out = gateway_pb2.JobResult()
    results: dict[str, Message] = {}
    for stage in [*pipeline.topological_order(), *pipeline.topological_order(pipeline.on_failure)]:
        raw = stages.get(stage.name)
        if raw is None:
            continue
        kind = KINDS[stage.uses]
        result = kind.result_type.FromString(raw)
        results[stage.name] = result
        args = kind.arguments(stage.with_, {**job.metadata, **job.parameters})
        kind.apply(result, args, out)
        if stage.uses == "tts.synthesize":
            ctx = StageContext(
                job_id=job.id,
                source_uri=job.source_uri,
                params=job.parameters,
                results=results,
                clients=clients,
                timeout_s=0,
                metadata=job.metadata,
            )
            out.reply_text = reply_text(ctx, args)
    return out


def pronunciation_row(
    job: JobRecord, pipeline: PipelineDef, score: scoring_pb2.ScoreResponse
) -> PronunciationRow:
    key = S3Uri.parse(job.source_uri).key
    variables = {**pipeline.key_variables(key), **job.metadata}
    mispronounced = [w.word for w in score.words if w.error_type != scoring_pb2.WORD_ERROR_TYPE_NONE]
    return PronunciationRow(
        job_id=job.id,
        source_uri=job.source_uri,
        user_id=variables.get("user", ""),
        content_type=variables.get("content_type", ""),
        level=variables.get("level", ""),
        title=variables.get("title", ""),
        line=variables.get("line", ""),
        reference_uri=job.parameters.get("reference_uri", ""),
        reference_text=score.reference_text,
        overall_score=score.overall_score,
        accuracy_score=score.accuracy_score,
        fluency_score=score.fluency_score,
        completeness_score=score.completeness_score,
        prosody_score=score.prosody_score,
        speed_ratio=score.speed_ratio,
        pause_similarity=score.pause_similarity,
        pitch_similarity=score.pitch_similarity,
        mispronounced_words=mispronounced,
        feedback=list(score.feedback),
    )
