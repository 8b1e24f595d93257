"""Engine failures: UNAVAILABLE for the request, a fresh engine for the next one."""

from __future__ import annotations

import stat
from pathlib import Path

import grpc
import pytest

from soriflow.client import open_channel
from soriflow.server import running
from soriflow.tts.engines.base import EngineFailure, SynthesisOptions
from soriflow.tts.engines.google import GoogleEngine
from soriflow.tts.service import TtsService, create_service
from soriflow.v1 import tts_pb2, tts_pb2_grpc
from tests.tts.conftest import tts_settings

pytestmark = pytest.mark.slow


def request(text: str = "Hello again.", engine: str = "") -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(text=text, voice=tts_pb2.VoiceSelection(engine=engine))


async def test_espeak_crash_is_unavailable_and_the_next_request_works(tmp_path: Path) -> None:
    """espeak-ng is replaced by a script that crashes while a flag file exists."""
    flag = tmp_path / "crash"
    script = tmp_path / "espeak-ng"
    script.write_text(
        f'#!/bin/sh\nif [ -e "{flag}" ]; then echo "segmentation fault" >&2; exit 139; fi\n'
        'exec espeak-ng "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    settings = tts_settings(tts_engines=["espeak-ng"], tts_espeak_binary=str(script))
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
        assert (await stub.Synthesize(request(), timeout=30)).audio_content
        flag.touch()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Synthesize(request(), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "espeak-ng failed (exit 139): segmentation fault" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:  # streams report it the same way
            async for _ in stub.SynthesizeStream(
                tts_pb2.SynthesizeStreamRequest(request=request()), timeout=30
            ):
                pass
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        flag.unlink()
        response = await stub.Synthesize(request(), timeout=30)
        assert response.engine == "espeak-ng"
        assert response.duration_ms > 300


async def test_piper_failure_reloads_the_voice() -> None:
    settings = tts_settings(tts_engines=["piper"], tts_default_engine="piper")
    service = create_service(settings)
    async with running(service) as server, open_channel(server.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
        assert isinstance(service, TtsService)
        assert service.synthesizer is not None
        engine = service.synthesizer.engines["piper"]
        broken = engine._voice  # type: ignore[attr-defined]
        broken.session = None  # the ONNX session is gone: the next inference raises
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Synthesize(request(), timeout=60)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "piper failed" in (info.value.details() or "")
        response = await stub.Synthesize(request(), timeout=60)
        assert response.engine == "piper"
        assert engine._voice is not broken  # type: ignore[attr-defined]  # a fresh voice was loaded


def test_google_without_credentials_is_unavailable_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    engine = GoogleEngine(endpoint="127.0.0.1:9", timeout_s=2)
    engine.load()  # logs and carries on: the other engines still serve
    assert engine.voices() == []
    voice = engine.find_voice("ko-KR-Wavenet-A")
    assert voice is not None
    assert voice.language_codes == ("ko-KR",)
    import threading

    with pytest.raises(EngineFailure, match="no Google credentials"):
        engine.synthesize(
            "안녕하세요", ssml=False, voice=voice, options=SynthesisOptions(), cancel=threading.Event()
        )


async def test_audio_over_the_message_limit_is_resource_exhausted() -> None:
    settings = tts_settings(tts_engines=["espeak-ng"], max_message_bytes=200_000)
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
        long_text = "This sentence is spoken again and again to make a long reply. " * 12
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Synthesize(request(long_text), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "use SynthesizeStream" in (info.value.details() or "")
        chunks = [
            c
            async for c in stub.SynthesizeStream(
                tts_pb2.SynthesizeStreamRequest(request=request(long_text)), timeout=60
            )
        ]
        assert len(chunks) == 12  # the same text streams fine, one sentence per message
