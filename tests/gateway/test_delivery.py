"""Delivery edge cases: test events, unroutable keys, our own outputs, shutdown hand-back, notifications."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from soriflow.server import ThreadedServer
from tests.gateway.conftest import AwsWorld, gateway_settings
from tests.gateway.speech import speak, wav
from tests.gateway.test_gateway import finished_jobs, store_of, wait_until

pytestmark = pytest.mark.slow


def test_test_events_unroutable_keys_and_our_outputs(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
) -> None:
    arn = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.s3.put_bucket_notification_configuration(  # the whole bucket, as a careless setup would
        Bucket=aws.input_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    aws.sqs.send_message(
        QueueUrl=aws.queue_url, MessageBody=json.dumps({"Event": "s3:TestEvent", "Bucket": "x"})
    )
    gateway = start_gateway(gateway_settings(aws, tmp_path, stt_address=stt_service.address))
    aws.upload("misc/notes.wav", speech_wav.read_bytes())
    aws.upload(
        "transcribe/copy.wav",
        speech_wav.read_bytes(),
        metadata={"soriflow-output": "1", "soriflow-job-id": "x"},
    )
    [job] = finished_jobs(gateway, 1)
    assert job.state == "FAILED"
    assert job.source_uri.endswith("/misc/notes.wav")
    assert "no pipeline handles key 'misc/notes.wav'" in job.error
    wait_until(lambda: aws.queue_depth() == 0, 30, "every message to be handled")
    assert aws.queue_depth(aws.dlq_url) == 0, "handled, not left to the dead-letter queue"
    jobs, _ = store_of(gateway).list_jobs(page_size=10)
    assert len(jobs) == 1, "the test event and our own output started no job"


def test_shutdown_hands_running_jobs_back_to_another_replica(
    aws: AwsWorld, tmp_path: Path, stt_service: ThreadedServer, start_gateway: Callable[..., ThreadedServer]
) -> None:
    settings = gateway_settings(
        aws, tmp_path, stt_address=stt_service.address, grace_period_s=0.5, gateway_visibility_timeout_s=60
    )
    first = start_gateway(settings)
    aws.upload("transcribe/long.wav", wav(speak("This recording is long enough to be interrupted. " * 8)))
    store = store_of(first)

    def running() -> bool:
        jobs, _ = store.list_jobs(page_size=1)
        return bool(jobs) and jobs[0].state == "RUNNING"

    wait_until(running, 60, "the job to start")
    first.stop(grace=0.5)  # SIGTERM-like stop: the job cannot finish within the grace period
    stopped = time.monotonic()
    [job] = store.list_jobs(page_size=1)[0]
    assert job.state == "RUNNING"
    assert job.lease_expires_at is not None
    assert job.lease_expires_at <= dt.datetime.now(dt.UTC), "the lease was given back"
    # The message was released, not left invisible for the rest of its 60 s visibility timeout.
    visible = aws.sqs.get_queue_attributes(
        QueueUrl=aws.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert visible["Attributes"]["ApproximateNumberOfMessages"] == "1"
    second = start_gateway(settings)  # a new replica, same store and queue
    [done] = finished_jobs(second, 1, timeout=50)
    assert done.state == "SUCCEEDED"
    assert done.runs == 2
    wait_until(lambda: aws.queue_depth() == 0, 10, "the message to be deleted")
    assert time.monotonic() - stopped < 60, "taken over well within the visibility timeout"


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_job_end_notifies_sns_and_a_signed_webhook(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
    webhook: str,
) -> None:
    import boto3

    sns = boto3.client("sns", endpoint_url=aws.endpoint, region_name="us-east-1")
    topic = sns.create_topic(Name=f"jobs-{aws.input_bucket}")["TopicArn"]
    inbox = aws.sqs.create_queue(QueueName=f"inbox-{aws.input_bucket}")["QueueUrl"]
    inbox_arn = aws.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            stt_address=stt_service.address,
            gateway_sns_topic_arn=topic,
            gateway_webhook_url=webhook,
            gateway_webhook_secret="s3cret",
        )
    )
    aws.upload("transcribe/notify.wav", speech_wav.read_bytes())
    [job] = finished_jobs(gateway, 1)
    messages = wait_until(
        lambda: aws.sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1).get("Messages"),
        30,
        "the SNS notification",
    )
    note = json.loads(json.loads(messages[0]["Body"])["Message"])
    assert (note["job_id"], note["state"], note["pipeline"]) == (job.id, "SUCCEEDED", "transcribe")
    assert {o["name"] for o in note["outputs"]} >= {"transcript.json"}
    wait_until(lambda: _Hook.received, 10, "the webhook call")
    headers, body = _Hook.received[0]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Soriflow-Signature"] == expected
    assert json.loads(body)["job_id"] == job.id
