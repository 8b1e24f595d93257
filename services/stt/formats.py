"""Transcript output formats: plain text, JSON, SubRip (SRT) and WebVTT.

The CLI prints these and the gateway's `transcribe` pipeline writes them next
to the input, so they live with the service rather than in the CLI. Subtitle
cues are Whisper segments; on multi-channel transcripts each cue starts with
its speaker (`<v agent>` in WebVTT, `agent: ` in SRT).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from soriflow.stt.engines.base import Transcript

Format = Literal["text", "json", "srt", "vtt"]
FORMATS: tuple[Format, ...] = ("text", "json", "srt", "vtt")


def _clock(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def to_dict(
    transcript: Transcript, *, processing_time_ms: int | None = None, model: str = ""
) -> dict[str, Any]:
    """The JSON shape: text, language, duration, words and segments (times in milliseconds)."""

    def word(w: Any) -> dict[str, Any]:
        return {
            "word": w.word,
            "start_ms": w.start_ms,
            "end_ms": w.end_ms,
            "confidence": round(float(w.probability), 4),
            "channel": w.channel,
            "speaker": w.speaker,
        }

    record: dict[str, Any] = {
        "text": transcript.text,
        "language": transcript.language,
        "language_probability": round(float(transcript.language_probability), 4),
        "duration_ms": round(transcript.duration * 1000),
        "channel_count": transcript.channel_count,
        "words": [word(w) for w in transcript.words],
        "segments": [
            {
                "id": i,
                "text": s.text,
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
                "channel": s.channel,
                "speaker": s.speaker,
                "avg_logprob": round(s.avg_logprob, 4),
                "no_speech_probability": round(s.no_speech_prob, 4),
            }
            for i, s in enumerate(transcript.segments)
        ],
    }
    if model:
        record["model"] = model
    if processing_time_ms is not None:
        record["processing_time_ms"] = processing_time_ms
    return record


def to_srt(transcript: Transcript) -> str:
    cues = []
    for index, seg in enumerate((s for s in transcript.segments if s.text.strip()), start=1):
        text = f"{seg.speaker}: {seg.text.strip()}" if transcript.channel_count > 1 else seg.text.strip()
        cues.append(f"{index}\n{_clock(seg.start, ',')} --> {_clock(seg.end, ',')}\n{text}\n")
    return "\n".join(cues)


def to_vtt(transcript: Transcript) -> str:
    cues = ["WEBVTT\n"]
    for seg in transcript.segments:
        if not seg.text.strip():
            continue
        text = f"<v {seg.speaker}>{seg.text.strip()}" if transcript.channel_count > 1 else seg.text.strip()
        cues.append(f"{_clock(seg.start, '.')} --> {_clock(seg.end, '.')}\n{text}\n")
    return "\n".join(cues)


def render(transcript: Transcript, fmt: Format, **extra: Any) -> str:
    """The transcript in `fmt`, ending with a newline."""
    if fmt == "json":
        return json.dumps(to_dict(transcript, **extra), ensure_ascii=False) + "\n"
    if fmt == "srt":
        return to_srt(transcript)
    if fmt == "vtt":
        return to_vtt(transcript)
    return str(transcript.text) + "\n"
