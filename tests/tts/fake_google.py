"""A local gRPC server speaking `google.cloud.texttospeech.v1.TextToSpeech`, for the real client.

google-cloud-texttospeech ships no servicer base, so the two methods are
registered with a generic handler using the library's own message classes to
(de)serialise, which is exactly the wire format Google's servers use. It
checks requests the way Google does (one of text/SSML, 5,000-byte limit,
well-formed SSML, known voice whose language matches, speaking rate
0.25-2.0, pitch -20..20, LINEAR16 only here), records every request it gets,
answers with a real WAV (a tone per word at the requested rate, so the audio
is non-silent and its length follows the text), and can be told to fail the
next calls with a given status, quota errors carrying google.rpc.RetryInfo.
"""

from __future__ import annotations

import io
import threading
import xml.etree.ElementTree as ET
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np
import soundfile
from google.cloud import texttospeech_v1 as tts
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

SERVICE = "google.cloud.texttospeech.v1.TextToSpeech"
MAX_BYTES = 5000

VOICES = [
    tts.Voice(
        name="ko-KR-Wavenet-A",
        language_codes=["ko-KR"],
        ssml_gender=tts.SsmlVoiceGender.FEMALE,
        natural_sample_rate_hertz=24000,
    ),
    tts.Voice(
        name="ko-KR-Standard-C",
        language_codes=["ko-KR"],
        ssml_gender=tts.SsmlVoiceGender.MALE,
        natural_sample_rate_hertz=24000,
    ),
    tts.Voice(
        name="en-US-Wavenet-D",
        language_codes=["en-US"],
        ssml_gender=tts.SsmlVoiceGender.MALE,
        natural_sample_rate_hertz=24000,
    ),
    tts.Voice(
        name="en-US-Neural2-F",
        language_codes=["en-US"],
        ssml_gender=tts.SsmlVoiceGender.FEMALE,
        natural_sample_rate_hertz=24000,
    ),
]


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    retry_delay_s: float | None = None


@dataclass
class FakeGoogle:
    """The server's state: requests seen and failures queued for the next calls."""

    requests: list[tts.SynthesizeSpeechRequest] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    list_calls: int = 0
    address: str = ""
    _server: grpc.Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ server

    def start(self) -> FakeGoogle:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self._synthesize,
                    request_deserializer=tts.SynthesizeSpeechRequest.deserialize,
                    response_serializer=tts.SynthesizeSpeechResponse.serialize,
                ),
                "ListVoices": grpc.unary_unary_rpc_method_handler(
                    self._list_voices,
                    request_deserializer=tts.ListVoicesRequest.deserialize,
                    response_serializer=tts.ListVoicesResponse.serialize,
                ),
            },
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server, self.address = server, f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0)

    def fail_next(self, code: grpc.StatusCode, message: str, retry_delay_s: float | None = None) -> None:
        with self._lock:
            self.failures.append(Failure(code, message, retry_delay_s))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.failures.clear()

    # ------------------------------------------------------------------ methods

    def _abort(self, context: grpc.ServicerContext, failure: Failure) -> None:
        details = []
        if failure.retry_delay_s is not None:
            packed = any_pb2.Any()
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(failure.retry_delay_s * 1e9))
            packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            details.append(packed)
        status = status_pb2.Status(code=failure.code.value[0], message=failure.message, details=details)
        context.abort_with_status(rpc_status.to_status(status))

    def _invalid(self, context: grpc.ServicerContext, message: str) -> None:
        self._abort(context, Failure(grpc.StatusCode.INVALID_ARGUMENT, message))

    def _list_voices(
        self, request: tts.ListVoicesRequest, context: grpc.ServicerContext
    ) -> tts.ListVoicesResponse:
        self.list_calls += 1
        voices = [
            v
            for v in VOICES
            if not request.language_code or any(c.startswith(request.language_code) for c in v.language_codes)
        ]
        return tts.ListVoicesResponse(voices=voices)

    def _synthesize(
        self, request: tts.SynthesizeSpeechRequest, context: grpc.ServicerContext
    ) -> tts.SynthesizeSpeechResponse:
        with self._lock:
            self.requests.append(request)
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            self._abort(context, failure)
        text, ssml = request.input.text, request.input.ssml
        if bool(text) == bool(ssml):
            self._invalid(context, "Exactly one of input.text or input.ssml must be set.")
        source = text or ssml
        if len(source.encode("utf-8")) > MAX_BYTES:
            self._invalid(
                context,
                f"Either `input.text` or `input.ssml` is longer than the limit of {MAX_BYTES} "
                "bytes. This limit is different from quotas.",
            )
        if ssml:
            try:
                root = ET.fromstring(ssml)
            except ET.ParseError as exc:
                self._invalid(context, f"Invalid SSML: {exc}")
            if root.tag != "speak":
                self._invalid(context, "Invalid SSML: the root element must be <speak>.")
            words = " ".join(root.itertext()).split()
        else:
            words = text.split()
        voice = next((v for v in VOICES if v.name == request.voice.name), None)
        if voice is None:
            self._invalid(context, f"Voice '{request.voice.name}' does not exist.")
        assert voice is not None
        if request.voice.language_code not in voice.language_codes:
            self._invalid(context, f"Voice '{voice.name}' does not speak {request.voice.language_code}.")
        config = request.audio_config
        if config.speaking_rate and not 0.25 <= config.speaking_rate <= 2.0:
            self._invalid(context, "speaking_rate must be in [0.25, 2.0].")
        if not -20 <= config.pitch <= 20:
            self._invalid(context, "pitch must be in [-20.0, 20.0].")
        if config.audio_encoding != tts.AudioEncoding.LINEAR16:
            self._invalid(context, "This fake answers LINEAR16 only.")
        rate = config.sample_rate_hertz or voice.natural_sample_rate_hertz
        return tts.SynthesizeSpeechResponse(
            audio_content=_speech_like(len(words), rate, config.speaking_rate or 1.0)
        )


def _speech_like(words: int, rate: int, speaking_rate: float) -> bytes:
    """A WAV with a 220-440 Hz tone of 0.3 s per word, 0.1 s gaps: non-silent, length following the text."""
    tone_s, gap_s = 0.3 / speaking_rate, 0.1 / speaking_rate
    pieces = []
    for i in range(max(words, 1)):
        t = np.arange(int(tone_s * rate)) / rate
        pieces.append(0.4 * np.sin(2 * np.pi * (220 + 20 * (i % 12)) * t))
        pieces.append(np.zeros(int(gap_s * rate)))
    buffer = io.BytesIO()
    soundfile.write(buffer, np.concatenate(pieces).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
