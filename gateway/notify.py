"""Telling the outside world a job ended: an SNS message and/or a signed webhook.

Every notification says the same thing twice: for people, a subject and a
plain-text body (job, pipeline, state, why it failed, links to the results);
for programs, one JSON document (`notification_document`). SNS carries both
with `MessageStructure=json`: e-mail and SMS subscribers get the text, SQS,
Lambda, HTTP(S), Firehose and `email-json` subscribers the JSON, and message
attributes (`job_id`, `state`, `pipeline`) serve subscription filter
policies. A webhook POSTs the JSON, which holds the subject and text too,
signed per Standard Webhooks (https://www.standardwebhooks.com: headers
`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256
of "id.timestamp.body">`, secret `whsec_<base64>`), so a receiver can reject
forgeries and replays older than its tolerance window with the
`standardwebhooks` library of its language.

A failed notification never fails the job; it is logged and noted in the
job's events, so the operator sees it in WatchJob and the logs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from standardwebhooks import Webhook

from soriflow.gateway.settings import Settings
from soriflow.gateway.store import JobRecord, JobStore, OutputRecord
from soriflow.storage import ObjectStore, s3_client

log = logging.getLogger("soriflow.gateway.notify")

#: SNS refuses a published message over 256 KiB (all protocols' bodies together).
SNS_MAX_BYTES = 256 * 1024
#: Protocols of SNS subscriptions that get the JSON document; the others (email, sms) the text.
JSON_PROTOCOLS = ("sqs", "lambda", "http", "https", "firehose", "application", "email-json")
_WORDS = {
    "SUCCEEDED": "succeeded",
    "PARTIAL": "finished without an optional stage",
    "FAILED": "failed",
    "CANCELLED": "was cancelled",
}


def _clock(when: dt.datetime | None) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


def subject(job: JobRecord) -> str:
    """An e-mail subject: SNS takes at most 100 printable ASCII characters, no line breaks."""
    text = f"Soriflow: {job.pipeline} job {_WORDS.get(job.state, job.state.lower())}"
    if job.needs_review:
        text += " - needs review"
    ascii_only = "".join(c if " " <= c <= "~" else "?" for c in text)
    return ascii_only[:100]


def outputs_with_links(
    outputs: list[OutputRecord], objects: ObjectStore, expiry_s: int
) -> tuple[list[dict[str, Any]], dt.datetime]:
    """Each output with a presigned link (valid for `expiry_s`), and when the links expire."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expiry_s)
    items = []
    for output in outputs:
        item: dict[str, Any] = {
            "name": output.name,
            "uri": output.uri,
            "content_type": output.content_type,
            "size_bytes": output.size_bytes,
        }
        try:
            item["url"] = objects.presigned_url(output.uri, expiry_s)
        except Exception as exc:  # no credentials to sign with: the S3 URI still says where it is
            log.warning("cannot presign %s: %s", output.uri, exc)
        items.append(item)
    return items, expires


