"""Incremental decoding of a live stream's bytes into 16 kHz mono samples.

Chunks arrive at whatever size the client chose: a 16-bit sample or a
G.711 byte pair may be split between two messages, and a container page may
span many. Headerless encodings are decoded chunk by chunk in process, the
partial frame carried over; containers (Ogg/WebM Opus, MP3, FLAC, and WAV
sent as such or as LINEAR16 with a RIFF header) go through one ffmpeg process
per stream, fed on stdin as bytes arrive, while a thread reads f32le samples
from its stdout — so decoding keeps pace with the stream instead of waiting
for its end. Resampling keeps its filter state across chunks (soxr's stream
resampler), so chunk boundaries leave no clicks.

Audio that does not match its declared encoding is refused early with
INVALID_ARGUMENT: container magic numbers are checked on the first bytes,
headerless bytes that start with a container's magic are called out, float
samples must be finite and in range, and ffmpeg's own reason is reported when
it cannot decode the stream.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from soriflow.audio import (
    MAX_CHANNELS,
    AudioError,
    check_format,
    decode_alaw,
    decode_mulaw,
    resample,
    sniff_format,
    wav_format,
)
from soriflow.v1 import audio_pb2

FloatArray = npt.NDArray[np.float32]
TARGET_RATE: Final = 16000
_ENC = audio_pb2.AudioEncoding
_HEADERLESS_WIDTH: Final = {
    _ENC.AUDIO_ENCODING_LINEAR16: 2,
    _ENC.AUDIO_ENCODING_FLOAT32: 4,
    _ENC.AUDIO_ENCODING_MULAW: 1,
    _ENC.AUDIO_ENCODING_ALAW: 1,
}
#: Container encodings and (ffmpeg demuxer, formats `sniff_format` may report for them).
_CONTAINERS: Final = {
    _ENC.AUDIO_ENCODING_OGG_OPUS: ("ogg", {"ogg"}),
    _ENC.AUDIO_ENCODING_WEBM_OPUS: ("matroska", {"webm"}),
    _ENC.AUDIO_ENCODING_MP3: ("mp3", {"mp3"}),
    _ENC.AUDIO_ENCODING_FLAC: ("flac", {"flac"}),
    _ENC.AUDIO_ENCODING_WAV: ("wav", {"wav"}),
}
#: Bytes needed before the container magic can be judged.
_SNIFF_BYTES: Final = 12
#: How far to buffer a WAV stream's start looking for its `fmt ` chunk (checked before ffmpeg runs).
_WAV_HEADER_BYTES: Final = 4096


class StreamDecoder(Protocol):
    """Bytes in, 16 kHz mono float32 out, incrementally."""

    def feed(self, data: bytes) -> FloatArray:
        """Decodes what it can of `data` now; raises AudioError when the bytes are wrong."""
        ...

    def finish(self) -> FloatArray:
        """Decodes what is left once the client has half-closed."""
        ...

    def close(self) -> None:
        """Releases resources (idempotent)."""
        ...


class _Resampler:
    """Stateful resampling to 16 kHz (soxr when installed; per-chunk polyphase otherwise)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._stream = None
        if rate != TARGET_RATE:
            try:
                import soxr

                self._stream = soxr.ResampleStream(rate, TARGET_RATE, 1, dtype="float32", quality="HQ")
            except ImportError:  # pragma: no cover - soxr ships with the stt extra's dependencies
                self._stream = None

    def __call__(self, x: FloatArray, last: bool = False) -> FloatArray:
        if self.rate == TARGET_RATE:
            return x
        if self._stream is not None:
            return np.asarray(self._stream.resample_chunk(x, last=last), dtype=np.float32)
        return resample(x, self.rate, TARGET_RATE)


