"""Job and stage states: one enum each, matching the proto, and the transitions the store allows."""

from __future__ import annotations

import pytest

from soriflow.gateway.states import (
    JOB_TRANSITIONS,
    STAGE_TRANSITIONS,
    TERMINAL,
    IllegalTransition,
    JobState,
    StageState,
    check_job,
    check_stage,
    job_sources,
    stage_sources,
)
from soriflow.v1 import gateway_pb2


def test_the_enums_are_the_protos() -> None:
    assert {s.proto for s in JobState} == set(gateway_pb2.JobState.values()) - {0}
    assert {s.proto for s in StageState} == set(gateway_pb2.StageState.values()) - {0}
    for state in JobState:
        assert JobState.from_proto(state.proto) is state
        assert gateway_pb2.JobState.Name(state.proto) == f"JOB_STATE_{state}"
    for stage_state in StageState:
        assert StageState.from_proto(stage_state.proto) is stage_state
    assert JobState.SUCCEEDED == "SUCCEEDED", "the store keeps the names"


def test_every_state_has_a_row() -> None:
    assert set(JOB_TRANSITIONS) == {None, *JobState}
    assert set(STAGE_TRANSITIONS) == {None, *StageState}


def test_final_states_stay_final_except_a_retryable_failure() -> None:
    for state in TERMINAL - {JobState.FAILED}:
        assert JOB_TRANSITIONS[state] == frozenset(), state
    assert JOB_TRANSITIONS[JobState.FAILED] == {JobState.RUNNING}
    assert STAGE_TRANSITIONS[StageState.SUCCEEDED] == frozenset(), "a stored result is never redone"


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (None, JobState.QUEUED, True),
        (None, JobState.FAILED, True),  # refused at intake, recorded with its reason
        (None, JobState.RUNNING, False),
        (JobState.QUEUED, JobState.RUNNING, True),
        (JobState.QUEUED, JobState.CANCELLED, True),
        (JobState.QUEUED, JobState.SUCCEEDED, False),
        (JobState.RUNNING, JobState.RUNNING, True),  # taken over after an expired lease
        (JobState.RUNNING, JobState.PARTIAL, True),
        (JobState.SUCCEEDED, JobState.FAILED, False),
        (JobState.CANCELLED, JobState.RUNNING, False),
        (JobState.FAILED, JobState.RUNNING, True),
        (JobState.FAILED, JobState.SUCCEEDED, False),
    ],
)
def test_job_transitions(current: JobState | None, target: JobState, allowed: bool) -> None:
    if allowed:
        check_job(current, target)
        if current is not None:
            assert current in job_sources(target)
    else:
        with pytest.raises(IllegalTransition, match=f"cannot become {target}"):
            check_job(current, target)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (None, StageState.PENDING, True),
        (StageState.PENDING, StageState.RUNNING, True),
        (StageState.PENDING, StageState.SUCCEEDED, False),
        (StageState.PENDING, StageState.RETRYING, False),
        (StageState.RUNNING, StageState.RETRYING, True),
        (StageState.RETRYING, StageState.RUNNING, True),
        (StageState.RETRYING, StageState.SUCCEEDED, False),
        (StageState.FAILED, StageState.RUNNING, True),  # the job is run again after a transient failure
        (StageState.SUCCEEDED, StageState.RUNNING, False),
        (StageState.SKIPPED, StageState.PENDING, False),
    ],
)
def test_stage_transitions(current: StageState | None, target: StageState, allowed: bool) -> None:
    if allowed:
        check_stage(current, target)
        if current is not None:
            assert current in stage_sources(target)
    else:
        with pytest.raises(IllegalTransition):
            check_stage(current, target)
