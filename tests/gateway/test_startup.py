"""Starting the gateway when its job store refuses connections: retries, one JSON line, exit 69."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.conftest import free_port


def test_a_job_store_refusing_connections_ends_the_start_cleanly() -> None:
    env = os.environ | {
        # Nothing listens on that port: PostgreSQL "refusing connections", as when it is down.
        "SORIFLOW_GATEWAY_DATABASE_URL": f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/jobs",
        "SORIFLOW_GATEWAY_DATABASE_WAIT_S": "3",
        "SORIFLOW_PORT": str(free_port()),
        "SORIFLOW_METRICS_PORT": "",
        "SORIFLOW_LOG_FORMAT": "json",
    }
    env.pop("SORIFLOW_GATEWAY_QUEUE_URL", None)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "soriflow.cli.main", "serve", "gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 69, proc.stderr  # EX_UNAVAILABLE: a dependency is down, not a bug
    assert "Traceback" not in proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]  # JSON, every line
    [fatal] = [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert fatal["message"].startswith("gateway cannot start: cannot reach the job store at postgresql")
    assert "Connection refused" in fatal["message"]
    assert "SORIFLOW_GATEWAY_DATABASE_URL" in fatal["message"]
    assert fatal["code"] == "UNAVAILABLE"
    retries = [r for r in records if "retrying in" in r["message"]]
    assert retries, "it waited for the database with backoff before giving up"
    assert "s3cret" not in proc.stderr, "the password stays out of the logs"
    assert elapsed >= 3
