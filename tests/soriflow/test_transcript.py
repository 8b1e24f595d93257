"""Transcript formats: JSON shape, SRT/VTT timing and cue splitting."""

from __future__ import annotations

from soriflow.transcript import cues, to_dict, to_srt, to_vtt
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
