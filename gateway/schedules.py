"""Cron schedules of pipelines: each tick starts one job, once across every gateway replica.

A pipeline may declare `schedules:` (cron expression, time zone, parameters,
catch-up policy). Every replica runs a `ScheduleRunner`, which fires ticks
only while it holds the schedule's named lease in the job store (one replica
decides, and another takes over within the lease's life when it dies), and
each tick's job carries the dedupe key `schedule:<name>@<tick in UTC>`, which
the store keeps unique: even two replicas that both decided to fire a tick
(a stalled holder whose lease ran out meanwhile) make one job. The schedule's
row in `schedules` records the latest tick handled, so a gateway that was down
knows which ticks it missed and treats them by the schedule's policy:

* `skip` (default): ticks older than `grace_s` are not run; on-time ones are;
* `latest`: on-time ticks run, and if none did, the latest missed tick within
  `catch_up_window_s` runs once (a nightly story still comes, late);
* `all`: every missed tick within `catch_up_window_s` runs, oldest first.

A tick's job has no source audio (its source is `schedule:<name>@<tick>`), so
a scheduled pipeline may not read one (checked when pipelines load). Times
come from croniter in the schedule's IANA time zone, so "0 21 * * *" in
Asia/Seoul is 21:00 there whatever the replicas' clocks are set to, daylight
saving included.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from soriflow.errors import SoriflowError
from soriflow.v1 import gateway_pb2

if TYPE_CHECKING:
    from soriflow.gateway.jobs import JobService
    from soriflow.gateway.pipelines import PipelineDef, PipelineRegistry
    from soriflow.gateway.scheduler import Scheduler
    from soriflow.gateway.settings import Settings
    from soriflow.gateway.store import JobStore, ScheduleState

log = logging.getLogger("soriflow.gateway.schedules")

CatchUp = Literal["skip", "latest", "all"]
CATCH_UP_PROTO = {
    "skip": gateway_pb2.SCHEDULE_CATCH_UP_SKIP,
    "latest": gateway_pb2.SCHEDULE_CATCH_UP_LATEST,
    "all": gateway_pb2.SCHEDULE_CATCH_UP_ALL,
}
#: Job metadata of a tick's job: which schedule, and the tick in the schedule's time zone.
SCHEDULE_KEY = "soriflow-schedule"
TICK_KEY = "soriflow-scheduled-for"
#: Most ticks one evaluation starts (the rest of a long catch-up follows in the next ones).
MAX_TICKS_PER_ROUND = 100


def _croniter(expression: str, start: dt.datetime) -> object:
    from croniter import croniter

    return croniter(expression, start)


def _next(iterator: object) -> dt.datetime:
    return cast(dt.datetime, iterator.get_next(dt.datetime))  # type: ignore[attr-defined]


class ScheduleDef(BaseModel):
    """One cron schedule of a pipeline (`schedules:` in its YAML)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(
        "",
        pattern=r"^$|^[a-z][a-z0-9_-]*$",
        description="Unique across pipelines; empty: the pipeline's name (a pipeline's only schedule).",
    )
    cron: str = Field(
        description="Five fields (minute hour day-of-month month day-of-week), or six with seconds last."
    )
    timezone: str = Field("UTC", alias="time_zone", description="IANA time zone the expression is read in.")
    parameters: dict[str, str] = Field(default_factory=dict, description="Parameters of every tick's job.")
    enabled: bool = Field(
        True, description="False: fired only where SORIFLOW_GATEWAY_ENABLED_SCHEDULES names it."
    )
    catch_up: CatchUp = "skip"
    catch_up_window_s: float = Field(86400.0, gt=0, description="How old a missed tick may be and still run.")
    grace_s: float = Field(60.0, gt=0, description="How late a tick may start and still count as on time.")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from croniter import croniter

        value = " ".join(value.split())
        if len(value.split()) not in (5, 6) or not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a cron expression: five fields (minute hour day-of-month month "
                "day-of-week, e.g. '0 21 * * *'), or six with seconds last"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. UTC, Asia/Seoul)") from None
        return value

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def next_tick(self, after: dt.datetime) -> dt.datetime:
        """The first tick strictly after `after` (in the schedule's zone)."""
        return _next(_croniter(self.cron, after.astimezone(self.zone)))


