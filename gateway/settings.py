"""Settings of the gateway (`SORIFLOW_GATEWAY_*`)."""

from __future__ import annotations

from pydantic import Field

from soriflow.config import ServiceSettings


class Settings(ServiceSettings):
    """Gateway: queue, buckets, job store and pipelines."""

    port: int = Field(50050, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int | None = Field(9150, ge=0, le=65535, description="Prometheus port (empty disables).")

    gateway_queue_url: str | None = Field(
        None, description="SQS queue receiving the input bucket's ObjectCreated events; unset: no consumer."
    )
    gateway_output_uri: str = Field(
        "s3://soriflow-output/results/",
        description="Where job outputs go (`s3://bucket/prefix/`); must not overlap an ingest trigger.",
    )
    gateway_submissions_uri: str = Field(
        "s3://soriflow-input/submissions/",
        description="Where inline audio from SubmitJob is stored before the job runs.",
    )
    gateway_database_url: str = Field(
        "sqlite:///soriflow-jobs.db",
        description="Job store: `sqlite:///path.db` (embedded) or `postgresql://user@host/db`.",
    )
    gateway_pipelines_file: str | None = Field(
        None, description="YAML file with extra/overriding pipeline definitions; unset: the built-in ones."
    )
    gateway_concurrency: int = Field(4, ge=1, description="Jobs run at once by this replica.")
