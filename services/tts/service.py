"""The TextToSpeechService servicer and its lifecycle on the shared runtime.

`start()` loads the enabled engines (espeak-ng lists its voices, piper loads
its ONNX voice, Google lists its voices if reachable); health is NOT_SERVING
until then. Requests are validated on the event loop (cheap, and errors come
back before queueing), then take a slot in a bounded `WorkQueue` and run in
worker threads that stop between chunks when the client cancels or its
deadline passes. `SynthesizeStream` synthesizes one sentence per worker call
and yields it at once, so the first audio leaves long before the last
sentence is made.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import grpc

from soriflow.concurrency import WorkQueue, run_blocking
from soriflow.errors import Unavailable
from soriflow.server import GrpcService
from soriflow.tts.settings import Settings
from soriflow.tts.synthesizer import Synthesizer
from soriflow.tts.voices import VoiceInfo
from soriflow.v1 import tts_pb2, tts_pb2_grpc

log = logging.getLogger("soriflow.tts")

SERVICE_NAME = "soriflow.v1.TextToSpeechService"


def voice_to_proto(voice: VoiceInfo) -> tts_pb2.Voice:
    return tts_pb2.Voice(
        name=voice.name,
        language_codes=list(voice.language_codes),
        engine=voice.engine,
        gender=int(voice.gender),  # type: ignore[arg-type]
        natural_sample_rate_hz=voice.natural_sample_rate_hz,
        supports_ssml=voice.supports_ssml,
    )


class TextToSpeechServicer(tts_pb2_grpc.TextToSpeechServiceServicer):
    """Synthesize, SynthesizeStream and ListVoices over the loaded engines."""

    def __init__(self, service: TtsService) -> None:
        self.service = service

    @property
    def synthesizer(self) -> Synthesizer:
        synthesizer = self.service.synthesizer
        if synthesizer is None:  # the interceptor refuses RPCs before start() returns; a safety net
            raise Unavailable("the TTS engines are still loading; retry shortly")
        return synthesizer

    async def Synthesize(
        self, request: tts_pb2.SynthesizeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.SynthesizeResponse:
        synthesizer = self.synthesizer
        plan = await asyncio.to_thread(synthesizer.plan, request)  # may list Google's voices
        async with self.service.queue.slot():
            return await run_blocking(lambda cancel: synthesizer.synthesize(request, cancel, plan))

    async def SynthesizeStream(
        self, request: tts_pb2.SynthesizeStreamRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[tts_pb2.SynthesizeStreamResponse]:
        synthesizer = self.synthesizer
        plan = await asyncio.to_thread(synthesizer.plan, request.request)
        chunks = plan.chunks(streaming=True)
        offset = 0
        async with self.service.queue.slot():
            for chunk in chunks:
                last = chunk.index == len(chunks) - 1
                step = partial(synthesizer.stream_chunk, plan, chunk, offset_frames=offset, last=last)
                response, frames = await run_blocking(step)
                offset += frames
                yield response

    async def ListVoices(
        self, request: tts_pb2.ListVoicesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tts_pb2.ListVoicesResponse:
        synthesizer = self.synthesizer
        voices = await asyncio.to_thread(synthesizer.voices, request.language_code, request.engine)
        return tts_pb2.ListVoicesResponse(voices=[voice_to_proto(v) for v in voices])


class TtsService(GrpcService[Settings]):
    """The TTS process: the enabled engines and a bounded queue in front of them."""

    name = "tts"
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.synthesizer: Synthesizer | None = None
        self.queue = WorkQueue(
            "tts",
            max_concurrency=settings.tts_max_concurrency,
            max_waiting=settings.tts_max_waiting,
            retry_after_s=settings.tts_retry_after_s,
        )
        self.servicer = TextToSpeechServicer(self)

    def register(self, server: grpc.aio.Server) -> None:
        tts_pb2_grpc.add_TextToSpeechServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        synthesizer = Synthesizer(self.settings)
        await asyncio.to_thread(synthesizer.load)
        self.synthesizer = synthesizer
        log.info(
            "tts ready: engines %s, default %s",
            ", ".join(synthesizer.engines),
            self.settings.tts_default_engine,
        )

    async def stop(self) -> None:
        if self.synthesizer is not None:
            self.synthesizer.close()
            self.synthesizer = None


def create_service(settings: Settings | None = None) -> TtsService:
    """The service `soriflow serve tts` runs."""
    return TtsService(settings or Settings())
