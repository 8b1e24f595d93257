"""Checks a SubmitJob request before anything is read, stored or created.

Everything a caller sends ends up in the job store (PostgreSQL refuses NUL
in text and would answer INTERNAL), in S3 keys, or is read with the
gateway's own role, so each field is bounded and checked here first:

- `audio.uri` and `s3://` parameters name an object (`s3://bucket/key`, no
  `.`/`..` segments or control characters: INVALID_ARGUMENT) inside
  `SORIFLOW_READ_URIS`, the input URIs or the submissions URI (else
  PERMISSION_DENIED);
- `audio.sample_rate_hz` / `audio.channel_count`, and inline WAV content's
  header: unset, or 1000-768000 Hz and 1-32 channels (INVALID_ARGUMENT);
- `idempotency_key`: at most 256 characters; `pipeline`: at most 100;
  `filename`: at most 255 UTF-8 bytes and not `.`/`..`; none of them with
  control or invisible formatting characters (INVALID_ARGUMENT);
- `metadata`: 64 entries, keys of 1-128 characters, values of 2 KiB, 16 KiB in
  all; `parameters`: 64 entries, values of 16 KiB, 64 KiB in all
  (RESOURCE_EXHAUSTED); no NUL in any value, no control characters in keys
  (INVALID_ARGUMENT).

Malformed identifiers are INVALID_ARGUMENT: no state of the system makes them
acceptable. Oversized maps are RESOURCE_EXHAUSTED, like audio over
`SORIFLOW_AUDIO_MAX_BYTES` and messages over gRPC's size cap: a size budget
was spent. Neither carries a retry hint; the message names the field and the
limit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from soriflow.audio import check_format, wav_format
from soriflow.errors import InvalidArgument, ResourceExhausted
from soriflow.gateway.settings import Settings
from soriflow.inputs import readable_uri
from soriflow.storage import ReadAllowList
from soriflow.v1 import gateway_pb2

MAX_IDEMPOTENCY_KEY_CHARS = 256
MAX_FILENAME_BYTES = 255
MAX_PIPELINE_CHARS = 100
MAX_KEY_CHARS = 128
MAX_ENTRIES = 64
MAX_METADATA_VALUE_BYTES = 2 * 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_PARAMETER_VALUE_BYTES = 16 * 1024
MAX_PARAMETERS_BYTES = 64 * 1024
#: How far into inline WAV content the format chunk is looked for (JUNK/bext chunks may come first).
_WAV_HEADER_BYTES = 64 * 1024


def _shown(text: str, limit: int = 60) -> str:
    """A field value as it may be quoted back: short, escaped."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _has_control(text: str, *, format_chars: bool = False, allow_whitespace: bool = False) -> bool:
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc" and not (allow_whitespace and char in "\t\n\r"):
            return True
        if format_chars and category == "Cf":  # zero-width and bidi overrides (spoofed names)
            return True
    return False


def _identifier(value: str, field: str, *, max_chars: int) -> None:
    if len(value) > max_chars:
        raise InvalidArgument(f"{field} is {len(value)} characters; the limit is {max_chars}")
    if _has_control(value, format_chars=True):
        raise InvalidArgument(
            f"{field} {_shown(value)} contains control or invisible formatting characters "
            "(NUL, newline, zero-width, bidi overrides); use printable text"
        )


def _filename(value: str) -> None:
    size = len(value.encode())
    if size > MAX_FILENAME_BYTES:
        raise InvalidArgument(f"filename is {size} bytes; the limit is {MAX_FILENAME_BYTES} bytes (UTF-8)")
    if _has_control(value, format_chars=True):
        raise InvalidArgument(
            f"filename {_shown(value)} contains control or invisible formatting characters "
            "(NUL, newline, zero-width, bidi overrides)"
        )
    base = value.replace("\\", "/").rsplit("/", 1)[-1]
    if base in (".", ".."):
        raise InvalidArgument(f"filename {_shown(value)} names no file; give a name like call.wav")


def _string_map(values: Mapping[str, str], field: str, *, max_value_bytes: int, max_total_bytes: int) -> None:
    if len(values) > MAX_ENTRIES:
        raise ResourceExhausted(f"{field} has {len(values)} entries; the limit is {MAX_ENTRIES}")
    total = 0
    for key, value in values.items():
        if not key:
            raise InvalidArgument(f"{field} has an empty key")
        if len(key) > MAX_KEY_CHARS:
            raise ResourceExhausted(
                f"{field} key {_shown(key, 40)} is {len(key)} characters; the limit is {MAX_KEY_CHARS}"
            )
        if _has_control(key):
            raise InvalidArgument(f"{field} key {_shown(key, 40)} contains control characters")
        if "\x00" in value:
            raise InvalidArgument(f"{field}[{key[:40]!r}] contains a NUL character, which text cannot hold")
        size = len(value.encode())
        if size > max_value_bytes:
            raise ResourceExhausted(
                f"{field}[{key[:40]!r}] is {size} bytes; the limit is {max_value_bytes} bytes a value"
            )
        total += len(key.encode()) + size
    if total > max_total_bytes:
        raise ResourceExhausted(f"{field} holds {total} bytes; the limit is {max_total_bytes} bytes in all")


def validate_submit(request: gateway_pb2.SubmitJobRequest, settings: Settings) -> None:
    """Raises the typed error of the first problem, before a byte is read or stored."""
    allowed = ReadAllowList.parse(settings.readable_uris())
    audio = request.audio
    if audio.WhichOneof("source") == "uri":
        readable_uri(audio.uri, allowed, "audio.uri")
    elif audio.content[:4] in (b"RIFF", b"RF64", b"BW64"):
        # A WAV header is read before anything is stored: one no decoder would take is refused now,
        # not after the upload was kept and a job was run to fail.
        header = wav_format(bytes(audio.content[:_WAV_HEADER_BYTES]))
        if header is not None:
            check_format(*header, "audio.content's WAV header")
        elif len(audio.content) <= _WAV_HEADER_BYTES:  # all of it was read: there is no format
            raise InvalidArgument(
                "audio.content is a WAV file without its format chunk (cut short?): send the whole file"
            )
    if audio.sample_rate_hz or audio.channel_count:
        if audio.sample_rate_hz < 0 or audio.channel_count < 0:
            raise InvalidArgument("audio.sample_rate_hz and audio.channel_count cannot be negative")
        check_format(
            audio.sample_rate_hz or 16000, audio.channel_count or 1, "audio.sample_rate_hz/channel_count"
        )
    if request.idempotency_key:
        _identifier(request.idempotency_key, "idempotency_key", max_chars=MAX_IDEMPOTENCY_KEY_CHARS)
    if request.filename:
        _filename(request.filename)
    if request.pipeline:
        _identifier(request.pipeline, "pipeline", max_chars=MAX_PIPELINE_CHARS)
    _string_map(
        request.metadata,
        "metadata",
        max_value_bytes=MAX_METADATA_VALUE_BYTES,
        max_total_bytes=MAX_METADATA_BYTES,
    )
    _string_map(
        request.parameters,
        "parameters",
        max_value_bytes=MAX_PARAMETER_VALUE_BYTES,
        max_total_bytes=MAX_PARAMETERS_BYTES,
    )
    for name, value in sorted(request.parameters.items()):
        if value.startswith("s3://"):  # read by the gateway (HEAD) and the stage services
            readable_uri(value, allowed, f"parameters[{name!r}]")
