"""Gateway overhead and throughput: S3 upload -> SQS -> gateway -> real STT -> outputs, measured in one run.

Overhead = (job time - time inside the stage service) / job time, where job
time runs from the gateway creating the job to the job's end, and the time
inside the service is what the STT server reports as its processing time.
The same ratio is also given end to end from the S3 upload (PutObject
returning), which adds the S3 -> SQS notification, the long-poll receive,
the object HEAD and the job's creation; overhead jobs run one at a time, so
no job waits behind another.

Throughput is jobs per second at gateway concurrency 1, 2 and 4, as ratios to
concurrency 1 on the same machine in the same run. The gateway only dispatches:
with the STT engine CPU-bound on the same few cores, more concurrent jobs
share the same CPU and throughput stays near 1.0x; it scales with stage
capacity (more STT replicas, a GPU), which the gateway's concurrency lets it
use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import subprocess
import sys
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


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"moto did not start on port {port}")


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
    endpoint: str,
    stt_address: str,
    audio: bytes,
    count: int,
    concurrency: int,
    workdir: Path,
    *,
    one_at_a_time: bool = False,
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
        uploaded: dict[str, dt.datetime] = {}  # source URI -> when PutObject returned

        def wait_for(n: int) -> list[Any]:
            while True:
                jobs, _ = store.list_jobs(page_size=count + 10)
                if len(jobs) >= n and all(j.terminal for j in jobs):
                    return list(jobs)
                time.sleep(0.05)

        for i in range(count):
            key = f"transcribe/{i:04d}.wav"
            w["s3"].put_object(Bucket=w["in"], Key=key, Body=audio)
            uploaded[f"s3://{w['in']}/{key}"] = dt.datetime.now(dt.UTC)
            if one_at_a_time:
                wait_for(i + 1)
        jobs = wait_for(count)
        wall = time.perf_counter() - started
        overheads, job_s, inside_s, e2e_s, intake_s, e2e_overheads = [], [], [], [], [], []
        for job in jobs:
            assert job.state == "SUCCEEDED", job.error
            [stage] = store.stages(job.id)
            inside = stt_pb2.RecognizeResponse.FromString(stage.result).processing_time_ms / 1000
            total = (job.ended_at - job.created_at).total_seconds()
            job_s.append(total)
            inside_s.append(inside)
            overheads.append((total - inside) / total)
            since_upload = (job.ended_at - uploaded[job.source_uri]).total_seconds()
            e2e_s.append(since_upload)
            intake_s.append((job.created_at - uploaded[job.source_uri]).total_seconds())
            e2e_overheads.append((since_upload - inside) / since_upload)
        # Baseline in the same run: the same output objects written again, one after another,
        # with the same S3 client settings. It tells the S3 round trips (which a deployment pays
        # to its S3) from the gateway's own work.
        s3 = w["s3"]
        put_s = []
        for job in jobs[:3]:
            objects = []
            for output in store.outputs(job.id):
                bucket, _, key = output.uri[5:].partition("/")
                objects.append((bucket, key, s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
            put_started = time.perf_counter()
            for bucket, key, body in objects:
                s3.put_object(Bucket=bucket, Key=f"baseline/{key}", Body=body, Metadata={"x": "1"})
            put_s.append(time.perf_counter() - put_started)
        outputs_put_s = statistics.median(put_s)
        own = [max(0.0, (t - i - outputs_put_s) / t) for t, i in zip(job_s, inside_s, strict=True)]
        return {
            "outputs_put_s": outputs_put_s,
            "own_overhead": statistics.median(own),
            "wall_s": wall,
            "jobs_per_s": count / wall,
            "overhead": statistics.median(overheads),
            "job_s": statistics.median(job_s),
            "inside_s": statistics.median(inside_s),
            "e2e_s": statistics.median(e2e_s),
            "intake_s": statistics.median(intake_s),
            "e2e_overhead": statistics.median(e2e_overheads),
        }
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=12, help="jobs per throughput batch")
    parser.add_argument("--overhead-jobs", type=int, default=5, help="jobs per overhead measurement")
    args = parser.parse_args()
    from soriflow.server import ThreadedServer
    from soriflow.stt.service import create_service as create_stt
    from soriflow.stt.settings import Settings as SttSettings
    from tests.conftest import free_port

    port = free_port()
    # S3/SQS in a process of its own, as in a deployment: in the gateway's process moto's request
    # handling would compete with the gateway for the GIL and be counted as gateway overhead.
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_port(port)
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
        read_uris=["s3://in-*/transcribe/"],  # each run's input bucket is in-<tag>
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
                r = run_batch(
                    endpoint, stt.address, audio, args.overhead_jobs, 1, workdir, one_at_a_time=True
                )
                figures[f"overhead_{name}"] = {
                    "audio_s": round((len(audio) - 44) / 32000, 1),
                    "job_s_median": round(r["job_s"], 3),
                    "inside_stt_s_median": round(r["inside_s"], 3),
                    "gateway_overhead_ratio": round(r["overhead"], 4),
                    "outputs_put_s_median": round(r["outputs_put_s"], 3),
                    "overhead_ratio_without_output_puts": round(r["own_overhead"], 4),
                }
                figures[f"from_upload_{name}"] = {
                    "upload_to_job_created_s_median": round(r["intake_s"], 3),
                    "upload_to_end_s_median": round(r["e2e_s"], 3),
                    "overhead_ratio": round(r["e2e_overhead"], 4),
                }
                print(
                    f"{name}: job {r['job_s']:.3f}s, inside stt {r['inside_s']:.3f}s, "
                    f"overhead {r['overhead']:.1%} ({r['own_overhead']:.1%} without the "
                    f"{r['outputs_put_s']:.3f}s of output PUTs); from the upload: {r['e2e_s']:.3f}s "
                    f"(S3 -> SQS -> job created {r['intake_s']:.3f}s), overhead {r['e2e_overhead']:.1%}"
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
            cores = os.cpu_count() or 1
            print(
                f"throughput is bounded by STT, which is CPU-bound on this machine's {cores} core(s): "
                "more concurrent jobs share the same CPU, so the ratios stay near 1.0x unless STT has "
                "spare capacity"
            )
    finally:
        stt.stop()
        moto.terminate()
        moto.wait(10)
    report(
        "gateway_overhead",
        figures,
        summary=(
            "Gateway overhead (job time outside the STT service / job time; target <= 5%) for a short "
            "and a longer recording through the transcribe pipeline (4 outputs to S3, SQLite store), "
            "one job at a time, S3/SQS (moto) in a process of its own; also from the S3 upload (adds "
            "S3 -> SQS -> receive -> job created), and without the time the same 4 output PUTs take "
            "when made directly (baseline in the same run; moto serves PUTs one at a time, so on the "
            "short clip they are most of the overhead). "
            f"Throughput at gateway concurrency 1/2/4 as ratios to concurrency 1, {args.jobs} jobs each, "
            "tiny.en STT on the same CPU: STT is CPU-bound, so on a 2-core machine the ratios stay near "
            "1.0x (concurrent jobs share the same cores); the gateway's concurrency pays off when the "
            "stage services have spare capacity (more replicas, a GPU)."
        ),
    )


if __name__ == "__main__":
    main()
