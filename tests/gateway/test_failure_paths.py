"""Failure paths: deadlines, optional stages, long jobs, dead workers, shutdown, the failure path.

A stub STT service (tests/gateway/stubs.py) controls the timing; everything else is real:
moto's S3/SQS in server mode, the gateway, its job store, and the TTS service where a
stage must succeed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from soriflow.client import GatewayClient
from soriflow.gateway.jobs import JobService
from soriflow.gateway.pipelines import PipelineRegistry
from soriflow.gateway.store import JobStore
from soriflow.server import ThreadedServer
from soriflow.storage import ObjectStore, S3Uri
from soriflow.v1 import gateway_pb2
from tests.conftest import free_port
from tests.gateway.conftest import AwsWorld, gateway_settings, make_world
from tests.gateway.stubs import start_slow_stt
from tests.gateway.test_delivery import _Hook, webhook  # noqa: F401  (fixture)
from tests.gateway.test_gateway import finished_jobs, run, store_of, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_stt(request: pytest.FixtureRequest) -> Iterator[ThreadedServer]:
    server = start_slow_stt(request.param)
    yield server
    server.stop(grace=0.5)


def s3_event(aws: AwsWorld, *keys: str) -> str:
    """An S3 ObjectCreated notification body with one record per key (as S3 would send)."""
    records = []
    for key in keys:
        head = aws.s3.head_object(Bucket=aws.input_bucket, Key=key)
        records.append(
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": aws.input_bucket},
                    "object": {"key": key, "eTag": head["ETag"].strip('"'), "size": head["ContentLength"]},
                },
            }
        )
    return json.dumps({"Records": records})


DEADLINE_AND_OPTIONAL = """
name: transcribe
key_prefixes: ["transcribe/"]
stages:
  - name: stt
    uses: stt.recognize
    timeout_s: 1
    retry: {max_attempts: 3, initial_backoff_s: 0.1, max_backoff_s: 0.2}
    with: {audio: source, outputs: [transcript.txt]}
---
name: with-reply
stages:
  - name: stt
    uses: stt.recognize
    timeout_s: 10
    with: {audio: source, outputs: [transcript.txt]}
  - name: reply
    uses: tts.synthesize
    needs: [stt]
    optional: true
    retry: {max_attempts: 2, initial_backoff_s: 0.1}
    with: {template: "Thanks.", language_code: en, outputs: [reply.wav]}
