"""The live protocol without servers: config validation, messages, and docs/live.md kept in step."""

from __future__ import annotations

from pathlib import Path

import pytest

from soriflow.gateway.live.protocol import (
    ENCODINGS,
    ERROR_CODES,
    Close,
    LiveConfig,
    LiveError,
    error_message,
    parse_config,
    result_message,
)
from soriflow.v1 import audio_pb2, stt_pb2

DOC = (Path(__file__).resolve().parents[3] / "docs" / "live.md").read_text()


def test_config_becomes_the_streaming_config() -> None:
    config = parse_config(
        '{"type": "config", "encoding": "pcm16", "sample_rate_hz": 48000, "channel_count": 2, '
        '"language": "ko-KR", "task": "translate", "interim_results": false, "word_timestamps": false, '
        '"prompt": "lecture", "hotwords": ["Soriflow"], "beam_size": 3}'
    )
    request = config.to_proto().streaming_config
    assert request.encoding == audio_pb2.AUDIO_ENCODING_LINEAR16
    assert (request.sample_rate_hz, request.channel_count, request.interim_results) == (48000, 2, False)
    assert request.config.language_code == "ko-KR"
    assert request.config.task == stt_pb2.RECOGNITION_TASK_TRANSLATE
    assert not request.config.enable_word_time_offsets
    assert list(request.config.hotwords) == ["Soriflow"]
    assert request.config.initial_prompt == "lecture"
    assert request.config.beam_size == 3
    webm = parse_config('{"encoding": "webm-opus"}').to_proto().streaming_config
    assert webm.encoding == audio_pb2.AUDIO_ENCODING_WEBM_OPUS
    assert webm.interim_results
    assert webm.config.enable_word_time_offsets


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[]", "message"),
        ('{"encoding": "webm-opus", "extra": 1}', "extra"),
        ('{"encoding": "webm-opus", "sample_rate_hz": "16000"}', "sample_rate_hz"),
        ('{"encoding": "webm-opus", "beam_size": 99}', "beam_size"),
        ('{"encoding": "mulaw"}', "sample_rate_hz"),
        ('{"type": "end"}', "type"),
        ("", "invalid config"),
    ],
)
def test_bad_configs_are_refused_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(LiveError) as err:
        parse_config(text)
    assert err.value.close == Close.BAD_CONFIG
    assert says in err.value.message


def test_final_message_carries_words_in_milliseconds() -> None:
    result = stt_pb2.StreamingRecognitionResult(
        text="Hello there.",
        stable_text="Hello there.",
        is_final=True,
        stability=1.0,
        start_ms=500,
        end_ms=1700,
        utterance_index=2,
        language_code="en",
        language_probability=1.0,
        words=[audio_pb2.Word(word="Hello", start_ms=520, end_ms=900, confidence=0.91234)],
    )
    message = result_message(result)
    assert message["type"] == "final"
    assert message["words"] == [{"word": "Hello", "start_ms": 520, "end_ms": 900, "confidence": 0.912}]
    result.is_final = False
    assert "words" not in result_message(result)
    assert result_message(result)["type"] == "interim"
    error = error_message(LiveError(Close.TOO_MANY, "busy", retry_after_s=2.0), "abc")
    assert error == {
        "type": "error",
        "code": "too_many_streams",
        "close_code": 4429,
        "message": "busy",
        "session_id": "abc",
        "retry_after_s": 2.0,
    }


def test_docs_describe_every_close_code_encoding_and_config_field() -> None:
    for close in Close:
        assert f"| {int(close)} |" in DOC, f"close code {int(close)} is not in docs/live.md"
    for code in ERROR_CODES.values():
        assert f"`{code}`" in DOC, code
    for name in ENCODINGS:
        assert f"`{name}`" in DOC, name
    for field in LiveConfig.model_fields:
        assert f"| `{field}` |" in DOC, field
