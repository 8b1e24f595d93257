"""Reading and writing `s3://bucket/key` objects with boto3.

Works against AWS (IRSA credentials in a cluster), MinIO, or moto's server
(`SORIFLOW_S3_ENDPOINT_URL`). S3 failures become typed errors with the URI in
the message: a missing object is NOT_FOUND, a denied one PERMISSION_DENIED,
an unreachable endpoint UNAVAILABLE.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
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
