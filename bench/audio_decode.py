"""Audio decoding: throughput per format, and libsndfile against the ffmpeg pipe.

A 60 s speech clip (Debian's "front center", looped) is encoded by the ffmpeg
CLI in every format `soriflow.audio` accepts. For each, `decode_audio` (to
16 kHz mono, the models' input) is timed, giving seconds of audio decoded per
second of wall time, with the decoder the module picks for it. Where both
libsndfile and ffmpeg can decode a format, both are timed end to end (to
16 kHz mono) in the same run, alternating, and their ratio is what chose the
decoder (see the table in
soriflow/audio.py). The numpy resampler is compared with scipy's the same way.

Run from the repository root: `python -m bench.audio_decode`.
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import median, report, timeit
from soriflow import audio

CLIP = Path("/usr/share/sounds/alsa/Front_Center.wav")
LOOPS = 42  # 42 x 1.43 s = 60 s
REPEAT = 5

# name, ffmpeg output args, file extension or raw format, decode_audio keyword arguments
FORMATS: list[tuple[str, list[str], str, dict[str, Any]]] = [
    ("wav_s16_48k", ["-c:a", "pcm_s16le"], "wav", {}),
    ("wav_mulaw_8k_stereo", ["-ar", "8000", "-ac", "2", "-c:a", "pcm_mulaw"], "wav", {"mono": False}),
    ("flac_48k", ["-c:a", "flac"], "flac", {}),
    ("mp3_128k", ["-c:a", "libmp3lame", "-b:a", "128k"], "mp3", {}),
    ("mp3_vbr_no_xing", ["-c:a", "libmp3lame", "-q:a", "4", "-write_xing", "0"], "mp3", {}),
    ("ogg_vorbis", ["-c:a", "libvorbis", "-q:a", "4"], "ogg", {}),
    ("ogg_opus_48k", ["-c:a", "libopus", "-b:a", "32k"], "ogg", {}),
    ("ogg_opus_16k", ["-ar", "16000", "-c:a", "libopus", "-b:a", "24k"], "ogg", {}),
    ("webm_opus_48k", ["-c:a", "libopus", "-b:a", "32k"], "webm", {}),
    (
        "raw_linear16_16k",
        ["-ar", "16000", "-f", "s16le"],
        "raw",
        {"encoding": "linear16", "sample_rate_hz": 16000},
    ),
    ("raw_mulaw_8k", ["-ar", "8000", "-f", "mulaw"], "raw", {"encoding": "mulaw", "sample_rate_hz": 8000}),
]


def ffmpeg(*args: str) -> bytes:
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"ffmpeg failed: {proc.stderr.decode()}")
    return proc.stdout


def encode(source: Path, folder: Path, name: str, args: list[str], ext: str) -> bytes:
    if ext == "raw":
        return ffmpeg("-i", str(source), *args, "pipe:1")
    out = folder / f"{name}.{ext}"
    ffmpeg("-i", str(source), *args, str(out))
    return out.read_bytes()


def paired(a: Callable[[], Any], b: Callable[[], Any], repeat: int = REPEAT) -> tuple[float, float]:
    """Median times of a and b, run alternately so that machine noise hits both alike."""
    a(), b()  # warm up
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeat):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def to_16k_mono(samples: np.ndarray, rate: int) -> audio.Audio:
    """What decode_audio does after either decoder, so the paths are compared end to end."""
    return audio._finish(samples, rate, what="audio", target_rate=16000, mono=True, limits=None)


def decoder_of(data: bytes, kwargs: dict[str, Any]) -> str:
    fmt = audio.sniff_format(data) if "encoding" not in kwargs else None
    if fmt is None:
        return "numpy"
    return "libsndfile" if audio._sndfile_suits(data, fmt) else "ffmpeg"


def sndfile_path(data: bytes) -> audio.Audio:
    return to_16k_mono(*audio._decode_sndfile(data, None))


def ffmpeg_path(data: bytes, fmt: str) -> audio.Audio:
    return to_16k_mono(*audio._decode_ffmpeg(data, fmt, None))


def measure_format(data: bytes, kwargs: dict[str, Any], raw: bool) -> dict[str, Any]:
    """Throughput of decode_audio, and libsndfile against ffmpeg where both decode the format."""
    seconds = audio.decode_audio(data, **kwargs).duration_s
    wall = median(timeit(functools.partial(audio.decode_audio, data, **kwargs), repeat=REPEAT))
    row: dict[str, Any] = {"decoder": decoder_of(data, kwargs), "x_realtime": round(seconds / wall, 1)}
    fmt = None if raw else audio.sniff_format(data)
    if fmt in ("wav", "flac", "mp3", "ogg"):
        assert fmt is not None
        t_sf, t_ff = paired(functools.partial(sndfile_path, data), functools.partial(ffmpeg_path, data, fmt))
        row["sndfile_over_ffmpeg_speed"] = round(t_ff / t_sf, 2)
        # duration, not samples: libsndfile decodes Opus at its input rate, ffmpeg at 48 kHz
        length = sndfile_path(data).duration_s / ffmpeg_path(data, fmt).duration_s
        row["sndfile_length_vs_ffmpeg"] = round(length, 3)  # < 1: libsndfile stops early
    return row


def measure_resample() -> dict[str, Any]:
    """The numpy polyphase resampler against scipy.signal.resample_poly, which it reproduces."""
    x = np.random.default_rng(0).standard_normal(48000 * 60).astype(np.float32)
    try:
        from scipy.signal import resample_poly
    except ImportError:  # scipy is optional; the comparison is then left out
        resample_poly = None
    figures: dict[str, Any] = {}
    for orig, up, down in ((48000, 1, 3), (44100, 160, 441), (8000, 2, 1)):
        clip = x[: orig * 60]
        target = orig * up // down
        ours_fn = functools.partial(audio.resample, clip, orig, target)
        if resample_poly is not None:
            ours, theirs = paired(ours_fn, functools.partial(resample_poly, clip, up, down))
            row = {"x_realtime": round(60 / ours, 1), "numpy_over_scipy_speed": round(theirs / ours, 2)}
        else:
            row = {"x_realtime": round(60 / median(timeit(ours_fn)), 1)}
        figures[f"{orig}_to_{target}"] = row
        print(f"resample {orig} -> {target} Hz: {row}")
    return figures


def main() -> None:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "source.wav"
        ffmpeg("-stream_loop", str(LOOPS - 1), "-i", str(CLIP), "-c:a", "pcm_s16le", str(source))
        print(f"{'format':<22}{'bytes':>10}{'decoder':>12}{'audio s/s':>11}{'sndfile/ffmpeg':>16}")
        for name, args, ext, kwargs in FORMATS:
            data = encode(source, folder, name, args, ext)
            row = figures[name] = measure_format(data, kwargs, raw=ext == "raw")
            ratio = row.get("sndfile_over_ffmpeg_speed", "-")
            print(f"{name:<22}{len(data):>10}{row['decoder']:>12}{row['x_realtime']:>11}{ratio:>16}")
    figures["resample"] = measure_resample()

    both = {k: v["sndfile_over_ffmpeg_speed"] for k, v in figures.items() if "sndfile_over_ffmpeg_speed" in v}
    summary = (
        "Seconds of audio decoded per second (`x_realtime`, 60 s of speech to 16 kHz mono) per format, "
        "with the decoder soriflow.audio picks; `sndfile_over_ffmpeg_speed` is libsndfile's speed over "
        "the ffmpeg pipe's, both to 16 kHz mono, in the same run where both decode (>1: libsndfile faster), "
        "and `sndfile_length_vs_ffmpeg` < 1 shows libsndfile stopping early (MP3 without a Xing header). "
        f"libsndfile/ffmpeg ratios: {both}."
    )
    report("audio_decode", figures, summary=summary, command="python -m bench.audio_decode")


if __name__ == "__main__":
    main()
