"""The Polly engine: the real boto3 client against a local server speaking Polly's REST-JSON protocol.

What boto3 really sends (voice, engine, output format and sample rate, SSML with the lexicon as
<sub>, configured lexicons), what it really gets back (PCM, Ogg Vorbis, MP3 streams of real speech),
Polly's text limits, voice paging, and Polly's errors (throttling, bad SSML, text too long, missing
lexicon, refused credentials, outages) mapped to ours, with the next request working.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

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
from tests.tts.fake_polly import MAX_BILLED, FakePolly

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Stub = tts_pb2_grpc.TextToSpeechServiceStub
E = audio_pb2.AudioEncoding
KOREAN = "문의하신 내용이 환불 맞으신가요? 확인 후 다시 연락드리겠습니다."
KEY = "AKIDSORIFLOWTEST"


@pytest.fixture(scope="module")
def fake_polly() -> Iterator[FakePolly]:
    """A local HTTP server speaking Polly's REST-JSON protocol; boto3 signs with a test key."""
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    }
    os.environ.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY="secret")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    fake = FakePolly().start()
    try:
        yield fake
    finally:
        fake.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def polly_settings(fake: FakePolly, **overrides: object) -> object:
    base: dict[str, object] = {
        "tts_engines": ["polly", "espeak-ng"],
        "tts_default_engine": "polly",
        "tts_polly_endpoint_url": fake.url,
        "tts_polly_region": "us-east-1",
        "tts_polly_lexicon_names": ["soriflow"],
        "tts_polly_timeout_s": 20,
        "tts_polly_max_attempts": 2,
    }
    return tts_settings(**(base | overrides))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def polly_server(fake_polly: FakePolly) -> AsyncIterator[Server]:
    async with running(create_service(polly_settings(fake_polly))) as server:  # type: ignore[arg-type]
        yield server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stub(polly_server: Server) -> AsyncIterator[Stub]:
    async with open_channel(polly_server.address) as channel:
        yield tts_pb2_grpc.TextToSpeechServiceStub(channel)


@pytest.fixture
def fake(fake_polly: FakePolly) -> FakePolly:
    fake_polly.reset()
    return fake_polly


def request(
    text: str = KOREAN, *, voice: str = "Seoyeon", language: str = "", **config: object
) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(
        text=text,
        voice=tts_pb2.VoiceSelection(name=voice, language_code=language),
        audio_config=tts_pb2.AudioOutputConfig(**config),  # type: ignore[arg-type]
    )


async def test_polly_voices_are_listed_across_pages(stub: Stub, fake: FakePolly) -> None:
    voices = (await stub.ListVoices(tts_pb2.ListVoicesRequest(engine="polly"), timeout=30)).voices
    assert [(v.name, list(v.language_codes), v.gender, v.natural_sample_rate_hz) for v in voices] == [
        ("Aditi", ["en-IN", "hi-IN"], tts_pb2.VOICE_GENDER_FEMALE, 22050),  # standard only
        ("Joanna", ["en-US"], tts_pb2.VOICE_GENDER_FEMALE, 24000),  # neural preferred
        ("Matthew", ["en-US"], tts_pb2.VOICE_GENDER_MALE, 24000),
        ("Ruth", ["en-US"], tts_pb2.VOICE_GENDER_FEMALE, 24000),
        ("Seoyeon", ["ko-KR"], tts_pb2.VOICE_GENDER_FEMALE, 24000),
    ]
    assert all(v.supports_ssml and v.engine == "polly" for v in voices)
    korean = (await stub.ListVoices(tts_pb2.ListVoicesRequest(language_code="ko"), timeout=30)).voices
    assert [(v.engine, v.name) for v in korean] == [("polly", "Seoyeon"), ("espeak-ng", "ko")]
    hindi = (await stub.ListVoices(tts_pb2.ListVoicesRequest(language_code="hi-IN"), timeout=30)).voices
    assert [v.name for v in hindi][:1] == ["Aditi"]  # a bilingual voice's additional language


