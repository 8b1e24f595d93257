"""The job store's tables as of the newest migration: one schema for SQLite and PostgreSQL.

The queries use these definitions; the database gets its tables from the
revisions in `migrations/versions/`. Changing a table here means adding a
revision that makes the same change (`soriflow db revision`, see
docs/development.md); a test compares a database upgraded to the newest
revision with this file and fails when they differ.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

# What an English-learning app reads: one row per attempt (a job of a pipeline that scores),
# written when the job is accepted and completed when it is scored. The contract, column by column:
# docs/pronunciation-results.md; apps read it through the `pronunciation_attempts` view below.
pronunciation_results = Table(
    "pronunciation_results",
    metadata,
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    # Who and what: the caller's ids (job or object metadata) and the fields of the key pattern.
    Column("user_id", String(200), nullable=False, default=""),
    Column("content_type_id", BigInteger, nullable=True),
    Column("object_id", String(200), nullable=True),
    Column("audio_file", Text, nullable=False, default="", server_default=""),
    Column("content_type", String(200), nullable=False, default=""),
    Column("level", String(50), nullable=False, default=""),
    Column("title", String(500), nullable=False, default=""),
    Column("line", String(50), nullable=False, default=""),
    Column("source_uri", Text, nullable=False),
    Column("reference_uri", Text, nullable=False, default=""),
    Column("reference_text", Text, nullable=False, default=""),
    Column("recognized_text", Text, nullable=False, default="", server_default=""),
    # Scores: NULL until the recording is scored, and where nothing was measured.
    Column("overall_score", Float, nullable=True),
    Column("accuracy_score", Float, nullable=True),
    Column("fluency_score", Float, nullable=True),
    Column("completeness_score", Float, nullable=True),
    Column("prosody_score", Float, nullable=True),
    Column("speed_ratio", Float, nullable=True),
    Column("pause_similarity", Float, nullable=True),
    Column("pitch_similarity", Float, nullable=True),
    Column("rhythm_similarity", Float, nullable=True),
    Column("energy_similarity", Float, nullable=True),
    Column("mispronounced_ratio", Float, nullable=True),
    Column("mispronounced_words", Text, nullable=False, default="[]"),  # JSON list
    Column("feedback", Text, nullable=False, default="[]"),  # JSON list
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=True),
)
Index("ix_pronunciation_user", pronunciation_results.c.user_id, pronunciation_results.c.created_at)
Index(
    "ix_pronunciation_object",
    pronunciation_results.c.content_type_id,
    pronunciation_results.c.object_id,
    pronunciation_results.c.user_id,
)

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

# Where each cron schedule of a pipeline stands: the latest tick handled (run, or skipped by the
# catch-up policy), so a restart knows which ticks it missed. The jobs themselves are exactly once
# through their dedupe key, `schedule:<name>@<tick in UTC>`.
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("pipeline", String(100), nullable=False),
    Column("last_tick_at", DateTime(timezone=True), nullable=False),
    Column("last_job_id", String(36), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Views: not in `metadata` (the tables Alembic compares), created by their revision's own SQL.
views = MetaData()

#: The app-facing contract: each attempt with its job's state (`status`), the reason of a failure,
#: and its scores (NULL until scored). A Django app maps an unmanaged model onto it.
pronunciation_attempts = Table(
    "pronunciation_attempts",
    views,
    Column("job_id", String(36), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("error", Text, nullable=False),
    Column("error_code", String(40), nullable=False),
    Column("pipeline", String(100), nullable=False),
    *(
        Column(c.name, c.type, nullable=c.nullable)
        for c in pronunciation_results.columns
        if c.name not in ("job_id", "created_at", "scored_at")
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
)
