"""Speaking rate, pitch and volume: validated once, done by the engine where it can, here otherwise.

Google takes all three natively; espeak-ng takes a rate of 80-450 words a
minute; piper takes a rate (length scale) but no pitch. Whatever an engine
cannot do is done on its output: pitch by resampling (which shifts pitch and
tempo together) followed by ffmpeg's `atempo` (WSOLA) to restore the tempo,
any remaining rate by `atempo`, and volume as a gain in floating point,
clipped to full scale. So every engine honours every field of
AudioOutputConfig with the same meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from soriflow import ffmpeg
from soriflow.errors import InvalidArgument, Unavailable

FloatArray = npt.NDArray[np.float32]

MIN_RATE, MAX_RATE = 0.25, 4.0
MIN_PITCH, MAX_PITCH = -20.0, 20.0
MIN_GAIN_DB, MAX_GAIN_DB = -96.0, 16.0
FFMPEG_BINARY = "ffmpeg"
FFMPEG_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Prosody:
    """Speaking rate (1 = natural), pitch shift in semitones, volume gain in dB."""

    speaking_rate: float = 1.0
    pitch_semitones: float = 0.0
    volume_gain_db: float = 0.0

    @classmethod
    def from_request(cls, speaking_rate: float, pitch_semitones: float, volume_gain_db: float) -> Prosody:
        """Validates AudioOutputConfig's fields (0 rate means 1.0); INVALID_ARGUMENT when out of range."""
        for name, value in (
            ("speaking_rate", speaking_rate),
            ("pitch_semitones", pitch_semitones),
            ("volume_gain_db", volume_gain_db),
        ):
            if not math.isfinite(value):
                raise InvalidArgument(f"{name} must be a number, not {value}")
        rate = speaking_rate or 1.0
        if not MIN_RATE <= rate <= MAX_RATE:
            raise InvalidArgument(f"speaking_rate must be {MIN_RATE}-{MAX_RATE} (0 means 1.0), not {rate:g}")
        if not MIN_PITCH <= pitch_semitones <= MAX_PITCH:
            raise InvalidArgument(
                f"pitch_semitones must be {MIN_PITCH:g} to {MAX_PITCH:g}, not {pitch_semitones:g}"
            )
        if not MIN_GAIN_DB <= volume_gain_db <= MAX_GAIN_DB:
            raise InvalidArgument(
                f"volume_gain_db must be {MIN_GAIN_DB:g} to {MAX_GAIN_DB:g}, not {volume_gain_db:g}"
            )
        return cls(float(rate), float(pitch_semitones), float(volume_gain_db))


def _atempo_chain(factor: float) -> list[str]:
    """`atempo` filters whose product is `factor` (each within 0.5-2, which every ffmpeg accepts)."""
    filters: list[str] = []
    while factor > 2.0:
        filters.append("atempo=2.0")
        factor /= 2.0
    while factor < 0.5:
        filters.append("atempo=0.5")
        factor /= 0.5
    if abs(factor - 1.0) > 1e-4:
        filters.append(f"atempo={factor:.6f}")
    return filters


def change_tempo_and_pitch(samples: FloatArray, rate: int, *, tempo: float, semitones: float) -> FloatArray:
    """Speeds speech up by `tempo` and shifts its pitch by `semitones`, at the same sample rate."""
    if (abs(tempo - 1.0) < 1e-4 and abs(semitones) < 1e-3) or samples.size == 0:
        return samples
    filters: list[str] = []
    if abs(semitones) >= 1e-3:
        shift = 2.0 ** (semitones / 12.0)
        filters += [f"asetrate={rate * shift:.3f}", f"aresample={rate}"]
        tempo /= shift  # asetrate also sped the speech up by `shift`
    filters += _atempo_chain(tempo)
    raw = ["-f", "f32le", "-ar", str(rate), "-ac", "1"]
    args = [*raw, "-i", "pipe:0", "-af", ",".join(filters), *raw, "pipe:1"]
    try:
        out, _ = ffmpeg.pipe(
            args,
            np.ascontiguousarray(samples, dtype="<f4").tobytes(),
            timeout_s=FFMPEG_TIMEOUT_S,
            binary=FFMPEG_BINARY,
        )
    except ffmpeg.FfmpegMissing:
        raise Unavailable(
            "ffmpeg is not installed: it is needed for this speaking rate or pitch with this engine"
        ) from None
    except TimeoutError:
        raise Unavailable(f"ffmpeg took over {FFMPEG_TIMEOUT_S:.0f}s to change tempo/pitch") from None
    except ffmpeg.FfmpegFailed as exc:
        raise Unavailable(f"ffmpeg could not change tempo/pitch: {exc.reason}") from None
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def apply_gain(samples: FloatArray, gain_db: float) -> FloatArray:
    """Samples scaled by `gain_db`, clipped to [-1, 1]."""
    if abs(gain_db) < 1e-6:
        return samples
    scaled: FloatArray = np.clip(samples * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)
    return scaled
