"""Frame-level signal features on a 10 ms grid: energy, silence, MFCCs, clipping.

Everything here is numpy/scipy only: librosa's MFCC costs ~30 s of numba
compilation on its first call in a fresh process, which a service answering
its first request (or a CLI run) cannot afford, and the features are simple.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.fft import dct

FloatArray = npt.NDArray[np.float64]

#: One frame every 10 ms: the grid of pitch, energy, MFCC and the forced alignment.
HOP_S = 0.01
_WINDOW_S = 0.025
_SILENCE_FLOOR_DB = -100.0


def frame_signal(samples: npt.NDArray[np.floating], rate: int, window_s: float = _WINDOW_S) -> FloatArray:
    """Frames (n_frames, window) centred at k * 10 ms, zero-padded at both ends."""
    hop = round(HOP_S * rate)
    win = round(window_s * rate)
    n_frames = max(1, int(np.ceil(len(samples) / hop)))
    padded = np.zeros(n_frames * hop + win, dtype=np.float64)
    padded[win // 2 : win // 2 + len(samples)] = samples
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    frames: FloatArray = padded[idx]
    return frames


def energy_db(samples: npt.NDArray[np.floating], rate: int) -> FloatArray:
    """RMS level of each 10 ms frame in dBFS (floored at -100 dB, never -inf)."""
    frames = frame_signal(samples, rate)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    out: FloatArray = 20.0 * np.log10(np.maximum(rms, 1e-5))
    return np.maximum(out, _SILENCE_FLOOR_DB)


@dataclass(frozen=True)
class SilenceModel:
    """Per-recording split of frames into speech and silence by level."""

    speech_db: float
    noise_db: float
    threshold_db: float

    def silent(self, levels: FloatArray) -> npt.NDArray[np.bool_]:
        mask: npt.NDArray[np.bool_] = levels < self.threshold_db
        return mask


def silence_model(levels: FloatArray) -> SilenceModel:
    """Threshold a quarter of the way from the noise floor to the speech level, at most 40 dB under speech.

    The floor (10th percentile) and speech level (95th percentile) adapt to
    the recording's gain and noise, so a quiet phone recording and a loud
    studio one split the same way; the 40 dB cap keeps digital silence (a
    floor of -100 dB) from pulling the threshold under real room noise.
    """
    if levels.size == 0:
        return SilenceModel(_SILENCE_FLOOR_DB, _SILENCE_FLOOR_DB, _SILENCE_FLOOR_DB)
    speech = float(np.percentile(levels, 95))
    noise = float(np.percentile(levels, 10))
    threshold = max(noise + 0.25 * (speech - noise), speech - 40.0)
    return SilenceModel(speech, noise, threshold)


def has_speech(levels: FloatArray, *, min_level_db: float = -55.0, min_active_s: float = 0.1) -> bool:
    """Whether anything louder than near-silence lasts at least `min_active_s`, standing out of the floor."""
    if levels.size == 0:
        return False
    model = silence_model(levels)
    loud = (levels > min_level_db) & (levels > model.noise_db + 10.0)
    return bool(loud.sum() * HOP_S >= min_active_s)


def speech_bounds(levels: FloatArray) -> tuple[int, int]:
    """First and one-past-last frame above the silence threshold (the whole range if none is)."""
    active = np.flatnonzero(~silence_model(levels).silent(levels))
    if active.size == 0:
        return 0, len(levels)
    return int(active[0]), int(active[-1]) + 1


def clipped_fraction(samples: npt.NDArray[np.floating]) -> float:
    """Share of samples at (or within 1% of) full scale: a clipped, overdriven recording."""
    if samples.size == 0:
        return 0.0
    return float(np.mean(np.abs(samples) >= 0.99))


def _mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> FloatArray:
    def hz_to_mel(f: FloatArray | float) -> FloatArray:
        return np.asarray(2595.0 * np.log10(1.0 + np.asarray(f) / 700.0), dtype=np.float64)

    def mel_to_hz(m: FloatArray) -> FloatArray:
        return np.asarray(700.0 * (10.0 ** (m / 2595.0) - 1.0), dtype=np.float64)

    mels = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    edges = mel_to_hz(mels)
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    bank = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        rising = (freqs - lo) / max(mid - lo, 1e-9)
        falling = (hi - freqs) / max(hi - mid, 1e-9)
        bank[i] = np.maximum(0.0, np.minimum(rising, falling))
    return bank


def mfcc(samples: npt.NDArray[np.floating], rate: int, n_coefficients: int = 13) -> FloatArray:
    """MFCCs c1..c12 per 10 ms frame with cepstral mean normalisation, shape (n_frames, 12).

    c0 (overall level) is dropped and each coefficient's mean removed, so the
    features describe what is being said rather than loudness, microphone or
    the speaker's vocal tract length as much as they can; that is what the
    time alignment of two speakers needs.
    """
    frames = frame_signal(samples, rate)
    n_fft = 512 if rate <= 16000 else 1024
    window = np.hanning(frames.shape[1])
    spectrum = np.abs(np.fft.rfft(frames * window, n=n_fft, axis=1)) ** 2
    bank = _mel_filterbank(rate, n_fft, 26, 60.0, min(7600.0, rate / 2 - 1))
    log_mel = np.log(np.maximum(spectrum @ bank.T, 1e-10))
    ceps = dct(log_mel, type=2, axis=1, norm="ortho")[:, 1:n_coefficients]
    out: FloatArray = ceps - ceps.mean(axis=0, keepdims=True)
    return out
