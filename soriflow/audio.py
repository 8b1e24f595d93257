"""The one audio decoder every Soriflow service uses.

Audio reaches the services as inline bytes or S3 objects in whatever the
client had: WAV from telephony (Amazon Connect: 8 kHz mu-law, one speaker
per channel), FLAC, MP3, Ogg Opus/Vorbis, browser MediaRecorder WebM/Opus,
or headerless PCM / G.711 declared in the request (see
`protos/soriflow/v1/audio.proto`). `decode_audio` turns any of them into
float32 samples in [-1, 1] at the rate the models want (16 kHz), either
mixed to mono or with the channels kept, and enforces the byte and duration
limits so that one request cannot exhaust a service's memory.

Which decoder decodes what was chosen by measurement (`python -m
bench.audio_decode`: 60 s of speech decoded to 16 kHz mono on a shared 2-CPU
container). Throughput is seconds of audio per second of wall time from the
quietest run (it swung 2-4x with the machine's load); the ratio is
libsndfile's speed over the ffmpeg pipe's, end to end, measured alternately
in the same run, over four runs (docs/benchmarks.md holds the latest run, taken
under load: its absolute figures are 3-5x lower, its ratios the same):

======================  ==========  ==========  ======================
format                  decoder     audio s/s   libsndfile / ffmpeg
======================  ==========  ==========  ======================
WAV 16-bit 48 kHz       libsndfile  ~850        3.0-3.7x
WAV mu-law 8 kHz 2ch    libsndfile  ~1600       5.4-7.0x
FLAC 48 kHz             libsndfile  ~600        1.9-2.7x
MP3 with Xing/Info      libsndfile  ~640        2.6-3.6x
MP3 without (VBR)       ffmpeg      ~180        libsndfile stops at 40%
Ogg Vorbis              libsndfile  ~560        2.3-2.9x
Ogg Opus, <= 24 kHz     libsndfile  ~290        2.3-3.0x
Ogg Opus, 48 kHz        ffmpeg      ~120        0.8-1.1x
WebM Opus               ffmpeg      ~140        (libsndfile cannot)
headerless              numpy       1000-80000  -
======================  ==========  ==========  ======================

libsndfile runs in process (no fork, no pipe copies), which makes it faster
wherever it has the codec. Opus is the exception: both use libopus, ffmpeg is
a little faster at 48 kHz, but libsndfile decodes at the rate the stream was
encoded from (OpusHead), so 8/16 kHz voice Opus needs no resampling there.
libsndfile knows an MP3's length only from its Xing/Info/VBRI header and
silently stops at an estimate otherwise (a VBR file without one lost 60% of
its audio), so such MP3s go to ffmpeg. Anything libsndfile fails on, or finds
empty, is retried with ffmpeg (WAV with exotic codecs, truncated FLAC or Ogg),
so the reason a client reads is ffmpeg's when neither can decode it.

ffmpeg is run as `ffmpeg -i pipe:0 ... -f wav pipe:1`: the bytes go in on
stdin and 32-bit float WAV comes out on stdout, whose header tells the
channel count and rate in the same pass (no ffprobe, no temp files).
`communicate()` feeds and drains both pipes, so large inputs cannot
deadlock, and the process is killed on timeout or error.

Mixing to mono averages the channels, and resampling is polyphase FIR (what
`scipy.signal.resample_poly` computes, in numpy), the same after every decoder.
Truncated WAV/MP3/FLAC keep what could be decoded, as players do; input that
yields no samples at all is an error. Decoding holds the whole file as
float32 at its own rate before mixing and resampling (4 h of 48 kHz stereo is
5.5 GB), so `audio_max_duration_s` is also the memory bound: it is checked
from the header before libsndfile decodes, and ffmpeg is told to stop there.
libsndfile reads in blocks, so a header that claims more frames than the file
holds costs nothing, and a rate or channel count no speech audio has (a WAV
header saying 2,147,483,647 Hz) is refused from the header before any decoder
runs (`check_format`).
"""

from __future__ import annotations

import functools
import io
import math
import shutil
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from soriflow import ffmpeg
from soriflow.errors import Internal, InvalidArgument, ResourceExhausted
from soriflow.v1 import audio_pb2

if TYPE_CHECKING:
    from soriflow.config import CommonSettings

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE_HZ",
    "MIN_SAMPLE_RATE_HZ",
    "Audio",
    "AudioError",
    "AudioLimits",
    "AudioTooLarge",
    "check_format",
    "decode_alaw",
    "decode_audio",
    "decode_mulaw",
    "encode_alaw",
    "encode_mulaw",
    "encode_wav_pcm16",
    "resample",
    "sniff_format",
    "wav_format",
]

