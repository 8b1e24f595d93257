"""Hosting a service: the gRPC server every Soriflow process runs.

A service implements `GrpcService` (register servicers, load models); the
runtime adds the standard health service (NOT_SERVING until `start()` has
loaded the models), server reflection, the interceptor (auth, errors, logs,
metrics), TLS, message caps, keepalive, the metrics endpoint, and graceful
shutdown on SIGTERM: health goes NOT_SERVING so load balancers stop sending,
new RPCs are refused, and in-flight ones get `grace_period_s` to finish.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from soriflow.config import ServiceSettings
from soriflow.interceptors import RuntimeInterceptor
from soriflow.metrics import SERVICE_READY, start_metrics_server
from soriflow.security import TokenAuth, server_credentials

log = logging.getLogger("soriflow.server")

S = TypeVar("S", bound=ServiceSettings)


class GrpcService(abc.ABC, Generic[S]):
    """What a Soriflow service provides to the runtime; the rest is the runtime's job."""

    #: Short name used in logs and metrics ("stt", "tts", ...).
    name: str = "service"
    #: Fully-qualified proto service names it serves, for health and reflection.
    service_names: Sequence[str] = ()

    def __init__(self, settings: S) -> None:
        self.settings = settings

    @abc.abstractmethod
    def register(self, server: grpc.aio.Server) -> None:
        """Adds the servicers to `server`."""

    async def start(self) -> None:
        """Loads models. The port is already bound; health says NOT_SERVING until this returns."""

    async def stop(self) -> None:
        """Releases resources after in-flight RPCs have drained."""


class Server:
    """One running gRPC server around a `GrpcService`."""

    def __init__(self, service: GrpcService[Any], settings: ServiceSettings | None = None) -> None:
        self.service = service
        self.settings: ServiceSettings = settings or service.settings
        self.port = 0
        self.metrics_port: int | None = None
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._metrics_server: Any = None
        self._loader: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _grpc_options(self) -> list[tuple[str, Any]]:
        s = self.settings
        return [
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
            ("grpc.keepalive_time_ms", int(s.keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ("grpc.so_reuseport", 0),
        ]

    async def start(self, *, wait_ready: bool = False) -> None:
        """Binds the port and starts serving; models load in the background."""
        s = self.settings
        token = s.auth_token.get_secret_value() if s.auth_token else None
        interceptor = RuntimeInterceptor(auth=TokenAuth(token) if token else None, is_ready=self.ready.is_set)
        server = grpc.aio.server(
            interceptors=[interceptor],
            options=self._grpc_options(),
            maximum_concurrent_rpcs=s.max_concurrent_rpcs,
        )
        self.service.register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [*self.service.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        for name in ("", *self.service.service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

        bind = f"{s.host}:{s.port}"
        credentials = server_credentials(s)
        port = server.add_secure_port(bind, credentials) if credentials else server.add_insecure_port(bind)
        if port == 0:
            raise OSError(f"could not bind {bind}: is another process using the port?")
        await server.start()
        self._server, self.port = server, port
        if s.metrics_port is not None:
            self._metrics_server, self.metrics_port = start_metrics_server(s.metrics_port, s.host)
        SERVICE_READY.labels(self.service.name).set(0)
        log.info(
            "%s listening on %s (tls=%s, metrics port %s)",
            self.service.name,
            f"{s.host}:{port}",
            credentials is not None,
            self.metrics_port,
        )
        self._loader = asyncio.create_task(self._load(), name=f"{self.service.name}-load")
        if wait_ready:
            await self.wait_ready()

    async def _load(self) -> None:
        try:
            await self.service.start()
        except BaseException as exc:  # a service that cannot load must not pretend to be healthy
            self.failed = exc
            log.critical("%s failed to start: %s", self.service.name, exc, exc_info=exc)
            self._stopped.set()
            return
        for name in ("", *self.service.service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        SERVICE_READY.labels(self.service.name).set(1)
        self.ready.set()
        log.info("%s ready", self.service.name)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Waits until models are loaded; raises the load error if loading failed."""
        waiter = asyncio.create_task(self.ready.wait())
        stopper = asyncio.create_task(self._stopped.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            stopper.cancel()
        if self.failed is not None:
            raise RuntimeError(f"{self.service.name} failed to start: {self.failed}") from self.failed
        if not done:
            raise TimeoutError(f"{self.service.name} was not ready after {timeout}s")

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, refuse new RPCs, let in-flight ones finish within `grace`."""
        if self._server is None:
            return
        grace = self.settings.grace_period_s if grace is None else grace
        await self._health.enter_graceful_shutdown()
        SERVICE_READY.labels(self.service.name).set(0)
        log.info("%s stopping: draining in-flight RPCs for up to %.0fs", self.service.name, grace)
        await self._server.stop(grace)
        if self._loader is not None and not self._loader.done():
            self._loader.cancel()
            with contextlib.suppress(BaseException):
                await self._loader
        await self.service.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self._server = None
        self._stopped.set()
        log.info("%s stopped", self.service.name)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


@contextlib.asynccontextmanager
async def running(
    service: GrpcService[Any], *, wait_ready: bool = True, grace: float = 0.5, timeout: float | None = 600
) -> AsyncIterator[Server]:
    """A started server for the duration of the block (tests, `soriflow up`, benchmarks)."""
    server = Server(service)
    await server.start()
    try:
        if wait_ready:
            await server.wait_ready(timeout)
        yield server
    finally:
        await server.stop(grace)


async def serve(service: GrpcService[Any]) -> int:
    """Runs a service until SIGTERM/SIGINT; returns the process exit code."""
    server = Server(service)
    await server.start()
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    stop_wait = asyncio.create_task(stop_requested.wait())
    dead_wait = asyncio.create_task(server.wait_stopped())
    await asyncio.wait({stop_wait, dead_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    dead_wait.cancel()
    if server.failed is not None:
        await server.stop(0)
        return 1
    await server.stop()
    return 0


class ThreadedServer:
    """A service running on its own event loop in a background thread.

    For embedding a service in a synchronous program, and for tests and
    benchmarks that run several services side by side without sharing their
    event loop.
    """

    def __init__(self, factory: Any, *, name: str = "service") -> None:
        import threading

        self._factory = factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"soriflow-{name}", daemon=True)
        self.server: Server | None = None

    @property
    def address(self) -> str:
        assert self.server is not None, "not started"
        return self.server.address

    @property
    def service(self) -> Any:
        assert self.server is not None, "not started"
        return self.server.service

    def start(self, timeout: float = 600) -> ThreadedServer:
        """Creates the service on the server's loop (its asyncio objects live there); waits until ready."""
        self._thread.start()

        async def boot() -> Server:
            server = Server(self._factory())
            await server.start()
            await server.wait_ready(timeout)
            return server

        self.server = asyncio.run_coroutine_threadsafe(boot(), self._loop).result(timeout + 30)
        return self

    def stop(self, grace: float = 1.0) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(grace), self._loop).result(grace + 60)
            self.server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def call(self, coro: Any, timeout: float | None = None) -> Any:
        """Runs a coroutine on the server's loop (e.g. to inspect the service) and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)
