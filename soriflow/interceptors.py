"""The one server interceptor every Soriflow service runs behind.

It does, for every RPC: authentication (bearer token), a request id, refusal
while models load, mapping of typed errors to status codes (with RetryInfo
when a retry hint exists), a log line, and Prometheus metrics. Servicers
therefore contain only their own logic and raise `soriflow.errors` types.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from soriflow.errors import SoriflowError
from soriflow.logs import request_id_var
from soriflow.metrics import RPC_IN_FLIGHT, RPC_LATENCY, RPC_REQUESTS
from soriflow.security import TokenAuth

log = logging.getLogger("soriflow.rpc")

#: Open without a token and while loading: probes must always get an answer.
HEALTH_PREFIX = "/grpc.health.v1.Health/"
#: Open while loading (grpcurl can list the API during start-up) but behind the token like the API:
#: the schema of a private deployment is not for anonymous callers.
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
REQUEST_ID_KEY = "x-request-id"


def split_method(full_method: str) -> tuple[str, str]:
    """'/soriflow.v1.SpeechToTextService/Recognize' -> ('soriflow.v1.SpeechToTextService', 'Recognize')."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def rich_status_metadata(error: SoriflowError, request_id: str) -> tuple[tuple[str, str | bytes], ...]:
    """Trailing metadata with the request id and, when set, google.rpc.RetryInfo and BadRequest."""
    metadata: list[tuple[str, str | bytes]] = [(REQUEST_ID_KEY, request_id)]
    details = []
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(detail)
    if error.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        details.append(detail)
    if details:
        status = status_pb2.Status(code=error.code.value[0], message=error.message, details=details)
        metadata.append(("grpc-status-details-bin", status.SerializeToString()))
    return tuple(metadata)


def retry_after_from(error: grpc.RpcError) -> float | None:
    """The server's RetryInfo delay from a client-side error, in seconds, if it sent one."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


class _Call:
    """Book-keeping of one RPC: id, timing, outcome."""

    def __init__(self, interceptor: RuntimeInterceptor, method: str, metadata: Any) -> None:
        self.interceptor = interceptor
        self.grpc_service, self.method = split_method(method)
        given = dict(metadata or ()).get(REQUEST_ID_KEY)
        self.request_id = given if isinstance(given, str) and 0 < len(given) <= 128 else uuid.uuid4().hex
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()

    def begin(self) -> None:
        request_id_var.set(self.request_id)
        RPC_IN_FLIGHT.labels(self.grpc_service, self.method).inc()

    def end(self) -> None:
        elapsed = time.perf_counter() - self.started
        code = self.code.name
        RPC_IN_FLIGHT.labels(self.grpc_service, self.method).dec()
        RPC_REQUESTS.labels(self.grpc_service, self.method, code).inc()
        RPC_LATENCY.labels(self.grpc_service, self.method, code).observe(elapsed)
        level = (
            logging.INFO if self.code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else logging.WARNING
        )
        log.log(
            level,
            "rpc %s/%s %s in %.1f ms",
            self.grpc_service,
            self.method,
            code,
            elapsed * 1000,
            extra={"grpc_method": self.method, "grpc_code": code, "duration_ms": round(elapsed * 1000, 1)},
        )

    async def check(self, context: grpc.aio.ServicerContext) -> None:
        if not self.interceptor.is_ready():
            raise _Refused(
                grpc.StatusCode.UNAVAILABLE, "the service is still loading its models; retry in a few seconds"
            )
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise _Refused(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request started"
            )

    async def fail(self, context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        """Aborts the RPC with the status that `exc` stands for; re-raises what must propagate."""
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):  # client gone or deadline passed
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, grpc.aio.AbortError):  # the servicer aborted on purpose
            self.code = context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        if isinstance(exc, _Refused):
            self.code = exc.code
            await context.abort(exc.code, exc.message, trailing_metadata=((REQUEST_ID_KEY, self.request_id),))
        if isinstance(exc, SoriflowError):
            self.code = exc.code
            await context.abort(
                exc.code, exc.message, trailing_metadata=rich_status_metadata(exc, self.request_id)
            )
        if isinstance(exc, NotImplementedError):  # a generated servicer base for a method not written
            self.code = grpc.StatusCode.UNIMPLEMENTED
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{self.grpc_service}/{self.method} is not implemented by this server",
                trailing_metadata=((REQUEST_ID_KEY, self.request_id),),
            )
        self.code = grpc.StatusCode.INTERNAL
        log.error("unhandled error in %s/%s", self.grpc_service, self.method, exc_info=exc)
        await context.abort(
            grpc.StatusCode.INTERNAL,
            f"internal error ({type(exc).__name__}); quote request id {self.request_id} to the operator",
            trailing_metadata=((REQUEST_ID_KEY, self.request_id),),
        )


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RuntimeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Auth, readiness, request ids, error mapping, logs and metrics for every method."""

    def __init__(self, *, auth: TokenAuth | None, is_ready: Callable[[], bool]) -> None:
        self.auth = auth
        self.is_ready = is_ready

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        metadata = details.invocation_metadata  # type: ignore[attr-defined]
        authorized = self.auth is None or self.auth.check(metadata)
        if authorized and method.startswith(REFLECTION_PREFIXES):
            return handler
        return _wrap(handler, lambda: _Call(self, method, metadata), unauthenticated=not authorized)


def _wrap(handler: grpc.RpcMethodHandler, new_call: Callable[[], _Call], *, unauthenticated: bool) -> Any:
    async def deny(call: _Call, context: grpc.aio.ServicerContext) -> None:
        call.code = grpc.StatusCode.UNAUTHENTICATED
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'",
            trailing_metadata=((REQUEST_ID_KEY, call.request_id),),
        )

    if not handler.response_streaming:
        behaviour = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = new_call()
            call.begin()
            try:
                if unauthenticated:
                    await deny(call, context)
                await call.check(context)
                return await behaviour(request, context)
            except BaseException as exc:
                await call.fail(context, exc)
            finally:
                call.end()

        factory = (
            grpc.stream_unary_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        return factory(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    behaviour_stream = handler.unary_stream or handler.stream_stream

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = new_call()
        call.begin()
        try:
            if unauthenticated:
                await deny(call, context)
            await call.check(context)
            async for response in behaviour_stream(request, context):
                yield response
        except BaseException as exc:
            await call.fail(context, exc)
        finally:
            call.end()

    factory = (
        grpc.stream_stream_rpc_method_handler
        if handler.request_streaming
        else grpc.unary_stream_rpc_method_handler
    )
    return factory(
        streaming,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
