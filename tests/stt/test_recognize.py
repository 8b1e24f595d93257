"""Recognize on a real tiny.en server: words, S3 input, options, bad audio."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from soriflow.audio import Audio
from soriflow.storage import ObjectStore
from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc
from tests.stt.speech import ALSA, concat, espeak, wav

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Stub = stt_pb2_grpc.SpeechToTextServiceStub
SENTENCES = (
    "The weather today is sunny with a light breeze from the west.",
    "Please send the quarterly report to the finance team before Friday.",
    "The children played football in the park after school.",
)


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


@pytest.mark.parametrize(
    ("uri", "code", "message"),
    [
        # another bucket, or another prefix of the same bucket: never read (the object exists)
        ("s3://some-other-bucket/secret.wav", grpc.StatusCode.PERMISSION_DENIED, "SORIFLOW_READ_URIS"),
        ("s3://calls/private/secret.wav", grpc.StatusCode.PERMISSION_DENIED, "SORIFLOW_READ_URIS"),
        ("s3://calls/in2/x.wav", grpc.StatusCode.PERMISSION_DENIED, "SORIFLOW_READ_URIS"),
        # no object named: a request error, not a retryable outage
        ("s3://calls", grpc.StatusCode.INVALID_ARGUMENT, "names a bucket, not an object"),
        ("s3://calls/", grpc.StatusCode.INVALID_ARGUMENT, "names a bucket, not an object"),
        ("s3://calls/in/", grpc.StatusCode.INVALID_ARGUMENT, "names a prefix"),
        ("s3://calls/in/../private/secret.wav", grpc.StatusCode.INVALID_ARGUMENT, "traversal"),
        ("s3://calls/in/a\x00.wav", grpc.StatusCode.INVALID_ARGUMENT, "control characters"),
        ("https://calls/in/rear.wav", grpc.StatusCode.INVALID_ARGUMENT, "not an S3 URI"),
    ],
)
async def test_s3_uris_outside_the_allow_list_or_without_a_key_are_refused(
    stt_stub: Stub, s3_env: str, uri: str, code: grpc.StatusCode, message: str
) -> None:
    store = ObjectStore()
    for bucket in ("calls", "some-other-bucket"):
        store.client.create_bucket(Bucket=bucket)
    secret = (ALSA / "Rear_Left.wav").read_bytes()
    store.client.put_object(Bucket="some-other-bucket", Key="secret.wav", Body=secret)
    store.client.put_object(Bucket="calls", Key="private/secret.wav", Body=secret)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stt_stub.Recognize(
            stt_pb2.RecognizeRequest(audio=audio_pb2.AudioInput(uri=uri)),
            timeout=30,
        )
    assert err.value.code() == code
    assert message in (err.value.details() or "")


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


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> list[Audio]:
    directory = tmp_path_factory.mktemp("recognize-speech")
    return [espeak(text, directory, speed=160) for text in SENTENCES]


async def test_stereo_call_is_transcribed_per_channel(stt_stub: Stub, sentences: list[Audio]) -> None:
    """Agent on the left from 0 s, customer on the right from 4 s: labelled words in time order."""
    agent, customer = sentences[0].samples, sentences[1].samples
    offset = 4 * 16000
    stereo = np.zeros((2, max(len(agent), offset + len(customer)) + 8000), np.float32)
    stereo[0, : len(agent)] = agent
    stereo[1, offset : offset + len(customer)] = customer
    response = await stt_stub.Recognize(
        request(
            wav(stereo),
            enable_word_time_offsets=True,
            channel_mode=stt_pb2.CHANNEL_MODE_SEPARATE,
            channel_labels=["agent", "customer"],
        ),
        timeout=120,
    )
    t = response.transcript
    assert t.channel_count == 2
    assert {s.speaker for s in t.segments} == {"agent", "customer"}
    for segment in t.segments:
        assert segment.channel == (0 if segment.speaker == "agent" else 1)
        assert all(w.speaker == segment.speaker and w.channel == segment.channel for w in segment.words)
    assert [s.start_ms for s in t.segments] == sorted(s.start_ms for s in t.segments)
    assert [w.start_ms for w in t.words] == sorted(w.start_ms for w in t.words)
    customer_words = [w for w in t.words if w.speaker == "customer"]
    assert customer_words[0].start_ms >= 3500  # word times are good to a few hundred ms
    agent_text = " ".join(w.word for w in t.words if w.speaker == "agent").lower()
    assert "weather" in agent_text
    assert "quarterly" in " ".join(w.word for w in customer_words).lower()
    lines = t.text.splitlines()
    assert lines[0].startswith("agent: ")
    assert any(line.startswith("customer: ") for line in lines)
    # Unlabelled channels are called ch0/ch1; MIX (the default) gives one unlabelled channel.
    unlabelled = await stt_stub.Recognize(
        request(wav(stereo), enable_word_time_offsets=True, channel_mode=stt_pb2.CHANNEL_MODE_SEPARATE),
        timeout=120,
    )
    assert {w.speaker for w in unlabelled.transcript.words} == {"ch0", "ch1"}
    mixed = await stt_stub.Recognize(request(wav(stereo), enable_word_time_offsets=True), timeout=120)
    assert mixed.transcript.channel_count == 1
    assert {w.channel for w in mixed.transcript.words} == {0}


async def test_vad_filter_skips_silence_and_keeps_true_times(stt_stub: Stub, sentences: list[Audio]) -> None:
    rng = np.random.default_rng(1)
    noise = lambda seconds: (0.002 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)  # noqa: E731
    audio = concat(noise(12.0), sentences[2].samples, noise(4.0))
    response = await stt_stub.Recognize(
        request(wav(audio), enable_word_time_offsets=True, vad_filter=True), timeout=120
    )
    words = response.transcript.words
    assert words
    assert words[0].start_ms >= 11_500  # times refer to the original audio, not the speech-only one
    assert words[-1].end_ms <= 12_000 + len(sentences[2].samples) / 16 + 500
    assert "football" in response.transcript.text.lower()
    assert response.transcript.audio_duration_ms == pytest.approx(len(audio) / 16, abs=5)


async def test_vad_filter_false_is_not_unset(stt_stub: Stub) -> None:
    """`vad_filter` is `optional bool`: unset takes the server default (on), an explicit false
    turns the VAD off. Told so, Whisper decodes 20 s of silence and, as it does, makes up a
    word ("You"); with the VAD, explicit or by default, there is nothing to decode."""
    quiet = wav(np.zeros(20 * 16000, np.float32))
    unset = await stt_stub.Recognize(request(quiet), timeout=120)
    on = await stt_stub.Recognize(request(quiet, vad_filter=True), timeout=120)
    off = await stt_stub.Recognize(request(quiet, vad_filter=False), timeout=120)
    assert unset.transcript.text == on.transcript.text == ""
    assert not on.transcript.segments
    assert off.transcript.text.strip(), "Whisper without the VAD decoded silence to nothing"
    assert off.transcript.segments


async def test_vad_filter_unset_means_the_server_default() -> None:
    """`vad_filter` is `optional bool`: unset takes SORIFLOW_STT_VAD_FILTER, false and true win."""
    from soriflow.stt.engines.base import EngineInfo
    from soriflow.stt.messages import options_from_config

    info = EngineInfo(
        name="tiny.en", engine="faster-whisper", source="", device="cpu", compute_type="int8",
        languages=("en",), multilingual=False,
    )  # fmt: skip
    for default in (True, False):
        unset = options_from_config(stt_pb2.RecognitionConfig(), info, default_vad=default)
        assert unset.vad_filter is default
        for explicit in (True, False):
            config = stt_pb2.RecognitionConfig(vad_filter=explicit)
            assert options_from_config(config, info, default_vad=default).vad_filter is explicit


#: Names tiny.en does not know: without help it writes what it hears ("will look", "Cubic to
#: Luma"); the spelling reaches the decoder only through the hot words or the prompt.
NAMES = (
    ("The meeting with Quillbrook starts at noon.", "quillbrook"),
    ("We deployed Kubectl on the cluster yesterday.", "kubectl"),
)


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    directory = tmp_path_factory.mktemp("names")
    return [wav(espeak(text, directory, speed=150).samples) for text, _ in NAMES]


async def test_hotwords_and_prompt_teach_words_the_model_misses(stt_stub: Stub, named: list[bytes]) -> None:
    """Each name is misheard without help and written right with it as a hot word or in the
    initial prompt (espeak-ng speech, tiny.en int8 beam 5: deterministic here, measured so)."""
    for audio, (_, name) in zip(named, NAMES, strict=True):
        plain = await stt_stub.Recognize(request(audio), timeout=120)
        assert name not in plain.transcript.text.lower(), plain.transcript.text
        hinted = await stt_stub.Recognize(request(audio, hotwords=[name.capitalize()]), timeout=120)
        assert name in hinted.transcript.text.lower(), hinted.transcript.text
        prompted = await stt_stub.Recognize(
            request(audio, initial_prompt=f"Notes about {name.capitalize()}."), timeout=120
        )
        assert name in prompted.transcript.text.lower(), prompted.transcript.text


async def test_hotword_and_prompt_limits(stt_stub: Stub, sentences: list[Audio]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stt_stub.Recognize(request(wav(sentences[1].samples), hotwords=["x"] * 101), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as long_prompt:
        await stt_stub.Recognize(request(wav(sentences[1].samples), initial_prompt="word " * 500), timeout=30)
    assert long_prompt.value.code() == grpc.StatusCode.INVALID_ARGUMENT
