"""Between protobuf messages and the engine's types: request validation and results.

Validation lives here so every entry point (Recognize, StreamingRecognize,
the CLI with `--server` or in-process) refuses the same bad configs with the
same actionable message before any audio is decoded.
"""

from __future__ import annotations

from soriflow.errors import InvalidArgument
from soriflow.stt.engines.base import EngineInfo, Segment, Task, TranscribeOptions, Transcript, Word
from soriflow.v1 import audio_pb2, stt_pb2

MAX_BEAM_SIZE = 20
MAX_PROMPT_CHARS = 2000
MAX_HOTWORDS = 100


def normalize_language(code: str, info: EngineInfo) -> str | None:
    """ISO 639-1 from "en", "EN", "ko-KR" or "ko_KR"; None (detect) when empty."""
    code = code.strip()
    if not code:
        return None if info.multilingual else "en"
    lang = code.replace("_", "-").split("-")[0].lower()
    if lang not in info.languages:
        if not info.multilingual:
            raise InvalidArgument(
                f"model {info.name} is English-only and cannot transcribe {code!r}: send language_code "
                "'en' or empty, or run a multilingual model (SORIFLOW_STT_MODEL=base)"
            )
        raise InvalidArgument(f"unknown language_code {code!r}: use an ISO 639-1 code such as 'en' or 'ko'")
    return lang


def options_from_config(
    config: stt_pb2.RecognitionConfig,
    info: EngineInfo,
    *,
    default_beam_size: int = 5,
    default_vad: bool = True,
) -> TranscribeOptions:
    """Engine options from a request's config, refusing what the loaded model cannot do."""
    language = normalize_language(config.language_code, info)
    task: Task = "translate" if config.task == stt_pb2.RECOGNITION_TASK_TRANSLATE else "transcribe"
    if task == "translate" and not info.multilingual:
        raise InvalidArgument(
            f"model {info.name} is English-only and cannot translate: use RECOGNITION_TASK_TRANSCRIBE "
            "or run a multilingual model (SORIFLOW_STT_MODEL=base)"
        )
    if config.beam_size < 0 or config.beam_size > MAX_BEAM_SIZE:
        raise InvalidArgument(
            f"beam_size must be 0 (server default) to {MAX_BEAM_SIZE}, not {config.beam_size}"
        )
    if len(config.initial_prompt) > MAX_PROMPT_CHARS:
        raise InvalidArgument(
            f"initial_prompt is {len(config.initial_prompt)} characters; Whisper uses at most 224 tokens, "
            f"send at most {MAX_PROMPT_CHARS} characters"
        )
    hotwords = tuple(h.strip() for h in config.hotwords if h.strip())
    if len(hotwords) > MAX_HOTWORDS:
        raise InvalidArgument(f"{len(hotwords)} hotwords given; send at most {MAX_HOTWORDS}")
    return TranscribeOptions(
        language=language,
        task=task,
        word_timestamps=config.enable_word_time_offsets,
        beam_size=config.beam_size or default_beam_size,
        initial_prompt=config.initial_prompt.strip() or None,
        hotwords=hotwords,
        vad_filter=config.vad_filter if config.HasField("vad_filter") else default_vad,
    )


def word_to_proto(word: Word) -> audio_pb2.Word:
    return audio_pb2.Word(
        word=word.word,
        start_ms=word.start_ms,
        end_ms=word.end_ms,
        confidence=min(1.0, max(0.0, word.probability)),
        channel=word.channel,
        speaker=word.speaker,
    )


def segment_to_proto(
    segment: Segment, index: int, *, with_words: bool, language: str = "", language_probability: float = 0.0
) -> audio_pb2.Segment:
    """The wire form; `language`/`language_probability`: the transcript's, for a segment without its own."""
    return audio_pb2.Segment(
        id=index,
        text=segment.text,
        start_ms=segment.start_ms,
        end_ms=segment.end_ms,
        words=[word_to_proto(w) for w in segment.words] if with_words else [],
        channel=segment.channel,
        speaker=segment.speaker,
        avg_logprob=segment.avg_logprob,
        no_speech_probability=segment.no_speech_prob,
        language_code=segment.language or language,
        language_probability=segment.language_probability if segment.language else language_probability,
    )


def transcript_to_proto(transcript: Transcript, *, with_words: bool = True) -> audio_pb2.Transcript:
    """The wire form; words only when asked for (they make up most of the message)."""
    return audio_pb2.Transcript(
        text=transcript.text,
        segments=[
            segment_to_proto(
                s,
                i,
                with_words=with_words,
                language=transcript.language,
                language_probability=transcript.language_probability,
            )
            for i, s in enumerate(transcript.segments)
        ],
        words=[word_to_proto(w) for w in transcript.words] if with_words else [],
        language_code=transcript.language,
        language_probability=transcript.language_probability,
        audio_duration_ms=round(transcript.duration * 1000),
        channel_count=transcript.channel_count,
    )


def transcript_from_proto(message: audio_pb2.Transcript) -> Transcript:
    """The engine-side form of a transcript received over gRPC (the CLI formats both alike)."""

    def word(w: audio_pb2.Word) -> Word:
        return Word(w.word, w.start_ms / 1000, w.end_ms / 1000, w.confidence, w.channel, w.speaker)

    segments = tuple(
        Segment(
            id=s.id,
            start=s.start_ms / 1000,
            end=s.end_ms / 1000,
            text=s.text,
            words=tuple(word(w) for w in s.words),
            avg_logprob=s.avg_logprob,
            no_speech_prob=s.no_speech_probability,
            channel=s.channel,
            speaker=s.speaker,
            language=s.language_code,
            language_probability=s.language_probability,
        )
        for s in message.segments
    )
    return Transcript(
        segments=segments,
        language=message.language_code,
        language_probability=message.language_probability,
        duration=message.audio_duration_ms / 1000,
        channel_count=max(1, message.channel_count),
    )
