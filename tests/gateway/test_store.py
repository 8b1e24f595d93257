"""The job store on SQLite and on the real PostgreSQL: dedupe, leases, events, pages, results."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from soriflow.errors import InvalidArgument, NotFound
from soriflow.gateway.states import IllegalTransition
from soriflow.gateway.store import JobStore, NotHeld, OutputRecord, PronunciationRow
from soriflow.gateway.store.migrations import current, head, upgrade
from soriflow.v1 import gateway_pb2


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        job_store = JobStore(url)
    else:
        url = request.getfixturevalue("postgres_database")
        job_store = JobStore(url)
        with job_store.engine.begin() as conn:  # the database is shared by the session: start each test empty
            conn.exec_driver_sql("TRUNCATE jobs CASCADE")
    yield job_store
    job_store.close()


def new_job(store: JobStore, key: str | None = None, **kw: object) -> str:
    job, created = store.create_job(
        pipeline=str(kw.get("pipeline", "transcribe")),
        source_uri=str(kw.get("source_uri", "s3://in/a.wav")),
        origin="sqs",
        metadata=kw.get("metadata", {}),
        parameters={},
        dedupe_key=key,
    )  # type: ignore[arg-type]
    assert created
    return job.id


def test_migrations_are_recorded_and_idempotent(store: JobStore) -> None:
    assert current(store.engine) == head()
    assert upgrade(store.engine) == (head(), head())


def test_dedupe_key_finds_the_existing_job(store: JobStore) -> None:
    first, created = store.create_job(
        pipeline="transcribe",
        source_uri="s3://in/a.wav",
        origin="sqs",
        metadata={"user": "김"},
        parameters={},
        dedupe_key="s3://in/a.wav#etag1",
    )
    again, created_again = store.create_job(
        pipeline="transcribe",
        source_uri="s3://in/a.wav",
        origin="sqs",
        metadata={},
        parameters={},
        dedupe_key="s3://in/a.wav#etag1",
    )
    assert created
    assert not created_again
    assert again.id == first.id
    assert again.metadata == {"user": "김"}
    assert store.events_after(first.id, 0)[0].job_state == gateway_pb2.JOB_STATE_QUEUED


def test_claims_are_exclusive_until_the_lease_expires(store: JobStore) -> None:
    job_id = new_job(store)
    assert store.claim(job_id, "worker-a", lease_s=0.5)
    assert not store.claim(job_id, "worker-b", lease_s=10)
    assert store.renew_lease(job_id, "worker-a", lease_s=0.5)
    assert not store.renew_lease(job_id, "worker-b", lease_s=0.5)
    time.sleep(0.7)
    assert store.claim(job_id, "worker-b", lease_s=10)  # the crashed worker's job is taken over
    assert not store.renew_lease(job_id, "worker-a", lease_s=10)
    assert store.require_job(job_id).runs == 2


def test_finished_jobs_are_claimed_again_only_when_retryable(store: JobStore) -> None:
    done, failed = new_job(store), new_job(store)
    for job_id in (done, failed):
        assert store.claim(job_id, "w", 10)
    store.finish(done, "SUCCEEDED")
    store.finish(failed, "FAILED", error="stt: UNAVAILABLE", error_code="UNAVAILABLE", retryable=True)
    assert not store.claim(done, "w", 10)
    assert store.claim(failed, "w", 10)
    job = store.require_job(failed)
    assert (job.state, job.error, job.runs) == ("RUNNING", "", 2)


def test_cancel_marks_queued_jobs_and_stops_renewals(store: JobStore) -> None:
    queued, running = new_job(store), new_job(store)
    assert store.request_cancel(queued).state == "CANCELLED"
    assert store.claim(running, "w", 10)
    store.request_cancel(running)
    assert not store.renew_lease(running, "w", 10)
    assert not store.claim(queued, "w", 10)


def test_cancel_ends_jobs_whose_worker_is_gone(store: JobStore) -> None:
    dead, alive, later = new_job(store), new_job(store), new_job(store)
    assert store.claim(dead, "crashed", lease_s=0.2)
    assert store.claim(alive, "w", lease_s=30)
    assert store.claim(later, "crashing", lease_s=2.0)  # long enough for the checks below on a busy machine
    time.sleep(0.3)
    job = store.request_cancel(dead)  # nobody renews its lease: cancelled at once
    assert (job.state, job.error_code, job.lease_owner) == ("CANCELLED", "CANCELLED", None)
    assert store.request_cancel(alive).state == "RUNNING"  # its worker sees the request and stops it
    assert store.request_cancel(later).state == "RUNNING"  # its lease is still live
    assert store.cancel_abandoned() == []
    time.sleep(1.8)
    assert [j.id for j in store.cancel_abandoned()] == [later]  # ...until the lease runs out
    assert store.require_job(later).state == "CANCELLED"
    assert store.require_job(alive).state == "RUNNING"
    assert not store.claim(later, "w", 10)


def test_orphans_sqs_jobs_only_after_the_message_had_its_chance(store: JobStore) -> None:
    sqs_job = new_job(store)  # origin sqs
    assert store.claim(sqs_job, "crashed", lease_s=0.2)
    time.sleep(0.3)
    assert [j.id for j in store.orphaned_jobs(origin="sqs")] == [sqs_job]
    assert store.orphaned_jobs(origin="sqs", stale_s=30) == []  # its message brings it back first
    queued = new_job(store)
    assert queued not in [j.id for j in store.orphaned_jobs(origin="sqs")]  # queued: its message runs it


def test_events_are_numbered_in_order(store: JobStore) -> None:
    job_id = new_job(store)
    for stage in ("stt", "summarize"):
        store.append_event(
            job_id, gateway_pb2.JobEvent(type=gateway_pb2.JOB_EVENT_TYPE_STAGE_STATE, stage=stage)
        )
    events = store.events_after(job_id, 0)
    assert [e.sequence for e in events] == [1, 2, 3]
    assert [e.stage for e in store.events_after(job_id, 1)] == ["stt", "summarize"]
    assert events[1].time.ToDatetime(dt.UTC) <= dt.datetime.now(dt.UTC)


def test_list_is_newest_first_filtered_and_paginated(store: JobStore) -> None:
    ids = [
        new_job(
            store,
            pipeline="transcribe" if i % 2 else "pronunciation",
            source_uri=f"s3://in/{'users' if i < 5 else 'calls'}/{i}.wav",
            metadata={"user": "kim" if i % 3 == 0 else "lee"},
        )
        for i in range(12)
    ]
    seen: list[str] = []
    token = ""
    while True:
        page, token = store.list_jobs(page_size=5, page_token=token)
        seen += [j.id for j in page]
        if not token:
            break
    assert seen == list(reversed(ids))
    transcribe, _ = store.list_jobs(page_size=100, pipeline="transcribe")
    assert len(transcribe) == 6
    users, _ = store.list_jobs(page_size=100, source_uri_prefix="s3://in/users/")
    assert len(users) == 5
    kims, token = store.list_jobs(page_size=2, metadata={"user": "kim"})
    rest, _ = store.list_jobs(page_size=10, page_token=token, metadata={"user": "kim"})
    assert [j.id for j in kims + rest] == [i for i in reversed(ids) if ids.index(i) % 3 == 0]
    with pytest.raises(InvalidArgument, match="page_token"):
        store.list_jobs(page_token="garbage!")


def test_stages_outputs_and_pronunciation_rows(store: JobStore) -> None:
    job_id = new_job(store)
    store.init_stages(job_id, [("stt", "stt", False), ("reply", "tts", True)])
    store.init_stages(job_id, [("stt", "stt", False), ("reply", "tts", True)])  # idempotent on re-runs
    store.set_stage(job_id, "stt", "RUNNING", attempt=2)
    store.complete_stage(job_id, "stt", attempt=2, result=b"\x01\x02")
    stages = store.stages(job_id)
    assert [(s.name, s.state, s.attempt, s.optional) for s in stages] == [
        ("stt", "SUCCEEDED", 2, False),
        ("reply", "PENDING", 0, True),
    ]
    assert stages[0].result == b"\x01\x02"
    store.add_output(job_id, OutputRecord("transcript.json", "s3://out/x", "application/json", 10))
    store.add_output(job_id, OutputRecord("transcript.json", "s3://out/x", "application/json", 12))
    assert [(o.name, o.size_bytes) for o in store.outputs(job_id)] == [("transcript.json", 12)]
    row = PronunciationRow(
        job_id=job_id,
        source_uri="s3://in/users/kim/a.wav",
        overall_score=81.5,
        accuracy_score=90,
        fluency_score=70,
        completeness_score=100,
        prosody_score=60,
        speed_ratio=0.8,
        pause_similarity=0.7,
        pitch_similarity=0.6,
        user_id="kim",
        mispronounced_words=["toy"],
        feedback=["'toy' sounded unclear"],
    )
    store.save_pronunciation(row)
    rows = list(store.pronunciation_results(user_id="kim"))
    assert rows[0]["overall_score"] == pytest.approx(81.5)
    assert rows[0]["mispronounced_words"] == ["toy"]


def test_an_attempt_is_visible_to_apps_from_its_acceptance_to_its_end(store: JobStore) -> None:
    """The row made with the job shows its state; scoring fills it in; a failure shows with its reason."""
    attempt = PronunciationRow(
        job_id="",
        source_uri="s3://in/users/7/book/level_1/Toy_Store/audio_line_2.wav",
        user_id="7",
        content_type_id=12,
        object_id="345",
        audio_file="users/7/book/level_1/Toy_Store/audio_line_2.wav",
    )
    job, created = store.create_job(
        pipeline="pronunciation",
        source_uri=attempt.source_uri,
        origin="sqs",
        metadata={},
        parameters={},
        dedupe_key="k1",
        attempt=attempt,
    )
    assert created
    again, created = store.create_job(
        pipeline="pronunciation",
        source_uri="x",
        origin="sqs",
        metadata={},
        parameters={},
        dedupe_key="k1",
        attempt=attempt,
    )
    assert (again.id, created) == (job.id, False)
    [row] = store.pronunciation_attempts(content_type_id=12, object_id="345")
    assert (row["job_id"], row["status"], row["overall_score"], row["scored_at"]) == (
        job.id,
        "QUEUED",
        None,
        None,
    )
    assert list(store.pronunciation_results()) == [], "not scored yet"
    assert store.claim(job.id, "w", 30)
    attempt.job_id = job.id
    attempt.overall_score, attempt.mispronounced_ratio = 55.0, 0.25
    store.save_pronunciation(attempt)
    [row] = store.pronunciation_attempts(user_id="7")
    assert (row["status"], row["overall_score"], row["mispronounced_ratio"]) == ("RUNNING", 55.0, 0.25)
    assert row["created_at"] <= row["scored_at"]
    store.finish(job.id, "FAILED", error="stage x failed", error_code="UNAVAILABLE", owner="w")
    [row] = store.pronunciation_attempts(job_id=job.id)
    assert (row["status"], row["error"], row["error_code"]) == ("FAILED", "stage x failed", "UNAVAILABLE")


def test_the_store_enforces_the_transition_table(store: JobStore) -> None:
    queued, running = new_job(store), new_job(store)
    with pytest.raises(IllegalTransition, match="is QUEUED: it cannot become SUCCEEDED"):
        store.finish(queued, "SUCCEEDED")
    assert store.claim(running, "w", 30)
    with pytest.raises(NotHeld, match="held by w, not x"):
        store.finish(running, "FAILED", owner="x")
    done = store.finish(running, "SUCCEEDED", owner="w")
    assert (done.state, done.lease_owner) == ("SUCCEEDED", None)
    with pytest.raises(IllegalTransition, match="is SUCCEEDED: it cannot become FAILED"):
        store.finish(running, "FAILED")
    assert not store.claim(running, "w", 30), "a succeeded job is never run again"
    assert store.require_job(running).state == "SUCCEEDED", "refused transitions change nothing"
    with pytest.raises(IllegalTransition, match="a new job is new: it cannot become RUNNING"):
        store.create_job(
            pipeline="p",
            source_uri="s3://in/x.wav",
            origin="api",
            metadata={},
            parameters={},
            state="RUNNING",
        )
    store.init_stages(queued, [("stt", "stt", False)])
    with pytest.raises(IllegalTransition, match="is PENDING: it cannot become SUCCEEDED"):
        store.complete_stage(queued, "stt", attempt=1, result=b"")
    store.set_stage(queued, "stt", "RUNNING", attempt=1)
    store.complete_stage(queued, "stt", attempt=1, result=b"")
    with pytest.raises(IllegalTransition, match="is SUCCEEDED: it cannot become RUNNING"):
        store.set_stage(queued, "stt", "RUNNING", attempt=2)
    with pytest.raises(ValueError, match="set_stage"):
        store.update_stage(queued, "stt", state="FAILED")


def test_each_state_change_is_written_with_its_event(store: JobStore) -> None:
    job_id = new_job(store)
    claim = store.claim(job_id, "w", 30, stages=[("stt", "stt", False)])
    assert claim is not None
    assert [(s.name, s.state) for s in claim.stages] == [("stt", "PENDING")]
    store.set_stage(job_id, "stt", "RUNNING", attempt=1)
    output = OutputRecord("transcript.txt", "s3://out/t.txt", "text/plain", 3)
    store.complete_stage(job_id, "stt", attempt=1, result=b"r", outputs=[output])
    store.finish(job_id, "SUCCEEDED", owner="w", message="all done")
    kinds = [
        (e.sequence, gateway_pb2.JobEventType.Name(e.type), e.job_state, e.stage_state, e.message)
        for e in store.events_after(job_id, 0)
    ]
    queued, running = gateway_pb2.JOB_STATE_QUEUED, gateway_pb2.JOB_STATE_RUNNING
    succeeded = gateway_pb2.JOB_STATE_SUCCEEDED
    assert kinds == [
        (1, "JOB_EVENT_TYPE_JOB_STATE", queued, 0, "job accepted for pipeline transcribe"),
        (2, "JOB_EVENT_TYPE_JOB_STATE", running, 0, "run 1 on w"),
        (3, "JOB_EVENT_TYPE_STAGE_STATE", running, gateway_pb2.STAGE_STATE_RUNNING, ""),
        (4, "JOB_EVENT_TYPE_OUTPUT", running, 0, ""),
        (5, "JOB_EVENT_TYPE_STAGE_RESULT", running, gateway_pb2.STAGE_STATE_SUCCEEDED, ""),
        (6, "JOB_EVENT_TYPE_JOB_STATE", succeeded, 0, "all done"),
    ]
    assert [o.name for o in store.outputs(job_id)] == ["transcript.txt"]


def test_the_last_stage_and_the_job_succeed_in_one_write(store: JobStore) -> None:
    job_id = new_job(store)
    assert store.claim(job_id, "w", 30, stages=[("stt", "stt", False)])
    store.set_stage(job_id, "stt", "RUNNING", attempt=1)
    with pytest.raises(NotHeld):  # not ours to end: nothing of it is written
        store.complete_stage(job_id, "stt", attempt=1, result=b"r", succeed_job="someone-else")
    assert store.stages(job_id)[0].state == "RUNNING"
    ended = store.complete_stage(job_id, "stt", attempt=1, result=b"r", succeed_job="w")
    assert ended is not None
    assert (ended.state, ended.lease_owner) == ("SUCCEEDED", None)
    assert store.stages(job_id)[0].state == "SUCCEEDED"
    last = store.events_after(job_id, 0)[-2:]
    assert [(e.type, e.job_state) for e in last] == [
        (gateway_pb2.JOB_EVENT_TYPE_STAGE_RESULT, gateway_pb2.JOB_STATE_RUNNING),
        (gateway_pb2.JOB_EVENT_TYPE_JOB_STATE, gateway_pb2.JOB_STATE_SUCCEEDED),
    ]


def test_named_leases_are_exclusive_until_they_expire(store: JobStore) -> None:
    name = f"schedule:nightly-story:{time.time()}"
    assert store.acquire_lease(name, "replica-a", ttl_s=0.5)
    assert not store.acquire_lease(name, "replica-b", ttl_s=10)
    assert store.acquire_lease(name, "replica-a", ttl_s=0.5), "the holder renews"
    assert store.lease_holder(name) == "replica-a"
    time.sleep(0.7)
    assert store.lease_holder(name) is None
    assert store.acquire_lease(name, "replica-b", ttl_s=10), "taken over once expired"
    store.release_lease(name, "replica-a")  # not the holder: nothing happens
    assert store.lease_holder(name) == "replica-b"
    store.release_lease(name, "replica-b")
    assert store.acquire_lease(name, "replica-c", ttl_s=10)


def test_unknown_and_malformed_job_ids(store: JobStore) -> None:
    with pytest.raises(NotFound):
        store.require_job("00000000-0000-0000-0000-000000000000")
    with pytest.raises(InvalidArgument, match="not a UUID"):
        store.require_job("../etc/passwd")


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="unsupported job store URL mysql"):
        JobStore("mysql://root@localhost/x")