FloatArray = npt.NDArray[np.float32]

#: What a client may send, quoted in every "could not decode" message.
ACCEPTED_FORMATS: Final = (
    "WAV (PCM 8/16/24/32-bit, float, mu-law, A-law), FLAC, MP3, Ogg Opus, Ogg Vorbis, WebM Opus, "
    "or headerless LINEAR16/MULAW/ALAW/FLOAT32 with sample_rate_hz"
)

#: The ffmpeg executable; tests point it elsewhere to check the missing-binary error.
FFMPEG_BINARY = "ffmpeg"
#: ffmpeg's time limit: this plus so much per MB of input. ffmpeg decodes even the densest
#: codec (Opus at 6 kb/s: 22 min of audio per MB) at several MB/s, so this only trips on a hang.
FFMPEG_TIMEOUT_S = 20.0
FFMPEG_TIMEOUT_S_PER_MB = 10.0

_ENC = audio_pb2.AudioEncoding
#: The enum's names without prefix, lower case, in enum order ("unspecified", "linear16", ...).
_ENCODING_NAMES: Final = [v.name.removeprefix("AUDIO_ENCODING_").lower() for v in _ENC.DESCRIPTOR.values]
#: Encodings whose bytes carry no header: rate and channels come from the request.
_HEADERLESS: Final = {"linear16", "mulaw", "alaw", "float32"}
#: Container encodings and the format `sniff_format` reports for their bytes.
_CONTAINER_FORMAT: Final = {
    "wav": "wav",
    "flac": "flac",
    "mp3": "mp3",
    "ogg_opus": "ogg",
    "webm_opus": "webm",
}
#: Extra spellings accepted for `encoding` besides the enum's own names.
_ALIASES: Final = {
    "": "unspecified",
    "auto": "unspecified",
    "pcm16": "linear16",
    "s16le": "linear16",
    "pcm_s16le": "linear16",
    "ulaw": "mulaw",
    "mu_law": "mulaw",
    "pcm_mulaw": "mulaw",
    "a_law": "alaw",
    "pcm_alaw": "alaw",
    "f32le": "float32",
    "pcm_f32le": "float32",
    "wave": "wav",
    "ogg": "ogg_opus",
    "opus": "ogg_opus",
    "webm": "webm_opus",
    "mpeg": "mp3",
}
#: Input format names ffmpeg's `-f` takes, so it never has to guess.
_FFMPEG_DEMUXER: Final = {"wav": "wav", "flac": "flac", "mp3": "mp3", "ogg": "ogg", "webm": "matroska"}
_FORMAT_LABEL: Final = {"wav": "WAV", "flac": "FLAC", "mp3": "MP3", "ogg": "Ogg", "webm": "WebM"}
#: libsndfile subtypes holding floats, whose scale is checked like FLOAT32's.
_FLOAT_SUBTYPES: Final = {"FLOAT", "DOUBLE"}
#: A float peak above this (+12 dBFS) is not hot audio but samples scaled as integers.
_FLOAT_PEAK_LIMIT: Final = 4.0
#: The sample rates and channel counts any audio may declare, in a header or a request. Anything
#: outside is refused before decoding: a WAV header saying 2,147,483,647 Hz would otherwise ask
#: the resampler for a filter of billions of taps, and 1,024 channels for ~1,000x the memory of
#: mono. Telephony is 8 kHz, studio recordings go to 384 kHz; speech needs no more than 2 channels
#: per speaker.
MIN_SAMPLE_RATE_HZ: Final = 1000
MAX_SAMPLE_RATE_HZ: Final = 768_000
MAX_CHANNELS: Final = 32
#: Frames libsndfile decodes per read: memory follows the samples really there, not a header's claim.
_READ_BLOCK_FRAMES: Final = 1 << 18
#: Bound on the polyphase resampler's up/down factors (legitimate rates need at most ~3,600, e.g.
#: 352.8 kHz -> 16 kHz is 20/441); an odd rate beyond it is resampled at the nearest ratio within.
_MAX_RESAMPLE_FACTOR: Final = 4096


class AudioError(InvalidArgument):
    """The audio cannot be decoded: empty, corrupt, unsupported or inconsistent with its declaration.

    An INVALID_ARGUMENT: sending the same bytes again will fail the same way,
    so the message says what was wrong and what would be accepted.
    """


class AudioTooLarge(ResourceExhausted):
    """The audio is over the service's byte or duration limit; the message gives both numbers."""


