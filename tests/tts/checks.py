"""Checks on produced audio: what ffprobe and libsndfile say about it, and whether it holds sound."""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
from typing import Any

import numpy as np
import soundfile


def probe(data: bytes) -> dict[str, Any]:
    """ffprobe's view of the first audio stream and the container (format name, duration)."""
    with tempfile.NamedTemporaryFile() as handle:  # a file, so ffprobe can seek to measure durations
        handle.write(data)
        handle.flush()
        result = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", handle.name],
            capture_output=True,
            check=True,
        )
    info = json.loads(result.stdout)
    stream = next(s for s in info["streams"] if s["codec_type"] == "audio")
    return {
        "codec": stream["codec_name"],
        "rate": int(stream["sample_rate"]),
        "channels": int(stream["channels"]),
        "format": info["format"]["format_name"],
        "duration": float(info["format"].get("duration") or stream.get("duration") or 0),
    }


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float samples and rate, decoded by libsndfile (WAV, MP3, Ogg/Opus)."""
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(rate)


def rms_db(samples: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(samples, dtype=np.float64))) + 1e-12))


def assert_speech(samples: np.ndarray, rate: int, *, min_s: float, max_s: float) -> None:
    """Non-silent, finite audio whose duration is plausible for the text."""
    duration = len(samples) / rate
    assert min_s <= duration <= max_s, f"duration {duration:.2f}s not in [{min_s}, {max_s}]"
    assert np.all(np.isfinite(samples))
    assert rms_db(samples) > -40, f"audio is (nearly) silent: {rms_db(samples):.1f} dBFS"
    assert np.max(np.abs(samples)) <= 1.0


def longest_silence_s(samples: np.ndarray, rate: int, threshold: float = 1e-3) -> float:
    """Longest run of near-zero samples, in seconds."""
    loud = np.flatnonzero(np.abs(samples) >= threshold)
    edges = np.concatenate([[-1], loud, [len(samples)]])
    return float(np.max(np.diff(edges)) - 1) / rate
