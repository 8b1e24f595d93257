"""Controlled defects applied to real speech, for evaluating the scorer without human ratings.

No human-scored learner corpus can be downloaded here, so the evaluation
(`bench/scoring_eval.py`) and the tests make "learner" versions of native
recordings with defects of known kind and severity: slowed or sped up
(time-stretch without pitch change, Praat's PSOLA "Lengthen"), silences
inserted between words, words cut out at word boundaries, pitch movements
flattened toward the median or mirrored around it (Praat manipulation), a
word replaced by another voice's word, and, for robustness, whispering (the
voice source replaced by noise), clipping and channel/rate changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

_PITCH_FLOOR, _PITCH_CEILING = 60.0, 500.0


def _sound(samples: npt.ArrayLike, rate: int) -> object:
    import parselmouth

    return parselmouth.Sound(np.asarray(samples, dtype=np.float64), sampling_frequency=rate)


def _values(sound: object) -> FloatArray:
    return np.asarray(sound.values[0], dtype=np.float32)  # type: ignore[attr-defined]


def time_stretch(samples: npt.ArrayLike, rate: int, factor: float) -> FloatArray:
    """Duration multiplied by `factor` (2 = half as fast) with the pitch kept (PSOLA overlap-add)."""
    from parselmouth.praat import call

    if factor <= 0:
        raise ValueError("factor must be positive")
    stretched = call(
        _sound(samples, rate), "Lengthen (overlap-add)", _PITCH_FLOOR, _PITCH_CEILING, float(factor)
    )
    return _values(stretched)


def flatten_pitch(samples: npt.ArrayLike, rate: int, amount: float) -> FloatArray:
    """Pitch movements shrunk toward the median by `amount` (0 = unchanged, 1 = perfectly flat).

    In semitones: st' = (1 - amount) * st, i.e. f' = median * (f / median) ** (1 - amount),
    resynthesised with PSOLA so timing and voice quality stay the same.
    """
    return scale_pitch(samples, rate, 1.0 - float(amount))


def mirror_pitch(samples: npt.ArrayLike, rate: int) -> FloatArray:
    """The melody turned upside down around the median (st' = -st): a final fall becomes a rise.

    The intonation error of reading a statement as a question (or the
    reverse), with the speaker's own range, timing and voice.
    """
    return scale_pitch(samples, rate, -1.0)


def scale_pitch(samples: npt.ArrayLike, rate: int, factor: float) -> FloatArray:
    """Semitones around the median multiplied by `factor` (PSOLA): 1 unchanged, 0 flat, -1 mirrored."""
    from parselmouth.praat import call

    sound = _sound(samples, rate)
    manipulation = call(sound, "To Manipulation", 0.01, _PITCH_FLOOR, _PITCH_CEILING)
    tier = call(manipulation, "Extract pitch tier")
    pitch = sound.to_pitch(pitch_floor=_PITCH_FLOOR, pitch_ceiling=_PITCH_CEILING)  # type: ignore[attr-defined]
    f0 = pitch.selected_array["frequency"]
    voiced = f0[f0 > 0]
    if voiced.size == 0:
        return np.asarray(samples, dtype=np.float32)
    median = float(np.median(voiced))
    call(tier, "Formula", f"{median} * (self / {median}) ^ {float(factor)}")
    call([tier, manipulation], "Replace pitch tier")
    return _values(call(manipulation, "Get resynthesis (overlap-add)"))


def insert_silences(
    samples: npt.ArrayLike, rate: int, at_s: Sequence[float], seconds: float, fade_s: float = 0.005
) -> FloatArray:
    """`seconds` of silence inserted at each time in `at_s` (times in the original audio).

    The speech fades out and back in over a few milliseconds at each cut, as
    a speaker stopping would, instead of a click.
    """
    x = np.asarray(samples, dtype=np.float32).copy()
    gap = np.zeros(round(seconds * rate), dtype=np.float32)
    fade = max(1, int(fade_s * rate))
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    parts: list[FloatArray] = []
    last = 0
    for t in sorted(at_s):
        cut = int(np.clip(round(t * rate), 0, len(x)))
        lo, hi = max(last, cut - fade), min(len(x), cut + fade)
        x[lo:cut] *= ramp[::-1][fade - (cut - lo) :]
        x[cut:hi] *= ramp[: hi - cut]
        parts += [x[last:cut], gap]
        last = cut
    parts.append(x[last:])
    return np.concatenate(parts)


def delete_spans(
    samples: npt.ArrayLike, rate: int, spans: Sequence[tuple[float, float]], fade_s: float = 0.005
) -> FloatArray:
    """The audio with each (start, end) stretch cut out, joined with short fades (no clicks)."""
    x = np.asarray(samples, dtype=np.float32)
    keep = np.ones(len(x), dtype=bool)
    for start, end in spans:
        keep[int(max(0, start * rate)) : int(min(len(x), end * rate))] = False
    out = x.copy()
    fade = max(1, int(fade_s * rate))
    edges = np.flatnonzero(np.diff(keep.astype(np.int8)) != 0)
    for e in edges:  # fade out before a cut and in after it
        lo, hi = max(0, int(e) - fade + 1), min(len(x), int(e) + fade + 1)
        out[lo:hi] *= np.abs(np.linspace(-1.0, 1.0, hi - lo, dtype=np.float32))
    return out[keep]


def replace_span(
    samples: npt.ArrayLike,
    rate: int,
    span: tuple[float, float],
    replacement: npt.ArrayLike,
    fade_s: float = 0.01,
) -> FloatArray:
    """The stretch `span` replaced by `replacement` (same rate), level-matched, with short fades."""
    x = np.asarray(samples, dtype=np.float32)
    r = np.asarray(replacement, dtype=np.float32).copy()
    lo, hi = int(max(0, span[0] * rate)), int(min(len(x), span[1] * rate))
    original = x[lo:hi]
    if original.size and r.size:
        r *= float(np.sqrt(np.mean(original**2)) / max(np.sqrt(np.mean(r**2)), 1e-6))
    fade = min(int(fade_s * rate), len(r) // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        r[:fade] *= ramp
        r[-fade:] *= ramp[::-1]
    return np.concatenate([x[:lo], np.clip(r, -1.0, 1.0), x[hi:]])


def whisperize(samples: npt.ArrayLike, rate: int, seed: int = 0) -> FloatArray:
    """Whispered-like speech: the short-time spectral envelope kept, the voice source replaced by noise.

    Each 32 ms frame keeps its spectral envelope (the magnitude spectrum
    smoothed across ~400 Hz, which erases the harmonics) with random phase:
    no periodicity, so no pitch, while what is said stays intelligible.
    """
    x = np.asarray(samples, dtype=np.float64)
    n, hop = 512, 128
    window = np.hanning(n)
    rng = np.random.default_rng(seed)
    smooth = np.ones(13) / 13.0  # ~400 Hz wide at 16 kHz: wider than the harmonic spacing of any voice
    padded = np.concatenate([np.zeros(n), x, np.zeros(n)])
    out = np.zeros(len(padded))
    norm = np.zeros(len(padded))
    for start in range(0, len(padded) - n, hop):
        spectrum = np.abs(np.fft.rfft(padded[start : start + n] * window))
        spectrum = np.convolve(spectrum, smooth, mode="same")  # envelope only: no harmonics, no pitch
        phase = np.exp(2j * np.pi * rng.random(spectrum.size))
        out[start : start + n] += np.fft.irfft(spectrum * phase, n) * window
        norm[start : start + n] += window**2
    y = (out / np.maximum(norm, 1e-8))[n : n + len(x)]
    peak = float(np.abs(y).max()) or 1.0
    return np.asarray(y / peak * min(0.9, float(np.abs(x).max()) or 0.9), dtype=np.float32)


def clip(samples: npt.ArrayLike, gain: float) -> FloatArray:
    """Amplified by `gain` and hard-clipped at full scale (an overdriven microphone)."""
    return np.asarray(np.clip(np.asarray(samples, dtype=np.float32) * gain, -1.0, 1.0), dtype=np.float32)
