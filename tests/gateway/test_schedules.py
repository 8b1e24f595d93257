"""Cron schedules: tick planning and catch-up policies, definitions, the store's record, restarts.

The policies are checked on a clock the test sets (`ScheduleRunner(clock=...)`) against a real
job store, so "the gateway was down from Monday to Thursday" takes no time; replicas firing
against one store in real time are in `test_generation_pipelines.py`.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soriflow.errors import InvalidArgument
from soriflow.gateway.jobs import JobService
from soriflow.gateway.pipelines import PipelineDef, PipelineRegistry, parse_pipeline
from soriflow.gateway.schedules import (
    SCHEDULE_KEY,
    TICK_KEY,
    ScheduleDef,
    ScheduleRunner,
    plan_ticks,
    schedule_messages,
    tick_dedupe_key,
)
from soriflow.gateway.settings import Settings
from soriflow.gateway.store import JobStore
from soriflow.server import ThreadedServer
from soriflow.v1 import gateway_pb2
from tests.gateway.conftest import AwsWorld, gateway_settings

SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")
NIGHTLY = ScheduleDef(name="story", cron="0 21 * * *", time_zone="Asia/Seoul", catch_up_window_s=3 * 3600)


def seoul(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=SEOUL)


def policy(catch_up: str, **changes: Any) -> ScheduleDef:
    return NIGHTLY.model_copy(update={"catch_up": catch_up, **changes})


# --- planning ---------------------------------------------------------------------------------------


def test_a_tick_on_time_runs_under_every_policy() -> None:
    for catch_up in ("skip", "latest", "all"):
        plan = plan_ticks(policy(catch_up), seoul(1, 20), seoul(1, 21, 0, 20))
        assert plan.fire == [seoul(1, 21)], catch_up
        assert plan.through == seoul(1, 21)
        assert plan.missed_from is None
    # Before the tick: nothing is due, nothing moves.
    assert plan_ticks(NIGHTLY, seoul(1, 20), seoul(1, 20, 59, 59)).through is None
    # Handled already (another replica, or before a restart): not again.
    assert plan_ticks(NIGHTLY, seoul(1, 21), seoul(1, 21, 0, 30)).fire == []


def test_a_tick_missed_by_half_an_hour() -> None:
    last, now = seoul(1, 20), seoul(1, 21, 30)
    skip = plan_ticks(policy("skip"), last, now)
    assert (skip.fire, skip.through, skip.missed_from) == ([], seoul(1, 21), seoul(1, 21))
    latest = plan_ticks(policy("latest"), last, now)
    assert (latest.fire, latest.missed_from) == ([seoul(1, 21)], None)  # the story comes, late
    assert plan_ticks(policy("all"), last, now).fire == [seoul(1, 21)]
    # Older than the catch-up window (3 h): not even `latest` runs it.
    assert plan_ticks(policy("latest"), last, seoul(2, 1)).fire == []
    assert plan_ticks(policy("all"), last, seoul(2, 1)).fire == []


def test_days_missed() -> None:
    last, now = seoul(1, 20), seoul(4, 21, 0, 10)  # down from the 1st to the 4th, back at 21:00:10
    for catch_up in ("skip", "latest"):  # tonight's tick is on time: it runs, the missed ones do not
        plan = plan_ticks(policy(catch_up), last, now)
        assert (plan.fire, plan.missed_from) == ([seoul(4, 21)], seoul(1, 21)), catch_up
    # `all` runs what its window reaches, oldest first.
    assert plan_ticks(policy("all"), last, now).fire == [seoul(4, 21)]
    every = plan_ticks(policy("all", catch_up_window_s=5 * 86400), last, now)
    assert every.fire == [seoul(day, 21) for day in (1, 2, 3, 4)]
    # Back at 23:00 with `latest`: the night's story, once.
    assert plan_ticks(policy("latest"), last, seoul(4, 23)).fire == [seoul(4, 21)]


def test_a_long_catch_up_is_spread_over_rounds() -> None:
    often = ScheduleDef(name="often", cron="* * * * * *", catch_up="all", catch_up_window_s=3600)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    now = start + dt.timedelta(seconds=250)
    first = plan_ticks(often, start, now, limit=100)
    assert len(first.fire) == 100
    assert first.through == first.fire[-1]
    second = plan_ticks(often, first.through or start, now, limit=100)
    assert second.fire[0] == first.fire[-1] + dt.timedelta(seconds=1)
    third = plan_ticks(often, second.through or start, now, limit=100)
    assert len(first.fire + second.fire + third.fire) == 250
    assert third.through == now


def test_time_zones_and_daylight_saving() -> None:
    # 21:00 in Seoul is 12:00 UTC, whatever zone the replicas' clocks use.
    assert NIGHTLY.next_tick(dt.datetime(2026, 11, 1, 11, 59, tzinfo=dt.UTC)) == seoul(1, 21)
    assert seoul(1, 21).astimezone(dt.UTC).hour == 12
    # New York springs forward on 2026-03-08: 02:30 does not exist that night; the tick is not lost.
    york = zoneinfo.ZoneInfo("America/New_York")
    early = ScheduleDef(name="early", cron="30 2 * * *", time_zone="America/New_York")
    ticks = [early.next_tick(dt.datetime(2026, 3, 7, 12, tzinfo=york))]
    ticks.append(early.next_tick(ticks[-1]))
    assert [t.date().isoformat() for t in ticks] == ["2026-03-08", "2026-03-09"]
    # The tick's identity is its instant, however it is written.
    assert tick_dedupe_key("story", seoul(1, 21)) == tick_dedupe_key(
        "story", dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    )
    assert tick_dedupe_key("story", seoul(1, 21)) == "schedule:story@2026-11-01T12:00:00Z"


# --- definitions --------------------------------------------------------------------------------------

SCHEDULED = """
name: tales
parameters:
  topic: {default: "a fox"}
