"""Between protobuf messages and the pipeline's plain types."""

from __future__ import annotations

import re

from soriflow.errors import InvalidArgument
from soriflow.v1 import audio_pb2, summarizer_pb2

from .pipeline import Fallback, GroundingReport, SummaryRequest, SummaryResult, TextRequest, TextResult
from .styles import Style

STYLES: dict[int, Style] = {
    summarizer_pb2.SUMMARY_STYLE_UNSPECIFIED: Style.ABSTRACT,
    summarizer_pb2.SUMMARY_STYLE_INQUIRY: Style.INQUIRY,
    summarizer_pb2.SUMMARY_STYLE_BULLETS: Style.BULLETS,
    summarizer_pb2.SUMMARY_STYLE_ABSTRACT: Style.ABSTRACT,
    summarizer_pb2.SUMMARY_STYLE_CUSTOM: Style.CUSTOM,
}
STYLE_VALUES: dict[Style, summarizer_pb2.SummaryStyle.ValueType] = {
    Style.INQUIRY: summarizer_pb2.SUMMARY_STYLE_INQUIRY,
    Style.BULLETS: summarizer_pb2.SUMMARY_STYLE_BULLETS,
    Style.ABSTRACT: summarizer_pb2.SUMMARY_STYLE_ABSTRACT,
    Style.CUSTOM: summarizer_pb2.SUMMARY_STYLE_CUSTOM,
}
FALLBACK_VALUES: dict[Fallback, summarizer_pb2.SummaryFallback.ValueType] = {
    Fallback.UNSPECIFIED: summarizer_pb2.SUMMARY_FALLBACK_UNSPECIFIED,
    Fallback.NONE: summarizer_pb2.SUMMARY_FALLBACK_NONE,
    Fallback.STRICT_RETRY: summarizer_pb2.SUMMARY_FALLBACK_STRICT_RETRY,
    Fallback.FAITHFUL_ENGINE: summarizer_pb2.SUMMARY_FALLBACK_FAITHFUL_ENGINE,
}
FALLBACKS = {value: key for key, value in FALLBACK_VALUES.items()}
_LABELLED_LINE = re.compile(r"^[^:\n]{1,40}:\s")


def transcript_text(transcript: audio_pb2.Transcript) -> tuple[str, bool]:
    """(text, has speaker labels) of an STT transcript.

    Segments with speakers become one "speaker: words" line per turn
    (consecutive segments of one speaker joined); without segments the
    transcript's own text is used (the STT service already prefixes
    multi-channel lines with the speaker), and failing that its words.
    """
    if transcript.segments:
        turns: list[tuple[str, list[str]]] = []
        for segment in transcript.segments:
            text = segment.text.strip()
            if not text:
                continue
            if turns and turns[-1][0] == segment.speaker:
                turns[-1][1].append(text)
            else:
                turns.append((segment.speaker, [text]))
        labelled = any(speaker for speaker, _ in turns)
        lines = [f"{speaker}: {' '.join(parts)}" if speaker else " ".join(parts) for speaker, parts in turns]
        if lines:
            return "\n".join(lines), labelled
    text = transcript.text.strip()
    if text:
        lines = [line for line in text.splitlines() if line.strip()]
        labelled = bool(lines) and sum(bool(_LABELLED_LINE.match(line)) for line in lines) >= len(lines) / 2
        return text, labelled
    return " ".join(word.word for word in transcript.words).strip(), False


def request_from_proto(message: summarizer_pb2.SummarizeRequest) -> SummaryRequest:
    transcript = False
    language = message.language_code
    if message.WhichOneof("input") == "transcript":
        text, transcript = transcript_text(message.transcript)
        language = language or message.transcript.language_code
    else:
        text = message.text
    style = STYLES.get(message.style)
    if style is None:
        raise InvalidArgument(f"unknown style {message.style}: use one of the SummaryStyle values")
    return SummaryRequest(
        text=text,
        transcript=transcript,
        language=language,
        style=style,
        prompt=message.prompt,
        max_output_tokens=message.max_output_tokens,
        engine=message.engine.strip(),
        focus_speaker=message.focus_speaker.strip(),
    )


def result_to_proto(result: SummaryResult) -> summarizer_pb2.SummarizeResponse:
    return summarizer_pb2.SummarizeResponse(
        summary=result.summary,
        bullets=result.bullets,
        model=result.model,
        engine=result.engine,
        language_code=result.language,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        chunk_count=result.chunk_count,
        processing_time_ms=result.processing_ms,
        grounded=result.grounding.grounded,
        unsupported_terms=result.grounding.unsupported,
        fallback=FALLBACK_VALUES[result.grounding.fallback],
        rejected_terms=result.grounding.rejected_terms,
        rejected_engine=result.grounding.rejected_engine,
    )


def grounding_from_proto(message: summarizer_pb2.SummarizeResponse) -> GroundingReport:
    """The grounding report a server sent (the inverse of `result_to_proto`'s fields)."""
    fallback = FALLBACKS.get(message.fallback, Fallback.UNSPECIFIED)
    return GroundingReport(
        checked=fallback is not Fallback.UNSPECIFIED,
        grounded=message.grounded,
        unsupported=list(message.unsupported_terms),
        fallback=fallback,
        rejected_terms=list(message.rejected_terms),
        rejected_engine=message.rejected_engine,
    )


def text_request_from_proto(message: summarizer_pb2.GenerateRequest) -> TextRequest:
    return TextRequest(
        prompt=message.prompt,
        max_output_tokens=message.max_output_tokens,
        temperature=float(message.temperature),
        seed=message.seed if message.HasField("seed") else None,
        engine=message.engine.strip(),
        language=message.language_code.strip(),
    )


def text_result_to_proto(result: TextResult) -> summarizer_pb2.GenerateResponse:
    return summarizer_pb2.GenerateResponse(
        text=result.text,
        model=result.model,
        engine=result.engine,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        truncated=result.truncated,
        processing_time_ms=result.processing_ms,
        seed=result.seed or 0,
    )
