"""Settings shared by every Soriflow process, read from `SORIFLOW_*` variables.

Each service subclasses `ServiceSettings` and adds its own fields, named with
the service as prefix (`stt_model` is read from `SORIFLOW_STT_MODEL`), so one
flat namespace documents everything in docs/configuration.md (generated from
these classes by `soriflow config docs`; a test keeps the file current).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SORIFLOW_"
MIB = 1024 * 1024


def default_cache_dir() -> Path:
    """Where models are joined/copied once; $XDG_CACHE_HOME respected."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "soriflow"


class CommonSettings(BaseSettings):
    """Settings every process reads: logging, storage, peers, limits and security."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, env_parse_none_str=""
    )

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Minimum level of log records."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="`json`: one JSON object per line (for log shippers); `text`: for people."
    )

    # Object storage
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint override (moto, MinIO, LocalStack). Unset: AWS."
    )
    aws_region: str = Field("us-east-1", description="AWS region for S3, SQS and SNS clients.")
    read_uris: list[str] = Field(
        default_factory=list,
        description="S3 locations requests may name for audio and references (JSON list of "
        "`s3://bucket/` or `s3://bucket/prefix/`; `*` wildcards in bucket names); anything else is "
        "PERMISSION_DENIED. Empty: none. The gateway also reads its input and submissions URIs.",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Cache for models joined from packages or copied from `s3://` "
        "(default `~/.cache/soriflow`).",
    )

    # Limits on audio any service accepts
    audio_max_bytes: int = Field(
        200 * MIB,
        gt=0,
        description="Largest audio payload or object accepted, in bytes. Inline audio is also "
        "bounded by max_message_bytes (gRPC refuses bigger messages before Soriflow sees them): "
        "send long recordings as s3:// URIs, which only this limit bounds.",
    )
    audio_max_duration_s: float = Field(
        4 * 3600.0, gt=0, description="Longest audio accepted, in seconds (checked after decoding)."
    )

    # Peers (used by the gateway, by scoring for word timestamps, and by the CLI)
    gateway_address: str = Field("127.0.0.1:50050", description="Address of the gateway's gRPC API.")
    stt_address: str = Field("127.0.0.1:50051", description="Address of the STT service.")
    scoring_address: str = Field("127.0.0.1:50052", description="Address of the scoring service.")
    summarizer_address: str = Field("127.0.0.1:50053", description="Address of the summarizer service.")
    tts_address: str = Field("127.0.0.1:50054", description="Address of the TTS service.")

    # Security, both directions
    auth_token: SecretStr | None = Field(
        None,
        description="Bearer token: required on every RPC this process serves (health excepted) "
        "and sent on every RPC it makes.",
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate chain: serve TLS, and present it as client cert (mTLS)."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of `tls_cert_file`.")
    tls_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle: servers require and verify client certificates with it (mutual TLS); "
        "clients verify servers with it.",
    )

    @field_validator("read_uris")
    @classmethod
    def _valid_read_uris(cls, value: list[str]) -> list[str]:
        from soriflow.storage import ReadAllowList

        ReadAllowList.parse(value)  # ValueError names the bad entry
        return value

    def readable_uris(self) -> list[str]:
        """What this process may read for a request; the gateway adds its own inputs."""
        return list(self.read_uris)


class ServiceSettings(CommonSettings):
    """Settings of a gRPC server process; services subclass this."""

    host: str = Field("0.0.0.0", description="Interface the gRPC server binds.")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(
        9151,
        ge=0,
        le=65535,
        description="Prometheus `/metrics` HTTP port (0 picks a free one; empty disables).",
    )
    grace_period_s: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight RPCs may finish before they are cut."
    )
    max_message_bytes: int = Field(
        64 * MIB, gt=0, description="Largest gRPC message received or sent, in bytes."
    )
    max_concurrent_rpcs: int | None = Field(
        None, gt=0, description="Hard cap on RPCs in flight; beyond it gRPC answers RESOURCE_EXHAUSTED."
    )
    keepalive_time_s: float = Field(
        30.0, gt=0, description="Interval of HTTP/2 keepalive pings to idle clients."
    )
    keepalive_timeout_s: float = Field(
        10.0, gt=0, description="How long to wait for a keepalive ack before closing the connection."
    )
