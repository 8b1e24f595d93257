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

from soriflow.audio import decode_audio
from soriflow.client import check_health, open_channel
from soriflow.interceptors import retry_after_from
from soriflow.server import Server, running
from soriflow.stt.service import SERVICE_NAME, create_service
from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from tests.stt.conftest import stt_settings
from tests.stt.speech import concat, espeak, silence, wav

LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16

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
    """One request at a time and one waiting (the third is turned away); two live streams at most."""
    settings = stt_settings(
        stt_max_concurrency=1,
        stt_max_waiting=1,
        stt_retry_after_s=3.0,
        stt_max_streams=2,
        # A stream decodes after every 0.1 s of new speech: each decode outlasts the audio that
        # triggers the next, so the engine is busy nearly all the time while a stream speaks.
        stt_stream_min_chunk_s=0.1,
    )
    async with running(create_service(settings)) as server:
        yield server


def cancelled_count(path: str = "recognize") -> float:
    return REGISTRY.get_sample_value("soriflow_stt_cancelled_total", {"path": path}) or 0.0


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


# --------------------------------------------------------------------------- streams


@pytest.fixture(scope="module")
def monologue_pcm(long_speech: bytes) -> bytes:
    """The minute of speech as 16 kHz LINEAR16 (its pauses are shorter than an utterance end)."""
    samples = decode_audio(long_speech).samples
    return bytes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


async def paced(pcm: bytes, **recognition: object) -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
    """Config, then 0.1 s chunks at real-time pace, as from a microphone."""
    yield stt_pb2.StreamingRecognizeRequest(
        streaming_config=stt_pb2.StreamingRecognitionConfig(
            config=stt_pb2.RecognitionConfig(**recognition),  # type: ignore[arg-type]
            encoding=LINEAR16,
            sample_rate_hz=16000,
            interim_results=True,
        )
    )
    for offset in range(0, len(pcm), 3200):
        await asyncio.sleep(0.1)
        yield stt_pb2.StreamingRecognizeRequest(audio_content=pcm[offset : offset + 3200])


#: Beam 20 with words: longer decodes, so that a cancel lands inside one (see `busy_server`).
HEAVY = {"beam_size": 20, "enable_word_time_offsets": True}


async def test_cancelled_stream_stops_its_decode_and_frees_its_slot(
    busy_server: Server, monologue_pcm: bytes
) -> None:
    streams = busy_server.service.streams
    before = cancelled_count("stream")
    async with open_channel(busy_server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        # A cancel that lands between two decodes stops nothing to count: try up to three times.
        for _attempt in range(3):
            call = stub.StreamingRecognize(paced(monologue_pcm, **HEAVY), timeout=120)
            interims = 0
            async for response in call:
                interims += sum(not r.is_final for r in response.results)
                if interims >= 8:  # a few seconds of buffer: decodes of ~0.15 s back to back
                    break
            assert streams.running == 1
            await asyncio.sleep(0.05)  # into the next interim decode
            call.cancel()
            await wait_for(lambda: streams.running == 0, timeout=30)
            if cancelled_count("stream") > before:
                break
    assert cancelled_count("stream") == before + 1
    assert busy_server.service.streams.waiting == 0


async def test_stream_deadline_stops_the_decode_and_frees_the_slot(
    busy_server: Server, monologue_pcm: bytes
) -> None:
    streams = busy_server.service.streams
    before = cancelled_count("stream")
    async with open_channel(busy_server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        for _attempt in range(3):
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.StreamingRecognize(paced(monologue_pcm, **HEAVY), timeout=4.0):
                    pass
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.perf_counter() - started < 8
            await wait_for(lambda: streams.running == 0, timeout=30)
            if cancelled_count("stream") > before:
                break
    assert cancelled_count("stream") == before + 1


async def test_one_stream_over_the_limit_is_resource_exhausted_with_retry_hint(busy_server: Server) -> None:
    streams = busy_server.service.streams
    quiet = bytes(16000 * 2 * 60)  # a minute of silence: holds a stream slot, never decoded
    async with open_channel(busy_server.address) as channel:
        stub = stt_pb2_grpc.SpeechToTextServiceStub(channel)
        calls = [stub.StreamingRecognize(paced(quiet), timeout=120) for _ in range(2)]
        readers = [asyncio.ensure_future(call.read()) for call in calls]
        try:
            await wait_for(lambda: streams.running == 2, timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.StreamingRecognize(paced(quiet), timeout=30):
                    pass
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
            assert retry_after_from(err.value) == pytest.approx(3.0)
            assert "retry" in (err.value.details() or "")
            assert streams.running == 2
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        await wait_for(lambda: streams.running == 0, timeout=30)
        # A freed slot serves the next stream.
        async for _ in stub.StreamingRecognize(paced(quiet[:3200]), timeout=30):
            pass
