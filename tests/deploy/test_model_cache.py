"""The node model cache the chart gives s3:// models by default (one hostPath per node, shared
by every pod there): pulls started at once by several pods on one node download a model once,
and each pod then finds the complete copy. Pods are processes here, sharing one directory the
way containers share a hostPath (same kernel, so the same file locks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = """
import logging, os, sys, time
from pathlib import Path
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
gate = Path(sys.argv[2])
while not gate.exists():  # start every pull at the same moment
    time.sleep(0.01)
from soriflow.models import resolve_model
print("resolved", resolve_model(sys.argv[1]).path, flush=True)
"""


@pytest.fixture
def model_in_s3(s3_env: str) -> str:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    s3.create_bucket(Bucket="node-cache-models")
    for index in range(8):  # enough objects that the pulls overlap
        s3.put_object(
            Bucket="node-cache-models", Key=f"whisper-x/part-{index}.bin", Body=os.urandom(256 * 1024)
        )
    s3.put_object(Bucket="node-cache-models", Key="whisper-x/config.json", Body=b"{}")
    return "s3://node-cache-models/whisper-x/"


def test_pods_on_one_node_download_a_model_once(model_in_s3: str, s3_env: str, tmp_path: Path) -> None:
    node_cache = tmp_path / "var-cache-soriflow"  # the hostPath, mounted at SORIFLOW_CACHE_DIR
    gate = tmp_path / "go"
    env = {**os.environ, "SORIFLOW_CACHE_DIR": str(node_cache), "SORIFLOW_S3_ENDPOINT_URL": s3_env}
    pods = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, model_in_s3, str(gate)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    time.sleep(1.0)  # let the interpreters start and wait at the gate
    gate.touch()
    outputs = []
    for pod in pods:
        out, _ = pod.communicate(timeout=120)
        assert pod.returncode == 0, out
        outputs.append(out)
    downloads = sum(out.count("soriflow.models copied") for out in outputs)
    assert downloads == 1, outputs
    paths = {
        line.split(" ", 1)[1] for out in outputs for line in out.splitlines() if line.startswith("resolved ")
    }
    [path] = paths
    model = Path(path)
    assert model.parent.parent == node_cache / "models"  # one folder per model under the node cache
    assert sorted(p.name for p in model.iterdir() if not p.name.startswith(".")) == [
        "config.json",
        *[f"part-{i}.bin" for i in range(8)],
    ]
    assert (model / ".soriflow-complete").is_file()
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".partial-")]
