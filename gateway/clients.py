"""Channels to the stage services, opened once and shared by every job; the image engines too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from soriflow.client import open_channel
from soriflow.config import CommonSettings
from soriflow.errors import FailedPrecondition, InvalidArgument
from soriflow.v1 import scoring_pb2_grpc, stt_pb2_grpc, summarizer_pb2_grpc, tts_pb2_grpc

if TYPE_CHECKING:
    from soriflow.gateway.images import ImageEngine

STUBS: dict[str, Any] = {
    "stt": stt_pb2_grpc.SpeechToTextServiceStub,
    "summarizer": summarizer_pb2_grpc.SummarizerServiceStub,
    "tts": tts_pb2_grpc.TextToSpeechServiceStub,
    "scoring": scoring_pb2_grpc.PronunciationScoringServiceStub,
}
#: The setting naming the model, per image engine (what a stage's `model:` overrides).
IMAGE_MODEL_SETTINGS = {"openai": "image_openai_model", "bedrock": "image_bedrock_model_id"}


class ServiceClients:
    """Lazily opened channels and stubs, one per stage service; image engines by (engine, model)."""

    def __init__(self, settings: CommonSettings) -> None:
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._images: dict[tuple[str, str], ImageEngine] = {}

    def address(self, service: str) -> str:
        return str(getattr(self.settings, f"{service}_address"))

    def stub(self, service: str) -> Any:
        if service not in self._channels:
            self._channels[service] = open_channel(self.address(service), self.settings)
        return STUBS[service](self._channels[service])

    def image_engine(self, engine: str = "", model: str = "") -> ImageEngine:
        """The image engine the settings name (`SORIFLOW_IMAGE_*`), or the stage's `engine`/`model`.

        Engines are made once per (engine, model) and shared by every job; building one never
        calls out (a Bedrock model id of the wrong family is FAILED_PRECONDITION here).
        """
        from soriflow.gateway.images import create_engine
        from soriflow.gateway.images.settings import ImageSettings

        settings = self.settings
        if not isinstance(settings, ImageSettings):
            raise FailedPrecondition("this process has no image settings (SORIFLOW_IMAGE_*)")
        name = engine or settings.image_engine
        if name not in IMAGE_MODEL_SETTINGS:
            raise InvalidArgument(f"unknown image engine {name!r}; choose {sorted(IMAGE_MODEL_SETTINGS)}")
        key = (name, model)
        if key not in self._images:
            update: dict[str, Any] = {"image_engine": name}
            if model:
                update[IMAGE_MODEL_SETTINGS[name]] = model
            self._images[key] = create_engine(settings.model_copy(update=update))
        return self._images[key]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        for image_engine in self._images.values():
            image_engine.close()
        self._images.clear()
