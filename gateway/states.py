"""Job and stage states: the proto's enums, and the moves between them the job store allows.

`JobState` and `StageState` are the proto's `JobState` and `StageState` without
the prefix (the names are what the store's `state` columns hold), checked
against the generated descriptors at import: a value added to the proto and not
here (or the reverse) stops the gateway from starting instead of being
mishandled. The transition tables are the one statement of what may follow
what; the store puts them in the WHERE clause of every update that changes a
state and raises `IllegalTransition` when a row is not in a state the table
allows, so no code path can, say, finish a job twice or revive a succeeded one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from soriflow.errors import FailedPrecondition
from soriflow.v1 import gateway_pb2


class JobState(enum.StrEnum):
    """Where a job is in its life (`soriflow.v1.JobState`)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def proto(self) -> gateway_pb2.JobState.ValueType:
        return gateway_pb2.JobState.Value(f"JOB_STATE_{self.value}")

    @classmethod
    def from_proto(cls, value: int) -> JobState:
        return cls(
            gateway_pb2.JobState.Name(gateway_pb2.JobState.ValueType(value)).removeprefix("JOB_STATE_")
        )

    @property
    def terminal(self) -> bool:
        """No worker runs the job in this state (a FAILED job may still be claimed if retryable)."""
        return self in TERMINAL


class StageState(enum.StrEnum):
    """Where a stage of a job is (`soriflow.v1.StageState`)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    @property
    def proto(self) -> gateway_pb2.StageState.ValueType:
        return gateway_pb2.StageState.Value(f"STAGE_STATE_{self.value}")

    @classmethod
    def from_proto(cls, value: int) -> StageState:
        name = gateway_pb2.StageState.Name(gateway_pb2.StageState.ValueType(value))
        return cls(name.removeprefix("STAGE_STATE_"))


def _matches_proto(states: type[enum.StrEnum], proto_enum: Any, prefix: str) -> None:
    values = proto_enum.DESCRIPTOR.values_by_name
    names = {n.removeprefix(prefix) for n in values if not n.endswith("_UNSPECIFIED")}
    ours = {s.value for s in states}
    if names != ours:
        raise ImportError(
            f"{states.__name__} {sorted(ours)} does not match the proto's {sorted(names)}: "
            "update soriflow.gateway.states with the proto"
        )


_matches_proto(JobState, gateway_pb2.JobState, "JOB_STATE_")
_matches_proto(StageState, gateway_pb2.StageState, "STAGE_STATE_")

TERMINAL = frozenset({JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED})

#: What may follow each job state; `None` is the creation of the job.
JOB_TRANSITIONS: Mapping[JobState | None, frozenset[JobState]] = {
    # Accepted; or rejected at intake (an S3 upload nobody routes), recorded with its reason.
    None: frozenset({JobState.QUEUED, JobState.FAILED}),
    # Claimed by a worker; or cancelled before one took it.
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    # RUNNING -> RUNNING: taken over by another worker after the holder's lease expired.
    JobState.RUNNING: frozenset(
        {JobState.RUNNING, JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED}
    ),
    # Run again after a transient failure (the store's claim also requires `retryable`).
    JobState.FAILED: frozenset({JobState.RUNNING}),
    JobState.SUCCEEDED: frozenset(),
    JobState.PARTIAL: frozenset(),
    JobState.CANCELLED: frozenset(),
}

_STAGE_RERUN = frozenset({StageState.RUNNING, StageState.FAILED, StageState.SKIPPED})

#: What may follow each stage state; `None` is the creation of the stage row (PENDING).
STAGE_TRANSITIONS: Mapping[StageState | None, frozenset[StageState]] = {
    None: frozenset({StageState.PENDING}),
    # Started; failed before its call (bad arguments); skipped (a need failed, or `when` is unset).
    StageState.PENDING: _STAGE_RERUN,
    # Retried, done, failed for good, skipped when the job was cancelled; RUNNING again when the
    # job is re-run after its worker died mid-stage.
    StageState.RUNNING: frozenset(
        {
            StageState.RUNNING,
            StageState.RETRYING,
            StageState.SUCCEEDED,
            StageState.FAILED,
            StageState.SKIPPED,
        }
    ),
    # The next attempt starts; or the job was cancelled or its worker died during the backoff.
    StageState.RETRYING: _STAGE_RERUN,
    # A re-run of the job (redelivery after a transient failure) runs failed and skipped stages again.
    StageState.FAILED: _STAGE_RERUN,
    StageState.SKIPPED: _STAGE_RERUN,
    # Its result is stored: a re-run resumes after it, never repeats it.
    StageState.SUCCEEDED: frozenset(),
}


def _sources(table: Mapping[Any, frozenset[Any]]) -> dict[Any, frozenset[Any]]:
    into: dict[Any, set[Any]] = {}
    for source, targets in table.items():
        for target in targets:
            into.setdefault(target, set()).add(source)
    return {target: frozenset(s for s in sources if s is not None) for target, sources in into.items()}


_JOB_SOURCES = _sources(JOB_TRANSITIONS)
_STAGE_SOURCES = _sources(STAGE_TRANSITIONS)


def job_sources(target: JobState) -> frozenset[JobState]:
    """The states a job may be in to move to `target` (empty: only at creation)."""
    return _JOB_SOURCES.get(target, frozenset())


def stage_sources(target: StageState) -> frozenset[StageState]:
    """The states a stage may be in to move to `target` (empty: only at creation)."""
    return _STAGE_SOURCES.get(target, frozenset())


class IllegalTransition(FailedPrecondition):
    """A state change the transition table does not allow (e.g. finishing a finished job)."""

    def __init__(self, what: str, current: str | None, target: str) -> None:
        super().__init__(f"{what} is {current or 'new'}: it cannot become {target}")
        self.current = current
        self.target = target


def check_job(current: JobState | None, target: JobState, what: str = "the job") -> None:
    if target not in JOB_TRANSITIONS[current]:
        raise IllegalTransition(what, current, target)


def check_stage(current: StageState | None, target: StageState, what: str = "the stage") -> None:
    if target not in STAGE_TRANSITIONS[current]:
        raise IllegalTransition(what, current, target)
