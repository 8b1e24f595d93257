"""The Google engine: the real google-cloud-texttospeech client against a local TextToSpeech server.

What the client really sends (voice, language, rate, pitch, volume, encoding and rate, SSML with the
lexicon as <sub>), what it really gets back, the 5,000-byte limit, and Google's errors (quota,
invalid argument, outages, refused credentials) mapped to ours, with the next request working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from soriflow.client import open_channel
from soriflow.interceptors import retry_after_from
from soriflow.server import Server, running
from soriflow.tts.service import create_service
from soriflow.v1 import audio_pb2, tts_pb2, tts_pb2_grpc
from tests.tts.checks import assert_speech, decode, probe
from tests.tts.conftest import tts_settings
from tests.tts.fake_google import FakeGoogle

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Stub = tts_pb2_grpc.TextToSpeechServiceStub
E = audio_pb2.AudioEncoding
KOREAN = "문의하신 내용이 환불 맞으신가요? 확인 후 다시 연락드리겠습니다."


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def google_server(fake_google: FakeGoogle) -> AsyncIterator[Server]:
    settings = tts_settings(
        tts_engines=["google", "espeak-ng"],
        tts_default_engine="google",
        tts_google_endpoint=fake_google.address,
        tts_google_insecure=True,
        tts_google_timeout_s=10,
    )
    async with running(create_service(settings)) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stub(google_server: Server) -> AsyncIterator[Stub]:
    async with open_channel(google_server.address) as channel:
        yield tts_pb2_grpc.TextToSpeechServiceStub(channel)


@pytest.fixture
def fake(fake_google: FakeGoogle) -> FakeGoogle:
    fake_google.reset()
    return fake_google


def request(
    text: str = KOREAN, *, voice: str = "ko-KR-Wavenet-A", language: str = "", **config: object
) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(
        text=text,
        voice=tts_pb2.VoiceSelection(name=voice, language_code=language),
        audio_config=tts_pb2.AudioOutputConfig(**config),  # type: ignore[arg-type]
    )


async def test_google_voices_are_listed(stub: Stub, fake: FakeGoogle) -> None:
    voices = (await stub.ListVoices(tts_pb2.ListVoicesRequest(engine="google"), timeout=30)).voices
    assert [
        (v.name, list(v.language_codes), v.gender, v.natural_sample_rate_hz, v.supports_ssml) for v in voices
    ] == [
        ("en-US-Neural2-F", ["en-US"], tts_pb2.VOICE_GENDER_FEMALE, 24000, True),
        ("en-US-Wavenet-D", ["en-US"], tts_pb2.VOICE_GENDER_MALE, 24000, True),
        ("ko-KR-Standard-C", ["ko-KR"], tts_pb2.VOICE_GENDER_MALE, 24000, True),
        ("ko-KR-Wavenet-A", ["ko-KR"], tts_pb2.VOICE_GENDER_FEMALE, 24000, True),
    ]
    korean = (await stub.ListVoices(tts_pb2.ListVoicesRequest(language_code="ko-KR"), timeout=30)).voices
    assert [(v.engine, v.name) for v in korean] == [
        ("google", "ko-KR-Standard-C"),
        ("google", "ko-KR-Wavenet-A"),
        ("espeak-ng", "ko"),
    ]


async def test_request_carries_voice_prosody_rate_and_lexicon_as_ssml(stub: Stub, fake: FakeGoogle) -> None:
    response = await stub.Synthesize(
        request(
            encoding=E.AUDIO_ENCODING_MULAW, speaking_rate=1.25, pitch_semitones=-2.0, volume_gain_db=3.0
        ),
        timeout=60,
    )
    [sent] = fake.requests
    assert (sent.voice.name, sent.voice.language_code) == ("ko-KR-Wavenet-A", "ko-KR")
    config = sent.audio_config
    assert (config.audio_encoding, config.sample_rate_hertz) == (1, 8000)  # LINEAR16 at the output rate
    assert (config.speaking_rate, config.pitch, config.volume_gain_db) == (1.25, -2.0, 3.0)
    assert sent.input.text == ""
    assert sent.input.ssml == (
        '<speak><sub alias="무니">문의</sub>하신 내용이 환불 맞으신가요? '
        "확인 후 다시 연락드리겠습니다.</speak>"
    )
    assert response.prepared_text == sent.input.ssml
    assert (response.engine, response.voice, response.sample_rate_hz) == ("google", "ko-KR-Wavenet-A", 8000)
    info = probe(response.audio_content)
    assert (info["codec"], info["rate"], info["channels"]) == ("pcm_mulaw", 8000, 1)
    samples, rate = decode(response.audio_content)
    assert_speech(samples, rate, min_s=2.0, max_s=6.0)  # the fake's 0.4 s a word, at rate 1.25


async def test_plain_text_without_lexicon_words_goes_as_text(stub: Stub, fake: FakeGoogle) -> None:
    response = await stub.Synthesize(
        request("Your refund is on its way.", voice="", language="en-US"), timeout=60
    )
    [sent] = fake.requests
    assert sent.input.text == "Your refund is on its way."
    assert sent.voice.name == "en-US-Neural2-F"  # a language alone picks the best family (Neural2 > Wavenet)
    assert sent.audio_config.sample_rate_hertz == 24000
    assert response.sample_rate_hz == 24000


async def test_ssml_passes_through(stub: Stub, fake: FakeGoogle) -> None:
    ssml = (
        '<speak>안녕하세요. <break time="500ms"/><prosody rate="slow" pitch="+2st">천천히 말합니다.</prosody>'
        '<say-as interpret-as="telephone">02-123-4567</say-as></speak>'
    )
    await stub.Synthesize(
        tts_pb2.SynthesizeRequest(ssml=ssml, voice=tts_pb2.VoiceSelection(name="ko-KR-Wavenet-A")), timeout=60
    )
    [sent] = fake.requests
    assert sent.input.ssml == (
        '<speak>안녕하세요. <break time="500ms" />'
        '<prosody rate="slow" pitch="+2st">천천히 말합니다.</prosody>'
        ' <say-as interpret-as="telephone">02-123-4567</say-as></speak>'  # sentences joined by a space
    )


async def test_long_text_is_split_at_sentences_under_5000_bytes(stub: Stub, fake: FakeGoogle) -> None:
    sentences = [
        f"{n}번째 문장입니다, 고객님의 요청을 처리하는 중이며 잠시만 기다려 주시면 감사하겠습니다."
        for n in range(150)
    ]
    text = " ".join(sentences)
    assert len(text.encode()) > 3 * 5000
    response = await stub.Synthesize(request(text), timeout=120)
    sent = [r.input.text for r in fake.requests]
    assert len(sent) == 4
    assert all(4500 < len(s.encode()) <= 5000 for s in sent[:-1])  # packed close to the limit
    assert all(s.endswith("감사하겠습니다.") for s in sent)  # cut between sentences only
    assert " ".join(sent) == text
    assert response.sentence_count == 150
    # the fake speaks 0.4 s a word (10 a sentence); the service adds its 300 ms pause between requests
    assert response.duration_ms / 1000 == pytest.approx(150 * 10 * 0.4 + 3 * 0.3, rel=0.01)


async def test_rate_beyond_googles_range_is_finished_here(stub: Stub, fake: FakeGoogle) -> None:
    base = await stub.Synthesize(request(speaking_rate=2.0), timeout=60)
    faster = await stub.Synthesize(request(speaking_rate=3.0), timeout=60)
    assert [r.audio_config.speaking_rate for r in fake.requests] == [2.0, 2.0]
    assert faster.duration_ms == pytest.approx(base.duration_ms / 1.5, rel=0.05)


async def test_stream_sends_one_google_request_per_sentence(stub: Stub, fake: FakeGoogle) -> None:
    req = tts_pb2.SynthesizeStreamRequest(request=request("첫 문장입니다. 두 번째 문장입니다. 끝."))
    chunks = [c async for c in stub.SynthesizeStream(req, timeout=60)]
    assert [c.text for c in chunks] == ["첫 문장입니다.", "두 번째 문장입니다.", "끝."]
    assert [r.input.text for r in fake.requests] == ["첫 문장입니다.", "두 번째 문장입니다.", "끝."]


async def test_quota_error_is_resource_exhausted_with_googles_retry_delay(
    stub: Stub, fake: FakeGoogle
) -> None:
    fake.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, "Quota exceeded for quota metric 'Requests'.", 7.0)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(request(), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota exhausted: Quota exceeded" in (info.value.details() or "")
    assert retry_after_from(info.value) == pytest.approx(7.0)
    fake.fail_next(grpc.StatusCode.RESOURCE_EXHAUSTED, "Quota exceeded.")  # no RetryInfo: the setting's 30 s
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(request(), timeout=60)
    assert retry_after_from(info.value) == pytest.approx(30.0)
    assert (await stub.Synthesize(request(), timeout=60)).audio_content


@pytest.mark.parametrize(
    ("google_code", "our_code", "message"),
    [
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.INVALID_ARGUMENT,
            "Google Cloud TTS rejected the request",
        ),
        (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, "Google Cloud TTS failed"),
        (
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAVAILABLE,
            "refused this service's credentials",
        ),
        (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, "Google Cloud TTS failed"),
    ],
)
async def test_google_errors_map_and_the_next_request_works(
    stub: Stub, fake: FakeGoogle, google_code: grpc.StatusCode, our_code: grpc.StatusCode, message: str
) -> None:
    fake.fail_next(google_code, "something went wrong")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(request(), timeout=60)
    assert info.value.code() == our_code
    assert message in (info.value.details() or "")
    assert "something went wrong" in (info.value.details() or "")
    response = await stub.Synthesize(request(), timeout=60)
    assert response.engine == "google"
    assert len(fake.requests) == 2


async def test_unknown_google_voice_lists_the_languages_voices(stub: Stub, fake: FakeGoogle) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(request(voice="ko-KR-Wavenet-Z"), timeout=60)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "voices: ko-KR-Standard-C, ko-KR-Wavenet-A, ko" in (info.value.details() or "")
    assert fake.requests == []


async def test_service_starts_and_reports_unavailable_when_google_is_unreachable() -> None:
    settings = tts_settings(
        tts_engines=["google", "espeak-ng"],
        tts_default_engine="espeak-ng",
        tts_google_endpoint="127.0.0.1:9",
        tts_google_insecure=True,
        tts_google_timeout_s=3,
    )
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
        voices = (await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=30)).voices
        assert {v.engine for v in voices} == {"espeak-ng"}
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Synthesize(request(), timeout=30)  # a well-formed Google name goes through to Google
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (await stub.Synthesize(request("Still speaking.", voice=""), timeout=30)).engine == "espeak-ng"
