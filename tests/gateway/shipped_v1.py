"""The job store exactly as the first release created it (gateway/store at c3d7f65), frozen.

The migration tests build a database the way that release did, put data in it,
and upgrade it to the newest revision. This file never changes: it is what
running databases were made by.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)

metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    # Identity of the input event (bucket/key@version-or-etag, or an idempotency key): unique, so a
    # redelivered or duplicated event finds the existing job instead of starting another.
    Column("dedupe_key", String(1200), unique=True, nullable=True),
    Column("pipeline", String(100), nullable=False),
    Column("state", String(20), nullable=False),
    Column("origin", String(10), nullable=False),  # "sqs" or "api"
    Column("source_uri", Text, nullable=False),
    Column("metadata", Text, nullable=False, default="{}"),  # JSON object
    Column("parameters", Text, nullable=False, default="{}"),  # JSON object
    Column("error", Text, nullable=False, default=""),
    Column("error_code", String(40), nullable=False, default=""),
    # Whether a failure may succeed on another try (SQS redelivery re-runs such jobs).
    Column("retryable", Boolean, nullable=False, default=False),
    Column("runs", Integer, nullable=False, default=0),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_jobs_created", jobs.c.created_at, jobs.c.id)
Index("ix_jobs_state", jobs.c.state)
Index("ix_jobs_pipeline", jobs.c.pipeline)

stage_runs = Table(
    "stage_runs",
    metadata,
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("service", String(40), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("optional", Boolean, nullable=False, default=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("duration_ms", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("error_code", String(40), nullable=False, default=""),
    # Serialized result message, so a re-run after a crash resumes instead of repeating the stage.
    Column("result", LargeBinary, nullable=True),
)

job_events = Table(
    "job_events",
    metadata,
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("payload", LargeBinary, nullable=False),  # serialized soriflow.v1.JobEvent
)

job_outputs = Table(
    "job_outputs",
    metadata,
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("uri", Text, nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# What an English-learning app queries: one row per scored attempt.
pronunciation_results = Table(
    "pronunciation_results",
    metadata,
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(200), nullable=False, default=""),
    Column("content_type", String(200), nullable=False, default=""),
    Column("level", String(50), nullable=False, default=""),
    Column("title", String(500), nullable=False, default=""),
    Column("line", String(50), nullable=False, default=""),
    Column("source_uri", Text, nullable=False),
    Column("reference_uri", Text, nullable=False, default=""),
    Column("reference_text", Text, nullable=False, default=""),
    Column("overall_score", Float, nullable=False),
    Column("accuracy_score", Float, nullable=False),
    Column("fluency_score", Float, nullable=False),
    Column("completeness_score", Float, nullable=False),
    Column("prosody_score", Float, nullable=False),
    Column("speed_ratio", Float, nullable=False),
    Column("pause_similarity", Float, nullable=False),
    Column("pitch_similarity", Float, nullable=False),
    Column("mispronounced_words", Text, nullable=False, default="[]"),  # JSON list
    Column("feedback", Text, nullable=False, default="[]"),  # JSON list
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_pronunciation_user", pronunciation_results.c.user_id, pronunciation_results.c.created_at)


def create(engine: Engine) -> None:
    """What the first release's `migrate()` did on an empty database."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": 0x50F1F10})
        metadata.create_all(conn, tables=[schema_migrations])
        done = set(conn.execute(select(schema_migrations.c.version)).scalars())
        if 1 not in done:
            metadata.create_all(
                conn, tables=[jobs, stage_runs, job_events, job_outputs, pronunciation_results]
            )
            conn.execute(
                schema_migrations.insert().values(
                    version=1,
                    name="initial schema: jobs, stage runs, events, outputs, pronunciation results",
                    applied_at=dt.datetime.now(dt.UTC),
                )
            )
