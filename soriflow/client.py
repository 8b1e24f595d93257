"""Opening channels to Soriflow services, with the same TLS and token settings as servers.

Used by the CLI, by the gateway for its stages, and by scoring for word
timestamps, so every caller gets message caps, keepalive, auth and TLS alike.
Typed helpers for the gateway's job API live in `soriflow.gateway.client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from soriflow.config import MIB, CommonSettings
from soriflow.security import channel_credentials
from soriflow.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 * MIB


class _Token:
    """Adds `authorization: Bearer <token>` to every call (works on plaintext channels too).

    One instance per call kind: grpc.aio files an interceptor under the first kind it implements
    only (unary-unary), so a single class implementing all four would never see a streaming call.
    """

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._header)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnaryToken(_Token, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamToken(_Token, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnaryToken(_Token, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


class _StreamStreamToken(_Token, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


def token_interceptors(token: str) -> list[Any]:
    """The interceptors that send `token` on calls of every kind."""
    kinds = (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)
    return [kind(token) for kind in kinds]


def open_channel(
    address: str,
    settings: CommonSettings | None = None,
    *,
    token: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> grpc.aio.Channel:
    """An aio channel to `address` with TLS/token from settings (or `token` given explicitly)."""
    settings = settings or CommonSettings()
    if token is None and settings.auth_token is not None:
        token = settings.auth_token.get_secret_value()
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.enable_retries", 1),
    ]
    interceptors = token_interceptors(token) if token else None
    credentials = channel_credentials(settings)
    if credentials is not None:
        return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


async def check_health(channel: grpc.aio.Channel, service: str = "", *, timeout: float = 5.0) -> str:
    """The health status name of `service` ("" = the whole server): SERVING, NOT_SERVING, ..."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def wait_for_serving(
    address: str,
    settings: CommonSettings | None = None,
    *,
    service: str = "",
    timeout: float = 120.0,
    interval: float = 0.25,
) -> None:
    """Polls health until SERVING; raises TimeoutError with the last status or error seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    async with open_channel(address, settings) as channel:
        while True:
            try:
                last = await check_health(channel, service, timeout=min(5.0, timeout))
                if last == "SERVING":
                    return
            except grpc.aio.AioRpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            if loop.time() >= deadline:
                raise TimeoutError(f"{address} not serving after {timeout:.0f}s (last: {last})")
            await asyncio.sleep(interval)


class GatewayClient:
    """Typed helpers over the gateway's job API.

    >>> async with GatewayClient("127.0.0.1:50050") as gw:
    ...     job = await gw.submit_file("call.wav", pipeline="call-summary")
    ...     final = await gw.wait(job.job_id)
    """

    def __init__(
        self, address: str | None = None, settings: CommonSettings | None = None, *, token: str | None = None
    ) -> None:
        self.settings = settings or CommonSettings()
        self.address = address or self.settings.gateway_address
        self.channel = open_channel(self.address, self.settings, token=token)
        self.stub = gateway_pb2_grpc.GatewayServiceStub(self.channel)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    @staticmethod
    def _request(
        audio: audio_pb2.AudioInput,
        pipeline: str,
        parameters: dict[str, str] | None,
        metadata: dict[str, str] | None,
        idempotency_key: str,
    ) -> gateway_pb2.SubmitJobRequest:
        return gateway_pb2.SubmitJobRequest(
            audio=audio,
            pipeline=pipeline,
            parameters=parameters or {},
            metadata=metadata or {},
            idempotency_key=idempotency_key,
        )

    async def submit_uri(
        self,
        uri: str,
        *,
        pipeline: str = "",
        parameters: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str = "",
    ) -> Any:
        request = self._request(
            audio_pb2.AudioInput(uri=uri), pipeline, parameters, metadata, idempotency_key
        )
        return (await self.stub.SubmitJob(request, timeout=60)).job

    async def submit_bytes(
        self,
        content: bytes,
        *,
        filename: str = "",
        pipeline: str = "",
        parameters: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str = "",
    ) -> Any:
        request = self._request(
            audio_pb2.AudioInput(content=content), pipeline, parameters, metadata, idempotency_key
        )
        request.filename = filename
        return (await self.stub.SubmitJob(request, timeout=120)).job

    async def submit_parameters(
        self,
        pipeline: str,
        *,
        parameters: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str = "",
    ) -> Any:
        """A job of a pipeline that reads no audio (e.g. nightly-story), from its parameters alone."""
        request = gateway_pb2.SubmitJobRequest(
            pipeline=pipeline,
            parameters=parameters or {},
            metadata=metadata or {},
            idempotency_key=idempotency_key,
        )
        return (await self.stub.SubmitJob(request, timeout=60)).job

    async def submit_file(self, path: str, **kwargs: Any) -> Any:
        data = await asyncio.to_thread(Path(path).read_bytes)
        return await self.submit_bytes(data, filename=Path(path).name, **kwargs)

    async def get(self, job_id: str) -> Any:
        return (await self.stub.GetJob(gateway_pb2.GetJobRequest(job_id=job_id), timeout=30)).job

    async def list(self, **filters: Any) -> Any:
        return await self.stub.ListJobs(gateway_pb2.ListJobsRequest(**filters), timeout=30)

    async def cancel(self, job_id: str) -> Any:
        return (await self.stub.CancelJob(gateway_pb2.CancelJobRequest(job_id=job_id), timeout=30)).job

    def watch(self, job_id: str) -> Any:
        """Async iterator of WatchJobResponse: the history, then live events, then the final job."""
        return self.stub.WatchJob(gateway_pb2.WatchJobRequest(job_id=job_id))

    async def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """The job in its final state (follows WatchJob)."""

        async def follow() -> Any:
            async for response in self.watch(job_id):
                if response.HasField("job"):
                    return response.job
            return await self.get(job_id)

        return await asyncio.wait_for(follow(), timeout)

    async def pipelines(self) -> Any:
        return (await self.stub.ListPipelines(gateway_pb2.ListPipelinesRequest(), timeout=30)).pipelines