"""


@pytest.mark.parametrize("slow_stt", [[3.0, 0.0]], indirect=True)
def test_a_missed_deadline_is_retried_and_a_failed_optional_stage_ends_partial(
    aws: AwsWorld,
    tmp_path: Path,
    slow_stt: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(DEADLINE_AND_OPTIONAL)
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            gateway_queue_url=None,
            stt_address=slow_stt.address,
            tts_address=f"127.0.0.1:{free_port()}",  # nothing listens: UNAVAILABLE
            gateway_pipelines_file=str(pipelines),
        )
    )
    uri = aws.upload("manual/clip.wav", speech_wav.read_bytes())

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            job = await client.submit_uri(uri, pipeline="transcribe")
            final = await client.wait(job.job_id, timeout=60)
            assert final.state == gateway_pb2.JOB_STATE_SUCCEEDED, final.error
            [stage] = final.stages
            assert stage.attempt == 2, "the first attempt missed its 1 s deadline and was retried"
            assert final.result.transcript.text == "stub words"
            history = [r.event async for r in client.watch(job.job_id) if r.HasField("event")]
            retrying = [e for e in history if e.stage_state == gateway_pb2.STAGE_STATE_RETRYING]
            assert len(retrying) == 1
            assert retrying[0].message.startswith("DEADLINE_EXCEEDED")

            partial = await client.submit_uri(uri, pipeline="with-reply", idempotency_key="partial")
            final = await client.wait(partial.job_id, timeout=60)
            assert final.state == gateway_pb2.JOB_STATE_PARTIAL, final.error
            stages = {s.name: s for s in final.stages}
            assert stages["stt"].state == gateway_pb2.STAGE_STATE_SUCCEEDED
            assert (stages["reply"].state, stages["reply"].attempt) == (gateway_pb2.STAGE_STATE_FAILED, 2)
            assert "optional stages did not complete: reply" in final.error
            assert {o.name for o in final.outputs} == {"transcript.txt"}

    run(api())
    assert slow_stt.service.calls == 3


@pytest.mark.parametrize("slow_stt", [[12.0]], indirect=True)
def test_the_visibility_heartbeat_keeps_a_long_job_from_being_redelivered(
    aws: AwsWorld,
    tmp_path: Path,
    slow_stt: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            stt_address=slow_stt.address,
            gateway_concurrency=1,  # the gateway itself does not poll while the job runs
            gateway_visibility_timeout_s=5,  # the job takes 12 s
            gateway_lease_s=3,
        )
    )
    aws.upload("transcribe/slow.wav", speech_wav.read_bytes())
    store = store_of(gateway)
    wait_until(lambda: slow_stt.service.calls == 1, 30, "the stage to start")
    seen = 0
    started = time.monotonic()
    while time.monotonic() - started < 9:  # well past the 5 s visibility timeout
        # A second consumer: it would get the message if the visibility were not extended.
        got = aws.sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=1, VisibilityTimeout=0)
        seen += sum("transcribe/slow.wav" in m["Body"] for m in got.get("Messages", []))
    assert seen == 0, "the message became visible while its job was running"
    [job] = finished_jobs(gateway, 1, timeout=60)
    assert (job.state, job.runs) == ("SUCCEEDED", 1)
    assert slow_stt.service.calls == 1
    assert [s.attempt for s in store.stages(job.id)] == [1]
    wait_until(lambda: aws.queue_depth() == 0, 30, "the message to be deleted")


def test_a_message_whose_job_a_dead_worker_holds_comes_back_and_runs_it(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    settings = gateway_settings(
        aws, tmp_path, stt_address=stt_service.address, gateway_lease_s=4, gateway_visibility_timeout_s=6
    )
    gateway = start_gateway(settings)
    store = store_of(gateway)
    uri = S3Uri.parse(
        aws.upload("manual/ghost.wav", speech_wav.read_bytes(), {"soriflow-pipeline": "transcribe"})
    )
    objects = ObjectStore(settings)
    info = objects.head(uri)
    jobs = JobService(
        store=store,
        objects=objects,
        registry=PipelineRegistry.load(),
        settings=settings,
        submissions_uri=settings.gateway_submissions_uri,
    )
    intake = run(jobs.accept_object(uri, info))
    assert store.claim(intake.job.id, "a-worker-that-dies-now", lease_s=4)  # and never renews
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=s3_event(aws, "manual/ghost.wav"))
    sent = time.monotonic()
    wait_until(lambda: store.require_job(intake.job.id).runs == 1 and aws.queue_depth() == 1, 5, "a receive")
    time.sleep(2)  # received, found held by a live lease: the message must stay (delayed), not be deleted
    assert aws.queue_depth() == 1
    [job] = finished_jobs(gateway, 1, timeout=60)
    # The orphan sweep would only take it ~20 s in (lease + visibility timeout after the crash): the
    # message's return took it over first.
    assert time.monotonic() - sent < 15
    assert job.id == intake.job.id
    assert (job.state, job.runs) == ("SUCCEEDED", 2), "taken over once the dead worker's lease expired"
    wait_until(lambda: aws.queue_depth() == 0, 30, "the message to be deleted after the job finished")
    assert aws.queue_depth(aws.dlq_url) == 0


def test_cancelling_a_job_whose_worker_died_ends_it(
    aws: AwsWorld, tmp_path: Path, start_gateway: Callable[..., ThreadedServer], speech_wav: Path
) -> None:
    settings = gateway_settings(aws, tmp_path, gateway_queue_url=None, stt_address=f"127.0.0.1:{free_port()}")
    store = JobStore(settings.gateway_database_url)
    job, _ = store.create_job(
        pipeline="transcribe", source_uri="s3://x/y.wav", origin="sqs", metadata={}, parameters={}
    )
    assert store.claim(job.id, "a-worker-that-dies-now", lease_s=2)
    gateway = start_gateway(settings)

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            watch = client.watch(job.id)
            cancelled = await client.cancel(job.id)  # the lease is still live: the worker should stop it
            assert cancelled.state == gateway_pb2.JOB_STATE_RUNNING
            started = time.monotonic()
            final = None
            async for response in watch:  # ...but nobody does: the gateway ends it when the lease runs out
                if response.HasField("job"):
                    final = response.job
            assert final is not None
            assert final.state == gateway_pb2.JOB_STATE_CANCELLED
            assert time.monotonic() - started < 15

    run(api())
    store.close()


@pytest.mark.parametrize("slow_stt", [[60.0]], indirect=True)
def test_shutdown_waits_one_grace_period_for_queue_and_api_jobs_together(
    aws: AwsWorld,
    tmp_path: Path,
    slow_stt: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    gateway = start_gateway(gateway_settings(aws, tmp_path, stt_address=slow_stt.address, grace_period_s=2))
    aws.upload("transcribe/queued.wav", speech_wav.read_bytes())
    uri = aws.upload("manual/api.wav", speech_wav.read_bytes())
    run(_submit(gateway.address, uri))
    wait_until(lambda: slow_stt.service.calls == 2, 30, "both jobs to be running")
    store = store_of(gateway)
    started = time.monotonic()
    gateway.stop(grace=0)
    elapsed = time.monotonic() - started
    assert elapsed < 3.5, f"stop took {elapsed:.1f}s: the grace period (2 s) was waited more than once"
    store = JobStore(store.url)  # the gateway closed its own
    jobs, _ = store.list_jobs(page_size=10)
    assert {(j.origin, j.state) for j in jobs} == {("sqs", "RUNNING"), ("api", "RUNNING")}, "handed back"
    store.close()


async def _submit(address: str, uri: str) -> Any:
    async with GatewayClient(address) as client:
        return await client.submit_uri(uri, pipeline="transcribe")


APOLOGY = """
name: transcribe
key_prefixes: ["transcribe/"]
stages:
  - name: stt
    uses: stt.recognize
    timeout_s: 10
    retry: {max_attempts: 1}
    with: {audio: source, outputs: [transcript.txt]}
