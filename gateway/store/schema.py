"""The job store's tables as of the newest migration: one schema for SQLite and PostgreSQL.

The queries use these definitions; the database gets its tables from the
revisions in `migrations/versions/`. Changing a table here means adding a
revision that makes the same change (`soriflow db revision`, see
docs/development.md); a test compares a database upgraded to the newest
revision with this file and fails when they differ.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

#: Tables that record migrations rather than data: Alembic's, and the one of the first release.
BOOKKEEPING = frozenset({"alembic_version", "schema_migrations"})

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
    # A pipeline gate failed (the call was not understood well enough to read back, a summary was
    # not grounded): a person should check the result. The reasons: a JSON list of ReviewReason fields.
    Column("needs_review", Boolean, nullable=False, default=False, server_default=false()),
    Column("review_reasons", Text, nullable=False, default="[]", server_default="[]"),
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

# Named, exclusive, expiring claims (e.g. "schedule:nightly-story:2026-11-26T00:00"): what lets one
# replica among many do a thing once. Jobs carry their own lease on their row.
leases = Table(
    "leases",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
