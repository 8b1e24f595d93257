"""Output encoders: WAV (PCM16, mu-law, A-law), MP3 and Ogg/Opus, whole files and stream chunks.

Amazon Connect plays prompts that are "8 KHz, mono, U-Law, .wav". Such a
file is written here byte by byte rather than by a library, so that it is
exactly what the WAV specification asks for non-PCM data and what telephony
tools expect (58-byte header)::

    RIFF <50 + n + pad> WAVE
    fmt  <18> tag=7 (mu-law; 6 = A-law) channels=1 rate=8000 bytes/s=8000 align=1 bits=8 cbSize=0
    fact <4>  <n samples>
    data <n>  <n G.711 bytes> [pad byte when n is odd]

G.711 comes from `soriflow.audio` (`encode_mulaw`/`encode_alaw`), which matches
the reference g711.c on every 16-bit input; one implementation serves the
decoder tests, the STT streaming tests and the Connect prompts alike.

MP3 and Ogg/Opus go through `ffmpeg` on pipes (float samples in on stdin, the
file out on stdout, no temporary files). MP3 is written without a Xing/Info
frame and without ID3 tags, so stream chunks concatenate into one valid MP3;
Ogg/Opus chunks are complete Ogg streams (chained Ogg when concatenated).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from soriflow import ffmpeg
from soriflow.audio import encode_alaw, encode_mulaw, encode_wav_pcm16
from soriflow.errors import InvalidArgument, Unavailable
from soriflow.v1 import audio_pb2

FloatArray = npt.NDArray[np.float32]
_E = audio_pb2.AudioEncoding

LINEAR16: Final[int] = int(_E.AUDIO_ENCODING_LINEAR16)
MULAW: Final[int] = int(_E.AUDIO_ENCODING_MULAW)
ALAW: Final[int] = int(_E.AUDIO_ENCODING_ALAW)
MP3: Final[int] = int(_E.AUDIO_ENCODING_MP3)
OGG_OPUS: Final[int] = int(_E.AUDIO_ENCODING_OGG_OPUS)

WAVE_FORMAT_PCM: Final = 1
WAVE_FORMAT_ALAW: Final = 6
WAVE_FORMAT_MULAW: Final = 7

#: Rates each encoder accepts (None: any rate in MIN_RATE..MAX_RATE).
MP3_RATES: Final = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES: Final = (8000, 12000, 16000, 24000, 48000)
MIN_RATE: Final = 4000
MAX_RATE: Final = 192_000

#: The ffmpeg executable; tests point it elsewhere to check the missing-binary error.
FFMPEG_BINARY = "ffmpeg"
FFMPEG_TIMEOUT_S = 120.0

_NAMES: Final[dict[int, str]] = {
    LINEAR16: "LINEAR16",
    MULAW: "MULAW",
    ALAW: "ALAW",
    MP3: "MP3",
    OGG_OPUS: "OGG_OPUS",
}
_MIME: Final[dict[int, str]] = {
    LINEAR16: "audio/wav",
    MULAW: "audio/wav",
    ALAW: "audio/wav",
    MP3: "audio/mpeg",
    OGG_OPUS: "audio/ogg",
}


@dataclass(frozen=True)
class OutputFormat:
    """What the response carries: encoding (audio_pb2 value), rate and MIME type."""

    encoding: int
    sample_rate_hz: int

    @property
    def name(self) -> str:
        return _NAMES[self.encoding]

    @property
    def mime_type(self) -> str:
        return _MIME[self.encoding]


def encoding_names() -> str:
    return ", ".join(_NAMES.values())


def resolve_output(encoding: int, sample_rate_hz: int, natural_rate_hz: int) -> OutputFormat:
    """The output format a request asks for, with its default rate; INVALID_ARGUMENT when impossible."""
    if encoding == _E.AUDIO_ENCODING_UNSPECIFIED:
        encoding = LINEAR16
    if encoding not in _NAMES:
        name = _E.Name(_E.ValueType(encoding)) if encoding in _E.values() else str(encoding)
        raise InvalidArgument(f"output encoding {name} is not supported; use one of {encoding_names()}")
    if sample_rate_hz < 0:
        raise InvalidArgument(f"sample_rate_hz must be positive or 0 (the default), not {sample_rate_hz}")
    rate = sample_rate_hz or _default_rate(encoding, natural_rate_hz)
    allowed = MP3_RATES if encoding == MP3 else OPUS_RATES if encoding == OGG_OPUS else None
    if allowed is not None and rate not in allowed:
        raise InvalidArgument(
            f"{_NAMES[encoding]} supports sample rates {', '.join(map(str, allowed))} Hz, not {rate}"
        )
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidArgument(f"sample_rate_hz must be {MIN_RATE}-{MAX_RATE}, not {rate}")
    return OutputFormat(encoding, rate)


def _default_rate(encoding: int, natural: int) -> int:
    if encoding in (MULAW, ALAW):
        return 8000  # telephony (Amazon Connect)
    if encoding == OGG_OPUS:
        return 48000
    if encoding == MP3 and natural not in MP3_RATES:
        return min((r for r in MP3_RATES if r >= natural), default=48000)
    return natural


# --------------------------------------------------------------------------- G.711


def to_int16(samples: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Float samples in [-1, 1] to 16-bit integers (rounded, clipped; NaN becomes 0)."""
    x = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    pcm: npt.NDArray[np.int16] = np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)
    return pcm


