"""One retry policy for stage calls: declared in the pipeline YAML, carried out by tenacity.

The shape is Temporal's RetryPolicy and Step Functions' Retry: attempts,
exponential backoff with jitter, and the status codes worth another try. Only
UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are retried by default;
codes that say the request itself is wrong (INVALID_ARGUMENT and friends) are
refused in `retry_on`, since the same request fails the same way again. When
the service sends a google.rpc.RetryInfo delay, the wait is at least that (up
to `max_backoff_s`), so an overloaded service is not hammered sooner than it
asked.

Why tenacity and not gRPC's service-config retry policy: gRPC retries
transparently inside one call, under that call's single deadline, with at most
5 attempts, no say over jitter and no RetryInfo (only its own pushback header);
and the runner could not record a RETRYING stage in the job's history. A
stage's attempt is also more than the RPC (its outputs are written to S3 within
the attempt), so the retry belongs around the attempt.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import tenacity
from pydantic import BaseModel, ConfigDict, Field, field_validator

from soriflow.errors import SoriflowError
from soriflow.interceptors import retry_after_from

RETRYABLE_DEFAULT = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"]
STATUS_NAMES = frozenset(code.name for code in grpc.StatusCode if code is not grpc.StatusCode.OK)
#: The request is wrong, or asks for what the service does not do: another try fails the same way.
NEVER_RETRIED = frozenset({"INVALID_ARGUMENT", "OUT_OF_RANGE", "UNIMPLEMENTED"})


def classify(exc: BaseException) -> tuple[str, str, float | None]:
    """(status code name, message, the service's retry delay hint in seconds) of a stage error."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name, exc.details() or exc.code().name, retry_after_from(exc)
    if isinstance(exc, SoriflowError):
        return exc.code.name, exc.message, exc.retry_after_s
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED", "the stage did not finish before its deadline", None
    return "INTERNAL", f"{type(exc).__name__}: {exc}", None


class RetryPolicy(BaseModel):
    """Attempts, exponential backoff with jitter, and the status codes that are retried."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(3, ge=1, le=20, description="Attempts in all, the first included.")
    initial_backoff_s: float = Field(1.0, ge=0, description="Delay before the second attempt.")
    max_backoff_s: float = Field(30.0, ge=0, description="Cap of any delay, RetryInfo hints included.")
    multiplier: float = Field(2.0, ge=1, description="Growth of the delay per attempt.")
    jitter: float = Field(0.2, ge=0, le=1, description="Fraction of each delay drawn at random (full +/-).")
    retry_on: list[str] = Field(
        default_factory=lambda: list(RETRYABLE_DEFAULT), description="gRPC status code names retried."
    )

    @field_validator("retry_on")
    @classmethod
    def _known_codes(cls, codes: list[str]) -> list[str]:
        names = [str(c).strip().upper() for c in codes]
        unknown = [c for c, n in zip(codes, names, strict=True) if n not in STATUS_NAMES]
        if unknown:
            raise ValueError(
                f"unknown gRPC status codes {unknown}; use names such as {', '.join(RETRYABLE_DEFAULT)} "
                f"(all: {', '.join(sorted(STATUS_NAMES))})"
            )
        permanent = sorted(NEVER_RETRIED.intersection(names))
        if permanent:
            raise ValueError(
                f"{permanent} are never retried: the same request fails the same way again "
                f"(retry_on takes e.g. {', '.join(RETRYABLE_DEFAULT)})"
            )
        return names

    def retries(self, code: str) -> bool:
        return code in self.retry_on

    def delay_s(self, attempt: int, rand: float, hint_s: float | None = None) -> float:
        """Delay before attempt `attempt + 1` (attempt counts from 1); `rand` is uniform in [0, 1).

        At least the service's own hint (RetryInfo), capped like every delay at `max_backoff_s`.
        """
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        jittered = max(0.0, base * (1 + self.jitter * (2 * rand - 1)))
        return max(jittered, min(hint_s or 0.0, self.max_backoff_s))

    def retrying(
        self,
        *,
        before_sleep: Callable[[int, BaseException, float], Awaitable[None]] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> tenacity.AsyncRetrying:
        """A tenacity controller for one stage: `async for attempt in policy.retrying(): with attempt: ...`.

        `before_sleep(attempt, error, delay_s)` is awaited before each backoff (the runner records
        the RETRYING stage there). The last error is re-raised as it was.
        """
        draw = rng or random.Random()

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            hint = classify(error)[2] if error is not None else None
            return self.delay_s(state.attempt_number, draw.random(), hint)

        def retryable(error: BaseException) -> bool:
            return isinstance(error, Exception) and self.retries(classify(error)[0])

        async def announce(state: tenacity.RetryCallState) -> None:
            if before_sleep is None or state.outcome is None or state.next_action is None:
                return
            error = state.outcome.exception()
            assert error is not None
            await before_sleep(state.attempt_number, error, state.next_action.sleep)

        options: dict[str, Any] = dict(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait,
            retry=tenacity.retry_if_exception(retryable),
            before_sleep=announce,
            reraise=True,
        )
        if sleep is not None:
            options["sleep"] = sleep
        return tenacity.AsyncRetrying(**options)
