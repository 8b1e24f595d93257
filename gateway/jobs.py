"""One way in for every job: S3 uploads (the SQS consumer), SubmitJob calls (the API), schedule ticks.

Both paths resolve the job's pipeline once (the caller's choice, the object's
`soriflow-pipeline` metadata, or the longest routed key prefix), resolve its
parameters (given, from object metadata, or the pipeline's defaults; a derived
`s3://` reference that does not exist is dropped), and create the job record
once (with, for a pipeline that scores pronunciation, the attempt's row that
an app reads). What differs is what a refusal means:

- an S3 upload cannot be refused: it becomes a FAILED job with the reason
  (nothing is dropped silently; the message is then deleted);
- a SubmitJob call is refused with the status code and nothing is stored:
  the inline audio is written to the submissions prefix only after every
  check has passed, and removed again if no job ends up pointing at it.

The job's identity is the input's: `s3://bucket/key#<version or etag>` for an
object, or `idempotency:<key>` for a caller's idempotency key. The store's
unique constraint on it is what makes a redelivered or duplicated event (or a
retried call) find the existing job.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from soriflow.audio import sniff_format
from soriflow.config import CommonSettings
from soriflow.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, SoriflowError
from soriflow.gateway.outputs import JOB_ID_KEY
from soriflow.gateway.pipelines import PipelineDef, PipelineRegistry
from soriflow.gateway.schedules import SCHEDULE_KEY, TICK_KEY, ScheduleDef, tick_dedupe_key, tick_source
from soriflow.gateway.stages import (
    HEADERLESS,
    audio_format_metadata,
    external_ids,
    pronunciation_attempt,
    scores_pronunciation,
)
from soriflow.gateway.states import JobState
from soriflow.gateway.store import JobRecord, JobStore, PronunciationRow
from soriflow.inputs import readable_uri
from soriflow.storage import ObjectInfo, ObjectStore, ReadAllowList, S3Uri
from soriflow.v1 import audio_pb2, gateway_pb2

log = logging.getLogger("soriflow.gateway.jobs")

#: Object metadata naming the pipeline (S3 lower-cases metadata keys).
PIPELINE_METADATA_KEY = "soriflow-pipeline"
EXTENSIONS = {"wav": ".wav", "flac": ".flac", "mp3": ".mp3", "ogg": ".ogg", "webm": ".webm"}


@dataclass(frozen=True)
class Accepted:
    """The job an input maps to, and whether this call created it."""

    job: JobRecord
    created: bool
    #: The job's pipeline, resolved on the way in (None: the job was refused at intake, or an
    #: existing job runs another pipeline than this input routes to today).
    pipeline: PipelineDef | None


@dataclass(frozen=True)
class Plan:
    """What a valid input runs: the pipeline, its resolved parameters and the job's metadata."""

    pipeline: PipelineDef
    parameters: dict[str, str]
    metadata: dict[str, str]


def dedupe_key_for(uri: S3Uri, info: ObjectInfo | None, idempotency_key: str = "", version: str = "") -> str:
    """The job's identity: the caller's idempotency key, or the object's version (or ETag)."""
    if idempotency_key:
        return f"idempotency:{idempotency_key}"
    if info is not None:
        version = (info.version_id if info.version_id and info.version_id != "null" else "") or info.etag
    return f"{uri}#{version}"


def parameters_from_metadata(pipeline: PipelineDef, metadata: Mapping[str, str]) -> dict[str, str]:
    """Pipeline parameters given as object metadata (`x-amz-meta-reference-text` -> reference_text)."""
    params = {}
    for key, value in metadata.items():
        name = key.lower().replace("-", "_")
        if name in pipeline.parameters and value:
            params[name] = value
    return params


