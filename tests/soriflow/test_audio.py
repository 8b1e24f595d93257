"""soriflow.audio against real files: every format made from a real speech clip by the ffmpeg CLI.

The reference is Debian's "front center" clip (48 kHz mono 16-bit). Each
format is encoded from it with ffmpeg, decoded with `decode_audio`, and
compared with the reference resampled to 16 kHz: lossless formats sample by
sample, lossy ones by correlation after aligning away the codec delay.
"""

from __future__ import annotations

import io
import math
import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from soriflow import audio as audio_mod
from soriflow.audio import (
    Audio,
    AudioError,
    AudioLimits,
    AudioTooLarge,
    decode_alaw,
    decode_audio,
    decode_mulaw,
    encode_alaw,
    encode_mulaw,
    encode_wav_pcm16,
    resample,
    sniff_format,
)
from soriflow.config import CommonSettings
from soriflow.errors import Internal, InvalidArgument, ResourceExhausted
from soriflow.v1 import audio_pb2

ENC = audio_pb2.AudioEncoding
RATE = 48000
SINE_HZ = 440.0

Encoder = Callable[..., bytes]


# --------------------------------------------------------------------------- fixtures


def run_ffmpeg(ffmpeg: str, args: list[str], data: bytes | None = None) -> bytes:
    """Runs the ffmpeg CLI; output goes to stdout unless args name a file."""
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.fixture(scope="module")
def ref48(speech_wav: Path) -> np.ndarray:
    samples: np.ndarray
    samples, rate = soundfile.read(speech_wav, dtype="float32")
    assert rate == RATE
    assert samples.ndim == 1
    return samples


@pytest.fixture(scope="module")
def ref16(ref48: np.ndarray) -> np.ndarray:
    return resample(ref48, RATE, 16000)


