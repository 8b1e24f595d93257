"""Turning an `AudioInput` message into samples: inline bytes or an `s3://` object.

Every service that accepts audio goes through here, so limits, S3 errors and
decoding errors read the same everywhere.
"""

from __future__ import annotations

import asyncio

from soriflow.audio import Audio, AudioLimits, decode_audio
from soriflow.config import CommonSettings
from soriflow.errors import InvalidArgument, ResourceExhausted
from soriflow.storage import ObjectStore
from soriflow.v1 import audio_pb2


async def fetch_audio_bytes(audio: audio_pb2.AudioInput, *, store: ObjectStore, limits: AudioLimits) -> bytes:
    """The raw bytes of the input; S3 objects over the byte limit are refused before download."""
    source = audio.WhichOneof("source")
    if source == "content":
        if len(audio.content) > limits.max_bytes:
            raise ResourceExhausted(
                f"audio is {len(audio.content)} bytes, over the limit of {limits.max_bytes} bytes "
                "(SORIFLOW_AUDIO_MAX_BYTES)"
            )
        return bytes(audio.content)
    if source == "uri":
        uri = audio.uri
        return await asyncio.to_thread(store.read_bytes, uri, max_bytes=limits.max_bytes)
    raise InvalidArgument("no audio given: set audio.content (bytes) or audio.uri (s3://bucket/key)")


async def load_audio(
    audio: audio_pb2.AudioInput,
    *,
    settings: CommonSettings,
    store: ObjectStore | None = None,
    target_rate: int | None = 16000,
    mono: bool = True,
) -> Audio:
    """Fetches and decodes the input off the event loop."""
    limits = AudioLimits.from_settings(settings)
    data = await fetch_audio_bytes(audio, store=store or ObjectStore(settings), limits=limits)
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
