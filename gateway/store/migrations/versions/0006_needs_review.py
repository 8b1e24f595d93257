"""Jobs carry `needs_review` and its reasons: a pipeline gate failed, a person should check the result.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, not a batch copy: on SQLite a batch operation recreates `jobs`, and dropping
    # the old table would cascade to every job's stages, events and outputs.
    op.add_column("jobs", sa.Column("needs_review", sa.Boolean, nullable=False, server_default=sa.false()))
    # JSON list of the failed checks (soriflow.v1.ReviewReason fields).
    op.add_column("jobs", sa.Column("review_reasons", sa.Text, nullable=False, server_default="[]"))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN: PostgreSQL, and SQLite since 3.35 (again no table copy).
    op.execute("ALTER TABLE jobs DROP COLUMN review_reasons")
    op.execute("ALTER TABLE jobs DROP COLUMN needs_review")
