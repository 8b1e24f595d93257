"""The live edge on a real tiny.en STT server: results, every refusal with its close code, isolation."""

from __future__ import annotations

import asyncio

import jiwer
import numpy as np
import pytest
from prometheus_client import REGISTRY

from soriflow.gateway.live.service import LiveEdge
from soriflow.server import Server
from tests.gateway.live.conftest import (
    SENTENCES,
    edge,
    pcm16,
    split,
    stream,
    url_of,
    webm_opus,
    words_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]

PCM = {"type": "config", "encoding": "pcm16", "sample_rate_hz": 16000, "language": "en"}
CHUNK = 3200  # 100 ms of 16 kHz PCM16


def assert_heard(text: str) -> None:
    wer = jiwer.wer(words_of(" ".join(SENTENCES)), words_of(text))
    assert wer <= 0.2, text


async def test_pcm16_stream_gets_interims_then_finals_with_words(
    live: LiveEdge, conversation: np.ndarray
) -> None:
    outcome = await stream(url_of(live), split(pcm16(conversation), CHUNK), PCM, gap_s=0.05)
    assert outcome.close_code == 1000, outcome.messages
    assert outcome.messages[0]["type"] == "ready"
    assert outcome.messages[-1]["type"] == "end"
    interims, finals = outcome.of("interim"), outcome.of("final")
    assert interims
    assert all(0 <= m["stability"] <= 1 for m in interims)
    assert [f["utterance_index"] for f in finals] == [0, 1]
    assert_heard(outcome.final_text)
    for final in finals:
        assert final["words"], final
        times = [(w["start_ms"], w["end_ms"]) for w in final["words"]]
        assert all(0 <= a <= b for a, b in times)
        assert times == sorted(times)
        assert final["start_ms"] <= times[0][0]
        assert final["language"] == "en"
    # Interims come before their utterance's final (text grows as the person speaks).
    first_final = outcome.messages.index(finals[0])
    assert any(m["type"] == "interim" for m in outcome.messages[:first_final])


async def test_webm_opus_chunks_as_mediarecorder_sends_them(
    live: LiveEdge, conversation: np.ndarray, ffmpeg: str
) -> None:
    data = webm_opus(conversation, ffmpeg)
    config = {"type": "config", "encoding": "webm-opus", "language": "en", "word_timestamps": False}
    # 4 KB chunks (250 ms of 32 kb/s Opus is ~1 KB: several timeslices per message, any split works).
    outcome = await stream(url_of(live), split(data, 4096), config, subprotocol_token=True, gap_s=0.1)
    assert outcome.close_code == 1000, outcome.messages
    assert_heard(outcome.final_text)
    assert all(f["words"] == [] for f in outcome.of("final"))


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("not json", "invalid config"),
        ({"type": "config", "encoding": "webm-opus", "langauge": "en"}, "langauge"),
        ({"type": "config", "encoding": "aac"}, "encodings: webm-opus"),
        ({"type": "config", "encoding": "pcm16"}, "sample_rate_hz"),
        ({"type": "config", "encoding": "pcm16", "sample_rate_hz": 16000, "language": "ko"}, "English-only"),
        ({"type": "config", "encoding": "webm-opus", "model": "large-v3"}, "runs 'tiny.en'"),
        (b"\x1a\x45\xdf\xa3", "must be the JSON config"),
    ],
    ids=["not-json", "typo", "encoding", "no-rate", "language", "model", "audio-first"],
)
async def test_bad_config_gets_4400_with_the_reason(live: LiveEdge, config: object, says: str) -> None:
    outcome = await stream(url_of(live), [b"\0" * CHUNK] * 3, config, gap_s=0.05)  # type: ignore[arg-type]
    assert outcome.close_code == 4400, outcome.messages
    assert outcome.error["code"] == "bad_config"
    assert outcome.error["close_code"] == 4400
    assert says in outcome.error["message"], outcome.error


async def test_bad_audio_gets_4415(live: LiveEdge, conversation: np.ndarray) -> None:
    wav_bytes = b"RIFF\0\0\0\0WAVEfmt " + pcm16(conversation[:16000])
    config = {"type": "config", "encoding": "webm-opus"}
    outcome = await stream(url_of(live), split(wav_bytes, 4096), config, gap_s=0.05)
    assert outcome.close_code == 4415, outcome.messages
    assert outcome.error["code"] == "bad_audio"
    assert "WEBM_OPUS" in outcome.error["message"]


async def test_missing_or_wrong_token_gets_4401(live: LiveEdge) -> None:
    for token, in_subprotocol in ((None, False), ("wrong", False), ("wrong", True)):
        outcome = await stream(url_of(live), [], PCM, token=token, subprotocol_token=in_subprotocol)
        assert outcome.close_code == 4401, (token, outcome.messages)
        assert outcome.error["code"] == "unauthorized"
        assert "Bearer" in outcome.error["message"]
        assert not outcome.of("ready")


