"""Settings of the speech-to-text service (`SORIFLOW_STT_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from soriflow.config import ServiceSettings


class Settings(ServiceSettings):
    """STT: which Whisper model, on which engine and device."""

    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9151, ge=0, le=65535, description="Prometheus port (empty disables).")

    stt_engine: Literal["faster-whisper", "openai-whisper"] = Field(
        "faster-whisper", description="Engine that runs the model."
    )
    stt_model: str = Field(
        "tiny.en",
        description="Model: a bundled name (`tiny.en`, `base`), a local path, `s3://` prefix or `pkg:` spec.",
    )
    stt_device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto` uses CUDA when present.")
    stt_compute_type: str = Field(
        "auto", description="Precision: `auto` (int8 on CPU, float16 on GPU), `int8`, `float16`, `float32`, ..."
    )
