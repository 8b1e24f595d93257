"""Versioned schema migrations, applied in order at start-up.

Each migration is a function of a connection; `schema_migrations` records
what ran. Replicas starting together serialize on a lock (PostgreSQL advisory
lock; SQLite's write lock), so a migration runs once. New columns go in a new
migration, never by editing an applied one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import Connection, Engine, inspect, select, text

from soriflow.gateway.store import schema

log = logging.getLogger("soriflow.gateway.store")

ADVISORY_LOCK_ID = 0x50F1F10  # arbitrary, constant: "soriflow migrations"


def _v1_initial(conn: Connection) -> None:
    tables = [
        schema.jobs,
        schema.stage_runs,
        schema.job_events,
        schema.job_outputs,
        schema.pronunciation_results,
    ]
    schema.metadata.create_all(conn, tables=tables)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema: jobs, stage runs, events, outputs, pronunciation results", _v1_initial),
]


def migrate(engine: Engine) -> list[int]:
    """Applies pending migrations; returns the versions applied now."""
    applied_now: list[int] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        schema.metadata.create_all(conn, tables=[schema.schema_migrations])
        done = set(conn.execute(select(schema.schema_migrations.c.version)).scalars())
        for version, name, apply in MIGRATIONS:
            if version in done:
                continue
            log.info("applying migration %d: %s", version, name)
            apply(conn)
            conn.execute(
                schema.schema_migrations.insert().values(
                    version=version, name=name, applied_at=dt.datetime.now(dt.UTC)
                )
            )
            applied_now.append(version)
    return applied_now


def current_version(engine: Engine) -> int:
    with engine.connect() as conn:
        if not inspect(conn).has_table("schema_migrations"):
            return 0
        versions = conn.execute(select(schema.schema_migrations.c.version)).scalars().all()
        return max(versions, default=0)
