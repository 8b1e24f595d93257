"""Reading and writing `s3://bucket/key` objects with boto3.

Works against AWS (IRSA credentials in a cluster), MinIO, or moto's server
(`SORIFLOW_S3_ENDPOINT_URL`). S3 failures become typed errors with the URI in
the message: a missing object is NOT_FOUND, a denied one PERMISSION_DENIED,
an unreachable endpoint UNAVAILABLE.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import botocore.config
import botocore.exceptions

from soriflow.config import CommonSettings
from soriflow.errors import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SoriflowError,
    Unavailable,
)

CHUNK_BYTES = 1024 * 1024
#: S3's own limit on a key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
#: Characters of bucket names (S3's rules, plus '_' and capitals that old us-east-1 buckets and
#: some S3-compatible stores allow); anything else cannot name a bucket.
_BUCKET_RE = re.compile(r"[A-Za-z0-9._-]{1,255}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class S3Uri:
    """A parsed `s3://bucket/key` (key may be a prefix ending in '/')."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not uri.startswith("s3://"):
            raise InvalidArgument(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
        bucket, _, key = uri[5:].partition("/")
        if not bucket:
            raise InvalidArgument(f"S3 URI without a bucket: {uri!r}")
        return cls(bucket, key)

    @classmethod
    def parse_object(cls, uri: str, what: str = "uri") -> S3Uri:
        """An `s3://bucket/key` naming one object, checked before anything is sent to S3.

        Refused with INVALID_ARGUMENT (never retried): no key (`s3://bucket`, a
        prefix ending in '/'), a bucket name S3 cannot have, a key over S3's
        1024 bytes, control characters, and '.'/'..' segments, which S3 keeps
        literally but HTTP clients and S3-compatible stores may resolve, so
        `s3://in/users/../secret.wav` could otherwise read outside an allowed prefix.
        """
        if not uri:
            raise InvalidArgument(f"{what} is empty: expected s3://bucket/key")
        shown = uri if len(uri) <= 200 else uri[:200] + "..."
        if not uri.startswith("s3://"):
            raise InvalidArgument(f"{what} {shown!r} is not an S3 URI (expected s3://bucket/key)")
        target = cls.parse(uri)
        if not _BUCKET_RE.fullmatch(target.bucket):
            raise InvalidArgument(
                f"{what} {shown!r}: {target.bucket[:64]!r} is not a bucket name "
                "(letters, digits, '.', '-', at most 255 characters)"
            )
        if not target.key:
            raise InvalidArgument(
                f"{what} {shown!r} names a bucket, not an object: expected s3://{target.bucket}/path/to/file"
            )
        if target.key.endswith("/"):
            raise InvalidArgument(f"{what} {shown!r} names a prefix (ends in '/'), not an object")
        if len(target.key.encode()) > MAX_KEY_BYTES:
            raise InvalidArgument(
                f"{what}: the object key is {len(target.key.encode())} bytes; S3 keys are at most "
                f"{MAX_KEY_BYTES} bytes"
            )
        if _CONTROL_RE.search(target.key):
            raise InvalidArgument(f"{what} {shown!r}: the key contains control characters (NUL, newline ...)")
        if any(part in (".", "..") for part in target.key.split("/")):
            raise InvalidArgument(
                f"{what} {shown!r}: '.' and '..' segments are not allowed in keys (path traversal)"
            )
        return target

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        """A key below this prefix, inserting '/' as needed."""
        key = self.key
        for part in parts:
            part = part.strip("/")
            if not part:
                continue
            key = f"{key.rstrip('/')}/{part}" if key else part
        return S3Uri(self.bucket, key)


@dataclass(frozen=True)
class ReadAllowList:
    """The S3 locations a process may read on a caller's behalf (`SORIFLOW_READ_URIS`).

    A request that names `s3://` audio makes the service read with its own
    role; without this check any caller could have the service fetch any
    object that role can reach and hand back its transcript. Entries are
    `s3://bucket/` (the whole bucket) or `s3://bucket/prefix/` (keys under
    that folder; a missing trailing '/' is implied, so `users` does not admit
    `users2/`); the bucket may hold `*` wildcards (`s3://acme-*-input/`,
    `s3://*/` for any bucket). Empty: no S3 location may be read.
    Model specs and the gateway's own outputs are operator configuration, not
    requests, and do not pass through here.
    """

    entries: tuple[S3Uri, ...] = ()

    @classmethod
    def parse(cls, uris: Iterable[str]) -> ReadAllowList:
        """Checks and normalizes entries; raises ValueError naming a bad one (a settings error)."""
        entries = []
        for raw in uris:
            uri = raw.strip()
            if not uri.startswith("s3://"):
                raise ValueError(f"{raw!r} is not an s3://bucket/prefix/ location")
            bucket, _, key = uri[5:].partition("/")
            if not bucket or not re.fullmatch(r"[A-Za-z0-9._*-]{1,255}", bucket):
                raise ValueError(f"{raw!r} has no valid bucket name (s3://bucket/prefix/)")
            if any(part in (".", "..") for part in key.split("/")):
                raise ValueError(f"{raw!r} has '.' or '..' segments")
            key = key.lstrip("/")
            if key and not key.endswith("/"):
                key += "/"
            entries.append(S3Uri(bucket, key))
        return cls(tuple(dict.fromkeys(entries)))

    def allows(self, uri: S3Uri) -> bool:
        return any(
            fnmatch.fnmatchcase(uri.bucket, entry.bucket) and uri.key.startswith(entry.key)
            for entry in self.entries
        )

    def check(self, uri: S3Uri, what: str = "uri") -> None:
        """Raises PERMISSION_DENIED unless `uri` lies in an allowed location.

        The message names the setting but not the allowed locations: bucket
        names of a deployment are not for whoever sends a request.
        """
        if self.allows(uri):
            return
        if not self.entries:
            raise PermissionDenied(
                f"{what} {uri}: this service reads no S3 location (SORIFLOW_READ_URIS is empty); "
                "send the audio inline, or have the operator allow the bucket"
            )
        raise PermissionDenied(
            f"{what} {uri} is outside the S3 locations this deployment may read; send the audio inline, "
            "or have the operator add its bucket or prefix to SORIFLOW_READ_URIS"
        )

    def __str__(self) -> str:
        return ", ".join(str(e) for e in self.entries) or "(none)"


@dataclass(frozen=True)
class ObjectInfo:
    """What HEAD says about an object."""

    uri: S3Uri
    size: int
    etag: str
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    version_id: str | None = None
    last_modified: dt.datetime | None = None


def s3_client(settings: CommonSettings | None = None, service: str = "s3") -> Any:
    """A boto3 client for S3/SQS/SNS honouring the endpoint override, with sane timeouts and retries."""
    settings = settings or CommonSettings()
    config = botocore.config.Config(
        region_name=settings.aws_region,
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
    )
    return boto3.client(service, endpoint_url=settings.s3_endpoint_url, config=config)


def _translate(exc: Exception, uri: S3Uri | str) -> SoriflowError:
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        # boto3 refused the request before sending it (an empty key, a malformed bucket name):
        # the URI is wrong, and asking again will not fix it.
        return InvalidArgument(f"{uri} is not a valid S3 object: {exc}")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return NotFound(f"{uri} does not exist")
        if code == "NoSuchBucket":
            return NotFound(f"bucket of {uri} does not exist")
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            return PermissionDenied(f"access to {uri} denied: check the role/credentials' S3 permissions")
        if (
            code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout")
            or (status or 0) >= 500
        ):
            return Unavailable(f"S3 unavailable for {uri}: {code or status}", retry_after_s=1.0)
        return InvalidArgument(f"S3 refused {uri}: {code}: {error.get('Message', '')}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionError):
        return Unavailable(f"cannot reach S3 for {uri}: {exc}", retry_after_s=2.0)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return PermissionDenied(
            f"no AWS credentials to read {uri}: configure IRSA, a profile or AWS_* variables"
        )
    return Unavailable(f"S3 error for {uri}: {exc}")


class ObjectStore:
    """Blocking S3 operations with typed errors. Call from threads in async code."""

    def __init__(self, settings: CommonSettings | None = None, client: Any = None) -> None:
        self.settings = settings or CommonSettings()
        self._client = client

    @functools.cached_property
    def client(self) -> Any:
        return self._client or s3_client(self.settings)

    def head(self, uri: S3Uri | str) -> ObjectInfo:
        target = S3Uri.parse(uri) if isinstance(uri, str) else uri
        try:
            r = self.client.head_object(Bucket=target.bucket, Key=target.key)
        except Exception as exc:
            raise _translate(exc, target) from exc
        return ObjectInfo(
            uri=target,
            size=int(r.get("ContentLength", 0)),
            etag=str(r.get("ETag", "")).strip('"'),
            content_type=str(r.get("ContentType", "")),
            metadata={str(k): str(v) for k, v in (r.get("Metadata") or {}).items()},
            version_id=r.get("VersionId"),
            last_modified=r.get("LastModified"),
        )

    def exists(self, uri: S3Uri | str) -> bool:
        try:
            self.head(uri)
        except NotFound:
            return False
        return True

    def read_bytes(self, uri: S3Uri | str, *, max_bytes: int | None = None) -> bytes:
        """The whole object; sizes over `max_bytes` are refused before any byte is downloaded."""
        target = S3Uri.parse(uri) if isinstance(uri, str) else uri
        if max_bytes is None:
            return b"".join(self.iter_chunks(target))

        def too_big(size: str) -> ResourceExhausted:
            return ResourceExhausted(
                f"{target} is {size} bytes, over the limit of {max_bytes} bytes (SORIFLOW_AUDIO_MAX_BYTES)"
            )

        info = self.head(target)
        if info.size > max_bytes:
            raise too_big(str(info.size))
        # The object can be replaced by a bigger one between HEAD and GET: count while reading too.
        chunks, total = [], 0
        for chunk in self.iter_chunks(target):
            total += len(chunk)
            if total > max_bytes:
                raise too_big(f"more than {max_bytes}")
            chunks.append(chunk)
        return b"".join(chunks)

    def iter_chunks(self, uri: S3Uri | str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """Streams the object without holding it all in memory."""
        target = S3Uri.parse(uri) if isinstance(uri, str) else uri
        try:
            body = self.client.get_object(Bucket=target.bucket, Key=target.key)["Body"]
            try:
                yield from body.iter_chunks(chunk_bytes)
            finally:
                body.close()
        except SoriflowError:
            raise
        except Exception as exc:
            raise _translate(exc, target) from exc

    def write_bytes(
        self,
        uri: S3Uri | str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        target = S3Uri.parse(uri) if isinstance(uri, str) else uri
        try:
            r = self.client.put_object(
                Bucket=target.bucket,
                Key=target.key,
                Body=data,
                ContentType=content_type,
                Metadata=metadata or {},
            )
        except Exception as exc:
            raise _translate(exc, target) from exc
        return ObjectInfo(
            uri=target,
            size=len(data),
            etag=str(r.get("ETag", "")).strip('"'),
            content_type=content_type,
            metadata=dict(metadata or {}),
            version_id=r.get("VersionId"),
        )

    def download_file(self, uri: S3Uri | str, path: Path) -> None:
        target = S3Uri.parse(uri) if isinstance(uri, str) else uri
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(target.bucket, target.key, str(path))
        except Exception as exc:
            raise _translate(exc, target) from exc

    def upload_file(self, path: Path, uri: S3Uri | str, *, metadata: dict[str, str] | None = None) -> None:
        target = S3Uri.parse(uri) if isinstance(uri, str) else uri
        try:
            self.client.upload_file(
                str(path), target.bucket, target.key, ExtraArgs={"Metadata": metadata or {}}
            )
        except Exception as exc:
            raise _translate(exc, target) from exc

    def list_objects(self, prefix: S3Uri | str) -> Iterator[ObjectInfo]:
        """Every object under a prefix (paginated)."""
        target = S3Uri.parse(prefix) if isinstance(prefix, str) else prefix
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=target.bucket, Prefix=target.key
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        uri=S3Uri(target.bucket, item["Key"]),
                        size=int(item["Size"]),
                        etag=str(item.get("ETag", "")).strip('"'),
                        last_modified=item.get("LastModified"),
                    )
        except Exception as exc:
            raise _translate(exc, target) from exc

    def presigned_url(self, uri: S3Uri | str, expires_s: int) -> str:
        target = S3Uri.parse(uri) if isinstance(uri, str) else uri
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": target.bucket, "Key": target.key}, ExpiresIn=expires_s
        )
        return url


def key_from_event(raw_key: str) -> str:
    """Decodes an object key as S3 event notifications encode it (form encoding: '+' is a space)."""
    from urllib.parse import unquote_plus

    return unquote_plus(raw_key)


def encode_key_for_url(key: str) -> str:
    return quote(key, safe="/")
