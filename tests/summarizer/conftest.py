"""Fixtures of the summarizer tests: tiny models built here, a real SmolLM2 server per module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soriflow.server import Server, running
from soriflow.summarizer.service import create_service
from soriflow.summarizer.settings import Settings
from tests.summarizer.tiny import build_bart, build_causal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: The float copy of the bundled GGUF model takes tens of seconds to make, so the tests keep it
#: across sessions in the machine's temp folder (never the user's cache); the completion marker
#: and lock make that safe for concurrent sessions.
MODEL_CACHE = Path(tempfile.gettempdir()) / "soriflow-test-summarizer-cache"


def summarizer_settings(**overrides: Any) -> Settings:
    """Loopback settings for a test server (no metrics port, text logs, one torch thread)."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": None,
        "log_format": "text",
        "summarizer_device": "cpu",
        "summarizer_cpu_threads": 1,
    }
    return Settings(**(base | overrides))


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_causal(tmp_path_factory.mktemp("tiny-causal"))


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bart(tmp_path_factory.mktemp("tiny-bart"))


@contextlib.contextmanager
def server_in_thread(settings: Settings) -> Iterator[Server]:
    """A real server on its own event loop in a thread, for synchronous tests (CLI with --server)."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["stop"], holder["loop"] = stop, asyncio.get_running_loop()
        try:
            async with running(create_service(settings)) as server:
                holder["server"] = server
                ready.set()
                await stop.wait()
        except BaseException as exc:
            holder["error"] = exc
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    ready.wait(600)
    if "error" in holder:
        raise RuntimeError(f"summarizer server failed: {holder['error']}")
    try:
        yield holder["server"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(60)
