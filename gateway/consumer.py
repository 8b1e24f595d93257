"""The SQS consumer: S3 event notifications in, jobs run exactly once, messages deleted last.

Practices AWS documents for SQS consumers: long polling; a visibility
timeout renewed while the job runs (so no other consumer receives the message
meanwhile); the message deleted only after the job's outputs are durable and
its final state is stored; a retryable failure leaves the message to come back
after a delay, and the queue's redrive policy moves it to the dead-letter
queue after maxReceiveCount receives — the failed job and its reason stay in
the store (the last receive's failure is final: it is notified and runs the
pipeline's failure path). A message whose job another worker holds under a
live lease is not deleted but comes back after that lease would have expired,
so a job whose worker died is taken over, never stranded. `s3:TestEvent`
messages are acknowledged and skipped; a message with several records runs
each; keys are URL-decoded as S3 encodes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from soriflow.errors import NotFound
from soriflow.gateway.jobs import JobService
from soriflow.gateway.outputs import JOB_ID_KEY, OUTPUT_MARKER
from soriflow.gateway.scheduler import Scheduler
from soriflow.gateway.states import JobState
from soriflow.gateway.store import JobStore, utcnow
from soriflow.storage import ObjectStore, S3Uri, key_from_event

log = logging.getLogger("soriflow.gateway.consumer")

MESSAGES = Counter("soriflow_gateway_messages_total", "SQS messages handled, by outcome.", ["outcome"])


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str
    event_name: str
    etag: str = ""
    version_id: str = ""
    size: int = 0


class NotAnS3Event(ValueError):
    """The message body is not an S3 event notification (nor SNS-wrapped one)."""


def parse_message(body: str) -> list[ObjectEvent] | None:
    """The object events of a message; None for s3:TestEvent. Raises NotAnS3Event for anything else."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise NotAnS3Event(f"body is not JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:  # via SNS
        return parse_message(str(data["Message"]))
    if isinstance(data, dict) and data.get("Event") == "s3:TestEvent":
        return None
    records = data.get("Records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise NotAnS3Event("no Records list: not an S3 event notification")
    events = []
    for record in records:
        try:
            s3 = record["s3"]
            obj = s3["object"]
            events.append(
                ObjectEvent(
                    bucket=str(s3["bucket"]["name"]),
                    key=key_from_event(str(obj["key"])),
                    event_name=str(record.get("eventName", "")),
                    etag=str(obj.get("eTag", "")),
                    version_id=str(obj.get("versionId", "") or ""),
                    size=int(obj.get("size", 0) or 0),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NotAnS3Event(f"malformed S3 record: missing {exc}") from exc
    return events


class SqsConsumer:
    def __init__(
        self,
        *,
        sqs: Any,
        queue_url: str,
        scheduler: Scheduler,
        jobs: JobService,
        store: JobStore,
        objects: ObjectStore,
        output_uri: str,
        wait_s: int,
        visibility_s: int,
        retry_delay_s: int,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.scheduler = scheduler
        self.jobs = jobs
        self.store = store
        self.objects = objects
        self.output = S3Uri.parse(output_uri)
        self.wait_s = wait_s
        self.visibility_s = visibility_s
        self.retry_delay_s = retry_delay_s
        self._in_flight: set[asyncio.Task[None]] = set()
        self._free = asyncio.Semaphore(scheduler.concurrency)
        #: The queue's redrive maxReceiveCount (None: no redrive, a failing message returns forever).
        self.max_receive_count: int | None = None

    async def _read_redrive_policy(self) -> None:
        try:
            attrs = await asyncio.to_thread(
                self.sqs.get_queue_attributes, QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
            )
            policy = json.loads(attrs.get("Attributes", {}).get("RedrivePolicy", "") or "{}")
            self.max_receive_count = int(policy["maxReceiveCount"]) if "maxReceiveCount" in policy else None
        except Exception as exc:  # not fatal: every retryable failure then counts as not final
            log.warning("could not read the redrive policy of %s: %s", self.queue_url, exc)
        if self.max_receive_count is None:
            log.warning(
                "%s has no redrive policy: a message that keeps failing returns forever", self.queue_url
            )

    def _last_receive(self, message: dict[str, Any]) -> bool:
        """True when the queue moves this message to the dead-letter queue instead of returning it."""
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1") or 1)
        return self.max_receive_count is not None and count >= self.max_receive_count

    async def run(self, stop: asyncio.Event) -> None:
        """Receives until `stop` is set; then lets in-flight messages finish (see `drain`)."""
        log.info("consuming %s with concurrency %d", self.queue_url, self.scheduler.concurrency)
        await self._read_redrive_policy()
        while not stop.is_set():
            await self._free.acquire()
            free = 1
            while free < 10 and not self._free.locked():  # take every free slot, up to SQS's batch of 10
                await self._free.acquire()
                free += 1
            try:
                receive = asyncio.create_task(
                    asyncio.to_thread(
                        self.sqs.receive_message,
                        QueueUrl=self.queue_url,
                        MaxNumberOfMessages=free,
                        WaitTimeSeconds=self.wait_s,
                        VisibilityTimeout=self.visibility_s,
                        MessageSystemAttributeNames=["ApproximateReceiveCount"],
                    )
                )
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({receive, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not receive.done():  # stop requested mid-poll: messages received now are released below
                    response = await receive
                    for message in response.get("Messages", []):
                        await self._release(message, 0)
                    break
                response = receive.result()
            except Exception:
                log.exception("receive from %s failed; retrying", self.queue_url)
                for _ in range(free):
                    self._free.release()
                await asyncio.sleep(2)
                continue
            messages = response.get("Messages", [])
            for _ in range(free - len(messages)):
                self._free.release()
            for message in messages:
                task = asyncio.create_task(self._handle_and_release_slot(message))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def drain(self, deadline: float) -> None:
        """Graceful shutdown: in-flight messages finish by `deadline` (loop time) or are released."""
        if self._in_flight:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            _, still = await asyncio.wait(self._in_flight, timeout=timeout)
            for task in still:
                task.cancel()
            for task in still:
                with contextlib.suppress(BaseException):
                    await task

    async def _handle_and_release_slot(self, message: dict[str, Any]) -> None:
        try:
            await self.handle(message)
        finally:
            self._free.release()

    async def handle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        heartbeat = asyncio.create_task(self._keep_invisible(receipt))
        try:
            try:
                events = parse_message(message.get("Body", ""))
            except NotAnS3Event as exc:
                # Never dropped: left for the dead-letter queue, where a person can read it.
                log.error(
                    "message %s is not an S3 event (%s); leaving it for the dead-letter queue",
                    message.get("MessageId"),
                    exc,
                )
                MESSAGES.labels("unparseable").inc()
                await self._release(message, self.retry_delay_s)
                return
            if events is None:
                log.info("s3:TestEvent received; acknowledged")
                MESSAGES.labels("test_event").inc()
                await self._delete(receipt)
                return
            last = self._last_receive(message)
            delays = [await self._handle_event(e, last_attempt=last) for e in events]
            wanted = [d for d in delays if d is not None]
            if not wanted:
                await self._delete(receipt)
                MESSAGES.labels("done").inc()
            else:
                MESSAGES.labels("retry").inc()
                await self._release(message, max(wanted))
        except asyncio.CancelledError:  # shutdown: make the message visible to another consumer now
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(message, 0))
            raise
        finally:
            heartbeat.cancel()

    async def _handle_event(self, event: ObjectEvent, *, last_attempt: bool = False) -> int | None:
        """Processes one object event; None when done with it, else seconds until the message returns."""
        if not event.event_name.startswith("ObjectCreated"):
            log.info("ignoring %s for s3://%s/%s", event.event_name, event.bucket, event.key)
            return None
        uri = S3Uri(event.bucket, event.key)
        if event.bucket == self.output.bucket and event.key.startswith(self.output.key):
            log.warning("ignoring %s: it is under the output prefix %s (loop guard)", uri, self.output)
            return None
        try:
            info = await asyncio.to_thread(self.objects.head, uri)
        except NotFound:
            info = None
        if info is not None and (OUTPUT_MARKER in info.metadata or JOB_ID_KEY in info.metadata):
            log.info("ignoring %s: written by Soriflow (job %s)", uri, info.metadata.get(JOB_ID_KEY, "?"))
            return None
        accepted = await self.jobs.accept_object(uri, info, event_version=event.version_id or event.etag)
        job = accepted.job
        if not accepted.created:
            log.info("%s: job %s already exists (%s)", uri, job.id, job.state)
        if job.final:
            return None
        ran = await self.scheduler.run_job(job, accepted.pipeline, last_attempt=last_attempt)
        if ran is None:  # not claimed: see who has it
            ran = await asyncio.to_thread(self.store.get_job, job.id)
            if ran is None:
                return None
            if ran.state is JobState.RUNNING:
                # Another worker holds the job under a live lease (a duplicate delivery, or a worker
                # that died moments ago). Deleting the message would strand the job if that worker is
                # dead: let it come back once the lease would have expired; by then the job is
                # finished (the message is deleted) or free to take over.
                expires = ran.lease_expires_at or utcnow()
                remaining = max(0.0, (expires - utcnow()).total_seconds())
                log.info("%s: job %s is held by %s; the message returns later", uri, job.id, ran.lease_owner)
                return min(43200, math.ceil(remaining) + 1)
        if ran.final:
            return None
        # A retryable failure (the message comes back, or goes to the dead-letter queue), or a job
        # still queued (cancel raced the claim): try again later.
        return self.retry_delay_s

    async def _keep_invisible(self, receipt: str) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.visibility_s / 3))
            try:
                await asyncio.to_thread(
                    self.sqs.change_message_visibility,
                    QueueUrl=self.queue_url,
                    ReceiptHandle=receipt,
                    VisibilityTimeout=self.visibility_s,
                )
            except Exception as exc:
                log.warning("could not extend message visibility: %s", exc)

    async def _delete(self, receipt: str) -> None:
        await asyncio.to_thread(self.sqs.delete_message, QueueUrl=self.queue_url, ReceiptHandle=receipt)

    async def _release(self, message: dict[str, Any], delay_s: int) -> None:
        await asyncio.to_thread(
            self.sqs.change_message_visibility,
            QueueUrl=self.queue_url,
            ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=delay_s,
        )
