"""The engine interface: one small surface both Whisper runtimes implement.

The servicer, the streaming policy, the CLI and other services in-process
(scoring asks for word timestamps) only ever see `Engine`, `TranscribeOptions`
and `Transcript`; which runtime runs underneath is a setting. Times inside the
service are float seconds, as both runtimes report them; protobuf messages
carry integer milliseconds (the `*_ms` properties).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from soriflow.audio import Audio, resample
from soriflow.errors import Cancelled

Task = Literal["transcribe", "translate"]
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode; the defaults are Whisper's own."""

    #: ISO 639-1 code, or None to detect the language.
    language: str | None = None
    task: Task = "transcribe"
    word_timestamps: bool = True
    beam_size: int = 5
    initial_prompt: str | None = None
    hotwords: tuple[str, ...] = ()
    vad_filter: bool = True
    #: Feed each window's text as prompt to the next (Whisper's default); streaming turns it off.
    condition_on_previous_text: bool = True
    #: Text the decoder must start with.
    prefix: str | None = None
    #: Temperatures tried in turn while a window's output looks wrong (repetitive or unlikely):
    #: Whisper's default ladder. Streaming keeps a short one; its next decode is another chance.
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    #: Cap on tokens per window (None: the model's limit). Streaming sets it from the audio length
    #: so that a decode caught in a repetition loop cannot run long.
    max_new_tokens: int | None = None
    #: Encode audio of up to 10 s in a 10 s window instead of Whisper's 30 s (faster-whisper
    #: only): the encoder does a third of the work at the same accuracy on short audio
    #: (measured in docs/stt.md). Streaming decodes use it; Recognize keeps Whisper's window.
    short_window: bool = False


@dataclass(frozen=True)
class Word:
    """A word with times in seconds from the start of the audio and its probability."""

    word: str
    start: float
    end: float
    probability: float
    channel: int = 0
    speaker: str = ""

    @property
    def start_ms(self) -> int:
        return round(self.start * 1000)

    @property
    def end_ms(self) -> int:
        return round(self.end * 1000)


@dataclass(frozen=True)
class Segment:
    """A stretch of speech as Whisper segments it."""

    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    channel: int = 0
    speaker: str = ""
    #: Language of this segment's channel and its probability, when channels were transcribed apart
    #: (each is detected on its own); empty: the transcript's.
    language: str = ""
    language_probability: float = 0.0

    @property
    def start_ms(self) -> int:
        return round(self.start * 1000)

    @property
    def end_ms(self) -> int:
        return round(self.end * 1000)


@dataclass(frozen=True)
class Transcript:
    """What a transcription returns: segments (with words), language and duration."""

    segments: tuple[Segment, ...]
    language: str
    language_probability: float
    duration: float
    channel_count: int = 1

    @property
    def text(self) -> str:
        """Plain text; one `speaker: text` line per segment when channels were transcribed apart."""
        if self.channel_count > 1:
            return "\n".join(f"{s.speaker}: {s.text.strip()}" for s in self.segments if s.text.strip())
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @property
    def words(self) -> tuple[Word, ...]:
        """Every word in time order."""
        words = [w for s in self.segments for w in s.words]
        if self.channel_count > 1:
            words.sort(key=lambda w: (w.start, w.channel))
        return tuple(words)

    def labelled(self, channel: int, speaker: str) -> Transcript:
        """The same transcript with every segment and word marked as heard on `channel`
        (and in the language detected for it)."""
        segments = tuple(
            replace(
                s,
                channel=channel,
                speaker=speaker,
                words=tuple(replace(w, channel=channel, speaker=speaker) for w in s.words),
                language=self.language,
                language_probability=self.language_probability,
            )
            for s in self.segments
        )
        return replace(self, segments=segments)


@dataclass(frozen=True)
class EngineInfo:
    """What a loaded engine runs, as ListModels reports it."""

    name: str
    engine: str
    source: str
    device: str
    compute_type: str
    multilingual: bool
    languages: tuple[str, ...] = field(default_factory=tuple)


class Engine(Protocol):
    """A loaded Whisper model. Thread-safe: the service calls it from worker threads."""

    info: EngineInfo
    #: How many `transcribe` calls can usefully run at once (engine workers).
    parallelism: int

    def transcribe(
        self, audio: Audio, options: TranscribeOptions, cancel: threading.Event | None = None
    ) -> Transcript:
        """Transcribes mono (or mixed-down) audio; raises `Cancelled` once `cancel` is set."""
        ...

    def close(self) -> None:
        """Frees the model."""
        ...


def mono_16k(audio: Audio) -> npt.NDArray[np.float32]:
    """The samples Whisper wants: mono float32 at 16 kHz."""
    mono = audio.to_mono()
    samples = (
        mono.samples
        if mono.sample_rate == SAMPLE_RATE
        else resample(mono.samples, mono.sample_rate, SAMPLE_RATE)
    )
    return np.ascontiguousarray(samples, dtype=np.float32)


def check_cancel(cancel: threading.Event | None) -> None:
    """Raises `Cancelled` when the caller has gone away (checked between segments)."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("transcription stopped: the client cancelled or its deadline passed")
