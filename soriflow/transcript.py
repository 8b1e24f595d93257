"""The one renderer of a `Transcript` message: text, JSON, SRT and WebVTT.

Every caller goes through here (`soriflow transcribe`, in process, against a
server or streamed; the gateway's `transcribe` outputs), so a subtitle file
looks the same whichever way it was made. Cues follow the usual subtitle
conventions: at most two lines of ~42 characters, at most ~7 seconds, split
at word boundaries when word timestamps exist; on multi-channel transcripts
each cue starts with its speaker (`agent: ` in SRT, `<v agent>` in WebVTT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from soriflow.v1 import audio_pb2

MAX_CUE_CHARS = 84
MAX_CUE_MS = 7000

Format = Literal["text", "json", "srt", "vtt"]
FORMATS: tuple[Format, ...] = ("text", "json", "srt", "vtt")


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


def to_dict(
    transcript: audio_pb2.Transcript, *, model: str = "", processing_time_ms: int | None = None
) -> dict[str, Any]:
    """The JSON shape of `soriflow transcribe --json` and the transcript.json output (times in ms)."""
    record: dict[str, Any] = {
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
                "avg_logprob": round(float(s.avg_logprob), 4),
                "no_speech_probability": round(float(s.no_speech_probability), 4),
                "language": s.language_code,
                "language_probability": round(float(s.language_probability), 4),
            }
            for s in transcript.segments
        ],
        "words": [word_dict(w) for w in transcript.words],
    }
    if model:
        record["model"] = model
    if processing_time_ms is not None:
        record["processing_time_ms"] = processing_time_ms
    return record


def _join(words: list[audio_pb2.Word], spaced: bool) -> str:
    """The words as the speech had them: Whisper words carry their leading space where the
    language uses spaces; bare words are spaced only if the segment's text has spaces (it has
    none in Japanese or Chinese)."""
    if any(w.word[:1].isspace() for w in words[1:]):
        return " ".join("".join(w.word for w in words).split())
    return (" " if spaced else "").join(w.word.strip() for w in words if w.word.strip())


def cues(transcript: audio_pb2.Transcript) -> list[Cue]:
    """Subtitle cues: segments, split by words where a segment is too long to read."""
    out: list[Cue] = []
    multi_speaker = transcript.channel_count > 1
    for segment in transcript.segments:
        speaker = segment.speaker if multi_speaker else ""
        words = list(segment.words)
        text = " ".join(segment.text.split())  # one cue's text never holds a blank line
        if not text:
            continue
        if not words or (len(text) <= MAX_CUE_CHARS and segment.end_ms - segment.start_ms <= MAX_CUE_MS):
            out.append(Cue(segment.start_ms, segment.end_ms, text, speaker))
            continue
        current: list[audio_pb2.Word] = []
        spaced = " " in text
        for word in words:
            candidate = _join([*current, word], spaced)
            too_long = len(candidate) > MAX_CUE_CHARS or (
                current and word.end_ms - current[0].start_ms > MAX_CUE_MS
            )
            if current and too_long:
                out.append(Cue(current[0].start_ms, current[-1].end_ms, _join(current, spaced), speaker))
                current = []
            current.append(word)
        if current:
            out.append(Cue(current[0].start_ms, current[-1].end_ms, _join(current, spaced), speaker))
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


def _vtt_escape(text: str) -> str:
    """WebVTT cue text reads '<' as a tag and '&' as an entity; "I <3 it" must stay text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: audio_pb2.Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for cue in cues(transcript):
        text = _wrap(_vtt_escape(cue.text))
        if cue.speaker:
            text = f"<v {_vtt_escape(cue.speaker)}>{text}"
        blocks.append(f"{_timestamp(cue.start_ms, '.')} --> {_timestamp(cue.end_ms, '.')}\n{text}\n")
    return "\n".join(blocks)


def to_text(transcript: audio_pb2.Transcript) -> str:
    return transcript.text.strip() + "\n"


def render(
    transcript: audio_pb2.Transcript, fmt: Format, *, model: str = "", processing_time_ms: int | None = None
) -> str:
    """The transcript in `fmt`, ending with a newline; `model` and the time go into JSON only."""
    if fmt == "json":
        record = to_dict(transcript, model=model, processing_time_ms=processing_time_ms)
        return json.dumps(record, ensure_ascii=False) + "\n"
    if fmt == "srt":
        return to_srt(transcript)
    if fmt == "vtt":
        return to_vtt(transcript)
    return to_text(transcript)
