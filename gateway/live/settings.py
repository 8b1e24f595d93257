"""Settings of the live-caption edge (`SORIFLOW_LIVE_*`)."""

from __future__ import annotations

from pydantic import Field

from soriflow.config import MIB, ServiceSettings


class Settings(ServiceSettings):
    """Live edge: the WebSocket endpoint, its page, and the limits of one connection."""

    port: int = Field(
        8080, ge=0, le=65535, description="HTTP port of the page and WebSocket (0: a free one)."
    )
    metrics_port: int | None = Field(9155, ge=0, le=65535, description="Prometheus port (empty disables).")

    live_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to open a stream (JSON list, e.g. "
        '`["https://captions.example.com"]`; `["*"]` allows any). Empty: only pages served by this '
        "edge itself (Origin equal to the Host). Clients that send no Origin (Node, servers) are "
        "not browsers and are let through; the token still applies.",
    )
    live_max_connections: int = Field(
        64, ge=1, description="Open WebSocket streams per process; beyond it close code 4429."
    )
    live_max_stream_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="Longest stream, in seconds (wall time, and audio received); then close code 4413.",
    )
    live_max_stream_bytes: int = Field(
        512 * MIB, gt=0, description="Most audio bytes one stream may send; then close code 4413."
    )
    live_max_frame_bytes: int = Field(
        1 * MIB, gt=0, description="Largest single WebSocket message; a larger one closes with 1009."
    )
    live_idle_timeout_s: float = Field(
        30.0, gt=0, description="A stream that sends nothing for this long is closed (code 4408)."
    )
    live_config_timeout_s: float = Field(
        10.0, gt=0, description="Time to send the JSON config after connecting (else code 4408)."
    )
    live_queue_frames: int = Field(
        64,
        ge=1,
        description="Audio frames buffered between the WebSocket and the STT stream; when full the edge "
        "stops reading the socket, so TCP flow control slows the client (backpressure).",
    )
