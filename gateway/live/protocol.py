"""The WebSocket protocol of live captions: the client's config, the server's messages, close codes.

docs/live.md is the reference for clients; this module is where each rule is
enforced, and the two are kept in step by tests/gateway/live/test_protocol.py.
Times are milliseconds from the start of the stream, like the gRPC results.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soriflow.v1 import audio_pb2, stt_pb2

#: The subprotocol the server speaks; a client offering subprotocols must offer this one.
SUBPROTOCOL = "soriflow.live.v1"
#: Prefix of the subprotocol that carries the bearer token (browsers cannot set headers):
#: `soriflow.bearer.<token as unpadded base64url>`.
BEARER_PREFIX = "soriflow.bearer."

ENCODINGS: dict[str, int] = {
    "webm-opus": audio_pb2.AUDIO_ENCODING_WEBM_OPUS,
    "ogg-opus": audio_pb2.AUDIO_ENCODING_OGG_OPUS,
    "pcm16": audio_pb2.AUDIO_ENCODING_LINEAR16,
    "float32": audio_pb2.AUDIO_ENCODING_FLOAT32,
    "mulaw": audio_pb2.AUDIO_ENCODING_MULAW,
    "alaw": audio_pb2.AUDIO_ENCODING_ALAW,
    "flac": audio_pb2.AUDIO_ENCODING_FLAC,
    "mp3": audio_pb2.AUDIO_ENCODING_MP3,
    "wav": audio_pb2.AUDIO_ENCODING_WAV,
}
#: Encodings without a header: the config must give their sample rate.
HEADERLESS = frozenset({"pcm16", "float32", "mulaw", "alaw"})


class Close(enum.IntEnum):
    """WebSocket close codes: 1xxx from RFC 6455, 44xx/45xx mirror the HTTP status of the same meaning."""

    NORMAL = 1000  # the client sent {"type": "end"} and every final has been sent
    GOING_AWAY = 1001  # the edge is shutting down
    MESSAGE_TOO_BIG = 1009  # one WebSocket message over live_max_frame_bytes
    INTERNAL = 1011  # a fault in the edge or the STT service (quote the session id)
    BAD_CONFIG = 4400  # the config is not valid JSON, has unknown fields or values the model refuses
    UNAUTHORIZED = 4401  # missing or wrong bearer token
    FORBIDDEN_ORIGIN = 4403  # the page's origin is not in live_allowed_origins
    TIMEOUT = 4408  # no config within live_config_timeout_s, or no message within live_idle_timeout_s
    TOO_LARGE = 4413  # the stream passed live_max_stream_bytes or live_max_stream_s
    BAD_AUDIO = 4415  # the audio cannot be decoded as the configured encoding
    TOO_MANY = 4429  # too many streams on the edge or the STT service; retry after `retry_after_s`
    UNAVAILABLE = 4503  # the STT service is unreachable or still loading its model; retry


#: The `code` string of an error message for each close code.
ERROR_CODES: dict[Close, str] = {
    Close.INTERNAL: "internal",
    Close.BAD_CONFIG: "bad_config",
    Close.UNAUTHORIZED: "unauthorized",
    Close.FORBIDDEN_ORIGIN: "forbidden_origin",
    Close.TIMEOUT: "timeout",
    Close.TOO_LARGE: "too_large",
    Close.BAD_AUDIO: "bad_audio",
    Close.TOO_MANY: "too_many_streams",
    Close.UNAVAILABLE: "unavailable",
    Close.GOING_AWAY: "going_away",
}


class LiveError(Exception):
    """Ends a stream: an error message to the client, then the close code."""

    def __init__(self, close: Close, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.close = close
        self.message = message
        self.retry_after_s = retry_after_s


class LiveConfig(BaseModel):
    """The first message of a stream (a JSON text frame). Unknown fields are refused, so a typo
    ("langauge") is an error instead of a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["config"] = "config"
    encoding: Literal["webm-opus", "ogg-opus", "pcm16", "float32", "mulaw", "alaw", "flac", "mp3", "wav"]
    sample_rate_hz: int = Field(0, ge=0, le=192000)
    channel_count: int = Field(0, ge=0, le=8)
    language: str = Field("", max_length=16)
    model: str = Field("", max_length=200)
    task: Literal["transcribe", "translate"] = "transcribe"
    interim_results: bool = True
    word_timestamps: bool = True
    prompt: str = Field("", max_length=2000)
    hotwords: list[str] = Field(default_factory=list, max_length=100)
    beam_size: int = Field(0, ge=0, le=20)

    def to_proto(self) -> stt_pb2.StreamingRecognizeRequest:
        task = (
            stt_pb2.RECOGNITION_TASK_TRANSLATE
            if self.task == "translate"
            else stt_pb2.RECOGNITION_TASK_TRANSCRIBE
        )
        return stt_pb2.StreamingRecognizeRequest(
            streaming_config=stt_pb2.StreamingRecognitionConfig(
                config=stt_pb2.RecognitionConfig(
                    language_code=self.language,
                    task=task,
                    enable_word_time_offsets=self.word_timestamps,
                    beam_size=self.beam_size,
                    initial_prompt=self.prompt,
                    hotwords=self.hotwords,
                ),
                encoding=ENCODINGS[self.encoding],  # type: ignore[arg-type]
                sample_rate_hz=self.sample_rate_hz,
                channel_count=self.channel_count,
                interim_results=self.interim_results,
            )
        )


def parse_config(text: str) -> LiveConfig:
    """The config of a stream, or LiveError(BAD_CONFIG) saying what is wrong and what is accepted."""
    try:
        config = LiveConfig.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise LiveError(
            Close.BAD_CONFIG,
            f"invalid config ({problems}); the first message must be a JSON object such as "
            '{"type": "config", "encoding": "webm-opus", "language": "en"}; encodings: '
            + ", ".join(ENCODINGS),
        ) from None
    if config.encoding in HEADERLESS and not config.sample_rate_hz:
        raise LiveError(
            Close.BAD_CONFIG,
            f"encoding {config.encoding} has no header: set sample_rate_hz (e.g. 16000 or 48000)",
        )
    return config


def result_message(result: stt_pb2.StreamingRecognitionResult) -> dict[str, Any]:
    """An interim or final message from one gRPC result (same fields, JSON names)."""
    message: dict[str, Any] = {
        "type": "final" if result.is_final else "interim",
        "utterance_index": result.utterance_index,
        "text": result.text,
        "stable_text": result.stable_text,
        "stability": round(result.stability, 3),
        "start_ms": result.start_ms,
        "end_ms": result.end_ms,
        "language": result.language_code,
        "language_probability": round(result.language_probability, 3),
    }
    if result.is_final:
        message["words"] = [
            {
                "word": w.word,
                "start_ms": w.start_ms,
                "end_ms": w.end_ms,
                "confidence": round(w.confidence, 3),
            }
            for w in result.words
        ]
    return message


def error_message(error: LiveError, session_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "error",
        "code": ERROR_CODES.get(error.close, "error"),
        "close_code": int(error.close),
        "message": error.message,
        "session_id": session_id,
    }
    if error.retry_after_s is not None:
        message["retry_after_s"] = error.retry_after_s
    return message