schedules:
  - cron: "0 21 * * *"
    time_zone: Asia/Seoul
    catch_up: skip
    catch_up_window_s: 86400
    parameters: {topic: "an owl"}
stages:
  - name: story
    uses: summarizer.generate
    with: {prompt: "A story about {topic}", outputs: [story.txt]}
"""


def test_schedule_definitions_are_checked_when_pipelines_load() -> None:
    tales = parse_pipeline(SCHEDULED, "test")
    assert [s.name for s in tales.schedules] == ["tales"]  # a lone schedule takes the pipeline's name
    assert tales.schedules[0].catch_up == "skip"
    assert tales.schedules[0].grace_s == 60

    def refused(text: str, words: str) -> None:
        with pytest.raises(InvalidArgument) as caught:
            parse_pipeline(text, "test")
        assert words in caught.value.message, caught.value.message

    refused(SCHEDULED.replace("0 21 * * *", "every night"), "not a cron expression")
    refused(SCHEDULED.replace("0 21 * * *", "0 21 * *"), "not a cron expression")
    refused(SCHEDULED.replace("Asia/Seoul", "Mars/Olympus"), "not an IANA time zone")
    refused(SCHEDULED.replace('{topic: "an owl"}', '{mood: "sleepy"}'), "undeclared parameters ['mood']")
    refused(SCHEDULED.replace("catch_up: skip", "catch_up: sometimes"), "catch_up")
    two = SCHEDULED.replace("schedules:\n", 'schedules:\n  - cron: "0 8 * * *"\n')
    refused(two, "names each of them")
    # A tick's job has no audio: a scheduled pipeline may not read its source.
    transcribe = SCHEDULED.replace(
        "  - name: story\n",
        "  - name: stt\n    uses: stt.recognize\n    with: {audio: source}\n  - name: story\n",
    )
    refused(transcribe, "stages ['stt'] read it")
    copy = parse_pipeline(SCHEDULED.replace("name: tales", "name: fables"), "test")
    copy.schedules[0].name = "tales"
    with pytest.raises(
        InvalidArgument, match="schedule 'tales' is declared by pipelines 'tales' and 'fables'"
    ):
        PipelineRegistry([tales, copy])


def test_the_settings_decide_which_schedules_fire() -> None:
    story = PipelineRegistry.load().get("nightly-story")
    now = dt.datetime(2026, 11, 1, 11, 0, tzinfo=dt.UTC)
    [off] = schedule_messages(story, {}, Settings(), now)
    assert (off.enabled, off.HasField("next_run_time")) == (False, False)  # the example costs nothing
    on = schedule_messages(story, {}, Settings(gateway_enabled_schedules=["nightly-story"]), now)[0]
    assert on.enabled
    assert on.next_run_time.ToDatetime(tzinfo=dt.UTC) == seoul(1, 21)
    assert (on.catch_up, on.catch_up_window_s, on.time_zone) == (
        gateway_pb2.SCHEDULE_CATCH_UP_LATEST,
        10800,
        "Asia/Seoul",
    )
    stopped = Settings(gateway_enabled_schedules=["nightly-story"], gateway_schedules_enabled=False)
    assert not schedule_messages(story, {}, stopped, now)[0].enabled


# --- the store's record and a restart on a clock the test sets ------------------------------------------


class Recorder:
    """Stands in for the gateway's job scheduler: notes which jobs it was given to run."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job: Any, pipeline: Any = None) -> None:
        self.submitted.append(job.id)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def runner_for(
    store: JobStore, pipeline: PipelineDef, clock: Clock, owner: str
) -> tuple[ScheduleRunner, Recorder]:
    registry = PipelineRegistry([pipeline])
    settings = Settings()
    jobs = JobService(
        store=store,
        objects=None,  # type: ignore[arg-type]  # a tick reads no object
        registry=registry,
        settings=settings,
        submissions_uri="s3://unused/submissions/",
    )
    recorder = Recorder()
    runner = ScheduleRunner(
        store=store,
        jobs=jobs,
        scheduler=recorder,  # type: ignore[arg-type]
        registry=registry,
        settings=settings,
        owner=owner,
        clock=clock,
    )
    return runner, recorder


