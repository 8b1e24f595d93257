"""Typed errors that carry their gRPC status code.

Service code raises these; the runtime's interceptor turns them into the
status code and message the client sees. Anything else that escapes a
servicer is a bug: the client gets INTERNAL with a request id to quote, and
the traceback goes to the log, never over the wire.
"""

from __future__ import annotations

import grpc


class SoriflowError(Exception):
    """An error with a gRPC status code and a message a person can act on."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, retry_after_s: float | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Suggested wait before retrying, sent to clients as google.rpc.RetryInfo.
        self.retry_after_s = retry_after_s
        #: The request field at fault (e.g. "streaming_config", "audio_content"), sent to clients as a
        #: google.rpc.BadRequest field violation: a relay tells a bad config from bad audio by it.
        self.field = field


class InvalidArgument(SoriflowError):
    """The request itself is wrong (bad audio, bad config); retrying will not help."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SoriflowError):
    """A named thing (object, voice, job, model) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(SoriflowError):
    """The thing to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(SoriflowError):
    """The system is not in a state that allows the operation (e.g. cancel a finished job)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(SoriflowError):
    """A limit was hit: input too large, queue full, quota spent."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SoriflowError):
    """A dependency or the service itself cannot serve right now; retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(SoriflowError):
    """The caller did not prove who it is."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(SoriflowError):
    """The caller may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(SoriflowError):
    """The work could not finish before the caller's deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(SoriflowError):
    """The caller went away; the work was stopped."""

    code = grpc.StatusCode.CANCELLED


class Internal(SoriflowError):
    """A fault inside the service (a failing engine, a broken invariant)."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[SoriflowError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        Unauthenticated,
        PermissionDenied,
        DeadlineExceeded,
        Cancelled,
        Internal,
    )
}


def error_for_code(code: grpc.StatusCode, message: str) -> SoriflowError:
    """The typed error for a status code, e.g. to re-raise what a downstream service said."""
    return _BY_CODE.get(code, Internal)(message)


def bad_request_field(error: grpc.RpcError) -> str | None:
    """The field of the first google.rpc.BadRequest violation a server sent with `error`, if any."""
    from google.rpc import error_details_pb2, status_pb2

    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                violations = error_details_pb2.BadRequest()
                if detail.Unpack(violations) and violations.field_violations:
                    return str(violations.field_violations[0].field)
    return None


def from_rpc_error(error: grpc.RpcError, *, service: str = "") -> SoriflowError:
    """Turns a client-side RpcError into the typed error, keeping code and details.

    Used where one service calls another (scoring -> stt, gateway -> stages) so
    the original reason reaches the end user with its code.
    """
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    prefix = f"{service}: " if service else ""
    return error_for_code(code, f"{prefix}{details}")
