"""Telling the outside world a job ended: an SNS message and/or a signed webhook.

A failed notification never fails the job; it is logged and noted in the
job's events, so the operator sees it in WatchJob and the logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from soriflow.gateway.settings import Settings
from soriflow.gateway.store import JobRecord, JobStore
from soriflow.storage import s3_client

log = logging.getLogger("soriflow.gateway.notify")


def job_summary(job: JobRecord, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "pipeline": job.pipeline,
        "state": job.state,
        "source_uri": job.source_uri,
        "metadata": job.metadata,
        "error": job.error,
        "error_code": job.error_code,
        # A transient failure: resubmitting (or redriving the dead letter) may succeed.
        "retryable": job.retryable,
        "outputs": outputs,
        "created_at": job.created_at.isoformat(),
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
    }


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._sns: Any = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.gateway_sns_topic_arn or self.settings.gateway_webhook_url)

    async def job_finished(self, job: JobRecord) -> str:
        """Sends the notifications; returns a note about failures ('' when all went out)."""
        if not self.enabled:
            return ""
        outputs = [
            {"name": o.name, "uri": o.uri, "content_type": o.content_type, "size_bytes": o.size_bytes}
            for o in await asyncio.to_thread(self.store.outputs, job.id)
        ]
        body = json.dumps(job_summary(job, outputs), ensure_ascii=False).encode()
        problems = []
        if self.settings.gateway_sns_topic_arn:
            try:
                await asyncio.to_thread(self._publish_sns, body, job)
            except Exception as exc:
                problems.append(f"SNS notification failed: {exc}")
        if self.settings.gateway_webhook_url:
            try:
                await asyncio.to_thread(self._post_webhook, body)
            except Exception as exc:
                problems.append(f"webhook notification failed: {exc}")
        for problem in problems:
            log.warning("job %s: %s", job.id, problem)
        return "; ".join(problems)

    def _publish_sns(self, body: bytes, job: JobRecord) -> None:
        if self._sns is None:
            self._sns = s3_client(self.settings, "sns")
        self._sns.publish(
            TopicArn=self.settings.gateway_sns_topic_arn,
            Subject=f"Soriflow job {job.state.lower()}: {job.pipeline}"[:100],
            Message=body.decode(),
            MessageAttributes={
                "state": {"DataType": "String", "StringValue": job.state},
                "pipeline": {"DataType": "String", "StringValue": job.pipeline},
            },
        )

    def _post_webhook(self, body: bytes) -> None:
        assert self.settings.gateway_webhook_url
        headers = {"Content-Type": "application/json", "User-Agent": "soriflow-gateway"}
        if self.settings.gateway_webhook_secret:
            headers["X-Soriflow-Signature"] = sign(
                body, self.settings.gateway_webhook_secret.get_secret_value()
            )
        request = urllib.request.Request(
            self.settings.gateway_webhook_url, data=body, headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status >= 300:
                raise urllib.error.HTTPError(
                    self.settings.gateway_webhook_url,
                    response.status,
                    "webhook refused",
                    response.headers,
                    None,
                )
