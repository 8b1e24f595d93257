"""Gateway overhead and throughput: S3 upload -> SQS -> gateway -> real STT -> outputs; before/after.

Overhead = (job time - time inside the stage service) / job time, where job
time runs from the gateway creating the job to the job's end, and the time
inside the service is what the STT server reports as its processing time.
Where it goes, per job (medians): before the call (claim, stage rows), the
call outside STT's own timer (gRPC, STT's request handling), and after the
call (the four output PUTs to S3, their records, the stage's completion, the
job's end). The same ratio is also given end to end from the S3 upload
(PutObject returning), which adds the S3 -> SQS notification, the long-poll
receive, the object HEAD and the job's creation; overhead jobs run one at a
time, so no job waits behind another.

Before/after: the same jobs also run on the gateway of `--baseline-ref` (by
default the first release), taken from git into a temporary folder and laid
out as the installed package is (setup.py's mapping). Every gateway variant
runs in a process of its own against the same moto and STT, round by round in
turns, so the machine's load falls on each alike; `now_sqlite_<other>` is this
code with the other SQLite `synchronous` setting, to show what that setting
alone is worth.

Throughput is jobs per second at gateway concurrency 1, 2 and 4 (this code),
as ratios to concurrency 1 in the same run. The gateway only dispatches: with
the STT engine CPU-bound on the same few cores, more concurrent jobs share the
same CPU and throughput stays near 1.0x; it scales with stage capacity (more
STT replicas, a GPU), which the gateway's concurrency lets it use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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

ROOT = Path(__file__).resolve().parent.parent
#: The gateway before the job-core rework: the first release.
BASELINE_REF = "c3d7f65"
#: setup.py's folders -> import names, to lay out a source tree from git as it is installed.
LAYOUT = {
    "soriflow/stt": "services/stt",
    "soriflow/scoring": "services/scoring",
    "soriflow/summarizer": "services/summarizer",
    "soriflow/tts": "services/tts",
    "soriflow/gateway": "gateway",
}


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"moto did not start on port {port}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def speech(text: str) -> bytes:
    from soriflow.audio import decode_audio, encode_wav_pcm16

    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "--stdout", text], check=True, capture_output=True
    ).stdout
    return encode_wav_pcm16(decode_audio(wav, target_rate=16000).samples, 16000)


def baseline_tree(ref: str, workdir: Path) -> Path | None:
    """The source of `ref`, laid out as the installed `soriflow` package (plus this bench)."""
    source = workdir / "baseline-src"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=False)
    if archive.returncode != 0:
        print(f"no baseline: git archive {ref} failed: {archive.stderr.decode().strip()}")
        return None
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    layout = workdir / "baseline"
    package = layout / "soriflow"
    package.mkdir(parents=True)
    for entry in (source / "soriflow").iterdir():
        (package / entry.name).symlink_to(entry)
    for alias, real in LAYOUT.items():
        (layout / alias).symlink_to(source / real)
    (layout / "bench").symlink_to(ROOT / "bench")  # the measuring code is this run's
    return layout


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


def run_batch(spec: dict[str, Any]) -> dict[str, Any]:
    """One gateway (of whichever source tree this process imports) running `count` jobs."""
    from soriflow.gateway.service import create_service
    from soriflow.gateway.settings import Settings
    from soriflow.server import ThreadedServer
    from soriflow.v1 import stt_pb2

    endpoint, count = spec["endpoint"], spec["count"]
    audio = Path(spec["audio"]).read_bytes()
    w = world(endpoint)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        log_level="WARNING",
        s3_endpoint_url=endpoint,
        stt_address=spec["stt_address"],
        gateway_queue_url=w["queue"],
        gateway_output_uri=f"s3://{w['out']}/results/",
        gateway_input_uris=[f"s3://{w['in']}/transcribe/"],
        gateway_database_url=f"sqlite:///{Path(spec['workdir']) / f'jobs-{uuid.uuid4().hex[:6]}.db'}",
        gateway_concurrency=spec["concurrency"],
        gateway_receive_wait_s=1,
        **spec.get("settings", {}),
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
            if spec["one_at_a_time"]:
                wait_for(i + 1)
        jobs = wait_for(count)
        wall = time.perf_counter() - started
        per_job = []
        for job in jobs:
            assert job.state == "SUCCEEDED", job.error
            [stage] = store.stages(job.id)
            inside_s = stt_pb2.RecognizeResponse.FromString(stage.result).processing_time_ms / 1000
            total_s = (job.ended_at - job.created_at).total_seconds()
            call_start = stage.started_at
            call_end = call_start + dt.timedelta(milliseconds=stage.duration_ms)
            since_upload = (job.ended_at - uploaded[job.source_uri]).total_seconds()
            per_job.append(
                {
                    "job_s": total_s,
                    "inside_s": inside_s,
                    "overhead": (total_s - inside_s) / total_s,
                    "before_call_ms": (call_start - job.created_at).total_seconds() * 1000,
                    "call_outside_stt_ms": stage.duration_ms - inside_s * 1000,
                    "after_call_ms": (job.ended_at - call_end).total_seconds() * 1000,
                    "e2e_s": since_upload,
                    "intake_s": (job.created_at - uploaded[job.source_uri]).total_seconds(),
                    "e2e_overhead": (since_upload - inside_s) / since_upload,
                    "events": len(store.events_after(job.id, 0)),
                }
            )
        # The same four output objects written again directly, one after another: what the S3
        # round trips alone cost (a deployment pays them to its S3), measured in the same run,
        # sent the way this gateway sends them.
        try:
            from soriflow.gateway.outputs import small_puts_in_one_trip

            small_puts_in_one_trip(w["s3"])
        except ImportError:  # the first release sent every PUT with Expect: 100-continue
            pass
        put_s = []
        for job in jobs[:3]:
            objects = []
            for output in store.outputs(job.id):
                bucket, _, key = output.uri[5:].partition("/")
                objects.append((bucket, key, w["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()))
            put_started = time.perf_counter()
            for bucket, key, body in objects:
                w["s3"].put_object(Bucket=bucket, Key=f"baseline/{key}", Body=body, Metadata={"x": "1"})
            put_s.append(time.perf_counter() - put_started)
        return {"jobs": per_job, "wall_s": wall, "jobs_per_s": count / wall, "outputs_put_s": put_s}
    finally:
        gateway.stop()


def child(spec: dict[str, Any], tree: Path | None) -> dict[str, Any]:
    """Runs `run_batch` in a process importing `tree` (None: this checkout)."""
    env = dict(os.environ)
    cwd = str(ROOT)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
        cwd = str(tree)  # so that `import soriflow` finds the laid-out tree, not this checkout's folder
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gateway_overhead", "--child", json.dumps(spec)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def summarize(jobs: list[dict[str, Any]], puts: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the overhead figures, where the time goes) of one variant's jobs, as medians."""

    def med(key: str) -> float:
        return statistics.median(j[key] for j in jobs)

    overhead = {
        "jobs": len(jobs),
        "job_s": round(med("job_s"), 4),
        "inside_stt_s": round(med("inside_s"), 4),
        "gateway_overhead_ratio": round(med("overhead"), 4),
        "from_upload_overhead_ratio": round(med("e2e_overhead"), 4),
        "upload_to_job_created_s": round(med("intake_s"), 4),
    }
    put_s = statistics.median(puts)
    # The gateway's own share: the job's time outside STT less what the same four PUTs cost when
    # made directly (the S3 endpoint's latency, which a deployment pays to its own S3 whatever the
    # gateway does; moto serves them one at a time, so they cost the same side by side).
    overhead["without_output_puts_ratio"] = round(
        statistics.median((j["job_s"] - j["inside_s"] - put_s) / j["job_s"] for j in jobs), 4
    )
    where = {
        "before_call_ms": round(med("before_call_ms"), 1),
        "call_outside_stt_ms": round(med("call_outside_stt_ms"), 1),
        "after_call_ms": round(med("after_call_ms"), 1),
        "outputs_put_directly_ms": round(put_s * 1000, 1),
        "events_per_job": round(med("events")),
    }
    return overhead, where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=8, help="jobs per throughput batch")
    parser.add_argument("--overhead-jobs", type=int, default=4, help="short-clip jobs per round and variant")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of short-clip jobs, variants in turns")
    parser.add_argument("--long-jobs", type=int, default=2, help="long-clip jobs per variant")
    parser.add_argument(
        "--baseline-ref", default=BASELINE_REF, help="git revision of the 'before' gateway ('' for none)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_batch(json.loads(args.child))))
        return
    from soriflow.gateway.settings import Settings as GatewaySettings
    from soriflow.server import ThreadedServer
    from soriflow.stt.service import create_service as create_stt
    from soriflow.stt.settings import Settings as SttSettings

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
    default_sync = GatewaySettings.model_fields["gateway_sqlite_synchronous"].default
    other_sync = "normal" if default_sync == "full" else "full"
    figures: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            variants: dict[str, tuple[Path | None, dict[str, Any]]] = {}
            if args.baseline_ref:
                tree = baseline_tree(args.baseline_ref, workdir)
                if tree is not None:
                    variants["first_release"] = (tree, {})
            variants["now"] = (None, {})
            variants[f"now_sqlite_{other_sync}"] = (None, {"gateway_sqlite_synchronous": other_sync})
            clips = {
                "short_clip": speech("Please check whether my insurance covers the repair."),
                "long_clip": speech(
                    " ".join(
                        ["The quick brown fox jumps over the lazy dog, and then it runs into the woods."] * 6
                    )
                ),
            }
            base = {"endpoint": endpoint, "stt_address": stt.address, "workdir": str(workdir)}
            for clip, audio in clips.items():
                path = workdir / f"{clip}.wav"
                path.write_bytes(audio)
                spec = base | {"audio": str(path), "concurrency": 1, "one_at_a_time": True}
                rounds, count = (
                    (args.rounds, args.overhead_jobs) if clip == "short_clip" else (1, args.long_jobs)
                )
                jobs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
                puts: dict[str, list[float]] = {name: [] for name in variants}
                for number in range(rounds):
                    names = list(variants)
                    order = names if number % 2 == 0 else names[::-1]  # who goes first alternates
                    for name in order:
                        tree, settings = variants[name]
                        r = child(spec | {"count": count, "settings": settings}, tree)
                        jobs[name] += r["jobs"]
                        puts[name] += r["outputs_put_s"]
                figures[f"overhead_{clip}"] = {"audio_s": round((len(audio) - 44) / 32000, 1)}
                figures[f"where_the_time_goes_{clip}"] = {}
                for name in variants:
                    o, w = summarize(jobs[name], puts[name])
                    figures[f"overhead_{clip}"][name] = o
                    figures[f"where_the_time_goes_{clip}"][name] = w
                    print(
                        f"{clip} {name}: job {o['job_s']:.3f}s, inside stt {o['inside_stt_s']:.3f}s, "
                        f"overhead {o['gateway_overhead_ratio']:.1%} (before the call "
                        f"{w['before_call_ms']:.1f} ms, call outside STT's timer "
                        f"{w['call_outside_stt_ms']:.1f} ms, after the call {w['after_call_ms']:.1f} ms; "
                        f"the 4 output PUTs made directly: {w['outputs_put_directly_ms']:.1f} ms); "
                        f"{w['events_per_job']} events; "
                        f"from the upload {o['from_upload_overhead_ratio']:.1%}; "
                        f"without the output PUTs {o['without_output_puts_ratio']:.1%}"
                    )
            short = figures["overhead_short_clip"]
            if "first_release" in short:
                ratio = (
                    short["now"]["gateway_overhead_ratio"] / short["first_release"]["gateway_overhead_ratio"]
                )
                figures["short_clip_overhead_now_over_first_release"] = round(ratio, 3)
                print(f"short clip: overhead now / first release = {ratio:.2f}")
            throughput_base = None
            spec = base | {
                "audio": str(workdir / "short_clip.wav"),
                "one_at_a_time": False,
                "count": args.jobs,
            }
            for concurrency in (1, 2, 4):
                r = child(spec | {"concurrency": concurrency}, None)
                throughput_base = throughput_base or r["jobs_per_s"]
                figures[f"throughput_concurrency_{concurrency}"] = {
                    "jobs_per_s": round(r["jobs_per_s"], 3),
                    "ratio_to_concurrency_1": round(r["jobs_per_s"] / throughput_base, 3),
                }
                print(
                    f"concurrency {concurrency}: {r['jobs_per_s']:.2f} jobs/s "
                    f"({r['jobs_per_s'] / throughput_base:.2f}x)"
                )
    finally:
        stt.stop()
        moto.terminate()
        moto.wait(10)
    report(
        "gateway_overhead",
        figures,
        summary=(
            "Gateway overhead (job time outside the STT service / job time; target <= 3% on the short "
            "clip) through the transcribe pipeline (4 outputs to S3, SQLite store), one job at a time, "
            "S3/SQS (moto) and each gateway in processes of their own: `first_release` is the gateway "
            f"of {args.baseline_ref or '(none)'} run in the same run, in turns with `now` (this code, "
            f"default settings) and `now_sqlite_{other_sync}` (this code with SQLite synchronous="
            f"{other_sync}). Per job: time before the STT call, the call outside STT's own timer "
            "(gRPC, not the gateway's work), and after the call (4 output PUTs, records, the job's end); "
            "the same 4 PUTs made directly are the S3 share of it. Throughput at gateway concurrency "
            f"1/2/4 as ratios to concurrency 1, {args.jobs} jobs each, tiny.en STT on the same CPU: STT "
            "is CPU-bound, so on a 2-core machine the ratios stay near 1.0x."
        ),
    )


if __name__ == "__main__":
    main()
