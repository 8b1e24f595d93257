"""Per-channel transcripts: each channel keeps the language detected for it (model-free)."""

from __future__ import annotations

from soriflow.stt.channels import merge_channels
from soriflow.stt.engines.base import Segment, Transcript
from soriflow.stt.messages import transcript_from_proto, transcript_to_proto


def channel(text: str, start: float, language: str, probability: float) -> Transcript:
    return Transcript(
        segments=(Segment(id=0, start=start, end=start + 1, text=text),),
        language=language,
        language_probability=probability,
        duration=5,
    )


def test_each_segment_carries_its_channels_language() -> None:
    """One channel detected as Thai, the other as Finnish: the merged transcript keeps both apart."""
    merged = merge_channels(
        [
            channel("ขอเกิดชาตุง ชาตุขา ขาหนึ่ง", 1.0, "th", 0.67).labelled(0, "customer"),
            channel("kiitos", 0.0, "fi", 0.41).labelled(1, "agent"),
        ]
    )
    wire = transcript_to_proto(merged)
    assert wire.language_code == "th"  # the channel with most text
    assert [(s.speaker, s.language_code, round(s.language_probability, 2)) for s in wire.segments] == [
        ("agent", "fi", 0.41),
        ("customer", "th", 0.67),
    ]
    assert [s.language for s in transcript_from_proto(wire).segments] == ["fi", "th"]


def test_a_mono_transcripts_segments_have_its_language() -> None:
    wire = transcript_to_proto(channel("hello there", 0.0, "en", 0.9))
    assert (wire.segments[0].language_code, round(wire.segments[0].language_probability, 2)) == ("en", 0.9)
