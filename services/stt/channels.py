"""Per-channel transcription of call recordings.

Amazon Connect (and most call recorders) put the agent on one channel and the
customer on the other. Mixing them loses who said what and makes Whisper
decode two overlapping voices; transcribing each channel alone and merging the
segments by start time gives one conversation with a speaker on every line.
Channels run concurrently when the engine has workers to spare.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from soriflow.audio import Audio
from soriflow.stt.engines.base import Engine, TranscribeOptions, Transcript

MAX_CHANNELS = 8


def channel_label(labels: Sequence[str], channel: int) -> str:
    """The caller's label for a channel, or "ch<N>"."""
    if channel < len(labels) and labels[channel].strip():
        return labels[channel].strip()
    return f"ch{channel}"


def merge_channels(parts: Sequence[Transcript]) -> Transcript:
    """One time-ordered transcript from per-channel ones (already labelled)."""
    segments = sorted((s for t in parts for s in t.segments), key=lambda s: (s.start, s.channel))
    segments = [replace(s, id=i) for i, s in enumerate(segments)]
    # The language heard most: the channel with the most text decides (one side may be silent).
    main = max(parts, key=lambda t: sum(len(s.text) for s in t.segments))
    return Transcript(
        segments=tuple(segments),
        language=main.language,
        language_probability=main.language_probability,
        duration=max(t.duration for t in parts),
        channel_count=len(parts),
    )


def transcribe_channels(
    engine: Engine,
    audio: Audio,
    options: TranscribeOptions,
    labels: Sequence[str] = (),
    cancel: threading.Event | None = None,
) -> Transcript:
    """Each channel of `audio` transcribed on its own and merged in time order."""
    count = audio.channel_count
    if count > MAX_CHANNELS:
        from soriflow.errors import InvalidArgument

        raise InvalidArgument(
            f"the audio has {count} channels; CHANNEL_MODE_SEPARATE handles at most {MAX_CHANNELS}"
        )

    def one(channel: int) -> Transcript:
        mono = Audio(audio.channel(channel), audio.sample_rate)
        return engine.transcribe(mono, options, cancel).labelled(channel, channel_label(labels, channel))

    workers = max(1, min(count, engine.parallelism))
    if workers == 1:
        parts = [one(c) for c in range(count)]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stt-channel") as pool:
            parts = list(pool.map(one, range(count)))
    return merge_channels(parts)