class JobService:
    """Turns inputs into job records, exactly once; shared by the SQS consumer and the job API."""

    def __init__(
        self,
        *,
        store: JobStore,
        objects: ObjectStore,
        registry: PipelineRegistry,
        settings: CommonSettings,
        submissions_uri: str,
    ) -> None:
        self.store = store
        self.objects = objects
        self.registry = registry
        self.settings = settings
        self.submissions = S3Uri.parse(submissions_uri)
        #: Where parameters may point (a reference recording): the gateway HEADs them, and the stage
        #: services read them with the same setting.
        self.readable = ReadAllowList.parse(settings.readable_uris())

    # --- resolving --------------------------------------------------------------------------------

    def route(self, key: str, object_metadata: Mapping[str, str], explicit: str = "") -> PipelineDef:
        """The pipeline for an object: the caller's choice, its metadata, or its key prefix."""
        name = explicit or object_metadata.get(PIPELINE_METADATA_KEY, "")
        if name:
            return self.registry.get(name)
        pipeline = self.registry.route(key)
        if pipeline is None:
            raise InvalidArgument(
                f"no pipeline handles key {key!r}: routed prefixes are {self.registry.prefixes()}; name a "
                f"pipeline or set object metadata {PIPELINE_METADATA_KEY}"
            )
        return pipeline

    async def plan(
        self,
        pipeline: PipelineDef,
        uri: S3Uri,
        *,
        parameters: Mapping[str, str],
        metadata: Mapping[str, str],
    ) -> Plan:
        """Resolves the parameters (unknown names are INVALID_ARGUMENT) and the job's metadata.

        An `s3://` parameter must lie in the readable locations (`SORIFLOW_READ_URIS`), whether the
        caller gave it or the pipeline derived it from the key: PERMISSION_DENIED says which setting
        to change, rather than the job failing later for want of a reference.
        """
        job_metadata = {**pipeline.key_variables(uri.key), **metadata}
        if self._records_attempts(pipeline):
            external_ids(job_metadata)  # INVALID_ARGUMENT before anything is read or stored
        resolved = pipeline.resolve_parameters(parameters, bucket=uri.bucket, key=uri.key)
        for name, value in list(resolved.items()):
            if not value.startswith("s3://"):
                continue
            derived = name not in parameters
            what = f"parameter {name}" + (" (the pipeline's default for this key)" if derived else "")
            try:
                readable_uri(value, self.readable, what)
            except PermissionDenied as exc:
                raise PermissionDenied(
                    f"{exc.message} (in the Helm chart: readUris)", field=exc.field
                ) from None
            # A derived reference recording that does not exist is not an error when the job has
            # another way forward (reference text): the stage that needs it is then not applicable.
            if derived and not await asyncio.to_thread(self.objects.exists, value):
                resolved[name] = ""
        return Plan(pipeline, resolved, job_metadata)

    @staticmethod
    def _records_attempts(pipeline: PipelineDef) -> bool:
        return scores_pronunciation([s.uses for s in pipeline.stages])

    def _attempt(
        self,
        pipeline: PipelineDef | None,
        job_id: str,
        uri: S3Uri,
        metadata: Mapping[str, str],
        params: Mapping[str, str],
    ) -> PronunciationRow | None:
        """The attempt's row of a job whose pipeline scores pronunciation (None for other pipelines)."""
        if pipeline is None or not self._records_attempts(pipeline):
            return None
        return pronunciation_attempt(job_id, str(uri), metadata, params)  # bad ids left out

    async def _create(
        self,
        plan: Plan,
        uri: S3Uri,
        *,
        origin: str,
        dedupe_key: str,
        job_id: str | None = None,
    ) -> Accepted:
        job_id = job_id or str(uuid.uuid4())
        job, created = await asyncio.to_thread(
            self.store.create_job,
            pipeline=plan.pipeline.name,
            source_uri=str(uri),
            origin=origin,
            metadata=plan.metadata,
            parameters=plan.parameters,
            dedupe_key=dedupe_key,
            job_id=job_id,
            attempt=self._attempt(plan.pipeline, job_id, uri, plan.metadata, plan.parameters),
        )
        return Accepted(job, created, plan.pipeline if job.pipeline == plan.pipeline.name else None)

    # --- S3 uploads -------------------------------------------------------------------------------

    async def accept_object(
        self, uri: S3Uri, info: ObjectInfo | None, *, event_version: str = ""
    ) -> Accepted:
        """The job of an uploaded object (`info` None: it is gone); refusals become FAILED jobs."""
        metadata = dict(info.metadata) if info else {}
        dedupe = dedupe_key_for(uri, info, version=event_version)
        pipeline_name = ""
        pipeline: PipelineDef | None = None
        try:
            if info is None:
                raise NotFound(f"{uri} no longer exists (deleted before it could be processed)")
            pipeline = self.route(uri.key, metadata)
            pipeline_name = pipeline.name
            plan = await self.plan(
                pipeline, uri, parameters=parameters_from_metadata(pipeline, metadata), metadata=metadata
            )
        except SoriflowError as exc:
            # An app sees the refused attempt too (its row, with the job's FAILED state and reason).
            job_id = str(uuid.uuid4())
            labels = {**(pipeline.key_variables(uri.key) if pipeline else {}), **metadata}
            job, created = await asyncio.to_thread(
                self.store.create_job,
                job_id=job_id,
                attempt=self._attempt(pipeline, job_id, uri, labels, {}),
                pipeline=pipeline_name,
                source_uri=str(uri),
                origin="sqs",
                metadata=metadata,
                parameters={},
                dedupe_key=dedupe,
                state=JobState.FAILED,
                error=exc.message,
                error_code=exc.code.name,
            )
            if created:
                log.warning("job %s for %s failed at intake: %s", job.id, uri, exc.message)
            return Accepted(job, created, None)
        return await self._create(plan, uri, origin="sqs", dedupe_key=dedupe)

    # --- SubmitJob --------------------------------------------------------------------------------

    def _check_content(self, request: gateway_pb2.SubmitJobRequest) -> str | None:
        """Refuses inline audio that could not be decoded; returns the sniffed container (None: raw)."""
        audio = request.audio
        content = audio.content
        if not content:
            raise InvalidArgument("audio.content is empty")
        if len(content) > self.settings.audio_max_bytes:
            raise ResourceExhausted(
                f"audio is {len(content)} bytes, over the limit of "
                f"{self.settings.audio_max_bytes} bytes (SORIFLOW_AUDIO_MAX_BYTES)"
            )
        kind = sniff_format(bytes(content[:4096]))
        if kind is None and audio.encoding not in HEADERLESS:
            raise InvalidArgument(
                "audio.content is not a recognized audio file (WAV, FLAC, MP3, Ogg, WebM); "
                "for headerless PCM set audio.encoding and audio.sample_rate_hz"
            )
        if kind is None and audio.sample_rate_hz <= 0:
            raise InvalidArgument(
                f"audio.encoding {audio_pb2.AudioEncoding.Name(audio.encoding)} is headerless: "
                "set audio.sample_rate_hz (and audio.channel_count when it is not mono)"
            )
        return kind

    async def submit(self, request: gateway_pb2.SubmitJobRequest) -> Accepted:
        """The job of a SubmitJob call: every check first, then the submission copy, then the job."""
        audio = request.audio
        source = audio.WhichOneof("source")
        if source is None:
            return await self._submit_without_audio(request)
        job_id = str(uuid.uuid4())
        metadata = dict(request.metadata) | audio_format_metadata(audio)
        info: ObjectInfo | None = None
        if source == "content":
            kind = self._check_content(request)
            name = PurePosixPath(request.filename).name if request.filename else ""
            uri = self.submissions.join(job_id, name or "audio" + EXTENSIONS.get(kind or "", ".raw"))
            pipeline = self.route(uri.key, {}, request.pipeline)
        else:
            uri = S3Uri.parse(audio.uri)
            if not uri.key or uri.key.endswith("/"):
                raise InvalidArgument(f"{audio.uri} names a prefix, not an object")
            info = await asyncio.to_thread(self.objects.head, uri)
            pipeline = self.route(uri.key, info.metadata, request.pipeline)
        plan = await self.plan(pipeline, uri, parameters=dict(request.parameters), metadata=metadata)
        if request.idempotency_key:
            existing = await asyncio.to_thread(
                self.store.find_by_dedupe_key, dedupe_key_for(uri, None, request.idempotency_key)
            )
            if existing is not None:
                return Accepted(existing, False, pipeline if existing.pipeline == pipeline.name else None)
        if source == "content":
            info = await asyncio.to_thread(
                self.objects.write_bytes,
                uri,
                bytes(audio.content),
                metadata={JOB_ID_KEY: job_id} | (audio_format_metadata(audio) if kind is None else {}),
                content_type="application/octet-stream",
            )
        try:
            accepted = await self._create(
                plan,
                uri,
                origin="api",
                dedupe_key=dedupe_key_for(uri, info, request.idempotency_key),
                job_id=job_id,
            )
        except Exception:
            if source == "content":
                await self._discard(uri)
            raise
        if source == "content" and not accepted.created:  # a concurrent call with the same key won
            await self._discard(uri)
        return accepted

    # --- schedule ticks ---------------------------------------------------------------------------

    async def accept_tick(self, schedule: ScheduleDef, pipeline: PipelineDef, tick: dt.datetime) -> Accepted:
        """The job of a schedule's tick (created once, whoever fires it): no source audio, the
        schedule's parameters; parameters that cannot resolve make a FAILED job with the reason."""
        source = tick_source(schedule.name, tick)
        dedupe = tick_dedupe_key(schedule.name, tick)
        metadata = {SCHEDULE_KEY: schedule.name, TICK_KEY: tick.isoformat()}
        try:
            parameters = pipeline.resolve_parameters(schedule.parameters, bucket="", key="")
        except SoriflowError as exc:
            job, created = await asyncio.to_thread(
                self.store.create_job,
                pipeline=pipeline.name,
                source_uri=source,
                origin="schedule",
                metadata=metadata,
                parameters={},
                dedupe_key=dedupe,
                state=JobState.FAILED,
                error=exc.message,
                error_code=exc.code.name,
            )
            return Accepted(job, created, None)
        job, created = await asyncio.to_thread(
            self.store.create_job,
            pipeline=pipeline.name,
            source_uri=source,
            origin="schedule",
            metadata=metadata,
            parameters=parameters,
            dedupe_key=dedupe,
        )
        return Accepted(job, created, pipeline if job.pipeline == pipeline.name else None)

    async def _submit_without_audio(self, request: gateway_pb2.SubmitJobRequest) -> Accepted:
        """A job of a pipeline that reads no audio (a story from its parameters), started by a caller:
        what a schedule's tick does, on demand. Its source is `api:<job id>`."""
        audio_needed = "no audio: set audio.uri (s3://bucket/key) or audio.content"
        if not request.pipeline:
            raise InvalidArgument(f"{audio_needed}, or name a pipeline that reads none")
        pipeline = self.registry.get(request.pipeline)
        if readers := pipeline.audio_readers():
            raise InvalidArgument(f"{audio_needed}: pipeline {pipeline.name!r} reads it in stages {readers}")
        parameters = pipeline.resolve_parameters(dict(request.parameters), bucket="", key="")
        dedupe = f"idempotency:{request.idempotency_key}" if request.idempotency_key else None
        if dedupe is not None:
            existing = await asyncio.to_thread(self.store.find_by_dedupe_key, dedupe)
            if existing is not None:
                return Accepted(existing, False, pipeline if existing.pipeline == pipeline.name else None)
        job_id = str(uuid.uuid4())
        job, created = await asyncio.to_thread(
            self.store.create_job,
            pipeline=pipeline.name,
            source_uri=f"api:{job_id}",
            origin="api",
            metadata=dict(request.metadata),
            parameters=parameters,
            dedupe_key=dedupe,
            job_id=job_id,
        )
        return Accepted(job, created, pipeline if job.pipeline == pipeline.name else None)

    async def _discard(self, uri: S3Uri) -> None:
        """Removes a submission copy no job points at (ours, written moments ago; never a source)."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.objects.client.delete_object, Bucket=uri.bucket, Key=uri.key)
