"""Store records as API messages: jobs with stages, outputs (freshly presigned) and results."""

from __future__ import annotations

import datetime as dt

from soriflow.errors import SoriflowError
from soriflow.gateway.clients import ServiceClients
from soriflow.gateway.pipelines import PipelineDef, PipelineRegistry
from soriflow.gateway.runner import job_result
from soriflow.gateway.store import JobRecord, JobStore
from soriflow.storage import ObjectStore
from soriflow.v1 import gateway_pb2


def pipeline_message(p: PipelineDef) -> gateway_pb2.Pipeline:
    return gateway_pb2.Pipeline(
        name=p.name,
        description=p.description.strip(),
        key_prefixes=p.key_prefixes,
        parameters={k: v.description.strip() for k, v in p.parameters.items()},
        definition_yaml=p.source_yaml,
        stages=[
            gateway_pb2.PipelineStage(
                name=s.name,
                service=s.service,
                depends_on=s.needs,
                optional=s.optional,
                max_attempts=s.retry.max_attempts,
                timeout_ms=int(s.timeout_s * 1000),
            )
            for s in p.stages
        ],
    )


class JobViews:
    def __init__(
        self,
        *,
        store: JobStore,
        objects: ObjectStore,
        registry: PipelineRegistry,
        clients: ServiceClients,
        presign_expiry_s: int,
    ) -> None:
        self.store = store
        self.objects = objects
        self.registry = registry
        self.clients = clients
        self.presign_expiry_s = presign_expiry_s

    def job(self, record: JobRecord, *, detail: bool = True) -> gateway_pb2.Job:
        """The API view of a job (blocking: reads stages and outputs, presigns URLs)."""
        msg = gateway_pb2.Job(
            job_id=record.id,
            pipeline=record.pipeline,
            state=record.state.proto,
            source_uri=record.source_uri,
            metadata=record.metadata,
            parameters=record.parameters,
            error=record.error,
            error_code=record.error_code,
            needs_review=record.needs_review,
        )
        msg.create_time.FromDatetime(record.created_at)
        if record.started_at:
            msg.start_time.FromDatetime(record.started_at)
        if record.ended_at:
            msg.end_time.FromDatetime(record.ended_at)
        if not detail:
            return msg
        stages = self.store.stages(record.id)
        for stage in stages:
            run = msg.stages.add(
                name=stage.name,
                service=stage.service,
                state=stage.state.proto,
                attempt=stage.attempt,
                optional=stage.optional,
                duration_ms=stage.duration_ms,
                error=stage.error,
                error_code=stage.error_code,
            )
            if stage.started_at:
                run.start_time.FromDatetime(stage.started_at)
            if stage.ended_at:
                run.end_time.FromDatetime(stage.ended_at)
        expiry_s = self.registry.presign_expiry_s(record.pipeline, self.presign_expiry_s)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expiry_s)
        for output in self.store.outputs(record.id):
            item = msg.outputs.add(
                name=output.name,
                uri=output.uri,
                content_type=output.content_type,
                size_bytes=output.size_bytes,
            )
            item.presigned_url = self.objects.presigned_url(output.uri, expiry_s)
            item.url_expire_time.FromDatetime(expires)
        if record.pipeline in self.registry.by_name:
            try:
                results = {s.name: s.result for s in stages if s.result is not None}
                msg.result.CopyFrom(
                    job_result(self.registry.get(record.pipeline), results, record, self.clients)
                )
            except SoriflowError:
                pass  # a pipeline changed since the job ran: stages and outputs still tell the story
        if record.needs_review and not msg.result.needs_review:  # whatever became of the pipeline
            msg.result.needs_review = True
            msg.result.review_reasons.extend(record.review_reasons)
        return msg
