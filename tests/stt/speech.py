"""Real speech for the STT tests: Debian's alsa-utils clips and espeak-ng sentences."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from soriflow.audio import Audio, decode_audio, encode_wav_pcm16

ALSA = Path("/usr/share/sounds/alsa")


def alsa(name: str) -> Audio:
    """A clip such as "Front_Center" decoded to 16 kHz mono."""
    return decode_audio((ALSA / f"{name}.wav").read_bytes())


def espeak(text: str, directory: Path, *, voice: str = "en-us", speed: int = 150) -> Audio:
    """`text` spoken by espeak-ng, decoded to 16 kHz mono."""
    path = directory / f"espeak-{abs(hash((text, voice, speed)))}.wav"
    if not path.exists():
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
            check=True,
            capture_output=True,
        )
    return decode_audio(path.read_bytes())


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.float32)


def concat(*parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(np.float32)


def wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    return encode_wav_pcm16(samples, rate)