@pytest.fixture(scope="module")
def stereo_wav(speech_wav: Path, ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clip on the left channel, a 440 Hz sine (amplitude 1/8) on the right."""
    path = tmp_path_factory.mktemp("stereo") / "stereo.wav"
    run_ffmpeg(
        ffmpeg,
        [
            "-i", str(speech_wav),
            "-f", "lavfi", "-i", f"sine=frequency={SINE_HZ:g}:sample_rate={RATE}:duration=5",
            "-filter_complex", "[0:a][1:a]amerge=inputs=2[a]", "-map", "[a]",
            "-c:a", "pcm_s16le", str(path),
        ],
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def encode(
    speech_wav: Path, stereo_wav: Path, ffmpeg: str, tmp_path_factory: pytest.TempPathFactory
) -> Encoder:
    """encode(ext, *ffmpeg output args, stereo=False): the clip as a real file of that format."""
    folder = tmp_path_factory.mktemp("encoded")
    cache: dict[tuple[Any, ...], bytes] = {}

    def _encode(ext: str, *args: str, stereo: bool = False) -> bytes:
        key = (ext, args, stereo)
        if key not in cache:
            out = folder / f"clip{len(cache)}.{ext}"
            src = stereo_wav if stereo else speech_wav
            run_ffmpeg(ffmpeg, ["-i", str(src), *args, str(out)])
            cache[key] = out.read_bytes()
        return cache[key]

    return _encode


# --------------------------------------------------------------------------- comparisons


def snr_db(got: np.ndarray, want: np.ndarray) -> float:
    noise = float(np.sum((got - want) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(want**2)) / noise)


def aligned_correlation(got: np.ndarray, want: np.ndarray, max_lag: int = 2400) -> tuple[float, int]:
    """Pearson correlation at the lag (codec delay, |lag| <= max_lag) where it is highest."""
    n = len(got) + len(want)
    size = 1 << (n - 1).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(got, size) * np.conj(np.fft.rfft(want, size)), size)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(xcorr[lags])])
    a, b = (got[lag:], want) if lag >= 0 else (got, want[-lag:])
    m = min(len(a), len(b))
    return float(np.corrcoef(a[:m], b[:m])[0, 1]), lag


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def assert_like_reference(result: Audio, ref16: np.ndarray, kind: str) -> None:
    assert result.sample_rate == 16000
    assert result.samples.dtype == np.float32
    assert result.samples.ndim == 1
    assert result.samples.flags.c_contiguous
    assert result.samples.flags.writeable
    assert np.all(np.abs(result.samples) <= 1.0)
    if kind == "exact":  # lossless from the same 16-bit source: only float rounding may differ
        assert len(result.samples) == len(ref16)
        assert np.max(np.abs(result.samples - ref16)) < 1e-3
        assert snr_db(result.samples, ref16) > 80
    elif kind == "quantized":  # 8-bit PCM / G.711: ~40 dB SNR by design
        assert len(result.samples) == len(ref16)
        assert np.max(np.abs(result.samples - ref16)) < 0.05
        assert snr_db(result.samples, ref16) > 25
    else:  # lossy codecs: same speech, shifted by at most the codec delay, padded a little
        corr, lag = aligned_correlation(result.samples, ref16)
        assert corr > 0.9, (corr, lag)
        assert abs(result.duration_s - len(ref16) / 16000) < 0.08


# --------------------------------------------------------------------------- containers

# (id, extension, ffmpeg output args, sniffed format, declared encoding, comparison)
CONTAINERS = [
    ("wav-s16", "wav", ["-c:a", "pcm_s16le"], "wav", ENC.AUDIO_ENCODING_WAV, "exact"),
    ("wav-s24", "wav", ["-c:a", "pcm_s24le"], "wav", ENC.AUDIO_ENCODING_WAV, "exact"),
    ("wav-s32", "wav", ["-c:a", "pcm_s32le"], "wav", ENC.AUDIO_ENCODING_WAV, "exact"),
    ("wav-f32", "wav", ["-c:a", "pcm_f32le"], "wav", ENC.AUDIO_ENCODING_WAV, "exact"),
    ("wav-f64", "wav", ["-c:a", "pcm_f64le"], "wav", ENC.AUDIO_ENCODING_WAV, "exact"),
    ("wav-u8", "wav", ["-c:a", "pcm_u8"], "wav", ENC.AUDIO_ENCODING_WAV, "quantized"),
    ("wav-mulaw", "wav", ["-c:a", "pcm_mulaw"], "wav", ENC.AUDIO_ENCODING_WAV, "quantized"),
    ("wav-alaw", "wav", ["-c:a", "pcm_alaw"], "wav", ENC.AUDIO_ENCODING_WAV, "quantized"),
    ("flac", "flac", ["-c:a", "flac"], "flac", ENC.AUDIO_ENCODING_FLAC, "exact"),
    ("mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", "128k"], "mp3", ENC.AUDIO_ENCODING_MP3, "lossy"),
    ("ogg-opus", "ogg", ["-c:a", "libopus", "-b:a", "48k"], "ogg", ENC.AUDIO_ENCODING_OGG_OPUS, "lossy"),
    ("ogg-vorbis", "ogg", ["-c:a", "libvorbis", "-q:a", "4"], "ogg", ENC.AUDIO_ENCODING_OGG_OPUS, "lossy"),
    ("webm-opus", "webm", ["-c:a", "libopus", "-b:a", "48k"], "webm", ENC.AUDIO_ENCODING_WEBM_OPUS, "lossy"),
    # What a browser's MediaRecorder uploads: live WebM, clusters of unknown size, no cues, no duration.
    ("webm-live", "webm", ["-c:a", "libopus", "-b:a", "32k", "-live", "1", "-cluster_time_limit", "100"],
     "webm", ENC.AUDIO_ENCODING_WEBM_OPUS, "lossy"),
    ("mp3-22k-vbr-noxing", "mp3", ["-ar", "22050", "-q:a", "4", "-write_xing", "0"], "mp3",
     ENC.AUDIO_ENCODING_MP3, "lossy"),
    ("opus-16k", "opus", ["-ar", "16000", "-c:a", "libopus"], "ogg", ENC.AUDIO_ENCODING_OGG_OPUS, "lossy"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ext", "args", "fmt", "declared", "kind"),
    [pytest.param(*case[1:], id=case[0]) for case in CONTAINERS],
)
def test_container_decodes_like_reference(
    encode: Encoder, ref16: np.ndarray, ext: str, args: list[str], fmt: str, declared: int, kind: str
) -> None:
    data = encode(ext, *args)
    assert sniff_format(data) == fmt
    sniffed = decode_audio(data)  # AUDIO_ENCODING_UNSPECIFIED
    assert_like_reference(sniffed, ref16, kind)
    as_declared = decode_audio(data, encoding=declared, sample_rate_hz=8000, channel_count=5)  # both ignored
    np.testing.assert_array_equal(as_declared.samples, sniffed.samples)


def wav_format_tag(data: bytes) -> int:
    assert data[12:16] == b"fmt "
    return int(struct.unpack_from("<H", data, 20)[0])


def test_wav_format_tags_cover_pcm_float_g711_and_extensible(encode: Encoder) -> None:
    """The WAV cases above really are the RIFF variants they claim to be."""
    assert wav_format_tag(encode("wav", "-c:a", "pcm_s16le")) == 1  # PCM
    assert wav_format_tag(encode("wav", "-c:a", "pcm_u8")) == 1
    assert wav_format_tag(encode("wav", "-c:a", "pcm_alaw")) == 6
    assert wav_format_tag(encode("wav", "-c:a", "pcm_mulaw")) == 7
    assert wav_format_tag(encode("wav", "-c:a", "pcm_s24le")) == 0xFFFE  # WAVE_FORMAT_EXTENSIBLE
    assert wav_format_tag(encode("wav", "-c:a", "pcm_f32le")) == 0xFFFE


def test_keeps_native_rate_when_asked(encode: Encoder, ref48: np.ndarray) -> None:
    result = decode_audio(encode("flac", "-c:a", "flac"), target_rate=None)
    assert result.sample_rate == RATE
    np.testing.assert_allclose(result.samples, ref48, atol=1e-6)
    assert result.duration_s == pytest.approx(len(ref48) / RATE)


def test_telephony_mulaw_wav_at_8k(encode: Encoder, ref48: np.ndarray) -> None:
    """Amazon Connect style: 8 kHz mu-law WAV, upsampled to 16 kHz."""
    data = encode("wav", "-ar", "8000", "-c:a", "pcm_mulaw")
    result = decode_audio(data)
    assert result.sample_rate == 16000
    band_limited = resample(resample(ref48, RATE, 8000), 8000, 16000)
    corr, lag = aligned_correlation(result.samples, band_limited, max_lag=50)
    assert corr > 0.97
    assert abs(lag) <= 2
    assert result.duration_s == pytest.approx(len(ref48) / RATE, abs=1e-3)


# --------------------------------------------------------------------------- headerless

HEADERLESS: list[tuple[str, str, list[str], int, str]] = [
    ("linear16", "s16le", [], ENC.AUDIO_ENCODING_LINEAR16, "exact"),
    ("float32", "f32le", [], ENC.AUDIO_ENCODING_FLOAT32, "exact"),
    ("mulaw", "mulaw", [], ENC.AUDIO_ENCODING_MULAW, "quantized"),
    ("alaw", "alaw", [], ENC.AUDIO_ENCODING_ALAW, "quantized"),
]


def raw(ffmpeg: str, speech_wav: Path, fmt: str, *, stereo_src: Path | None = None) -> bytes:
    return run_ffmpeg(ffmpeg, ["-i", str(stereo_src or speech_wav), "-f", fmt, "pipe:1"])


@pytest.mark.parametrize(("name", "fmt", "extra", "enum", "kind"), HEADERLESS, ids=[h[0] for h in HEADERLESS])
def test_headerless_with_declared_rate(
    ffmpeg: str,
    speech_wav: Path,
    ref16: np.ndarray,
    name: str,
    fmt: str,
    extra: list[str],
    enum: int,
    kind: str,
) -> None:
    data = raw(ffmpeg, speech_wav, fmt)
    by_enum = decode_audio(data, encoding=enum, sample_rate_hz=RATE)
    assert_like_reference(by_enum, ref16, kind)
    for spelling in (name, name.upper(), f"AUDIO_ENCODING_{name.upper()}"):
        again = decode_audio(data, encoding=spelling, sample_rate_hz=RATE, channel_count=0)
        np.testing.assert_array_equal(again.samples, by_enum.samples)


def test_encoding_aliases(ffmpeg: str, speech_wav: Path) -> None:
    data = raw(ffmpeg, speech_wav, "mulaw")
    want = decode_audio(data, encoding="mulaw", sample_rate_hz=RATE).samples
    for alias in ("ulaw", "mu-law", "pcm_mulaw", "MULAW"):
        np.testing.assert_array_equal(decode_audio(data, encoding=alias, sample_rate_hz=RATE).samples, want)


def test_headerless_declared_but_wav_header_wins(encode: Encoder, ref16: np.ndarray) -> None:
    """Google/Riva clients send whole WAV files as LINEAR16; the header's 48 kHz wins over 8000."""
    data = encode("wav", "-c:a", "pcm_s16le")
    result = decode_audio(data, encoding=ENC.AUDIO_ENCODING_LINEAR16, sample_rate_hz=8000)
    assert_like_reference(result, ref16, "exact")
    result = decode_audio(data, encoding="mulaw")  # no rate needed either
    assert_like_reference(result, ref16, "exact")


# --------------------------------------------------------------------------- channels

STEREO = [
    ("wav", "wav", ["-c:a", "pcm_s16le"], "exact"),
    ("flac", "flac", ["-c:a", "flac"], "exact"),
    ("mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", "192k"], "lossy"),
    ("ogg-opus", "ogg", ["-c:a", "libopus", "-b:a", "96k"], "lossy"),
    ("webm-opus", "webm", ["-c:a", "libopus", "-b:a", "96k"], "lossy"),
    ("wav-mulaw", "wav", ["-c:a", "pcm_mulaw"], "quantized"),
]


