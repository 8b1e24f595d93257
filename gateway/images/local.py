"""A local stand-in for the image APIs: OpenAI's Images API and Bedrock's InvokeModel, on loopback.

The local stack (`soriflow up`) and the tests need pictures without a cloud
account, so this server speaks both wire protocols as the real services do
and draws a real PNG: the prompt, wrapped, on a background whose colours come
from the prompt's hash (the same prompt gives the same picture), labelled as
a stand-in. It is not a model; it lets the `subtitle-picture` and
`nightly-story` pipelines run end to end and shows what prompt they sent.

OpenAI (`POST /v1/images/generations`, also without `/v1`): a bearer key
(any, or the one given with `--api-key`), `prompt`, `model`, `n`, `size` (the
DALL-E and GPT image models' own sizes are enforced, other models take any
WIDTHxHEIGHT), `response_format` `b64_json` or `url` (then served from
`/files/`); errors as OpenAI sends them, `{"error": {"message", "type",
"param", "code"}}` with the HTTP status.

Bedrock (`POST /model/{modelId}/invoke`, SigV4-signed by boto3): the Nova
Canvas / Titan body (`taskType` TEXT_IMAGE, prompt and size limits, 1-5
images, cfgScale and seed ranges) answered with `{"images": [...], "error":
null}`, and the Stability body (`prompt`, `aspect_ratio`, `output_format`)
answered with `{"seeds", "finish_reasons", "images"}`; errors with the
`x-amzn-ErrorType` header and `{"message"}`, as botocore parses them.

Words given with `--block` make a prompt "violate the content policy" the
way each API reports it (OpenAI `content_policy_violation`; Bedrock's
content-filter ValidationException; Stability's `Filter reason: prompt`),
`--block-output` the picture instead (Nova's `error` field), and
`fail_next()` queues an HTTP failure, so clients can be tested against
every answer the real services give.

Run it: `soriflow images serve --port 8089`, then point the gateway at it
with `SORIFLOW_IMAGE_OPENAI_BASE_URL=http://127.0.0.1:8089/v1` (any
`SORIFLOW_IMAGE_OPENAI_API_KEY`), or `SORIFLOW_IMAGE_ENGINE=bedrock` and
`SORIFLOW_IMAGE_BEDROCK_ENDPOINT_URL=http://127.0.0.1:8089`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

log = logging.getLogger("soriflow.gateway.images.local")

OPENAI_SIZES = {
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "gpt-image": {"1024x1024", "1536x1024", "1024x1536", "auto"},
}
OPENAI_PROMPT_LIMITS = {"dall-e-2": 1000, "dall-e-3": 4000, "gpt-image": 32000}
STABILITY_SIZES = {
    "21:9": (1536, 640),
    "16:9": (1344, 768),
    "3:2": (1216, 832),
    "5:4": (1152, 896),
    "1:1": (1024, 1024),
    "4:5": (896, 1152),
    "2:3": (832, 1216),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
CONTENT_FILTER = (
    "This request has been blocked by our content filters. "
    "Please adjust your text prompt to submit a new request."
)
OPENAI_POLICY = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text that is "
    "not allowed by our safety system."
)
_MAX_BODY = 1 << 20


@dataclass
class Failure:
    """An HTTP failure to answer the next call with (for client tests)."""

    status: int
    code: str
    message: str
    retry_after_s: float | None = None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after_s = status, code, message, retry_after_s


def render_png(
    prompt: str, width: int, height: int, *, note: str = "local stand-in, not a generated picture"
) -> bytes:
    """A real PNG of the given size: the prompt wrapped on a prompt-coloured gradient, and a label."""
    from PIL import Image, ImageDraw, ImageFont

    digest = hashlib.sha256(prompt.encode()).digest()
    top, bottom = digest[:3], digest[3:6]
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(1, height - 1)
        colour = tuple(int(a + (b - a) * t) // 2 + 40 for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)
    size = max(10, min(width, height) // 18)
    try:
        font: Any = ImageFont.truetype("DejaVuSans.ttf", size)
        small: Any = ImageFont.truetype("DejaVuSans.ttf", max(8, size // 2))
    except OSError:  # no system font: Pillow's own
        font, small = ImageFont.load_default(size=size), ImageFont.load_default(size=max(8, size // 2))
    columns = max(8, int(width / (size * 0.55)))
    lines = textwrap.wrap(" ".join(prompt.split()), columns)[: max(1, (height - 3 * size) // (size + 4))]
    y = size
    for line in lines:
        draw.text((size, y), line, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        y += size + 4
    draw.text(
        (size, height - size), note, fill=(255, 255, 255), font=small, stroke_width=1, stroke_fill=(0, 0, 0)
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _openai_family(model: str) -> str:
    return next((f for f in OPENAI_SIZES if model.startswith(f)), "")


class LocalImageServer:
    """The stand-in server; `start()` serves on a thread, `url` is its base (no trailing slash)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        blocked_words: tuple[str, ...] = (),
        blocked_output_words: tuple[str, ...] = (),
    ) -> None:
        self.host, self.port = host, port
        self.api_key = api_key
        self.blocked = tuple(w.lower() for w in blocked_words)
        self.blocked_output = tuple(w.lower() for w in blocked_output_words)
        #: Every request body received, as (api, model, body): what the tests and the curious look at.
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.failures: list[Failure] = []
        self.files: dict[str, bytes] = {}
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LocalImageServer:
        server = ThreadingHTTPServer((self.host, self.port), self._handler_class())
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="local-images", daemon=True).start()
        self._server = server
        self.url = f"http://{self.host}:{server.server_address[1]}"
        log.info("local image server (OpenAI Images API + Bedrock InvokeModel stand-in) at %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalImageServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(
        self, status: int, code: str, message: str, *, times: int = 1, retry_after_s: float | None = None
    ) -> None:
        """Answers the next `times` generation calls with this HTTP failure, in the API's own format."""
        with self._lock:
            self.failures.extend(Failure(status, code, message, retry_after_s) for _ in range(times))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.failures.clear()

    # ------------------------------------------------------------------ HTTP

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "soriflow-local-images"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def do_GET(self) -> None:
                owner._get(self)

            def do_POST(self) -> None:
                owner._post(self)

        return Handler

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str, **headers: str
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlparse(handler.path).path
        if path in ("/healthz", "/"):
            self._send(handler, 200, b"ok\n", "text/plain")
            return
        match = re.fullmatch(r"/files/([0-9a-f]{32})\.png", path)
        data = self.files.get(match.group(1)) if match else None
        if data is None:
            self._send(handler, 404, b"not found\n", "text/plain")
            return
        self._send(handler, 200, data, "image/png")

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlparse(handler.path).path
        length = int(handler.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._send(handler, 413, b"request too large\n", "text/plain")
            return
        raw = handler.rfile.read(length) if length else b""
        if path in ("/v1/images/generations", "/images/generations"):
            self._openai(handler, raw)
            return
        match = re.fullmatch(r"/model/([^/]+)/invoke", path)
        if match:
            self._bedrock(handler, unquote(match.group(1)), raw)
            return
        self._send(handler, 404, b"no such API here\n", "text/plain")

    def _next_failure(self) -> None:
        with self._lock:
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise ApiError(failure.status, failure.code, failure.message, retry_after_s=failure.retry_after_s)

    def _blocked(self, text: str, words: tuple[str, ...]) -> bool:
        lowered = text.lower()
        return any(w and w in lowered for w in words)

    # ------------------------------------------------------------------ OpenAI

    def _openai(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        try:
            auth = handler.headers.get("Authorization", "")
            key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
            if not key or (self.api_key is not None and key != self.api_key):
                raise ApiError(401, "invalid_api_key", "Incorrect API key provided.")
            try:
                body = json.loads(raw or b"{}")
            except ValueError as exc:
                raise ApiError(
                    400, "invalid_json", f"We could not parse the JSON body of your request: {exc}"
                ) from exc
            model = str(body.get("model") or "dall-e-2")
            with self._lock:
                self.requests.append(("openai", model, body))
            self._next_failure()
            payload = self._openai_generate(model, body)
        except ApiError as exc:
            error = {"message": exc.message, "type": "invalid_request_error", "param": None, "code": exc.code}
            if exc.status == 429:
                error["type"] = "requests"
            headers = {"retry_after": f"{exc.retry_after_s:g}"} if exc.retry_after_s is not None else {}
            self._send(
                handler, exc.status, json.dumps({"error": error}).encode(), "application/json", **headers
            )
            return
        self._send(handler, 200, json.dumps(payload).encode(), "application/json")

    def _openai_generate(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ApiError(400, "invalid_value", "Invalid prompt: the prompt must be a non-empty string.")
        family = _openai_family(model)
        limit = OPENAI_PROMPT_LIMITS.get(family, 32000)
        if len(prompt) > limit:
            raise ApiError(
                400,
                "string_above_max_length",
                f"Invalid 'prompt': string too long. Expected a string with maximum length {limit}, "
                f"but got a string with length {len(prompt)} instead.",
            )
        size = str(body.get("size") or "1024x1024")
        if family and size not in OPENAI_SIZES[family]:
            raise ApiError(
                400,
                "invalid_value",
                f"Invalid size '{size}' for {model}. Supported values are: "
                f"{', '.join(sorted(OPENAI_SIZES[family]))}.",
            )
        if size == "auto":
            size = "1024x1024"
        sized = re.fullmatch(r"(\d+)x(\d+)", size)
        if not sized or not (64 <= int(sized.group(1)) <= 4096 and 64 <= int(sized.group(2)) <= 4096):
            raise ApiError(400, "invalid_value", f"Invalid size '{size}'.")
        n = int(body.get("n") or 1)
        if not 1 <= n <= (1 if family == "dall-e-3" else 10):
            raise ApiError(
                400,
                "invalid_value",
                f"Invalid 'n': {model} makes 1{'' if family == 'dall-e-3' else '-10'} images per request.",
            )
        fmt = body.get("response_format") or "b64_json"
        if fmt not in ("b64_json", "url"):
            raise ApiError(
                400, "invalid_value", f"Invalid response_format '{fmt}'. Supported: b64_json, url."
            )
        if self._blocked(prompt, self.blocked):
            raise ApiError(400, "content_policy_violation", OPENAI_POLICY)
        width, height = int(sized.group(1)), int(sized.group(2))
        data = []
        for k in range(n):
            png = render_png(prompt if n == 1 else f"{prompt} ({k + 1})", width, height)
            item: dict[str, Any] = {}
            if fmt == "url":
                name = uuid.uuid4().hex
                self.files[name] = png
                item["url"] = f"{self.url}/files/{name}.png"
            else:
                item["b64_json"] = base64.b64encode(png).decode()
            if family == "dall-e-3":
                item["revised_prompt"] = prompt
            data.append(item)
        return {"created": int(time.time()), "data": data}

    # ------------------------------------------------------------------ Bedrock

    def _bedrock(self, handler: BaseHTTPRequestHandler, model_id: str, raw: bytes) -> None:
        try:
            if not handler.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
                raise ApiError(403, "AccessDeniedException", "Missing Authentication Token")
            try:
                body = json.loads(raw or b"{}")
            except ValueError as exc:
                raise ApiError(400, "ValidationException", f"Malformed input request: {exc}") from exc
            with self._lock:
                self.requests.append(("bedrock", model_id, body))
            self._next_failure()
            bare = model_id.split(".", 1)[1] if re.match(r"^[a-z]{2}\.", model_id) else model_id
            if bare.startswith(("amazon.nova-canvas", "amazon.titan-image-generator")):
                payload = self._amazon_image(bare, body)
            elif bare.startswith("stability."):
                payload = self._stability_image(body)
            else:
                raise ApiError(400, "ValidationException", "The provided model identifier is invalid.")
        except ApiError as exc:
            headers = {"x_amzn_ErrorType": f"{exc.code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
            if exc.retry_after_s is not None:
                headers["retry_after"] = f"{exc.retry_after_s:g}"
            self._send(
                handler,
                exc.status,
                json.dumps({"message": exc.message}).encode(),
                "application/json",
                **headers,
            )
            return
        self._send(handler, 200, json.dumps(payload).encode(), "application/json")

    def _amazon_image(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        nova = model.startswith("amazon.nova-canvas")
        if body.get("taskType") != "TEXT_IMAGE":
            raise ApiError(
                400,
                "ValidationException",
                f"Malformed input request: taskType {body.get('taskType')!r} is not supported here, "
                "use TEXT_IMAGE",
            )
        params = body.get("textToImageParams") or {}
        text = params.get("text")
        limit = 1024 if nova else 512
        if not isinstance(text, str) or not 1 <= len(text) <= limit:
            raise ApiError(
                400,
                "ValidationException",
                f"Malformed input request: #/textToImageParams/text: expected length 1-{limit}",
            )
        config = body.get("imageGenerationConfig") or {}
        width, height = int(config.get("width", 1024)), int(config.get("height", 1024))
        if nova and not (
            320 <= width <= 4096
            and 320 <= height <= 4096
            and width % 16 == 0
            and height % 16 == 0
            and width * height <= 4_194_304
            and max(width, height) <= 4 * min(width, height)
        ):
            raise ApiError(
                400,
                "ValidationException",
                f"Invalid dimensions {width}x{height}: each side 320-4096 and a multiple of 16, "
                "at most 4,194,304 pixels, aspect ratio at most 4:1",
            )
        count = int(config.get("numberOfImages", 1))
        if not 1 <= count <= 5:
            raise ApiError(
                400,
                "ValidationException",
                "Malformed input request: #/imageGenerationConfig/numberOfImages: must be 1-5",
            )
        cfg = float(config.get("cfgScale", 6.5))
        if not 1.1 <= cfg <= 10.0:
            raise ApiError(
                400,
                "ValidationException",
                "Malformed input request: #/imageGenerationConfig/cfgScale: must be 1.1-10",
            )
        seed = int(config.get("seed", 12))
        if not 0 <= seed <= (858_993_459 if nova else 2_147_483_646):
            raise ApiError(
                400,
                "ValidationException",
                "Malformed input request: #/imageGenerationConfig/seed: out of range",
            )
        if self._blocked(text, self.blocked):
            raise ApiError(400, "ValidationException", CONTENT_FILTER)
        if self._blocked(text, self.blocked_output):
            return {
                "images": [],
                "error": "All of the generated images have been blocked by our content filters.",
            }
        images = [
            base64.b64encode(
                render_png(f"{text}" if count == 1 else f"{text} ({k + 1})", width, height)
            ).decode()
            for k in range(count)
        ]
        return {"images": images, "error": None}

    def _stability_image(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not 1 <= len(prompt) <= 10_000:
            raise ApiError(
                400, "ValidationException", "Malformed input request: #/prompt: expected length 1-10000"
            )
        ratio = str(body.get("aspect_ratio") or "1:1")
        if ratio not in STABILITY_SIZES:
            raise ApiError(
                400,
                "ValidationException",
                f"Malformed input request: #/aspect_ratio: {ratio} is not a valid enum value",
            )
        if str(body.get("output_format") or "png") not in ("png", "jpeg"):
            raise ApiError(
                400, "ValidationException", "Malformed input request: #/output_format: png or jpeg"
            )
        seed = int(body.get("seed") or 0) or int.from_bytes(
            hashlib.sha256(prompt.encode()).digest()[:4], "big"
        )
        if self._blocked(prompt, self.blocked):
            return {"seeds": [seed], "finish_reasons": ["Filter reason: prompt"], "images": []}
        if self._blocked(prompt, self.blocked_output):
            return {"seeds": [seed], "finish_reasons": ["Filter reason: output image"], "images": []}
        width, height = STABILITY_SIZES[ratio]
        return {
            "seeds": [seed],
            "finish_reasons": [None],
            "images": [base64.b64encode(render_png(prompt, width, height)).decode()],
        }


def serve(host: str, port: int, *, api_key: str | None, blocked: tuple[str, ...]) -> None:
    """Runs the stand-in in the foreground until interrupted (`soriflow images serve`)."""
    server = LocalImageServer(host, port, api_key=api_key, blocked_words=blocked).start()
    print(
        f"local image server at {server.url}  (OpenAI: {server.url}/v1, Bedrock endpoint: {server.url})",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
