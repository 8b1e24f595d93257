"""A real llama.cpp server (llama-cpp-python's, OpenAI-compatible) on loopback, and a faulty proxy for it.

The server serves the bundled SmolLM2-135M GGUF as it is, with an API key.
A real server cannot be made to answer 429 or stall on cue, so `FaultProxy`,
a small real HTTP server on loopback, stands in front of it: it answers the
first requests with a chosen status (429, 503) or stalls, then forwards
everything (streamed responses included, chunk by chunk), and notes when
its client hangs up.

llama-cpp-python compiles llama.cpp on install (`make llama`, which `make test`
runs). Without it these tests skip with the reason, except under CI (`CI` set),
where they fail: CI must run them.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import free_port

MODEL_ALIAS = "smollm2-135m-instruct"


def require_llama_cpp() -> None:
    """Skips (locally) or fails (CI) when llama-cpp-python with its server is not installed."""
    try:
        import llama_cpp
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        reason = (
            f"llama-cpp-python[server] is not installed ({exc}): run `make llama` "
            "(compiles llama.cpp once, minutes; `make test` does it)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the llama.cpp tests")
        pytest.skip(reason)


def bundled_gguf() -> Path:
    from soriflow.summarizer.models import locate_gguf

    return locate_gguf(MODEL_ALIAS).path


@dataclass
class LlamaServer:
    base_url: str
    api_key: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def llama_server(api_key: str, *, threads: int = 1, startup_s: float = 180) -> Iterator[LlamaServer]:
    """`python -m llama_cpp.server` with the bundled GGUF on a free loopback port, until the block ends."""
    require_llama_cpp()
    port = free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - the server's request log; errors show via the probe
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(bundled_gguf()),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api_key",
        api_key,
        "--n_ctx",
        "2048",
        "--n_threads",
        str(threads),
        "--verbose",
        "false",
        # Its default cuts a running stream short when another request arrives: concurrent clients
        # (the `openai` engine sends them) need each answer whole.
        "--interrupt_requests",
        "false",
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"llama.cpp server exited with {process.returncode}: {err[-2000:]}")
            request = urllib.request.Request(
                f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server not ready after {startup_s:.0f}s")
            time.sleep(0.2)
        yield LlamaServer(base_url, api_key, process)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr:
            process.stderr.close()
        log.close()


@dataclass
class FaultProxy:
    """Forwards to `upstream` after `fail_count` answers of `fail_status` (or stalls of `stall_s`)."""

    upstream: str  # http://host:port
    fail_status: int = 0
    fail_count: int = 0
    retry_after: str | None = None
    stall_s: float = 0.0
    #: Forward only this many server-sent events of a streamed answer, then `data: [DONE]` (0: all).
    cut_after_events: int = 0
    #: (method, path, status answered or "proxied" / "stalled") per request, in order.
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    #: Times (monotonic) at which a client hung up on a stalled request.
    hangups: list[float] = field(default_factory=list)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, **changes: Any) -> None:
        with self.lock:
            self.seen.clear()
            self.hangups.clear()
            self.fail_status, self.fail_count, self.retry_after, self.stall_s = 0, 0, None, 0.0
            self.cut_after_events = 0
            for key, value in changes.items():
                setattr(self, key, value)

    def _decide(self, method: str, path: str) -> str:
        with self.lock:
            if method == "POST" and self.stall_s > 0:
                action = "stalled"
            elif method == "POST" and self.fail_count > 0:
                self.fail_count -= 1
                action = str(self.fail_status)
            else:
                action = "proxied"
            self.seen.append((method, path, action))
            return action


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection; bodies end when it closes

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _stall(self) -> None:
            """Waits `stall_s` without answering; notes when the client hangs up first."""
            end = time.monotonic() + proxy.stall_s
            while time.monotonic() < end:
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    with proxy.lock:
                        proxy.hangups.append(time.monotonic())
                    return

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            action = proxy._decide(self.command, self.path)
            if action == "stalled":
                self._stall()
                return
            if action != "proxied":
                payload = b'{"error": {"message": "injected by the test proxy", "type": "server_error"}}'
                self.send_response(int(action))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if proxy.retry_after is not None:
                    self.send_header("Retry-After", proxy.retry_after)
                self.end_headers()
                self.wfile.write(payload)
                return
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            cut = proxy.cut_after_events
            try:
                if cut:
                    self._relay_events(response, cut)
                else:
                    while chunk := response.read1(65536):
                        self.wfile.write(chunk)
                        self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                conn.close()

        def _relay_events(self, response: http.client.HTTPResponse, count: int) -> None:
            """The first `count` server-sent events, then the end marker, as a server cut short sends."""
            buffer = b""
            while count > 0 and (chunk := response.read1(65536)):
                buffer += chunk.replace(b"\r\n", b"\n")
                while count > 0 and b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    if event.strip():
                        self.wfile.write(event + b"\n\n")
                        count -= 1
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        do_GET = _relay
        do_POST = _relay

    return Handler


@contextlib.contextmanager
def fault_proxy(upstream_base_url: str) -> Iterator[FaultProxy]:
    """A FaultProxy on a free loopback port in front of `upstream_base_url` (…/v1)."""
    parts = urlsplit(upstream_base_url)
    proxy = FaultProxy(upstream=f"{parts.scheme}://{parts.netloc}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.base_url = f"http://127.0.0.1:{server.server_address[1]}{parts.path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
