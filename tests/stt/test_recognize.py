"""Recognize on a real tiny.en server: words, S3 input, options, bad audio."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from soriflow.storage import ObjectStore
from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from tests.stt.speech import ALSA

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Stub = stt_pb2_grpc.SpeechToTextServiceStub


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> bytes:
    """The "front center" clip as bytes."""
    return speech_wav.read_bytes()


def request(content: bytes, **config: object) -> stt_pb2.RecognizeRequest:
    return stt_pb2.RecognizeRequest(
        audio=audio_pb2.AudioInput(content=content), config=stt_pb2.RecognitionConfig(**config)
    )  # type: ignore[arg-type]


async def test_recognize_real_speech_with_word_timestamps(stt_stub: Stub, speech: bytes) -> None:
    response = await stt_stub.Recognize(request(speech, enable_word_time_offsets=True), timeout=60)
    t = response.transcript
    assert "front center" in t.text.lower().replace(".", "").replace(",", "")
    assert [w.word.lower().strip(".,") for w in t.words] == ["front", "center"]
    assert t.language_code == "en"
    assert 1300 <= t.audio_duration_ms <= 1500
    assert response.model == "tiny.en"
    assert response.processing_time_ms > 0
    previous_end = 0
    for word in t.words:
        assert previous_end <= word.start_ms < word.end_ms <= t.audio_duration_ms + 50
        assert 0.0 < word.confidence <= 1.0
        previous_end = word.start_ms
    assert t.segments
    assert t.segments[0].words


async def test_words_only_when_asked(stt_stub: Stub, speech: bytes) -> None:
    response = await stt_stub.Recognize(request(speech), timeout=60)
    assert response.transcript.text
    assert not response.transcript.words


async def test_recognize_from_s3(stt_stub: Stub, s3_env: str) -> None:
    store = ObjectStore()
    store.client.create_bucket(Bucket="calls")
    store.client.put_object(Bucket="calls", Key="in/rear.wav", Body=(ALSA / "Rear_Left.wav").read_bytes())
    response = await stt_stub.Recognize(
        stt_pb2.RecognizeRequest(
            audio=audio_pb2.AudioInput(uri="s3://calls/in/rear.wav"),
            config=stt_pb2.RecognitionConfig(enable_word_time_offsets=True),
        ),
        timeout=60,
    )
    assert "rear left" in response.transcript.text.lower().replace(".", "").replace(",", "")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stt_stub.Recognize(
            stt_pb2.RecognizeRequest(audio=audio_pb2.AudioInput(uri="s3://calls/in/nothing.wav")), timeout=30
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_audio_is_invalid_argument(stt_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stt_stub.Recognize(request(b"this is not audio at all" * 10), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stt_stub.Recognize(stt_pb2.RecognizeRequest(), timeout=30)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_english_model_refuses_other_languages_and_translation(stt_stub: Stub, speech: bytes) -> None:
    for config in ({"language_code": "ko"}, {"task": stt_pb2.RECOGNITION_TASK_TRANSLATE}, {"beam_size": 99}):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stt_stub.Recognize(request(speech, **config), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, config
    ok = await stt_stub.Recognize(request(speech, language_code="en-US"), timeout=60)
    assert ok.transcript.language_code == "en"


async def test_list_models(stt_stub: Stub) -> None:
    response = await stt_stub.ListModels(stt_pb2.ListModelsRequest(), timeout=10)
    (model,) = response.models
    assert (model.name, model.engine, model.device, model.compute_type) == (
        "tiny.en",
        "faster-whisper",
        "cpu",
        "int8",
    )
    assert list(model.language_codes) == ["en"]
    assert not model.supports_translation
