"""`soriflow db upgrade`, `db current` and `db revision`: the job store's schema from a terminal.

`upgrade` is what a Helm pre-upgrade hook or an init container runs before the
gateway starts (with SORIFLOW_GATEWAY_DATABASE_UPGRADE=false on the gateway),
so a rollout's replicas never race to migrate; `current --check` fails unless
the database is at the newest revision. `revision` is for developers: it writes
a new revision file from the difference between `schema.py` and the newest
revision (see docs/development.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Job store URL (default: SORIFLOW_GATEWAY_DATABASE_URL from the settings)"),
]


def _url(url: str | None) -> str:
    if url:
        return url
    from soriflow.gateway.settings import Settings

    return Settings().gateway_database_url


def register(app: typer.Typer, groups: Any) -> None:
    db = typer.Typer(help="The gateway's job store: schema migrations.", no_args_is_help=True)
    app.add_typer(db, name="db")

    @db.command("upgrade")
    def upgrade(
        url: UrlOption = None,
        wait: Annotated[
            float, typer.Option(help="Seconds to keep retrying while the database refuses connections")
        ] = 30.0,
    ) -> None:
        """Bring the job store's schema to the newest revision (safe to run on every deploy)."""
        from soriflow.errors import SoriflowError
        from soriflow.gateway.store import JobStore, display_url, normalize_url

        target = _url(url)
        try:
            store = JobStore.open(target, upgrade=True, wait_s=wait)
        except SoriflowError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(69 if exc.code.name == "UNAVAILABLE" else 1) from None
        store.close()
        before, after = store.schema_change
        shown = display_url(normalize_url(target))
        if before == after:
            print(f"{shown}: at revision {after} (nothing to do)")
        else:
            print(f"{shown}: upgraded from revision {before or '(empty)'} to {after}")

    @db.command("current")
    def current(
        url: UrlOption = None,
        check: Annotated[
            bool, typer.Option(help="Exit 1 unless the database is at the newest revision")
        ] = False,
    ) -> None:
        """Print the job store's schema revision and the newest this code knows."""
        from sqlalchemy import create_engine

        from soriflow.gateway.store import display_url, migrations, normalize_url

        target = normalize_url(_url(url))
        engine = create_engine(target)
        try:
            found = migrations.current(engine)
        except Exception as exc:
            err.print(f"[red]error:[/red] cannot read the job store at {display_url(target)}: {exc}")
            raise typer.Exit(69) from None
        finally:
            engine.dispose()
        newest = migrations.head()
        print(f"{display_url(target)}: revision {found or '(empty)'}; newest {newest}")
        if check and found != newest:
            raise typer.Exit(1)

    @db.command("revision")
    def revision(
        message: Annotated[str, typer.Option("-m", "--message", help="What the revision does")],
        empty: Annotated[
            bool, typer.Option(help="An empty revision to fill by hand (data migrations)")
        ] = False,
    ) -> None:
        """Write a new revision file from the changes made to schema.py (developers)."""
        from alembic import command
        from sqlalchemy import create_engine

        from soriflow.gateway.store import migrations

        with tempfile.TemporaryDirectory() as tmp:
            engine = create_engine(f"sqlite:///{Path(tmp) / 'head.db'}")
            try:
                migrations.upgrade(engine)
                with engine.begin() as conn:
                    script = command.revision(
                        migrations.config(conn),
                        message=message,
                        autogenerate=not empty,
                        rev_id=_next_id(),
                    )
            finally:
                engine.dispose()
        paths = [s.path for s in (script if isinstance(script, list) else [script]) if s is not None]
        for path in paths:
            print(path)
        err.print("review it (SQLite needs batch operations for ALTERs), then `make format` and add a test")


def _next_id() -> str:
    """Revisions are numbered 0001, 0002, ...: their order reads from the file names."""
    from soriflow.gateway.store import migrations

    return f"{int(migrations.head()) + 1:04d}"