async def test_foreign_origin_gets_4403_and_the_edges_own_page_is_let_in(live: LiveEdge) -> None:
    foreign = await stream(url_of(live), [], PCM, headers={"Origin": "http://evil.example"})
    assert foreign.close_code == 4403
    assert "SORIFLOW_LIVE_ALLOWED_ORIGINS" in foreign.error["message"]
    own = await stream(url_of(live), [], PCM, headers={"Origin": f"http://127.0.0.1:{live.port}"})
    assert own.close_code == 1000, own.messages


async def test_limits_close_the_stream_with_their_code(stt_server: Server, conversation: np.ndarray) -> None:
    audio = split(pcm16(conversation), CHUNK)
    async with edge(
        stt_server, live_max_stream_bytes=10 * CHUNK, live_max_frame_bytes=8 * CHUNK, live_idle_timeout_s=0.5
    ) as small:
        oversize = await stream(url_of(small), audio, PCM, gap_s=0.02)
        assert oversize.close_code == 4413
        assert "SORIFLOW_LIVE_MAX_STREAM_BYTES" in oversize.error["message"]
        big_frame = await stream(url_of(small), [b"\0" * (9 * CHUNK)], PCM)
        assert big_frame.close_code == 1009, big_frame.messages  # RFC 6455 "message too big"
        idle = await stream(url_of(small), audio[:2], PCM, end=False)
        assert idle.close_code == 4408
        assert "nothing received" in idle.error["message"]
    async with edge(stt_server, live_max_connections=1, live_config_timeout_s=0.5) as one:
        # The first connection sends no config and times out; meanwhile a second is refused.
        silent = asyncio.create_task(stream(url_of(one), [], None, end=False))
        await asyncio.sleep(0.2)
        refused = await stream(url_of(one), [], PCM)
        assert refused.close_code == 4429
        assert refused.error["retry_after_s"] > 0
        assert (await silent).close_code == 4408


async def test_failures_do_not_disturb_a_stream_running_beside_them(
    live: LiveEdge, conversation: np.ndarray
) -> None:
    before = REGISTRY.get_sample_value(
        "soriflow_grpc_requests_total",
        {"service": "soriflow.live.WebSocket", "method": "StreamingRecognize", "code": "INVALID_ARGUMENT"},
    )
    good = asyncio.create_task(stream(url_of(live), split(pcm16(conversation), CHUNK), PCM, gap_s=0.05))
    bad = [
        stream(url_of(live), [b"garbage" * 100] * 3, {"type": "config", "encoding": "ogg-opus"}, gap_s=0.1),
        stream(url_of(live), [], "{", gap_s=0.1),
        stream(url_of(live), [], PCM, token=None),
        stream(url_of(live), [b"\0" * CHUNK] * 5, {"type": "config", "encoding": "flac"}, gap_s=0.3),
    ]
    codes = [o.close_code for o in await asyncio.gather(*bad)]
    assert codes == [4415, 4400, 4401, 4415]
    outcome = await good
    assert outcome.close_code == 1000, outcome.messages
    assert_heard(outcome.final_text)
    after = REGISTRY.get_sample_value(
        "soriflow_grpc_requests_total",
        {"service": "soriflow.live.WebSocket", "method": "StreamingRecognize", "code": "INVALID_ARGUMENT"},
    )
    assert (after or 0) - (before or 0) == 3  # the same RPC metrics as every other service


async def test_health_readiness_and_models_over_http(live: LiveEdge, stt_server: Server) -> None:
    import aiohttp

    from tests.gateway.live.conftest import TOKEN

    base = f"http://127.0.0.1:{live.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{base}/readyz") as response:  # the STT service is SERVING
            assert response.status == 200
        async with session.get(f"{base}/v1/models") as response:
            assert response.status == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get(f"{base}/v1/models", headers=headers) as response:
            assert await response.json() == {"model": "tiny.en", "languages": ["en"], "translation": False}
        async with session.get(f"{base}/") as response:
            page = await response.text()
            assert "MediaRecorder" not in page  # the script is served apart
            assert '<script src="live.js">' in page
        async with session.get(f"{base}/live.js") as response:
            assert "audio/webm;codecs=opus" in await response.text()
    async with edge(stt_server, stt_address="127.0.0.1:1") as cut_off:  # no STT service there
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{cut_off.port}/readyz") as r,
        ):
            assert r.status == 503
        outcome = await stream(url_of(cut_off), [], PCM)
        assert outcome.close_code == 4503
        assert outcome.error["retry_after_s"] > 0


async def test_a_client_faster_than_real_time_is_slowed_not_buffered(
    stt_server: Server, conversation: np.ndarray
) -> None:
    """A file sent as fast as the socket takes it: the edge holds at most `live_queue_frames` frames
    (then stops reading, so TCP slows the sender) and the finals are the same as at real-time pace."""
    async with edge(stt_server, live_queue_frames=2) as small:
        audio = split(pcm16(np.concatenate([conversation, conversation])), 1600)  # 50 ms frames
        outcome = await stream(url_of(small), audio, PCM)
        assert small.peak_queued <= 2
    assert outcome.close_code == 1000, outcome.messages
    assert len(outcome.of("final")) == 4
    assert_heard(" ".join(m["text"] for m in outcome.of("final")[:2]))
