"""Encoders and prosody on synthetic signals: G.711 against ffmpeg, headers byte by byte, every format."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from soriflow.audio import encode_alaw, encode_mulaw
from soriflow.errors import InvalidArgument
from soriflow.tts import encoding as enc
from soriflow.tts.prosody import Prosody, apply_gain, change_tempo_and_pitch
from soriflow.v1 import audio_pb2
from tests.tts.checks import decode, probe


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def test_g711_is_the_shared_implementation() -> None:
    """The Connect prompts use soriflow.audio's G.711 (tested against g711.c on every input there)."""
    samples = tone(440, 0.01, 8000)
    assert enc.encode_chunk(samples, enc.OutputFormat(enc.MULAW, 8000)) == encode_mulaw(samples)
    assert enc.encode_chunk(samples, enc.OutputFormat(enc.ALAW, 8000)) == encode_alaw(samples)


def test_connect_mulaw_wav_header_byte_by_byte() -> None:
    """Amazon Connect: 8 kHz, mono, U-Law, .wav; 58-byte header with fmt(18) + fact, odd data padded."""
    samples = tone(440, 0.000625, 8000)  # 5 samples: an odd data size
    data = encode_mulaw(samples)
    wav = enc.encode_file(samples, enc.OutputFormat(enc.MULAW, 8000))
    expected_header = (
        b"RIFF"
        + struct.pack("<I", 4 + 26 + 12 + 8 + 5 + 1)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 18)
        + bytes.fromhex("07000100401f0000401f0000010008000000")
        + b"fact"
        + struct.pack("<II", 4, 5)
        + b"data"
        + struct.pack("<I", 5)
    )
    assert len(expected_header) == 58
    assert wav == expected_header + data + b"\x00"


def test_connect_wav_is_what_ffprobe_and_libsndfile_see(ffmpeg: str) -> None:
    samples = tone(440, 1.0, 8000)
    wav = enc.encode_file(samples, enc.OutputFormat(enc.MULAW, 8000))
    assert probe(wav) | {"duration": round(probe(wav)["duration"], 3)} == {
        "codec": "pcm_mulaw",
        "rate": 8000,
        "channels": 1,
        "format": "wav",
        "duration": 1.0,
    }
    decoded, rate = decode(wav)
    assert rate == 8000
    assert len(decoded) == 8000
    assert float(np.max(np.abs(decoded - samples))) < 0.02  # G.711 error at half scale
    alaw = enc.encode_file(samples, enc.OutputFormat(enc.ALAW, 8000))
    assert alaw[20:22] == b"\x06\x00"
    assert probe(alaw)["codec"] == "pcm_alaw"


@pytest.mark.parametrize(
    ("encoding", "rate", "codec", "fmt_name"),
    [
        (enc.LINEAR16, 16000, "pcm_s16le", "wav"),
        (enc.LINEAR16, 44100, "pcm_s16le", "wav"),
        (enc.MULAW, 16000, "pcm_mulaw", "wav"),
        (enc.MP3, 22050, "mp3", "mp3"),
        (enc.MP3, 8000, "mp3", "mp3"),
        (enc.OGG_OPUS, 48000, "opus", "ogg"),
        (enc.OGG_OPUS, 16000, "opus", "ogg"),
    ],
)
def test_every_format_decodes_with_the_right_header(
    encoding: int, rate: int, codec: str, fmt_name: str
) -> None:
    samples = tone(440, 2.0, rate)
    data = enc.encode_file(samples, enc.OutputFormat(encoding, rate))
    info = probe(data)
    assert (info["codec"], info["channels"], info["format"]) == (codec, 1, fmt_name)
    assert info["rate"] == (48000 if encoding == enc.OGG_OPUS else rate)  # Opus always reports 48 kHz
    # MP3 from a pipe has no LAME/Xing frame to tell decoders to trim the encoder's delay and
    # padding: up to ~2300 samples (0.29 s at 8 kHz) more than went in.
    slack = 2400 / rate if encoding == enc.MP3 else 0.02
    assert 2.0 - 0.02 <= info["duration"] <= 2.0 + slack
    decoded, decoded_rate = decode(data)
    assert 2.0 - 0.02 <= len(decoded) / decoded_rate <= 2.0 + slack
    assert dominant_hz(decoded, decoded_rate) == pytest.approx(440, abs=5)