def check_stereo(result: Audio, ref16: np.ndarray, kind: str) -> None:
    assert result.channel_count == 2
    assert result.samples.shape[0] == 2
    assert result.samples.dtype == np.float32
    assert result.samples.flags.c_contiguous
    left, right = result.channel(0), result.channel(1)
    assert_like_reference(Audio(np.ascontiguousarray(left), 16000), ref16, kind)
    assert dominant_hz(right, 16000) == pytest.approx(SINE_HZ, abs=2)
    assert 0.1 < float(np.max(np.abs(right))) < 0.15  # the sine, at 1/8
    assert aligned_correlation(right, ref16)[0] < 0.2  # the speech stayed on the left
    assert dominant_hz(left, 16000) != pytest.approx(SINE_HZ, abs=5)


@pytest.mark.parametrize(("ext", "args", "kind"), [s[1:] for s in STEREO], ids=[s[0] for s in STEREO])
def test_stereo_keeps_channels_or_averages(
    encode: Encoder, ref16: np.ndarray, ext: str, args: list[str], kind: str
) -> None:
    data = encode(ext, *args, stereo=True)
    kept = decode_audio(data, mono=False)
    check_stereo(kept, ref16, kind)
    mixed = decode_audio(data)
    assert mixed.samples.shape == (kept.samples.shape[1],)
    np.testing.assert_allclose(mixed.samples, kept.samples.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(kept.to_mono().samples, mixed.samples, atol=1e-5)


@pytest.mark.parametrize(
    ("fmt", "enum", "kind"),
    [("s16le", ENC.AUDIO_ENCODING_LINEAR16, "exact"), ("mulaw", ENC.AUDIO_ENCODING_MULAW, "quantized")],
)
def test_headerless_stereo_is_interleaved(
    ffmpeg: str, speech_wav: Path, stereo_wav: Path, ref16: np.ndarray, fmt: str, enum: int, kind: str
) -> None:
    data = raw(ffmpeg, speech_wav, fmt, stereo_src=stereo_wav)
    kept = decode_audio(data, encoding=enum, sample_rate_hz=RATE, channel_count=2, mono=False)
    check_stereo(kept, ref16, kind)


def test_more_channels_average_to_mono() -> None:
    frames = np.array([[0.5, -0.25, 0.125], [0.25, 0.25, -0.5]], dtype=np.float32)  # 2 frames x 3 channels
    data = (frames * 32768).astype("<i2").tobytes()
    kept = decode_audio(
        data, encoding="linear16", sample_rate_hz=8000, channel_count=3, mono=False, target_rate=None
    )
    np.testing.assert_array_equal(kept.samples, frames.T)
    mixed = decode_audio(data, encoding="linear16", sample_rate_hz=8000, channel_count=3, target_rate=None)
    np.testing.assert_allclose(mixed.samples, frames.mean(axis=1), atol=1e-7)


def test_mono_source_kept_as_one_row(encode: Encoder) -> None:
    result = decode_audio(encode("flac", "-c:a", "flac"), mono=False)
    assert result.samples.ndim == 2
    assert result.channel_count == 1
    np.testing.assert_array_equal(result.channel(0), result.to_mono().samples)


def test_audio_accessors() -> None:
    stereo = Audio(np.zeros((2, 8000), dtype=np.float32), 16000)
    assert stereo.duration_s == 0.5
    assert stereo.channel_count == 2
    assert stereo.frame_count == 8000
    with pytest.raises(AudioError, match="2 channel"):
        stereo.channel(2)
    mono = Audio(np.zeros(160, dtype=np.float32), 16000)
    assert mono.channel_count == 1
    assert mono.to_mono() is mono
    np.testing.assert_array_equal(mono.channel(0), mono.samples)
    with pytest.raises(ValueError, match="shape"):
        Audio(np.zeros((1, 2, 3), dtype=np.float32), 16000)


# --------------------------------------------------------------------------- errors


def raises_audio_error(data: bytes, *words: str, **kwargs: Any) -> str:
    with pytest.raises(AudioError) as info:
        decode_audio(data, **kwargs)
    assert isinstance(info.value, InvalidArgument)
    message = info.value.message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_empty_bytes() -> None:
    raises_audio_error(b"", "audio is empty")


def test_garbage_bytes() -> None:
    garbage = np.random.default_rng(7).bytes(4096)
    assert sniff_format(garbage) is None
    raises_audio_error(garbage, "could not decode audio", "not a recognised audio format", "accepted formats")


def test_text_file() -> None:
    text = ("Soriflow decodes speech, not prose.\n" * 40).encode()
    raises_audio_error(text, "could not decode audio", "text", "accepted formats", "FLAC")


def test_truncated_wav_header(encode: Encoder) -> None:
    raises_audio_error(encode("wav", "-c:a", "pcm_s16le")[:30], "could not decode audio as WAV", "data")


def test_truncated_mp3(encode: Encoder) -> None:
    data = encode("mp3", "-c:a", "libmp3lame", "-b:a", "128k")
    raises_audio_error(data[:300], "could not decode audio as MP3", "accepted formats")


def test_truncated_webm(encode: Encoder) -> None:
    data = encode("webm", "-c:a", "libopus", "-b:a", "48k")
    raises_audio_error(data[:200], "could not decode audio as WebM")


def test_wav_cut_in_its_data_keeps_what_is_there(encode: Encoder, ref16: np.ndarray) -> None:
    """As players do: an upload cut short decodes to its first part rather than failing."""
    data = encode("wav", "-c:a", "pcm_s16le")
    result = decode_audio(data[: len(data) // 2])
    assert 0.6 < result.duration_s < 0.8
    n = len(result.samples) - 100  # the resampler's edge
    np.testing.assert_allclose(result.samples[:n], ref16[:n], atol=1e-3)


def test_header_only_wav(speech_wav: Path, ffmpeg: str) -> None:
    data = run_ffmpeg(ffmpeg, ["-i", str(speech_wav), "-t", "0", "-c:a", "pcm_s16le", "-f", "wav", "pipe:1"])
    assert sniff_format(data) == "wav"
    raises_audio_error(data, "audio is empty", "WAV")


def test_headerless_without_rate(ffmpeg: str, speech_wav: Path) -> None:
    data = raw(ffmpeg, speech_wav, "s16le")
    raises_audio_error(data, "LINEAR16", "sample_rate_hz", encoding=ENC.AUDIO_ENCODING_LINEAR16)
    raises_audio_error(data[:1000], "MULAW", "sample_rate_hz", encoding="mulaw", channel_count=1)


def test_headerless_partial_frame(ffmpeg: str, speech_wav: Path) -> None:
    data = raw(ffmpeg, speech_wav, "s16le")
    raises_audio_error(data + b"\x00", "not a whole number", encoding="linear16", sample_rate_hz=RATE)
    raises_audio_error(data[:6], "channel_count", encoding="linear16", sample_rate_hz=RATE, channel_count=4)


def test_float32_with_nan_or_integer_scale() -> None:
    x = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    x[100] = np.nan
    raises_audio_error(x.tobytes(), "NaN", encoding="float32", sample_rate_hz=16000)
    x[100] = np.inf
    raises_audio_error(x.tobytes(), "infinite", encoding="float32", sample_rate_hz=16000)
    scaled = (np.linspace(-0.5, 0.5, 1600) * 32767).astype("<f4")
    raises_audio_error(scaled.tobytes(), "[-1, 1]", "LINEAR16", encoding="float32", sample_rate_hz=16000)


def test_float_wav_with_nan() -> None:
    x = np.zeros(1600, dtype=np.float32)
    x[5] = np.nan
    body = x.tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    wav = b"RIFF" + struct.pack("<I", 4 + 24 + 8 + len(body)) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
    wav += fmt + b"data" + struct.pack("<I", len(body)) + body
    raises_audio_error(wav, "NaN")


def test_declared_container_contradicted_by_bytes(encode: Encoder) -> None:
    mp3 = encode("mp3", "-c:a", "libmp3lame", "-b:a", "128k")
    raises_audio_error(mp3, "declared as FLAC", "MP3", encoding=ENC.AUDIO_ENCODING_FLAC)
    flac = encode("flac", "-c:a", "flac")
    raises_audio_error(flac, "declared as WEBM_OPUS", "FLAC", encoding="webm_opus")
    raises_audio_error(flac, "headerless LINEAR16", "FLAC", encoding="linear16", sample_rate_hz=RATE)


def test_declared_container_with_garbage() -> None:
    garbage = np.random.default_rng(3).bytes(4096)
    raises_audio_error(garbage, "could not decode audio as FLAC", encoding=ENC.AUDIO_ENCODING_FLAC)


def test_unknown_encoding() -> None:
    raises_audio_error(b"\x00" * 10, "unknown audio encoding", "LINEAR16", encoding="aac")
    raises_audio_error(b"\x00" * 10, "unknown audio encoding value 99", encoding=99)


def test_over_max_bytes_checked_before_decoding() -> None:
    limits = AudioLimits(max_bytes=1000, max_duration_s=60)
    with pytest.raises(AudioTooLarge) as info:
        decode_audio(b"\x00" * 1001, limits=limits)  # undecodable, yet the size is what is reported
    assert isinstance(info.value, ResourceExhausted)
    assert "1001 bytes" in info.value.message
    assert "limit is 1000 bytes" in info.value.message


@pytest.mark.parametrize(
    ("ext", "args"),
    [("wav", ["-c:a", "pcm_s16le"]), ("webm", ["-c:a", "libopus"]), ("mp3", ["-write_xing", "0"])],
    ids=["wav-header", "webm-ffmpeg", "mp3-ffmpeg"],
)
def test_over_max_duration(encode: Encoder, ext: str, args: list[str]) -> None:
    data = encode(ext, *args)
    limits = AudioLimits(max_bytes=len(data), max_duration_s=0.5)
    with pytest.raises(AudioTooLarge) as info:
        decode_audio(data, limits=limits)
    assert isinstance(info.value, ResourceExhausted)
    assert "limit is 0.5 s" in info.value.message
    assert " s long" in info.value.message
    ok = decode_audio(data, limits=AudioLimits(max_bytes=len(data), max_duration_s=2.0))
    assert ok.duration_s == pytest.approx(1.43, abs=0.08)


def test_limits_from_settings() -> None:
    settings = CommonSettings(audio_max_bytes=1234, audio_max_duration_s=5.5)
    assert AudioLimits.from_settings(settings) == AudioLimits(max_bytes=1234, max_duration_s=5.5)


def test_missing_ffmpeg_is_a_clear_error(encode: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    webm = encode("webm", "-c:a", "libopus", "-b:a", "48k")
    wav = encode("wav", "-c:a", "pcm_s16le")
    opus48 = encode("ogg", "-c:a", "libopus", "-b:a", "48k")
    mp3_no_xing = encode("mp3", "-write_xing", "0")
    monkeypatch.setattr(audio_mod, "FFMPEG_BINARY", "soriflow-no-such-ffmpeg")
    with pytest.raises(Internal, match=r"ffmpeg.*not installed.*WebM"):
        decode_audio(webm)
    with pytest.raises(Internal, match=r"ffmpeg.*not installed.*MP3"):
        decode_audio(mp3_no_xing)  # libsndfile would cut it short: better an error
    assert decode_audio(wav).duration_s > 1  # libsndfile formats need no ffmpeg
    assert decode_audio(opus48).duration_s > 1  # ffmpeg's by preference, libsndfile's without it


def test_hung_ffmpeg_is_killed(encode: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that never finishes is stopped at the timeout, and no process is left behind."""
    pid_file = tmp_path / "pid"
    fake = tmp_path / "ffmpeg"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setattr(audio_mod, "FFMPEG_BINARY", str(fake))
    monkeypatch.setattr(audio_mod, "FFMPEG_TIMEOUT_S", 0.5)
    with pytest.raises(AudioError, match=r"took longer than 0\.5"):
        decode_audio(encode("webm", "-c:a", "libopus", "-b:a", "48k"))
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not a zombie


def test_sniff_format_magic() -> None:
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wav"
    assert sniff_format(b"RIFF\x00\x00\x00\x00AVI LIST") is None
    assert sniff_format(b"fLaC\x00\x00\x00\x22") == "flac"
    assert sniff_format(b"OggS\x00\x02") == "ogg"
    assert sniff_format(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81") == "webm"
    assert sniff_format(b"ID3\x04\x00\x00\x00\x00\x00\x00") == "mp3"
    assert sniff_format(b"ID3\x04\x00\x00\x00\x00\x00\x00fLaC") == "flac"  # tagged FLAC
    assert sniff_format(b"\xff\xfb\x90\x64") == "mp3"  # MPEG-1 Layer III frame
    assert sniff_format(b"\xff\xf1\x50\x80") is None  # ADTS AAC, not MP3
    assert sniff_format(b"") is None


# --------------------------------------------------------------------------- resample


@pytest.mark.parametrize(("orig", "target"), [(48000, 16000), (44100, 16000), (8000, 16000), (16000, 8000)])
def test_resample_sine_keeps_frequency_and_level(orig: int, target: int) -> None:
    t = np.arange(orig * 2) / orig
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y = resample(x, orig, target)
    assert y.dtype == np.float32
    assert len(y) == math.ceil(len(x) * target / orig)
    assert dominant_hz(y, target) == pytest.approx(1000, abs=1)
    middle = y[target // 10 : -target // 10]
    assert float(np.max(np.abs(middle))) == pytest.approx(0.5, rel=0.01)
    t_out = np.arange(len(y)) / target
    np.testing.assert_allclose(
        middle, 0.5 * np.sin(2 * np.pi * 1000 * t_out)[target // 10 : -target // 10], atol=2e-3
    )


def test_resample_rejects_aliases() -> None:
    """A 7 kHz tone has no place at 8 kHz: it must be filtered out, not folded to 1 kHz."""
    t = np.arange(48000) / 48000
    y = resample(np.sin(2 * np.pi * 7000 * t).astype(np.float32), 48000, 8000)
    assert float(np.sqrt(np.mean(y[800:-800] ** 2))) < 0.01  # < -37 dB of the 0.707 input rms


def test_resample_matches_scipy_and_handles_channels() -> None:
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 10007)).astype(np.float32)
    for orig, target in [(48000, 16000), (44100, 16000), (22050, 16000), (8000, 16000)]:
        g = math.gcd(orig, target)
        want = signal.resample_poly(x, target // g, orig // g, axis=-1)
        got = resample(x, orig, target)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(resample(x[1], orig, target), got[1], atol=1e-6)
    assert resample(x, 16000, 16000) is x
    assert resample(np.zeros(0, np.float32), 48000, 16000).shape == (0,)


# --------------------------------------------------------------------------- G.711 and WAV writing


def g711c_linear2ulaw(pcm: int) -> int:
    """linear2ulaw of the reference g711.c (Sun Microsystems, public domain), line by line."""
    pcm >>= 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = next(
        (i for i, end in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)) if pcm <= end), 8
    )
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def g711c_linear2alaw(pcm: int) -> int:
    """linear2alaw of the reference g711.c, line by line."""
    pcm >>= 3
    mask = 0xD5
    if pcm < 0:
        pcm, mask = -pcm - 1, 0x55
    seg = next(
        (i for i, end in enumerate((0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)) if pcm <= end), 8
    )
    if seg >= 8:
        return 0x7F ^ mask
    quant = (pcm >> 1) & 0xF if seg < 2 else (pcm >> seg) & 0xF
    return ((seg << 4) | quant) ^ mask


G711 = [
    ("mulaw", decode_mulaw, encode_mulaw, g711c_linear2ulaw),
    ("alaw", decode_alaw, encode_alaw, g711c_linear2alaw),
]


@pytest.mark.parametrize(("law", "decode", "encode_law", "reference"), G711, ids=["mulaw", "alaw"])
def test_g711_matches_reference_and_ffmpeg(
    ffmpeg: str,
    speech_wav: Path,
    law: str,
    decode: Callable[[bytes], np.ndarray],
    encode_law: Callable[[np.ndarray], bytes],
    reference: Callable[[int], int],
) -> None:
    # Decoding: every code as ffmpeg's pcm_{law} decoder has it.
    every_code = bytes(range(256))
    args = ["-f", law, "-ar", "8000", "-ac", "1", "-i", "pipe:0", "-f", "s16le", "pipe:1"]
    by_ffmpeg = np.frombuffer(run_ffmpeg(ffmpeg, args, every_code), "<i2")
    np.testing.assert_array_equal(decode(every_code) * 32768, by_ffmpeg)

    # Encoding: every 16-bit value exactly as the reference g711.c.
    every_value = np.arange(-32768, 32768)
    want = np.array([reference(int(v)) for v in every_value], dtype=np.uint8)
    ours = np.frombuffer(encode_law(every_value.astype(np.float32) / 32768), np.uint8)
    np.testing.assert_array_equal(ours, want)

    # Round trip of the speech clip against ffmpeg's pcm_{law} encoder, which puts a few
    # interval edges halfway between levels instead: same codes almost always, never more
    # than one level apart, same quality.
    samples = np.frombuffer(run_ffmpeg(ffmpeg, ["-i", str(speech_wav), "-f", "s16le", "pipe:1"]), "<i2")
    clip = samples.astype(np.float32) / 32768
    theirs = run_ffmpeg(ffmpeg, ["-i", str(speech_wav), "-f", law, "pipe:1"])
    mine = encode_law(clip)
    assert len(mine) == len(theirs) == len(clip)
    assert np.mean(np.frombuffer(mine, np.uint8) == np.frombuffer(theirs, np.uint8)) > 0.9
    assert float(np.max(np.abs(decode(mine) - decode(theirs)))) <= 1024 / 32768
    assert snr_db(decode(mine), clip) > 30
    assert snr_db(decode(mine), clip) == pytest.approx(snr_db(decode(theirs), clip), abs=0.5)
    # stereo input is interleaved like every other headerless encoding
    pair = np.stack([clip[:100], -clip[:100]])
    np.testing.assert_array_equal(
        np.frombuffer(encode_law(pair), np.uint8)[0::2], np.frombuffer(mine[:100], np.uint8)
    )


def test_encode_wav_pcm16_round_trip(ffmpeg: str) -> None:
    rng = np.random.default_rng(1)
    x = (rng.integers(-32768, 32767, size=(2, 4000)) / 32768).astype(np.float32)
    data = encode_wav_pcm16(x, 8000)
    assert sniff_format(data) == "wav"
    assert wav_format_tag(data) == 1
    back = decode_audio(data, mono=False, target_rate=None)
    assert back.sample_rate == 8000
    np.testing.assert_array_equal(back.samples, x)
    # and ffmpeg agrees it is 2-channel 16-bit PCM at 8 kHz
    s16 = np.frombuffer(run_ffmpeg(ffmpeg, ["-i", "pipe:0", "-f", "s16le", "pipe:1"], data), "<i2")
    np.testing.assert_array_equal(s16.reshape(-1, 2).T, np.rint(x * 32768).astype(np.int16))
    clipped = decode_audio(encode_wav_pcm16(np.array([2.0, -2.0], np.float32), 8000), target_rate=None)
    np.testing.assert_allclose(clipped.samples, [32767 / 32768, -1.0])


def lying_wav(
    *, rate: int = 16000, channels: int = 1, data_size: int | None = None, frames: int = 1600
) -> bytes:
    """A 16-bit PCM WAV whose header says what it is told to, whatever the bytes hold."""
    pcm = np.zeros(frames * channels, "<i2").tobytes()
    size = len(pcm) if data_size is None else data_size
    block = 2 * channels
    header = b"RIFF" + struct.pack("<I", min(36 + size, 0xFFFFFFFF)) + b"WAVE"
    header += b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, 16
    )
    return header + b"data" + struct.pack("<I", size) + pcm


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ({"rate": 2_147_483_647}, ("WAV header", "2147483647 Hz", "1000-768000")),
        ({"rate": 4_294_967_295}, ("WAV header", "4294967295 Hz")),
        ({"rate": 0}, ("WAV header", "0 Hz")),
        ({"rate": 999}, ("WAV header", "999 Hz")),
        ({"channels": 0, "frames": 1}, ("WAV header", "0 channels")),
        ({"channels": 1024, "frames": 2}, ("WAV header", "1024 channels", "1-32")),
        ({"channels": 65535, "frames": 1}, ("WAV header", "65535 channels")),
    ],
)
def test_absurd_wav_headers_are_invalid_before_decoding(
    header: dict[str, int], words: tuple[str, ...]
) -> None:
    # 2**31 Hz made the resampler ask for 320 GiB (MemoryError -> INTERNAL); now nothing is decoded.
    raises_audio_error(lying_wav(**header), *words)


def test_header_claiming_more_frames_than_the_file_holds_keeps_what_is_there() -> None:
    # A truncated upload looks like this too: decode what is there, allocate only that.
    result = decode_audio(lying_wav(data_size=0xFFFFFFF0), limits=AudioLimits(10**9, 3600))
    assert result.frame_count == 1600


def test_flac_header_lies_are_bounded(ffmpeg: str, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(16000, np.float32), 16000, format="FLAC")
    flac = bytearray(buffer.getvalue())
    # STREAMINFO (at 8): 18 bytes of block/frame sizes, then 20 bits rate, 3 channels-1,
    # 5 bits-per-sample-1 and 36 bits of total samples. Claim 3 h of stereo (libsndfile would
    # allocate all of it up front) over a second of silence.
    fields = int.from_bytes(flac[18:26], "big")
    total = 3 * 3600 * 16000
    fields = (fields & ~((1 << 36) - 1)) | total
    flac[18:26] = fields.to_bytes(8, "big")
    result = decode_audio(bytes(flac), limits=AudioLimits(10**9, 4 * 3600))
    assert result.duration_s == pytest.approx(1.0, abs=0.01)
    with pytest.raises(AudioTooLarge, match="by its header"):
        decode_audio(bytes(flac), limits=AudioLimits(10**9, 3600))
    # A rate FLAC can state (up to 1,048,575 Hz) but no speech has.
    fields = (fields & ~(((1 << 20) - 1) << 44)) | (1_000_000 << 44)
    flac[18:26] = fields.to_bytes(8, "big")
    raises_audio_error(bytes(flac), "FLAC header", "1000000 Hz")


def test_odd_rates_resample_with_a_bounded_filter() -> None:
    # 767,999 Hz shares no factor with 16 kHz: the exact filter took 1.5 GB for a 0.1 s clip.
    import tracemalloc

    x = np.sin(2 * np.pi * 440 * np.arange(76_800) / 767_999).astype(np.float32)
    tracemalloc.start()
    y = resample(x, 767_999, 16000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 * 2**20
    assert abs(len(y) - 76_800 * 16000 / 767_999) <= 1  # the nearest small ratio, not the exact one
    assert dominant_hz(y, 16000) == pytest.approx(440, abs=5)
