"""The gateway end to end: uploads to S3 (moto server) -> SQS -> real stage services -> outputs + store.

These tests run the real STT service (tiny.en) and, for the full pipelines, TTS, summarizer and scoring.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from soriflow.client import GatewayClient, wait_for_serving
from soriflow.gateway.store import JobRecord, JobStore
from soriflow.server import ThreadedServer
from soriflow.v1 import audio_pb2, gateway_pb2
from tests.conftest import free_port
from tests.gateway.conftest import AwsWorld, gateway_settings, make_world
from tests.gateway.speech import silence, speak, stereo_call, wav

pytestmark = pytest.mark.slow


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def store_of(gateway: ThreadedServer) -> JobStore:
    store: JobStore = gateway.service.store
    return store


def finished_jobs(gateway: ThreadedServer, count: int, timeout: float = 120) -> list[JobRecord]:
    store = store_of(gateway)

    def done() -> list[JobRecord] | None:
        jobs, _ = store.list_jobs(page_size=1000)
        finished = [j for j in jobs if j.terminal and not (j.state == "FAILED" and j.retryable)]
        return finished if len(finished) >= count else None

    return list(wait_until(done, timeout, f"{count} finished jobs"))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_upload_runs_transcribe_once_and_stores_outputs(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    gateway = start_gateway(gateway_settings(aws, tmp_path, stt_address=stt_service.address))
    uri = aws.upload("transcribe/front center+1.wav", speech_wav.read_bytes())
    [job] = finished_jobs(gateway, 1)
    assert (job.state, job.source_uri, job.pipeline, job.runs) == ("SUCCEEDED", uri, "transcribe", 1)
    outputs = {o.name: o for o in store_of(gateway).outputs(job.id)}
    assert set(outputs) == {"transcript.txt", "transcript.json", "subtitles.srt", "subtitles.vtt"}
    key = f"results/{job.id}/transcript.json"
    obj = aws.s3.get_object(Bucket=aws.output_bucket, Key=key)
    assert obj["Metadata"] == {"soriflow-output": "1", "soriflow-job-id": job.id}
    transcript = json.loads(obj["Body"].read())
    assert "front" in transcript["text"].lower()
    assert transcript["words"]
    assert transcript["words"][0]["end_ms"] > transcript["words"][0]["start_ms"]
    srt = (
        aws.s3.get_object(Bucket=aws.output_bucket, Key=f"results/{job.id}/subtitles.srt")["Body"]
        .read()
        .decode()
    )
    assert srt.startswith("1\n00:00:")
    wait_until(lambda: aws.queue_depth() == 0, 30, "the message to be deleted")
    assert aws.queue_depth(aws.dlq_url) == 0

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            got = await client.get(job.id)
            assert got.state == gateway_pb2.JOB_STATE_SUCCEEDED
            assert [s.name for s in got.stages] == ["stt"]
            assert got.stages[0].duration_ms > 0
            assert "front" in got.result.transcript.text.lower()
            presigned = {o.name: o.presigned_url for o in got.outputs}["transcript.txt"]
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(presigned, timeout=5).read())
            assert "front" in body.decode().lower()
            # A late subscriber gets the whole history, then the final job.
            responses = [r async for r in client.watch(job.id)]
            events = [r.event for r in responses if r.HasField("event")]
            assert events[0].job_state == gateway_pb2.JOB_STATE_QUEUED
            assert any(
                e.type == gateway_pb2.JOB_EVENT_TYPE_STAGE_RESULT and e.result.transcript.text for e in events
            )
            assert events[-1].job_state == gateway_pb2.JOB_STATE_SUCCEEDED
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            assert responses[-1].job.job_id == job.id
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.get("00000000-0000-0000-0000-000000000000")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

    run(api())


def test_duplicated_events_run_the_job_once(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    aws.upload("transcribe/dup.wav", speech_wav.read_bytes())
    head = aws.s3.head_object(Bucket=aws.input_bucket, Key="transcribe/dup.wav")
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": aws.input_bucket},
                        "object": {
                            "key": "transcribe/dup.wav",
                            "eTag": head["ETag"].strip('"'),
                            "size": head["ContentLength"],
                        },
                    },
                }
            ]
        }
    )
    for _ in range(2):  # at-least-once delivery: the same event twice more, before anyone consumes
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    gateway = start_gateway(gateway_settings(aws, tmp_path, stt_address=stt_service.address))
    [job] = finished_jobs(gateway, 1)
    wait_until(lambda: aws.queue_depth() == 0, 30, "all three messages to be deleted")
    jobs, _ = store_of(gateway).list_jobs(page_size=10)
    assert len(jobs) == 1
    assert (job.state, job.runs) == ("SUCCEEDED", 1)
    versions = aws.output_versions()
    assert versions
    assert all(count == 1 for count in versions.values()), versions


def test_corrupt_audio_fails_at_once_without_retries(
    aws: AwsWorld, tmp_path: Path, stt_service: ThreadedServer, start_gateway: Callable[..., ThreadedServer]
) -> None:
    gateway = start_gateway(gateway_settings(aws, tmp_path, stt_address=stt_service.address))
    uri = aws.upload("transcribe/broken.wav", b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio")
    [job] = finished_jobs(gateway, 1)
    assert (job.state, job.error_code, job.retryable, job.source_uri) == (
        "FAILED",
        "INVALID_ARGUMENT",
        False,
        uri,
    )
    assert "stage stt failed: INVALID_ARGUMENT" in job.error
    [stage] = store_of(gateway).stages(job.id)
    assert (stage.state, stage.attempt) == ("FAILED", 1)
    wait_until(lambda: aws.queue_depth() == 0, 30, "the message to be deleted")
    assert aws.queue_depth(aws.dlq_url) == 0
    assert aws.s3.head_object(Bucket=aws.input_bucket, Key="transcribe/broken.wav")["ContentLength"] > 0


FAST_RETRY = """
name: transcribe
key_prefixes: ["transcribe/"]
stages:
  - name: stt
    uses: stt.recognize
    timeout_s: 60
    retry: {max_attempts: %d, initial_backoff_s: 0.2, max_backoff_s: 1.0}
    with: {audio: source, outputs: [transcript.json]}
