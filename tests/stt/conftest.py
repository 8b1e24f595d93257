"""Fixtures of the STT tests: one real tiny.en server per module, real speech clips."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from soriflow.client import open_channel
from soriflow.server import Server, running
from soriflow.stt.service import create_service
from soriflow.stt.settings import Settings
from soriflow.v1 import stt_pb2_grpc

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ALSA = Path("/usr/share/sounds/alsa")
#: The one S3 location the test servers may read for a request (SORIFLOW_READ_URIS).
READ_URI = "s3://calls/in/"


def stt_settings(**overrides: Any) -> Settings:
    """Loopback settings for a test server (no metrics port, text logs)."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": None,
        "log_format": "text",
        "stt_model": "tiny.en",
        "stt_device": "cpu",
    }
    return Settings(**(base | overrides))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stt_server(moto_endpoint: str) -> AsyncIterator[Server]:
    """A real STT server with the bundled tiny.en model (S3 on moto), shared by a test module."""
    settings = stt_settings(
        stt_max_concurrency=1,
        stt_max_waiting=4,
        s3_endpoint_url=moto_endpoint,
        read_uris=[READ_URI],
    )
    async with running(create_service(settings)) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stt_stub(stt_server: Server) -> AsyncIterator[stt_pb2_grpc.SpeechToTextServiceStub]:
    async with open_channel(stt_server.address) as channel:
        yield stt_pb2_grpc.SpeechToTextServiceStub(channel)
