"""A `Transcript` message in the formats people use: text, JSON, SRT and WebVTT.

Shared by `soriflow transcribe` and the gateway's `transcribe` pipeline so a
subtitle file looks the same whichever way it was made. Cues follow the
usual subtitle conventions: at most two lines of ~42 characters, at most
~7 seconds, split at word boundaries when word timestamps exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soriflow.v1 import audio_pb2

MAX_CUE_CHARS = 84
MAX_CUE_MS = 7000


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str
    speaker: str = ""


def word_dict(word: audio_pb2.Word) -> dict[str, Any]:
    return {
        "word": word.word,
        "start_ms": word.start_ms,
        "end_ms": word.end_ms,
        "confidence": round(float(word.confidence), 4),
        "channel": word.channel,
        "speaker": word.speaker,
    }


def to_dict(transcript: audio_pb2.Transcript) -> dict[str, Any]:
    """The JSON shape of `soriflow transcribe --json` and the transcript.json output."""
    return {
        "text": transcript.text,
        "language": transcript.language_code,
        "language_probability": round(float(transcript.language_probability), 4),
        "duration_ms": transcript.audio_duration_ms,
        "channel_count": transcript.channel_count,
        "segments": [
            {
                "id": s.id,
                "start_ms": s.start_ms,
                "end_ms": s.end_ms,
                "text": s.text.strip(),
                "channel": s.channel,
                "speaker": s.speaker,
            }
            for s in transcript.segments
        ],
        "words": [word_dict(w) for w in transcript.words],
    }


def cues(transcript: audio_pb2.Transcript) -> list[Cue]:
    """Subtitle cues: segments, split by words where a segment is too long to read."""
    out: list[Cue] = []
    multi_speaker = transcript.channel_count > 1
    for segment in transcript.segments:
        speaker = segment.speaker if multi_speaker else ""
        words = list(segment.words)
        text = segment.text.strip()
        if not text:
            continue
        if not words or (len(text) <= MAX_CUE_CHARS and segment.end_ms - segment.start_ms <= MAX_CUE_MS):
            out.append(Cue(segment.start_ms, segment.end_ms, text, speaker))
            continue
        current: list[audio_pb2.Word] = []
        for word in words:
            candidate = " ".join(w.word.strip() for w in [*current, word])
            too_long = len(candidate) > MAX_CUE_CHARS or (
                current and word.end_ms - current[0].start_ms > MAX_CUE_MS
            )
            if current and too_long:
                out.append(
                    Cue(
                        current[0].start_ms,
                        current[-1].end_ms,
                        " ".join(w.word.strip() for w in current),
                        speaker,
                    )
                )
                current = []
            current.append(word)
        if current:
            out.append(
                Cue(
                    current[0].start_ms,
                    current[-1].end_ms,
                    " ".join(w.word.strip() for w in current),
                    speaker,
                )
            )
    return out


def _wrap(text: str, width: int = MAX_CUE_CHARS // 2) -> str:
    """Breaks a cue into at most two balanced lines."""
    if len(text) <= width:
        return text
    words = text.split()
    best, best_diff = text, len(text)
    for i in range(1, len(words)):
        first, second = " ".join(words[:i]), " ".join(words[i:])
        diff = abs(len(first) - len(second))
        if diff < best_diff:
            best, best_diff = f"{first}\n{second}", diff
    return best


def _timestamp(ms: int, separator: str) -> str:
    ms = max(0, int(ms))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def to_srt(transcript: audio_pb2.Transcript) -> str:
    blocks = []
    for i, cue in enumerate(cues(transcript), start=1):
        text = f"{cue.speaker}: {cue.text}" if cue.speaker else cue.text
        blocks.append(
            f"{i}\n{_timestamp(cue.start_ms, ',')} --> {_timestamp(cue.end_ms, ',')}\n{_wrap(text)}\n"
        )
    return "\n".join(blocks)


def to_vtt(transcript: audio_pb2.Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for cue in cues(transcript):
        text = f"<v {cue.speaker}>{cue.text}" if cue.speaker else cue.text
        blocks.append(f"{_timestamp(cue.start_ms, '.')} --> {_timestamp(cue.end_ms, '.')}\n{_wrap(text)}\n")
    return "\n".join(blocks)


def to_text(transcript: audio_pb2.Transcript) -> str:
    return transcript.text.strip() + "\n"
