"""Stage retries: which codes are retried, the backoff, RetryInfo, and a real service that pushes back.

The policy tests drive `RetryPolicy.retrying()` (tenacity) with a recorded sleep; the
end-to-end ones run the gateway against a stub STT service on loopback that answers with
typed errors, which the runtime turns into real gRPC statuses with RetryInfo.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from pydantic import ValidationError

from soriflow.client import GatewayClient
from soriflow.errors import InvalidArgument, ResourceExhausted, Unavailable
from soriflow.gateway.pipelines import parse_pipeline
from soriflow.gateway.retry import RetryPolicy
from soriflow.server import ThreadedServer
from soriflow.v1 import gateway_pb2
from tests.gateway.conftest import AwsWorld, gateway_settings
from tests.gateway.stubs import start_slow_stt


def rpc_error(code: grpc.StatusCode, retry_after_s: float | None = None) -> grpc.aio.AioRpcError:
    """A client-side error as grpc.aio raises it, with RetryInfo in the trailers when given."""
    trailing = grpc.aio.Metadata()
    if retry_after_s is not None:
        status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="busy")
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration())
        info.retry_delay.FromNanoseconds(int(retry_after_s * 1e9))
        status.details.add().Pack(info)
        trailing.add("grpc-status-details-bin", status.SerializeToString())
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=f"{code.name} from the stub")


async def attempts_of(
    policy: RetryPolicy, failures: list[BaseException], *, seed: int = 7
) -> tuple[int, list[float], BaseException | None]:
    """Runs a call failing with `failures` in turn (then succeeding): (attempts, sleeps, raised)."""
    sleeps: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def call() -> None:
        nonlocal calls
        calls += 1
        if calls <= len(failures):
            raise failures[calls - 1]

    try:
        async for attempt in policy.retrying(sleep=sleep, rng=random.Random(seed)):
            with attempt:
                await call()
    except BaseException as exc:
        return calls, sleeps, exc
    return calls, sleeps, None


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (rpc_error(grpc.StatusCode.UNAVAILABLE), True),
        (rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), True),
        (rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED), True),
        (TimeoutError(), True),  # the stage's own deadline: DEADLINE_EXCEEDED
        (Unavailable("service restarting"), True),
        (rpc_error(grpc.StatusCode.INVALID_ARGUMENT), False),
        (InvalidArgument("not audio"), False),
        (rpc_error(grpc.StatusCode.NOT_FOUND), False),
        (rpc_error(grpc.StatusCode.INTERNAL), False),
        (rpc_error(grpc.StatusCode.FAILED_PRECONDITION), False),
        (ValueError("a bug"), False),
    ],
)
async def test_only_transient_codes_are_retried(error: BaseException, retried: bool) -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01)
    calls, sleeps, raised = await attempts_of(policy, [error] * 5)
    assert calls == (3 if retried else 1)
    assert len(sleeps) == calls - 1
    assert raised is error, "the last error is raised as it was, not wrapped"


async def test_a_call_that_recovers_returns_after_its_retries() -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff_s=0.01)
    calls, sleeps, raised = await attempts_of(policy, [Unavailable("down"), Unavailable("down")])
    assert (calls, len(sleeps), raised) == (3, 2, None)


def test_invalid_argument_can_never_be_made_retryable() -> None:
    with pytest.raises(ValidationError, match="never retried"):
        RetryPolicy(retry_on=["UNAVAILABLE", "invalid_argument"])
    pipeline = "name: x\nstages:\n  - name: a\n    uses: stt.recognize\n    retry: {retry_on: [%s]}\n"
    with pytest.raises(InvalidArgument, match=r"\['INVALID_ARGUMENT'\] are never retried"):
        parse_pipeline(pipeline % "INVALID_ARGUMENT", "test.yaml")
    assert parse_pipeline(pipeline % "INTERNAL", "test.yaml").stages[0].retry.retry_on == ["INTERNAL"]


async def test_backoff_is_exponential_capped_and_jittered() -> None:
    exact = RetryPolicy(max_attempts=6, initial_backoff_s=1, multiplier=2, max_backoff_s=5, jitter=0)
    _, sleeps, _ = await attempts_of(exact, [Unavailable("down")] * 6)
    assert sleeps == [1, 2, 4, 5, 5]
    jittered = RetryPolicy(max_attempts=6, initial_backoff_s=1, multiplier=2, max_backoff_s=5, jitter=0.5)
    draws = set()
    for seed in range(20):
        _, sleeps, _ = await attempts_of(jittered, [Unavailable("down")] * 6, seed=seed)
        for delay, base in zip(sleeps, [1, 2, 4, 5, 5], strict=True):
            assert base * 0.5 <= delay <= base * 1.5
        draws.add(tuple(sleeps))
    assert len(draws) == 20, "jitter spreads the retries of many jobs"


async def test_the_services_retry_info_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=30, jitter=0)
    _, sleeps, _ = await attempts_of(policy, [rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, 3.0)] * 2)
    assert sleeps == [3.0, 3.0]
    _, sleeps, _ = await attempts_of(policy, [ResourceExhausted("queue full", retry_after_s=100)])
    assert sleeps == [30], "capped at max_backoff_s"
    _, sleeps, _ = await attempts_of(policy, [rpc_error(grpc.StatusCode.UNAVAILABLE, 0.01)])
    assert sleeps == [0.1], "a shorter hint does not shorten the backoff"


async def test_before_sleep_is_told_the_attempt_error_and_delay() -> None:
    seen: list[tuple[int, str, float]] = []

    async def before_sleep(attempt: int, error: BaseException, delay_s: float) -> None:
        seen.append((attempt, type(error).__name__, delay_s))

    async def no_sleep(_: float) -> None:
        return None

    async def always_down() -> None:
        async for attempt in RetryPolicy(max_attempts=3, initial_backoff_s=0.5, jitter=0).retrying(
            before_sleep=before_sleep, sleep=no_sleep
        ):
            with attempt:
                raise Unavailable("down")

    with pytest.raises(Unavailable):
        await always_down()
    assert seen == [(1, "Unavailable", 0.5), (2, "Unavailable", 1.0)]


async def test_cancellation_is_never_retried() -> None:
    calls, sleeps, raised = await attempts_of(RetryPolicy(), [asyncio.CancelledError()])
    assert (calls, sleeps) == (1, [])
    assert isinstance(raised, asyncio.CancelledError)


PUSHBACK = """
name: transcribe
stages:
  - name: stt
    uses: stt.recognize
    timeout_s: 10
    retry: {max_attempts: 3, initial_backoff_s: 0.05, max_backoff_s: 5, jitter: 0}
    with: {audio: source, outputs: [transcript.txt]}
