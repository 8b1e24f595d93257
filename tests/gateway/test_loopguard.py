"""The S3 infinite-loop guard: configured prefixes and the bucket's real notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from soriflow.errors import FailedPrecondition
from soriflow.gateway.loopguard import check_bucket_notifications, check_static
from tests.gateway.conftest import AwsWorld, gateway_settings


@pytest.mark.parametrize(
    ("output", "inputs", "overlaps"),
    [
        ("s3://b/results/", ["s3://b/"], True),
        ("s3://b/", ["s3://b/uploads/"], True),
        ("s3://b/results/", ["s3://b/results/x/"], True),
        ("s3://b/results/", ["s3://b/uploads/"], False),
        ("s3://out/results/", ["s3://in/"], False),
    ],
)
def test_static_overlap(output: str, inputs: list[str], overlaps: bool) -> None:
    if overlaps:
        with pytest.raises(FailedPrecondition, match="S3 event loop"):
            check_static(output, inputs)
    else:
        check_static(output, inputs)


def _notify(aws: AwsWorld, bucket: str, rules: list[dict[str, Any]]) -> None:
    arn = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": rules}}}
                if rules
                else {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )


def test_bucket_notifications_covering_the_outputs_refuse_start(aws: AwsWorld) -> None:
    _notify(aws, aws.output_bucket, [])
    with pytest.raises(FailedPrecondition, match=f"bucket {aws.output_bucket} sends ObjectCreated events"):
        check_bucket_notifications(aws.s3, aws.output_uri)
    _notify(aws, aws.output_bucket, [{"Name": "suffix", "Value": ".wav"}])  # reply.wav would loop
    with pytest.raises(FailedPrecondition):
        check_bucket_notifications(aws.s3, aws.output_uri)
    _notify(aws, aws.output_bucket, [{"Name": "prefix", "Value": "uploads/"}])
    check_bucket_notifications(aws.s3, aws.output_uri)
    _notify(aws, aws.output_bucket, [{"Name": "suffix", "Value": ".flac"}])
    check_bucket_notifications(aws.s3, aws.output_uri)


def test_gateway_refuses_to_start_with_overlapping_config(aws: AwsWorld, tmp_path: Path) -> None:
    from soriflow.gateway.service import create_service

    settings = gateway_settings(aws, tmp_path, gateway_output_uri=f"s3://{aws.input_bucket}/results/")
    with pytest.raises(FailedPrecondition, match="refusing to start"):
        create_service(settings)