"""


def test_a_stage_that_always_fails_ends_in_the_dead_letter_queue(
    s3_env: str, tmp_path: Path, start_gateway: Callable[..., ThreadedServer], speech_wav: Path
) -> None:
    aws = make_world(s3_env, max_receive_count=2)
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(FAST_RETRY % 2)
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: UNAVAILABLE on every attempt
    gateway = start_gateway(
        gateway_settings(aws, tmp_path, stt_address=dead, gateway_pipelines_file=str(pipelines))
    )
    aws.upload("transcribe/unlucky.wav", speech_wav.read_bytes())
    wait_until(lambda: aws.queue_depth(aws.dlq_url) == 1, 90, "the message to reach the dead-letter queue")
    jobs, _ = store_of(gateway).list_jobs(page_size=10)
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.state, job.error_code, job.retryable) == ("FAILED", "UNAVAILABLE", True)
    assert job.runs == 2, "one run per receive before the redrive"
    assert "stage stt failed: UNAVAILABLE" in job.error
    [stage] = store_of(gateway).stages(job.id)
    assert stage.attempt == 2
    dead_letter = aws.sqs.receive_message(QueueUrl=aws.dlq_url, WaitTimeSeconds=1)["Messages"][0]
    assert (
        "transcribe%2Funlucky.wav" in dead_letter["Body"] or "transcribe/unlucky.wav" in dead_letter["Body"]
    )


def test_a_stage_service_killed_mid_job_and_restarted(
    aws: AwsWorld, tmp_path: Path, start_gateway: Callable[..., ThreadedServer]
) -> None:
    port = free_port()
    env = os.environ | {
        "SORIFLOW_PORT": str(port),
        "SORIFLOW_HOST": "127.0.0.1",
        "SORIFLOW_METRICS_PORT": "",
        "SORIFLOW_S3_ENDPOINT_URL": aws.endpoint,
        "SORIFLOW_STT_DEVICE": "cpu",
        "SORIFLOW_LOG_FORMAT": "text",
        "SORIFLOW_READ_URIS": json.dumps([f"s3://{aws.input_bucket}/"]),
    }

    def start_stt() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "soriflow.cli.main", "serve", "stt"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    stt = start_stt()
    try:
        run(wait_for_serving(f"127.0.0.1:{port}", timeout=120))
        pipelines = tmp_path / "pipelines.yaml"
        pipelines.write_text(FAST_RETRY % 20)
        gateway = start_gateway(
            gateway_settings(
                aws, tmp_path, stt_address=f"127.0.0.1:{port}", gateway_pipelines_file=str(pipelines)
            )
        )
        long_speech = speak("The quick brown fox jumps over the lazy dog. " * 6)
        aws.upload("transcribe/long.wav", wav(long_speech))
        store = store_of(gateway)

        def stage_running() -> bool:
            jobs, _ = store.list_jobs(page_size=1)
            return bool(jobs) and any(s.state == "RUNNING" for s in store.stages(jobs[0].id))

        wait_until(stage_running, 60, "the stt stage to start")
        time.sleep(0.3)
        stt.send_signal(signal.SIGKILL)
        stt.wait(10)
        time.sleep(1.0)
        stt = start_stt()
        [job] = finished_jobs(gateway, 1, timeout=180)
        assert job.state == "SUCCEEDED"
        [stage] = store.stages(job.id)
        assert stage.attempt >= 2, "the killed attempt was retried"
        assert all(count == 1 for count in aws.output_versions().values())
        jobs, _ = store.list_jobs(page_size=10)
        assert len(jobs) == 1
    finally:
        stt.kill()
        stt.wait(10)


def test_a_hundred_uploads_at_concurrency_four_run_exactly_once(
    aws: AwsWorld, tmp_path: Path, stt_service: ThreadedServer, start_gateway: Callable[..., ThreadedServer]
) -> None:
    clip = wav(speak("one two three"))
    for i in range(100):
        aws.upload(f"transcribe/batch/{i:03d}.wav", clip)
    gateway = start_gateway(
        gateway_settings(aws, tmp_path, stt_address=stt_service.address, gateway_concurrency=4)
    )
    jobs = finished_jobs(gateway, 100, timeout=600)
    assert len(jobs) == 100
    assert {j.state for j in jobs} == {"SUCCEEDED"}
    assert {j.runs for j in jobs} == {1}
    assert len({j.source_uri for j in jobs}) == 100
    versions = aws.output_versions()
    assert len(versions) == 400
    assert set(versions.values()) == {1}
    wait_until(lambda: aws.queue_depth() == 0, 30, "the queue to drain")


def test_job_api_submit_watch_list_cancel_and_bad_requests(
    aws: AwsWorld, api_gateway: ThreadedServer, speech_wav: Path
) -> None:
    gateway = api_gateway

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            job = await client.submit_bytes(
                speech_wav.read_bytes(),
                filename="clip.wav",
                pipeline="transcribe",
                metadata={"user": "kim"},
                idempotency_key="req-1",
            )
            assert job.source_uri == f"s3://{aws.input_bucket}/submissions/{job.job_id}/clip.wav"
            events = []
            final = None
            async for response in client.watch(job.job_id):  # a live subscriber
                if response.HasField("job"):
                    final = response.job
                else:
                    events.append(response.event)
            assert final is not None
            assert final.state == gateway_pb2.JOB_STATE_SUCCEEDED
            assert any(e.stage == "stt" and e.stage_state == gateway_pb2.STAGE_STATE_RUNNING for e in events)
            again = await client.stub.SubmitJob(
                gateway_pb2.SubmitJobRequest(
                    audio={"content": speech_wav.read_bytes()}, pipeline="transcribe", idempotency_key="req-1"
                )
            )
            assert again.deduplicated
            assert again.job.job_id == job.job_id
            page = await client.list(page_size=10, metadata={"user": "kim"})
            assert [j.job_id for j in page.jobs] == [job.job_id]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.cancel(job.job_id)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            pipelines = await client.pipelines()
            assert {p.name for p in pipelines} == {
                "call-summary",
                "pronunciation",
                "transcribe",
                "subtitle-picture",
                "nightly-story",
            }
            [story] = [p for p in pipelines if p.name == "nightly-story"]
            [schedule] = story.schedules  # listed with its definition; off until the settings name it
            assert (schedule.cron, schedule.enabled) == ("0 21 * * *", False)
            bad_requests = [
                (
                    dict(audio={"content": b"this is not audio"}, pipeline="transcribe"),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "not a recognized audio file",
                ),
                (
                    dict(audio={"content": speech_wav.read_bytes()}, pipeline="nope"),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "unknown pipeline",
                ),
                (
                    dict(audio={"uri": f"s3://{aws.input_bucket}/transcribe/missing.wav"}),
                    grpc.StatusCode.NOT_FOUND,
                    "does not exist",
                ),
                (
                    dict(audio={"content": speech_wav.read_bytes()}),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "no pipeline handles key",
                ),
                (
                    dict(audio={"uri": "https://example.com/a.wav"}),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "not an S3 URI",
                ),
                (
                    dict(
                        audio={"content": speech_wav.read_bytes()},
                        pipeline="transcribe",
                        parameters={"x": "1"},
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "does not take parameters",
                ),
            ]
            for kwargs, code, text in bad_requests:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await client.stub.SubmitJob(gateway_pb2.SubmitJobRequest(**kwargs))
                assert err.value.code() == code, kwargs
                assert text in (err.value.details() or ""), err.value.details()

            long_job = await client.submit_bytes(wav(speak("Cancel me please. " * 20)), pipeline="transcribe")
            cancelled = await client.cancel(long_job.job_id)
            assert cancelled.state == gateway_pb2.JOB_STATE_CANCELLED

    run(api())


def test_jobs_run_against_postgresql(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    postgres_database: str,
    speech_wav: Path,
) -> None:
    gateway = start_gateway(
        gateway_settings(
            aws, tmp_path, stt_address=stt_service.address, gateway_database_url=postgres_database
        )
    )
    aws.upload("transcribe/pg.wav", speech_wav.read_bytes())
    jobs = finished_jobs(gateway, 1)
    mine = [j for j in jobs if j.source_uri.endswith(f"{aws.input_bucket}/transcribe/pg.wav")]
    assert mine
    assert mine[0].state == "SUCCEEDED"
    check = JobStore(postgres_database)
    try:
        assert check.require_job(mine[0].id).state == "SUCCEEDED"
        assert [o.name for o in check.outputs(mine[0].id)]
    finally:
        check.close()


def test_call_summary_pipeline(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    summarizer_service: ThreadedServer,
    tts_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
) -> None:
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            stt_address=stt_service.address,
            summarizer_address=summarizer_service.address,
            tts_address=tts_service.address,
        )
    )
    call = stereo_call(
        [
            (1, "Thank you for calling, how can I help you?"),
            (
                0,
                "Hello. I had a car accident yesterday and I want to check whether my insurance covers "
                "the repair.",
            ),
            (1, "Let me look up your policy."),
        ]
    )
    aws.upload("connect/2026/11/25/call-1.wav", call)
    [job] = finished_jobs(gateway, 1, timeout=300)
    assert job.state == "SUCCEEDED", job.error
    outputs = {o.name: o for o in store_of(gateway).outputs(job.id)}
    assert set(outputs) == {"transcript.txt", "transcript.json", "summary.json", "reply.wav"}
    transcript = json.loads(
        aws.s3.get_object(Bucket=aws.output_bucket, Key=f"results/{job.id}/transcript.json")["Body"].read()
    )
    speakers = {w["speaker"] for w in transcript["words"]}
    assert speakers == {"customer", "agent"}
    starts = [w["start_ms"] for w in transcript["words"]]
    assert starts == sorted(starts)
    summary = json.loads(
        aws.s3.get_object(Bucket=aws.output_bucket, Key=f"results/{job.id}/summary.json")["Body"].read()
    )
    assert summary["summary"].strip()
    reply = aws.s3.get_object(Bucket=aws.output_bucket, Key=f"results/{job.id}/reply.wav")["Body"].read()
    assert reply[:4] == b"RIFF"
    assert reply[8:12] == b"WAVE"
    assert int.from_bytes(reply[20:22], "little") == 7  # WAVE_FORMAT_MULAW
    assert int.from_bytes(reply[22:24], "little") == 1  # mono
    assert int.from_bytes(reply[24:28], "little") == 8000

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            got = await client.get(job.id)
            assert got.result.summary.summary == summary["summary"]
            assert got.result.reply_text.startswith("Let me confirm your request: ")

    run(api())


def test_pronunciation_pipeline_scores_against_the_derived_reference(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    scoring_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
) -> None:
    gateway = start_gateway(
        gateway_settings(
            aws, tmp_path, stt_address=stt_service.address, scoring_address=scoring_service.address
        )
    )
    sentence = "I went to the toy store with my sister"
    aws.upload("reference/book/level_1/toys/audio_line_2.wav", wav(speak(sentence, "en-us")))
    learner = "users/kim/book/level_1/toys/audio_line_2.wav"
    aws.upload(
        learner, wav(speak(sentence, "en-us+m3", speed_wpm=120)), metadata={"reference-text": sentence}
    )
    text_only = "users/lee/book/level_1/toys/audio_line_9.wav"  # no reference recording there: text only
    aws.upload(
        text_only,
        wav(np_concat(speak("I went to the store"), silence(0.3))),
        metadata={"reference-text": sentence},
    )
    # The reference named by object metadata instead of the derived location (where nothing is).
    elsewhere = aws.upload("natives/toys-line-2.wav", wav(speak(sentence, "en-us")))
    named = "users/park/book/level_3/toys/audio_line_2.wav"
    aws.upload(named, wav(speak(sentence, "en-us+m3")), metadata={"reference-uri": elsewhere})
    # Headerless PCM submitted inline: the declared format reaches STT and scoring.
    pcm = (np_concat(speak(sentence, "en-us+m3"), silence(0.3)) * 32767).astype("<i2").tobytes()

    async def submit_raw() -> str:
        async with GatewayClient(gateway.address) as client:
            response = await client.stub.SubmitJob(
                gateway_pb2.SubmitJobRequest(
                    audio=audio_pb2.AudioInput(
                        content=pcm, encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000
                    ),
                    pipeline="pronunciation",
                    parameters={"reference_text": sentence},
                    metadata={"user": "raw"},
                )
            )
            return str(response.job.job_id)

    raw_id = run(submit_raw())
    jobs = {j.source_uri.split("/", 3)[3]: j for j in finished_jobs(gateway, 4, timeout=300)}
    assert jobs[learner].state == "SUCCEEDED", jobs[learner].error
    assert jobs[text_only].state == "SUCCEEDED", jobs[text_only].error
    assert jobs[named].state == "SUCCEEDED", jobs[named].error
    [raw] = [j for j in jobs.values() if j.id == raw_id]
    assert raw.state == "SUCCEEDED", raw.error
    stages = {s.name: s.state for s in store_of(gateway).stages(jobs[text_only].id)}
    assert stages == {"stt-learner": "SUCCEEDED", "stt-reference": "SKIPPED", "score": "SUCCEEDED"}
    runs = {s.name: s for s in store_of(gateway).stages(jobs[learner].id)}
    learner_stt, reference_stt = runs["stt-learner"], runs["stt-reference"]
    assert learner_stt.started_at is not None
    assert learner_stt.ended_at is not None
    assert reference_stt.started_at is not None
    assert reference_stt.ended_at is not None
    assert learner_stt.started_at < reference_stt.ended_at, "the two transcriptions ran in parallel"
    assert reference_stt.started_at < learner_stt.ended_at, "the two transcriptions ran in parallel"
    assert runs["score"].started_at is not None
    assert runs["score"].started_at >= max(learner_stt.ended_at, reference_stt.ended_at)
    rows = {r["user_id"]: r for r in store_of(gateway).pronunciation_results()}
    assert set(rows) == {"kim", "lee", "park", "raw"}
    assert rows["park"]["reference_uri"] == elsewhere
    named_stages = {s.name: s.state for s in store_of(gateway).stages(jobs[named].id)}
    assert named_stages["stt-reference"] == "SUCCEEDED"
    assert rows["raw"]["job_id"] == raw_id
    assert rows["raw"]["overall_score"] > 0
    assert rows["kim"]["reference_uri"].endswith("reference/book/level_1/toys/audio_line_2.wav")
    assert (rows["kim"]["level"], rows["kim"]["title"], rows["kim"]["line"]) == ("1", "toys", "2")
    assert rows["kim"]["speed_ratio"] < 1.0, "the learner spoke slower than the reference"
    assert rows["lee"]["completeness_score"] < rows["kim"]["completeness_score"]
    score = json.loads(
        aws.s3.get_object(Bucket=aws.output_bucket, Key=f"results/{jobs[learner].id}/score.json")[
            "Body"
        ].read()
    )
    assert 0 <= score["overall_score"] <= 100


def np_concat(*parts: Any) -> Any:
    import numpy as np

    return np.concatenate(parts)
