"""The live-caption edge: aiohttp serving `/v1/live` (WebSocket), the page and health checks.

One WebSocket is one StreamingRecognize call on the STT service (see the
package docstring). Per connection, in order: the origin and the bearer token
are checked (header `Authorization`, or the `soriflow.bearer.` subprotocol for
browsers), the edge-wide connection cap applies, the JSON config must come
within `live_config_timeout_s`, then binary frames are relayed as they come.
Every way a stream ends is an error message naming the problem followed by a
close code (`protocol.Close`), and one stream's failure never touches another:
each has its own gRPC call, queue and tasks.

Backpressure, end to end: frames wait in a bounded queue for the gRPC call;
when it is full the edge stops reading the socket, aiohttp pauses the
transport, and TCP slows the client. The STT service does the same towards
the edge (it stops reading when 30 s of audio wait), so a client sending a
file faster than real time cannot grow memory anywhere on the path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import grpc
from aiohttp import WSMsgType, web
from prometheus_client import Counter, Gauge

from soriflow.client import check_health, open_channel
from soriflow.errors import bad_request_field
from soriflow.gateway.live.protocol import (
    BEARER_PREFIX,
    SUBPROTOCOL,
    Close,
    LiveConfig,
    LiveError,
    error_message,
    parse_config,
    result_message,
)
from soriflow.gateway.live.settings import Settings
from soriflow.interceptors import retry_after_from
from soriflow.metrics import RPC_IN_FLIGHT, RPC_LATENCY, RPC_REQUESTS, SERVICE_READY, start_metrics_server
from soriflow.security import TokenAuth
from soriflow.v1 import stt_pb2, stt_pb2_grpc

log = logging.getLogger("soriflow.live")

#: Labels of the WebSocket stream in the RPC metrics every service exports.
METRIC_SERVICE = "soriflow.live.WebSocket"
METRIC_METHOD = "StreamingRecognize"
#: The gRPC status name each close is counted under (dashboards read one vocabulary).
_CLOSE_STATUS = {
    Close.NORMAL: "OK",
    Close.GOING_AWAY: "UNAVAILABLE",
    Close.MESSAGE_TOO_BIG: "RESOURCE_EXHAUSTED",
    Close.INTERNAL: "INTERNAL",
    Close.BAD_CONFIG: "INVALID_ARGUMENT",
    Close.UNAUTHORIZED: "UNAUTHENTICATED",
    Close.FORBIDDEN_ORIGIN: "PERMISSION_DENIED",
    Close.TIMEOUT: "DEADLINE_EXCEEDED",
    Close.TOO_LARGE: "RESOURCE_EXHAUSTED",
    Close.BAD_AUDIO: "INVALID_ARGUMENT",
    Close.TOO_MANY: "RESOURCE_EXHAUSTED",
    Close.UNAVAILABLE: "UNAVAILABLE",
}
CLOSES = Counter("soriflow_live_closes_total", "WebSocket streams ended, by close code.", ["close_code"])
AUDIO_BYTES = Counter("soriflow_live_audio_bytes_total", "Audio bytes received over WebSocket streams.")
CONNECTIONS = Gauge("soriflow_live_connections", "WebSocket streams open now.")
#: How long the list of the STT model's languages is cached.
_MODELS_TTL_S = 60.0
#: Sent to the client every this many seconds of silence on the socket (keeps proxies from idling it out).
_HEARTBEAT_S = 20.0


class _ClientLeft(Exception):
    """The client closed the socket before ending the stream: nothing more can reach it."""


class LiveEdge:
    """The edge process: the aiohttp application, the STT channel and the open streams."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        self.auth = TokenAuth(token) if token else None
        self.open = 0
        self.sockets: set[web.WebSocketResponse] = set()
        self._channel: grpc.aio.Channel | None = None
        self._stub: stt_pb2_grpc.SpeechToTextServiceStub | None = None
        self._models: tuple[float, dict[str, Any]] | None = None
        self._runner: web.AppRunner | None = None
        self._metrics_server: Any = None
        self.port = 0
        self.metrics_port: int | None = None
        #: Most frames any stream has had waiting for its gRPC call (bounded by live_queue_frames).
        self.peak_queued = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def stub(self) -> stt_pb2_grpc.SpeechToTextServiceStub:
        if self._stub is None:
            self._channel = open_channel(self.settings.stt_address, self.settings)
            self._stub = stt_pb2_grpc.SpeechToTextServiceStub(self._channel)
        return self._stub

    def application(self) -> web.Application:
        app = web.Application()
        static = resources.files("soriflow.gateway.live") / "static"
        page = (static / "index.html").read_text()
        script = (static / "live.js").read_text()

        async def index(_: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html")

        async def live_js(_: web.Request) -> web.Response:
            return web.Response(text=script, content_type="application/javascript")

        async def alive(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        app.router.add_get("/", index)
        app.router.add_get("/live.js", live_js)
        app.router.add_get("/v1/live", self.handle)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/healthz", alive)
        app.router.add_get("/readyz", self.ready)
        app.on_shutdown.append(self._going_away)
        return app

    async def start(self) -> None:
        s = self.settings
        self._runner = web.AppRunner(
            self.application(), handle_signals=False, access_log=None, shutdown_timeout=s.grace_period_s
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.host, s.port)
        await site.start()
        server = site._server  # the bound port when port 0 was asked for
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else s.port
        if s.metrics_port is not None:
            self._metrics_server, self.metrics_port = start_metrics_server(s.metrics_port, s.host)
        SERVICE_READY.labels("live").set(1)
        log.info("live edge on http://%s:%d/ (STT at %s)", s.host, self.port, s.stt_address)

    async def stop(self) -> None:
        SERVICE_READY.labels("live").set(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None

    async def _going_away(self, _: web.Application) -> None:
        """Shutdown: every open stream is told to reconnect (to another replica) and closed."""
        error = LiveError(Close.GOING_AWAY, "the server is shutting down: reconnect")
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.send_json(error_message(error, ""))
                await ws.close(code=Close.GOING_AWAY, message=b"server shutting down")

    # ------------------------------------------------------------------ HTTP endpoints

    async def ready(self, _: web.Request) -> web.Response:
        """Ready when the STT service answers SERVING: a probe that keeps traffic off a cut-off edge."""
        try:
            status = await check_health(self._ensure_channel(), "", timeout=2)
        except Exception as exc:  # unreachable, TLS mismatch, ...
            reason = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            return web.Response(status=503, text=f"STT service at {self.settings.stt_address}: {reason}\n")
        code = 200 if status == "SERVING" else 503
        return web.Response(status=code, text=f"STT {status}\n")

    def _ensure_channel(self) -> grpc.aio.Channel:
        self.stub  # noqa: B018 - opens the channel on first use
        assert self._channel is not None
        return self._channel

    async def models(self, request: web.Request) -> web.Response:
        """The STT model and its languages (the page's language picker); behind the token like streams."""
        if self.auth is not None and not self.auth.check(
            (("authorization", request.headers.get("Authorization", "")),)
        ):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            return web.json_response(await self.model_info())
        except grpc.aio.AioRpcError as exc:
            return web.json_response({"error": f"STT service: {exc.details()}"}, status=503)

    async def model_info(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._models is None or now - self._models[0] > _MODELS_TTL_S:
            response = await self.stub.ListModels(stt_pb2.ListModelsRequest(), timeout=10)
            model = response.models[0]
            info = {
                "model": model.name,
                "languages": list(model.language_codes),
                "translation": model.supports_translation,
            }
            self._models = (now, info)
        return self._models[1]

    # ------------------------------------------------------------------ one stream

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        s = self.settings
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            max_msg_size=s.live_max_frame_bytes,
            heartbeat=_HEARTBEAT_S,
        )
        await ws.prepare(request)
        session_id = uuid.uuid4().hex[:12]
        started = time.perf_counter()
        close = Close.NORMAL
        self.sockets.add(ws)
        self.open += 1
        CONNECTIONS.inc()
        RPC_IN_FLIGHT.labels(METRIC_SERVICE, METRIC_METHOD).inc()
        status = "OK"
        try:
            self._check_access(request)
            if self.open > s.live_max_connections:
                raise LiveError(
                    Close.TOO_MANY,
                    f"this server has {s.live_max_connections} streams open: retry shortly",
                    retry_after_s=2.0,
                )
            config = await self._read_config(ws)
            await self._stream(ws, config, session_id, started)
            await ws.close(code=Close.NORMAL)
        except _ClientLeft:
            status = "CANCELLED"
        except LiveError as exc:
            close = exc.close
            status = _CLOSE_STATUS.get(exc.close, "UNKNOWN")
            level = logging.WARNING if exc.close in (Close.INTERNAL, Close.UNAVAILABLE) else logging.INFO
            log.log(level, "live stream %s closed %d: %s", session_id, exc.close, exc.message)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.send_json(error_message(exc, session_id))
                    await ws.close(code=exc.close, message=exc.message[:120].encode())
        except Exception as exc:
            close, status = Close.INTERNAL, "INTERNAL"
            log.error("live stream %s failed", session_id, exc_info=exc)
            if not ws.closed:
                error = LiveError(
                    Close.INTERNAL, f"internal error ({type(exc).__name__}); quote session {session_id}"
                )
                with contextlib.suppress(Exception):
                    await ws.send_json(error_message(error, session_id))
                    await ws.close(code=Close.INTERNAL)
        finally:
            elapsed = time.perf_counter() - started
            self.sockets.discard(ws)
            self.open -= 1
            CONNECTIONS.dec()
            CLOSES.labels(str(int(close) if status != "CANCELLED" else 1005)).inc()
            RPC_IN_FLIGHT.labels(METRIC_SERVICE, METRIC_METHOD).dec()
            RPC_REQUESTS.labels(METRIC_SERVICE, METRIC_METHOD, status).inc()
            RPC_LATENCY.labels(METRIC_SERVICE, METRIC_METHOD, status).observe(elapsed)
        return ws

    def _check_access(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request.host):
            raise LiveError(
                Close.FORBIDDEN_ORIGIN,
                f"origin {origin} may not open streams here: add it to SORIFLOW_LIVE_ALLOWED_ORIGINS",
            )
        if self.auth is not None and not self.auth.check((("authorization", _bearer(request)),)):
            raise LiveError(
                Close.UNAUTHORIZED,
                "missing or wrong bearer token: send header 'Authorization: Bearer <token>' or, from a "
                f"browser, the subprotocols ['{SUBPROTOCOL}', '{BEARER_PREFIX}<token as base64url>']",
            )

    def _origin_allowed(self, origin: str, host: str) -> bool:
        allowed = self.settings.live_allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return urlsplit(origin).netloc.lower() == host.lower()

    async def _read_config(self, ws: web.WebSocketResponse) -> LiveConfig:
        try:
            message = await ws.receive(timeout=self.settings.live_config_timeout_s)
        except TimeoutError:
            raise LiveError(
                Close.TIMEOUT,
                f"no config within {self.settings.live_config_timeout_s:g} s: send the JSON config first",
            ) from None
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            raise _ClientLeft
        if message.type != WSMsgType.TEXT:
            raise LiveError(
                Close.BAD_CONFIG, "the first message must be the JSON config (a text frame), not audio"
            )
        config = parse_config(message.data)
        if config.model:
            served = (await self._model_info_or_unavailable())["model"]
            if config.model != served:
                raise LiveError(
                    Close.BAD_CONFIG,
                    f"model {config.model!r} is not served here: this server runs {served!r}",
                )
        return config

    async def _model_info_or_unavailable(self) -> dict[str, Any]:
        try:
            return await self.model_info()
        except grpc.aio.AioRpcError as exc:
            raise _rpc_error(exc) from None

    async def _stream(
        self, ws: web.WebSocketResponse, config: LiveConfig, session_id: str, started: float
    ) -> None:
        """Relays frames to StreamingRecognize and results back until the stream ends."""
        s = self.settings
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=s.live_queue_frames)

        async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
            yield config.to_proto()
            while (chunk := await queue.get()) is not None:
                yield stt_pb2.StreamingRecognizeRequest(audio_content=chunk)

        call = self.stub.StreamingRecognize(requests(), timeout=s.live_max_stream_s + 60)
        await ws.send_json({"type": "ready", "session_id": session_id, "subprotocol": SUBPROTOCOL})

        async def read() -> bool:
            """Client frames into the queue; True when the client ended the stream, False when it left."""
            received = 0
            deadline = started + s.live_max_stream_s
            while True:
                remaining = deadline - time.perf_counter()
                try:
                    message = await ws.receive(timeout=max(0.001, min(s.live_idle_timeout_s, remaining)))
                except TimeoutError:
                    if time.perf_counter() >= deadline:
                        raise LiveError(
                            Close.TOO_LARGE, f"the stream reached its limit of {s.live_max_stream_s:g} s"
                        ) from None
                    raise LiveError(
                        Close.TIMEOUT, f"nothing received for {s.live_idle_timeout_s:g} s: stream closed"
                    ) from None
                if message.type == WSMsgType.BINARY:
                    received += len(message.data)
                    AUDIO_BYTES.inc(len(message.data))
                    if received > s.live_max_stream_bytes:
                        raise LiveError(
                            Close.TOO_LARGE,
                            f"the stream sent more than {s.live_max_stream_bytes} bytes of audio "
                            "(SORIFLOW_LIVE_MAX_STREAM_BYTES): open a new stream",
                        )
                    if message.data:
                        await queue.put(message.data)  # waits while full: the socket is not read
                        self.peak_queued = max(self.peak_queued, queue.qsize())
                elif message.type == WSMsgType.TEXT:
                    if _message_type(message.data) == "end":
                        await queue.put(None)
                        return True
                    raise LiveError(
                        Close.BAD_CONFIG,
                        'after the config only binary audio frames and {"type": "end"} may be sent',
                    )
                elif message.type == WSMsgType.ERROR:  # aiohttp has closed it (e.g. 1009, message too big)
                    raise _ClientLeft
                else:  # CLOSE / CLOSING / CLOSED
                    return False

        async def pump() -> None:
            try:
                async for response in call:
                    for result in response.results:
                        await ws.send_json(result_message(result))
                    if response.audio_processed_ms > s.live_max_stream_s * 1000:
                        raise LiveError(
                            Close.TOO_LARGE, f"the stream passed {s.live_max_stream_s:g} s of audio"
                        )
            except grpc.aio.AioRpcError as exc:
                raise _rpc_error(exc) from None

        reader = asyncio.create_task(read(), name=f"live-{session_id}-read")
        results = asyncio.create_task(pump(), name=f"live-{session_id}-pump")
        try:
            done, _ = await asyncio.wait({reader, results}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                if not reader.result():  # raises the reader's LiveError
                    raise _ClientLeft
                await results  # the last finals, then the STT stream ends
            else:
                results.result()  # raises the STT service's error; a clean end needs no more audio
            await ws.send_json({"type": "end", "session_id": session_id})
        finally:
            for task in (reader, results):
                task.cancel()
            call.cancel()
            for task in (reader, results):
                with contextlib.suppress(BaseException):
                    await task


def _message_type(text: str) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        value = json.loads(text).get("type")
        return value if isinstance(value, str) else None
    return None


def _bearer(request: web.Request) -> str:
    """The `Authorization` header, or one made from a `soriflow.bearer.<base64url>` subprotocol."""
    header = request.headers.get("Authorization")
    if header:
        return header
    for value in request.headers.getall("Sec-WebSocket-Protocol", []):
        for protocol in value.split(","):
            protocol = protocol.strip()
            if protocol.startswith(BEARER_PREFIX):
                encoded = protocol[len(BEARER_PREFIX) :]
                with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                    token = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
                    return f"Bearer {token}"
    return ""


def _rpc_error(exc: grpc.aio.AioRpcError) -> LiveError:
    """What the client is told when the STT service ends the call with an error."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field = bad_request_field(exc) or ""
        close = Close.BAD_AUDIO if field.startswith("audio_content") else Close.BAD_CONFIG
        return LiveError(close, details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return LiveError(
            Close.TOO_MANY, f"speech service busy: {details}", retry_after_s=retry_after_from(exc)
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return LiveError(Close.TOO_LARGE, "the stream reached its time limit")
    if code == grpc.StatusCode.UNAVAILABLE:
        return LiveError(Close.UNAVAILABLE, f"speech service unavailable: {details}", retry_after_s=2.0)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return LiveError(
            Close.INTERNAL, "the speech service refused this edge's token: SORIFLOW_AUTH_TOKEN must match"
        )
    return LiveError(Close.INTERNAL, f"speech service error {code.name}: {details}")


def create_service(settings: Settings | None = None) -> LiveEdge:
    return LiveEdge(settings or Settings())


async def serve(settings: Settings) -> int:
    """`soriflow serve live`: runs the edge until SIGTERM/SIGINT."""
    edge = create_service(settings)
    await edge.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("live edge stopping: closing %d streams", edge.open)
    await edge.stop()
    return 0
