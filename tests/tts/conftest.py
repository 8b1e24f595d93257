"""Fixtures of the TTS tests: real servers on loopback (espeak-ng + piper; Google against a fake)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from soriflow.client import open_channel
from soriflow.server import Server, running
from soriflow.tts.service import create_service
from soriflow.tts.settings import Settings
from soriflow.v1 import tts_pb2_grpc
from tests.tts.fake_google import FakeGoogle

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tts_settings(**overrides: Any) -> Settings:
    """Loopback settings for a test server (no metrics port, text logs)."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": None,
        "log_format": "text",
        "tts_engines": ["espeak-ng", "piper"],
        "tts_default_engine": "espeak-ng",
    }
    return Settings(**(base | overrides))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def tts_server() -> AsyncIterator[Server]:
    """A real TTS server with espeak-ng and piper, shared by a test module."""
    async with running(create_service(tts_settings())) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def tts_stub(tts_server: Server) -> AsyncIterator[tts_pb2_grpc.TextToSpeechServiceStub]:
    async with open_channel(tts_server.address) as channel:
        yield tts_pb2_grpc.TextToSpeechServiceStub(channel)


@pytest.fixture(scope="module")
def fake_google() -> Iterator[FakeGoogle]:
    """A local gRPC server implementing google.cloud.texttospeech.v1.TextToSpeech."""
    fake = FakeGoogle().start()
    try:
        yield fake
    finally:
        fake.stop()
