"""Alembic's `alembic_version` records the schema: the first release's `schema_migrations` goes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TABLE IF EXISTS schema_migrations")


def downgrade() -> None:
    # What the first release reads to know its schema is in place.
    table = op.create_table(
        "schema_migrations",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(
        table,
        [
            {
                "version": 1,
                "name": "initial schema: jobs, stage runs, events, outputs, pronunciation results",
                "applied_at": dt.datetime.now(dt.UTC),
            }
        ],
    )
