"""Delivery edge cases: test events, unroutable keys, our own outputs, shutdown hand-back, notifications."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import urllib.request
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


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"soriflow-test-webhook-secret-32b").decode()


def test_job_end_notifies_sns_readably_and_a_signed_webhook(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
    speech_wav: Path,
    webhook: str,
) -> None:
    import boto3
    from standardwebhooks import Webhook, WebhookVerificationError

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
            gateway_webhook_secret=WEBHOOK_SECRET,
            gateway_presign_expiry_s=2 * 24 * 3600,  # the bedtime-story app's two-day links
        )
    )
    aws.upload("transcribe/notify.wav", speech_wav.read_bytes(), metadata={"user": "kim"})
    [job] = finished_jobs(gateway, 1)
    messages = wait_until(
        lambda: aws.sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1).get("Messages"),
        30,
        "the SNS notification",
    )
    envelope = json.loads(messages[0]["Body"])
    # People: a subject that says what happened (e-mail subscribers get `text` as the body) ...
    assert envelope["Subject"] == "Soriflow: transcribe job succeeded"
    assert envelope["MessageAttributes"]["state"]["Value"] == "SUCCEEDED"
    assert envelope["MessageAttributes"]["job_id"]["Value"] == job.id
    # ... programs (this SQS subscriber): the JSON, with the same text and links that work.
    note = json.loads(envelope["Message"])
    assert (note["job_id"], note["state"], note["pipeline"], note["type"]) == (
        job.id,
        "SUCCEEDED",
        "transcribe",
        "job.succeeded",
    )
    text = note["text"]
    assert text.startswith(f"Soriflow job {job.id} (transcribe) succeeded.")
    assert f"Source:   s3://{aws.input_bucket}/transcribe/notify.wav" in text
    assert "Labels: user=kim" in text
    srt = next(o for o in note["outputs"] if o["name"] == "subtitles.srt")
    assert f"- subtitles.srt: {srt['url']}" in text
    with urllib.request.urlopen(srt["url"], timeout=10) as response:
        assert b"-->" in response.read()
    links_expire = dt.datetime.fromisoformat(note["links_expire_at"])
    assert links_expire - dt.datetime.now(dt.UTC) > dt.timedelta(days=1, hours=23)

    wait_until(lambda: _Hook.received, 10, "the webhook call")
    received, body = _Hook.received[0]
    headers = {k.lower(): v for k, v in received.items()}
    verifier = Webhook(WEBHOOK_SECRET)
    assert verifier.verify(body, headers)["job_id"] == job.id  # how a receiver checks it (docs/gateway.md)
    assert headers["webhook-id"].startswith(f"msg_{job.id}_succeeded_")
    with pytest.raises(WebhookVerificationError):  # a tampered body
        verifier.verify(body.replace(b"SUCCEEDED", b"FAILED"), headers)
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    replayed = gateway.service.runner.notifier.signed_headers(body, headers["webhook-id"], stale)
    with pytest.raises(WebhookVerificationError):  # a replay after the tolerance window
        verifier.verify(body, replayed)
    with pytest.raises(WebhookVerificationError):  # the same body signed with another secret
        verifier.verify(
            body,
            {
                **headers,
                "webhook-signature": Webhook("whsec_" + "A" * 44).sign(
                    headers["webhook-id"], dt.datetime.now(dt.UTC), body
                ),
            },
        )
