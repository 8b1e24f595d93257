"""Settings of the text-to-speech service (`SORIFLOW_TTS_*`)."""

from __future__ import annotations

from pydantic import Field

from soriflow.config import ServiceSettings


class Settings(ServiceSettings):
    """TTS: engines and defaults. Google credentials come from Google's standard mechanisms
    (`GOOGLE_APPLICATION_CREDENTIALS`, workload identity), never from here."""

    port: int = Field(50054, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9154, ge=0, le=65535, description="Prometheus port (empty disables).")

    tts_engines: list[str] = Field(
        default_factory=lambda: ["espeak-ng", "piper"],
        description="Engines to enable, in order of preference (`espeak-ng`, `piper`, `google`), JSON list.",
    )
    tts_default_engine: str = Field("espeak-ng", description="Engine used when a request names none.")
