"""The gateway process: job API, SQS consumer, scheduler, cron schedules and store, on the shared runtime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid

import grpc

from soriflow.gateway import loopguard
from soriflow.gateway.api import GatewayServicer, add_to_server
from soriflow.gateway.clients import ServiceClients
from soriflow.gateway.consumer import SqsConsumer
from soriflow.gateway.events import EventBus, EventLog
from soriflow.gateway.jobs import JobService
from soriflow.gateway.notify import Notifier
from soriflow.gateway.outputs import OutputWriter
from soriflow.gateway.pipelines import PipelineRegistry
from soriflow.gateway.runner import JobRunner
from soriflow.gateway.scheduler import Scheduler
from soriflow.gateway.schedules import ScheduleRunner
from soriflow.gateway.settings import Settings
from soriflow.gateway.store import JobStore
from soriflow.gateway.views import JobViews
from soriflow.server import GrpcService
from soriflow.storage import ObjectStore, s3_client

log = logging.getLogger("soriflow.gateway")


class GatewayService(GrpcService[Settings]):
    name = "gateway"
    service_names = ("soriflow.v1.GatewayService",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # Configuration errors surface here, before the port opens: a bad pipeline file or an
        # output prefix that would loop must stop the process, not a job.
        self.registry = PipelineRegistry.load(settings.gateway_pipelines_file)
        loopguard.check_static(settings.gateway_output_uri, settings.gateway_input_uris)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.store = JobStore.open(
            settings.gateway_database_url,
            upgrade=settings.gateway_database_upgrade,
            wait_s=settings.gateway_database_wait_s,
            sqlite_synchronous=settings.gateway_sqlite_synchronous,
        )
        self.objects = ObjectStore(settings)
        self.clients = ServiceClients(settings)
        self.bus = EventBus()
        self.events = EventLog(self.store, self.bus)
        self.runner = JobRunner(
            store=self.store,
            registry=self.registry,
            clients=self.clients,
            outputs=OutputWriter(objects=self.objects, output_uri=settings.gateway_output_uri),
            events=self.events,
            notifier=Notifier(
                settings,
                self.store,
                presign_expiry_s=lambda name: self.registry.presign_expiry_s(
                    name, settings.gateway_presign_expiry_s
                ),
            ),
            worker_id=self.worker_id,
            lease_s=settings.gateway_lease_s,
        )
        self.scheduler = Scheduler(
            runner=self.runner, store=self.store, concurrency=settings.gateway_concurrency
        )
        self.jobs = JobService(
            store=self.store,
            objects=self.objects,
            registry=self.registry,
            settings=settings,
            submissions_uri=settings.gateway_submissions_uri,
        )
        self.views = JobViews(
            store=self.store,
            objects=self.objects,
            registry=self.registry,
            clients=self.clients,
            presign_expiry_s=settings.gateway_presign_expiry_s,
        )
        self.servicer = GatewayServicer(
            settings=settings,
            store=self.store,
            jobs=self.jobs,
            registry=self.registry,
            scheduler=self.scheduler,
            views=self.views,
            events=self.events,
        )
        self.schedules = ScheduleRunner(
            store=self.store,
            jobs=self.jobs,
            scheduler=self.scheduler,
            registry=self.registry,
            settings=settings,
            owner=self.worker_id,
        )
        self.consumer: SqsConsumer | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, server: grpc.aio.Server) -> None:
        add_to_server(self.servicer, server)

    async def start(self) -> None:
        s = self.settings
        await asyncio.to_thread(
            loopguard.check_bucket_notifications, self.objects.client, s.gateway_output_uri
        )
        self._tasks.append(
            asyncio.create_task(
                self.scheduler.recover(self._stop, sqs_stale_s=s.gateway_visibility_timeout_s),
                name="gateway-recover",
            )
        )
        self._tasks.append(asyncio.create_task(self.schedules.run(self._stop), name="gateway-schedules"))
        if s.gateway_queue_url:
            self.consumer = SqsConsumer(
                sqs=s3_client(s, "sqs"),
                queue_url=s.gateway_queue_url,
                scheduler=self.scheduler,
                jobs=self.jobs,
                store=self.store,
                objects=self.objects,
                output_uri=s.gateway_output_uri,
                wait_s=s.gateway_receive_wait_s,
                visibility_s=s.gateway_visibility_timeout_s,
                retry_delay_s=s.gateway_retry_delay_s,
            )
            self._tasks.append(asyncio.create_task(self.consumer.run(self._stop), name="gateway-consumer"))
        else:
            log.info("no SORIFLOW_GATEWAY_QUEUE_URL: serving the job API only (no SQS consumer)")
        log.info("gateway %s ready: pipelines %s", self.worker_id, ", ".join(sorted(self.registry.by_name)))

    async def stop(self) -> None:
        """Stop receiving, let in-flight jobs finish within the grace period, hand back the rest."""
        self._stop.set()
        # One grace period for everything: the consumer's messages and the API jobs share it.
        deadline = asyncio.get_running_loop().time() + self.settings.grace_period_s
        if self.consumer is not None:
            await self.consumer.drain(deadline)
        await self.scheduler.shutdown(deadline)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self.clients.close()
        self.store.close()


def create_service(settings: Settings) -> GatewayService:
    return GatewayService(settings)