def text_body(job: JobRecord, outputs: list[dict[str, Any]], links_expire: dt.datetime) -> str:
    """What a person reads: the job, its state and reason, and where the results are."""
    lines = [
        f"Soriflow job {job.id} ({job.pipeline}) {_WORDS.get(job.state, job.state.lower())}.",
        "",
        f"State:    {job.state}",
        f"Pipeline: {job.pipeline}",
        f"Source:   {job.source_uri}",
        f"Created:  {_clock(job.created_at)}",
        f"Ended:    {_clock(job.ended_at)}",
    ]
    if job.started_at and job.ended_at:
        lines.append(f"Took:     {(job.ended_at - job.started_at).total_seconds():.1f} s")
    if job.error:
        lines += ["", f"Reason: {job.error}" + (f" ({job.error_code})" if job.error_code else "")]
        if job.retryable:
            lines.append("The failure was transient: submitting the job again may succeed.")
    if job.needs_review:
        lines += ["", "Needs review: a person should check this result before it is trusted, because"]
        lines += [f"- {reason.message}" for reason in job.review_reasons]
    if outputs:
        lines += ["", f"Results (links valid until {_clock(links_expire)}):"]
        for output in outputs:
            lines.append(f"- {output['name']}: {output.get('url') or output['uri']}")
    labels = {k: v for k, v in job.metadata.items() if not k.startswith("soriflow-")}
    if labels:
        lines += ["", "Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))]
    return "\n".join(lines) + "\n"


def notification_document(
    job: JobRecord, outputs: list[dict[str, Any]], links_expire: dt.datetime
) -> dict[str, Any]:
    """The JSON for programs: the job's facts, plus the subject and text people get."""
    return {
        "type": f"job.{job.state.lower()}",
        "job_id": job.id,
        "pipeline": job.pipeline,
        "state": job.state,
        "source_uri": job.source_uri,
        "metadata": job.metadata,
        "error": job.error,
        "error_code": job.error_code,
        # A transient failure: resubmitting (or redriving the dead letter) may succeed.
        "retryable": job.retryable,
        # A pipeline gate failed: a person should check the result (each reason: gate, stage, signal,
        # observed, requirement, message).
        "needs_review": job.needs_review,
        "review_reasons": [
            json_format.MessageToDict(r, preserving_proto_field_name=True) for r in job.review_reasons
        ],
        "outputs": outputs,
        "links_expire_at": links_expire.isoformat(),
        "created_at": job.created_at.isoformat(),
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "subject": subject(job),
        "text": text_body(job, outputs, links_expire),
    }


def sns_message(text: str, document: dict[str, Any]) -> str:
    """The per-protocol bodies for `MessageStructure=json` (text by default, JSON for programs)."""
    body = json.dumps(document, ensure_ascii=False)
    structure: dict[str, str] = {"default": text, "email": text, "sms": document["subject"]}
    structure |= dict.fromkeys(JSON_PROTOCOLS, body)
    message = json.dumps(structure, ensure_ascii=False)
    if len(message.encode()) <= SNS_MAX_BYTES:
        return message
    # Too big to repeat per protocol: every subscriber gets the JSON once (it holds the text too).
    return json.dumps({"default": body}, ensure_ascii=False)


def webhook_id(job: JobRecord) -> str:
    """The same for a repeated delivery of one job end (receivers deduplicate on it), new for another."""
    ended = int(job.ended_at.timestamp() * 1000) if job.ended_at else 0
    return f"msg_{job.id}_{job.state.lower()}_{ended}"


class Notifier:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        objects: ObjectStore | None = None,
        presign_expiry_s: Callable[[str], int] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        #: Link validity by pipeline name (a pipeline may set its own); default: the setting.
        self.presign_expiry_s = presign_expiry_s or (lambda _pipeline: settings.gateway_presign_expiry_s)
        self.objects = objects or ObjectStore(settings)
        self._sns: Any = None
        secret = settings.gateway_webhook_secret
        self._webhook = Webhook(secret.get_secret_value()) if secret else None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.gateway_sns_topic_arn or self.settings.gateway_webhook_url)

    async def job_finished(self, job: JobRecord) -> str:
        """Sends the notifications; returns a note about failures ('' when all went out)."""
        if not self.enabled:
            return ""
        records = await asyncio.to_thread(self.store.outputs, job.id)
        outputs, expires = await asyncio.to_thread(
            outputs_with_links, records, self.objects, self.presign_expiry_s(job.pipeline)
        )
        document = notification_document(job, outputs, expires)
        problems = []
        if self.settings.gateway_sns_topic_arn:
            try:
                await asyncio.to_thread(self._publish_sns, document, job)
            except Exception as exc:
                problems.append(f"SNS notification failed: {exc}")
        if self.settings.gateway_webhook_url:
            try:
                body = json.dumps(document, ensure_ascii=False).encode()
                await asyncio.to_thread(self._post_webhook, body, webhook_id(job))
            except Exception as exc:
                problems.append(f"webhook notification failed: {exc}")
        for problem in problems:
            log.warning("job %s: %s", job.id, problem)
        return "; ".join(problems)

    def _publish_sns(self, document: dict[str, Any], job: JobRecord) -> None:
        if self._sns is None:
            self._sns = s3_client(self.settings, "sns")
        self._sns.publish(
            TopicArn=self.settings.gateway_sns_topic_arn,
            Subject=document["subject"],
            Message=sns_message(document["text"], document),
            MessageStructure="json",
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in (
                    ("job_id", job.id),
                    ("state", job.state),
                    ("pipeline", job.pipeline),
                    ("needs_review", "true" if job.needs_review else "false"),
                )
            },
        )

    def signed_headers(self, body: bytes, message_id: str, now: dt.datetime | None = None) -> dict[str, str]:
        """Standard Webhooks headers for `body` (no signature without a secret)."""
        now = now or dt.datetime.now(dt.UTC)
        headers = {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp()))}
        if self._webhook is not None:
            headers["webhook-signature"] = self._webhook.sign(message_id, now, body)
        return headers

    def _post_webhook(self, body: bytes, message_id: str) -> None:
        assert self.settings.gateway_webhook_url
        headers = {"Content-Type": "application/json", "User-Agent": "soriflow-gateway"}
        headers |= self.signed_headers(body, message_id)
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
