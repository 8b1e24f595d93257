"""Schema migrations of the job store, with Alembic: revisions in `versions/`, applied in order.

`upgrade` brings a database to the newest revision (the gateway does it at
start unless `SORIFLOW_GATEWAY_DATABASE_UPGRADE=false`; `soriflow db upgrade`
does it from a Helm hook or an init container). Replicas upgrading together
serialize on a PostgreSQL advisory lock held for the whole upgrade, which runs
in one transaction (PostgreSQL's DDL is transactional: a failed revision
leaves the schema as it was). A database made by the first release (its own
`schema_migrations` table at version 1, no `alembic_version`) is recognised
and stamped with revision 0001, which is that schema, then upgraded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from soriflow.errors import FailedPrecondition

log = logging.getLogger("soriflow.gateway.store")

HERE = Path(__file__).resolve().parent
ADVISORY_LOCK_ID = 0x50F1F10  # arbitrary, constant: "soriflow migrations" (the first release's too)
#: The revision that is the schema of the first release (its `schema_migrations` version 1).
SHIPPED_V1 = "0001"


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, pointing at this package; `connection` is what the revisions run on."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None
    return revision


def _refuse_unknown(found: str | None) -> None:
    """A revision this code does not know was written by a newer release (a rollback of the image
    after its upgrade ran): say what to do instead of Alembic's traceback."""
    if found is None or found == "legacy-v1":
        return
    try:
        known = ScriptDirectory.from_config(config()).get_revision(found) is not None
    except Exception:  # alembic raises its own CommandError/ResolutionError for unknown ids
        known = False
    if not known:
        raise FailedPrecondition(
            f"the job store is at revision {found}, which this gateway does not know (its newest is "
            f"{head()}): a newer release upgraded it. Run that release again (roll forward), or restore "
            "the backup taken before its upgrade; an older gateway cannot use a newer schema"
        )


def current(engine: Engine) -> str | None:
    """The database's revision (None: no schema yet; "legacy-v1": the first release's, not yet adopted)."""
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision is None and inspect(conn).has_table("schema_migrations"):
            return "legacy-v1"
        return revision


def _adopt_first_release(conn: Connection) -> None:
    """Stamps a database the first release made (schema_migrations at 1) with the same schema's revision."""
    found = inspect(conn)
    if found.has_table("alembic_version"):
        return
    if found.has_table("schema_migrations"):
        versions = set(conn.execute(text("SELECT version FROM schema_migrations")).scalars())
        if versions != {1}:
            raise FailedPrecondition(
                f"the job store records schema versions {sorted(versions)} in schema_migrations; this "
                "gateway can adopt only version 1 (the first release's): upgrade through that release"
            )
        log.info("job store made by the first release: stamping it with revision %s", SHIPPED_V1)
        command.stamp(config(conn), SHIPPED_V1)
    elif found.has_table("jobs"):
        raise FailedPrecondition(
            "the job store has a jobs table but no record of its schema (alembic_version or "
            "schema_migrations): refusing to guess; point SORIFLOW_GATEWAY_DATABASE_URL at the right database"
        )


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Applies pending revisions up to `revision`; returns the database's revision (before, after)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held until commit: a replica starting meanwhile waits, then finds nothing left to do.
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": ADVISORY_LOCK_ID})
        _adopt_first_release(conn)
        before = MigrationContext.configure(conn).get_current_revision()
        _refuse_unknown(before)
        command.upgrade(config(conn), revision)
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("job store upgraded from revision %s to %s", before or "(empty)", after)
    return before, after


def require_head(engine: Engine) -> None:
    """Refuses a database that is not at this code's newest revision (when start-up upgrades are off)."""
    found, newest = current(engine), head()
    _refuse_unknown(found)
    if found != newest:
        raise FailedPrecondition(
            f"the job store is at revision {found or '(empty)'} but this gateway needs {newest}: run "
            "`soriflow db upgrade` (the Helm chart's migration hook does), or set "
            "SORIFLOW_GATEWAY_DATABASE_UPGRADE=true to upgrade at start"
        )