def g711_wav(data: bytes, sample_rate: int, format_tag: int, channels: int = 1) -> bytes:
    """A WAV file of G.711 bytes: `fmt ` of 18 bytes (cbSize 0) and a `fact` chunk, as non-PCM requires."""
    frames = len(data) // channels
    pad = b"\x00" if len(data) % 2 else b""
    fmt = struct.pack("<HHIIHHH", format_tag, channels, sample_rate, sample_rate * channels, channels, 8, 0)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<II", 4, frames)
        + b"data"
        + struct.pack("<I", len(data))
        + data
        + pad
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --------------------------------------------------------------------------- ffmpeg


def _bitrate(encoding: int, rate: int) -> str:
    if encoding == OGG_OPUS:
        return "16k" if rate <= 12000 else "32k"
    return "32k" if rate <= 16000 else "64k"


def _ffmpeg(samples: FloatArray, rate: int, encoding: int) -> bytes:
    if encoding == MP3:
        codec = [
            "-c:a",
            "libmp3lame",
            "-b:a",
            _bitrate(MP3, rate),
            "-write_xing",
            "0",
            "-id3v2_version",
            "0",
            "-f",
            "mp3",
        ]
    else:
        codec = ["-c:a", "libopus", "-b:a", _bitrate(OGG_OPUS, rate), "-application", "voip", "-f", "ogg"]
    args = [
        "-f",
        "f32le",
        "-ar",
        str(rate),
        "-ac",
        "1",
        "-i",
        "pipe:0",
        "-map_metadata",
        "-1",
        *codec,
        "pipe:1",
    ]
    pcm = np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype="<f4").tobytes()
    try:
        out, _ = ffmpeg.pipe(args, pcm, timeout_s=FFMPEG_TIMEOUT_S, binary=FFMPEG_BINARY)
    except ffmpeg.FfmpegMissing:
        raise Unavailable(
            f"ffmpeg is not installed ({FFMPEG_BINARY!r} not found), so {_NAMES[encoding]} "
            "output is unavailable: install ffmpeg, or ask for LINEAR16/MULAW/ALAW"
        ) from None
    except TimeoutError:
        raise Unavailable(f"ffmpeg took over {FFMPEG_TIMEOUT_S:.0f}s to encode {_NAMES[encoding]}") from None
    except ffmpeg.FfmpegFailed as exc:
        raise Unavailable(f"ffmpeg could not encode {_NAMES[encoding]}: {exc.reason}") from None
    if not out:
        raise Unavailable(f"ffmpeg could not encode {_NAMES[encoding]}: no output")
    return out


# --------------------------------------------------------------------------- public


def encode_file(samples: FloatArray, fmt: OutputFormat) -> bytes:
    """A complete audio file of mono float samples already at `fmt.sample_rate_hz`."""
    if fmt.encoding == LINEAR16:
        return encode_wav_pcm16(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), fmt.sample_rate_hz)
    if fmt.encoding == MULAW:
        return g711_wav(encode_mulaw(to_int16(samples) / 32768.0), fmt.sample_rate_hz, WAVE_FORMAT_MULAW)
    if fmt.encoding == ALAW:
        return g711_wav(encode_alaw(to_int16(samples) / 32768.0), fmt.sample_rate_hz, WAVE_FORMAT_ALAW)
    return _ffmpeg(samples, fmt.sample_rate_hz, fmt.encoding)


def encode_chunk(samples: FloatArray, fmt: OutputFormat) -> bytes:
    """One stream chunk: headerless samples for LINEAR16/MULAW/ALAW (little-endian 16-bit or
    G.711 bytes), MP3 frames, or a complete Ogg/Opus stream; nothing for no samples."""
    if samples.size == 0:
        return b""
    if fmt.encoding == LINEAR16:
        return to_int16(samples).astype("<i2").tobytes()
    if fmt.encoding == MULAW:
        return encode_mulaw(to_int16(samples) / 32768.0)
    if fmt.encoding == ALAW:
        return encode_alaw(to_int16(samples) / 32768.0)
    return _ffmpeg(samples, fmt.sample_rate_hz, fmt.encoding)


def duration_ms(frames: int, rate: int) -> int:
    return math.floor(frames * 1000 / rate + 0.5)
