"""The SpeechToTextService servicer and its lifecycle on the shared runtime.

`create_service(settings)` returns a `GrpcService` whose `start()` loads the
one model of the process (health is NOT_SERVING until it returns). Unary
requests take a slot in a bounded `WorkQueue` before their audio is fetched,
so a burst is turned away with RESOURCE_EXHAUSTED and a retry hint instead of
piling up decoded audio in memory; the inference runs in a worker thread that
stops between segments when the client cancels or its deadline passes, and
the slot is held until it has stopped (`soriflow.stt.work`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from soriflow.concurrency import WorkQueue
from soriflow.errors import Unavailable
from soriflow.inputs import load_audio
from soriflow.server import GrpcService
from soriflow.storage import ObjectStore
from soriflow.stt.channels import transcribe_channels
from soriflow.stt.engines import load_engine
from soriflow.stt.engines.base import Engine
from soriflow.stt.messages import options_from_config, transcript_to_proto
from soriflow.stt.metrics import AUDIO_SECONDS, REALTIME_FACTOR
from soriflow.stt.settings import Settings
from soriflow.stt.work import EngineRunner
from soriflow.v1 import stt_pb2, stt_pb2_grpc

log = logging.getLogger("soriflow.stt")

SERVICE_NAME = "soriflow.v1.SpeechToTextService"


class SpeechToTextServicer(stt_pb2_grpc.SpeechToTextServiceServicer):
    """Recognize, StreamingRecognize and ListModels over one loaded engine."""

    def __init__(self, service: SttService) -> None:
        self.service = service

    @property
    def engine(self) -> Engine:
        engine = self.service.engine
        if engine is None:  # the interceptor refuses RPCs before start() returns; this is a safety net
            raise Unavailable("the speech model is still loading; retry shortly")
        return engine

    async def Recognize(
        self, request: stt_pb2.RecognizeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> stt_pb2.RecognizeResponse:
        started = time.perf_counter()
        engine = self.engine
        settings = self.service.settings
        config = request.config
        options = options_from_config(
            config, engine.info, default_beam_size=settings.stt_beam_size, default_vad=settings.stt_vad_filter
        )
        separate = config.channel_mode == stt_pb2.CHANNEL_MODE_SEPARATE
        async with self.service.queue.slot():
            audio = await load_audio(
                request.audio, settings=settings, store=self.service.store, mono=not separate
            )
            labels = list(config.channel_labels)
            if separate:
                transcript = await self.service.runner.run(
                    lambda cancel: transcribe_channels(engine, audio, options, labels, cancel)
                )
            else:
                transcript = await self.service.runner.run(
                    lambda cancel: engine.transcribe(audio, options, cancel)
                )
        elapsed = time.perf_counter() - started
        AUDIO_SECONDS.labels("recognize").inc(transcript.duration)
        if transcript.duration > 0:
            REALTIME_FACTOR.observe(elapsed / transcript.duration)
        return stt_pb2.RecognizeResponse(
            transcript=transcript_to_proto(transcript, with_words=config.enable_word_time_offsets),
            processing_time_ms=round(elapsed * 1000),
            model=engine.info.name,
        )

    async def StreamingRecognize(
        self,
        request_iterator: AsyncIterator[stt_pb2.StreamingRecognizeRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[stt_pb2.StreamingRecognizeResponse]:
        from soriflow.stt.streaming.session import serve_stream

        async for response in serve_stream(self.service, self.engine, request_iterator):
            yield response

    async def ListModels(
        self, request: stt_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> stt_pb2.ListModelsResponse:
        info = self.engine.info
        return stt_pb2.ListModelsResponse(
            models=[
                stt_pb2.SpeechModel(
                    name=info.name,
                    engine=info.engine,
                    source=info.source,
                    device=info.device,
                    compute_type=info.compute_type,
                    language_codes=list(info.languages),
                    supports_translation=info.multilingual,
                )
            ]
        )


class SttService(GrpcService[Settings]):
    """The STT process: one engine, a bounded queue for unary work, a cap on live streams."""

    name = "stt"
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.engine: Engine | None = None
        self.queue = WorkQueue(
            "stt",
            max_concurrency=settings.stt_max_concurrency,
            max_waiting=settings.stt_max_waiting,
            retry_after_s=settings.stt_retry_after_s,
        )
        self.streams = WorkQueue(
            "stt-stream",
            max_concurrency=settings.stt_max_streams,
            max_waiting=0,
            retry_after_s=settings.stt_retry_after_s,
        )
        self.store = ObjectStore(settings)
        self.runner = EngineRunner(settings.stt_max_concurrency + settings.stt_max_streams)
        self.servicer = SpeechToTextServicer(self)

    def register(self, server: grpc.aio.Server) -> None:
        stt_pb2_grpc.add_SpeechToTextServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        started = time.perf_counter()
        engine = await asyncio.to_thread(load_engine, self.settings)
        self.engine = engine
        info = engine.info
        log.info(
            "loaded %s on %s (%s, %s) in %.1fs",
            info.name,
            info.engine,
            info.device,
            info.compute_type,
            time.perf_counter() - started,
        )

    async def stop(self) -> None:
        self.runner.close()
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def create_service(settings: Settings | None = None) -> SttService:
    """The service `soriflow serve stt` runs."""
    return SttService(settings or Settings())
