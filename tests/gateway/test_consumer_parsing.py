"""S3 event notifications as SQS delivers them: test events, several records, SNS, encoded keys."""

from __future__ import annotations

import json

import pytest

from soriflow.gateway.consumer import NotAnS3Event, parse_message


def record(key: str, event: str = "ObjectCreated:Put", etag: str = "e1") -> dict[str, object]:
    return {
        "eventName": event,
        "s3": {"bucket": {"name": "input"}, "object": {"key": key, "eTag": etag, "size": 10}},
    }


def test_test_event_is_recognized() -> None:
    assert parse_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})) is None


def test_several_records_with_keys_decoded_as_s3_encodes_them() -> None:
    body = json.dumps({"Records": [record("users/kim+min/a%2Bb.wav"), record("%ED%95%9C.wav", etag="e2")]})
    events = parse_message(body)
    assert events is not None
    assert [(e.bucket, e.key, e.etag) for e in events] == [
        ("input", "users/kim min/a+b.wav", "e1"),
        ("input", "한.wav", "e2"),
    ]


def test_sns_wrapped_notifications_are_unwrapped() -> None:
    inner = json.dumps({"Records": [record("calls/x.wav")]})
    events = parse_message(json.dumps({"Type": "Notification", "Message": inner}))
    assert events is not None
    assert events[0].key == "calls/x.wav"


@pytest.mark.parametrize(
    ("body", "reason"),
    [("not json", "not JSON"), ("[]", "no Records"), (json.dumps({"Records": [{"s3": {}}]}), "malformed")],
)
def test_other_messages_are_rejected_with_the_reason(body: str, reason: str) -> None:
    with pytest.raises(NotAnS3Event, match=reason):
        parse_message(body)
