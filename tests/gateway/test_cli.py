"""`soriflow submit`, `watch`, `jobs`, `pipelines`, `cancel` against a running gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from soriflow.server import ThreadedServer

pytestmark = pytest.mark.slow


def soriflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soriflow.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_submit_watch_jobs_and_failures(
    tmp_path: Path, api_gateway: ThreadedServer, speech_wav: Path
) -> None:
    gateway = api_gateway
    env = os.environ | {"SORIFLOW_GATEWAY_ADDRESS": gateway.address, "COLUMNS": "200"}

    done = soriflow(
        "submit", str(speech_wav), "--pipeline", "transcribe", "--watch", "--meta", "user=kim", env=env
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0].strip()
    assert "front" in done.stdout.lower(), done.stdout
    assert "transcript.json" in done.stdout

    listing = soriflow("jobs", "--pipeline", "transcribe", env=env)
    assert listing.returncode == 0
    assert job_id in listing.stdout
    assert "SUCCEEDED" in listing.stdout
    assert job_id in soriflow("jobs", "--no-needs-review", env=env).stdout
    assert job_id not in soriflow("jobs", "--needs-review", env=env).stdout

    watched = soriflow("watch", job_id, "--json", env=env)
    assert watched.returncode == 0
    assert '"state": "JOB_STATE_SUCCEEDED"' in watched.stdout

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    failed = soriflow("submit", str(broken), "--pipeline", "transcribe", "--watch", env=env)
    assert failed.returncode == 1
    assert "INVALID_ARGUMENT" in failed.stderr

    refused = soriflow("submit", str(tmp_path / "missing.wav"), env=env)
    assert refused.returncode != 0
    assert "is not a file" in refused.stderr

    unknown = soriflow("submit", str(speech_wav), "--pipeline", "nope", env=env)
    assert unknown.returncode == 1
    assert "unknown pipeline 'nope'" in unknown.stderr

    pipelines = soriflow("pipelines", env=env)
    assert "call-summary" in pipelines.stdout
    assert "reply?" in pipelines.stdout, "optional stages are marked"

    cancel = soriflow("cancel", job_id, env=env)
    assert cancel.returncode == 1
    assert "FAILED_PRECONDITION" in cancel.stderr
