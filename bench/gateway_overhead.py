"""Gateway overhead and throughput: S3 upload -> SQS -> gateway -> real STT -> outputs, measured in one run.

Overhead = (job time - time inside the stage service) / job time, where job
time runs from the gateway creating the job to the job's end, and the time
inside the service is what the STT server reports as its processing time.
Throughput is jobs per second at gateway concurrency 1, 2 and 4, as ratios to
concurrency 1 on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._common import report

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
logging.getLogger("werkzeug").setLevel(logging.ERROR)


def speech(text: str) -> bytes:
    from soriflow.audio import decode_audio, encode_wav_pcm16

    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "--stdout", text], check=True, capture_output=True
    ).stdout
    return encode_wav_pcm16(decode_audio(wav, target_rate=16000).samples, 16000)


def world(endpoint: str) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    tag = uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=f"in-{tag}")
    s3.create_bucket(Bucket=f"out-{tag}")
    queue = sqs.create_queue(QueueName=f"q-{tag}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=f"in-{tag}",
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "transcribe/"}]}},
                }
            ]
        },
    )
    return {"s3": s3, "queue": queue, "in": f"in-{tag}", "out": f"out-{tag}"}


def run_batch(
    endpoint: str, stt_address: str, audio: bytes, count: int, concurrency: int, workdir: Path
) -> dict[str, Any]:
    from soriflow.gateway.service import create_service
    from soriflow.gateway.settings import Settings
    from soriflow.server import ThreadedServer
    from soriflow.v1 import stt_pb2

    w = world(endpoint)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        log_level="WARNING",
        s3_endpoint_url=endpoint,
        stt_address=stt_address,
        gateway_queue_url=w["queue"],
        gateway_output_uri=f"s3://{w['out']}/results/",
        gateway_input_uris=[f"s3://{w['in']}/transcribe/"],
        gateway_database_url=f"sqlite:///{workdir / f'jobs-{uuid.uuid4().hex[:6]}.db'}",
        gateway_concurrency=concurrency,
        gateway_receive_wait_s=1,
    )
    gateway = ThreadedServer(lambda: create_service(settings), name="gateway").start()
    try:
        store = gateway.service.store
        started = time.perf_counter()
        for i in range(count):
            w["s3"].put_object(Bucket=w["in"], Key=f"transcribe/{i:04d}.wav", Body=audio)
        while True:
            jobs, _ = store.list_jobs(page_size=count + 10)
            if len(jobs) >= count and all(j.terminal for j in jobs):
                break
            time.sleep(0.05)
        wall = time.perf_counter() - started
        overheads, job_s, inside_s = [], [], []
        for job in jobs:
            assert job.state == "SUCCEEDED", job.error
            [stage] = store.stages(job.id)
            server_ms = stt_pb2.RecognizeResponse.FromString(stage.result).processing_time_ms
            total = (job.ended_at - job.created_at).total_seconds()
            job_s.append(total)
            inside_s.append(server_ms / 1000)
            overheads.append((total - server_ms / 1000) / total)
        return {
            "wall_s": wall,
            "jobs_per_s": count / wall,
            "overhead": statistics.median(overheads),
            "job_s": statistics.median(job_s),
            "inside_s": statistics.median(inside_s),
        }
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=12, help="jobs per throughput batch")
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    from soriflow.server import ThreadedServer
    from soriflow.stt.service import create_service as create_stt
    from soriflow.stt.settings import Settings as SttSettings
    from tests.conftest import free_port

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    stt_settings = SttSettings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        log_level="WARNING",
        stt_model="tiny.en",
        stt_device="cpu",
        s3_endpoint_url=endpoint,
        stt_max_waiting=500,
    )
    stt = ThreadedServer(lambda: create_stt(stt_settings), name="stt").start()
    short = speech("Please check whether my insurance covers the repair.")
    long = speech(
        " ".join(["The quick brown fox jumps over the lazy dog, and then it runs into the woods."] * 6)
    )
    figures: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            for name, audio in (("short_clip", short), ("long_clip", long)):
                r = run_batch(endpoint, stt.address, audio, 5, 1, workdir)
                figures[f"overhead_{name}"] = {
                    "audio_s": round((len(audio) - 44) / 32000, 1),
                    "job_s_median": round(r["job_s"], 3),
                    "inside_stt_s_median": round(r["inside_s"], 3),
                    "gateway_overhead_ratio": round(r["overhead"], 4),
                }
                print(
                    f"{name}: job {r['job_s']:.3f}s, inside stt {r['inside_s']:.3f}s, "
                    f"overhead {r['overhead']:.1%}"
                )
            base = None
            for concurrency in (1, 2, 4):
                r = run_batch(endpoint, stt.address, short, args.jobs, concurrency, workdir)
                base = base or r["jobs_per_s"]
                figures[f"throughput_concurrency_{concurrency}"] = {
                    "jobs_per_s": round(r["jobs_per_s"], 3),
                    "ratio_to_concurrency_1": round(r["jobs_per_s"] / base, 3),
                }
                print(
                    f"concurrency {concurrency}: {r['jobs_per_s']:.2f} jobs/s ({r['jobs_per_s'] / base:.2f}x)"
                )
    finally:
        stt.stop()
        moto.stop()
    report(
        "gateway_overhead",
        figures,
        summary=(
            "Gateway overhead (job time outside the STT service / job time; target <= 5%) for a short "
            "and a longer recording through the transcribe pipeline (4 outputs to S3, SQLite store), and "
            f"throughput at gateway concurrency 1/2/4 as ratios to concurrency 1, {args.jobs} jobs each, "
            "tiny.en STT on the same CPU."
        ),
    )


if __name__ == "__main__":
    main()
