"""The streaming policy without gRPC: LocalAgreement, incremental decoders, bounded buffer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jiwer
import numpy as np
import pytest

from soriflow.audio import AudioError, encode_alaw
from soriflow.stt.engines import TranscribeOptions, Word, load_engine
from soriflow.stt.streaming.agreement import LocalAgreement, norm
from soriflow.stt.streaming.decoders import make_decoder
from soriflow.stt.streaming.transcriber import StreamingOptions, StreamingTranscriber
from soriflow.stt.streaming.vad import VadTimeline
from soriflow.v1 import audio_pb2
from tests.stt.conftest import stt_settings
from tests.stt.speech import concat, espeak, silence

ENC = audio_pb2.AudioEncoding


def words(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(w, s, e, 0.9) for w, s, e in items]


def test_local_agreement_commits_what_two_hypotheses_share() -> None:
    la = LocalAgreement()
    assert la.insert(words(("The", 0.0, 0.2), ("whether", 0.2, 0.5))) == []
    assert la.text == "The whether"
    assert la.stability == 0.0
    committed = la.insert(words(("The", 0.0, 0.2), ("weather", 0.2, 0.5), ("today", 0.5, 0.9)))
    assert [w.word for w in committed] == ["The"]
    assert la.stable_text == "The"
    # A later decode repeats the committed word with jittered times: not committed twice.
    committed = la.insert(words(("the", 0.02, 0.19), ("weather", 0.21, 0.5), ("today.", 0.5, 0.9)))
    assert [w.word for w in committed] == ["weather", "today."]
    assert la.text == "The weather today."
    assert la.stability == 1.0
    # Ending the utterance commits a final decode's new words only.
    rest = la.commit_all(
        words(("The", 0.0, 0.2), ("weather", 0.2, 0.5), ("today.", 0.5, 0.9), ("Sunny", 1.0, 1.4))
    )
    assert [w.word for w in rest] == ["Sunny"]
    assert la.stable_text == "The weather today. Sunny"
    starts = [w.start for w in la.committed]
    assert starts == sorted(starts)


def test_headerless_decoder_carries_split_frames_and_resamples() -> None:
    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    pcm = (tone * 32767).astype("<i2").tobytes()
    decoder = make_decoder(ENC.AUDIO_ENCODING_LINEAR16, 8000, 1)
    out = []
    offset = 0
    while offset < len(pcm):
        size = int(rng.integers(1, 700))  # odd sizes split samples between messages
        out.append(decoder.feed(pcm[offset : offset + size]))
        offset += size
    out.append(decoder.finish())
    samples = np.concatenate(out)
    assert abs(len(samples) - 16000) <= 64
    spectrum = np.abs(np.fft.rfft(samples[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5  # the tone survives, no chunk clicks
    stereo_alaw = encode_alaw(np.repeat(tone[:, None], 2, axis=1).reshape(-1))
    alaw = make_decoder(ENC.AUDIO_ENCODING_ALAW, 8000, 2)
    mixed = np.concatenate([alaw.feed(stereo_alaw[:1001]), alaw.feed(stereo_alaw[1001:]), alaw.finish()])
    assert abs(len(mixed) - 16000) <= 64


def test_container_decoder_refuses_mismatched_bytes() -> None:
    decoder = make_decoder(ENC.AUDIO_ENCODING_OGG_OPUS, 0, 0)
    with pytest.raises(AudioError, match="OGG_OPUS"):
        decoder.feed(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(64))
    with pytest.raises(AudioError, match="sample_rate_hz"):
        make_decoder(ENC.AUDIO_ENCODING_MULAW, 0, 1)
    with pytest.raises(AudioError, match="required"):
        make_decoder(ENC.AUDIO_ENCODING_UNSPECIFIED, 16000, 1)


def test_wav_sent_as_linear16_is_decoded_by_its_header(ffmpeg: str) -> None:
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(44100) / 44100)).astype(np.float32)
    wav_bytes = subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-f",
            "f32le",
            "-ar",
            "44100",
            "-ac",
            "1",
            "-i",
            "pipe:0",
            "-f",
            "wav",
            "pipe:1",
        ],
        input=tone.tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    decoder = make_decoder(ENC.AUDIO_ENCODING_LINEAR16, 16000, 1)  # header says 44.1 kHz: it wins
    out = [decoder.feed(wav_bytes[i : i + 4096]) for i in range(0, len(wav_bytes), 4096)]
    samples = np.concatenate([*out, decoder.finish()])
    decoder.close()
    assert abs(len(samples) - 16000) <= 200


@pytest.mark.slow
def test_buffer_stays_bounded_on_a_long_stream(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A pause-less monologue: the buffer is trimmed at committed words, the text still comes through."""
    directory = tmp_path_factory.mktemp("monologue")
    sentences = [
        "The weather today is sunny with a light breeze from the west.",
        "Please send the quarterly report to the finance team before Friday.",
        "The children played football in the park after school.",
    ]
    speech = concat(*[espeak(t, directory, speed=170).samples for t in sentences * 2], silence(1.0))
    engine = load_engine(stt_settings())
    policy = StreamingOptions(
        decode=TranscribeOptions(language="en", beam_size=1),
        interim_results=False,
        min_chunk_s=1.5,
        silence_s=0.6,
        max_buffer_s=6.0,
    )
    transcriber = StreamingTranscriber(engine, policy)
    finals = []
    step = 16000
    for offset in range(0, len(speech), step):
        transcriber.push(speech[offset : offset + step])
        finals += transcriber.step()
        assert len(transcriber.buffer) / 16000 <= policy.max_buffer_s + 1.0
    finals += transcriber.finish()
    engine.close()
    assert len(speech) / 16000 > 3 * policy.max_buffer_s
    assert transcriber.peak_buffer_s <= policy.max_buffer_s + 1.0
    assert finals
    text = " ".join(f.text for f in finals)
    reference = " ".join(sentences * 2)
    norm = lambda s: " ".join("".join(c for c in s.lower() if c.isalnum() or c.isspace()).split())  # noqa: E731
    assert jiwer.wer(norm(reference), norm(text)) <= 0.4, text
    times = [w.start for f in finals for w in f.words]
    assert times == sorted(times)
    assert times[-1] > len(speech) / 16000 - 6