def test_stream_chunks_concatenate_into_one_stream() -> None:
    fmt = enc.OutputFormat(enc.MP3, 22050)
    chunks = [enc.encode_chunk(tone(440, 1.0, 22050), fmt) for _ in range(3)]
    assert not any(c.startswith(b"ID3") for c in chunks)
    decoded, rate = decode(b"".join(chunks))
    assert 3.0 <= len(decoded) / rate <= 3.0 + 3 * 2400 / 22050
    pcm = enc.encode_chunk(tone(440, 0.5, 8000), enc.OutputFormat(enc.LINEAR16, 8000))
    assert len(pcm) == 8000  # headerless 16-bit: 4000 samples
    ogg = enc.encode_chunk(tone(440, 0.5, 48000), enc.OutputFormat(enc.OGG_OPUS, 48000))
    assert ogg.startswith(b"OggS")


def test_output_defaults_and_refusals() -> None:
    e = audio_pb2.AudioEncoding
    assert enc.resolve_output(e.AUDIO_ENCODING_UNSPECIFIED, 0, 22050) == enc.OutputFormat(enc.LINEAR16, 22050)
    assert enc.resolve_output(e.AUDIO_ENCODING_MULAW, 0, 22050).sample_rate_hz == 8000
    assert enc.resolve_output(e.AUDIO_ENCODING_OGG_OPUS, 0, 22050).sample_rate_hz == 48000
    assert enc.resolve_output(e.AUDIO_ENCODING_MP3, 0, 22050).sample_rate_hz == 22050
    assert enc.resolve_output(e.AUDIO_ENCODING_MP3, 0, 20000).sample_rate_hz == 22050
    with pytest.raises(InvalidArgument, match="MP3 supports sample rates"):
        enc.resolve_output(e.AUDIO_ENCODING_MP3, 7000, 22050)
    with pytest.raises(InvalidArgument, match="OGG_OPUS supports"):
        enc.resolve_output(e.AUDIO_ENCODING_OGG_OPUS, 44100, 22050)
    with pytest.raises(InvalidArgument, match="FLAC is not supported"):
        enc.resolve_output(e.AUDIO_ENCODING_FLAC, 0, 22050)
    with pytest.raises(InvalidArgument, match="sample_rate_hz must be"):
        enc.resolve_output(e.AUDIO_ENCODING_LINEAR16, 1000, 22050)


def test_missing_ffmpeg_is_unavailable_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enc, "FFMPEG_BINARY", "/nonexistent/ffmpeg")
    with pytest.raises(Exception, match="ffmpeg is not installed") as info:
        enc.encode_file(tone(440, 0.1, 22050), enc.OutputFormat(enc.MP3, 22050))
    assert info.value.code.name == "UNAVAILABLE"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- prosody


def test_pitch_shift_moves_frequency_and_keeps_duration() -> None:
    samples = tone(220, 2.0, 22050)
    up = change_tempo_and_pitch(samples, 22050, tempo=1.0, semitones=12.0)
    assert len(up) / 22050 == pytest.approx(2.0, abs=0.05)
    assert dominant_hz(up, 22050) == pytest.approx(440, rel=0.03)


def test_tempo_changes_duration_and_keeps_pitch() -> None:
    samples = tone(220, 2.0, 22050)
    fast = change_tempo_and_pitch(samples, 22050, tempo=3.0, semitones=0.0)  # chained atempo
    assert len(fast) / 22050 == pytest.approx(2.0 / 3.0, abs=0.05)
    assert dominant_hz(fast, 22050) == pytest.approx(220, rel=0.03)
    assert change_tempo_and_pitch(samples, 22050, tempo=1.0, semitones=0.0) is samples


def test_gain_and_validation() -> None:
    samples = tone(220, 0.1, 8000, amplitude=0.5)
    assert float(np.max(np.abs(apply_gain(samples, -6.0206)))) == pytest.approx(0.25, abs=0.01)
    assert float(np.max(np.abs(apply_gain(samples, 16)))) == 1.0  # clipped, never beyond full scale
    assert Prosody.from_request(0, 0, 0) == Prosody(1.0, 0.0, 0.0)
    for bad in (
        {"speaking_rate": 5.0},
        {"pitch_semitones": -21.0},
        {"volume_gain_db": 17.0},
        {"speaking_rate": float("nan")},
    ):
        args = {"speaking_rate": 1.0, "pitch_semitones": 0.0, "volume_gain_db": 0.0} | bad
        with pytest.raises(InvalidArgument):
            Prosody.from_request(**args)
