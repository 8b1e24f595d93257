"""A real TTS server on loopback (espeak-ng, piper): outputs, lexicon, SSML, streaming, voices, errors."""

from __future__ import annotations

import itertools
import time
from typing import Any

import grpc
import numpy as np
import pytest

from soriflow.v1 import audio_pb2, tts_pb2, tts_pb2_grpc
from tests.tts.checks import assert_speech, decode, longest_silence_s, probe, rms_db

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Stub = tts_pb2_grpc.TextToSpeechServiceStub
E = audio_pb2.AudioEncoding

ENGLISH = "The quick brown fox jumps over the lazy dog. Then it runs away into the forest!"
KOREAN = "문의하신 내용이 환불 맞으신가요? 확인 후 다시 연락드리겠습니다."


def request(
    text: str = ENGLISH,
    *,
    engine: str = "",
    voice: str = "",
    language: str = "",
    encoding: int = 0,
    rate: int = 0,
    **config: float,
) -> tts_pb2.SynthesizeRequest:
    return tts_pb2.SynthesizeRequest(
        text=text,
        voice=tts_pb2.VoiceSelection(name=voice, language_code=language, engine=engine),
        audio_config=tts_pb2.AudioOutputConfig(encoding=encoding, sample_rate_hz=rate, **config),  # type: ignore[arg-type]
    )


async def synth(stub: Stub, req: tts_pb2.SynthesizeRequest) -> tts_pb2.SynthesizeResponse:
    response: tts_pb2.SynthesizeResponse = await stub.Synthesize(req, timeout=120)
    return response


