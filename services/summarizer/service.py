"""The SummarizerService servicer and its lifecycle on the shared runtime.

`create_service(settings)` returns a `GrpcService` whose `start()` loads the
configured model (health is NOT_SERVING until it returns; the first start
with the bundled GGUF model also converts it into the cache). The request
pipeline lives in `pipeline.py`; this module only translates messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from soriflow.errors import Unavailable
from soriflow.server import GrpcService
from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc

from .messages import request_from_proto, result_to_proto, text_request_from_proto, text_result_to_proto
from .pipeline import Summarizer, SummaryResult, build_summarizer
from .settings import Settings

log = logging.getLogger("soriflow.summarizer")

SERVICE_NAME = "soriflow.v1.SummarizerService"


class SummarizerServicer(summarizer_pb2_grpc.SummarizerServiceServicer):
    """Summarize, SummarizeStream, Generate and ListSummarizerModels over the loaded engines."""

    def __init__(self, service: SummarizerGrpcService) -> None:
        self.service = service

    @property
    def summarizer(self) -> Summarizer:
        summarizer = self.service.summarizer
        if summarizer is None:  # the interceptor refuses RPCs before start() returns; this is a safety net
            raise Unavailable("the summarization model is still loading; retry shortly")
        return summarizer

    async def Summarize(
        self, request: summarizer_pb2.SummarizeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> summarizer_pb2.SummarizeResponse:
        result = await self.summarizer.summarize(
            request_from_proto(request), time_remaining_s=context.time_remaining()
        )
        return result_to_proto(result)

    async def SummarizeStream(
        self, request: summarizer_pb2.SummarizeStreamRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[summarizer_pb2.SummarizeStreamResponse]:
        summary_request = request_from_proto(request.request)
        async for event in self.summarizer.stream(summary_request, time_remaining_s=context.time_remaining()):
            if isinstance(event, SummaryResult):
                yield summarizer_pb2.SummarizeStreamResponse(result=result_to_proto(event))
            else:
                yield summarizer_pb2.SummarizeStreamResponse(text_delta=event)

    async def Generate(
        self, request: summarizer_pb2.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> summarizer_pb2.GenerateResponse:
        result = await self.summarizer.generate(
            text_request_from_proto(request), time_remaining_s=context.time_remaining()
        )
        return text_result_to_proto(result)

    async def ListSummarizerModels(
        self, request: summarizer_pb2.ListSummarizerModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> summarizer_pb2.ListSummarizerModelsResponse:
        return summarizer_pb2.ListSummarizerModelsResponse(
            models=[
                summarizer_pb2.SummarizerModel(
                    engine=engine.info.engine,
                    model=engine.info.model,
                    language_codes=list(engine.info.languages),
                    adapter=engine.info.adapter,
                    device=engine.info.device,
                )
                for engine in self.summarizer.engines.values()
            ]
        )


class SummarizerGrpcService(GrpcService[Settings]):
    """The summarizer process: the configured engine plus extractive, with dynamic batching."""

    name = "summarizer"
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.summarizer: Summarizer | None = None
        self.servicer = SummarizerServicer(self)

    def register(self, server: grpc.aio.Server) -> None:
        summarizer_pb2_grpc.add_SummarizerServiceServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        started = time.perf_counter()
        self.summarizer = await asyncio.to_thread(build_summarizer, self.settings)
        engines = ", ".join(f"{e.info.engine}={e.info.model}" for e in self.summarizer.engines.values())
        log.info("summarizer ready with %s in %.1fs", engines, time.perf_counter() - started)

    async def stop(self) -> None:
        if self.summarizer is not None:
            await self.summarizer.close()
            self.summarizer = None


def create_service(settings: Settings | None = None) -> SummarizerGrpcService:
    """The service `soriflow serve summarizer` runs."""
    return SummarizerGrpcService(settings or Settings())
