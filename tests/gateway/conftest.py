"""Gateway fixtures: real S3/SQS (moto server), real stage services, real PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from soriflow.server import ThreadedServer
from soriflow.stack import TRIGGER_PREFIXES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("werkzeug").setLevel(logging.ERROR)


#: What the shared stage services may read: every test's input bucket (`make_world` names them in-<tag>).
READ_ANY_TEST_INPUT = "s3://in-*/"
#: The bucket of native reference recordings in the pronunciation app's layout (examples/django).
REFERENCE_BUCKET = "standard-audio-file"


@dataclass
class AwsWorld:
    """Buckets, a queue with a dead-letter queue, and the S3 -> SQS notification, made for one test."""

    endpoint: str
    input_bucket: str
    output_bucket: str
    queue_url: str
    dlq_url: str
    s3: Any
    sqs: Any

    @property
    def output_uri(self) -> str:
        return f"s3://{self.output_bucket}/results/"

    def upload(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> str:
        self.s3.put_object(Bucket=self.input_bucket, Key=key, Body=data, Metadata=metadata or {})
        return f"s3://{self.input_bucket}/{key}"

    def queue_depth(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def output_versions(self, key_prefix: str = "results/") -> dict[str, int]:
        """How many times each output key was written (the output bucket is versioned)."""
        counts: dict[str, int] = {}
        pages = self.s3.get_paginator("list_object_versions").paginate(
            Bucket=self.output_bucket, Prefix=key_prefix
        )
        for page in pages:
            for version in page.get("Versions", []):
                counts[version["Key"]] = counts.get(version["Key"], 0) + 1
        return counts


def make_world(endpoint: str, *, max_receive_count: int = 3, visibility_s: int = 30) -> AwsWorld:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    tag = uuid.uuid4().hex[:8]
    world_in, world_out = f"in-{tag}", f"out-{tag}"
    s3.create_bucket(Bucket=world_in)
    s3.create_bucket(Bucket=world_out)
    s3.put_bucket_versioning(Bucket=world_out, VersioningConfiguration={"Status": "Enabled"})
    dlq = sqs.create_queue(QueueName=f"dlq-{tag}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    queue = sqs.create_queue(
        QueueName=f"q-{tag}", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_s)}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rules = [
        {
            "QueueArn": arn,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
        }
        for prefix in TRIGGER_PREFIXES
    ]  # like a deployment: only pipeline prefixes start jobs
    s3.put_bucket_notification_configuration(
        Bucket=world_in, NotificationConfiguration={"QueueConfigurations": rules}
    )
    # S3 sends a test event when notifications are configured; it stays in the queue for the consumer.
    return AwsWorld(endpoint, world_in, world_out, queue, dlq, s3, sqs)


@pytest.fixture
def aws(s3_env: str) -> AwsWorld:
    return make_world(s3_env)


def service_thread(name: str, factory: Callable[[], Any]) -> ThreadedServer:
    return ThreadedServer(factory, name=name).start()


@pytest.fixture(scope="session")
def stt_service(moto_endpoint: str) -> Iterator[ThreadedServer]:
    from soriflow.stt.service import create_service
    from soriflow.stt.settings import Settings

    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        stt_model="tiny.en",
        stt_device="cpu",
        s3_endpoint_url=moto_endpoint,
        stt_max_waiting=200,
        read_uris=[READ_ANY_TEST_INPUT, f"s3://{REFERENCE_BUCKET}/"],
    )
    server = service_thread("stt", lambda: create_service(settings))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tts_service(moto_endpoint: str) -> Iterator[ThreadedServer]:
    from soriflow.tts.service import create_service
    from soriflow.tts.settings import Settings

    settings = Settings(
        host="127.0.0.1", port=0, metrics_port=None, log_format="text", s3_endpoint_url=moto_endpoint
    )
    server = service_thread("tts", lambda: create_service(settings))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def summarizer_service(moto_endpoint: str) -> Iterator[ThreadedServer]:
    from soriflow.summarizer.service import create_service
    from soriflow.summarizer.settings import Settings

    settings = Settings(
        host="127.0.0.1", port=0, metrics_port=None, log_format="text", s3_endpoint_url=moto_endpoint
    )
    server = service_thread("summarizer", lambda: create_service(settings))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def scoring_service(moto_endpoint: str, stt_service: ThreadedServer) -> Iterator[ThreadedServer]:
    from soriflow.scoring.service import create_service
    from soriflow.scoring.settings import Settings

    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        s3_endpoint_url=moto_endpoint,
        stt_address=stt_service.address,
        read_uris=[READ_ANY_TEST_INPUT, f"s3://{REFERENCE_BUCKET}/"],
    )
    server = service_thread("scoring", lambda: create_service(settings))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    import psycopg

    name = f"soriflow_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def gateway_settings(aws: AwsWorld, tmp_path: Path, **overrides: Any) -> Any:
    from soriflow.gateway.settings import Settings

    base: dict[str, Any] = dict(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        s3_endpoint_url=aws.endpoint,
        gateway_queue_url=aws.queue_url,
        gateway_output_uri=aws.output_uri,
        gateway_submissions_uri=f"s3://{aws.input_bucket}/submissions/",
        gateway_input_uris=[f"s3://{aws.input_bucket}/"],
        gateway_database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        gateway_receive_wait_s=1,
        gateway_visibility_timeout_s=30,
        gateway_retry_delay_s=0,
        gateway_lease_s=10,
        grace_period_s=5,
    )
    return Settings(**(base | overrides))


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., ThreadedServer]]:
    from soriflow.gateway.service import create_service

    started: list[ThreadedServer] = []

    def start(settings: Any) -> ThreadedServer:
        server = service_thread("gateway", lambda: create_service(settings))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=2)


@pytest.fixture
def api_gateway(
    aws: AwsWorld, tmp_path: Path, stt_service: ThreadedServer, start_gateway: Callable[..., ThreadedServer]
) -> ThreadedServer:
    """A gateway taking jobs through its gRPC API only (no queue), with the real STT behind it."""
    return start_gateway(
        gateway_settings(aws, tmp_path, stt_address=stt_service.address, gateway_queue_url=None)
    )
