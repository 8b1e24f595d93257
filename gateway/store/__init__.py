"""The durable job store: jobs, stage runs, events, outputs and pronunciation results.

SQLite (a file, the embedded default) and PostgreSQL (production, shared by
every gateway replica) behind one SQLAlchemy Core schema. Calls are blocking;
the gateway runs them in threads. Leases make a job run in one place at a
time: a worker claims a job with a lease it renews while running, and
another worker may take it over only when the lease has expired.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from soriflow.errors import InvalidArgument, NotFound
from soriflow.gateway.store import schema
from soriflow.gateway.store.migrations import migrate
from soriflow.v1 import gateway_pb2

log = logging.getLogger("soriflow.gateway.store")

TERMINAL = frozenset({"SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED"})
JOB_STATES = ("QUEUED", "RUNNING", "SUCCEEDED", "PARTIAL", "FAILED", "CANCELLED")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass
class JobRecord:
    id: str
    pipeline: str
    state: str
    origin: str
    source_uri: str
    metadata: dict[str, str]
    parameters: dict[str, str]
    created_at: dt.datetime
    dedupe_key: str | None = None
    error: str = ""
    error_code: str = ""
    retryable: bool = False
    runs: int = 0
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    cancel_requested: bool = False
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass
class StageRecord:
    job_id: str
    name: str
    position: int
    service: str
    state: str
    attempt: int = 0
    optional: bool = False
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration_ms: int = 0
    error: str = ""
    error_code: str = ""
    result: bytes | None = None


@dataclass
class OutputRecord:
    name: str
    uri: str
    content_type: str
    size_bytes: int


@dataclass
class PronunciationRow:
    job_id: str
    source_uri: str
    overall_score: float
    accuracy_score: float
    fluency_score: float
    completeness_score: float
    prosody_score: float
    speed_ratio: float
    pause_similarity: float
    pitch_similarity: float
    user_id: str = ""
    content_type: str = ""
    level: str = ""
    title: str = ""
    line: str = ""
    reference_uri: str = ""
    reference_text: str = ""
    mispronounced_words: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)


def normalize_url(url: str) -> str:
    """Accepts plain `postgresql://` URLs and picks the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    if not url.startswith(("sqlite:", "postgresql+")):
        raise InvalidArgument(
            f"unsupported job store URL {url.split(':', 1)[0]}://...: use sqlite:/// or postgresql://"
        )
    return url


def _job(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        pipeline=row.pipeline,
        state=row.state,
        origin=row.origin,
        source_uri=row.source_uri,
        metadata=json.loads(row.metadata or "{}"),
        parameters=json.loads(row.parameters or "{}"),
        created_at=_aware(row.created_at) or utcnow(),
        dedupe_key=row.dedupe_key,
        error=row.error or "",
        error_code=row.error_code or "",
        retryable=bool(row.retryable),
        runs=row.runs or 0,
        lease_owner=row.lease_owner,
        lease_expires_at=_aware(row.lease_expires_at),
        cancel_requested=bool(row.cancel_requested),
        started_at=_aware(row.started_at),
        ended_at=_aware(row.ended_at),
    )


def _stage(row: Any) -> StageRecord:
    return StageRecord(
        job_id=row.job_id,
        name=row.name,
        position=row.position,
        service=row.service,
        state=row.state,
        attempt=row.attempt,
        optional=bool(row.optional),
        started_at=_aware(row.started_at),
        ended_at=_aware(row.ended_at),
        duration_ms=row.duration_ms or 0,
        error=row.error or "",
        error_code=row.error_code or "",
        result=row.result,
    )


def _unheld(now: dt.datetime) -> Any:
    """A running job whose lease has expired: its worker is gone or gave it back."""
    j = schema.jobs.c
    return and_(j.state == "RUNNING", or_(j.lease_expires_at.is_(None), j.lease_expires_at < now))


def _cancelled(now: dt.datetime) -> dict[str, Any]:
    return dict(
        state="CANCELLED",
        ended_at=now,
        updated_at=now,
        error="cancelled by a caller",
        error_code="CANCELLED",
        retryable=False,
        lease_owner=None,
        lease_expires_at=None,
    )


