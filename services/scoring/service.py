"""The PronunciationScoringService servicer and its lifecycle on the shared runtime.

`start()` loads the accuracy engine (pocketsphinx decoders, the CMU
dictionary, parselmouth) so the first request is not slow; health stays
NOT_SERVING until then. Each request takes a slot of a bounded `WorkQueue`
before fetching audio, asks the STT service for word timestamps when the
request carries none, and scores in a worker thread that stops between steps
when the client cancels or its deadline passes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from soriflow.concurrency import WorkQueue
from soriflow.errors import Unavailable
from soriflow.scoring.metrics import AUDIO_SECONDS, OVERALL_SCORE, SECONDS_PER_AUDIO_SECOND
from soriflow.scoring.pipeline import score_request
from soriflow.scoring.scorer import Scorer
from soriflow.scoring.settings import Settings
from soriflow.scoring.stt_client import SttClient
from soriflow.server import GrpcService
from soriflow.storage import ObjectStore
from soriflow.v1 import scoring_pb2, scoring_pb2_grpc

log = logging.getLogger("soriflow.scoring")

SERVICE_NAME = "soriflow.v1.PronunciationScoringService"


class ScoringServicer(scoring_pb2_grpc.PronunciationScoringServiceServicer):
    """Score over the service's scorer, STT client and queue."""

    def __init__(self, service: ScoringService) -> None:
        self.service = service

    async def Score(
        self, request: scoring_pb2.ScoreRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> scoring_pb2.ScoreResponse:
        scorer = self.service.scorer
        if scorer is None:  # the interceptor refuses RPCs before start() returns; this is a safety net
            raise Unavailable("the scoring models are still loading; retry shortly")
        async with self.service.queue.slot():
            response: scoring_pb2.ScoreResponse = await score_request(
                request,
                scorer=scorer,
                stt=self.service.stt,
                settings=self.service.settings,
                store=self.service.store,
                time_remaining_s=context.time_remaining(),
            )
        duration_s = response.audio_duration_ms / 1000.0
        AUDIO_SECONDS.inc(duration_s)
        OVERALL_SCORE.observe(response.overall_score)
        if duration_s > 0:
            SECONDS_PER_AUDIO_SECOND.observe(response.processing_time_ms / 1000.0 / duration_s)
        return response


class ScoringService(GrpcService[Settings]):
    name = "scoring"
    service_names = (SERVICE_NAME,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.scorer: Scorer | None = None
        self.stt = SttClient(settings.stt_address, settings, timeout_s=settings.scoring_stt_timeout_s)
        self.store = ObjectStore(settings)
        self.queue = WorkQueue(
            "scoring",
            max_concurrency=settings.scoring_max_concurrency,
            max_waiting=settings.scoring_max_waiting,
            retry_after_s=settings.scoring_retry_after_s,
        )

    def register(self, server: grpc.aio.Server) -> None:
        scoring_pb2_grpc.add_PronunciationScoringServiceServicer_to_server(ScoringServicer(self), server)

    async def start(self) -> None:
        scorer = Scorer(self.settings)
        await asyncio.to_thread(scorer.load)
        self.scorer = scorer
        log.info(
            "scoring ready (accuracy engines: %s)",
            ", ".join(f"{lang}={engine.name}" for lang, engine in scorer.engines.items()),
        )

    async def stop(self) -> None:
        await self.stt.close()


def create_service(settings: Settings) -> ScoringService:
    return ScoringService(settings)
