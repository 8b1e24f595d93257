"""Turning an `AudioInput` message into samples: inline bytes or an `s3://` object.

Every service that accepts audio goes through here, so limits, S3 errors,
decoding errors and the read allow-list (`SORIFLOW_READ_URIS`) are the same
everywhere: a URI is checked (INVALID_ARGUMENT when it cannot name an object,
PERMISSION_DENIED outside the allowed locations) before S3 is asked anything.
"""

from __future__ import annotations

import asyncio
import unicodedata

from soriflow.audio import Audio, AudioLimits, decode_audio
from soriflow.config import CommonSettings
from soriflow.errors import InvalidArgument, ResourceExhausted
from soriflow.storage import ObjectStore, ReadAllowList, S3Uri
from soriflow.v1 import audio_pb2

#: Invisible characters that change how text displays and say nothing: zero-width space, byte-order
#: mark, bidi embeddings, overrides and isolates (U+202E shows "txet" for "text"). Zero-width
#: (non-)joiners and the LRM/RLM marks are kept: Persian, Indic scripts and mixed RTL text need them.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


def clean_text(text: str, what: str) -> str:
    """Text a request carries, as the services read it; the same rules for every service.

    Control characters (NUL and the like; tab and line breaks are fine) are refused with
    INVALID_ARGUMENT naming the field: they are binary data, not text, and cannot be stored
    in PostgreSQL or read aloud. Invisible formatting characters are removed, so what is
    summarized, spoken or scored is what a reader sees.
    """
    for char in text:
        if unicodedata.category(char) == "Cc" and char not in "\t\n\r":
            raise InvalidArgument(f"{what} contains the control character U+{ord(char):04X}; send plain text")
    return text.translate(_INVISIBLE)


def has_words(text: str) -> bool:
    """Whether anything in `text` can be read: a letter or digit of any script."""
    return any(char.isalnum() for char in text)


def readable_uri(uri: str, allowed: ReadAllowList, what: str = "audio.uri") -> S3Uri:
    """The object a request names, if this process may read it (see `ReadAllowList`)."""
    target = S3Uri.parse_object(uri, what)
    allowed.check(target, what)
    return target


async def fetch_audio_bytes(
    audio: audio_pb2.AudioInput,
    *,
    store: ObjectStore,
    limits: AudioLimits,
    allowed: ReadAllowList,
    what: str = "audio",
) -> bytes:
    """The raw bytes of the input; S3 objects over the byte limit are refused before download."""
    source = audio.WhichOneof("source")
    if source == "content":
        if len(audio.content) > limits.max_bytes:
            raise ResourceExhausted(
                f"{what} is {len(audio.content)} bytes, over the limit of {limits.max_bytes} bytes "
                "(SORIFLOW_AUDIO_MAX_BYTES)"
            )
        return bytes(audio.content)
    if source == "uri":
        target = readable_uri(audio.uri, allowed, f"{what}.uri")
        return await asyncio.to_thread(store.read_bytes, target, max_bytes=limits.max_bytes)
    raise InvalidArgument(f"no {what} given: set {what}.content (bytes) or {what}.uri (s3://bucket/key)")


async def load_audio(
    audio: audio_pb2.AudioInput,
    *,
    settings: CommonSettings,
    store: ObjectStore | None = None,
    target_rate: int | None = 16000,
    mono: bool = True,
    what: str = "audio",
) -> Audio:
    """Fetches and decodes the input off the event loop; `what` names the field in messages."""
    limits = AudioLimits.from_settings(settings)
    data = await fetch_audio_bytes(
        audio,
        store=store or ObjectStore(settings),
        limits=limits,
        allowed=ReadAllowList.parse(settings.readable_uris()),
        what=what,
    )
    return await asyncio.to_thread(
        decode_audio,
        data,
        encoding=audio.encoding,
        sample_rate_hz=audio.sample_rate_hz,
        channel_count=audio.channel_count,
        target_rate=target_rate,
        mono=mono,
        limits=limits,
    )
