"""Alembic's entry point: runs the revisions on the connection `soriflow.gateway.store.migrations` opened.

There is no alembic.ini: the job store's URL comes from the gateway's settings,
and the connection (with the PostgreSQL advisory lock held) from the caller.
"""

from __future__ import annotations

from alembic import context

from soriflow.gateway.store import schema

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through soriflow.gateway.store.migrations (or `soriflow db upgrade`)")
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    # SQLite cannot ALTER most things in place: batch operations copy the table instead.
    render_as_batch=True,
    compare_type=True,
    include_name=lambda name, type_, _parents: not (type_ == "table" and name in schema.BOOKKEEPING),
)
with context.begin_transaction():
    context.run_migrations()