@pytest.mark.parametrize(
    ("catch_up", "window_days", "expected"),
    [
        ("skip", 1, ["04"]),  # the missed nights are not run; tonight's is
        ("latest", 1, ["03", "04"]),  # last night's, late, once; then tonight's on time
        ("all", 5, ["01", "02", "03", "04"]),  # every missed night, oldest first
    ],
)
async def test_a_restart_after_missed_ticks_follows_the_policy(
    tmp_path: Path, catch_up: str, window_days: int, expected: list[str]
) -> None:
    text = SCHEDULED.replace("catch_up: skip", f"catch_up: {catch_up}").replace(
        "catch_up_window_s: 86400", f"catch_up_window_s: {window_days * 86400}"
    )
    pipeline = parse_pipeline(text, "test")
    [schedule] = pipeline.schedules
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    clock = Clock(seoul(1, 20))
    first, ran_first = runner_for(store, pipeline, clock, "replica-1")
    assert await first.evaluate(schedule, pipeline) == []  # first sight: later ticks are due
    # The gateway stops at 20:00 on the 1st; it comes back on the 3rd at 22:00 ...
    clock.now = seoul(3, 22)
    again, ran_again = runner_for(store, pipeline, clock, "replica-1 restarted")
    created = await again.evaluate(schedule, pipeline)
    clock.now = seoul(4, 21, 0, 5)  # ... and runs on to the 4th's tick
    created += await again.evaluate(schedule, pipeline)
    created += await again.evaluate(schedule, pipeline)  # a second look fires nothing twice
    jobs = [store.require_job(job_id) for job_id in created]
    nights = [job.metadata[TICK_KEY][8:10] for job in jobs]
    assert nights == expected
    assert ran_again.submitted == created
    assert ran_first.submitted == []
    for job in jobs:
        assert (job.origin, job.state, job.pipeline) == ("schedule", "QUEUED", "tales")
        assert job.metadata[SCHEDULE_KEY] == "tales"
        assert job.source_uri == f"schedule:tales@{job.metadata[TICK_KEY]}"
        assert job.parameters == {"topic": "an owl"}  # the schedule's, over the pipeline's default
    state = store.schedule_states()["tales"]
    assert state.last_tick_at == seoul(4, 21)
    assert state.last_job_id == created[-1]
    # Another replica (or the same one after a crash before it recorded the tick) firing the same
    # tick finds the job: the tick's dedupe key is unique in the store.
    other, _ = runner_for(store, pipeline, clock, "replica-2")
    accepted = await other.jobs.accept_tick(schedule, pipeline, seoul(4, 21))
    assert (accepted.created, accepted.job.id) == (False, created[-1])
    store.close()


def test_the_schedule_record_only_moves_forward(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    first = store.start_schedule("tales", "tales", seoul(1, 20))
    assert store.start_schedule("tales", "tales", seoul(2, 20)).last_tick_at == first.last_tick_at
    assert store.advance_schedule("tales", seoul(1, 21), "job-1")
    assert not store.advance_schedule("tales", seoul(1, 21))  # a slower replica's stale write
    assert not store.advance_schedule("tales", seoul(1, 12))
    state = store.schedule_states()["tales"]
    assert (state.last_tick_at, state.last_job_id) == (seoul(1, 21), "job-1")
    store.close()


# --- `soriflow schedules` against a running gateway -----------------------------------------------------


@pytest.mark.slow
def test_soriflow_schedules_lists_each_with_its_next_run(
    aws: AwsWorld, tmp_path: Path, start_gateway: Callable[..., ThreadedServer]
) -> None:
    gateway = start_gateway(
        gateway_settings(aws, tmp_path, gateway_queue_url=None, gateway_enabled_schedules=["nightly-story"])
    )
    env = os.environ | {"SORIFLOW_GATEWAY_ADDRESS": gateway.address, "COLUMNS": "250"}
    listed = subprocess.run(
        [sys.executable, "-m", "soriflow.cli.main", "schedules"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if "nightly-story" in line]
    expected = NIGHTLY.model_copy(update={"name": "nightly-story"}).next_tick(dt.datetime.now(dt.UTC))
    assert "0 21 * * *" in row
    assert "Asia/Seoul" in row
    assert "latest (3h)" in row
    assert f"{expected:%Y-%m-%d} 21:00:00 KST" in row  # the next run, in the schedule's zone