def check_format(sample_rate_hz: int, channel_count: int, what: str) -> None:
    """Refuses a rate or channel count no speech audio has, before a byte is decoded.

    `what` says where the numbers came from ("the WAV header", "sample_rate_hz"),
    so the client knows which declaration to fix.
    """
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(
            f"{what} gives a sample rate of {sample_rate_hz} Hz; accepted are "
            f"{MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz"
        )
    if not 1 <= channel_count <= MAX_CHANNELS:
        raise AudioError(f"{what} gives {channel_count} channels; accepted are 1-{MAX_CHANNELS}")


@dataclass(frozen=True)
class AudioLimits:
    """Caps on one audio input, so one request cannot take all of a service's memory or time."""

    max_bytes: int
    max_duration_s: float

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> AudioLimits:
        """The limits every service reads from `SORIFLOW_AUDIO_MAX_BYTES` / `_MAX_DURATION_S`."""
        return cls(max_bytes=settings.audio_max_bytes, max_duration_s=settings.audio_max_duration_s)


@dataclass(frozen=True, eq=False)
class Audio:
    """Decoded audio: float32 samples in [-1, 1] and their rate.

    `samples` has shape (n,) for mono and (channels, n) when the channels were
    kept (`decode_audio(..., mono=False)`), so per-channel work (one speaker
    per channel in call recordings) indexes rows.
    """

    samples: FloatArray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim not in (1, 2):
            raise ValueError(f"samples must have shape (n,) or (channels, n), not {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {self.sample_rate}")

    @property
    def frame_count(self) -> int:
        """Samples per channel."""
        return int(self.samples.shape[-1])

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.sample_rate

    @property
    def channel_count(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[0])

    def channel(self, i: int) -> FloatArray:
        """Samples of channel `i` (0-based); channel 0 of mono audio is the audio itself.

        Raises AudioError (INVALID_ARGUMENT), because an out-of-range channel
        usually comes from a request naming channels the recording lacks.
        """
        if not 0 <= i < self.channel_count:
            raise AudioError(f"the audio has {self.channel_count} channel(s); there is no channel {i}")
        return self.samples if self.samples.ndim == 1 else self.samples[i]

    def to_mono(self) -> Audio:
        """The average of the channels (self when already mono)."""
        if self.samples.ndim == 1:
            return self
        return Audio(self.samples.mean(axis=0, dtype=np.float32), self.sample_rate)


# --------------------------------------------------------------------------- sniffing


