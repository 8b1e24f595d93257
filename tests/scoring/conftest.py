"""Fixtures of the scoring tests: a real STT server (tiny.en) and a scoring server on loopback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from soriflow.client import open_channel
from soriflow.scoring.service import create_service
from soriflow.scoring.settings import Settings
from soriflow.server import Server, running
from soriflow.v1 import scoring_pb2_grpc

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def scoring_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "metrics_port": None, "log_format": "text"}
    return Settings(**(base | overrides))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stt_server() -> AsyncIterator[Server]:
    """The real STT service (bundled tiny.en), for the word-timestamp path."""
    from soriflow.stt.service import create_service as create_stt
    from soriflow.stt.settings import Settings as SttSettings

    settings = SttSettings(host="127.0.0.1", port=0, metrics_port=None, log_format="text", stt_device="cpu")
    async with running(create_stt(settings)) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scoring_server(stt_server: Server) -> AsyncIterator[Server]:
    async with running(create_service(scoring_settings(stt_address=stt_server.address))) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scoring_stub(
    scoring_server: Server,
) -> AsyncIterator[scoring_pb2_grpc.PronunciationScoringServiceStub]:
    async with open_channel(scoring_server.address) as channel:
        yield scoring_pb2_grpc.PronunciationScoringServiceStub(channel)
