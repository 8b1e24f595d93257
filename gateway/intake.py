"""Turning an input (an S3 event or a SubmitJob call) into a job record, exactly once.

The job's identity is the input's: `s3://bucket/key#<version or etag>` for an
object, or the caller's idempotency key. The store's unique constraint on it
is what makes a redelivered or duplicated event find the existing job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from soriflow.errors import InvalidArgument, SoriflowError
from soriflow.gateway.pipelines import PipelineDef, PipelineRegistry
from soriflow.gateway.store import JobRecord, JobStore
from soriflow.storage import ObjectInfo, ObjectStore, S3Uri

#: Object metadata keys the gateway reads (S3 lower-cases them; '-' maps to '_' for parameters).
PIPELINE_METADATA_KEY = "soriflow-pipeline"


@dataclass(frozen=True)
class Intake:
    job: JobRecord
    created: bool


def dedupe_key_for(uri: S3Uri, info: ObjectInfo | None, idempotency_key: str = "") -> str:
    if idempotency_key:
        return f"idempotency:{idempotency_key}"
    version = (info.version_id if info and info.version_id and info.version_id != "null" else None) or (
        info.etag if info else ""
    )
    return f"{uri}#{version}"


def parameters_from_metadata(pipeline: PipelineDef, metadata: Mapping[str, str]) -> dict[str, str]:
    """Pipeline parameters given as object metadata (`x-amz-meta-reference-text` -> reference_text)."""
    params = {}
    for key, value in metadata.items():
        name = key.lower().replace("-", "_")
        if name in pipeline.parameters and value:
            params[name] = value
    return params


async def drop_missing_derived_uris(
    pipeline: PipelineDef, given: Mapping[str, str], resolved: dict[str, str], objects: ObjectStore
) -> list[str]:
    """Clears s3:// parameters that came from defaults and point at nothing; returns notes.

    A derived reference recording that does not exist is not an error when
    the job has another way forward (e.g. reference text): the stage that
    needs it is then skipped as not applicable.
    """
    notes = []
    for name, value in list(resolved.items()):
        if name in given or not value.startswith("s3://"):
            continue
        if not await asyncio.to_thread(objects.exists, value):
            resolved[name] = ""
            notes.append(f"{name}: derived {value} does not exist")
    return notes


async def create_job(
    *,
    store: JobStore,
    objects: ObjectStore,
    registry: PipelineRegistry,
    pipeline_name: str,
    uri: S3Uri,
    info: ObjectInfo | None,
    origin: str,
    metadata: Mapping[str, str],
    parameters: Mapping[str, str],
    idempotency_key: str = "",
    job_id: str | None = None,
) -> Intake:
    """Creates (or finds) the job for an input; invalid inputs become FAILED jobs, never vanish."""
    dedupe = dedupe_key_for(uri, info, idempotency_key)
    existing = await asyncio.to_thread(store.find_by_dedupe_key, dedupe)
    if existing is not None:
        return Intake(existing, False)
    try:
        pipeline = registry.get(pipeline_name)
        resolved = pipeline.resolve_parameters(parameters, bucket=uri.bucket, key=uri.key)
        await drop_missing_derived_uris(pipeline, parameters, resolved, objects)
        labels = {**pipeline.key_variables(uri.key), **metadata}
        state, error, code = "QUEUED", "", ""
    except SoriflowError as exc:
        if origin == "api":
            raise
        resolved, labels = dict(parameters), dict(metadata)
        state, error, code = "FAILED", exc.message, exc.code.name
    job, created = await asyncio.to_thread(
        store.create_job,
        pipeline=pipeline_name,
        source_uri=str(uri),
        origin=origin,
        metadata=labels,
        parameters=resolved,
        dedupe_key=dedupe,
        state=state,
        error=error,
        error_code=code,
        job_id=job_id,
    )
    return Intake(job, created)


def route(registry: PipelineRegistry, key: str, metadata: Mapping[str, str], explicit: str = "") -> str:
    """The pipeline for an object: the caller's choice, its metadata, or its key prefix."""
    name = explicit or metadata.get(PIPELINE_METADATA_KEY, "")
    if name:
        registry.get(name)  # validates
        return name
    pipeline = registry.route(key)
    if pipeline is None:
        raise InvalidArgument(
            f"no pipeline handles key {key!r}: routed prefixes are {registry.prefixes()}; name a pipeline "
            f"or set object metadata {PIPELINE_METADATA_KEY}"
        )
    return pipeline.name
