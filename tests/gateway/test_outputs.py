"""Output writes: small bodies go in one trip (no `Expect: 100-continue`), large ones still ask first."""

from __future__ import annotations

from typing import Any

from soriflow.config import CommonSettings
from soriflow.gateway.outputs import EXPECT_CONTINUE_MIN_BYTES, small_puts_in_one_trip
from soriflow.storage import ObjectStore
from tests.gateway.conftest import AwsWorld


def test_small_outputs_skip_the_100_continue_round_trip(aws: AwsWorld) -> None:
    objects = ObjectStore(CommonSettings(s3_endpoint_url=aws.endpoint))
    small_puts_in_one_trip(objects.client)
    sent: list[tuple[str, Any]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((request.url.rsplit("/", 1)[1], request.headers.get("Expect")))

    objects.client.meta.events.register("before-send.s3.PutObject", record)
    small = objects.write_bytes(f"s3://{aws.output_bucket}/results/small.json", b"{}" * 100)
    large = objects.write_bytes(
        f"s3://{aws.output_bucket}/results/large.wav", b"\0" * EXPECT_CONTINUE_MIN_BYTES
    )
    assert sent == [("small.json", None), ("large.wav", b"100-continue")]
    stored = aws.s3.get_object(Bucket=aws.output_bucket, Key="results/small.json")["Body"].read()
    assert stored == b"{}" * 100
    assert (small.size, large.size) == (200, EXPECT_CONTINUE_MIN_BYTES)
