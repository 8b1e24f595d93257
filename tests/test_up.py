"""`soriflow up`: the whole stack as local processes, ready line, clean stop, dead services reported."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import psutil
import psycopg
import pytest

from soriflow.client import GatewayClient, check_health, open_channel
from soriflow.stack import HTTP_PORTS, PORTS
from soriflow.v1 import gateway_pb2
from tests.test_demo import _ports_free

pytestmark = pytest.mark.slow


def start_up(workdir: Path, aws_port: int, *extra: str) -> subprocess.Popen[str]:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("SORIFLOW_S3_ENDPOINT_URL", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "soriflow.cli.main",
            "up",
            "--aws-port",
            str(aws_port),
            "--workdir",
            str(workdir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} not printed within {timeout}s:\n{''.join(seen)}")


async def _health(address: str) -> str:
    async with open_channel(address) as channel:
        return await check_health(channel)


def test_up_reports_ready_serves_and_stops_cleanly(tmp_path: Path, postgres_url: str) -> None:
    """`up --database postgresql://...`: the stack, its queue with a dead-letter queue, a job end to end."""
    import asyncio

    if not _ports_free():
        pytest.fail("the stack's fixed ports are taken: is `soriflow up` already running?")
    proc = start_up(tmp_path / "stack", 4577, "--database", postgres_url)
    try:
        printed = read_until(proc, "ready", 600)
        printed += read_until(proc, "try:", 10)
        assert "http://127.0.0.1:4577" in printed
        for name, port in PORTS.items():
            assert f"127.0.0.1:{port}" in printed
            assert asyncio.run(_health(f"127.0.0.1:{port}")) == "SERVING", name
        page = f"http://127.0.0.1:{HTTP_PORTS['live']}/"
        assert f"live captions: open {page}" in printed
        with urllib.request.urlopen(page, timeout=10) as response:  # the page the URL names
            assert b"Live captions" in response.read()
        aws = {
            "endpoint_url": "http://127.0.0.1:4577",
            "region_name": "us-east-1",
            "aws_access_key_id": "any",
            "aws_secret_access_key": "any",
        }
        s3, sqs = boto3.client("s3", **aws), boto3.client("sqs", **aws)
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= {"soriflow-input", "soriflow-output"}
        queue = sqs.get_queue_url(QueueName="soriflow-jobs")["QueueUrl"]
        redrive = json.loads(
            sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])["Attributes"][
                "RedrivePolicy"
            ]
        )
        assert redrive["deadLetterTargetArn"].endswith(":soriflow-jobs-dlq")
        assert int(redrive["maxReceiveCount"]) > 1

        job = asyncio.run(_transcribe(espeak_wav("the quick brown fox")))
        assert job.state == gateway_pb2.JOB_STATE_SUCCEEDED, job.error
        assert "fox" in job.result.transcript.text.lower()
        # The generation pipelines run on the stack: the bundled SmolLM2 writes the picture prompt
        # and the local image stand-in draws it.
        assert "local stand-in for the OpenAI Images and Bedrock APIs" in printed
        picture = asyncio.run(_transcribe(espeak_wav("a red kite over green hills"), "subtitle-picture"))
        assert picture.state == gateway_pb2.JOB_STATE_SUCCEEDED, picture.error
        assert {"subtitles.srt", "picture-prompt.txt", "picture.png"} <= {o.name for o in picture.outputs}
        assert [i.engine for i in picture.result.images] == ["openai"]
        stand_in = f"http://127.0.0.1:{HTTP_PORTS['images']}/healthz"
        with urllib.request.urlopen(stand_in, timeout=5) as response:
            assert response.status == 200
        with psycopg.connect(postgres_url) as conn:
            row = conn.execute("select state from jobs where id = %s", (job.job_id,)).fetchone()
        assert row is not None, "the job is in PostgreSQL, not a SQLite file"

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert "stopped" in rest
        assert _ports_free(), "every service process is gone"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def espeak_wav(text: str) -> bytes:
    return subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout


async def _transcribe(wav: bytes, pipeline: str = "transcribe") -> Any:
    async with GatewayClient(f"127.0.0.1:{PORTS['gateway']}") as gateway:
        job = await gateway.submit_bytes(wav, filename="fox.wav", pipeline=pipeline)
        return await gateway.wait(job.job_id, timeout=300)


def test_a_service_that_dies_is_reported(tmp_path: Path) -> None:
    if not _ports_free():
        pytest.fail("the stack's fixed ports are taken: is `soriflow up` already running?")
    proc = start_up(tmp_path / "stack", 4578)
    try:
        read_until(proc, "ready", 600)
        [tts] = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "serve" in p.cmdline() and "tts" in p.cmdline()
        ]
        tts.kill()
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert "tts exited unexpectedly" in rest
        assert _ports_free(), "the other services were stopped too"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stack_children(proc: subprocess.Popen[str], count: int, timeout: float) -> list[psutil.Process]:
    """The `soriflow serve` processes `up` has started, once all `count` exist."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = [p for p in psutil.Process(proc.pid).children(recursive=True) if "serve" in p.cmdline()]
        if len(children) == count:
            return children
        time.sleep(0.2)
    raise AssertionError(f"expected {count} services to be started")


def test_sigterm_while_models_load_stops_at_once(tmp_path: Path) -> None:
    if not _ports_free():
        pytest.fail("the stack's fixed ports are taken: is `soriflow up` already running?")
    proc = start_up(tmp_path / "stack", 4577)
    try:
        read_until(proc, "starting moto", 60)
        children = _stack_children(proc, len(PORTS) + len(HTTP_PORTS), 60)
        proc.send_signal(signal.SIGTERM)  # models are still loading: no "ready" yet
        rest, _ = proc.communicate(timeout=60)
        assert "stack ready" not in rest
        assert "interrupted" in rest, rest
        assert "stopped" in rest, rest
        assert proc.returncode == 0
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
        assert _ports_free()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_services_exit_when_up_is_killed_outright(tmp_path: Path) -> None:
    """SIGKILL (an OOM kill, a CI timeout) leaves `up` no chance to clean up; the services go anyway."""
    if not _ports_free():
        pytest.fail("the stack's fixed ports are taken: is `soriflow up` already running?")
    proc = start_up(tmp_path / "stack", 4578)
    children: list[psutil.Process] = []
    try:
        read_until(proc, "starting moto", 60)
        children = _stack_children(proc, len(PORTS) + len(HTTP_PORTS), 60)
        proc.kill()
        proc.wait()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], "services outlived the stack that started them"
    finally:
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