@dataclass(frozen=True)
class TickPlan:
    """What one evaluation does: the ticks to run now, and how far the schedule is then handled."""

    fire: list[dt.datetime]
    #: The latest tick handled after this round (None: no tick was due).
    through: dt.datetime | None
    #: The first due tick the policy does not run (None: none missed).
    missed_from: dt.datetime | None = None


def _ticks(schedule: ScheduleDef, after: dt.datetime, until: dt.datetime, limit: int) -> list[dt.datetime]:
    """Ticks in (`after`, `until`], oldest first, at most `limit + 1` of them."""
    iterator = _croniter(schedule.cron, after.astimezone(schedule.zone))
    found: list[dt.datetime] = []
    while len(found) <= limit and (tick := _next(iterator)) <= until:
        found.append(tick)
    return found


def latest_tick(schedule: ScheduleDef, now: dt.datetime) -> dt.datetime:
    """The latest tick at or before `now`."""
    iterator = _croniter(schedule.cron, (now + dt.timedelta(microseconds=1)).astimezone(schedule.zone))
    return cast(dt.datetime, iterator.get_prev(dt.datetime))  # type: ignore[attr-defined]


def plan_ticks(
    schedule: ScheduleDef, last: dt.datetime, now: dt.datetime, *, limit: int = MAX_TICKS_PER_ROUND
) -> TickPlan:
    """The ticks in (`last`, `now`] and what `schedule`'s catch-up policy does with them.

    Only the ticks a policy may run are enumerated (those within the grace period, or the
    catch-up window for `all`; `latest` looks back once), so a minutely schedule down for a
    month costs no more than one down for a minute. At most `limit` ticks run per round; the
    rest of a long catch-up is the next round's.
    """
    latest = latest_tick(schedule, now)
    if latest <= last:
        return TickPlan([], None)
    grace = dt.timedelta(seconds=schedule.grace_s)
    window = dt.timedelta(seconds=max(schedule.grace_s, schedule.catch_up_window_s))
    if schedule.catch_up == "all":
        fire = _ticks(schedule, max(last, now - window), now, limit)
    else:
        fire = _ticks(schedule, max(last, now - grace), now, limit)  # on time
        if not fire and schedule.catch_up == "latest" and now - latest <= window:
            fire = [latest]
    through = latest
    if len(fire) > limit:
        fire = fire[:limit]
        through = fire[-1]
    first_due = _ticks(schedule, last, now, 0)[0]
    missed = first_due if first_due <= through and (not fire or first_due < fire[0]) else None
    return TickPlan(fire, through, missed)


def tick_source(name: str, tick: dt.datetime) -> str:
    """A tick's job's source: `schedule:<name>@<tick in the schedule's zone, ISO 8601>`."""
    return f"schedule:{name}@{tick.isoformat()}"


def tick_dedupe_key(name: str, tick: dt.datetime) -> str:
    """The tick's identity in the job store (unique): the same tick, whoever fires it, is one job."""
    return f"schedule:{name}@{tick.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def is_enabled(schedule: ScheduleDef, settings: Settings) -> bool:
    """Whether this gateway fires the schedule (the YAML's `enabled`, or the settings naming it)."""
    if not settings.gateway_schedules_enabled:
        return False
    return schedule.enabled or schedule.name in settings.gateway_enabled_schedules


