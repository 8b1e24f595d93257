"""Notification content: readable text and subject, per-protocol SNS bodies, webhook secrets.

Delivery over the wire (moto SNS -> SQS, a webhook receiver verifying the signature) is in
test_delivery.py.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from soriflow.gateway.notify import JSON_PROTOCOLS, SNS_MAX_BYTES, notification_document, sns_message, subject
from soriflow.gateway.settings import Settings
from soriflow.gateway.store import JobRecord

NOW = dt.datetime(2025, 3, 1, 21, 0, tzinfo=dt.UTC)


def job(**fields: object) -> JobRecord:
    base: dict[str, object] = dict(
        id="6f1c2d2e-0000-4000-8000-000000000001",
        pipeline="nightly-story",
        state="FAILED",
        origin="api",
        source_uri="s3://in/submissions/x/story.txt",
        metadata={"user": "kim", "soriflow-encoding": "LINEAR16"},
        parameters={},
        created_at=NOW,
        started_at=NOW,
        ended_at=NOW + dt.timedelta(seconds=42),
        error="tts: the voice ko-KR-Wavenet-Z does not exist",
        error_code="NOT_FOUND",
        retryable=False,
    )
    return JobRecord(**(base | fields))  # type: ignore[arg-type]


def test_a_failed_job_reads_as_a_sentence_with_its_reason() -> None:
    outputs = [{"name": "story.txt", "uri": "s3://out/results/x/story.txt", "url": "https://signed"}]
    doc = notification_document(job(), outputs, NOW + dt.timedelta(days=2))
    assert doc["subject"] == "Soriflow: nightly-story job failed"
    text = doc["text"]
    assert text.splitlines()[0] == f"Soriflow job {job().id} (nightly-story) failed."
    assert "Reason: tts: the voice ko-KR-Wavenet-Z does not exist (NOT_FOUND)" in text
    assert "Took:     42.0 s" in text
    assert "Results (links valid until 2025-03-03 21:00:00 UTC):\n- story.txt: https://signed" in text
    assert "Labels: user=kim" in text
    assert "soriflow-encoding" not in text
    assert (
        "submitting the job again may succeed" in notification_document(job(retryable=True), [], NOW)["text"]
    )
    assert (doc["type"], doc["job_id"], doc["state"]) == ("job.failed", job().id, "FAILED")


def test_subjects_fit_sns() -> None:
    long = subject(job(pipeline="발음-" + "x" * 200, state="PARTIAL"))
    assert len(long) <= 100
    assert all(" " <= c <= "~" for c in long)


def test_people_get_text_programs_get_json() -> None:
    doc = notification_document(job(), [], NOW)
    structure = json.loads(sns_message(doc["text"], doc))
    assert structure["default"] == structure["email"] == doc["text"]
    assert structure["sms"] == doc["subject"]
    for protocol in JSON_PROTOCOLS:
        assert json.loads(structure[protocol])["job_id"] == job().id
    huge = notification_document(job(metadata={"note": "x" * (SNS_MAX_BYTES // 4)}), [], NOW)
    fallback = json.loads(sns_message(huge["text"], huge))
    assert list(fallback) == ["default"]
    assert len(sns_message(huge["text"], huge).encode()) <= SNS_MAX_BYTES + 1024
    assert json.loads(fallback["default"])["text"] == huge["text"]


@pytest.mark.parametrize("secret", ["s3cret", "whsec_short", "whsec_not base64!!", "0123abcd" * 8])
def test_webhook_secrets_must_be_standard(secret: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        Settings(gateway_webhook_secret=secret)


def test_a_standard_secret_is_accepted() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert Settings(gateway_webhook_secret=secret).gateway_webhook_secret is not None
