"""Job store migrations on SQLite and the real PostgreSQL: the shipped schema upgraded to the newest.

A database is made the way the first release made it (`shipped_v1`, frozen), filled with a
finished job, and upgraded by the current code; revision 0001 must be that schema exactly, the
newest revision must be `schema.py` exactly, and downgrading gives the first release its
database back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from soriflow.errors import FailedPrecondition
from soriflow.gateway.states import JobState, StageState
from soriflow.gateway.store import JobStore, PronunciationRow, migrations, normalize_url, schema
from soriflow.v1 import gateway_pb2
from tests.gateway import shipped_v1


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own for each test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    import psycopg

    base_url = request.getfixturevalue("postgres_url")
    name = f"soriflow_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{base_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine_for() -> Iterator[Callable[[str], Engine]]:
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engine = create_engine(normalize_url(url))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def described(engine: Engine, *, skip: frozenset[str] = schema.BOOKKEEPING) -> dict[str, Any]:
    """Every table's columns, keys and indexes as the database reports them."""
    found = inspect(engine)
    tables: dict[str, Any] = {}
    for table in sorted(set(found.get_table_names()) - skip):
        tables[table] = {
            "columns": [
                (c["name"], str(c["type"]), getattr(c["type"], "timezone", None), c["nullable"])
                for c in found.get_columns(table)
            ],
            "primary_key": found.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], f.get("options", {}).get("ondelete"))
                for f in found.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(table)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(table)),
        }
    return tables


