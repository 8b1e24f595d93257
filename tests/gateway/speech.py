"""Real speech for gateway tests, made with espeak-ng (Debian) at test time."""

from __future__ import annotations

import subprocess

import numpy as np

from soriflow.audio import decode_audio, encode_wav_pcm16


def speak(text: str, voice: str = "en-us", speed_wpm: int = 160) -> np.ndarray:
    """16 kHz mono float32 speech of `text`."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "--stdout", text], check=True, capture_output=True
    ).stdout
    return decode_audio(wav, target_rate=16000).samples


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.float32)


def wav(samples: np.ndarray) -> bytes:
    return encode_wav_pcm16(samples, 16000)


def stereo_call(
    turns: list[tuple[int, str]], gap_s: float = 0.6, voices: tuple[str, str] = ("en-us", "en-us+m3")
) -> bytes:
    """A two-channel call: each turn (channel, text) spoken on its channel (by that channel's espeak-ng
    voice) while the other is silent."""
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for channel, text in turns:
        voice = voices[channel]
        speech = np.concatenate([speak(text, voice), silence(gap_s)])
        quiet = np.zeros_like(speech)
        left.append(speech if channel == 0 else quiet)
        right.append(quiet if channel == 0 else speech)
    return encode_wav_pcm16(np.stack([np.concatenate(left), np.concatenate(right)]), 16000)