class HeaderlessDecoder:
    """LINEAR16, FLOAT32, MULAW, ALAW: decoded in process, a split frame carried to the next chunk."""

    def __init__(self, encoding: int, sample_rate_hz: int, channel_count: int) -> None:
        label = _ENC.Name(_ENC.ValueType(encoding)).removeprefix("AUDIO_ENCODING_")
        if sample_rate_hz <= 0:
            raise AudioError(
                f"{label} has no header: set streaming_config.sample_rate_hz (e.g. 16000 or 8000)"
            )
        self.channels = channel_count or 1
        if not 0 <= channel_count <= MAX_CHANNELS:
            raise AudioError(f"channel_count must be 0-{MAX_CHANNELS}, not {channel_count}")
        check_format(sample_rate_hz, self.channels, f"{label}'s sample_rate_hz/channel_count")
        self.encoding = encoding
        self.label = label
        self.frame = _HEADERLESS_WIDTH[_ENC.ValueType(encoding)] * self.channels
        self._carry = b""
        self._first = True
        self._resample = _Resampler(sample_rate_hz)

    def _check_first(self, data: bytes) -> None:
        fmt = sniff_format(data[:64]) if len(data) >= 4 else None
        if fmt is not None and fmt != "mp3":  # a 2-byte MP3 frame sync can occur in PCM by chance
            raise AudioError(
                f"the stream was declared {self.label} (headerless) but its bytes are {fmt.upper()}: "
                f"declare encoding {_container_name(fmt)} instead"
            )

    def feed(self, data: bytes) -> FloatArray:
        if self._first and data:
            self._first = False
            if self.encoding in (_ENC.AUDIO_ENCODING_LINEAR16, _ENC.AUDIO_ENCODING_FLOAT32) and data[:4] in (
                b"RIFF",
                b"RF64",
            ):
                raise _WavInstead()
            self._check_first(data)
        data = self._carry + data
        usable = len(data) - len(data) % self.frame
        self._carry = data[usable:]
        if not usable:
            return np.zeros(0, np.float32)
        raw = data[:usable]
        if self.encoding == _ENC.AUDIO_ENCODING_LINEAR16:
            x = np.frombuffer(raw, dtype="<i2").astype(np.float32) * np.float32(1 / 32768)
        elif self.encoding == _ENC.AUDIO_ENCODING_FLOAT32:
            x = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            if not np.isfinite(x).all():
                raise AudioError("FLOAT32 stream contains NaN or infinite samples: is the encoding right?")
            if x.size and float(np.max(np.abs(x))) > 4.0:
                raise AudioError(
                    "FLOAT32 samples go far beyond [-1, 1]: these look like integer PCM, declare LINEAR16"
                )
        elif self.encoding == _ENC.AUDIO_ENCODING_MULAW:
            x = decode_mulaw(raw)
        else:
            x = decode_alaw(raw)
        if self.channels > 1:
            x = x.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return self._resample(np.ascontiguousarray(x, dtype=np.float32))

    def finish(self) -> FloatArray:
        return self._resample(np.zeros(0, np.float32), last=True)

    def close(self) -> None:
        self._carry = b""


class _WavInstead(Exception):
    """LINEAR16/FLOAT32 bytes that start with a WAV header: the header wins (as for unary requests)."""


def _container_name(fmt: str) -> str:
    return {"ogg": "OGG_OPUS", "webm": "WEBM_OPUS", "mp3": "MP3", "flac": "FLAC", "wav": "WAV"}.get(fmt, fmt)


