"""Image generation for the gateway's `image` stage: one interface, engines chosen by settings.

`create_engine(settings)` builds the engine `SORIFLOW_IMAGE_ENGINE` names
(`openai` or `bedrock`); `local` holds the stand-in server that speaks both
APIs for the local stack and the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soriflow.gateway.images.base import (
    ContentRejected,
    GeneratedImage,
    ImageEngine,
    ImageRequest,
    parse_size,
)

if TYPE_CHECKING:
    from soriflow.gateway.images.settings import ImageSettings

__all__ = ["ContentRejected", "GeneratedImage", "ImageEngine", "ImageRequest", "create_engine", "parse_size"]


def create_engine(settings: ImageSettings) -> ImageEngine:
    """The configured engine (its client is made on first use, so this never calls out)."""
    if settings.image_engine == "bedrock":
        from soriflow.gateway.images.bedrock import BedrockImageEngine

        return BedrockImageEngine(
            model_id=settings.image_bedrock_model_id,
            region=settings.image_bedrock_region or settings.aws_region,
            endpoint_url=settings.image_bedrock_endpoint_url,
            cfg_scale=settings.image_bedrock_cfg_scale,
            timeout_s=settings.image_timeout_s,
            max_attempts=settings.image_max_attempts,
            retry_after_s=settings.image_retry_after_s,
        )
    from soriflow.gateway.images.openai import OpenAIImageEngine

    key = settings.image_openai_api_key
    return OpenAIImageEngine(
        model=settings.image_openai_model,
        base_url=settings.image_openai_base_url,
        api_key=key.get_secret_value() if key is not None else None,
        quality=settings.image_openai_quality,
        timeout_s=settings.image_timeout_s,
        max_attempts=settings.image_max_attempts,
        retry_after_s=settings.image_retry_after_s,
    )
