"""Settings of the pronunciation scoring service (`SORIFLOW_SCORING_*`)."""

from __future__ import annotations

from pydantic import Field

from soriflow.config import ServiceSettings


class Settings(ServiceSettings):
    """Scoring: thresholds and where to get word timestamps."""

    port: int = Field(50052, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9152, ge=0, le=65535, description="Prometheus port (empty disables).")
