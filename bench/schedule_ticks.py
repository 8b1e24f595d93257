"""Schedules: how promptly a tick becomes a running job, with one gateway replica and with two.

A one-second schedule of an image-only pipeline (the local image stand-in, a
64x64 picture) runs for `--ticks` ticks on one replica, then another schedule
on two replicas sharing the job store. Per tick: `fire` is the time from the
tick to its job's record (the replica woke, took the lease, planned, created
the job with its dedupe key), `start` to the job's claim. The figure that
matters is the ratio two replicas / one in the same run: the lease and the
unique tick key are what make two replicas fire once, and they should cost
nothing noticeable. `jobs_per_tick` must be 1.0 and `missed` 0.

Job store: a SQLite file (default; both replicas in this process share it) or
`--database postgresql://...`, as production replicas share one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._common import median, percentile, report

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

PIPELINE = """
name: {name}
schedules:
  - cron: "* * * * * *"
stages:
  - name: picture
    uses: image.generate
    with: {{prompt: "tick", model: stand-in, size: 64x64, outputs: [picture.png]}}
"""


def run_phase(
    *, replicas: int, ticks: int, database: str, endpoint: str, images: str, workdir: Path
) -> dict[str, Any]:
    from soriflow.gateway.schedules import SCHEDULE_KEY, TICK_KEY
    from soriflow.gateway.service import create_service
    from soriflow.gateway.settings import Settings
    from soriflow.gateway.store import JobStore
    from soriflow.server import ThreadedServer

    name = f"bench-{replicas}-{uuid.uuid4().hex[:6]}"
    pipelines = workdir / f"{name}.yaml"
    pipelines.write_text(PIPELINE.format(name=name))
    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        s3_endpoint_url=endpoint,
        gateway_queue_url=None,
        gateway_output_uri="s3://bench-out/results/",
        gateway_submissions_uri="s3://bench-in/submissions/",
        gateway_database_url=database,
        gateway_pipelines_file=str(pipelines),
        gateway_schedule_poll_s=1,
        image_engine="openai",
        image_openai_base_url=f"{images}/v1",
        image_openai_api_key="bench",
    )
    servers = [
        ThreadedServer(lambda: create_service(settings), name=f"gateway-{i}").start() for i in range(replicas)
    ]
    store = JobStore(database)
    try:
        deadline = time.monotonic() + ticks * 3 + 30
        while time.monotonic() < deadline:
            jobs, _ = store.list_jobs(page_size=1000, metadata={SCHEDULE_KEY: name})
            if len(jobs) >= ticks + 1 and all(j.started_at for j in jobs):
                break
            time.sleep(0.5)
    finally:
        for server in servers:
            server.stop(grace=5)
    jobs, _ = store.list_jobs(page_size=1000, metadata={SCHEDULE_KEY: name})
    store.close()
    jobs = sorted(jobs, key=lambda j: j.metadata[TICK_KEY])[1:]  # the first tick comes while starting
    tick_times = [dt.datetime.fromisoformat(j.metadata[TICK_KEY]) for j in jobs]
    span = round((tick_times[-1] - tick_times[0]).total_seconds()) + 1 if tick_times else 0
    fire = [(j.created_at - t).total_seconds() * 1000 for j, t in zip(jobs, tick_times, strict=True)]
    start = [
        (j.started_at - t).total_seconds() * 1000
        for j, t in zip(jobs, tick_times, strict=True)
        if j.started_at is not None
    ]
    return {
        "ticks": len(jobs),
        "jobs_per_tick": len(jobs) / len(set(tick_times)) if jobs else 0.0,
        "missed": span - len(set(tick_times)),
        "fire_ms_median": median(fire),
        "fire_ms_p95": percentile(fire, 95),
        "start_ms_median": median(start),
        "start_ms_p95": percentile(start, 95),
        "succeeded": sum(1 for j in jobs if j.state == "SUCCEEDED"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--database", default="", help="postgresql://... (default: a SQLite file)")
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from soriflow.gateway.images.local import LocalImageServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for bucket in ("bench-in", "bench-out"):
        s3.create_bucket(Bucket=bucket)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalImageServer() as images:
        database = args.database or f"sqlite:///{Path(tmp) / 'jobs.db'}"
        for replicas in (1, 2):
            figures[f"replicas_{replicas}"] = run_phase(
                replicas=replicas,
                ticks=args.ticks,
                database=database,
                endpoint=endpoint,
                images=images.url,
                workdir=Path(tmp),
            )
            print(replicas, figures[f"replicas_{replicas}"], flush=True)
    moto.stop()
    one, two = figures["replicas_1"], figures["replicas_2"]
    figures["fire_ratio_two_to_one"] = two["fire_ms_median"] / one["fire_ms_median"]
    figures["start_ratio_two_to_one"] = two["start_ms_median"] / one["start_ms_median"]
    figures["store"] = "postgresql" if args.database else "sqlite"
    report(
        "schedule_ticks",
        figures,
        summary=(
            "A one-second schedule (image-only pipeline, local stand-in): time from each tick to its "
            "job's record (`fire`) and claim (`start`), one gateway replica then two sharing the job "
            f"store ({figures['store']}). Two replicas fire each tick once (`jobs_per_tick` 1.0, "
            f"`missed` 0) at {figures['fire_ratio_two_to_one']:.2f}x the median delay of one."
        ),
    )


if __name__ == "__main__":
    main()