on_failure:
  - name: apology
    uses: tts.synthesize
    with: {template: "Sorry, we could not transcribe your recording.", language_code: en,
           outputs: [apology.wav]}
"""


def test_only_the_final_failure_notifies_and_runs_the_failure_path(
    s3_env: str,
    tmp_path: Path,
    tts_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
    webhook: str,  # noqa: F811
) -> None:
    aws = make_world(s3_env, max_receive_count=2)
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(APOLOGY)
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            stt_address=f"127.0.0.1:{free_port()}",  # UNAVAILABLE: retryable, on every delivery
            tts_address=tts_service.address,
            gateway_pipelines_file=str(pipelines),
            gateway_webhook_url=webhook,
        )
    )
    aws.upload("transcribe/unlucky.wav", speech_wav.read_bytes())
    wait_until(lambda: aws.queue_depth(aws.dlq_url) == 1, 90, "the message to reach the dead-letter queue")
    store = store_of(gateway)
    [job] = store.list_jobs(page_size=10)[0]
    assert (job.state, job.retryable, job.runs) == ("FAILED", True, 2)
    assert "failure path: apology succeeded" in job.error
    stages = {s.name: s for s in store.stages(job.id)}
    assert (stages["stt"].state, stages["apology"].state, stages["apology"].attempt) == (
        "FAILED",
        "SUCCEEDED",
        1,
    )
    assert aws.output_versions() == {f"results/{job.id}/apology.wav": 1}, "the failure path ran once"
    wait_until(lambda: _Hook.received, 10, "the notification")
    time.sleep(1)
    assert len(_Hook.received) == 1, "the first, retried failure was not notified"
    note = json.loads(_Hook.received[0][1])
    assert (note["state"], note["retryable"]) == ("FAILED", True)
    assert [o["name"] for o in note["outputs"]] == ["apology.wav"]
    failed = [e.message for e in store.events_after(job.id, 0) if e.job_state == gateway_pb2.JOB_STATE_FAILED]
    assert len(failed) == 2
    assert "the message will be delivered again" in failed[0]
    assert "last delivery" in failed[1]

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            got = await client.get(job.id)
            assert got.result.reply_text == "Sorry, we could not transcribe your recording."

    run(api())
