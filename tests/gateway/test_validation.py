"""SubmitJob's checks (gateway/validation.py): bad fields are refused with their code before a job,
a stored submission or an S3 read exists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from soriflow.client import GatewayClient
from soriflow.errors import InvalidArgument, PermissionDenied, ResourceExhausted, SoriflowError
from soriflow.gateway.settings import Settings
from soriflow.gateway.validation import validate_submit
from soriflow.server import ThreadedServer
from soriflow.v1 import audio_pb2, gateway_pb2
from tests.gateway.conftest import AwsWorld, gateway_settings
from tests.gateway.test_gateway import run, store_of

WAV_URI = "s3://in/transcribe/a.wav"
SETTINGS = Settings(
    gateway_input_uris=["s3://in/transcribe/"],
    gateway_submissions_uri="s3://in/submissions/",
    read_uris=["s3://refs/"],
)


def request(**fields: Any) -> gateway_pb2.SubmitJobRequest:
    fields.setdefault("audio", audio_pb2.AudioInput(uri=WAV_URI))
    return gateway_pb2.SubmitJobRequest(**fields)


#: (request fields, error type, words the message must hold): one row per hole found.
BAD: list[tuple[str, dict[str, Any], type[SoriflowError], tuple[str, ...]]] = [
    (
        "other-bucket",
        {"audio": audio_pb2.AudioInput(uri="s3://some-other-bucket/secret.wav")},
        PermissionDenied,
        ("audio.uri s3://some-other-bucket/secret.wav", "SORIFLOW_READ_URIS"),
    ),
    (
        "other-prefix",
        {"audio": audio_pb2.AudioInput(uri="s3://in/private/secret.wav")},
        PermissionDenied,
        ("audio.uri",),
    ),
    (
        "reference-elsewhere",
        {"parameters": {"reference_uri": "s3://some-other-bucket/ref.wav"}},
        PermissionDenied,
        ("parameters['reference_uri']",),
    ),
    ("no-key", {"audio": audio_pb2.AudioInput(uri="s3://in")}, InvalidArgument, ("names a bucket",)),
    (
        "traversal",
        {"audio": audio_pb2.AudioInput(uri="s3://in/transcribe/../private/secret.wav")},
        InvalidArgument,
        ("traversal",),
    ),
    ("key-nul", {"idempotency_key": "retry\x00-1"}, InvalidArgument, ("idempotency_key", "control")),
    ("key-1mb", {"idempotency_key": "k" * 1_000_000}, InvalidArgument, ("idempotency_key", "256")),
    ("filename-nul", {"filename": "call\x00.wav"}, InvalidArgument, ("filename", "NUL")),
    ("filename-rtl", {"filename": "evil\u202egnp.wav"}, InvalidArgument, ("filename", "bidi")),
    ("filename-dotdot", {"filename": ".."}, InvalidArgument, ("filename", "names no file")),
    ("filename-long", {"filename": "a" * 300 + ".wav"}, InvalidArgument, ("filename", "255 bytes")),
    ("pipeline-nul", {"pipeline": "transcribe\x00"}, InvalidArgument, ("pipeline",)),
    (
        "metadata-1000x1k",
        {"metadata": {f"k{i}": "v" * 1024 for i in range(1000)}},
        ResourceExhausted,
        ("metadata has 1000 entries", "limit is 64"),
    ),
    (
        "metadata-20mb",
        {"metadata": {"big": "x" * 20_000_000}},
        ResourceExhausted,
        ("metadata['big'] is 20000000 bytes", "2048"),
    ),
    (
        "metadata-total",
        {"metadata": {f"k{i}": "v" * 2000 for i in range(20)}},
        ResourceExhausted,
        ("metadata holds", "16384 bytes in all"),
    ),
    ("metadata-nul", {"metadata": {"user": "kim\x00"}}, InvalidArgument, ("metadata['user']", "NUL")),
    ("metadata-key", {"metadata": {"a\nb": "x"}}, InvalidArgument, ("metadata key", "control")),
    (
        "parameters-big",
        {"parameters": {"reference_text": "x" * 100_000}},
        ResourceExhausted,
        ("parameters['reference_text']", "16384"),
    ),
    (
        "absurd-rate",
        {
            "audio": audio_pb2.AudioInput(
                content=b"\x00\x00" * 100,
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hz=2_147_483_647,
            )
        },
        InvalidArgument,
        ("2147483647 Hz",),
    ),
]


@pytest.mark.parametrize(("fields", "error", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_submissions_are_refused_with_their_limit(
    fields: dict[str, Any], error: type[SoriflowError], words: tuple[str, ...]
) -> None:
    with pytest.raises(error) as info:
        validate_submit(request(**fields), SETTINGS)
    assert info.value.code == error.code
    for word in words:
        assert word in info.value.message, info.value.message


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"audio": audio_pb2.AudioInput(uri="s3://in/submissions/job/a.wav")},
        {"parameters": {"reference_uri": "s3://refs/level_1/Title With Spaces/audio_line_1.wav"}},
        {"metadata": {f"k{i}": "v" * 200 for i in range(64)}},
        {"metadata": {"title": "문의하신 내용 \u200b\u202b"}, "filename": "통화 녹음.wav"},
        {"idempotency_key": "order-42/take-1", "filename": "../../call.wav"},
    ],
)
def test_good_submissions_pass(fields: dict[str, Any]) -> None:
    validate_submit(request(**fields), SETTINGS)


@pytest.mark.slow
@pytest.mark.postgres
def test_refused_at_the_api_before_a_job_or_a_stored_byte_exists(
    aws: AwsWorld,
    tmp_path: Path,
    start_gateway: Callable[..., ThreadedServer],
    postgres_database: str,
    speech_wav: Path,
) -> None:
    # On PostgreSQL, which answered NUL in an idempotency key or file name with DataError (INTERNAL).
    aws.s3.create_bucket(Bucket="some-other-bucket")
    aws.s3.put_object(Bucket="some-other-bucket", Key="secret.wav", Body=speech_wav.read_bytes())
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            gateway_queue_url=None,
            gateway_database_url=postgres_database,
            gateway_input_uris=[f"s3://{aws.input_bucket}/transcribe/"],
        )
    )
    audio = speech_wav.read_bytes()
    cases = [
        (
            gateway_pb2.SubmitJobRequest(
                audio=audio_pb2.AudioInput(uri="s3://some-other-bucket/secret.wav"), pipeline="transcribe"
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            gateway_pb2.SubmitJobRequest(
                audio=audio_pb2.AudioInput(content=audio), pipeline="transcribe", idempotency_key="a\x00b"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            gateway_pb2.SubmitJobRequest(
                audio=audio_pb2.AudioInput(content=audio), pipeline="transcribe", filename="a\x00.wav"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            gateway_pb2.SubmitJobRequest(
                audio=audio_pb2.AudioInput(content=audio),
                pipeline="transcribe",
                metadata={f"k{i}": "v" * 1024 for i in range(1000)},
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
    ]

    async def api() -> None:
        async with GatewayClient(gateway.address) as client:
            for submit, code in cases:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await client.stub.SubmitJob(submit, timeout=30)
                assert err.value.code() == code, err.value.details()

    run(api())
    assert store_of(gateway).list_jobs(page_size=10)[0] == []
    assert aws.s3.list_objects_v2(Bucket=aws.input_bucket, Prefix="submissions/").get("KeyCount", 0) == 0