class FfmpegDecoder:
    """A container stream decoded by one ffmpeg process fed as bytes arrive."""

    def __init__(self, encoding: int, *, ffmpeg: str = "ffmpeg") -> None:
        value = _ENC.ValueType(encoding)
        self.label = _ENC.Name(value).removeprefix("AUDIO_ENCODING_")
        self.demuxer, self.expected = _CONTAINERS[value]
        self.ffmpeg = ffmpeg
        self._head = b""
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._carry = b""
        self._stderr = b""
        self._threads: list[threading.Thread] = []
        self._ended = False

    def _start(self) -> None:
        cmd = [
            self.ffmpeg,
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            self.demuxer,
            "-i",
            "pipe:0",
            "-vn",
            "-ac",
            "1",
            "-ar",
            str(TARGET_RATE),
            "-f",
            "f32le",
            "pipe:1",
        ]
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except FileNotFoundError:
            from soriflow.errors import Internal

            raise Internal(
                "ffmpeg is not installed on the STT server; it is needed for container streams"
            ) from None
        reader = threading.Thread(target=self._read, name="stt-ffmpeg-out", daemon=True)
        errors = threading.Thread(target=self._read_stderr, name="stt-ffmpeg-err", daemon=True)
        self._threads = [reader, errors]
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        while block := self._proc.stdout.read1(65536):  # type: ignore[attr-defined]
            self._out.put(block)
        self._out.put(None)

    def _read_stderr(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        self._stderr = self._proc.stderr.read()[-4000:]

    def _drain(self, wait: bool) -> FloatArray:
        chunks = [self._carry]
        while True:
            try:
                block = self._out.get(timeout=30) if wait else self._out.get_nowait()
            except queue.Empty:
                break
            if block is None:
                self._ended = True
                break
            chunks.append(block)
        data = b"".join(chunks)
        usable = len(data) - len(data) % 4
        self._carry = data[usable:]
        x = np.frombuffer(data[:usable], dtype="<f4").astype(np.float32)
        if not np.isfinite(x).all():  # float WAV/FLAC samples pass through ffmpeg as they are
            raise AudioError(f"the {self.label} stream holds NaN or infinite samples")
        return x

    def _check_failed(self) -> None:
        if self._ended and self._proc is not None:
            code = self._proc.wait()
            for thread in self._threads:
                thread.join(timeout=5)
            if code != 0:
                reason = self._stderr.decode("utf-8", "replace").strip().splitlines()
                detail = reason[-1] if reason else f"ffmpeg exited with status {code}"
                raise AudioError(f"cannot decode the {self.label} stream: {detail}; is the encoding right?")

    def _begin(self) -> None:
        """Checks the container magic of the first bytes, then starts ffmpeg and hands them over."""
        fmt = sniff_format(self._head[:4096])
        if fmt not in self.expected:
            seen = f"{fmt.upper()} data" if fmt else "bytes that are no known container"
            raise AudioError(
                f"the stream was declared {self.label} but starts with {seen}: "
                "send the encoding the audio really has"
            )
        header = wav_format(self._head) if fmt == "wav" else None
        if header is not None:  # ffmpeg would trust a header of 2**31 Hz or 65,535 channels
            check_format(*header, "the WAV header")
        self._start()
        head, self._head = self._head, b""
        self._write(head)

    def _write(self, data: bytes) -> None:
        assert self._proc is not None
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):  # ffmpeg gave up: its exit status and stderr say why
            while not self._ended:
                self._drain(wait=True)
            self._check_failed()

    def _head_complete(self) -> bool:
        """Enough bytes to judge the container (and, for WAV, to read its format first)."""
        if len(self._head) < _SNIFF_BYTES:
            return False
        if "wav" not in self.expected or self._head[:4] not in (b"RIFF", b"RF64", b"BW64"):
            return True  # judged on the magic alone (another container refuses WAV bytes at once)
        return wav_format(self._head) is not None or len(self._head) >= _WAV_HEADER_BYTES

    def feed(self, data: bytes) -> FloatArray:
        if self._proc is None:
            self._head += data
            if not self._head_complete():
                return np.zeros(0, np.float32)
            self._begin()
        else:
            if self._ended:
                self._check_failed()
                raise AudioError(f"the {self.label} stream ended inside the container but more bytes came")
            self._write(data)
        out = self._drain(wait=False)
        self._check_failed()
        return out

    def finish(self) -> FloatArray:
        if self._proc is None:
            if not self._head:
                return np.zeros(0, np.float32)
            self._begin()
        assert self._proc is not None
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.close()
        parts = []
        while not self._ended:
            parts.append(self._drain(wait=True))
        self._check_failed()
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


class _WavSwitching:
    """LINEAR16/FLOAT32 declared, but the first bytes turn out to be a WAV file: decode it as WAV."""

    def __init__(self, headerless: HeaderlessDecoder) -> None:
        self._inner: StreamDecoder = headerless

    def feed(self, data: bytes) -> FloatArray:
        try:
            return self._inner.feed(data)
        except _WavInstead:
            self._inner = FfmpegDecoder(_ENC.AUDIO_ENCODING_WAV)
            return self._inner.feed(data)

    def finish(self) -> FloatArray:
        return self._inner.finish()

    def close(self) -> None:
        self._inner.close()


def make_decoder(encoding: int, sample_rate_hz: int, channel_count: int) -> StreamDecoder:
    """The decoder for a stream's declared encoding; INVALID_ARGUMENT when it cannot be streamed."""
    if encoding in _HEADERLESS_WIDTH:
        return _WavSwitching(HeaderlessDecoder(encoding, sample_rate_hz, channel_count))
    if encoding in _CONTAINERS:
        return FfmpegDecoder(encoding)
    if encoding == _ENC.AUDIO_ENCODING_UNSPECIFIED:
        raise AudioError(
            "streaming_config.encoding is required: LINEAR16/MULAW/ALAW/FLOAT32 with sample_rate_hz, "
            "or OGG_OPUS, WEBM_OPUS, MP3, FLAC, WAV"
        )
    raise AudioError(f"encoding {encoding} is not a known AudioEncoding value")
