"""The job store as the first release created it: jobs, stage runs, events, outputs, pronunciation results.

Written out column by column (never `create_all` on the current schema), so a
database made today by this revision is the one the first release made, and
the revisions after it apply to both alike. A database made by the first
release itself (its own `schema_migrations` table at version 1) is stamped
with this revision and upgraded from here.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("dedupe_key", sa.String(1200), unique=True, nullable=True),
        sa.Column("pipeline", sa.String(100), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("source_uri", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("error_code", sa.String(40), nullable=False),
        sa.Column("retryable", sa.Boolean, nullable=False),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_pipeline", "jobs", ["pipeline"])
    op.create_table(
        "stage_runs",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("service", sa.String(40), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("optional", sa.Boolean, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("error_code", sa.String(40), nullable=False),
        sa.Column("result", sa.LargeBinary, nullable=True),
    )
    op.create_table(
        "job_events",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sequence", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "job_outputs",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "pronunciation_results",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("level", sa.String(50), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("line", sa.String(50), nullable=False),
        sa.Column("source_uri", sa.Text, nullable=False),
        sa.Column("reference_uri", sa.Text, nullable=False),
        sa.Column("reference_text", sa.Text, nullable=False),
        sa.Column("overall_score", sa.Float, nullable=False),
        sa.Column("accuracy_score", sa.Float, nullable=False),
        sa.Column("fluency_score", sa.Float, nullable=False),
        sa.Column("completeness_score", sa.Float, nullable=False),
        sa.Column("prosody_score", sa.Float, nullable=False),
        sa.Column("speed_ratio", sa.Float, nullable=False),
        sa.Column("pause_similarity", sa.Float, nullable=False),
        sa.Column("pitch_similarity", sa.Float, nullable=False),
        sa.Column("mispronounced_words", sa.Text, nullable=False),
        sa.Column("feedback", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pronunciation_user", "pronunciation_results", ["user_id", "created_at"])


def downgrade() -> None:
    for table in ("pronunciation_results", "job_outputs", "job_events", "stage_runs", "jobs"):
        op.drop_table(table)
