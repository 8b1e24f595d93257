"""Opening channels to Soriflow services, with the same TLS and token settings as servers.

Used by the CLI, by the gateway for its stages, and by scoring for word
timestamps, so every caller gets message caps, keepalive, auth and TLS alike.
Typed helpers for the gateway's job API live in `soriflow.gateway.client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from soriflow.config import MIB, CommonSettings
from soriflow.security import channel_credentials

DEFAULT_MAX_MESSAGE_BYTES = 64 * MIB


class _TokenInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <token>` to every call (works on plaintext channels too)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(*self._header)
        return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                          details.wait_for_ready)

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any,
                                     request_iterator: Any) -> Any:
        return await continuation(self._details(details), request_iterator)

    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any,
                                      request_iterator: Any) -> Any:
        return await continuation(self._details(details), request_iterator)


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
    interceptors = [_TokenInterceptor(token)] if token else None
    credentials = channel_credentials(settings)
    if credentials is not None:
        return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


async def check_health(channel: grpc.aio.Channel, service: str = "", *, timeout: float = 5.0) -> str:
    """The health status name of `service` ("" = the whole server): SERVING, NOT_SERVING, ..."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def wait_for_serving(address: str, settings: CommonSettings | None = None, *, service: str = "",
                           timeout: float = 120.0, interval: float = 0.25) -> None:
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
