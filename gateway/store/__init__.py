"""The durable job store: jobs, stage runs, events, outputs, pronunciation results, leases, schedules.

SQLite (a file, the embedded default) and PostgreSQL (production, shared by
every gateway replica) behind one SQLAlchemy Core schema, migrated by Alembic
(`migrations/`). Calls are blocking; the gateway runs them in threads.

Every change of a job's or a stage's state goes through the transition tables
of `soriflow.gateway.states` (an update whose row is in a state the table does
not allow changes nothing and raises `IllegalTransition`), and is written in
the same transaction as its event: WatchJob's history and the state never
disagree, and a job costs a handful of transactions, not one per fact.

Leases make a job run in one place at a time: a worker claims a job with a
lease it renews while running, and another may take it over only when the
lease has expired. Named leases (`acquire_lease`) do the same for anything
else a single replica must do once.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import tenacity
from google.protobuf import json_format
from sqlalchemy import Connection, Engine, and_, create_engine, event, func, make_url, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from soriflow.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from soriflow.gateway.states import (
    TERMINAL,
    IllegalTransition,
    JobState,
    StageState,
    check_job,
    job_sources,
    stage_sources,
)
from soriflow.gateway.store import migrations, schema
from soriflow.v1 import gateway_pb2

log = logging.getLogger("soriflow.gateway.store")

T = TypeVar("T")


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
    state: JobState
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
    #: A pipeline gate failed: a person should check the result (`review_reasons` say why).
    needs_review: bool = False
    review_reasons: list[gateway_pb2.ReviewReason] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    @property
    def final(self) -> bool:
        """Ended for good: terminal, and not a transient failure that a redelivery runs again."""
        return self.state.terminal and not (self.state is JobState.FAILED and self.retryable)


@dataclass
class StageRecord:
    job_id: str
    name: str
    position: int
    service: str
    state: StageState
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
    """One attempt in `pronunciation_results` (docs/pronunciation-results.md): scores None until scored."""

    job_id: str
    source_uri: str
    user_id: str = ""
    content_type_id: int | None = None
    object_id: str | None = None
    audio_file: str = ""
    content_type: str = ""
    level: str = ""
    title: str = ""
    line: str = ""
    reference_uri: str = ""
    reference_text: str = ""
    recognized_text: str = ""
    overall_score: float | None = None
    accuracy_score: float | None = None
    fluency_score: float | None = None
    completeness_score: float | None = None
    prosody_score: float | None = None
    speed_ratio: float | None = None
    pause_similarity: float | None = None
    pitch_similarity: float | None = None
    rhythm_similarity: float | None = None
    energy_similarity: float | None = None
    mispronounced_ratio: float | None = None
    mispronounced_words: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)

    @property
    def scored(self) -> bool:
        return self.overall_score is not None

    def values(self) -> dict[str, Any]:
        """The row's columns (JSON lists serialized), without the times."""
        values = dict(self.__dict__)
        values["mispronounced_words"] = json.dumps(self.mispronounced_words, ensure_ascii=False)
        values["feedback"] = json.dumps(self.feedback, ensure_ascii=False)
        return values


@dataclass
class ScheduleState:
    """Where a cron schedule stands: ticks up to `last_tick_at` are handled (run or skipped)."""

    name: str
    pipeline: str
    last_tick_at: dt.datetime
    last_job_id: str | None = None


@dataclass
class Claim:
    """A job just claimed, with its stage rows (what a re-run resumes from)."""

    job: JobRecord
    stages: list[StageRecord]


class NotHeld(FailedPrecondition):
    """The job is held by another worker (our lease expired and it was taken over)."""


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