def test_incremental_vad_scores_like_the_batch_call(tmp_path: Path) -> None:
    """Frame by frame in chunks of any size, the same probabilities and segments as faster-whisper's."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model

    clip = espeak("Good morning. How are you today?", tmp_path).samples
    audio = concat(silence(0.7), clip, silence(1.0), clip, silence(0.8))
    usable = len(audio) // 512 * 512
    batch = np.asarray(get_vad_model()(audio[:usable])).reshape(-1)
    timeline = VadTimeline()
    rng = np.random.default_rng(3)
    scored, offset = [], 0
    while offset < usable:
        size = int(rng.integers(50, 4000))
        scored.append(timeline.probabilities(audio[offset : min(offset + size, usable)]))
        offset += size
    assert np.allclose(np.concatenate(scored), batch[: sum(len(s) for s in scored)], atol=1e-5)
    timeline = VadTimeline()
    for offset in range(0, len(audio), 1600):
        timeline.feed(audio[offset : offset + 1600])
    options = VadOptions(min_silence_duration_ms=100, speech_pad_ms=30, min_speech_duration_ms=120)
    expected = [(c["start"] / 16000, c["end"] / 16000) for c in get_speech_timestamps(audio, options)]
    got = [(s.start, s.end) for s in timeline.segments]
    assert len(got) == len(expected) >= 2
    for (a, b), (c, d) in zip(got, expected, strict=True):
        assert abs(a - c) < 0.05
        assert abs(b - d) < 0.05
    assert timeline.trailing_silence() >= 0.6


def test_a_hypothesis_that_repeats_itself_is_cut() -> None:
    from soriflow.stt.streaming.transcriber import _without_repeat

    looped = words(
        *[
            (w, i * 0.2, i * 0.2 + 0.2)
            for i, w in enumerate(
                ["We", "will", "refund", "the", "payment.", "We", "will", "refund", "the", "payment."]
            )
        ]
    )
    assert [w.word for w in _without_repeat(looped)] == ["We", "will", "refund", "the", "payment."]
    spoken = words(
        *[
            (w, i * 0.2, i * 0.2 + 0.2)
            for i, w in enumerate(["no", "no", "no", "it", "is", "very", "very", "good"])
        ]
    )
    assert _without_repeat(spoken) == spoken  # short repeats are how people talk


@pytest.mark.slow
def test_a_new_utterance_does_not_repeat_the_previous_final(tmp_path: Path) -> None:
    """Low-confidence speech (espeak-ng Korean, multilingual base): two utterances, two distinct finals.

    Decoded with the previous utterance's text as prompt, Whisper copied that text into the second
    utterance's hypothesis ("네, 은, 피, 가, 오후, 조, 슬플링아" after "오후, 하우스카, 촌, 마우, 조,
    슬플링아"); the copied words were aligned onto real speech, so no later check removed them.
    """
    sentences = ["오늘 날씨가 정말 좋습니다.", "내일은 비가 올 것 같습니다."]
    parts = [silence(0.5)]
    for text in sentences:
        parts += [espeak(text, tmp_path, voice="ko").samples, silence(1.5)]
    speech = concat(*parts)
    engine = load_engine(stt_settings(stt_model="base"))
    transcriber = StreamingTranscriber(engine, StreamingOptions(decode=TranscribeOptions(language="ko")))
    finals = []
    for offset in range(0, len(speech), 1600):  # 100 ms chunks, as a microphone delivers them
        transcriber.push(speech[offset : offset + 1600])
        finals += [r for r in transcriber.step() if r.is_final]
    finals += transcriber.finish()
    engine.close()
    assert len(finals) == 2, [f.text for f in finals]
    first, second = ([w for w in (norm(x) for x in f.text.split()) if w] for f in finals)
    pairs = {tuple(first[i : i + 2]) for i in range(len(first) - 1)}
    copied = [second[i : i + 2] for i in range(len(second) - 1) if tuple(second[i : i + 2]) in pairs]
    assert not copied, f"the second final repeats the first's words {copied}: {finals[1].text!r}"
    assert finals[1].utterance_index == 1
    assert finals[1].start >= finals[0].end


@pytest.mark.slow
def test_a_finished_sentence_is_finalized_after_a_shorter_silence(tmp_path: Path) -> None:
    """Whisper's closing punctuation on the whole utterance ends it after 0.35 s instead of 0.6 s."""
    speech = espeak("The children played football in the park after school.", tmp_path, speed=160).samples
    loud = np.flatnonzero(np.abs(speech) > 0.01)
    spoken_until = (loud[-1] + 1) / 16000 + 0.5  # after the leading silence below
    audio = concat(silence(0.5), speech[: loud[-1] + 1], silence(2.0))
    engine = load_engine(stt_settings())

    def final_after(sentence_silence_s: float) -> float:
        options = StreamingOptions(
            decode=TranscribeOptions(language="en", beam_size=1),
            silence_s=0.6,
            sentence_silence_s=sentence_silence_s,
        )
        transcriber = StreamingTranscriber(engine, options)
        for offset in range(0, len(audio), 1600):
            transcriber.push(audio[offset : offset + 1600])
            finals = [r for r in transcriber.step() if r.is_final]
            if finals:
                assert finals[0].text.rstrip().endswith(".")
                return transcriber.received - spoken_until
        raise AssertionError("no final")

    sentence = final_after(0.35)
    silence_only = final_after(0.6)
    engine.close()
    assert silence_only >= 0.6
    assert 0.35 <= sentence < silence_only