async def error_of(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


# --------------------------------------------------------------------------- engines


async def test_espeak_english_default_is_linear16_wav(tts_stub: Stub) -> None:
    response = await synth(tts_stub, request())
    assert (response.engine, response.voice, response.mime_type) == ("espeak-ng", "en-us", "audio/wav")
    assert (response.encoding, response.sample_rate_hz, response.sentence_count) == (
        E.AUDIO_ENCODING_LINEAR16,
        22050,
        2,
    )
    info = probe(response.audio_content)
    assert (info["codec"], info["rate"], info["channels"], info["format"]) == ("pcm_s16le", 22050, 1, "wav")
    samples, rate = decode(response.audio_content)
    assert_speech(samples, rate, min_s=3.0, max_s=9.0)
    assert response.duration_ms == pytest.approx(len(samples) / rate * 1000, abs=1)
    assert response.prepared_text == ENGLISH


async def test_espeak_korean_with_the_lexicon_fix(tts_stub: Stub) -> None:
    fixed = await synth(tts_stub, request(KOREAN, language="ko-KR"))
    assert (fixed.engine, fixed.voice) == ("espeak-ng", "ko")
    assert fixed.prepared_text == "무니하신 내용이 환불 맞으신가요? 확인 후 다시 연락드리겠습니다."
    samples, rate = decode(fixed.audio_content)
    assert_speech(samples, rate, min_s=2.0, max_s=10.0)
    # espeak-ng is deterministic: the engine really spoke the respelling
    respelled = request(fixed.prepared_text, language="ko-KR")
    respelled.disable_lexicon = True
    assert (await synth(tts_stub, respelled)).audio_content == fixed.audio_content
    unfixed = request(KOREAN, language="ko-KR")
    unfixed.disable_lexicon = True
    raw = await synth(tts_stub, unfixed)
    assert raw.prepared_text == KOREAN
    assert raw.audio_content != fixed.audio_content


async def test_piper_english(tts_stub: Stub) -> None:
    response = await synth(tts_stub, request(engine="piper"))
    assert (response.engine, response.voice, response.sample_rate_hz) == ("piper", "en_US-joe-medium", 22050)
    samples, rate = decode(response.audio_content)
    assert_speech(samples, rate, min_s=3.0, max_s=9.0)
    # piper's two sentences are joined with the service's pause (300 ms), not butted together
    assert longest_silence_s(samples, rate) >= 0.29


@pytest.fixture(scope="module")
def whisper() -> Any:
    """The STT service's tiny.en engine in-process, to hear what a voice really said."""
    from soriflow.stt.engines import load_engine
    from soriflow.stt.settings import Settings as SttSettings

    engine = load_engine(SttSettings(stt_model="tiny.en", stt_device="cpu"))
    yield engine
    engine.close()


async def test_piper_speaks_the_lexicon_respelling(tts_stub: Stub, whisper: Any) -> None:
    """The built-in English entry "Soriflow" -> "sorry flow" with the piper engine. piper's
    output is stochastic (no byte comparison), so tiny.en listens: with the lexicon it hears
    "sorry flow"; without it piper reads the word as spelled and tiny.en hears "Sorai Flow"
    (3 of 3 runs when measured)."""
    from soriflow.audio import decode_audio
    from soriflow.stt.engines.base import TranscribeOptions

    def heard(response: tts_pb2.SynthesizeResponse) -> str:
        audio = decode_audio(response.audio_content)
        text: str = whisper.transcribe(audio, TranscribeOptions(language="en")).text
        return " ".join(text.lower().replace(".", "").replace(",", "").split())

    fixed = await synth(tts_stub, request("Welcome to Soriflow.", engine="piper"))
    assert (fixed.engine, fixed.prepared_text) == ("piper", "Welcome to sorry flow.")
    assert "sorry flow" in heard(fixed)
    raw_request = request("Welcome to Soriflow.", engine="piper")
    raw_request.disable_lexicon = True
    raw = await synth(tts_stub, raw_request)
    assert raw.prepared_text == "Welcome to Soriflow."
    assert "sorry" not in heard(raw)


async def test_voice_name_picks_its_engine(tts_stub: Stub) -> None:
    response = await synth(tts_stub, request("Hello.", voice="en_US-joe-medium"))
    assert response.engine == "piper"
    variant = await synth(tts_stub, request("Hello.", voice="en-us+f3"))
    assert (variant.engine, variant.voice) == ("espeak-ng", "en-us+f3")


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize(
    ("encoding", "rate", "codec", "fmt", "out_rate"),
    [
        (E.AUDIO_ENCODING_LINEAR16, 16000, "pcm_s16le", "wav", 16000),
        (E.AUDIO_ENCODING_LINEAR16, 48000, "pcm_s16le", "wav", 48000),
        (E.AUDIO_ENCODING_ALAW, 0, "pcm_alaw", "wav", 8000),
        (E.AUDIO_ENCODING_MP3, 0, "mp3", "mp3", 22050),
        (E.AUDIO_ENCODING_MP3, 16000, "mp3", "mp3", 16000),
        (E.AUDIO_ENCODING_OGG_OPUS, 0, "opus", "ogg", 48000),
        (E.AUDIO_ENCODING_OGG_OPUS, 16000, "opus", "ogg", 16000),
    ],
)
async def test_every_output_encoding(
    tts_stub: Stub, encoding: int, rate: int, codec: str, fmt: str, out_rate: int
) -> None:
    response = await synth(tts_stub, request(encoding=encoding, rate=rate))
    assert response.sample_rate_hz == out_rate
    info = probe(response.audio_content)
    assert (info["codec"], info["channels"], info["format"]) == (codec, 1, fmt)
    assert info["rate"] == (48000 if codec == "opus" else out_rate)
    assert info["duration"] == pytest.approx(response.duration_ms / 1000, abs=0.3)
    samples, decoded_rate = decode(response.audio_content)
    assert_speech(samples, decoded_rate, min_s=3.0, max_s=9.5)


async def test_amazon_connect_prompt_is_8khz_mono_mulaw_wav(tts_stub: Stub) -> None:
    response = await synth(tts_stub, request(KOREAN, language="ko-KR", encoding=E.AUDIO_ENCODING_MULAW))
    wav = response.audio_content
    n = int.from_bytes(wav[54:58], "little")
    assert wav[:4] == b"RIFF"
    assert int.from_bytes(wav[4:8], "little") == len(wav) - 8
    assert wav[8:38] == b"WAVEfmt " + bytes.fromhex("1200000007000100401f0000401f0000010008000000")
    assert wav[38:50] == b"fact" + (4).to_bytes(4, "little") + n.to_bytes(4, "little")
    assert wav[50:54] == b"data"
    assert len(wav) == 58 + n + n % 2
    assert (response.sample_rate_hz, response.mime_type) == (8000, "audio/wav")
    info = probe(wav)
    assert (info["codec"], info["rate"], info["channels"]) == ("pcm_mulaw", 8000, 1)
    samples, rate = decode(wav)
    assert_speech(samples, rate, min_s=2.0, max_s=10.0)
    assert response.duration_ms == round(n / 8)


async def test_prosody_rate_pitch_and_volume(tts_stub: Stub) -> None:
    text = "Please hold while I check your account."
    base = await synth(tts_stub, request(text, engine="piper"))
    fast = await synth(tts_stub, request(text, engine="piper", speaking_rate=2.0))
    espeak_fast = await synth(
        tts_stub, request(text, speaking_rate=4.0)
    )  # over espeak-ng's 450 wpm: stretched
    espeak_base = await synth(tts_stub, request(text))
    quiet = await synth(tts_stub, request(text, volume_gain_db=-20.0))
    high = await synth(tts_stub, request(text, engine="piper", pitch_semitones=5.0))
    # piper's duration predictor is stochastic and its pauses do not scale: measured 0.62-0.72 over 8 runs
    assert fast.duration_ms < 0.8 * base.duration_ms
    assert espeak_fast.duration_ms < 0.35 * espeak_base.duration_ms
    loud_db = rms_db(decode(espeak_base.audio_content)[0])
    assert rms_db(decode(quiet.audio_content)[0]) == pytest.approx(loud_db - 20, abs=3)
    assert high.duration_ms == pytest.approx(base.duration_ms, rel=0.25)


# --------------------------------------------------------------------------- SSML, templates


async def test_ssml_passes_through_to_espeak_and_is_reduced_for_piper(tts_stub: Stub) -> None:
    ssml = '<speak>First part. <break time="1500ms"/> <prosody rate="slow">Second part.</prosody></speak>'
    espeak = await synth(tts_stub, tts_pb2.SynthesizeRequest(ssml=ssml))
    assert espeak.prepared_text.startswith("<speak>")
    assert '<break time="1500ms" />' in espeak.prepared_text
    assert longest_silence_s(*decode(espeak.audio_content)) >= 1.4
    piper = await synth(
        tts_stub, tts_pb2.SynthesizeRequest(ssml=ssml, voice=tts_pb2.VoiceSelection(engine="piper"))
    )
    assert "<" not in piper.prepared_text
    assert piper.prepared_text.split("\n") == ["First part.", "Second part."]
    assert longest_silence_s(*decode(piper.audio_content)) >= 1.4


async def test_template_is_rendered_then_lexicon_applied(tts_stub: Stub) -> None:
    req = tts_pb2.SynthesizeRequest(
        template=tts_pb2.TextTemplate(
            template="문의하신 내용이 {summary} 맞으신가요?", variables={"summary": "환불"}
        ),
        voice=tts_pb2.VoiceSelection(language_code="ko-KR"),
    )
    response = await synth(tts_stub, req)
    assert response.prepared_text == "무니하신 내용이 환불 맞으신가요?"
    missing = tts_pb2.SynthesizeRequest(template=tts_pb2.TextTemplate(template="{summary} {name}"))
    err = await error_of(tts_stub.Synthesize(missing, timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "summary, name" in (err.details() or "")


# --------------------------------------------------------------------------- streaming


async def test_stream_sends_first_sentence_before_the_last_is_made(tts_stub: Stub) -> None:
    sentences = [f"This is sentence {n}, from the neural voice." for n in ("one", "two", "three", "four")]
    req = tts_pb2.SynthesizeStreamRequest(request=request(" ".join(sentences), engine="piper"))
    started = time.perf_counter()
    arrivals: list[float] = []
    chunks: list[tts_pb2.SynthesizeStreamResponse] = []
    async for chunk in tts_stub.SynthesizeStream(req, timeout=120):
        arrivals.append(time.perf_counter() - started)
        chunks.append(chunk)
    assert [c.sentence_index for c in chunks] == list(range(4))
    assert [c.text for c in chunks] == sentences
    assert [c.is_last for c in chunks] == [False] * 3 + [True]
    # the first audio arrived while three more sentences were still to be synthesized
    assert arrivals[0] < 0.5 * arrivals[-1]
    assert arrivals == sorted(arrivals)
    assert arrivals[-1] - arrivals[-2] > 0.02
    pcm = b"".join(c.audio_content for c in chunks)  # headerless LINEAR16 concatenates
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    assert_speech(samples, 22050, min_s=6.0, max_s=25.0)
    offsets = [c.offset_ms for c in chunks]
    assert offsets[0] == 0
    for prev, cur in itertools.pairwise(chunks):
        assert cur.offset_ms == pytest.approx(prev.offset_ms + prev.duration_ms, abs=1)
    assert (offsets[-1] + chunks[-1].duration_ms) == pytest.approx(len(samples) / 22.05, abs=2)


async def test_stream_mulaw_and_mp3_chunks_concatenate(tts_stub: Stub) -> None:
    text = "One short sentence. Another short sentence. The last one."
    mulaw = [
        c
        async for c in tts_stub.SynthesizeStream(
            tts_pb2.SynthesizeStreamRequest(request=request(text, encoding=E.AUDIO_ENCODING_MULAW)),
            timeout=60,
        )
    ]
    assert {c.sample_rate_hz for c in mulaw} == {8000}
    assert sum(len(c.audio_content) for c in mulaw) == pytest.approx(
        sum(c.duration_ms for c in mulaw) * 8, abs=8
    )
    mp3 = [
        c
        async for c in tts_stub.SynthesizeStream(
            tts_pb2.SynthesizeStreamRequest(request=request(text, encoding=E.AUDIO_ENCODING_MP3)), timeout=60
        )
    ]
    joined = b"".join(c.audio_content for c in mp3)
    samples, rate = decode(joined)
    expected = sum(c.duration_ms for c in mp3) / 1000
    assert expected <= len(samples) / rate <= expected + 3 * 2400 / rate
    assert probe(joined)["codec"] == "mp3"


# --------------------------------------------------------------------------- voices


async def test_list_voices_filters(tts_stub: Stub) -> None:
    everything = (await tts_stub.ListVoices(tts_pb2.ListVoicesRequest(), timeout=30)).voices
    assert len(everything) > 100
    assert [v.engine for v in everything] == sorted(
        (v.engine for v in everything), key=["espeak-ng", "piper"].index
    )
    korean = (await tts_stub.ListVoices(tts_pb2.ListVoicesRequest(language_code="ko"), timeout=30)).voices
    assert [(v.name, list(v.language_codes), v.engine) for v in korean] == [("ko", ["ko"], "espeak-ng")]
    us = (await tts_stub.ListVoices(tts_pb2.ListVoicesRequest(language_code="en-US"), timeout=30)).voices
    names = {v.name for v in us}
    assert {"en-us", "en-us-nyc", "en_US-joe-medium"} <= names
    assert "en-gb" not in names
    piper = (await tts_stub.ListVoices(tts_pb2.ListVoicesRequest(engine="piper"), timeout=30)).voices
    assert len(piper) == 1
    assert (piper[0].natural_sample_rate_hz, piper[0].supports_ssml) == (22050, False)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("req", "code", "message"),
    [
        (request(""), "INVALID_ARGUMENT", "empty"),
        (request(" \n\t "), "INVALID_ARGUMENT", "empty"),
        (request("... ?!", engine="piper"), "INVALID_ARGUMENT", "no words"),
        (tts_pb2.SynthesizeRequest(), "INVALID_ARGUMENT", "no input"),
        (tts_pb2.SynthesizeRequest(ssml="<speak>broken <s>tag</speak>"), "INVALID_ARGUMENT", "invalid SSML"),
        (
            tts_pb2.SynthesizeRequest(ssml="<speak><audio src='x'/></speak>"),
            "INVALID_ARGUMENT",
            "not supported",
        ),
        (tts_pb2.SynthesizeRequest(ssml='<speak><break time="1s"/></speak>'), "INVALID_ARGUMENT", "no words"),
        (request("a" * 20_001), "INVALID_ARGUMENT", "over this server's limit of 20000"),
        (request(voice="ko-KR-Wavenet-A"), "NOT_FOUND", "unknown voice 'ko-KR-Wavenet-A'"),
        (request(voice="nobody", language="ko-KR"), "NOT_FOUND", "voices for ko-KR: ko"),
        (request(voice="en-us", language="ko-KR"), "INVALID_ARGUMENT", "speaks en-US, not 'ko-KR'"),
        (request(engine="google"), "NOT_FOUND", "not enabled"),
        (request(engine="festival"), "NOT_FOUND", "unknown engine"),
        (request(engine="piper", language="ko-KR"), "NOT_FOUND", "no voice for language 'ko-KR'"),
        (request(encoding=E.AUDIO_ENCODING_FLAC), "INVALID_ARGUMENT", "FLAC is not supported"),
        (request(encoding=E.AUDIO_ENCODING_MP3, rate=7000), "INVALID_ARGUMENT", "MP3 supports"),
        (request(speaking_rate=9.0), "INVALID_ARGUMENT", "speaking_rate must be"),
    ],
)
async def test_bad_requests_get_the_right_status(
    tts_stub: Stub, req: tts_pb2.SynthesizeRequest, code: str, message: str
) -> None:
    err = await error_of(tts_stub.Synthesize(req, timeout=30))
    assert (err.code().name, message in (err.details() or "")) == (code, True), err.details()
    stream_err = await error_of(_drain(tts_stub, req))
    assert stream_err.code().name == code


async def _drain(stub: Stub, req: tts_pb2.SynthesizeRequest) -> None:
    async for _ in stub.SynthesizeStream(tts_pb2.SynthesizeStreamRequest(request=req), timeout=30):
        pass


async def test_unknown_voice_lists_what_exists(tts_stub: Stub) -> None:
    err = await error_of(tts_stub.Synthesize(request(voice="en-xx"), timeout=30))
    details = err.details() or ""
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # no language given: the voices of the language the name starts with
    assert "en_US-joe-medium" in details
    assert "en-us" in details
    assert " ko" not in details
    err = await error_of(tts_stub.Synthesize(request(voice="mystery"), timeout=30))
    assert "call ListVoices" in (err.details() or "")  # over 30 voices: the message points to the full list
