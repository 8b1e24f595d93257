"""Mapping between the scorer's dataclasses and the scoring.proto messages (and a JSON view)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soriflow.errors import InvalidArgument
from soriflow.scoring.model import Assessment, ErrorType, ProsodyResult, TimedWord
from soriflow.scoring.pitch import Contour
from soriflow.scoring.report import error_name
from soriflow.scoring.timing import Fluency, Span
from soriflow.v1 import audio_pb2, scoring_pb2

_ERRORS = {
    ErrorType.NONE: scoring_pb2.WORD_ERROR_TYPE_NONE,
    ErrorType.OMISSION: scoring_pb2.WORD_ERROR_TYPE_OMISSION,
    ErrorType.INSERTION: scoring_pb2.WORD_ERROR_TYPE_INSERTION,
    ErrorType.SUBSTITUTION: scoring_pb2.WORD_ERROR_TYPE_SUBSTITUTION,
    ErrorType.MISPRONUNCIATION: scoring_pb2.WORD_ERROR_TYPE_MISPRONUNCIATION,
}
_METHODS = {
    "gop": scoring_pb2.ACCURACY_METHOD_PHONE_GOP,
    "confidence": scoring_pb2.ACCURACY_METHOD_WORD_CONFIDENCE,
    None: scoring_pb2.ACCURACY_METHOD_UNSPECIFIED,
}


def ms(seconds: float) -> int:
    return round(seconds * 1000.0)


def words_from_proto(words: Sequence[audio_pb2.Word], what: str) -> list[TimedWord]:
    """Caller-supplied word timestamps, validated; all-zero confidences mean "not given" (None)."""
    out: list[TimedWord] = []
    given_confidence = any(w.confidence > 0 for w in words)
    for k, w in enumerate(words):
        if w.start_ms < 0 or w.end_ms < w.start_ms:
            raise InvalidArgument(
                f"{what}[{k}] ('{w.word}') has start_ms={w.start_ms}, end_ms={w.end_ms}: times must be "
                "non-negative with end_ms >= start_ms"
            )
        if not 0.0 <= w.confidence <= 1.0:
            raise InvalidArgument(f"{what}[{k}] ('{w.word}') has confidence {w.confidence}; it must be 0-1")
        out.append(
            TimedWord(
                w.word,
                Span(w.start_ms / 1000.0, w.end_ms / 1000.0),
                float(w.confidence) if given_confidence else None,
            )
        )
    if out and all(w.span.end_s == 0 for w in out):
        raise InvalidArgument(
            f"{what} have no timestamps (every end_ms is 0): give start_ms/end_ms, or leave "
            f"{what} empty to let the service ask the STT service"
        )
    return out


def _fluency(f: Fluency) -> scoring_pb2.FluencyMetrics:
    return scoring_pb2.FluencyMetrics(
        speech_duration_ms=ms(f.speech_duration_s),
        speech_rate_syllables_per_second=f.speech_rate,
        articulation_rate_syllables_per_second=f.articulation_rate,
        words_per_minute=f.words_per_minute,
        mean_length_of_run_words=f.mean_length_of_run,
        pauses=[
            scoring_pb2.Pause(
                start_ms=ms(p.start_s), end_ms=ms(p.end_s), word_before=p.word_before, word_after=p.word_after
            )
            for p in f.pauses
        ],
        total_pause_ms=ms(f.total_pause_s),
        longest_pause_ms=ms(f.longest_pause_s),
    )


def _prosody(p: ProsodyResult) -> scoring_pb2.ProsodyMetrics:
    return scoring_pb2.ProsodyMetrics(
        pitch_similarity=p.pitch_similarity,
        learner_pitch_range_semitones=p.learner_range_st,
        reference_pitch_range_semitones=p.reference_range_st,
        monotone=p.monotone,
        learner_npvi=p.learner_npvi,
        reference_npvi=p.reference_npvi,
        energy_similarity=p.energy_similarity,
        rhythm_similarity=p.rhythm_similarity,
    )


def _contour(c: Contour, reference_times_s: Sequence[float] | None = None) -> scoring_pb2.PitchContour:
    return scoring_pb2.PitchContour(
        times_ms=[ms(t) for t in c.times_s],
        semitones=[float(v) for v in c.semitones],
        voiced=[bool(v) for v in c.voiced],
        median_hz=c.median_hz,
        reference_times_ms=[ms(t) for t in reference_times_s] if reference_times_s is not None else [],
    )


def to_proto(a: Assessment, *, processing_time_ms: int = 0) -> scoring_pb2.ScoreResponse:
    """The ScoreResponse for an assessment."""
    response = scoring_pb2.ScoreResponse(
        overall_score=a.overall,
        accuracy_score=a.accuracy,
        fluency_score=a.fluency,
        completeness_score=a.completeness,
        prosody_score=a.prosody,
        speed_ratio=a.speed_ratio,
        pause_similarity=a.pause_similarity,
        pitch_similarity=a.prosody_metrics.pitch_similarity,
        learner_fluency=_fluency(a.learner_fluency),
        prosody=_prosody(a.prosody_metrics),
        feedback=a.feedback,
        learner_pitch=_contour(
            a.learner_contour,
            list(a.learner_contour_reference_times_s)
            if a.learner_contour_reference_times_s is not None
            else None,
        ),
        recognized_text=a.recognized_text,
        reference_text=a.reference_text,
        audio_duration_ms=ms(a.duration_s),
        processing_time_ms=processing_time_ms,
        notes=a.notes,
    )
    if a.reference_fluency is not None:
        response.reference_fluency.CopyFrom(_fluency(a.reference_fluency))
    if a.reference_contour is not None:
        response.reference_pitch.CopyFrom(_contour(a.reference_contour))
    for w in a.words:
        response.words.append(
            scoring_pb2.WordScore(
                word=w.word,
                recognized_word=w.recognized,
                error_type=_ERRORS[w.error],
                accuracy_score=w.accuracy,
                start_ms=ms(w.span.start_s) if w.span else 0,
                end_ms=ms(w.span.end_s) if w.span else 0,
                pause_before_ms=ms(w.pause_before_s),
                phones=[
                    scoring_pb2.PhoneScore(
                        phone=p.phone, start_ms=ms(p.start_s), end_ms=ms(p.end_s), accuracy_score=p.score
                    )
                    for p in w.phones
                ],
                reference_index=w.reference_index,
                accuracy_method=_METHODS[w.method],
                reference_start_ms=ms(w.reference_span.start_s) if w.reference_span else 0,
                reference_end_ms=ms(w.reference_span.end_s) if w.reference_span else 0,
            )
        )
    return response


def to_json(response: scoring_pb2.ScoreResponse) -> dict[str, Any]:
    """A flat JSON view for the CLI and scripts: the scores first, then words, timing, prosody."""

    def fluency(f: scoring_pb2.FluencyMetrics) -> dict[str, Any]:
        return {
            "speech_duration_ms": f.speech_duration_ms,
            "speech_rate_syllables_per_second": round(f.speech_rate_syllables_per_second, 3),
            "articulation_rate_syllables_per_second": round(f.articulation_rate_syllables_per_second, 3),
            "words_per_minute": round(f.words_per_minute, 1),
            "mean_length_of_run_words": round(f.mean_length_of_run_words, 2),
            "pauses": [
                {
                    "start_ms": p.start_ms,
                    "end_ms": p.end_ms,
                    "word_before": p.word_before,
                    "word_after": p.word_after,
                }
                for p in f.pauses
            ],
            "total_pause_ms": f.total_pause_ms,
            "longest_pause_ms": f.longest_pause_ms,
        }

    p = response.prosody
    return {
        "overall": round(response.overall_score, 1),
        "accuracy": round(response.accuracy_score, 1),
        "fluency": round(response.fluency_score, 1),
        "completeness": round(response.completeness_score, 1),
        "prosody": round(response.prosody_score, 1),
        "speed_ratio": round(response.speed_ratio, 3),
        "pause_similarity": round(response.pause_similarity, 3),
        "pitch_similarity": round(response.pitch_similarity, 3),
        "reference_text": response.reference_text,
        "recognized_text": response.recognized_text,
        "words": [
            {
                "word": w.word,
                "recognized": w.recognized_word,
                "error": error_name(w.error_type),
                "accuracy": round(w.accuracy_score, 1),
                "accuracy_method": scoring_pb2.AccuracyMethod.Name(w.accuracy_method)  # type: ignore[arg-type]
                .removeprefix("ACCURACY_METHOD_")
                .lower(),
                "start_ms": w.start_ms,
                "end_ms": w.end_ms,
                "pause_before_ms": w.pause_before_ms,
                "reference_index": w.reference_index,
                "phones": [{"phone": ph.phone, "accuracy": round(ph.accuracy_score, 1)} for ph in w.phones],
            }
            for w in response.words
        ],
        "learner_fluency": fluency(response.learner_fluency),
        "reference_fluency": fluency(response.reference_fluency)
        if response.HasField("reference_fluency")
        else None,
        "prosody_metrics": {
            "pitch_similarity": round(p.pitch_similarity, 3),
            "learner_pitch_range_semitones": round(p.learner_pitch_range_semitones, 2),
            "reference_pitch_range_semitones": round(p.reference_pitch_range_semitones, 2),
            "monotone": p.monotone,
            "learner_npvi": round(p.learner_npvi, 1),
            "reference_npvi": round(p.reference_npvi, 1),
            "energy_similarity": round(p.energy_similarity, 3),
            "rhythm_similarity": round(p.rhythm_similarity, 3),
        },
        "feedback": list(response.feedback),
        "notes": list(response.notes),
        "audio_duration_ms": response.audio_duration_ms,
        "processing_time_ms": response.processing_time_ms,
    }
