"""Inputs end to end with the real STT service: raw PCM and s3:// submissions, state filters, and
an S3 notification carrying several records."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from soriflow.audio import decode_audio
from soriflow.client import GatewayClient
from soriflow.server import ThreadedServer
from soriflow.v1 import audio_pb2, gateway_pb2
from tests.gateway.conftest import AwsWorld, gateway_settings
from tests.gateway.test_failure_paths import s3_event
from tests.gateway.test_gateway import finished_jobs, run, store_of, wait_until

pytestmark = pytest.mark.slow


def float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    """A 32-bit float WAV (format 3) of the samples as they are, NaN included."""
    data = samples.astype("<f4").tobytes()
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVE"
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def test_raw_pcm_and_s3_submissions_wait_and_list_by_state(
    aws: AwsWorld, api_gateway: ThreadedServer, speech_wav: Path
) -> None:
    gateway = api_gateway
    samples = decode_audio(speech_wav.read_bytes(), target_rate=8000).samples
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()  # headerless LINEAR16, 8 kHz
    uri = aws.upload("manual/clip.wav", speech_wav.read_bytes())  # not a trigger prefix: no event

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            raw = (
                await client.stub.SubmitJob(
                    gateway_pb2.SubmitJobRequest(
                        audio=audio_pb2.AudioInput(
                            content=pcm, encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hz=8000
                        ),
                        pipeline="transcribe",
                    )
                )
            ).job
            from_s3 = await client.submit_uri(uri, pipeline="transcribe", metadata={"case": "s3"})
            # Found broken only when decoded (NaN samples in a float WAV): a job that fails, with the reason.
            nan = np.zeros(8000, "<f4")
            nan[10] = np.nan
            broken = await client.submit_bytes(float_wav(nan), pipeline="transcribe")
            with pytest.raises(grpc.aio.AioRpcError) as cut:  # a WAV without its format: refused at once
                await client.submit_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage", pipeline="transcribe")
            assert cut.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            for job in (raw, from_s3):
                final = await client.wait(job.job_id, timeout=120)
                assert final.state == gateway_pb2.JOB_STATE_SUCCEEDED, final.error
                assert "front" in final.result.transcript.text.lower()
            assert raw.metadata["soriflow-encoding"] == "AUDIO_ENCODING_LINEAR16"
            assert raw.metadata["soriflow-sample-rate-hz"] == "8000"
            assert from_s3.source_uri == uri
            failed_job = await client.wait(broken.job_id, timeout=60)
            assert failed_job.state == gateway_pb2.JOB_STATE_FAILED
            assert "NaN" in failed_job.error

            failed = await client.list(state=gateway_pb2.JOB_STATE_FAILED)
            assert [j.job_id for j in failed.jobs] == [broken.job_id]
            succeeded = await client.list(state=gateway_pb2.JOB_STATE_SUCCEEDED)
            assert {j.job_id for j in succeeded.jobs} == {raw.job_id, from_s3.job_id}
            assert not (await client.list(state=gateway_pb2.JOB_STATE_RUNNING)).jobs

            with pytest.raises(grpc.aio.AioRpcError) as err:  # headerless without a rate cannot be decoded
                await client.stub.SubmitJob(
                    gateway_pb2.SubmitJobRequest(
                        audio=audio_pb2.AudioInput(content=pcm, encoding=audio_pb2.AUDIO_ENCODING_LINEAR16),
                        pipeline="transcribe",
                    )
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "set audio.sample_rate_hz" in (err.value.details() or "")

    run(api())


def test_a_notification_with_several_records_runs_each(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    keys = ["manual/one.wav", "manual/two.wav"]
    for key in keys:  # outside the notified prefixes: the only event is the one sent below
        aws.upload(key, speech_wav.read_bytes(), metadata={"soriflow-pipeline": "transcribe"})
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=s3_event(aws, *keys))
    gateway = start_gateway(gateway_settings(aws, tmp_path, stt_address=stt_service.address))
    jobs = finished_jobs(gateway, 2)
    assert sorted(j.source_uri.rsplit("/", 1)[1] for j in jobs) == ["one.wav", "two.wav"]
    assert {(j.state, j.runs) for j in jobs} == {("SUCCEEDED", 1)}
    wait_until(lambda: aws.queue_depth() == 0, 30, "the message to be deleted")
    assert aws.queue_depth(aws.dlq_url) == 0
    assert len(store_of(gateway).list_jobs(page_size=10)[0]) == 2
