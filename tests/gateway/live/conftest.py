"""Live-edge fixtures: a real tiny.en STT server and the edge in front of it, both on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from soriflow.gateway.live.service import LiveEdge
from soriflow.gateway.live.settings import Settings
from soriflow.server import Server, running
from soriflow.stt.evaluation import piper_clips
from soriflow.stt.service import create_service
from tests.stt.conftest import stt_settings
from tests.stt.speech import concat, silence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOKEN = "live-test-token/+="  # base64's own characters: the subprotocol form must carry them
SENTENCES = (
    "The weather today is sunny with a light breeze from the west.",
    "Please send the quarterly report to the finance team before Friday.",
)


@pytest_asyncio.fixture(loop_scope="package", scope="package")
async def stt_server() -> AsyncIterator[Server]:
    """tiny.en, greedy, behind the same token as the edge; two streams at most (the third is refused)."""
    settings = stt_settings(stt_beam_size=1, stt_max_streams=3, auth_token=TOKEN)
    async with running(create_service(settings)) as server:
        yield server


@contextlib.asynccontextmanager
async def edge(stt: Server, **overrides: Any) -> AsyncIterator[LiveEdge]:
    """An edge on a free port in front of `stt`, with `overrides` of its settings."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "metrics_port": None,
        "stt_address": stt.address,
        "auth_token": TOKEN,
        "grace_period_s": 1.0,
    }
    service = LiveEdge(Settings(**(base | overrides)))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest_asyncio.fixture(loop_scope="package", scope="package")
async def live(stt_server: Server) -> AsyncIterator[LiveEdge]:
    async with edge(stt_server) as service:
        yield service


@pytest.fixture(scope="package")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live-speech")


@pytest.fixture(scope="package")
def conversation(speech_dir: Path) -> np.ndarray:
    """The two sentences spoken by the piper voice, with silence around each: two utterances, 16 kHz.

    A neural voice rather than espeak-ng: after Opus at MediaRecorder-like bit rates, tiny.en
    mishears espeak's robotic voice several words a sentence, which would test the model, not
    the relay.
    """
    parts = [silence(0.5)]
    for clip in piper_clips(speech_dir, SENTENCES):
        parts += [clip.audio.samples, silence(1.2)]
    return concat(*parts)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def webm_opus(samples: np.ndarray, ffmpeg: str = "ffmpeg") -> bytes:
    """The audio as MediaRecorder would upload it (WebM/Opus, 48 kHz, 48 kb/s; Chrome records at more)."""
    return subprocess.run(
        [
            ffmpeg,
            "-loglevel",
            "error",
            "-f",
            "s16le",
            "-ar",
            "16000",
            "-ac",
            "1",
            "-i",
            "pipe:0",
            "-c:a",
            "libopus",
            "-b:a",
            "32k",
            "-ar",
            "48000",
            "-f",
            "webm",
            "pipe:1",
        ],
        input=pcm16(samples),
        capture_output=True,
        check=True,
    ).stdout


def words_of(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


@dataclass
class Outcome:
    """What a client saw on one stream."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def final_text(self) -> str:
        return " ".join(m["text"] for m in self.of("final"))

    @property
    def error(self) -> dict[str, Any]:
        errors = self.of("error")
        assert errors, f"no error message (close {self.close_code}): {self.messages}"
        return errors[0]


async def stream(
    url: str,
    chunks: Sequence[bytes],
    config: dict[str, Any] | str | bytes | None,
    *,
    token: str | None = TOKEN,
    subprotocol_token: bool = False,
    gap_s: float = 0.0,
    end: bool = True,
    headers: dict[str, str] | None = None,
) -> Outcome:
    """Opens a stream, sends `config` then `chunks` (`gap_s` apart), ends it, collects everything."""
    import base64

    headers = dict(headers or {})
    protocols = ["soriflow.live.v1"]
    if token is not None and subprotocol_token:
        protocols.append("soriflow.bearer." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("="))
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    outcome = Outcome()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=protocols, headers=headers, max_msg_size=0) as ws,
    ):

        async def send() -> None:
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
                if isinstance(config, dict):
                    await ws.send_str(json.dumps(config))
                elif isinstance(config, str):
                    await ws.send_str(config)
                elif isinstance(config, bytes):
                    await ws.send_bytes(config)
                for chunk in chunks:
                    if ws.closed:
                        return
                    await ws.send_bytes(chunk)
                    if gap_s:
                        await asyncio.sleep(gap_s)
                if end and not ws.closed:
                    await ws.send_str(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                outcome.messages.append(json.loads(message.data))
        outcome.close_code = ws.close_code
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
    return outcome


def url_of(service: LiveEdge) -> str:
    return f"ws://127.0.0.1:{service.port}/v1/live"


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