async def test_connect_reply_asks_polly_for_8khz_pcm_and_gives_the_mulaw_wav(
    stub: Stub, fake: FakePolly
) -> None:
    response = await stub.Synthesize(request(encoding=E.AUDIO_ENCODING_MULAW), timeout=60)
    [sent] = fake.requests
    assert sent["VoiceId"] == "Seoyeon"
    assert sent["Engine"] == "neural"
    assert (sent["OutputFormat"], sent["SampleRate"]) == ("pcm", "8000")  # no resampling anywhere
    assert sent["TextType"] == "ssml"  # the lexicon's respelling travels as <sub>
    assert sent["Text"] == (
        '<speak><sub alias="무니">문의</sub>하신 내용이 환불 맞으신가요? '
        "확인 후 다시 연락드리겠습니다.</speak>"
    )
    assert sent["LexiconNames"] == ["soriflow"]
    assert response.prepared_text == sent["Text"]
    assert (response.engine, response.voice, response.sample_rate_hz) == ("polly", "Seoyeon", 8000)
    info = probe(response.audio_content)
    assert (info["codec"], info["rate"], info["channels"]) == ("pcm_mulaw", 8000, 1)
    assert response.audio_content[20:22] == (7).to_bytes(2, "little")  # WAVE_FORMAT_MULAW
    samples, rate = decode(response.audio_content)
    assert_speech(samples, rate, min_s=2.0, max_s=10.0)


async def test_wideband_output_asks_for_ogg_vorbis_at_the_voices_rate(stub: Stub, fake: FakePolly) -> None:
    text = "Once upon a time, a small fox lived at the edge of the forest."
    wav = await stub.Synthesize(request(text, voice="Joanna"), timeout=60)
    mp3 = await stub.Synthesize(request(text, voice="Aditi", encoding=E.AUDIO_ENCODING_MP3), timeout=60)
    wide16 = await stub.Synthesize(request(text, voice="Joanna", sample_rate_hz=16000), timeout=60)
    assert [(r["VoiceId"], r["Engine"], r["OutputFormat"], r["SampleRate"]) for r in fake.requests] == [
        ("Joanna", "neural", "ogg_vorbis", "24000"),
        ("Aditi", "standard", "ogg_vorbis", "22050"),
        ("Joanna", "neural", "pcm", "16000"),
    ]
    assert all(r["TextType"] == "text" for r in fake.requests)  # no lexicon word: plain text
    for response, rate, codec in (
        (wav, 24000, "pcm_s16le"),
        (mp3, 22050, "mp3"),
        (wide16, 16000, "pcm_s16le"),
    ):
        info = probe(response.audio_content)
        assert (info["codec"], info["rate"]) == (codec, rate)
        samples, got = decode(response.audio_content)
        assert_speech(samples, got, min_s=2.0, max_s=8.0)
    assert wav.duration_ms == pytest.approx(wide16.duration_ms, rel=0.05)


async def test_ssml_passes_through(stub: Stub, fake: FakePolly) -> None:
    ssml = '<speak>Hello. <break time="500ms"/><prosody rate="slow">Slowly now.</prosody></speak>'
    await stub.Synthesize(
        tts_pb2.SynthesizeRequest(ssml=ssml, voice=tts_pb2.VoiceSelection(name="Matthew")), timeout=60
    )
    [sent] = fake.requests
    assert sent["TextType"] == "ssml"
    assert (
        sent["Text"]
        == '<speak>Hello. <break time="500ms" /><prosody rate="slow">Slowly now.</prosody></speak>'
    )


async def test_long_text_is_split_at_sentences_under_polly_limit(stub: Stub, fake: FakePolly) -> None:
    sentence = "The quick brown fox jumps over the lazy dog near the quiet river bank."
    text = " ".join(f"{sentence[:-1]} number {n}." for n in range(120))
    assert len(text) > 3 * MAX_BILLED
    response = await stub.Synthesize(request(text, voice="Matthew"), timeout=300)
    sent = [r["Text"] for r in fake.requests]
    assert len(sent) >= 4
    assert all(len(s.encode()) <= 3000 for s in sent)
    assert all(s.endswith(".") for s in sent)  # cut between sentences only
    assert " ".join(sent) == text
    assert response.sentence_count == 120


async def test_rate_pitch_and_volume_are_applied_here(stub: Stub, fake: FakePolly) -> None:
    text = "Please hold while I check your order."
    base = await stub.Synthesize(request(text, voice="Joanna"), timeout=60)
    faster = await stub.Synthesize(request(text, voice="Joanna", speaking_rate=1.5), timeout=60)
    assert [r["Text"] for r in fake.requests] == [text, text]  # no <prosody> added for Polly
    assert faster.duration_ms == pytest.approx(base.duration_ms / 1.5, rel=0.08)


