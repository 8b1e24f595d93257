"""Fixtures shared by every test package: real moto S3/SQS/SNS, PostgreSQL, test data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ALSA_DIR = Path("/usr/share/sounds/alsa")
POSTGRES_URL = os.environ.get("SORIFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def speech_wav() -> Path:
    """A real English speech clip ("front center"), from Debian's alsa-utils."""
    path = ALSA_DIR / "Front_Center.wav"
    if not path.exists():
        pytest.fail("alsa-utils speech clips are missing: apt-get install alsa-utils (make setup does)")
    return path


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg is missing: apt-get install ffmpeg (make setup does)")
    return path


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server in server mode on loopback: boto3 talks the real AWS wire protocol to it."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Points every Soriflow settings object of the test at the moto server."""
    monkeypatch.setenv("SORIFLOW_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return moto_endpoint


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL server of the machine (CI starts it); fails loudly when absent."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc}); start it or set "
            "SORIFLOW_TEST_POSTGRES_URL"
        )
    return POSTGRES_URL


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps tests from writing into the user's cache, while sharing one cache across the session."""
    if "SORIFLOW_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("SORIFLOW_CACHE_DIR", str(_session_cache(tmp_path_factory)))


_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("soriflow-cache"))
    return _CACHE[0]


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    """Runs a command, failing the test with its stderr when it fails."""
    result = subprocess.run(cmd, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        pytest.fail(
            f"{cmd[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')[-2000:]}"
        )
    return result