def schedule_messages(
    pipeline: PipelineDef,
    states: dict[str, ScheduleState],
    settings: Settings,
    now: dt.datetime,
) -> list[gateway_pb2.PipelineSchedule]:
    """The pipeline's schedules for ListPipelines: definition, next run, last tick handled."""
    out = []
    for schedule in pipeline.schedules:
        enabled = is_enabled(schedule, settings)
        message = gateway_pb2.PipelineSchedule(
            name=schedule.name,
            cron=schedule.cron,
            time_zone=schedule.timezone,
            parameters=schedule.parameters,
            enabled=enabled,
            catch_up=CATCH_UP_PROTO[schedule.catch_up],
            catch_up_window_s=int(schedule.catch_up_window_s),
        )
        if enabled:
            message.next_run_time.FromDatetime(schedule.next_tick(now).astimezone(dt.UTC))
        state = states.get(schedule.name)
        if state is not None:
            message.last_tick_time.FromDatetime(state.last_tick_at.astimezone(dt.UTC))
            message.last_job_id = state.last_job_id or ""
        out.append(message)
    return out


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ScheduleRunner:
    """Fires the enabled schedules' ticks from this replica while it holds their leases."""

    def __init__(
        self,
        *,
        store: JobStore,
        jobs: JobService,
        scheduler: Scheduler,
        registry: PipelineRegistry,
        settings: Settings,
        owner: str,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.scheduler = scheduler
        self.registry = registry
        self.settings = settings
        self.owner = owner
        self.clock = clock
        self.poll_s = settings.gateway_schedule_poll_s
        # A holder renews at every wake-up (at most poll_s apart); the lease outlives three of them.
        self.lease_s = 3 * self.poll_s
        self.held: set[str] = set()

    def enabled(self) -> list[tuple[ScheduleDef, PipelineDef]]:
        return [(s, p) for s, p in self.registry.schedules() if is_enabled(s, self.settings)]

    @staticmethod
    def lease_name(schedule: ScheduleDef) -> str:
        return f"schedule:{schedule.name}"

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: fire what is due, sleep until the next tick (or `poll_s`), again."""
        schedules = self.enabled()
        if not schedules:
            return
        log.info(
            "schedules %s: firing from %s",
            ", ".join(f"{s.name} ({s.cron} {s.timezone})" for s, _ in schedules),
            self.owner,
        )
        try:
            while not stop.is_set():
                try:
                    wait_s = await self.round(schedules)
                except Exception:
                    log.exception("schedules: a round failed; trying again")
                    wait_s = self.poll_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait_s)
        finally:
            await self.release()

    async def round(self, schedules: Iterable[tuple[ScheduleDef, PipelineDef]]) -> float:
        """One evaluation of every schedule; returns how long to sleep before the next."""
        wake = self.poll_s
        for schedule, pipeline in schedules:
            name = self.lease_name(schedule)
            if await asyncio.to_thread(self.store.acquire_lease, name, self.owner, self.lease_s):
                if schedule.name not in self.held:
                    log.info("schedule %s: this replica (%s) fires it now", schedule.name, self.owner)
                self.held.add(schedule.name)
                await self.evaluate(schedule, pipeline)
            else:
                self.held.discard(schedule.name)
            now = self.clock()
            wake = min(wake, (schedule.next_tick(now) - now).total_seconds())
        return max(0.05, wake)

    async def evaluate(self, schedule: ScheduleDef, pipeline: PipelineDef) -> list[str]:
        """Fires the due ticks the policy runs; returns the ids of the jobs this call created."""
        now = self.clock()
        state = await asyncio.to_thread(self.store.start_schedule, schedule.name, pipeline.name, now)
        plan = plan_ticks(schedule, state.last_tick_at, now)
        if plan.missed_from is not None:
            log.warning(
                "schedule %s: ticks missed since %s (no gateway ran it) %s (catch_up: %s)",
                schedule.name,
                plan.missed_from.isoformat(),
                f"before {plan.fire[0].isoformat()} are not run" if plan.fire else "are not run",
                schedule.catch_up,
            )
        created: list[str] = []
        last_job: str | None = None
        for tick in plan.fire:
            try:
                accepted = await self.jobs.accept_tick(schedule, pipeline, tick)
            except SoriflowError as exc:  # the store refused: leave the tick for the next round
                log.error("schedule %s: tick %s not recorded: %s", schedule.name, tick, exc.message)
                return created
            last_job = accepted.job.id
            if accepted.created:
                created.append(accepted.job.id)
                if accepted.pipeline is not None:
                    log.info("schedule %s: tick %s runs as job %s", schedule.name, tick, accepted.job.id)
                    self.scheduler.submit(accepted.job, accepted.pipeline)
        if plan.through is not None:
            await asyncio.to_thread(self.store.advance_schedule, schedule.name, plan.through, last_job)
        return created

    async def release(self) -> None:
        """Hands the leases back (shutdown): another replica fires the schedules at once."""
        for name in list(self.held):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release_lease, f"schedule:{name}", self.owner)
        self.held.clear()