async def test_throttling_is_retried_by_boto3_then_resource_exhausted(stub: Stub, fake: FakePolly) -> None:
    fake.fail_next(400, "ThrottlingException", "Rate exceeded")
    assert (await stub.Synthesize(request(), timeout=60)).audio_content  # boto3's second attempt
    assert len(fake.requests) == 2
    fake.fail_next(400, "ThrottlingException", "Rate exceeded", times=2)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(request(), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Amazon Polly is throttling this service (ThrottlingException: Rate exceeded)" in (
        info.value.details() or ""
    )
    assert retry_after_from(info.value) == pytest.approx(5.0)
    assert (await stub.Synthesize(request(), timeout=60)).audio_content


@pytest.mark.parametrize(
    ("status", "code", "times", "our_code", "message"),
    [
        (
            400,
            "InvalidSsmlException",
            1,
            grpc.StatusCode.INVALID_ARGUMENT,
            "Amazon Polly rejected the request",
        ),
        (
            400,
            "TextLengthExceededException",
            1,
            grpc.StatusCode.INVALID_ARGUMENT,
            "Amazon Polly rejected the request",
        ),
        (
            400,
            "EngineNotSupportedException",
            1,
            grpc.StatusCode.INVALID_ARGUMENT,
            "Amazon Polly rejected the request",
        ),
        (
            404,
            "LexiconNotFoundException",
            1,
            grpc.StatusCode.FAILED_PRECONDITION,
            "SORIFLOW_TTS_POLLY_LEXICON",
        ),
        (500, "ServiceFailureException", 2, grpc.StatusCode.UNAVAILABLE, "Amazon Polly failed"),
        (
            403,
            "UnrecognizedClientException",
            1,
            grpc.StatusCode.UNAVAILABLE,
            "refused this service's credentials",
        ),
    ],
)
async def test_polly_errors_map_and_the_next_request_works(
    stub: Stub, fake: FakePolly, status: int, code: str, times: int, our_code: grpc.StatusCode, message: str
) -> None:
    fake.fail_next(status, code, "something went wrong", times=times)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(request(), timeout=60)
    assert info.value.code() == our_code
    details = info.value.details() or ""
    assert message in details
    assert "something went wrong" in details
    response = await stub.Synthesize(request(), timeout=60)
    assert response.engine == "polly"


async def test_refused_credentials_and_a_missing_lexicon_are_polly_s_own_answers(
    stub: Stub, fake: FakePolly
) -> None:
    fake.refused_keys.add(KEY)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(request(), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "UnrecognizedClientException: The security token included in the request is invalid" in (
        info.value.details() or ""
    )
    fake.refused_keys.clear()
    fake.lexicons.discard("soriflow")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Synthesize(request(), timeout=60)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Lexicon not found: soriflow" in (info.value.details() or "")
    finally:
        fake.lexicons.add("soriflow")
    assert (await stub.Synthesize(request(), timeout=60)).audio_content


async def test_unknown_polly_voice_is_not_found_without_calling_polly(stub: Stub, fake: FakePolly) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Synthesize(request(voice="Zelda", language="ko-KR"), timeout=60)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "voices for ko-KR: Seoyeon, ko" in (info.value.details() or "")
    assert fake.requests == []


async def test_a_limit_raised_past_pollys_is_polly_s_invalid_argument(fake: FakePolly) -> None:
    """The byte limit is a setting; raised to 6,000, English text passes 3,000 billed characters."""
    settings = polly_settings(fake, tts_polly_max_request_bytes=6000)
    text = " ".join(f"This is sentence number {n} of a story that is far too long." for n in range(70))
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:  # type: ignore[arg-type]
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Synthesize(request(text, voice="Joanna"), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "TextLengthExceededException: Maximum text length has been exceeded" in (
        info.value.details() or ""
    )


async def test_service_starts_when_polly_is_unreachable(fake: FakePolly) -> None:
    settings = polly_settings(
        fake,
        tts_default_engine="espeak-ng",
        tts_polly_endpoint_url="http://127.0.0.1:9",
        tts_polly_timeout_s=3,
        tts_polly_max_attempts=1,
    )
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:  # type: ignore[arg-type]
        stub = tts_pb2_grpc.TextToSpeechServiceStub(channel)
        voices = (await stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=30)).voices
        assert {v.engine for v in voices} == {"espeak-ng"}
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Synthesize(request(voice="Joanna"), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # retryable, not "no such voice"
        assert "Amazon Polly is unreachable" in (info.value.details() or "")
        assert (await stub.Synthesize(request("Still speaking.", voice=""), timeout=30)).engine == "espeak-ng"
