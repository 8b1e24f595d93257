"""Channels to the stage services, opened once and shared by every job."""

from __future__ import annotations

from typing import Any

import grpc

from soriflow.client import open_channel
from soriflow.config import CommonSettings
from soriflow.v1 import scoring_pb2_grpc, stt_pb2_grpc, summarizer_pb2_grpc, tts_pb2_grpc

STUBS: dict[str, Any] = {
    "stt": stt_pb2_grpc.SpeechToTextServiceStub,
    "summarizer": summarizer_pb2_grpc.SummarizerServiceStub,
    "tts": tts_pb2_grpc.TextToSpeechServiceStub,
    "scoring": scoring_pb2_grpc.PronunciationScoringServiceStub,
}


class ServiceClients:
    """Lazily opened channels and stubs, one per stage service."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}

    def address(self, service: str) -> str:
        return str(getattr(self.settings, f"{service}_address"))

    def stub(self, service: str) -> Any:
        if service not in self._channels:
            self._channels[service] = open_channel(self.address(service), self.settings)
        return STUBS[service](self._channels[service])

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
