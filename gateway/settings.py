"""Settings of the gateway (`SORIFLOW_GATEWAY_*`)."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from soriflow.config import ServiceSettings
from soriflow.gateway.images.settings import ImageSettings


class Settings(ServiceSettings, ImageSettings):
    """Gateway: queue, buckets, job store, pipelines, notifications, image engines (`SORIFLOW_IMAGE_*`)."""

    port: int = Field(50050, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9150, ge=0, le=65535, description="Prometheus port (empty disables).")

    gateway_queue_url: str | None = Field(
        None, description="SQS queue receiving the input bucket's ObjectCreated events; unset: no consumer."
    )
    gateway_input_uris: list[str] = Field(
        default_factory=list,
        description="The S3 prefixes whose events reach the queue (JSON list of `s3://bucket/prefix`); "
        "the gateway refuses to start if outputs would land under one of them.",
    )
    gateway_output_uri: str = Field(
        "s3://soriflow-output/results/",
        description="Where job outputs go (`s3://bucket/prefix/`), one folder per job id.",
    )
    gateway_submissions_uri: str = Field(
        "s3://soriflow-input/submissions/",
        description="Where inline audio from SubmitJob is stored before the job runs.",
    )
    gateway_database_url: str = Field(
        "sqlite:///soriflow-jobs.db",
        description="Job store: `sqlite:///path.db` (embedded) or `postgresql://user@host/db`.",
    )
    gateway_database_upgrade: bool = Field(
        True,
        description="Apply pending job-store migrations at start. Set false when `soriflow db upgrade` "
        "runs before the gateway (a Helm pre-upgrade hook or an init container): the gateway then refuses "
        "to start on a schema that is not the one it needs.",
    )
    gateway_database_wait_s: float = Field(
        30.0,
        ge=0,
        description="How long the gateway keeps trying (with backoff) to reach a job store that refuses "
        "connections at start, before it exits with a one-line error.",
    )
    gateway_sqlite_synchronous: Literal["full", "normal"] = Field(
        "normal",
        description="SQLite job store only. `normal` (the embedded default): a commit reaches the operating "
        "system at once and the disk when it syncs the write-ahead log, so it survives the gateway crashing "
        "but not the machine losing power; `full` syncs every commit to disk, which costs several ms per "
        "commit on a busy disk (a job makes four). PostgreSQL is unaffected.",
    )
    gateway_pipelines_file: str | None = Field(
        None,
        description="YAML file with extra or overriding pipeline definitions (documents separated by ---).",
    )
    gateway_concurrency: int = Field(4, ge=1, description="Jobs run at once by this replica.")
    gateway_receive_wait_s: int = Field(20, ge=0, le=20, description="SQS long-poll wait, in seconds.")
    gateway_visibility_timeout_s: int = Field(
        120,
        ge=5,
        le=43200,
        description="Visibility timeout of received messages; renewed while a job runs. Must be longer "
        "than the job lease, so a crashed worker's message comes back only after its job can be taken over.",
    )
    gateway_retry_delay_s: int = Field(
        30,
        ge=0,
        le=43200,
        description="After a retryable failure, the message becomes visible again after this delay "
        "(the queue's redrive policy sends it to the dead-letter queue after maxReceiveCount).",
    )
    gateway_lease_s: float = Field(
        60.0,
        ge=2,
        description="Job lease; renewed while running, so a crashed worker's job is taken over. "
        "Shorter than the visibility timeout.",
    )
    gateway_presign_expiry_s: int = Field(
        3600, ge=1, le=604800, description="Validity of presigned output URLs in job results, in seconds."
    )
    gateway_schedules_enabled: bool = Field(
        True,
        description="Fire pipelines' cron schedules from this replica (every replica may: each tick runs "
        "once, under a lease in the job store). False: this replica only serves the API and the queue.",
    )
    gateway_enabled_schedules: list[str] = Field(
        default_factory=list,
        description="Schedules to fire although their pipeline says `enabled: false` (JSON list of names), "
        'e.g. `["nightly-story"]`: the built-in example\'s schedule is off until named here.',
    )
    gateway_schedule_poll_s: float = Field(
        10.0,
        ge=0.5,
        le=300,
        description="Longest a replica sleeps between looks at the schedules (it also wakes for each tick); "
        "a replica that dies hands its schedules over within three of these.",
    )
    gateway_sns_topic_arn: str | None = Field(None, description="SNS topic notified when a job ends.")
    gateway_webhook_url: str | None = Field(None, description="URL POSTed a JSON summary when a job ends.")
    gateway_webhook_secret: SecretStr | None = Field(
        None,
        description="Signs webhooks the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, "
        "`webhook-signature: v1,<base64 HMAC-SHA256>`): `whsec_` + base64 of 24-64 random bytes, "
        "e.g. `whsec_$(openssl rand -base64 32)`.",
    )

    def readable_uris(self) -> list[str]:
        """`SORIFLOW_READ_URIS` plus what the gateway reads anyway: its inputs and its submissions."""
        return [*self.read_uris, *self.gateway_input_uris, self.gateway_submissions_uri]

    @field_validator("gateway_webhook_secret")
    @classmethod
    def _standard_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Receivers decode the secret as Standard Webhooks does; a secret in another form would
        # sign with bytes nobody verifies with, so it is refused at start instead.
        if value is None:
            return None
        secret = value.get_secret_value()
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise ValueError(
                "SORIFLOW_GATEWAY_WEBHOOK_SECRET must be whsec_ followed by the base64 of 24-64 random "
                "bytes (Standard Webhooks), e.g. whsec_$(openssl rand -base64 32)"
            )
        return value

    @model_validator(mode="after")
    def _visibility_outlasts_lease(self) -> Settings:
        # A crashed worker's message comes back after the visibility timeout; if the job's lease
        # were still live then, the redelivery would find the job held and could not take it over.
        if self.gateway_visibility_timeout_s <= self.gateway_lease_s:
            raise ValueError(
                f"SORIFLOW_GATEWAY_VISIBILITY_TIMEOUT_S ({self.gateway_visibility_timeout_s}) must be "
                f"greater than SORIFLOW_GATEWAY_LEASE_S ({self.gateway_lease_s}): a crashed worker's "
                "message must come back only after its job's lease has expired"
            )
        return self
