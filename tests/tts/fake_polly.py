"""A local HTTP server speaking Amazon Polly's REST-JSON protocol, for the real boto3 client.

moto implements Polly's SynthesizeSpeech but answers eight zero bytes, so this
speaks the two operations the engine uses as Polly does on the wire:
`POST /v1/speech` (a JSON body; the audio stream as the response body, with
`Content-Type` and `x-amzn-RequestCharacters`) and `GET /v1/voices`
(query-string filters, pages joined by `NextToken`). Errors are Polly's: the
HTTP status of the error shape, the code in `x-amzn-ErrorType` and
`{"message": ...}` as the body, which botocore parses into ClientError.

It checks requests as Polly does: a SigV4 `Authorization` header (an access
key in `refused_keys` gets 403 UnrecognizedClientException), the output
format and its sample rates (pcm 8,000/16,000; mp3 and ogg_vorbis up to
48,000), the engine against the voice's SupportedEngines, well-formed SSML
with a `<speak>` root, 6,000 characters and 3,000 billed characters (SSML tags
not billed), and that named lexicons exist. Audio is real speech: espeak-ng
reads the text (a `<sub>` read as its alias) in the voice's language, then it
is resampled and encoded as asked (PCM s16le; MP3 and Ogg Vorbis by ffmpeg).
Failures can be queued for the next calls, as Polly's throttling, outages
or credential errors.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import soundfile

from soriflow.audio import resample

MAX_CHARACTERS = 6000
MAX_BILLED = 3000
RATES = {
    "pcm": {8000, 16000},
    "mp3": {8000, 16000, 22050, 24000, 44100, 48000},
    "ogg_vorbis": {8000, 16000, 22050, 24000, 44100, 48000},
}
CONTENT_TYPES = {"pcm": "audio/pcm", "mp3": "audio/mpeg", "ogg_vorbis": "audio/ogg"}
ESPEAK_VOICES = {"en-US": "en-us", "en-GB": "en-gb", "en-IN": "en", "hi-IN": "hi", "ko-KR": "ko"}

VOICES: list[dict[str, Any]] = [
    {
        "Gender": "Female",
        "Id": "Joanna",
        "LanguageCode": "en-US",
        "LanguageName": "US English",
        "Name": "Joanna",
        "SupportedEngines": ["generative", "neural", "standard"],
    },
    {
        "Gender": "Male",
        "Id": "Matthew",
        "LanguageCode": "en-US",
        "LanguageName": "US English",
        "Name": "Matthew",
        "SupportedEngines": ["generative", "neural", "standard"],
    },
    {
        "Gender": "Female",
        "Id": "Seoyeon",
        "LanguageCode": "ko-KR",
        "LanguageName": "Korean",
        "Name": "Seoyeon",
        "SupportedEngines": ["neural", "standard"],
    },
    {
        "Gender": "Female",
        "Id": "Aditi",
        "LanguageCode": "en-IN",
        "LanguageName": "Indian English",
        "Name": "Aditi",
        "AdditionalLanguageCodes": ["hi-IN"],
        "SupportedEngines": ["standard"],
    },
    {
        "Gender": "Female",
        "Id": "Ruth",
        "LanguageCode": "en-US",
        "LanguageName": "US English",
        "Name": "Ruth",
        "SupportedEngines": ["generative", "long-form", "neural"],
    },
]
#: Voices per DescribeVoices page (Polly pages too; the engine must follow NextToken).
PAGE = 3


@dataclass
class PollyFailure:
    status: int
    code: str
    message: str


@dataclass
class FakePolly:
    """The server's state: requests seen, failures queued, lexicons that exist, keys refused."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    voice_calls: int = 0
    failures: list[PollyFailure] = field(default_factory=list)
    lexicons: set[str] = field(default_factory=lambda: {"soriflow"})
    refused_keys: set[str] = field(default_factory=set)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakePolly:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="fake-polly", daemon=True).start()
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fail_next(self, status: int, code: str, message: str, times: int = 1) -> None:
        with self._lock:
            self.failures.extend(PollyFailure(status, code, message) for _ in range(times))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.failures.clear()
            self.refused_keys.clear()

    # ------------------------------------------------------------------ HTTP

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        try:
            auth = handler.headers.get("Authorization", "")
            if not auth.startswith("AWS4-HMAC-SHA256 Credential="):
                raise PollyError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
            key = auth.split("Credential=", 1)[1].split("/", 1)[0]
            if key in self.refused_keys:
                raise PollyError(
                    403,
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                )
            if method == "GET" and url.path == "/v1/voices":
                self._send_json(handler, self._describe_voices(parse_qs(url.query)))
            elif method == "POST" and url.path == "/v1/speech":
                audio, content_type, billed = self._synthesize(json.loads(body or b"{}"))
                handler.send_response(200)
                handler.send_header("Content-Type", content_type)
                handler.send_header("x-amzn-RequestCharacters", str(billed))
                handler.send_header("Content-Length", str(len(audio)))
                handler.end_headers()
                handler.wfile.write(audio)
            else:
                raise PollyError(404, "UnknownOperationException", f"no operation at {method} {url.path}")
        except PollyError as exc:
            payload = json.dumps({"message": exc.message}).encode()
            handler.send_response(exc.status)
            handler.send_header(
                "x-amzn-ErrorType", f"{exc.code}:http://internal.amazon.com/coral/com.amazonaws.polly/"
            )
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)

    @staticmethod
    def _send_json(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _next_failure(self) -> None:
        with self._lock:
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise PollyError(failure.status, failure.code, failure.message)

    # ------------------------------------------------------------------ operations

    def _describe_voices(self, query: dict[str, list[str]]) -> dict[str, Any]:
        self.voice_calls += 1
        self._next_failure()
        engine = query.get("Engine", [""])[0]
        language = query.get("LanguageCode", [""])[0]
        additional = query.get("IncludeAdditionalLanguageCodes", ["false"])[0] == "true"
        chosen = [
            v
            for v in VOICES
            if (not engine or engine in v["SupportedEngines"])
            and (not language or v["LanguageCode"] == language)
        ]
        start = int(query.get("NextToken", ["0"])[0])
        page = [
            v if additional else {k: x for k, x in v.items() if k != "AdditionalLanguageCodes"}
            for v in chosen[start : start + PAGE]
        ]
        out: dict[str, Any] = {"Voices": page}
        if start + PAGE < len(chosen):
            out["NextToken"] = str(start + PAGE)
        return out

    def _synthesize(self, request: dict[str, Any]) -> tuple[bytes, str, int]:
        with self._lock:
            self.requests.append(request)
        self._next_failure()
        for required in ("OutputFormat", "Text", "VoiceId"):
            if required not in request:
                raise PollyError(
                    400, "ValidationException", f"1 validation error detected: {required} is null"
                )
        fmt = request["OutputFormat"]
        if fmt not in RATES:
            raise PollyError(400, "ValidationException", f"this server does not produce {fmt!r}")
        voice = next((v for v in VOICES if v["Id"] == request["VoiceId"]), None)
        if voice is None:
            raise PollyError(
                400,
                "ValidationException",
                f"1 validation error detected: Value '{request['VoiceId']}' at 'voiceId' failed to "
                "satisfy constraint: Member must satisfy enum value set",
            )
        engine = request.get("Engine", "standard")
        if engine not in voice["SupportedEngines"]:
            raise PollyError(
                400,
                "EngineNotSupportedException",
                f"This voice does not support the selected engine: {engine}",
            )
        rate = int(
            request.get("SampleRate") or (16000 if fmt == "pcm" else 22050 if engine == "standard" else 24000)
        )
        if rate not in RATES[fmt]:
            raise PollyError(400, "InvalidSampleRateException", "The specified sample rate is not valid.")
        for name in request.get("LexiconNames") or []:
            if name not in self.lexicons:
                raise PollyError(404, "LexiconNotFoundException", f"Lexicon not found: {name}")
        text = request["Text"]
        spoken = _ssml_text(text) if request.get("TextType") == "ssml" else text
        if len(text) > MAX_CHARACTERS or len(spoken) > MAX_BILLED:
            raise PollyError(
                400,
                "TextLengthExceededException",
                f"Maximum text length has been exceeded ({len(spoken)} billed, {len(text)} total characters)",
            )
        samples, natural = _espeak(spoken, ESPEAK_VOICES.get(voice["LanguageCode"], "en-us"))
        samples = resample(samples, natural, rate)
        return _encode(samples, rate, fmt), CONTENT_TYPES[fmt], len(spoken)


class PollyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _ssml_text(ssml: str) -> str:
    """What Polly would say (and bill) for SSML: the text, a `<sub>` as its alias; tags not counted."""
    try:
        root = ET.fromstring(ssml)
    except ET.ParseError as exc:
        raise PollyError(400, "InvalidSsmlException", f"Invalid SSML request: {exc}") from exc
    if root.tag != "speak":
        raise PollyError(
            400, "InvalidSsmlException", "Invalid SSML request: the root element must be <speak>"
        )

    def read(element: ET.Element) -> str:
        if element.tag == "sub":
            return element.get("alias", "") + (element.tail or "")
        inner = (element.text or "") + "".join(read(child) for child in element)
        return inner + (element.tail or "")

    return " ".join(read(root).split())


def _espeak(text: str, voice: str) -> tuple[np.ndarray, int]:
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", "--stdin"],
        input=text.encode(),
        capture_output=True,
        check=True,
    ).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return np.asarray(samples, dtype=np.float32), int(rate)


def _encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    if fmt == "pcm":
        return pcm
    codec = {"mp3": ["-c:a", "libmp3lame", "-f", "mp3"], "ogg_vorbis": ["-c:a", "libvorbis", "-f", "ogg"]}[
        fmt
    ]
    args = [
        "ffmpeg",
        "-v",
        "error",
        "-f",
        "s16le",
        "-ar",
        str(rate),
        "-ac",
        "1",
        "-i",
        "pipe:0",
        *codec,
        "pipe:1",
    ]
    return subprocess.run(args, input=pcm, capture_output=True, check=True).stdout
