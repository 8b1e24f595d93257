"""Transcript formats: JSON shape, SRT/VTT timing and cue splitting."""

from __future__ import annotations

import json

from soriflow.transcript import FORMATS, cues, render, to_dict, to_srt, to_vtt
from soriflow.v1 import audio_pb2


def _transcript(channels: int = 1) -> audio_pb2.Transcript:
    words = [
        audio_pb2.Word(
            word=f"word{i}", start_ms=i * 400, end_ms=i * 400 + 300, confidence=0.9, speaker="customer"
        )
        for i in range(30)
    ]
    long_segment = audio_pb2.Segment(
        id=0, text=" ".join(w.word for w in words), start_ms=0, end_ms=12_000, words=words, speaker="customer"
    )
    short = audio_pb2.Segment(
        id=1, text=" Hello there.", start_ms=3_723_004, end_ms=3_724_500, speaker="agent"
    )
    return audio_pb2.Transcript(
        text="x",
        segments=[long_segment, short],
        words=words,
        language_code="en",
        channel_count=channels,
        audio_duration_ms=3_725_000,
    )


def test_long_segments_are_split_into_readable_cues() -> None:
    result = cues(_transcript())
    assert len(result) >= 3
    for cue in result[:-1]:
        assert len(cue.text) <= 84
        assert cue.end_ms - cue.start_ms <= 7000
    joined = " ".join(c.text for c in result[:-1])
    assert joined == " ".join(f"word{i}" for i in range(30))


def test_srt_and_vtt_timestamps() -> None:
    srt = to_srt(_transcript())
    assert srt.startswith("1\n00:00:00,000 --> ")
    assert "01:02:03,004 --> 01:02:04,500\nHello there." in srt
    vtt = to_vtt(_transcript())
    assert vtt.startswith("WEBVTT\n")
    assert "01:02:03.004 --> 01:02:04.500\nHello there." in vtt


def test_speakers_are_labelled_for_multichannel_calls() -> None:
    srt = to_srt(_transcript(channels=2))
    assert "agent: Hello there." in srt
    assert "<v agent>Hello there." in to_vtt(_transcript(channels=2))


def test_json_shape() -> None:
    data = to_dict(_transcript())
    assert set(data) >= {"text", "language", "words", "segments"}
    assert set(data["words"][0]) >= {"word", "start_ms", "end_ms", "confidence", "channel"}


def test_split_cues_keep_the_speech_spacing() -> None:
    # Whisper words carry their leading space where the language has one: none in Japanese.
    words = [
        audio_pb2.Word(word=w, start_ms=i * 500, end_ms=i * 500 + 400)
        for i, w in enumerate(["今日", "は", "とても", "いい", "天気", "です"] * 6)
    ]
    segment = audio_pb2.Segment(text="".join(w.word for w in words), start_ms=0, end_ms=18_000, words=words)
    result = cues(audio_pb2.Transcript(segments=[segment], channel_count=1))
    assert len(result) >= 3
    assert all(" " not in c.text for c in result)
    assert "".join(c.text for c in result) == segment.text
    spaced = [audio_pb2.Word(word=f" w{i}", start_ms=i * 400, end_ms=i * 400 + 300) for i in range(30)]
    english = audio_pb2.Segment(text="x" * 100, start_ms=0, end_ms=12_000, words=spaced)
    assert cues(audio_pb2.Transcript(segments=[english]))[0].text.startswith("w0 w1 w2")


def test_vtt_text_cannot_open_tags_and_cues_hold_no_blank_lines() -> None:
    segment = audio_pb2.Segment(text="I <3 R&D\n\nreally <b>", start_ms=0, end_ms=2000, speaker="a<b>")
    vtt = to_vtt(audio_pb2.Transcript(segments=[segment], channel_count=2))
    assert "<v a&lt;b&gt;>I &lt;3 R&amp;D really &lt;b&gt;" in vtt
    srt = to_srt(audio_pb2.Transcript(segments=[segment]))
    assert "\n\n" not in srt.strip()


def test_one_renderer_for_engine_and_wire_transcripts() -> None:
    """The STT CLI renders its engine transcript through the wire form, as the gateway does."""
    from soriflow.stt.engines.base import Segment, Transcript, Word
    from soriflow.stt.messages import transcript_from_proto, transcript_to_proto

    wire = _transcript(channels=2)
    engine_side = transcript_from_proto(wire)
    assert isinstance(engine_side, Transcript)
    assert isinstance(engine_side.segments[0], Segment)
    assert isinstance(engine_side.segments[0].words[0], Word)
    again = transcript_to_proto(engine_side)
    for fmt in FORMATS:
        if fmt in ("srt", "vtt"):
            assert render(again, fmt) == render(wire, fmt), fmt
    data = json.loads(render(again, "json", model="tiny.en", processing_time_ms=12))
    assert (data["model"], data["processing_time_ms"]) == ("tiny.en", 12)
    assert set(data["segments"][0]) >= {"avg_logprob", "no_speech_probability", "speaker"}
