"""The gRPC service on loopback: precomputed words, the real STT service, errors and inputs."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
import pytest_asyncio

from soriflow.audio import resample
from soriflow.client import open_channel
from soriflow.scoring.service import create_service
from soriflow.server import running
from soriflow.storage import ObjectStore
from soriflow.v1 import audio_pb2, scoring_pb2, scoring_pb2_grpc

from .conftest import scoring_settings
from .speech import RATE, SENTENCE, aligned_words, piper, wav_input, word_protos

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Stub = scoring_pb2_grpc.PronunciationScoringServiceStub


def stereo_wav(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit stereo WAV at `rate` (the right channel a little quieter)."""
    import io

    import soundfile as sf

    x = resample(samples, RATE, rate)
    buf = io.BytesIO()
    sf.write(buf, np.stack([x, 0.7 * x], axis=1), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def all_finite(response: scoring_pb2.ScoreResponse) -> None:
    numbers = [
        response.overall_score,
        response.accuracy_score,
        response.fluency_score,
        response.completeness_score,
        response.prosody_score,
        response.speed_ratio,
        response.pause_similarity,
        response.pitch_similarity,
        *response.learner_pitch.semitones,
        *(w.accuracy_score for w in response.words),
    ]
    assert all(math.isfinite(v) for v in numbers)


#: Nothing listens on the discard port: a server pointed there cannot reach any STT service.
NO_STT = "127.0.0.1:9"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def offline_stub() -> AsyncIterator[Stub]:
    """A scoring server whose STT address is unreachable: it can only score precomputed words."""
    settings = scoring_settings(stt_address=NO_STT, scoring_stt_timeout_s=5)
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        yield Stub(channel)


async def test_score_with_precomputed_words(offline_stub: Stub) -> None:
    """Words and reference words in the request: scored without calling the (unreachable) STT."""
    samples = piper(SENTENCE)
    words = word_protos(aligned_words(samples, SENTENCE))
    request = scoring_pb2.ScoreRequest(
        audio=wav_input(samples),
        reference_audio=wav_input(samples),
        reference_text=SENTENCE,
        words=words,
        reference_words=words,
        pitch_contour_points=50,
    )
    response = await offline_stub.Score(request, timeout=60)
    all_finite(response)
    assert response.overall_score >= 95
    assert [w.word for w in response.words] == SENTENCE.lower().rstrip(".").split()
    assert {w.error_type for w in response.words} == {scoring_pb2.WORD_ERROR_TYPE_NONE}
    assert {w.accuracy_method for w in response.words} == {scoring_pb2.ACCURACY_METHOD_PHONE_GOP}
    toy = response.words[4]
    assert [p.phone for p in toy.phones] == ["T", "OY"]  # English: phone scores in the response
    assert all(0 <= p.accuracy_score <= 100 and p.end_ms > p.start_ms for p in toy.phones)
    assert toy.start_ms <= toy.phones[0].start_ms < toy.phones[-1].end_ms <= toy.end_ms
    assert all(w.reference_end_ms > w.reference_start_ms for w in response.words)
    assert len(response.learner_pitch.times_ms) == 50 == len(response.learner_pitch.reference_times_ms)
    assert len(response.reference_pitch.semitones) == 50
    assert response.reference_fluency.speech_duration_ms > 1500
    assert response.processing_time_ms > 0
    assert response.audio_duration_ms == round(len(samples) / RATE * 1000)


async def test_score_with_the_real_stt_service(scoring_stub: Stub) -> None:
    reference = piper(SENTENCE)
    learner = piper("I bought a new boat at the store yesterday.")
    response = await scoring_stub.Score(
        scoring_pb2.ScoreRequest(
            audio=wav_input(learner), reference_audio=wav_input(reference), feedback_language_code="ko"
        ),
        timeout=120,
    )
    all_finite(response)
    assert "boat" in response.recognized_text.lower()
    toy = next(w for w in response.words if w.word == "toy")
    assert toy.error_type == scoring_pb2.WORD_ERROR_TYPE_SUBSTITUTION
    assert toy.recognized_word == "boat"
    assert response.feedback[0] == "'toy' 자리에서 다른 단어('boat')가 들렸어요."
    assert 60 < response.overall_score < 97


async def test_sample_rate_and_channels_do_not_change_the_result(scoring_stub: Stub) -> None:
    samples = piper(SENTENCE)
    words = word_protos(aligned_words(samples, SENTENCE))
    base = scoring_pb2.ScoreRequest(audio=wav_input(samples), reference_text=SENTENCE, words=words)
    mono16 = await scoring_stub.Score(base, timeout=60)
    other = scoring_pb2.ScoreRequest(
        audio=audio_pb2.AudioInput(content=stereo_wav(samples, 44100)), reference_text=SENTENCE, words=words
    )
    stereo44 = await scoring_stub.Score(other, timeout=60)
    assert abs(stereo44.overall_score - mono16.overall_score) < 3
    assert abs(stereo44.audio_duration_ms - mono16.audio_duration_ms) <= 1


async def test_s3_input(scoring_server: object, s3_env: str) -> None:
    samples = piper(SENTENCE)
    store = ObjectStore()
    store.client.create_bucket(Bucket="learners")
    store.client.put_object(Bucket="learners", Key="u1/take1.wav", Body=wav_input(samples).content)
    store.client.put_object(Bucket="learners", Key="u2/secret.wav", Body=wav_input(samples).content)
    settings = scoring_settings(s3_endpoint_url=s3_env, read_uris=["s3://learners/u1/"])
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        stub = Stub(channel)
        request = scoring_pb2.ScoreRequest(
            audio=audio_pb2.AudioInput(uri="s3://learners/u1/take1.wav"),
            reference_text=SENTENCE,
            words=word_protos(aligned_words(samples, SENTENCE)),
        )
        assert (await stub.Score(request, timeout=60)).completeness_score == 100
        request.audio.uri = "s3://learners/u1/missing.wav"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Score(request, timeout=60)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        # Outside SORIFLOW_READ_URIS: refused before S3 is asked, for the learner and the reference.
        request.audio.uri = "s3://learners/u2/secret.wav"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Score(request, timeout=60)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "audio.uri s3://learners/u2/secret.wav" in (info.value.details() or "")
        request.audio.uri = "s3://learners/u1/take1.wav"
        request.reference_audio.uri = "s3://learners/u2/secret.wav"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Score(request, timeout=60)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "reference_audio.uri" in (info.value.details() or "")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"audio": None}, "audio is required"),
        ({"reference_text": ""}, "give reference_text, reference_audio, or both"),
        ({"feedback_language_code": "fr"}, "feedback_language_code 'fr' is not supported"),
        ({"mispronunciation_threshold": 120}, "mispronunciation_threshold must be 0-100"),
        ({"pitch_contour_points": -1}, "pitch_contour_points must be"),
        ({"short": True}, "0.20 s long; at least 0.3 s"),
        ({"bad_words": True}, "end_ms >= start_ms"),
        ({"garbage": True}, "not a recognised audio format"),
    ],
)
async def test_invalid_requests(scoring_stub: Stub, change: dict[str, object], message: str) -> None:
    samples = piper(SENTENCE)
    request = scoring_pb2.ScoreRequest(
        audio=wav_input(samples), reference_text=SENTENCE, words=word_protos(aligned_words(samples, SENTENCE))
    )
    for key, value in change.items():
        if key == "audio":
            request.ClearField("audio")
        elif key == "short":
            request.audio.CopyFrom(wav_input(samples[: int(0.2 * RATE)]))
        elif key == "bad_words":
            request.words[0].end_ms = request.words[0].start_ms - 10
        elif key == "garbage":
            request.audio.content = b"this is not audio at all" * 10
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await scoring_stub.Score(request, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")


async def test_unreachable_stt_is_unavailable_with_the_address(offline_stub: Stub) -> None:
    request = scoring_pb2.ScoreRequest(audio=wav_input(piper(SENTENCE)), reference_text=SENTENCE)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await offline_stub.Score(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"STT service at {NO_STT}" in (info.value.details() or "")
