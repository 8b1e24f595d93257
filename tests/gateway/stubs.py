"""A stand-in STT service on loopback for failure paths: slow on purpose, counting its calls.

The real services cover the happy paths; a stage that must outlive a visibility
timeout, miss its deadline once, or block a shutdown needs a service whose timing
the test controls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc

from soriflow.config import ServiceSettings
from soriflow.errors import SoriflowError
from soriflow.server import GrpcService, ThreadedServer
from soriflow.v1 import audio_pb2, stt_pb2, stt_pb2_grpc


class _Servicer(stt_pb2_grpc.SpeechToTextServiceServicer):
    def __init__(self, owner: SlowStt) -> None:
        self.owner = owner

    async def Recognize(self, request: stt_pb2.RecognizeRequest, context: Any) -> stt_pb2.RecognizeResponse:
        owner = self.owner
        index = owner.calls
        owner.calls += 1
        owner.requests.append(request)
        owner.times.append(asyncio.get_running_loop().time())
        await asyncio.sleep(owner.delays[min(index, len(owner.delays) - 1)])
        error = owner.errors[index] if index < len(owner.errors) else None
        if error is not None:
            raise error
        return stt_pb2.RecognizeResponse(
            transcript=audio_pb2.Transcript(text=owner.text, language_code="en", audio_duration_ms=1000)
        )


class SlowStt(GrpcService[ServiceSettings]):
    """Answers Recognize with a fixed transcript after `delays[i]` seconds on call i (the last repeats),
    or with `errors[i]` when there is one (a typed error: the runtime sends its status and RetryInfo)."""

    name = "stub-stt"
    service_names = ("soriflow.v1.SpeechToTextService",)

    def __init__(
        self, delays: Sequence[float], text: str = "stub words", errors: Sequence[SoriflowError | None] = ()
    ) -> None:
        super().__init__(ServiceSettings(host="127.0.0.1", port=0, metrics_port=None, log_format="text"))
        self.delays = list(delays) or [0.0]
        self.text = text
        self.errors = list(errors)
        self.calls = 0
        self.times: list[float] = []
        self.requests: list[stt_pb2.RecognizeRequest] = []

    def register(self, server: grpc.aio.Server) -> None:
        stt_pb2_grpc.add_SpeechToTextServiceServicer_to_server(_Servicer(self), server)


def start_slow_stt(
    delays: Sequence[float], text: str = "stub words", errors: Sequence[SoriflowError | None] = ()
) -> ThreadedServer:
    return ThreadedServer(lambda: SlowStt(delays, text, errors), name="stub-stt").start()
