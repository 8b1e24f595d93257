"""One Score request end to end: fetch and decode audio, get word timestamps, score, build the response.

Shared by the gRPC servicer and the in-process CLI, so `soriflow score` with
and without `--server` runs the same code.
"""

from __future__ import annotations

import asyncio
import time

from soriflow.concurrency import run_blocking
from soriflow.errors import InvalidArgument
from soriflow.inputs import clean_text, load_audio
from soriflow.scoring.feedback import feedback_language
from soriflow.scoring.messages import to_proto, words_from_proto
from soriflow.scoring.model import Recording, ScoreInput, TimedWord
from soriflow.scoring.scorer import Scorer, base_language
from soriflow.scoring.settings import Settings
from soriflow.scoring.stt_client import SttClient
from soriflow.storage import ObjectStore
from soriflow.v1 import audio_pb2, scoring_pb2

RATE = 16000
MAX_CONTOUR_POINTS = 5000
#: Scoring is for sentences and short passages (audio up to SORIFLOW_SCORING_MAX_DURATION_S, 2 min by
#: default: some 300 words); a longer text cannot match the recording, and aligning it costs time.
MAX_REFERENCE_TEXT_CHARS = 5000


def _has_audio(audio: audio_pb2.AudioInput) -> bool:
    return audio.WhichOneof("source") is not None


def validate(request: scoring_pb2.ScoreRequest) -> None:
    """INVALID_ARGUMENT for requests that cannot be scored, before any audio is fetched."""
    if not request.HasField("audio") or not _has_audio(request.audio):
        raise InvalidArgument("audio is required: set audio.content (bytes) or audio.uri (s3://bucket/key)")
    has_reference_audio = request.HasField("reference_audio") and _has_audio(request.reference_audio)
    if not has_reference_audio and not request.reference_text.strip():
        raise InvalidArgument("give reference_text, reference_audio, or both, to score the learner against")
    if len(request.reference_text) > MAX_REFERENCE_TEXT_CHARS:
        raise InvalidArgument(
            f"reference_text is {len(request.reference_text)} characters; the limit is "
            f"{MAX_REFERENCE_TEXT_CHARS} (a sentence or a short passage read in one recording)"
        )
    clean_text(request.reference_text, "reference_text")
    if request.HasField("reference_audio") and not has_reference_audio:
        raise InvalidArgument("reference_audio is set but empty: set its content or uri, or leave it out")
    if not 0 <= request.pitch_contour_points <= MAX_CONTOUR_POINTS:
        raise InvalidArgument(
            f"pitch_contour_points must be 0-{MAX_CONTOUR_POINTS}, not {request.pitch_contour_points}"
        )
    if not 0 <= request.mispronunciation_threshold <= 100:
        raise InvalidArgument(
            f"mispronunciation_threshold must be 0-100, not {request.mispronunciation_threshold}"
        )
    if request.reference_words and not has_reference_audio:
        raise InvalidArgument("reference_words were given without reference_audio")
    feedback_language(request.feedback_language_code)


async def score_request(
    request: scoring_pb2.ScoreRequest,
    *,
    scorer: Scorer,
    stt: SttClient,
    settings: Settings,
    store: ObjectStore | None = None,
    time_remaining_s: float | None = None,
) -> scoring_pb2.ScoreResponse:
    """Scores one request; raises typed errors (INVALID_ARGUMENT, UNAVAILABLE, ...) for bad input or peers."""
    started = time.perf_counter()
    validate(request)
    language = base_language(request.language_code)
    has_reference_audio = request.HasField("reference_audio")
    learner_audio = await load_audio(request.audio, settings=settings, store=store, target_rate=RATE)
    scorer.check_duration(learner_audio.duration_s, "learner audio")
    reference_audio = None
    if has_reference_audio:
        reference_audio = await load_audio(
            request.reference_audio, settings=settings, store=store, target_rate=RATE, what="reference_audio"
        )
        scorer.check_duration(reference_audio.duration_s, "reference audio")

    learner_words = words_from_proto(request.words, "words") if request.words else None
    reference_words = (
        words_from_proto(request.reference_words, "reference_words") if request.reference_words else None
    )
    # The reference's own transcript is only needed without reference text, or to time its words when
    # no forced aligner serves the language.
    need_reference_stt = (
        reference_audio is not None
        and reference_words is None
        and (not request.reference_text.strip() or scorer.engine_for(language).name == "confidence")
    )

    def remaining() -> float | None:
        if time_remaining_s is None:
            return None
        return max(0.1, time_remaining_s - (time.perf_counter() - started))

    async def none() -> list[TimedWord] | None:
        return None

    learner_task = (
        stt.words(learner_audio.samples, RATE, language, timeout_s=remaining())
        if learner_words is None
        else none()
    )
    reference_task = (
        stt.words(reference_audio.samples, RATE, language, timeout_s=remaining())
        if need_reference_stt and reference_audio is not None
        else none()
    )
    fetched_learner, fetched_reference = await asyncio.gather(learner_task, reference_task)
    learner_words = learner_words if learner_words is not None else fetched_learner
    reference_words = reference_words if reference_words is not None else fetched_reference

    inp = ScoreInput(
        learner=Recording(learner_audio.samples, RATE, learner_words or []),
        reference=Recording(reference_audio.samples, RATE, reference_words or [])
        if reference_audio is not None
        else None,
        reference_text=clean_text(request.reference_text, "reference_text"),
        language=language,
        feedback_language=request.feedback_language_code,
        contour_points=request.pitch_contour_points or 200,
        mispronunciation_threshold=request.mispronunciation_threshold
        or settings.scoring_mispronunciation_threshold,
    )
    assessment = await run_blocking(lambda cancel: scorer.score(inp, cancel))
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    response: scoring_pb2.ScoreResponse = to_proto(assessment, processing_time_ms=elapsed_ms)
    return response