"""


@pytest.fixture
def flaky_stt(request: pytest.FixtureRequest) -> Iterator[ThreadedServer]:
    server = start_slow_stt([0.0], errors=request.param)
    yield server
    server.stop(grace=0.5)


def _gateway(
    aws: AwsWorld, tmp_path: Path, stt: ThreadedServer, start_gateway: Callable[..., ThreadedServer]
) -> ThreadedServer:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(PUSHBACK)
    return start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            gateway_queue_url=None,
            stt_address=stt.address,
            gateway_pipelines_file=str(pipelines),
        )
    )


async def _run(address: str, uri: str, check: Callable[[Any, list[Any]], Awaitable[None] | None]) -> None:
    async with GatewayClient(address) as client:
        job = await client.submit_uri(uri, pipeline="transcribe")
        final = await client.wait(job.job_id, timeout=60)
        history = [r.event async for r in client.watch(job.job_id) if r.HasField("event")]
        outcome = check(final, history)
        if outcome is not None:
            await outcome


@pytest.mark.slow
@pytest.mark.parametrize(
    "flaky_stt", [[ResourceExhausted("the model queue is full", retry_after_s=0.8)]], indirect=True
)
def test_a_service_pushing_back_is_retried_after_the_delay_it_asked(
    aws: AwsWorld,
    tmp_path: Path,
    flaky_stt: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    gateway = _gateway(aws, tmp_path, flaky_stt, start_gateway)
    uri = aws.upload("manual/clip.wav", speech_wav.read_bytes())

    def check(final: Any, history: list[Any]) -> None:
        assert final.state == gateway_pb2.JOB_STATE_SUCCEEDED, final.error
        assert final.stages[0].attempt == 2
        [retrying] = [e for e in history if e.stage_state == gateway_pb2.STAGE_STATE_RETRYING]
        assert retrying.message == "RESOURCE_EXHAUSTED: the model queue is full; retrying in 0.8s"

    asyncio.run(_run(gateway.address, uri, check))
    first, second = flaky_stt.service.times
    assert second - first >= 0.8, "the gateway waited as long as the service asked, not its 0.05 s backoff"


@pytest.mark.slow
@pytest.mark.parametrize("flaky_stt", [[InvalidArgument("the audio is not speech")]], indirect=True)
def test_invalid_argument_fails_the_stage_at_once(
    aws: AwsWorld,
    tmp_path: Path,
    flaky_stt: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    gateway = _gateway(aws, tmp_path, flaky_stt, start_gateway)
    uri = aws.upload("manual/clip.wav", speech_wav.read_bytes())

    def check(final: Any, history: list[Any]) -> None:
        assert final.state == gateway_pb2.JOB_STATE_FAILED
        assert final.error_code == "INVALID_ARGUMENT"
        assert final.stages[0].attempt == 1
        assert not [e for e in history if e.stage_state == gateway_pb2.STAGE_STATE_RETRYING]

    asyncio.run(_run(gateway.address, uri, check))
    assert flaky_stt.service.calls == 1