def display_url(url: str) -> str:
    """The URL as logs may show it: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


def _job(row: Any) -> JobRecord:
    return JobRecord(
        id=row.id,
        pipeline=row.pipeline,
        state=JobState(row.state),
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
        needs_review=bool(row.needs_review),
        review_reasons=_reasons(row.review_reasons),
    )


def _reasons(text: str | None) -> list[gateway_pb2.ReviewReason]:
    return [gateway_pb2.ReviewReason(**item) for item in json.loads(text or "[]")]


def _reason_key(reason: gateway_pb2.ReviewReason) -> tuple[str, str, str]:
    return (reason.gate, reason.stage, reason.signal)


def _stage(row: Any) -> StageRecord:
    return StageRecord(
        job_id=row.job_id,
        name=row.name,
        position=row.position,
        service=row.service,
        state=StageState(row.state),
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
    return and_(j.state == JobState.RUNNING, or_(j.lease_expires_at.is_(None), j.lease_expires_at < now))


def _cancelled(now: dt.datetime) -> dict[str, Any]:
    return dict(
        ended_at=now,
        error="cancelled by a caller",
        error_code="CANCELLED",
        retryable=False,
        lease_owner=None,
        lease_expires_at=None,
    )


def job_state_event(state: JobState, message: str) -> gateway_pb2.JobEvent:
    return gateway_pb2.JobEvent(
        type=gateway_pb2.JOB_EVENT_TYPE_JOB_STATE, job_state=state.proto, message=message
    )


def output_event(stage: str, output: OutputRecord) -> gateway_pb2.JobEvent:
    return gateway_pb2.JobEvent(
        type=gateway_pb2.JOB_EVENT_TYPE_OUTPUT,
        stage=stage,
        job_state=JobState.RUNNING.proto,
        output=gateway_pb2.JobOutput(
            name=output.name, uri=output.uri, content_type=output.content_type, size_bytes=output.size_bytes
        ),
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


def _lists(row: dict[str, Any]) -> dict[str, Any]:
    """A results row with its JSON lists decoded and its times in UTC."""
    row["mispronounced_words"] = json.loads(row["mispronounced_words"] or "[]")
    row["feedback"] = json.loads(row["feedback"] or "[]")
    for name in ("created_at", "scored_at", "ended_at"):
        if name in row:
            row[name] = _aware(row[name])
    return row


def _reason(exc: BaseException) -> str:
    """The driver's own words, on one line (psycopg's messages span several)."""
    original = getattr(exc, "orig", None) or exc
    return " ".join(str(original).split()) or type(original).__name__


class JobStore:
    """Blocking access to the job store (call from threads in async code)."""

    def __init__(self, url: str, *, upgrade: bool = True, sqlite_synchronous: str = "full") -> None:
        """Connects and brings the schema to the newest revision (`upgrade=False`: requires it).

        `sqlite_synchronous`: SQLite's `synchronous` pragma. `full` syncs the write-ahead log to
        disk at every commit; `normal` leaves that to the operating system (a commit survives the
        process crashing, not the machine losing power) and saves a disk sync per commit.
        """
        self.url = normalize_url(url)
        if sqlite_synchronous not in ("full", "normal"):
            raise InvalidArgument(f"sqlite_synchronous must be full or normal, not {sqlite_synchronous!r}")
        self.engine: Engine = self._engine(self.url, sqlite_synchronous)
        # Event numbers are per job: writers of one job's events take turns within this process
        # (other replicas are handled by the primary key and a retry).
        self._locks = [threading.Lock() for _ in range(64)]
        #: The schema revision (before, after) this connection found and left.
        self.schema_change: tuple[str | None, str | None]
        try:
            if upgrade:
                self.schema_change = migrations.upgrade(self.engine)
            else:
                migrations.require_head(self.engine)
                self.schema_change = (migrations.head(), migrations.head())
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def open(
        cls, url: str, *, upgrade: bool = True, wait_s: float = 0.0, sqlite_synchronous: str = "full"
    ) -> JobStore:
        """Connects, retrying with backoff for up to `wait_s` while the database refuses connections.

        A database that comes up a little after the gateway (a pod starting beside it) is waited
        for; one that stays down ends in `Unavailable` with the reason, for a one-line log.
        """
        shown = display_url(normalize_url(url))

        def note(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "job store %s unreachable (%s); retrying in %.1fs",
                shown,
                _reason(error or Exception()),
                delay,
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(wait_s),
            wait=tenacity.wait_exponential(multiplier=0.5, max=5.0) + tenacity.wait_random(0, 0.5),
            # A SQLite file that cannot be opened will not open later: no waiting for it.
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, OperationalError) and not url.startswith("sqlite")
            ),
            before_sleep=note,
            reraise=True,
        )
        started = time.monotonic()
        try:
            return retrying(cls, url, upgrade=upgrade, sqlite_synchronous=sqlite_synchronous)
        except OperationalError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise Unavailable(
                f"cannot reach the job store at {shown} ({attempts} attempt{'s' * (attempts > 1)} in "
                f"{time.monotonic() - started:.0f}s): {_reason(exc)}; check SORIFLOW_GATEWAY_DATABASE_URL "
                "and that the database accepts connections"
            ) from None
        except DBAPIError as exc:  # reached, but it refused what the schema upgrade asked (permissions...)
            raise FailedPrecondition(
                f"the job store at {shown} refused the schema upgrade: {_reason(exc)}"
            ) from None

    @staticmethod
    def _engine(url: str, sqlite_synchronous: str = "full") -> Engine:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _pragmas(conn: Any, _record: Any) -> None:
                cursor = conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
                cursor.close()

            return engine
        # connect_timeout: an address that drops packets must not hang the start forever.
        return create_engine(
            url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args={"connect_timeout": 10}
        )

    def close(self) -> None:
        self.engine.dispose()

    # --- writing ----------------------------------------------------------------------------------

    def _write(self, job_id: str, work: Callable[[Connection, dt.datetime], T]) -> T:
        """Runs `work` in one transaction; again (with fresh event numbers) if another replica's
        event took a number first."""
        lock = self._locks[zlib.crc32(job_id.encode()) % len(self._locks)]
        for attempt in range(5):
            with lock:
                try:
                    with self.engine.begin() as conn:
                        return work(conn, utcnow())
                except IntegrityError:
                    if attempt == 4:
                        raise
        raise AssertionError("unreachable")

    @staticmethod
    def _append(
        conn: Connection, job_id: str, events: Sequence[gateway_pb2.JobEvent], now: dt.datetime
    ) -> list[gateway_pb2.JobEvent]:
        """Stores events with the job's next sequence numbers and the time of the transaction."""
        if not events:
            return []
        e = schema.job_events.c
        last = int(conn.execute(select(func.max(e.sequence)).where(e.job_id == job_id)).scalar() or 0)
        stored = []
        for number, event_msg in enumerate(events, start=last + 1):
            copy = gateway_pb2.JobEvent()
            copy.CopyFrom(event_msg)
            copy.sequence = number
            copy.time.FromDatetime(now)
            stored.append(copy)
        conn.execute(
            schema.job_events.insert(),
            [
                {
                    "job_id": job_id,
                    "sequence": m.sequence,
                    "created_at": now,
                    "payload": m.SerializeToString(),
                }
                for m in stored
            ],
        )
        return stored

    def _transition(
        self,
        conn: Connection,
        job_id: str,
        target: JobState,
        now: dt.datetime,
        *,
        values: Mapping[str, Any],
        message: str | Callable[[JobRecord], str],
        where: Sequence[Any] = (),
        events: Sequence[gateway_pb2.JobEvent] = (),
    ) -> JobRecord | None:
        """Moves the job to `target` if the table allows it from its state (and `where` holds),
        recording the state's event (after `events`); None when the row did not qualify."""
        j = schema.jobs.c
        row = conn.execute(
            update(schema.jobs)
            .where(j.id == job_id, j.state.in_(sorted(job_sources(target))), *where)
            .values(state=target, updated_at=now, **values)
            .returning(*schema.jobs.c)
        ).first()
        if row is None:
            return None
        record = _job(row)
        text = message(record) if callable(message) else message
        self._append(conn, job_id, [*events, job_state_event(target, text)], now)
        return record

    def _refusal(self, conn: Connection, job_id: str, target: JobState, owner: str | None) -> Exception:
        """Why a transition did not happen: no such job, a state the table forbids, or not our lease."""
        row = conn.execute(select(schema.jobs).where(schema.jobs.c.id == job_id)).first()
        if row is None:
            return NotFound(f"no job {job_id}")
        current = JobState(row.state)
        if current not in job_sources(target):
            return IllegalTransition(f"job {job_id}", current, target)
        return NotHeld(f"job {job_id} is held by {row.lease_owner or 'nobody'}, not {owner}")

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
        state: JobState | str = JobState.QUEUED,
        error: str = "",
        error_code: str = "",
        job_id: str | None = None,
        attempt: PronunciationRow | None = None,
    ) -> tuple[JobRecord, bool]:
        """Creates a job, or returns the existing one with the same dedupe key (created=False).

        `attempt`: the job's row in `pronunciation_results` (a pipeline that scores), written in the
        same transaction, so an app sees every attempt from its acceptance, failed ones included.
        """
        target = JobState(state)
        check_job(None, target, "a new job")
        now = utcnow()
        record = JobRecord(
            id=job_id or str(uuid.uuid4()),
            pipeline=pipeline,
            state=target,
            origin=origin,
            source_uri=source_uri,
            metadata=dict(metadata),
            parameters=dict(parameters),
            created_at=now,
            dedupe_key=dedupe_key,
            error=error,
            error_code=error_code,
            ended_at=now if target.terminal else None,
        )
        values = dict(
            id=record.id,
            dedupe_key=dedupe_key,
            pipeline=pipeline,
            state=target,
            origin=origin,
            source_uri=source_uri,
            metadata=json.dumps(record.metadata, ensure_ascii=False),
            parameters=json.dumps(record.parameters, ensure_ascii=False),
            error=error,
            error_code=error_code,
            retryable=False,
            runs=0,
            cancel_requested=False,
            created_at=now,
            updated_at=now,
            ended_at=record.ended_at,
        )
        first = job_state_event(target, error or f"job accepted for pipeline {pipeline}")
        try:
            with self.engine.begin() as conn:
                conn.execute(schema.jobs.insert().values(**values))
                if attempt is not None:
                    row = attempt.values() | {"job_id": record.id, "created_at": now}
                    row["scored_at"] = now if attempt.scored else None
                    conn.execute(schema.pronunciation_results.insert().values(**row))
                self._append(conn, record.id, [first], now)
        except IntegrityError:
            if dedupe_key is None:
                raise
            existing = self.find_by_dedupe_key(dedupe_key)
            if existing is None:  # deleted between the insert and the read: vanishingly rare
                raise
            return existing, False
        return record, True

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

    def claim(
        self,
        job_id: str,
        owner: str,
        lease_s: float,
        *,
        stages: Sequence[tuple[str, str, bool]] = (),
    ) -> Claim | None:
        """Takes the job to run it: queued, retryably failed, or running under an expired lease.

        Returns the job as claimed with its stage rows (None when it is not runnable or someone
        else holds it); its RUNNING event and the missing rows of `stages` (name, service,
        optional) are written in the same transaction.
        """
        j = schema.jobs.c

        def work(conn: Connection, now: dt.datetime) -> Claim | None:
            runnable = or_(
                j.state == JobState.QUEUED,
                and_(j.state == JobState.FAILED, j.retryable.is_(True)),
                _unheld(now),
            )
            record = self._transition(
                conn,
                job_id,
                JobState.RUNNING,
                now,
                where=[j.cancel_requested.is_(False), runnable],
                values=dict(
                    lease_owner=owner,
                    lease_expires_at=now + dt.timedelta(seconds=lease_s),
                    runs=j.runs + 1,
                    started_at=func.coalesce(j.started_at, now),
                    error="",
                    error_code="",
                    retryable=False,
                    ended_at=None,
                ),
                message=lambda r: f"run {r.runs} on {owner}",
            )
            if record is None:
                return None
            if stages:
                self._init_stages(conn, job_id, stages)
            rows = conn.execute(
                select(schema.stage_runs)
                .where(schema.stage_runs.c.job_id == job_id)
                .order_by(schema.stage_runs.c.position)
            ).all()
            return Claim(record, [_stage(r) for r in rows])

        return self._write(job_id, work)

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
                    j.state == JobState.RUNNING,
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
        self,
        job_id: str,
        state: JobState | str,
        *,
        error: str = "",
        error_code: str = "",
        retryable: bool = False,
        owner: str | None = None,
        message: str = "",
    ) -> JobRecord:
        """Ends a running job in a final state, with its event (`message`, default: the error).

        With `owner`, only while that worker holds the job (`NotHeld` otherwise); a job that is not
        running raises `IllegalTransition`. Returns the job as stored.
        """
        target = JobState(state)
        if not target.terminal:
            raise ValueError(f"{target} is not a final state")
        return self._write(
            job_id,
            lambda conn, now: self._end(
                conn, now, job_id, target, error, error_code, retryable, owner, message
            ),
        )

    def _end(
        self,
        conn: Connection,
        now: dt.datetime,
        job_id: str,
        target: JobState,
        error: str,
        error_code: str,
        retryable: bool,
        owner: str | None,
        message: str,
    ) -> JobRecord:
        j = schema.jobs.c
        record = self._transition(
            conn,
            job_id,
            target,
            now,
            where=[j.lease_owner == owner] if owner is not None else [],
            values=dict(
                error=error,
                error_code=error_code,
                retryable=retryable,
                ended_at=now,
                lease_owner=None,
                lease_expires_at=None,
            ),
            message=message or error or f"job {target.lower()}",
        )
        if record is None:
            raise self._refusal(conn, job_id, target, owner)
        return record

    def request_cancel(self, job_id: str) -> JobRecord:
        """Marks a job for cancellation; queued jobs, and running ones no worker holds, end CANCELLED now.

        A running job whose lease is live is stopped by its worker (the lease renewal fails). If that
        worker died, nobody would finish the job: with its lease expired it is cancelled here at once
        (and by `cancel_abandoned` when the lease runs out later).
        """
        j = schema.jobs.c

        def work(conn: Connection, now: dt.datetime) -> JobRecord | None:
            conn.execute(
                update(schema.jobs)
                .where(j.id == job_id, j.state.not_in(TERMINAL))
                .values(cancel_requested=True, updated_at=now)
            )
            return self._transition(
                conn,
                job_id,
                JobState.CANCELLED,
                now,
                where=[or_(j.state == JobState.QUEUED, _unheld(now))],
                values=_cancelled(now),
                message="cancelled by a caller",
            )

        return self._write(job_id, work) or self.require_job(job_id)

    def cancel_abandoned(self) -> list[JobRecord]:
        """Ends as CANCELLED the cancel-requested jobs whose worker let the lease expire (or queued)."""
        now = utcnow()
        j = schema.jobs.c
        with self.engine.connect() as conn:
            ids = [
                str(i)
                for i in conn.execute(
                    select(j.id).where(
                        j.cancel_requested.is_(True), or_(j.state == JobState.QUEUED, _unheld(now))
                    )
                ).scalars()
            ]

        def cancel(job_id: str) -> Callable[[Connection, dt.datetime], JobRecord | None]:
            def work(conn: Connection, now: dt.datetime) -> JobRecord | None:
                return self._transition(
                    conn,
                    job_id,
                    JobState.CANCELLED,
                    now,
                    where=[j.cancel_requested.is_(True), or_(j.state == JobState.QUEUED, _unheld(now))],
                    values=_cancelled(now),
                    message="cancelled by a caller (its worker had stopped)",
                )

            return work

        ended = [self._write(job_id, cancel(job_id)) for job_id in ids]
        return [record for record in ended if record is not None]

    def orphaned_jobs(self, *, origin: str = "api", stale_s: float = 0.0) -> list[JobRecord]:
        """Jobs that no worker holds any more: running with a lease expired `stale_s` ago, or queued.

        Queued jobs count only for API submissions and schedule ticks (an SQS job is queued until
        its message's consumer claims it; the message brings it back if that consumer dies).
        """
        now = utcnow()
        j = schema.jobs.c
        abandoned = [
            and_(j.state == JobState.RUNNING, j.lease_expires_at < now - dt.timedelta(seconds=stale_s))
        ]
        if origin != "sqs":  # API submissions and schedule ticks: nothing else brings them back
            abandoned.append(and_(j.state == JobState.QUEUED, j.created_at < now - dt.timedelta(seconds=5)))
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
        state: JobState | str = "",
        pipeline: str = "",
        source_uri_prefix: str = "",
        metadata: Mapping[str, str] | None = None,
        needs_review: bool | None = None,
    ) -> tuple[list[JobRecord], str]:
        """Newest first, keyset-paginated; returns (jobs, next_page_token)."""
        j = schema.jobs.c
        conditions = []
        if state:
            conditions.append(j.state == JobState(state))
        if needs_review is not None:
            conditions.append(j.needs_review.is_(needs_review))
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

    def flag_review(
        self, job_id: str, reasons: Sequence[gateway_pb2.ReviewReason]
    ) -> list[gateway_pb2.ReviewReason]:
        """Marks the job as needing review with `reasons` (one per gate, stage and signal: a re-run
        repeats nothing) and notes it in the job's events; returns the reasons that are new."""
        j = schema.jobs.c

        def work(conn: Connection, now: dt.datetime) -> list[gateway_pb2.ReviewReason]:
            row = conn.execute(select(j.state, j.review_reasons).where(j.id == job_id)).first()
            if row is None:
                raise NotFound(f"no job {job_id}")
            stored = _reasons(row.review_reasons)
            known = {_reason_key(r) for r in stored}
            new = []
            for reason in reasons:
                if _reason_key(reason) not in known:
                    known.add(_reason_key(reason))
                    new.append(reason)
            if not new:
                return []
            everything = [
                json_format.MessageToDict(r, preserving_proto_field_name=True) for r in stored + new
            ]
            conn.execute(
                update(schema.jobs)
                .where(j.id == job_id)
                .values(needs_review=True, review_reasons=json.dumps(everything, ensure_ascii=False))
            )
            note = "needs review: " + "; ".join(r.message for r in new)
            self._append(conn, job_id, [job_state_event(JobState(row.state), note)], now)
            return new

        return self._write(job_id, work)

    # --- stages -----------------------------------------------------------------------------------

    @staticmethod
    def _init_stages(conn: Connection, job_id: str, stages: Sequence[tuple[str, str, bool]]) -> None:
        existing = set(
            conn.execute(
                select(schema.stage_runs.c.name).where(schema.stage_runs.c.job_id == job_id)
            ).scalars()
        )
        rows = [
            dict(
                job_id=job_id,
                name=name,
                position=position,
                service=service,
                state=StageState.PENDING,
                attempt=0,
                optional=optional,
                duration_ms=0,
                error="",
                error_code="",
            )
            for position, (name, service, optional) in enumerate(stages)
            if name not in existing
        ]
        if rows:
            conn.execute(schema.stage_runs.insert(), rows)

    def init_stages(self, job_id: str, stages: Sequence[tuple[str, str, bool]]) -> None:
        """Creates the stage rows of a job (name, service, optional) if they do not exist yet."""
        with self.engine.begin() as conn:
            self._init_stages(conn, job_id, stages)

    def _stage_to(
        self,
        conn: Connection,
        job_id: str,
        name: str,
        target: StageState,
        values: Mapping[str, Any],
    ) -> None:
        s = schema.stage_runs.c
        result = conn.execute(
            update(schema.stage_runs)
            .where(s.job_id == job_id, s.name == name, s.state.in_(sorted(stage_sources(target))))
            .values(state=target, **values)
        )
        if result.rowcount != 1:
            current = conn.execute(select(s.state).where(s.job_id == job_id, s.name == name)).scalar()
            if current is None:
                raise NotFound(f"job {job_id} has no stage {name!r}")
            raise IllegalTransition(f"stage {name} of job {job_id}", current, target)

    def set_stage(
        self,
        job_id: str,
        name: str,
        state: StageState | str,
        *,
        attempt: int = 0,
        error: str = "",
        code: str = "",
        **values: Any,
    ) -> None:
        """Moves a stage to `state` (as the transition table allows) with its STAGE_STATE event."""
        target = StageState(state)
        columns: dict[str, Any] = {"error": error, "error_code": code, **values}
        if attempt:
            columns["attempt"] = attempt
        event_msg = gateway_pb2.JobEvent(
            type=gateway_pb2.JOB_EVENT_TYPE_STAGE_STATE,
            stage=name,
            stage_state=target.proto,
            attempt=attempt,
            message=error,
            job_state=JobState.RUNNING.proto,
        )

        def work(conn: Connection, now: dt.datetime) -> None:
            self._stage_to(conn, job_id, name, target, columns)
            self._append(conn, job_id, [event_msg], now)

        self._write(job_id, work)

    def complete_stage(
        self,
        job_id: str,
        name: str,
        *,
        attempt: int,
        result: bytes,
        outputs: Sequence[OutputRecord] = (),
        job_result: gateway_pb2.JobResult | None = None,
        succeed_job: str | None = None,
        **values: Any,
    ) -> JobRecord | None:
        """A stage's success in one transaction: its outputs, SUCCEEDED with the saved result, events.

        `succeed_job=<owner>`: it was the job's last stage, and the job ends SUCCEEDED in the same
        transaction (as `finish` would, with its checks); the job as stored is returned.
        """
        events = [output_event(name, o) for o in outputs]
        events.append(
            gateway_pb2.JobEvent(
                type=gateway_pb2.JOB_EVENT_TYPE_STAGE_RESULT,
                stage=name,
                attempt=attempt,
                stage_state=StageState.SUCCEEDED.proto,
                job_state=JobState.RUNNING.proto,
                result=job_result or gateway_pb2.JobResult(),
            )
        )

        def work(conn: Connection, now: dt.datetime) -> JobRecord | None:
            self._put_outputs(conn, job_id, outputs, now)
            self._stage_to(
                conn,
                job_id,
                name,
                StageState.SUCCEEDED,
                {"attempt": attempt, "result": result, "error": "", "error_code": "", **values},
            )
            self._append(conn, job_id, events, now)
            if succeed_job is None:
                return None
            return self._end(conn, now, job_id, JobState.SUCCEEDED, "", "", False, succeed_job, "")

        return self._write(job_id, work)

    def update_stage(self, job_id: str, name: str, **values: Any) -> None:
        """Changes a stage's columns other than its state (use `set_stage` for that)."""
        if "state" in values:
            raise ValueError("a stage's state changes through set_stage (the transition table)")
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
        return self._write(job_id, lambda conn, now: self._append(conn, job_id, [event_msg], now)[0])

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

    @staticmethod
    def _put_outputs(
        conn: Connection, job_id: str, outputs: Sequence[OutputRecord], now: dt.datetime
    ) -> None:
        if not outputs:
            return
        o = schema.job_outputs.c
        conn.execute(
            schema.job_outputs.delete().where(o.job_id == job_id, o.name.in_([x.name for x in outputs]))
        )
        conn.execute(
            schema.job_outputs.insert(),
            [
                dict(
                    job_id=job_id,
                    name=x.name,
                    uri=x.uri,
                    content_type=x.content_type,
                    size_bytes=x.size_bytes,
                    created_at=now,
                )
                for x in outputs
            ],
        )

    def add_output(self, job_id: str, output: OutputRecord) -> None:
        with self.engine.begin() as conn:
            self._put_outputs(conn, job_id, [output], utcnow())

    def outputs(self, job_id: str) -> list[OutputRecord]:
        o = schema.job_outputs.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.job_outputs).where(o.job_id == job_id).order_by(o.created_at, o.name)
            )
        return [OutputRecord(r.name, r.uri, r.content_type, r.size_bytes) for r in rows]

    def save_pronunciation(self, row: PronunciationRow) -> None:
        """Writes an attempt's row (its scores, when scored); the row made at intake keeps its time."""
        now = utcnow()
        values = row.values()
        values["scored_at"] = now if row.scored else None
        p = schema.pronunciation_results.c
        with self.engine.begin() as conn:
            updated = conn.execute(
                update(schema.pronunciation_results).where(p.job_id == row.job_id).values(**values)
            )
            if updated.rowcount == 0:  # a job accepted before rows were made at intake
                conn.execute(schema.pronunciation_results.insert().values(**values, created_at=now))

    def pronunciation_results(self, *, user_id: str | None = None) -> Iterator[dict[str, Any]]:
        """The scored attempts (the table's rows with scores), oldest first."""
        p = schema.pronunciation_results.c
        query = (
            select(schema.pronunciation_results).where(p.overall_score.is_not(None)).order_by(p.created_at)
        )
        if user_id is not None:
            query = query.where(p.user_id == user_id)
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield _lists(dict(row._mapping))

    def pronunciation_attempts(self, **equal: Any) -> list[dict[str, Any]]:
        """Rows of the `pronunciation_attempts` view (what apps read), filtered by column values."""
        view = schema.pronunciation_attempts
        query = select(view).where(*(view.c[k] == v for k, v in equal.items())).order_by(view.c.created_at)
        with self.engine.connect() as conn:
            return [_lists(dict(row._mapping)) for row in conn.execute(query)]

    # --- named leases -----------------------------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        """Takes (or renews) the lease `name` for `ttl_s`; False while another owner holds it."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=ttl_s)
        lease = schema.leases.c
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(schema.leases)
                .where(lease.name == name, or_(lease.owner == owner, lease.expires_at <= now))
                .values(owner=owner, acquired_at=now, expires_at=expires)
            )
        if taken.rowcount == 1:
            return True
        try:  # never held (or released): the first insert wins, the others hit the primary key
            with self.engine.begin() as conn:
                conn.execute(
                    schema.leases.insert().values(name=name, owner=owner, acquired_at=now, expires_at=expires)
                )
        except IntegrityError:
            return False
        return True

    def release_lease(self, name: str, owner: str) -> None:
        lease = schema.leases.c
        with self.engine.begin() as conn:
            conn.execute(schema.leases.delete().where(lease.name == name, lease.owner == owner))

    def lease_holder(self, name: str) -> str | None:
        """The owner of a live lease, if any."""
        lease = schema.leases.c
        with self.engine.connect() as conn:
            return conn.execute(
                select(lease.owner).where(lease.name == name, lease.expires_at > utcnow())
            ).scalar()

    # --- schedules --------------------------------------------------------------------------------

    @staticmethod
    def _schedule(row: Any) -> ScheduleState:
        return ScheduleState(
            name=row.name,
            pipeline=row.pipeline,
            last_tick_at=_aware(row.last_tick_at) or utcnow(),
            last_job_id=row.last_job_id,
        )

    def schedule_states(self) -> dict[str, ScheduleState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.schedules)).all()
        return {row.name: self._schedule(row) for row in rows}

    def start_schedule(self, name: str, pipeline: str, at: dt.datetime) -> ScheduleState:
        """The schedule's state, created at `at` (ticks before it are not due) when it has none."""
        at = at.astimezone(dt.UTC)  # SQLite keeps no offset: every time in the store is UTC
        s = schema.schedules.c
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.schedules).where(s.name == name)).first()
        if row is not None:
            return self._schedule(row)
        try:  # another replica may create it at the same moment: the primary key keeps the first
            with self.engine.begin() as conn:
                conn.execute(
                    schema.schedules.insert().values(
                        name=name, pipeline=pipeline, last_tick_at=at, last_job_id=None, updated_at=utcnow()
                    )
                )
        except IntegrityError:
            pass
        with self.engine.connect() as conn:
            return self._schedule(conn.execute(select(schema.schedules).where(s.name == name)).one())

    def advance_schedule(self, name: str, through: dt.datetime, job_id: str | None = None) -> bool:
        """Marks the ticks up to `through` handled; never moves back (False when it would)."""
        s = schema.schedules.c
        through = through.astimezone(dt.UTC)
        values: dict[str, Any] = {"last_tick_at": through, "updated_at": utcnow()}
        if job_id is not None:
            values["last_job_id"] = job_id
        with self.engine.begin() as conn:
            result = conn.execute(
                update(schema.schedules).where(s.name == name, s.last_tick_at < through).values(**values)
            )
        return bool(result.rowcount == 1)
