"""The gateway's gRPC API: submit, inspect, list, cancel and watch jobs; list pipelines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from soriflow.errors import FailedPrecondition, InvalidArgument
from soriflow.gateway.events import EventLog
from soriflow.gateway.jobs import JobService
from soriflow.gateway.pipelines import PipelineRegistry
from soriflow.gateway.scheduler import Scheduler
from soriflow.gateway.schedules import schedule_messages
from soriflow.gateway.settings import Settings
from soriflow.gateway.states import JobState
from soriflow.gateway.store import JobStore, utcnow
from soriflow.gateway.validation import validate_submit
from soriflow.gateway.views import JobViews, pipeline_message
from soriflow.v1 import gateway_pb2, gateway_pb2_grpc


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        jobs: JobService,
        registry: PipelineRegistry,
        scheduler: Scheduler,
        views: JobViews,
        events: EventLog,
    ) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.registry = registry
        self.scheduler = scheduler
        self.views = views
        self.events = events

    async def _job_message(self, job_id: str) -> gateway_pb2.Job:
        record = await asyncio.to_thread(self.store.require_job, job_id)
        return await asyncio.to_thread(self.views.job, record)

    async def SubmitJob(
        self, request: gateway_pb2.SubmitJobRequest, context: Any
    ) -> gateway_pb2.SubmitJobResponse:
        validate_submit(request, self.settings)
        accepted = await self.jobs.submit(request)
        job = accepted.job
        if accepted.created or (job.state is JobState.FAILED and job.retryable):
            self.scheduler.submit(job, accepted.pipeline)
        # A new job has no stages or outputs yet: its detail would be three reads for nothing.
        message = await asyncio.to_thread(self.views.job, job, detail=not accepted.created)
        return gateway_pb2.SubmitJobResponse(job=message, deduplicated=not accepted.created)

    async def GetJob(self, request: gateway_pb2.GetJobRequest, context: Any) -> gateway_pb2.GetJobResponse:
        return gateway_pb2.GetJobResponse(job=await self._job_message(request.job_id))

    async def ListJobs(
        self, request: gateway_pb2.ListJobsRequest, context: Any
    ) -> gateway_pb2.ListJobsResponse:
        page_size = request.page_size or 50
        if not 1 <= page_size <= 1000:
            raise InvalidArgument(f"page_size must be 1-1000, not {request.page_size}")
        state = JobState.from_proto(request.state) if request.state else ""
        jobs, token = await asyncio.to_thread(
            self.store.list_jobs,
            page_size=page_size,
            page_token=request.page_token,
            state=state,
            pipeline=request.pipeline,
            source_uri_prefix=request.source_uri_prefix,
            metadata=dict(request.metadata),
            needs_review=request.needs_review if request.HasField("needs_review") else None,
        )
        messages = await asyncio.to_thread(lambda: [self.views.job(j, detail=False) for j in jobs])
        return gateway_pb2.ListJobsResponse(jobs=messages, next_page_token=token)

    async def CancelJob(
        self, request: gateway_pb2.CancelJobRequest, context: Any
    ) -> gateway_pb2.CancelJobResponse:
        job = await asyncio.to_thread(self.store.require_job, request.job_id)
        if job.terminal:
            raise FailedPrecondition(f"job {job.id} already ended ({job.state}); nothing to cancel")
        job = await asyncio.to_thread(self.store.request_cancel, job.id)
        self.events.bus.notify(job.id)
        if not self.scheduler.cancel_local(job.id) and job.state is JobState.CANCELLED:
            # Queued, or its worker is gone: no run will end it, so it is notified here.
            await self.scheduler.runner.announce_final(job)
        for _ in range(100):  # wait briefly for the run to wind down so the answer shows the final state
            job = await asyncio.to_thread(self.store.require_job, job.id)
            if job.terminal:
                break
            await asyncio.sleep(0.05)
        return gateway_pb2.CancelJobResponse(job=await asyncio.to_thread(self.views.job, job))

    async def WatchJob(
        self, request: gateway_pb2.WatchJobRequest, context: Any
    ) -> AsyncIterator[gateway_pb2.WatchJobResponse]:
        job = await asyncio.to_thread(self.store.require_job, request.job_id)
        last, saw_final, give_up_at = 0, False, 0.0
        loop = asyncio.get_running_loop()
        while True:
            job = await asyncio.to_thread(self.store.require_job, job.id)
            for event in await asyncio.to_thread(self.store.events_after, job.id, last):
                last = event.sequence
                if event.type == gateway_pb2.JOB_EVENT_TYPE_JOB_STATE:
                    saw_final = bool(event.job_state) and JobState.from_proto(event.job_state).terminal
                yield gateway_pb2.WatchJobResponse(event=event)
            if job.terminal:
                # The final state and its event are one write, but a replica of the first release
                # wrote the event after the state: wait (briefly) for it so none is missed.
                give_up_at = give_up_at or loop.time() + 10
                if saw_final or loop.time() > give_up_at:
                    yield gateway_pb2.WatchJobResponse(job=await asyncio.to_thread(self.views.job, job))
                    return
            await self.events.bus.wait(job.id, timeout=0.5)

    async def ListPipelines(
        self, request: gateway_pb2.ListPipelinesRequest, context: Any
    ) -> gateway_pb2.ListPipelinesResponse:
        states = await asyncio.to_thread(self.store.schedule_states)
        now = utcnow()
        pipelines = []
        for _, pipeline in sorted(self.registry.by_name.items()):
            message = pipeline_message(pipeline)
            message.schedules.extend(schedule_messages(pipeline, states, self.settings, now))
            pipelines.append(message)
        return gateway_pb2.ListPipelinesResponse(pipelines=pipelines)


def add_to_server(servicer: GatewayServicer, server: grpc.aio.Server) -> None:
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)
