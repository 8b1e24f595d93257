"""The generation deadline on an in-process model, through gRPC: setting, RPC deadline, streams.

A tiny random Llama (built here) never writes its end token, so it always
generates `max_output_tokens`: the time it takes for 256 tokens is measured
first, and the deadlines are set from it, so the test holds on a fast or a
loaded machine.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from soriflow.client import open_channel
from soriflow.server import running
from soriflow.summarizer.service import create_service
from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc
from tests.summarizer.conftest import summarizer_settings
from tests.summarizer.tiny import build_causal

pytestmark = pytest.mark.slow

Stub = summarizer_pb2_grpc.SummarizerServiceStub
TEXT = "My package did not arrive and I would like a refund of the order."


@pytest.fixture(scope="module")
def tiny_long(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_causal(tmp_path_factory.mktemp("tiny-causal-2k"), context=2048)


@contextlib.asynccontextmanager
async def serve(model: Path, **overrides: Any) -> AsyncIterator[Stub]:
    # Grounding off: a strict retry would double the generation the deadlines are measured by.
    settings = summarizer_settings(summarizer_model=str(model), summarizer_grounding="off", **overrides)
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        yield Stub(channel)


def ask(tokens: int) -> summarizer_pb2.SummarizeRequest:
    return summarizer_pb2.SummarizeRequest(text=TEXT, max_output_tokens=tokens)


async def test_generation_deadline_fails_clearly_and_frees_the_model(tiny_long: Path) -> None:
    async with serve(tiny_long) as stub:
        started = time.monotonic()
        response = await stub.Summarize(ask(256), timeout=300)
        t256 = time.monotonic() - started
        assert response.output_tokens == 256  # the tiny model never stops early

    # 1024 tokens take about 4 x t256; the deadline is half of t256.
    deadline = max(0.2, t256 / 2)
    async with serve(tiny_long, summarizer_generation_timeout_s=deadline) as stub:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Summarize(ask(1024), timeout=300)
        took = time.monotonic() - started
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert f"longer than {deadline:g} s (SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S)" in (
            caught.value.details() or ""
        )
        assert took < deadline + max(1.0, t256), (took, deadline, t256)

        # A stream sends what it has, then fails the same way (never a cut-off summary as the result).
        events: list[str | None] = []

        async def read_stream() -> None:
            stream = stub.SummarizeStream(
                summarizer_pb2.SummarizeStreamRequest(request=ask(1024)), timeout=300
            )
            async for event in stream:
                events.append(event.WhichOneof("event"))

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_stream()
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S" in (caught.value.details() or "")
        assert events  # deltas came before the error
        assert set(events) == {"text_delta"}


async def test_rpc_deadline_stops_generation(tiny_long: Path) -> None:
    async with serve(tiny_long, summarizer_generation_timeout_s=600) as stub:
        started = time.monotonic()
        await stub.Summarize(ask(64), timeout=300)
        t64 = time.monotonic() - started
        rpc_deadline = max(0.3, t64)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Summarize(ask(1024), timeout=rpc_deadline)  # ~16 x t64 of work
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The model stopped: the next request does not wait for the abandoned 1024 tokens.
        started = time.monotonic()
        await stub.Summarize(ask(64), timeout=300)
        assert time.monotonic() - started < 6 * t64 + 1
