"""Serving behaviour of a real tiny.en server: health gating, queue limits, cancellation, deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from soriflow.client import check_health, open_channel
from soriflow.interceptors import retry_after_from
from soriflow.server import Server, running
from soriflow.stt.service import SERVICE_NAME, create_service
from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from tests.stt.conftest import stt_settings
from tests.stt.speech import concat, espeak, silence, wav

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Stub = stt_pb2_grpc.SpeechToTextServiceStub


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """About a minute of speech: long enough that a decode is still running when it is cancelled."""
    directory = tmp_path_factory.mktemp("long-speech")
    text = (
        "The meeting started at nine. We talked about the budget, the new office, and the plans "
        "for the summer. Everyone agreed to send their reports before Friday. "
    )
    clip = espeak(text, directory, speed=170).samples
    return wav(concat(*([clip, silence(0.3)] * 5)))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def busy_server() -> AsyncIterator[Server]:
    """One request at a time and one waiting: the third concurrent request is turned away."""
    settings = stt_settings(stt_max_concurrency=1, stt_max_waiting=1, stt_retry_after_s=3.0)
    async with running(create_service(settings)) as server:
        yield server


def cancelled_count() -> float:
    return REGISTRY.get_sample_value("soriflow_stt_cancelled_total", {"path": "recognize"}) or 0.0


def request(data: bytes) -> stt_pb2.RecognizeRequest:
    return stt_pb2.RecognizeRequest(
        audio=audio_pb2.AudioInput(content=data),
        config=stt_pb2.RecognitionConfig(enable_word_time_offsets=True),
    )


async def wait_for(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_health_is_not_serving_until_the_model_is_loaded(speech_wav: Path) -> None:
    server = Server(create_service(stt_settings()))
    await server.start()
    try:
        async with open_channel(server.address) as channel:
            assert await check_health(channel, SERVICE_NAME) == "NOT_SERVING"
            await server.wait_ready(120)
            assert await check_health(channel, SERVICE_NAME) == "SERVING"
            assert await check_health(channel, "") == "SERVING"
    finally:
        await server.stop(0.5)


async def test_full_queue_is_resource_exhausted_with_retry_hint(
    busy_server: Server, long_speech: bytes
) -> None:
    before = cancelled_count()
    async with open_channel(busy_server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        running_call = stub.Recognize(request(long_speech), timeout=300)
        waiting_call = stub.Recognize(request(long_speech), timeout=300)
        await wait_for(
            lambda: busy_server.service.queue.running == 1 and busy_server.service.queue.waiting == 1
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Recognize(request(long_speech), timeout=60)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_after_from(err.value) == pytest.approx(3.0)
        assert "retry" in (err.value.details() or "")
        # Cancelling both frees the queue, and the running decode really stops early.
        waiting_call.cancel()
        running_call.cancel()
        await wait_for(lambda: cancelled_count() >= before + 1)
        await wait_for(
            lambda: busy_server.service.queue.running == 0 and busy_server.service.queue.waiting == 0
        )


async def test_deadline_stops_the_work(busy_server: Server, long_speech: bytes, speech_wav: Path) -> None:
    before = cancelled_count()
    async with open_channel(busy_server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Recognize(request(long_speech), timeout=1.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.perf_counter() - started < 5
        await wait_for(lambda: cancelled_count() >= before + 1)
        # The slot is free again: a short request is served.
        response = await stub.Recognize(request(speech_wav.read_bytes()), timeout=120)
        assert "front" in response.transcript.text.lower()


async def test_audio_over_the_duration_limit_is_refused() -> None:
    settings = stt_settings(audio_max_duration_s=5.0)
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Recognize(request(wav(np.zeros(16000 * 8, np.float32))), timeout=60)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
