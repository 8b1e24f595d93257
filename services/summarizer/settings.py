"""Settings of the summarizer service (`SORIFLOW_SUMMARIZER_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from soriflow.config import ServiceSettings


class Settings(ServiceSettings):
    """Summarizer: engine, model, adapter and device."""

    port: int = Field(50053, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9153, ge=0, le=65535, description="Prometheus port (empty disables).")

    summarizer_engine: Literal["causal-lm", "seq2seq", "extractive"] = Field(
        "causal-lm", description="Engine for the configured model; `extractive` needs no model."
    )
    summarizer_model: str = Field(
        "smollm2-135m-instruct",
        description="Model: a bundled name, a local path (HF folder or .gguf), an `s3://` prefix or `pkg:` spec.",
    )
    summarizer_adapter: str | None = Field(None, description="LoRA adapter (path or `s3://`) loaded on top.")
    summarizer_device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto` uses CUDA when present.")
