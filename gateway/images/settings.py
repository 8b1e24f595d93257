"""Settings of the image engines (`SORIFLOW_IMAGE_*`), read by the gateway that calls them.

A mixin of the gateway's settings, so the variables are documented with the
gateway's in docs/configuration.md, and usable alone (`soriflow images`).
Secrets: the OpenAI key comes from `SORIFLOW_IMAGE_OPENAI_API_KEY` or the
client's own `OPENAI_API_KEY`; AWS credentials only from boto3's chain (IRSA,
instance role, `AWS_*`), never from here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from soriflow.config import CommonSettings


class ImageSettings(CommonSettings):
    """Image generation: which engine, which model, where, how long to wait."""

    image_engine: Literal["openai", "bedrock"] = Field(
        "openai",
        description="Image engine: `openai` (OpenAI's Images API, or any server speaking it, such as "
        "`soriflow images serve`) or `bedrock` (Amazon Bedrock InvokeModel).",
    )
    image_size: str = Field(
        "1024x1024", description="Picture size, WIDTHxHEIGHT in pixels (each model accepts its own sizes)."
    )
    image_timeout_s: float = Field(120.0, gt=0, description="Longest one generation call may take.")
    image_max_attempts: int = Field(
        3, ge=1, le=10, description="Attempts per call, the client's own retries of 429 and 5xx included."
    )
    image_retry_after_s: float = Field(
        20.0, gt=0, description="Retry hint sent with RESOURCE_EXHAUSTED when the provider gives none."
    )

    image_openai_base_url: str | None = Field(
        None,
        description="OpenAI-compatible base URL (`http://host:port/v1`); unset: OpenAI "
        "(or `OPENAI_BASE_URL`).",
    )
    image_openai_api_key: SecretStr | None = Field(
        None, description="API key; unset: the client's `OPENAI_API_KEY`."
    )
    image_openai_model: str = Field(
        "gpt-image-1", description="Images API model (`gpt-image-1`, `dall-e-3`, ...)."
    )
    image_openai_quality: str | None = Field(
        None,
        description="`quality` sent to the Images API (`low`/`medium`/`high` for gpt-image-1, "
        "`standard`/`hd` for dall-e-3); unset: the model's default.",
    )

    image_bedrock_model_id: str = Field(
        "amazon.nova-canvas-v1:0",
        description="Bedrock text-to-image model: `amazon.nova-canvas-v1:0`, "
        "`amazon.titan-image-generator-v2:0` (the Titan body) or `stability.*` (the Stability body, "
        "e.g. `stability.stable-image-core-v1:1`).",
    )
    image_bedrock_region: str | None = Field(
        None, description="AWS region of Bedrock (unset: `SORIFLOW_AWS_REGION`)."
    )
    image_bedrock_endpoint_url: str | None = Field(
        None, description="bedrock-runtime endpoint override (a VPC endpoint, or a local server). Unset: AWS."
    )
    image_bedrock_cfg_scale: float = Field(
        6.5, ge=1.1, le=10.0, description="Prompt adherence of Nova Canvas / Titan (`cfgScale`)."
    )
