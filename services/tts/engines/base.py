"""The engine interface: what the service needs from espeak-ng, piper, Google and Polly alike.

An engine turns one chunk of text (plain, or SSML when it says it takes SSML)
into mono float samples, for one voice. Everything around that (sentences,
lexicon, pauses, resampling, encoding, prosody it cannot do itself) is the
service's, so engines stay small. An engine signals a broken engine with
`EngineFailure` (UNAVAILABLE); the service then calls `reset()` so that the
next request gets a fresh engine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from soriflow.errors import Cancelled, Unavailable
from soriflow.tts.voices import VoiceInfo

FloatArray = npt.NDArray[np.float32]


class EngineFailure(Unavailable):
    """The engine crashed or misbehaved; retrying (on a fresh engine) may work."""


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine does natively; the service does the rest."""

    #: Takes SSML input (else SSML is reduced to text and pauses).
    ssml: bool
    #: How lexicon entries reach it: respelled text, or SSML `<sub alias>`.
    lexicon_mode: Literal["rewrite", "sub"]
    #: Largest text or SSML of one call, in UTF-8 bytes.
    max_input_bytes: int
    #: Speaking rates it applies itself; outside, the service stretches its output.
    rate_range: tuple[float, float]
    #: Applies pitch (semitones) and volume gain (dB) itself.
    pitch: bool = False
    volume: bool = False


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-call settings; fields the engine's capabilities exclude are left at their neutral value."""

    speaking_rate: float = 1.0
    pitch_semitones: float = 0.0
    volume_gain_db: float = 0.0
    #: The rate the service will deliver (engines that resample well themselves may use it).
    output_rate_hz: int = 0


@dataclass(frozen=True)
class EngineAudio:
    samples: FloatArray
    sample_rate: int


class Engine(Protocol):
    name: str
    capabilities: EngineCapabilities

    def load(self) -> None:
        """Loads models / checks the binary; blocking, called once at service start."""

    def voices(self) -> list[VoiceInfo]:
        """The voices it offers now."""

    def find_voice(self, name: str) -> VoiceInfo | None:
        """The voice called `name` (engines may accept names ListVoices does not list, e.g. variants)."""

    def synthesize(
        self, text: str, *, ssml: bool, voice: VoiceInfo, options: SynthesisOptions, cancel: threading.Event
    ) -> EngineAudio:
        """Speaks one chunk; raises EngineFailure, InvalidArgument, ResourceExhausted, ..."""

    def reset(self) -> None:
        """Drops state after a failure so the next call starts afresh."""

    def close(self) -> None:
        """Releases resources at shutdown."""


def check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("the request was cancelled or its deadline passed")


def find_by_name(voices: list[VoiceInfo], name: str) -> VoiceInfo | None:
    """Exact name first, then case-insensitive."""
    for voice in voices:
        if voice.name == name:
            return voice
    folded = name.casefold()
    return next((v for v in voices if v.name.casefold() == folded), None)
