"""examples/node: the `ws` relay sends WebM/Opus in MediaRecorder-sized chunks and gets captions."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import jiwer
import numpy as np
import pytest

from soriflow.gateway.live.service import LiveEdge
from tests.gateway.live.conftest import SENTENCES, TOKEN, url_of, webm_opus, words_of

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "node"


async def test_node_relay_gets_interims_and_finals(
    live: LiveEdge, conversation: np.ndarray, ffmpeg: str, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None or not (EXAMPLE / "node_modules" / "ws").exists():
        pytest.fail("node or examples/node/node_modules is missing: run `make test-setup` (npm ci there)")
    recording = tmp_path / "recording.webm"
    recording.write_bytes(webm_opus(conversation, ffmpeg))
    process = await asyncio.create_subprocess_exec(
        node,
        str(EXAMPLE / "relay-file.js"),
        str(recording),
        "--url",
        url_of(live),
        "--chunk-ms",
        "250",
        env={**os.environ, "SORIFLOW_AUTH_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode == 0, stderr.decode()
    messages = [json.loads(line) for line in stdout.decode().splitlines()]
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "ready"
    assert kinds[-1] == "end"
    assert "interim" in kinds
    finals = [m for m in messages if m["type"] == "final"]
    assert len(finals) == 2
    heard = words_of(" ".join(f["text"] for f in finals))
    assert jiwer.wer(words_of(" ".join(SENTENCES)), heard) <= 0.2, heard
    assert all(f["words"] for f in finals)
    assert "closed 1000" in stderr.decode()


async def test_node_relay_without_the_token_is_told_why(live: LiveEdge, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (EXAMPLE / "node_modules" / "ws").exists():
        pytest.fail("node or examples/node/node_modules is missing: run `make test-setup` (npm ci there)")
    recording = tmp_path / "empty.webm"
    recording.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k != "SORIFLOW_AUTH_TOKEN"}
    process = await asyncio.create_subprocess_exec(
        node,
        str(EXAMPLE / "relay-file.js"),
        str(recording),
        "--url",
        url_of(live),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    error = json.loads(stdout.decode().splitlines()[-1])
    assert error["type"] == "error"
    assert error["close_code"] == 4401
    assert "closed 4401" in stderr.decode()