def _id3_end(data: bytes) -> int:
    """Offset just past any ID3v2 tags at the start (0 when there are none)."""
    pos = 0
    for _ in range(4):  # files carry one tag, rarely two; a bound keeps crafted input cheap
        if data[pos : pos + 3] != b"ID3" or len(data) < pos + 10:
            break
        size = 0
        for byte in data[pos + 6 : pos + 10]:  # "syncsafe": 7 bits per byte
            size = (size << 7) | (byte & 0x7F)
        footer = 10 if data[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos


def _is_mp3_frame(header: bytes) -> bool:
    """Whether 4 bytes are a plausible MPEG-1/2/2.5 Layer III frame header."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return False
    version = (header[1] >> 3) & 3  # 1 is reserved
    layer = (header[1] >> 1) & 3  # 1 is Layer III
    bitrate = header[2] >> 4  # 15 is invalid
    rate = (header[2] >> 2) & 3  # 3 is reserved
    return version != 1 and layer == 1 and bitrate != 15 and rate != 3


def _sniff(data: bytes) -> tuple[str | None, bool]:
    """The container format and whether its magic is unmistakable (not a 2-byte frame sync)."""
    if data[:4] in (b"RIFF", b"RF64", b"BW64") and data[8:12] == b"WAVE":
        return "wav", True
    if data[:4] == b"fLaC":
        return "flac", True
    if data[:4] == b"OggS":
        return "ogg", True
    if data[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM and Matroska
        return "webm", True
    if data[:3] == b"ID3":
        end = _id3_end(data)
        return ("flac" if data[end : end + 4] == b"fLaC" else "mp3"), True
    if _is_mp3_frame(data[:4]):
        return "mp3", False
    return None, False


def sniff_format(data: bytes) -> str | None:
    """The container in `data` from its magic number: "wav", "flac", "mp3", "ogg", "webm" or None.

    MP3 is recognised by an ID3 tag or a Layer III frame header at the start;
    FLAC behind an ID3 tag is FLAC. Used for AUDIO_ENCODING_UNSPECIFIED and to
    catch declarations that contradict the bytes.
    """
    return _sniff(data)[0]


# --------------------------------------------------------------------------- G.711


def _mulaw_table() -> FloatArray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 7
    magnitude = ((((codes & 0x0F) << 3) + 0x84) << exponent) - 0x84
    linear = np.where(codes & 0x80, -magnitude, magnitude)
    return (linear / 32768.0).astype(np.float32)


def _alaw_table() -> FloatArray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 7
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    linear = np.where(codes & 0x80, magnitude, -magnitude)
    return (linear / 32768.0).astype(np.float32)


#: G.711 code -> sample, as ITU-T G.711 defines them (audioop is gone in Python 3.13).
_MULAW: Final = _mulaw_table()
_ALAW: Final = _alaw_table()


def _g711_encoder(law: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """The lower edges of the quantisation intervals above the first, and each interval's code.

    G.711 is defined on 14-bit (mu-law) / 13-bit (A-law) magnitudes: each
    code's level is the middle of an interval whose width doubles from one
    segment to the next, so an edge is not always halfway between levels.
    The intervals come from the code's exponent, as in the reference g711.c
    (which audioop and ffmpeg's mu-law follow bit for bit).
    Codes with bit 0x80 set are the positive ones in both laws.
    """
    positive = np.arange(128, 256)
    if law == "mulaw":
        levels = np.rint(_MULAW[positive].astype(np.float64) * 8192).astype(np.int64)
        widths = 2 << ((~positive >> 4) & 7)
    else:
        levels = np.rint(_ALAW[positive].astype(np.float64) * 4096).astype(np.int64)
        widths = 1 << np.maximum((((positive ^ 0x55) >> 4) & 7), 1)
    order = np.argsort(levels, kind="stable")
    lower_edges = (levels - widths // 2)[order]
    return lower_edges[1:], positive[order].astype(np.uint8)


_MULAW_ENC: Final = _g711_encoder("mulaw")
_ALAW_ENC: Final = _g711_encoder("alaw")


def decode_mulaw(data: bytes) -> FloatArray:
    """G.711 mu-law bytes to float32 samples."""
    return _MULAW[np.frombuffer(data, dtype=np.uint8)]


def decode_alaw(data: bytes) -> FloatArray:
    """G.711 A-law bytes to float32 samples."""
    return _ALAW[np.frombuffer(data, dtype=np.uint8)]


def _g711_encode(
    samples: npt.ArrayLike, encoder: tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]], shift: int
) -> bytes:
    thresholds, codes = encoder
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:  # (channels, n) -> interleaved
        x = x.T
    linear = np.clip(np.rint(x.ravel() * 32768.0), -32768, 32767).astype(np.int32) >> shift
    # mu-law is sign-magnitude; A-law's negative side is one's complement (-v - 1), as g711.c has it
    magnitude = np.abs(linear) if shift == 2 else np.where(linear < 0, ~linear, linear)
    coded = codes[np.searchsorted(thresholds, magnitude, side="right")]
    out: bytes = np.where(linear < 0, coded ^ 0x80, coded).astype(np.uint8).tobytes()
    return out


def encode_mulaw(samples: npt.ArrayLike) -> bytes:
    """Float samples ((n,) or (channels, n), interleaved on output) to G.711 mu-law bytes."""
    return _g711_encode(samples, _MULAW_ENC, 2)


def encode_alaw(samples: npt.ArrayLike) -> bytes:
    """Float samples ((n,) or (channels, n), interleaved on output) to G.711 A-law bytes."""
    return _g711_encode(samples, _ALAW_ENC, 3)


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=32)  # streaming calls resample many small chunks at the same rates
def _polyphase_filter(up: int, down: int) -> tuple[FloatArray, int]:
    """The anti-aliasing filter of `resample`, split in `up` phases, and its half length.

    The same Kaiser-windowed sinc (beta 5, 10 zero crossings each side of
    the narrower band) as `scipy.signal.resample_poly`'s default, so results
    match it (tests check) without scipy in every image: importing
    scipy.signal alone takes ~2.5 s. Row p holds taps h[p + i*up], reversed
    so that a window of input samples in time order dots with it.
    """
    max_rate = max(up, down)
    half = 10 * max_rate
    offsets = np.arange(-half, half + 1)
    h = np.sinc(offsets / max_rate) * np.kaiser(2 * half + 1, 5.0)
    h *= up / h.sum()  # unity gain at DC once zeros are interleaved
    taps = -(-h.size // up)
    padded = np.zeros(taps * up)
    padded[: h.size] = h
    phases = np.ascontiguousarray(padded.reshape(taps, up).T[:, ::-1], dtype=np.float32)
    phases.flags.writeable = False  # shared by every caller through the cache
    return phases, half


def resample(samples: npt.ArrayLike, orig_rate: int, target_rate: int) -> FloatArray:
    """Polyphase FIR resampling along the last axis of (n,) or (channels, n) samples.

    Equivalent to `scipy.signal.resample_poly(x, up, down, axis=-1)` (windowed
    sinc, ~60 dB stopband: speech stays clean down to 8 kHz; a rate sharing no
    factor with the target, such as 44,101 Hz, is taken at the nearest ratio whose
    factors stay under 4,096, off by less than a millionth) at the same speed,
    ~1000x real time; the output has ceil(n * target / orig) samples, aligned
    with the input (no filter delay). Each output sample is a dot product of
    the input window under the filter with one phase of it, computed in blocks
    so memory stays proportional to the signal.
    """
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, not {orig_rate} -> {target_rate}")
    x = np.asarray(samples, dtype=np.float32)
    if orig_rate == target_rate:
        return x
    g = math.gcd(orig_rate, target_rate)
    up, down = target_rate // g, orig_rate // g
    if max(up, down) > _MAX_RESAMPLE_FACTOR:
        # An odd rate (44,101 Hz) makes both factors huge, and the filter with them (a 0.1 s clip
        # at 767,999 Hz needed 1.5 GB). The nearest ratio with small factors is off by < 1e-6.
        ratio = Fraction(target_rate, orig_rate)
        near = ratio.limit_denominator(max(1, int(_MAX_RESAMPLE_FACTOR / max(1, math.ceil(ratio)))))
        up, down = near.numerator, near.denominator
    n = x.shape[-1]
    n_out = -(-n * up // down)
    lead = x.shape[:-1]
    y = np.empty((*lead, n_out), dtype=np.float32)
    if n_out == 0:
        return y
    phases, half = _polyphase_filter(up, down)
    taps = phases.shape[1]
    # Output k is centred on input position (k*down + half) / up of the zero-stuffed signal.
    last = ((n_out - 1) * down + half) // up
    xp = np.concatenate(
        [np.zeros((*lead, taps - 1), np.float32), x, np.zeros((*lead, max(0, last - n + 1)), np.float32)],
        axis=-1,
    )
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps, axis=-1)
    block = 8192
    for r in range(min(up, n_out)):  # outputs r, r+up, r+2up, ... share one phase
        first, phase = divmod(r * down + half, up)
        count = len(range(r, n_out, up))
        for j in range(0, count, block):
            c = min(block, count - j)
            start = first + j * down
            y[..., r + j * up : r + (j + c) * up : up] = (
                windows[..., start : start + c * down : down, :] @ phases[phase]
            )
    return y


def encode_wav_pcm16(samples: npt.ArrayLike, sample_rate: int) -> bytes:
    """A 16-bit PCM WAV file of float samples ((n,) or (channels, n)), clipped to [-1, 1].

    Scaled by 32768 so that decoding gives back 16-bit sources exactly.
    """
    x = np.asarray(samples, dtype=np.float32)
    channels = 1 if x.ndim == 1 else x.shape[0]
    frames = x if x.ndim == 1 else x.T
    pcm: bytes = np.clip(np.rint(frames * 32768.0), -32768, 32767).astype("<i2").tobytes()
    block = 2 * channels
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
    return header + b"data" + struct.pack("<I", len(pcm)) + pcm


def _encoding_name(encoding: int | str) -> str:
    """The lower-case enum name without prefix ("linear16") for an enum value or a name."""
    if isinstance(encoding, str):
        key = encoding.strip().lower().replace("-", "_")
        key = key.removeprefix("audio_encoding_")
        key = _ALIASES.get(key, key)
        if key in _ENCODING_NAMES:
            return key
        raise AudioError(
            f"unknown audio encoding {encoding!r}; use one of "
            + ", ".join(n.upper() for n in _ENCODING_NAMES)
        )
    value = _ENC.DESCRIPTOR.values_by_number.get(int(encoding))
    if value is None:
        raise AudioError(f"unknown audio encoding value {encoding}")
    return value.name.removeprefix("AUDIO_ENCODING_").lower()


def _describe_bytes(data: bytes) -> str:
    """A short description of unrecognised bytes for the error message."""
    text = data[:256].decode("utf-8", "replace").rstrip("\ufffd")  # a character cut at 256 is fine
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return f"they look like text: {text[:24]!r}"
    return "they start with " + data[:16].hex(" ")


def _undecodable(reason: str, fmt: str | None = None) -> AudioError:
    what = f" as {_FORMAT_LABEL.get(fmt or '', fmt)}" if fmt else ""
    return AudioError(f"could not decode audio{what}: {reason}; accepted formats: {ACCEPTED_FORMATS}")


def _check_duration(
    frames: int, rate: int, limits: AudioLimits | None, *, at_least: bool = False, by_header: bool = False
) -> None:
    if limits is None or rate <= 0:
        return
    duration = frames / rate
    if duration > limits.max_duration_s:
        more = "more than " if at_least else ""
        source = " by its header" if by_header else ""
        raise AudioTooLarge(
            f"audio is {more}{duration:.1f} s long{source}; the limit is {limits.max_duration_s:g} s "
            "(SORIFLOW_AUDIO_MAX_DURATION_S)"
        )


def _check_float_scale(x: FloatArray, what: str) -> None:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > _FLOAT_PEAK_LIMIT:
        raise AudioError(
            f"{what} samples must lie in [-1, 1] but reach {peak:g}; were they scaled as integers? "
            "Send 16-bit integers as LINEAR16 instead"
        )


# --------------------------------------------------------------------------- decoders


def _decode_headerless(data: bytes, encoding: str, sample_rate_hz: int, channel_count: int) -> FloatArray:
    """Headerless PCM/G.711 to (channels, n) float32."""
    label = encoding.upper()
    if sample_rate_hz <= 0:
        raise AudioError(
            f"{label} audio has no header, so sample_rate_hz is required (e.g. 16000, or 8000 for telephony)"
        )
    channels = channel_count or 1
    if not 0 <= channel_count <= MAX_CHANNELS:
        raise AudioError(f"channel_count must be 0-{MAX_CHANNELS}, not {channel_count}")
    check_format(sample_rate_hz, channels, f"{label} audio's sample_rate_hz/channel_count")
    width = {"linear16": 2, "float32": 4, "mulaw": 1, "alaw": 1}[encoding]
    if len(data) % (width * channels):
        raise AudioError(
            f"{label} audio of {len(data)} bytes is not a whole number of {width * channels}-byte frames "
            f"({width} byte(s) per sample x {channels} channel(s)); is the encoding or channel_count wrong?"
        )
    if encoding == "linear16":
        x = np.frombuffer(data, dtype="<i2").astype(np.float32)
        x *= np.float32(1 / 32768)
    elif encoding == "float32":
        x = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if not np.isfinite(x).all():
            raise AudioError("FLOAT32 audio contains NaN or infinite samples")
        _check_float_scale(x, "FLOAT32")
    elif encoding == "mulaw":
        x = decode_mulaw(data)
    else:
        x = decode_alaw(data)
    return x.reshape(-1, channels).T


def wav_format(data: bytes) -> tuple[int, int] | None:
    """(sample rate, channels) from a RIFF/RF64 WAV's `fmt ` chunk; None when it has none in reach."""
    pos = 12
    for _ in range(64):  # a few chunks (JUNK, ds64, bext) may come first; crafted input stays cheap
        if pos + 8 > len(data):
            return None
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt ":
            if size < 16 or pos + 8 + 16 > len(data):  # a format chunk cut short says nothing
                return None
            channels, rate = struct.unpack_from("<HI", data, pos + 10)
            return int(rate), int(channels)
        if chunk == b"data":
            return None
        pos += 8 + size + (size & 1)
    return None


def _mp3_has_length_header(data: bytes) -> bool:
    """Whether the first MP3 frame carries a Xing/Info/VBRI header, from which libsndfile knows the length."""
    start = _id3_end(data)
    return _is_mp3_frame(data[start : start + 4]) and any(
        tag in data[start : start + 64] for tag in (b"Xing", b"Info", b"VBRI")
    )


def _ogg_opus_rate(data: bytes) -> int | None:
    """The input rate an Ogg Opus stream's OpusHead declares (0: unset); None when it is not Opus."""
    if len(data) < 28:
        return None
    head = 27 + data[26]  # past the first page's header and segment table
    if data[head : head + 8] != b"OpusHead" or len(data) < head + 16:
        return None
    return int(struct.unpack_from("<I", data, head + 12)[0])


def _sndfile_suits(data: bytes, fmt: str) -> bool:
    """Whether libsndfile is the decoder to use for this container (see the module docstring)."""
    if fmt == "mp3":
        return _mp3_has_length_header(data)
    if fmt == "ogg":
        rate = _ogg_opus_rate(data)  # None: Vorbis (or FLAC) in Ogg
        return rate is None or 0 < rate <= 24000 or shutil.which(FFMPEG_BINARY) is None
    return fmt in ("wav", "flac")


def _decode_sndfile(data: bytes, limits: AudioLimits | None) -> tuple[FloatArray, int]:
    """libsndfile, in process: (channels, n) float32 and the rate. Raises whatever libsndfile raises."""
    import soundfile

    with soundfile.SoundFile(io.BytesIO(data)) as f:
        rate, channels, subtype = int(f.samplerate), int(f.channels), str(f.subtype)
        check_format(rate, channels, f"the {str(f.format).upper()} header")
        _check_duration(int(f.frames), rate, limits, by_header=True)  # before decoding
        # In blocks, so memory follows the samples really there: a header may claim more frames
        # than the file holds (libsndfile allocates the claim up front when asked for "all").
        blocks: list[FloatArray] = []
        total = 0
        while True:
            chunk = f.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not len(chunk):
                break
            blocks.append(chunk)
            total += len(chunk)
            _check_duration(total, rate, limits, at_least=True)
    frames = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    x: FloatArray = np.ascontiguousarray(frames.T) if channels > 1 else frames.reshape(1, -1)
    if subtype in _FLOAT_SUBTYPES and x.size:
        if not np.isfinite(x).all():
            raise AudioError("the WAV file's float samples include NaN or infinity")
        _check_float_scale(x, "the WAV file's float")
    return x, rate


def _parse_ffmpeg_wav(out: bytes) -> tuple[FloatArray, int]:
    """The float WAV ffmpeg writes to a pipe (sizes unset): (channels, n) and the rate."""
    pos, channels, rate = 12, 0, 0
    while pos + 8 <= len(out):
        chunk, size = out[pos : pos + 4], struct.unpack_from("<I", out, pos + 4)[0]
        if chunk == b"fmt ":
            channels, rate = struct.unpack_from("<HI", out, pos + 10)
        elif chunk == b"data":
            if channels <= 0 or rate <= 0:
                break
            body = memoryview(out)[pos + 8 :]
            usable = len(body) - len(body) % (4 * channels)
            x = np.frombuffer(body[:usable], dtype="<f4")
            return x.reshape(-1, channels).T, rate
        pos += 8 + size + (size & 1)
    raise Internal("ffmpeg wrote no WAV header; is the ffmpeg binary working?")


def _decode_ffmpeg(data: bytes, fmt: str | None, limits: AudioLimits | None) -> tuple[FloatArray, int]:
    """ffmpeg through pipes: (channels, n) float32 at the native rate, and the rate."""
    binary = shutil.which(FFMPEG_BINARY)
    if binary is None:
        raise Internal(
            f"the ffmpeg program ({FFMPEG_BINARY!r}) is not installed, and it is needed to decode "
            f"{_FORMAT_LABEL.get(fmt or '', 'this audio')}; install ffmpeg, or send WAV, FLAC or Ogg"
        )
    args: list[str] = []
    if fmt in _FFMPEG_DEMUXER:
        args += ["-f", _FFMPEG_DEMUXER[fmt]]
    args += ["-i", "pipe:0", "-map", "0:a:0", "-vn", "-sn", "-dn"]
    if limits is not None:  # stop early: a longer file is rejected anyway, and memory stays bounded
        args += ["-t", f"{limits.max_duration_s + 1:.3f}"]
    args += ["-acodec", "pcm_f32le", "-bitexact", "-f", "wav", "pipe:1"]
    timeout = FFMPEG_TIMEOUT_S + FFMPEG_TIMEOUT_S_PER_MB * len(data) / 1e6
    try:
        out, err = ffmpeg.pipe(args, data, timeout_s=timeout, binary=binary)
    except TimeoutError:
        raise AudioError(
            f"decoding the audio took longer than {timeout:.3g} s; is the file damaged?"
        ) from None
    except ffmpeg.FfmpegFailed as exc:
        why = exc.reason
        if "does not contain any stream" in why or "matches no streams" in why:
            why = "the file holds no audio stream"
        raise _undecodable(why, fmt) from None
    x, rate = _parse_ffmpeg_wav(out)
    check_format(rate, x.shape[0], f"the {_FORMAT_LABEL.get(fmt or '', 'audio')} stream")
    if limits is not None:
        _check_duration(x.shape[1], rate, limits, at_least=True)
    if x.shape[1] == 0 and err.strip():
        raise _undecodable(ffmpeg.reason(err), fmt)
    return x, rate


def _decode_container(data: bytes, fmt: str | None, limits: AudioLimits | None) -> tuple[FloatArray, int]:
    """A container by the decoder measured best for it, falling back to ffmpeg when libsndfile fails."""
    if fmt is not None and _sndfile_suits(data, fmt):
        try:
            x, rate = _decode_sndfile(data, limits)
        except (AudioError, AudioTooLarge):
            raise
        except Exception as exc:  # libsndfile has no codec for it, or the file is damaged
            if shutil.which(FFMPEG_BINARY) is None:
                raise _undecodable(str(exc).split(": ", 1)[-1].strip() or "libsndfile failed", fmt) from None
        else:
            if x.shape[1] > 0 or shutil.which(FFMPEG_BINARY) is None:
                return x, rate
            # libsndfile found nothing (e.g. an Ogg cut before its last page): ffmpeg may find more
    return _decode_ffmpeg(data, fmt, limits)


def decode_audio(
    data: bytes,
    *,
    encoding: int | str = 0,
    sample_rate_hz: int = 0,
    channel_count: int = 0,
    target_rate: int | None = 16000,
    mono: bool = True,
    limits: AudioLimits | None = None,
) -> Audio:
    """Decodes audio bytes as `AudioInput` describes them (see audio.proto).

    `encoding` is an `AudioEncoding` value or its name ("LINEAR16", "mulaw",
    "wav", ...); UNSPECIFIED sniffs the container. Headerless encodings need
    `sample_rate_hz` (`channel_count` 0 means 1) unless the bytes are a WAV
    file after all; containers ignore both. The result is float32 at
    `target_rate` (None keeps the file's rate), shape (n,) averaged to mono,
    or (channels, n) with `mono=False`.

    Raises AudioTooLarge (RESOURCE_EXHAUSTED) past `limits` — the byte limit
    is checked before any decoding — and AudioError (INVALID_ARGUMENT) for
    anything that cannot be decoded.
    """
    if target_rate is not None and target_rate <= 0:
        raise ValueError(f"target_rate must be positive or None, not {target_rate}")
    if limits is not None and len(data) > limits.max_bytes:
        raise AudioTooLarge(
            f"audio is {len(data)} bytes; the limit is {limits.max_bytes} bytes (SORIFLOW_AUDIO_MAX_BYTES)"
        )
    if not data:
        raise AudioError("audio is empty: no bytes were sent")
    name = _encoding_name(encoding)
    sniffed, unmistakable = _sniff(data)

    if name in _HEADERLESS and sniffed != "wav":  # a WAV header wins over the declaration
        if unmistakable and sniffed is not None:
            raise AudioError(
                f"audio declared as headerless {name.upper()} holds a {_FORMAT_LABEL[sniffed]} file; "
                f"declare it as {sniffed.upper()} or leave the encoding unspecified"
            )
        x = _decode_headerless(data, name, sample_rate_hz, channel_count)
        rate, what = sample_rate_hz, f"{name.upper()} audio"
    else:
        declared = _CONTAINER_FORMAT.get(name)  # None: unspecified, or headerless that is WAV
        if declared is not None and sniffed is not None and declared != sniffed:
            raise AudioError(
                f"audio declared as {name.upper()} holds {_FORMAT_LABEL[sniffed]} by its first bytes; "
                f"declare it as {sniffed.upper()} or leave the encoding unspecified"
            )
        fmt = sniffed or declared
        if fmt is None:
            raise _undecodable(f"the bytes are not a recognised audio format ({_describe_bytes(data)})")
        header = wav_format(data) if fmt == "wav" else None
        if header is not None:  # before any decoder: libsndfile and ffmpeg both trust it
            check_format(*header, "the WAV header")
        x, rate = _decode_container(data, fmt, limits)
        what = f"{_FORMAT_LABEL[fmt]} file"
    return _finish(x, rate, what=what, target_rate=target_rate, mono=mono, limits=limits)


def _finish(
    x: FloatArray, rate: int, *, what: str, target_rate: int | None, mono: bool, limits: AudioLimits | None
) -> Audio:
    """Checks, mono mix and resampling shared by all decoders; x is (channels, n)."""
    if x.shape[1] == 0:
        raise AudioError(f"audio is empty: the {what} holds no samples")
    _check_duration(x.shape[1], rate, limits)
    if not np.isfinite(x).all():  # float sources are checked earlier; this is cheap insurance
        raise AudioError(f"the {what} decodes to NaN or infinite samples")
    y: FloatArray = (x.mean(axis=0, dtype=np.float32) if x.shape[0] > 1 else x[0]) if mono else x
    if target_rate is not None and target_rate != rate:
        y = resample(y, rate, target_rate)
        rate = target_rate
    y = np.clip(y, -1.0, 1.0, out=y if y.flags.writeable else None)  # resampling can overshoot
    return Audio(np.ascontiguousarray(y, dtype=np.float32), rate)
