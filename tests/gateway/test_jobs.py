"""The one way in for jobs: refusals store nothing, uploads that cannot run become one FAILED job,
and a job's pipeline and record are resolved and read once on its way through."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from soriflow.client import GatewayClient
from soriflow.gateway.jobs import JobService
from soriflow.gateway.pipelines import PipelineRegistry
from soriflow.gateway.states import JobState
from soriflow.gateway.store import JobStore
from soriflow.server import ThreadedServer
from soriflow.storage import ObjectStore, S3Uri
from soriflow.v1 import audio_pb2, gateway_pb2
from tests.conftest import free_port
from tests.gateway.conftest import AwsWorld, gateway_settings
from tests.gateway.stubs import start_slow_stt
from tests.gateway.test_gateway import finished_jobs


def submissions(aws: AwsWorld) -> list[str]:
    listed = aws.s3.list_objects_v2(Bucket=aws.input_bucket, Prefix="submissions/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_refused_submissions_store_nothing(
    aws: AwsWorld, tmp_path: Path, start_gateway: Callable[..., ThreadedServer], speech_wav: Path
) -> None:
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            gateway_queue_url=None,
            stt_address=f"127.0.0.1:{free_port()}",
            audio_max_bytes=200_000,
        )
    )
    clip = speech_wav.read_bytes()
    refused = [
        (dict(audio={"content": clip}, pipeline="nope"), "INVALID_ARGUMENT", "unknown pipeline 'nope'"),
        (dict(audio={"content": clip}), "INVALID_ARGUMENT", "no pipeline handles key 'submissions/"),
        (
            dict(audio={"content": clip}, pipeline="transcribe", parameters={"colour": "red"}),
            "INVALID_ARGUMENT",
            "does not take parameters ['colour']",
        ),
        (
            dict(audio={"content": b"this is not audio"}, pipeline="transcribe"),
            "INVALID_ARGUMENT",
            "not a recognized audio file",
        ),
        (
            dict(
                audio={"content": b"\x00\x01" * 800, "encoding": audio_pb2.AUDIO_ENCODING_LINEAR16},
                pipeline="transcribe",
            ),
            "INVALID_ARGUMENT",
            "set audio.sample_rate_hz",
        ),
        (
            dict(audio={"content": clip + b"\x00" * 200_000}, pipeline="transcribe"),
            "RESOURCE_EXHAUSTED",
            "over the limit of 200000 bytes",
        ),
        (dict(audio={}, pipeline="transcribe"), "INVALID_ARGUMENT", "no audio"),
    ]

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            for request, code, text in refused:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await client.stub.SubmitJob(gateway_pb2.SubmitJobRequest(**request))
                assert err.value.code().name == code, request.get("pipeline")
                assert text in (err.value.details() or ""), err.value.details()
                assert submissions(aws) == [], f"{text}: the audio was stored although refused"
            first = await client.submit_bytes(clip, pipeline="transcribe", idempotency_key="once")
            again = await client.submit_bytes(clip, pipeline="transcribe", idempotency_key="once")
            assert again.job_id == first.job_id
            assert submissions(aws) == [f"submissions/{first.job_id}/audio.wav"], "a replay stores nothing"

    asyncio.run(api())
    jobs, _ = gateway.service.store.list_jobs(page_size=10)
    assert len(jobs) == 1, "refused calls left no job behind"


def test_an_upload_that_cannot_run_is_one_failed_job(aws: AwsWorld, tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    settings = gateway_settings(aws, tmp_path)
    jobs = JobService(
        store=store,
        objects=ObjectStore(settings),
        registry=PipelineRegistry.load(),
        settings=settings,
        submissions_uri=settings.gateway_submissions_uri,
    )
    gone = S3Uri(aws.input_bucket, "transcribe/deleted.wav")
    aws.upload("misc/notes.wav", b"RIFF")
    unrouted = S3Uri(aws.input_bucket, "misc/notes.wav")
    info = ObjectStore(settings).head(unrouted)

    async def deliver_twice() -> None:
        for uri, found in ((gone, None), (unrouted, info)):
            first = await jobs.accept_object(uri, found, event_version="v1")
            again = await jobs.accept_object(uri, found, event_version="v1")
            assert first.created
            assert not again.created
            assert first.pipeline is None, "refused at intake: nothing to run"
            assert again.job.id == first.job.id
            assert first.job.state is JobState.FAILED
            assert first.job.final
            assert len(store.events_after(first.job.id, 0)) == 1, "written once, with its one event"

    asyncio.run(deliver_twice())
    failed = {j.source_uri: j for j in store.list_jobs(page_size=10)[0]}
    assert "deleted before it could be processed" in failed[str(gone)].error
    assert failed[str(gone)].error_code == "NOT_FOUND"
    assert "no pipeline handles key 'misc/notes.wav'" in failed[str(unrouted)].error
    store.close()


@pytest.mark.slow
def test_a_job_resolves_its_pipeline_once_and_reads_no_job_record(
    aws: AwsWorld, tmp_path: Path, start_gateway: Callable[..., ThreadedServer], speech_wav: Path
) -> None:
    stt = start_slow_stt([0.0], text="front center")
    try:
        gateway = start_gateway(gateway_settings(aws, tmp_path, stt_address=stt.address))
        service = gateway.service
        calls: Counter[str] = Counter()

        def counted(owner: Any, name: str) -> None:
            original = getattr(owner, name)

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                calls[name] += 1
                return original(*args, **kwargs)

            setattr(owner, name, wrapper)

        for name in ("get", "route"):
            counted(service.registry, name)
        for name in ("get_job", "find_by_dedupe_key", "require_job", "stages"):
            counted(service.store, name)
        aws.upload("transcribe/once.wav", speech_wav.read_bytes())
        [job] = finished_jobs(gateway, 1, timeout=60)
        assert job.state is JobState.SUCCEEDED, job.error
        assert calls == Counter({"route": 1}), calls

        async def submit() -> None:
            async with GatewayClient(gateway.address) as client:
                await client.submit_bytes(speech_wav.read_bytes(), pipeline="transcribe")

        calls.clear()
        asyncio.run(submit())
        assert {j.state for j in finished_jobs(gateway, 2, timeout=60)} == {JobState.SUCCEEDED}
        assert calls == Counter({"get": 1}), "SubmitJob: the named pipeline looked up once, no job read"
    finally:
        stt.stop(grace=0.5)