def fill_as_the_first_release(engine: Engine) -> str:
    """A finished pronunciation job with stages, events, outputs and its result row, as v1 wrote them."""
    now = dt.datetime.now(dt.UTC)
    job_id = str(uuid.uuid4())
    event = gateway_pb2.JobEvent(
        type=gateway_pb2.JOB_EVENT_TYPE_JOB_STATE, sequence=1, job_state=gateway_pb2.JOB_STATE_SUCCEEDED
    )
    with engine.begin() as conn:
        conn.execute(
            shipped_v1.jobs.insert().values(
                id=job_id,
                dedupe_key="s3://in/users/kim/a.wav#etag",
                pipeline="pronunciation",
                state="SUCCEEDED",
                origin="sqs",
                source_uri="s3://in/users/kim/a.wav",
                metadata=json.dumps({"user": "김"}, ensure_ascii=False),
                parameters="{}",
                error="",
                error_code="",
                retryable=False,
                runs=1,
                cancel_requested=False,
                created_at=now,
                started_at=now,
                ended_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            shipped_v1.stage_runs.insert().values(
                job_id=job_id,
                name="score",
                position=0,
                service="scoring",
                state="SUCCEEDED",
                attempt=1,
                optional=False,
                duration_ms=12,
                error="",
                error_code="",
                result=b"\x08\x01",
            )
        )
        conn.execute(
            shipped_v1.job_events.insert().values(
                job_id=job_id, sequence=1, created_at=now, payload=event.SerializeToString()
            )
        )
        conn.execute(
            shipped_v1.job_outputs.insert().values(
                job_id=job_id,
                name="score.json",
                uri=f"s3://out/results/{job_id}/score.json",
                content_type="application/json",
                size_bytes=42,
                created_at=now,
            )
        )
        conn.execute(
            shipped_v1.pronunciation_results.insert().values(
                job_id=job_id,
                user_id="kim",
                content_type="book",
                level="1",
                title="toys",
                line="2",
                source_uri="s3://in/users/kim/a.wav",
                reference_uri="",
                reference_text="I went to the toy store",
                overall_score=81.5,
                accuracy_score=90,
                fluency_score=70,
                completeness_score=100,
                prosody_score=60,
                speed_ratio=0.8,
                pause_similarity=0.7,
                pitch_similarity=0.6,
                mispronounced_words='["toy"]',
                feedback="[]",
                created_at=now,
            )
        )
    return job_id


def test_revision_0001_is_the_shipped_schema(database: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(database)
    migrations.upgrade(engine, migrations.SHIPPED_V1)
    made_now = described(engine)
    with engine.begin() as conn:  # the same database, emptied, then made by the first release
        for table in [*reversed(shipped_v1.metadata.sorted_tables), "alembic_version"]:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    shipped_v1.create(engine)
    assert described(engine) == made_now


def test_the_newest_revision_is_schema_py(database: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(database)
    migrations.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _p: not (kind == "table" and name in schema.BOOKKEEPING),
            },
        )
        assert compare_metadata(context, schema.metadata) == [], (
            "schema.py and the newest revision differ: add a revision (soriflow db revision -m ...)"
        )


def test_a_database_of_the_first_release_is_upgraded_with_its_data(
    database: str, engine_for: Callable[[str], Engine]
) -> None:
    legacy = engine_for(database)
    shipped_v1.create(legacy)
    job_id = fill_as_the_first_release(legacy)
    assert migrations.current(legacy) == "legacy-v1"

    store = JobStore(database)  # what the gateway does at start
    try:
        assert store.schema_change == (migrations.SHIPPED_V1, migrations.head())
        assert migrations.current(store.engine) == migrations.head()
        assert not inspect(store.engine).has_table("schema_migrations")
        job = store.require_job(job_id)
        assert (job.state, job.metadata, job.runs) == (JobState.SUCCEEDED, {"user": "김"}, 1)
        [stage] = store.stages(job_id)
        assert (stage.state, stage.result) == (StageState.SUCCEEDED, b"\x08\x01")
        assert [e.job_state for e in store.events_after(job_id, 0)] == [gateway_pb2.JOB_STATE_SUCCEEDED]
        assert [o.size_bytes for o in store.outputs(job_id)] == [42]
        [row] = store.pronunciation_results(user_id="kim")
        assert (row["overall_score"], row["mispronounced_words"]) == (81.5, ["toy"])
        # ...and it works as a current database: new jobs, transitions, named leases.
        new, created = store.create_job(
            pipeline="transcribe", source_uri="s3://in/b.wav", origin="api", metadata={}, parameters={}
        )
        assert created
        assert store.claim(new.id, "w", 10)
        assert store.finish(new.id, JobState.SUCCEEDED, owner="w").state is JobState.SUCCEEDED
        assert store.acquire_lease("schedule:nightly", "w", 10)
    finally:
        store.close()
    again = JobStore(database)
    assert again.schema_change == (migrations.head(), migrations.head())
    again.close()


def test_downgrading_gives_the_first_release_its_database_back(
    database: str, engine_for: Callable[[str], Engine]
) -> None:
    engine = engine_for(database)
    shipped_v1.create(engine)
    shipped = described(engine, skip=frozenset({"alembic_version"}))
    fill_as_the_first_release(engine)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(migrations.config(conn), migrations.SHIPPED_V1)
        conn.exec_driver_sql("DROP TABLE alembic_version")
    assert described(engine, skip=frozenset({"alembic_version"})) == shipped
    shipped_v1.create(engine)  # the first release starting on it finds its version 1: nothing to do


def test_unknown_schemas_are_refused_not_guessed(database: str, engine_for: Callable[[str], Engine]) -> None:
    engine = engine_for(database)
    shipped_v1.create(engine)
    with engine.begin() as conn:
        conn.execute(
            shipped_v1.schema_migrations.insert().values(
                version=2, name="from a fork", applied_at=dt.datetime.now(dt.UTC)
            )
        )
    with pytest.raises(FailedPrecondition, match=r"schema versions \[1, 2\]"):
        migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE schema_migrations")
    with pytest.raises(FailedPrecondition, match="no record of its schema"):
        migrations.upgrade(engine)


def test_a_gateway_that_does_not_upgrade_refuses_an_old_schema(
    database: str, engine_for: Callable[[str], Engine]
) -> None:
    engine = engine_for(database)
    migrations.upgrade(engine, migrations.SHIPPED_V1)
    with pytest.raises(FailedPrecondition, match="run `soriflow db upgrade`"):
        JobStore(database, upgrade=False)
    migrations.upgrade(engine)
    JobStore(database, upgrade=False).close()


def test_a_schema_newer_than_this_release_is_refused_with_what_to_do(
    database: str, engine_for: Callable[[str], Engine], tmp_path: Path
) -> None:
    """After `helm rollback` the older image meets the schema its successor made: one clear
    refusal (roll forward or restore), never Alembic's traceback, from the store and the CLI."""
    engine = engine_for(database)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_a_newer_release'")
    for attempt in (lambda: migrations.upgrade(engine), lambda: JobStore(database, upgrade=False)):
        with pytest.raises(
            FailedPrecondition, match=r"0099_from_a_newer_release, which this gateway does not know"
        ):
            attempt()
    upgrade = subprocess.run(
        [sys.executable, "-m", "soriflow.cli.main", "db", "upgrade", "--url", database, "--wait", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgrade.returncode == 1
    assert "roll forward" in upgrade.stderr
    assert "Traceback" not in upgrade.stderr


def test_replicas_starting_together_upgrade_once(postgres_url: str) -> None:
    import psycopg

    name = f"soriflow_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    changes: list[tuple[str | None, str | None]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            store = JobStore(url)
            changes.append(store.schema_change)
            store.close()
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert sorted(changes, key=str) == sorted(
            [(None, migrations.head())] + [(migrations.head(), migrations.head())] * 3, key=str
        )
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_db_commands(tmp_path: Path, engine_for: Callable[[str], Engine]) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    shipped_v1.create(engine_for(url))
    env = os.environ | {"SORIFLOW_GATEWAY_DATABASE_URL": url}

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "soriflow.cli.main", "db", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    behind = db("current", "--check")
    assert behind.returncode == 1
    assert "revision legacy-v1; newest " in behind.stdout
    upgraded = db("upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded from revision 0001 to {migrations.head()}" in upgraded.stdout
    assert "nothing to do" in db("upgrade").stdout
    assert db("current", "--check").returncode == 0
    refused = db("upgrade", "--url", "postgresql://postgres@127.0.0.1:1/none", "--wait", "0")
    assert refused.returncode == 69
    assert "cannot reach the job store" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_revision_0004_upgrades_a_database_of_the_previous_head_with_its_results(
    database: str, engine_for: Callable[[str], Engine]
) -> None:
    """Results written before the contract keep their scores, gain their key, and show in the view."""
    engine = engine_for(database)
    migrations.upgrade(engine, "0003")
    job_id = fill_as_the_first_release(engine)  # the first release's rows are also 0003's
    before = described(engine)
    migrations.upgrade(engine, "0004")
    store = JobStore(database)
    try:
        [attempt] = store.pronunciation_attempts(user_id="kim")
        assert attempt["job_id"] == job_id
        assert (attempt["status"], attempt["error"], attempt["pipeline"]) == (
            "SUCCEEDED",
            "",
            "pronunciation",
        )
        assert attempt["audio_file"] == "users/kim/a.wav"
        assert (attempt["overall_score"], attempt["pitch_similarity"]) == (81.5, pytest.approx(0.6))
        assert attempt["mispronounced_words"] == ["toy"]
        assert attempt["scored_at"] is not None
        # Not measured before this revision: unknown, not zero.
        assert attempt["rhythm_similarity"] is None
        assert attempt["mispronounced_ratio"] is None
        assert attempt["content_type_id"] is None
        # The view has the columns its Table in schema.py declares, in that order.
        columns = [c["name"] for c in inspect(store.engine).get_columns("pronunciation_attempts")]
        assert columns == [c.name for c in schema.pronunciation_attempts.columns]
    finally:
        store.close()
    with engine.begin() as conn:
        command.downgrade(migrations.config(conn), "0003")
    assert described(engine) == before
    assert "pronunciation_attempts" not in inspect(engine).get_view_names()


def test_revision_0004_downgrade_keeps_the_scored_attempts_only(
    database: str, engine_for: Callable[[str], Engine]
) -> None:
    """The previous release knows scored rows only: unscored attempts go, unmeasured values become 0."""
    store = JobStore(database)
    try:
        scored, _ = store.create_job(
            pipeline="pronunciation",
            source_uri="s3://in/users/a/x.wav",
            origin="api",
            metadata={},
            parameters={},
        )
        waiting, _ = store.create_job(
            pipeline="pronunciation",
            source_uri="s3://in/users/b/x.wav",
            origin="api",
            metadata={},
            parameters={},
            attempt=PronunciationRow(job_id="", source_uri="s3://in/users/b/x.wav", user_id="b"),
        )
        store.save_pronunciation(
            PronunciationRow(
                job_id=scored.id,
                source_uri=scored.source_uri,
                user_id="a",
                overall_score=70,
                accuracy_score=70,
                fluency_score=70,
                completeness_score=100,
                prosody_score=50,
                speed_ratio=1.0,
                pause_similarity=0.5,
                rhythm_similarity=0.8,
            )
        )
        assert [r["status"] for r in store.pronunciation_attempts()] == ["QUEUED", "QUEUED"]
    finally:
        store.close()
    engine = engine_for(database)
    with engine.begin() as conn:
        command.downgrade(migrations.config(conn), "0003")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT job_id, pitch_similarity FROM pronunciation_results").all()
    assert [tuple(r) for r in rows] == [(scored.id, 0.0)]
    assert waiting.id not in {r[0] for r in rows}