def encode_page_token(created_at: dt.datetime, job_id: str) -> str:
    raw = json.dumps({"t": created_at.isoformat(), "id": job_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        return dt.datetime.fromisoformat(data["t"]), str(data["id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument("invalid page_token: pass next_page_token from the previous response") from exc


class JobStore:
    """Blocking access to the job store (call from threads in async code)."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine: Engine = self._engine(self.url)
        migrate(self.engine)
        self._event_lock = threading.Lock()

    @staticmethod
    def _engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _pragmas(conn: Any, _record: Any) -> None:
                cursor = conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.close()

            return engine
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)

    def close(self) -> None:
        self.engine.dispose()

    # --- jobs -------------------------------------------------------------------------------------

    def create_job(
        self,
        *,
        pipeline: str,
        source_uri: str,
        origin: str,
        metadata: Mapping[str, str],
        parameters: Mapping[str, str],
        dedupe_key: str | None = None,
        state: str = "QUEUED",
        error: str = "",
        error_code: str = "",
        job_id: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Creates a job, or returns the existing one with the same dedupe key (created=False)."""
        now = utcnow()
        values = dict(
            id=job_id or str(uuid.uuid4()),
            dedupe_key=dedupe_key,
            pipeline=pipeline,
            state=state,
            origin=origin,
            source_uri=source_uri,
            metadata=json.dumps(dict(metadata), ensure_ascii=False),
            parameters=json.dumps(dict(parameters), ensure_ascii=False),
            error=error,
            error_code=error_code,
            retryable=False,
            runs=0,
            cancel_requested=False,
            created_at=now,
            updated_at=now,
            ended_at=now if state in TERMINAL else None,
        )
        first = gateway_pb2.JobEvent(
            type=gateway_pb2.JOB_EVENT_TYPE_JOB_STATE,
            sequence=1,
            job_state=getattr(gateway_pb2, f"JOB_STATE_{state}"),
            message=error or f"job accepted for pipeline {pipeline}",
        )
        first.time.FromDatetime(now)
        try:
            with self.engine.begin() as conn:
                conn.execute(schema.jobs.insert().values(**values))
                conn.execute(
                    schema.job_events.insert().values(
                        job_id=values["id"], sequence=1, created_at=now, payload=first.SerializeToString()
                    )
                )
        except IntegrityError:
            if dedupe_key is None:
                raise
            existing = self.find_by_dedupe_key(dedupe_key)
            if existing is None:  # deleted between the insert and the read: vanishingly rare
                raise
            return existing, False
        job = self.get_job(str(values["id"]))
        assert job is not None
        return job, True

    def get_job(self, job_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.jobs).where(schema.jobs.c.id == job_id)).first()
        return _job(row) if row else None

    def require_job(self, job_id: str) -> JobRecord:
        try:
            uuid.UUID(job_id)
        except ValueError:
            raise InvalidArgument(f"job id {job_id!r} is not a UUID") from None
        job = self.get_job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def find_by_dedupe_key(self, key: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.jobs).where(schema.jobs.c.dedupe_key == key)).first()
        return _job(row) if row else None

    def claim(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Takes the job to run it: queued, retryably failed, or running under an expired lease."""
        now = utcnow()
        j = schema.jobs.c
        runnable = or_(
            j.state == "QUEUED",
            and_(j.state == "FAILED", j.retryable.is_(True)),
            and_(j.state == "RUNNING", or_(j.lease_expires_at.is_(None), j.lease_expires_at < now)),
        )
        with self.engine.begin() as conn:
            result = conn.execute(
                update(schema.jobs)
                .where(j.id == job_id, j.cancel_requested.is_(False), runnable)
                .values(
                    state="RUNNING",
                    lease_owner=owner,
                    lease_expires_at=now + dt.timedelta(seconds=lease_s),
                    runs=j.runs + 1,
                    started_at=func.coalesce(j.started_at, now),
                    error="",
                    error_code="",
                    retryable=False,
                    ended_at=None,
                    updated_at=now,
                )
            )
        return bool(result.rowcount == 1)

    def renew_lease(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Extends the lease; False when it was lost (taken over) or cancellation was asked for."""
        now = utcnow()
        j = schema.jobs.c
        with self.engine.begin() as conn:
            result = conn.execute(
                update(schema.jobs)
                .where(
                    j.id == job_id,
                    j.lease_owner == owner,
                    j.state == "RUNNING",
                    j.cancel_requested.is_(False),
                )
                .values(lease_expires_at=now + dt.timedelta(seconds=lease_s), updated_at=now)
            )
        return bool(result.rowcount == 1)

    def release(self, job_id: str, owner: str) -> None:
        """Gives a running job back (shutdown): its lease expires now so another worker may take it."""
        j = schema.jobs.c
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.jobs)
                .where(j.id == job_id, j.lease_owner == owner)
                .values(lease_expires_at=utcnow(), updated_at=utcnow())
            )

    def finish(
        self, job_id: str, state: str, *, error: str = "", error_code: str = "", retryable: bool = False
    ) -> None:
        if state not in TERMINAL:
            raise ValueError(f"{state} is not a final state")
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.jobs)
                .where(schema.jobs.c.id == job_id)
                .values(
                    state=state,
                    error=error,
                    error_code=error_code,
                    retryable=retryable,
                    ended_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )

    def request_cancel(self, job_id: str) -> JobRecord:
        """Marks a job for cancellation; queued jobs, and running ones no worker holds, end CANCELLED now.

        A running job whose lease is live is stopped by its worker (the lease renewal fails). If that
        worker died, nobody would finish the job: with its lease expired it is cancelled here at once
        (and by `cancel_abandoned` when the lease runs out later).
        """
        now = utcnow()
        j = schema.jobs.c
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.jobs)
                .where(j.id == job_id, j.state.not_in(TERMINAL))
                .values(cancel_requested=True, updated_at=now)
            )
            conn.execute(
                update(schema.jobs)
                .where(j.id == job_id, or_(j.state == "QUEUED", _unheld(now)))
                .values(_cancelled(now))
            )
        return self.require_job(job_id)

    def cancel_abandoned(self) -> list[str]:
        """Ends as CANCELLED the cancel-requested running jobs whose worker let the lease expire."""
        now = utcnow()
        j = schema.jobs.c
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(j.id).where(j.cancel_requested.is_(True), or_(j.state == "QUEUED", _unheld(now)))
            ).scalars()
            ids = [str(i) for i in rows]
            if ids:
                conn.execute(
                    update(schema.jobs)
                    .where(
                        j.id.in_(ids), j.cancel_requested.is_(True), or_(j.state == "QUEUED", _unheld(now))
                    )
                    .values(_cancelled(now))
                )
        return ids

    def orphaned_jobs(self, *, origin: str = "api", stale_s: float = 0.0) -> list[JobRecord]:
        """Jobs that no worker holds any more: running with a lease expired `stale_s` ago, or queued.

        Queued jobs count only for API submissions (an SQS job is queued until its message's
        consumer claims it; the message brings it back if that consumer dies).
        """
        now = utcnow()
        j = schema.jobs.c
        abandoned = [and_(j.state == "RUNNING", j.lease_expires_at < now - dt.timedelta(seconds=stale_s))]
        if origin == "api":
            abandoned.append(and_(j.state == "QUEUED", j.created_at < now - dt.timedelta(seconds=5)))
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.jobs)
                .where(j.origin == origin, j.cancel_requested.is_(False), or_(*abandoned))
                .limit(100)
            ).all()
        return [_job(r) for r in rows]

    def list_jobs(
        self,
        *,
        page_size: int = 50,
        page_token: str = "",
        state: str = "",
        pipeline: str = "",
        source_uri_prefix: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[list[JobRecord], str]:
        """Newest first, keyset-paginated; returns (jobs, next_page_token)."""
        j = schema.jobs.c
        conditions = []
        if state:
            conditions.append(j.state == state)
        if pipeline:
            conditions.append(j.pipeline == pipeline)
        if source_uri_prefix:
            escaped = source_uri_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(j.source_uri.like(escaped + "%", escape="\\"))
        cursor = decode_page_token(page_token) if page_token else None
        found: list[JobRecord] = []
        more = False
        with self.engine.connect() as conn:
            while len(found) <= page_size:
                where = list(conditions)
                if cursor is not None:
                    created, last_id = cursor
                    where.append(or_(j.created_at < created, and_(j.created_at == created, j.id < last_id)))
                rows = conn.execute(
                    select(schema.jobs)
                    .where(*where)
                    .order_by(j.created_at.desc(), j.id.desc())
                    .limit(page_size * 2 + 1)
                ).all()
                if not rows:
                    break
                for row in rows:
                    record = _job(row)
                    cursor = (row.created_at, row.id)
                    if metadata and any(record.metadata.get(k) != v for k, v in metadata.items()):
                        continue
                    if len(found) == page_size:
                        more = True
                        break
                    found.append(record)
                if more or len(rows) < page_size * 2 + 1:
                    break
        next_token = encode_page_token(found[-1].created_at, found[-1].id) if more and found else ""
        return found, next_token

    # --- stages -----------------------------------------------------------------------------------

    def init_stages(self, job_id: str, stages: Sequence[tuple[str, str, bool]]) -> None:
        """Creates the stage rows of a job (name, service, optional) if they do not exist yet."""
        with self.engine.begin() as conn:
            existing = set(
                conn.execute(
                    select(schema.stage_runs.c.name).where(schema.stage_runs.c.job_id == job_id)
                ).scalars()
            )
            for position, (name, service, optional) in enumerate(stages):
                if name not in existing:
                    conn.execute(
                        schema.stage_runs.insert().values(
                            job_id=job_id,
                            name=name,
                            position=position,
                            service=service,
                            state="PENDING",
                            attempt=0,
                            optional=optional,
                            duration_ms=0,
                            error="",
                            error_code="",
                        )
                    )

    def update_stage(self, job_id: str, name: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.stage_runs)
                .where(schema.stage_runs.c.job_id == job_id, schema.stage_runs.c.name == name)
                .values(**values)
            )

    def stages(self, job_id: str) -> list[StageRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.stage_runs)
                .where(schema.stage_runs.c.job_id == job_id)
                .order_by(schema.stage_runs.c.position)
            ).all()
        return [_stage(r) for r in rows]

    # --- events -----------------------------------------------------------------------------------

    def append_event(self, job_id: str, event_msg: gateway_pb2.JobEvent) -> gateway_pb2.JobEvent:
        """Stores an event with the next sequence number and the current time."""
        e = schema.job_events.c
        for _ in range(5):
            with self._event_lock:
                now = utcnow()
                try:
                    with self.engine.begin() as conn:
                        last = conn.execute(select(func.max(e.sequence)).where(e.job_id == job_id)).scalar()
                        stored = gateway_pb2.JobEvent()
                        stored.CopyFrom(event_msg)
                        stored.sequence = int(last or 0) + 1
                        stored.time.FromDatetime(now)
                        conn.execute(
                            schema.job_events.insert().values(
                                job_id=job_id,
                                sequence=stored.sequence,
                                created_at=now,
                                payload=stored.SerializeToString(),
                            )
                        )
                        return stored
                except IntegrityError:  # another replica appended the same number: take the next
                    continue
        raise RuntimeError(f"could not append an event to job {job_id}")

    def events_after(self, job_id: str, sequence: int) -> list[gateway_pb2.JobEvent]:
        e = schema.job_events.c
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(e.payload).where(e.job_id == job_id, e.sequence > sequence).order_by(e.sequence)
                )
                .scalars()
                .all()
            )
        return [gateway_pb2.JobEvent.FromString(bytes(p)) for p in rows]

    # --- outputs and results ----------------------------------------------------------------------

    def add_output(self, job_id: str, output: OutputRecord) -> None:
        o = schema.job_outputs.c
        with self.engine.begin() as conn:
            conn.execute(schema.job_outputs.delete().where(o.job_id == job_id, o.name == output.name))
            conn.execute(
                schema.job_outputs.insert().values(
                    job_id=job_id,
                    name=output.name,
                    uri=output.uri,
                    content_type=output.content_type,
                    size_bytes=output.size_bytes,
                    created_at=utcnow(),
                )
            )

    def outputs(self, job_id: str) -> list[OutputRecord]:
        o = schema.job_outputs.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.job_outputs).where(o.job_id == job_id).order_by(o.created_at, o.name)
            )
        return [OutputRecord(r.name, r.uri, r.content_type, r.size_bytes) for r in rows]

    def save_pronunciation(self, row: PronunciationRow) -> None:
        values = {k: v for k, v in row.__dict__.items()}
        values["mispronounced_words"] = json.dumps(row.mispronounced_words, ensure_ascii=False)
        values["feedback"] = json.dumps(row.feedback, ensure_ascii=False)
        values["created_at"] = utcnow()
        p = schema.pronunciation_results.c
        with self.engine.begin() as conn:
            conn.execute(schema.pronunciation_results.delete().where(p.job_id == row.job_id))
            conn.execute(schema.pronunciation_results.insert().values(**values))

    def pronunciation_results(self, *, user_id: str | None = None) -> Iterator[dict[str, Any]]:
        p = schema.pronunciation_results.c
        query = select(schema.pronunciation_results).order_by(p.created_at)
        if user_id is not None:
            query = query.where(p.user_id == user_id)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                data = dict(row._mapping)
                data["mispronounced_words"] = json.loads(data["mispronounced_words"])
                data["feedback"] = json.loads(data["feedback"])
                yield data
