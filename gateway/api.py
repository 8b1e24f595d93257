"""The gateway's gRPC API: submit, inspect, list, cancel and watch jobs; list pipelines."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Any

import grpc

from soriflow.audio import sniff_format
from soriflow.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from soriflow.gateway.events import EventLog
from soriflow.gateway.intake import create_job, route
from soriflow.gateway.outputs import JOB_ID_KEY
from soriflow.gateway.pipelines import PipelineRegistry
from soriflow.gateway.scheduler import Scheduler
from soriflow.gateway.settings import Settings
from soriflow.gateway.stages import audio_format_metadata
from soriflow.gateway.store import JobStore
from soriflow.gateway.validation import validate_submit
from soriflow.gateway.views import JobViews, pipeline_message
from soriflow.storage import ObjectStore, S3Uri
from soriflow.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc

STATE_NAMES = {v: k.removeprefix("JOB_STATE_") for k, v in gateway_pb2.JobState.items()}
FINAL_STATES = frozenset(
    {
        gateway_pb2.JOB_STATE_SUCCEEDED,
        gateway_pb2.JOB_STATE_PARTIAL,
        gateway_pb2.JOB_STATE_FAILED,
        gateway_pb2.JOB_STATE_CANCELLED,
    }
)
EXTENSIONS = {"wav": ".wav", "flac": ".flac", "mp3": ".mp3", "ogg": ".ogg", "webm": ".webm"}


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self,
        *,
        settings: Settings,
        store: JobStore,
        objects: ObjectStore,
        registry: PipelineRegistry,
        scheduler: Scheduler,
        views: JobViews,
        events: EventLog,
    ) -> None:
        self.settings = settings
        self.store = store
        self.objects = objects
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
        source = request.audio.WhichOneof("source")
        if source is None:
            raise InvalidArgument("no audio: set audio.uri (s3://bucket/key) or audio.content")
        job_id = str(uuid.uuid4())
        metadata = dict(request.metadata) | audio_format_metadata(request.audio)
        if source == "content":
            uri, info = await self._store_submission(request, job_id)
        else:
            uri = S3Uri.parse(request.audio.uri)
            if not uri.key or uri.key.endswith("/"):
                raise InvalidArgument(f"{request.audio.uri} names a prefix, not an object")
            info = await asyncio.to_thread(self.objects.head, uri)
        pipeline = route(self.registry, uri.key, info.metadata if info else {}, request.pipeline)
        intake = await create_job(
            store=self.store,
            objects=self.objects,
            registry=self.registry,
            pipeline_name=pipeline,
            uri=uri,
            info=info,
            origin="api",
            metadata=metadata,
            parameters=dict(request.parameters),
            idempotency_key=request.idempotency_key,
            job_id=job_id,
        )
        if intake.created or (intake.job.state == "FAILED" and intake.job.retryable):
            self.scheduler.submit(intake.job.id)
        job = await asyncio.to_thread(self.views.job, intake.job)
        return gateway_pb2.SubmitJobResponse(job=job, deduplicated=not intake.created)

    async def _store_submission(
        self, request: gateway_pb2.SubmitJobRequest, job_id: str
    ) -> tuple[S3Uri, Any]:
        content = request.audio.content
        if not content:
            raise InvalidArgument("audio.content is empty")
        if len(content) > self.settings.audio_max_bytes:
            raise ResourceExhausted(
                f"audio is {len(content)} bytes, over the limit of "
                f"{self.settings.audio_max_bytes} bytes (SORIFLOW_AUDIO_MAX_BYTES)"
            )
        kind = sniff_format(bytes(content[:4096]))
        headerless = request.audio.encoding in (
            audio_pb2.AUDIO_ENCODING_LINEAR16,
            audio_pb2.AUDIO_ENCODING_MULAW,
            audio_pb2.AUDIO_ENCODING_ALAW,
            audio_pb2.AUDIO_ENCODING_FLOAT32,
        )
        if kind is None and not headerless:
            raise InvalidArgument(
                "audio.content is not a recognized audio file (WAV, FLAC, MP3, Ogg, WebM); "
                "for headerless PCM set audio.encoding and audio.sample_rate_hz"
            )
        if kind is None and request.audio.sample_rate_hz <= 0:
            raise InvalidArgument(
                f"audio.encoding {audio_pb2.AudioEncoding.Name(request.audio.encoding)} is headerless: "
                "set audio.sample_rate_hz (and audio.channel_count when it is not mono)"
            )
        name = PurePosixPath(request.filename).name if request.filename else ""
        if not name:
            name = "audio" + EXTENSIONS.get(kind or "", ".raw")
        uri = S3Uri.parse(self.settings.gateway_submissions_uri).join(job_id, name)
        metadata = {JOB_ID_KEY: job_id} | (audio_format_metadata(request.audio) if kind is None else {})
        info = await asyncio.to_thread(
            self.objects.write_bytes,
            uri,
            bytes(content),
            metadata=metadata,
            content_type="application/octet-stream",
        )
        return uri, info

    async def GetJob(self, request: gateway_pb2.GetJobRequest, context: Any) -> gateway_pb2.GetJobResponse:
        return gateway_pb2.GetJobResponse(job=await self._job_message(request.job_id))

    async def ListJobs(
        self, request: gateway_pb2.ListJobsRequest, context: Any
    ) -> gateway_pb2.ListJobsResponse:
        page_size = request.page_size or 50
        if not 1 <= page_size <= 1000:
            raise InvalidArgument(f"page_size must be 1-1000, not {request.page_size}")
        state = STATE_NAMES[request.state] if request.state else ""
        jobs, token = await asyncio.to_thread(
            self.store.list_jobs,
            page_size=page_size,
            page_token=request.page_token,
            state=state,
            pipeline=request.pipeline,
            source_uri_prefix=request.source_uri_prefix,
            metadata=dict(request.metadata),
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
        if not self.scheduler.cancel_local(job.id) and job.state == "CANCELLED":
            # Queued, or its worker is gone: no run will end it, so the final state is announced here.
            await self.scheduler.runner.announce_final(job.id, "cancelled by a caller")
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
                    saw_final = event.job_state in FINAL_STATES
                yield gateway_pb2.WatchJobResponse(event=event)
            if job.terminal:
                # The final state is stored before its event; wait (briefly) for the event so none is missed.
                give_up_at = give_up_at or loop.time() + 10
                if saw_final or loop.time() > give_up_at:
                    yield gateway_pb2.WatchJobResponse(job=await asyncio.to_thread(self.views.job, job))
                    return
            await self.events.bus.wait(job.id, timeout=0.5)

    async def ListPipelines(
        self, request: gateway_pb2.ListPipelinesRequest, context: Any
    ) -> gateway_pb2.ListPipelinesResponse:
        return gateway_pb2.ListPipelinesResponse(
            pipelines=[pipeline_message(p) for _, p in sorted(self.registry.by_name.items())]
        )


def add_to_server(servicer: GatewayServicer, server: grpc.aio.Server) -> None:
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)
