"""What each kind of stage does: the service call, the outputs it stores, the result it adds.

A stage kind turns the stage's `with:` arguments and the results of the
stages it needs into one RPC, then says which output files to store, how its
result shows in the job's `JobResult`, and what else it records (the scoring
kind's row in `pronunciation_results`). The runner knows nothing of any kind
in particular: a new kind is a `StageKind` subclass decorated with `@register`,
and pipelines may `uses:` it at once (`generation.py` holds `summarizer.generate`
and `image.generate`, registered when this module is imported).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from soriflow import transcript as transcript_formats
from soriflow.errors import InvalidArgument
from soriflow.gateway.clients import ServiceClients
from soriflow.gateway.gates import Signal
from soriflow.gateway.templates import render, render_value
from soriflow.v1 import (
    audio_pb2,
    gateway_pb2,
    scoring_pb2,
    stt_pb2,
    summarizer_pb2,
    tts_pb2,
)

if TYPE_CHECKING:
    from soriflow.gateway.store import JobStore, PronunciationRow


@dataclass(frozen=True)
class OutputFile:
    name: str
    data: bytes
    content_type: str


@dataclass
class StageContext:
    """What a stage can see: the job's inputs and the results of finished stages."""

    job_id: str
    source_uri: str
    params: Mapping[str, str]
    results: dict[str, Message]
    clients: ServiceClients
    timeout_s: float
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: The stage being run (or whose result is being applied).
    stage: str = ""
    #: What one attempt of a stage hands from `call` to `outputs` besides its result message (an
    #: image stage's PNG, which is an output and is not saved with the result).
    scratch: dict[str, Any] = field(default_factory=dict)

    def result_of(self, stage: str, kind: type[Message]) -> Message | None:
        result = self.results.get(stage)
        return result if isinstance(result, kind) else None


#: Job metadata (and object metadata, for S3 uploads) that describes headerless audio.
ENCODING_KEY = "soriflow-encoding"
SAMPLE_RATE_KEY = "soriflow-sample-rate-hz"
CHANNELS_KEY = "soriflow-channel-count"
HEADERLESS = frozenset(
    {
        audio_pb2.AUDIO_ENCODING_LINEAR16,
        audio_pb2.AUDIO_ENCODING_MULAW,
        audio_pb2.AUDIO_ENCODING_ALAW,
        audio_pb2.AUDIO_ENCODING_FLOAT32,
    }
)


def audio_format_metadata(audio: audio_pb2.AudioInput) -> dict[str, str]:
    """The declared format of headerless audio, as job metadata (empty for containers)."""
    if audio.encoding not in HEADERLESS:
        return {}
    values = {
        ENCODING_KEY: audio_pb2.AudioEncoding.Name(audio.encoding),
        SAMPLE_RATE_KEY: str(audio.sample_rate_hz),
    }
    if audio.channel_count:
        values[CHANNELS_KEY] = str(audio.channel_count)
    return values


def source_audio(ctx: StageContext) -> audio_pb2.AudioInput:
    """The job's source audio with its declared format, so headerless PCM can be decoded.

    The format comes from the job's metadata: set by SubmitJob from `audio.encoding` and
    `audio.sample_rate_hz`, or taken from the uploaded object's metadata
    (`x-amz-meta-soriflow-encoding: LINEAR16`, `x-amz-meta-soriflow-sample-rate-hz: 8000`).
    """
    audio = audio_pb2.AudioInput(uri=ctx.source_uri)
    name = ctx.metadata.get(ENCODING_KEY, "").strip().upper()
    if not name:
        return audio
    full = name if name.startswith("AUDIO_ENCODING_") else f"AUDIO_ENCODING_{name}"
    if full not in audio_pb2.AudioEncoding.DESCRIPTOR.values_by_name:
        raise InvalidArgument(
            f"{ENCODING_KEY} {name!r} is not an encoding; choose one of {sorted(HEADERLESS_NAMES)}"
        )
    try:
        audio.encoding = audio_pb2.AudioEncoding.Value(full)
        audio.sample_rate_hz = int(ctx.metadata.get(SAMPLE_RATE_KEY, "0") or 0)
        audio.channel_count = int(ctx.metadata.get(CHANNELS_KEY, "0") or 0)
    except ValueError as exc:
        raise InvalidArgument(f"{SAMPLE_RATE_KEY} and {CHANNELS_KEY} must be whole numbers: {exc}") from None
    return audio


HEADERLESS_NAMES = frozenset(
    audio_pb2.AudioEncoding.Name(e).removeprefix("AUDIO_ENCODING_") for e in HEADERLESS
)


class StageKind(abc.ABC):
    """One kind of stage: the call it makes, the files it stores, its part of the job result."""

    #: The name pipelines give in `uses:` (`<service>.<call>`).
    name: ClassVar[str]
    #: The stage service it calls (a `ServiceClients` name), shown in the job's stages.
    service: ClassVar[str]
    result_type: ClassVar[type[Message]]
    #: Arguments rendered by the stage itself, with the results of earlier stages (not job parameters).
    late_bound: ClassVar[frozenset[str]] = frozenset()
    #: What `signals` measures; pipeline gates may check these (names are checked at load).
    signal_names: ClassVar[frozenset[str]] = frozenset()

    def arguments(self, with_: Mapping[str, Any], variables: Mapping[str, str]) -> dict[str, Any]:
        """The stage's `with:` with job parameters filled in (late-bound arguments left as written)."""
        return {k: v if k in self.late_bound else render_value(v, variables) for k, v in with_.items()}

    @abc.abstractmethod
    async def call(self, ctx: StageContext, args: Mapping[str, Any]) -> Message:
        """Makes the service call (with `ctx.timeout_s` as deadline)."""

    @abc.abstractmethod
    def outputs(self, ctx: StageContext, args: Mapping[str, Any], result: Message) -> list[OutputFile]:
        """The files to store for the names listed in `args["outputs"]`."""

    @abc.abstractmethod
    def apply(
        self, ctx: StageContext, args: Mapping[str, Any], result: Message, job_result: gateway_pb2.JobResult
    ) -> None:
        """Adds the result to the job's JobResult (`ctx.results` holds the stages before it)."""

    def persist(self, store: JobStore, ctx: StageContext, args: Mapping[str, Any], result: Message) -> None:
        """Records what the kind keeps besides outputs (blocking; before the stage counts as done).

        Must be idempotent: a re-run after a crash between this and the stage's completion repeats it.
        """
        return None

    def text_of(self, result: Message) -> str | None:
        """The text later stages' templates see as `{<this stage's name>}` (None: no text)."""
        return None

    def reads_source(self, with_: Mapping[str, Any]) -> bool:
        """Whether the stage reads the job's source audio (a scheduled job has none)."""
        return False

    def signals(self, result: Message, speaker: str = "") -> dict[str, Signal]:
        """What the kind measures about its result, for pipeline gates (`soriflow.gateway.gates`);
        `speaker`: of that speaker's part only, where the kind knows speakers. None: not measurable."""
        return {}


K = TypeVar("K", bound=type[StageKind])

#: Every stage kind by its `uses:` name.
KINDS: dict[str, StageKind] = {}


def register(kind: K) -> K:
    """Class decorator: makes a stage kind available to pipelines under its `name`."""
    if kind.name in KINDS:
        raise ValueError(f"stage kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind()
    return kind


def stage_texts(ctx: StageContext) -> dict[str, str]:
    """The text of every finished stage, by stage name (a transcript, a summary, a story)."""
    texts = {}
    for name, result in ctx.results.items():
        for kind in KINDS.values():
            if isinstance(result, kind.result_type):
                text = kind.text_of(result)
                if text is not None:
                    texts[name] = text
                break
    return texts


def template_variables(ctx: StageContext) -> dict[str, str]:
    """What `{name}` fields of a stage's text templates can use: the job's metadata, its parameters
    (which win over metadata), then the text of every finished stage by its name (`{stt}`,
    `{story}`), which wins over both."""
    return {
        **{k: str(v) for k, v in ctx.metadata.items()},
        **{k: str(v) for k, v in ctx.params.items()},
        **stage_texts(ctx),
    }


def _json_bytes(message: Message) -> bytes:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()


def _csv(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


def _wanted(args: Mapping[str, Any]) -> list[str]:
    return [str(name) for name in args.get("outputs", [])]


@register
class Recognize(StageKind):
    """stt.recognize: a transcript of the source (or reference) audio."""

    name = "stt.recognize"
    service = "stt"
    result_type: ClassVar[type[Message]] = stt_pb2.RecognizeResponse

    async def call(self, ctx: StageContext, args: Mapping[str, Any]) -> Message:
        which = args.get("audio", "source")
        if which == "source":
            audio = source_audio(ctx)
        elif which == "reference":
            uri = ctx.params.get("reference_uri", "")
            if not uri:
                raise InvalidArgument("no reference audio for this job (reference_uri is empty)")
            audio = audio_pb2.AudioInput(uri=uri)
        else:
            raise InvalidArgument(f"stt.recognize: audio must be 'source' or 'reference', not {which!r}")
        separate = args.get("channel_mode") == "separate"
        config = stt_pb2.RecognitionConfig(
            language_code=str(args.get("language_code", "") or ""),
            enable_word_time_offsets=bool(args.get("word_timestamps", True)),
            channel_mode=stt_pb2.CHANNEL_MODE_SEPARATE if separate else stt_pb2.CHANNEL_MODE_MIX,
            channel_labels=_csv(args.get("channel_labels")),
        )
        if "beam_size" in args:
            config.beam_size = int(args["beam_size"])
        request = stt_pb2.RecognizeRequest(audio=audio, config=config)
        response: Message = await ctx.clients.stub("stt").Recognize(request, timeout=ctx.timeout_s)
        return response

    def outputs(self, ctx: StageContext, args: Mapping[str, Any], result: Message) -> list[OutputFile]:
        assert isinstance(result, stt_pb2.RecognizeResponse)
        t = result.transcript
        render_by_name: dict[str, tuple[Callable[[], bytes], str]] = {
            "transcript.txt": (lambda: transcript_formats.to_text(t).encode(), "text/plain; charset=utf-8"),
            "transcript.json": (
                lambda: (
                    json.dumps(transcript_formats.to_dict(t), ensure_ascii=False, indent=2) + "\n"
                ).encode(),
                "application/json",
            ),
            "subtitles.srt": (lambda: transcript_formats.to_srt(t).encode(), "application/x-subrip"),
            "subtitles.vtt": (lambda: transcript_formats.to_vtt(t).encode(), "text/vtt"),
        }
        files = []
        for name in _wanted(args):
            if name not in render_by_name:
                raise InvalidArgument(
                    f"stt.recognize cannot write {name!r}; it writes {sorted(render_by_name)}"
                )
            make, content_type = render_by_name[name]
            files.append(OutputFile(name, make(), content_type))
        return files

    def apply(
        self, ctx: StageContext, args: Mapping[str, Any], result: Message, job_result: gateway_pb2.JobResult
    ) -> None:
        assert isinstance(result, stt_pb2.RecognizeResponse)
        target = (
            job_result.reference_transcript if args.get("audio") == "reference" else job_result.transcript
        )
        target.CopyFrom(result.transcript)

    def text_of(self, result: Message) -> str | None:
        assert isinstance(result, stt_pb2.RecognizeResponse)
        return result.transcript.text.strip()

    def reads_source(self, with_: Mapping[str, Any]) -> bool:
        return bool(with_.get("audio", "source") == "source")

    signal_names = frozenset(
        {
            "words",
            "word_confidence",
            "avg_logprob",
            "no_speech_probability",
            "language",
            "language_probability",
        }
    )

    def signals(self, result: Message, speaker: str = "") -> dict[str, Signal]:
        """How well the speech was heard: Whisper's own confidence, of one speaker's channel.

        `words`: whitespace-separated words (Korean: eojeol); `word_confidence`: the mean
        probability of its words (None without word timestamps or words); `avg_logprob` and
        `no_speech_probability`: the segments' values weighted by their duration (None without
        speech); `language`, `language_probability`: of the speaker's channel (each channel is
        detected on its own), else the transcript's.
        """
        assert isinstance(result, stt_pb2.RecognizeResponse)
        return transcript_signals(result.transcript, speaker)


def transcript_signals(transcript: audio_pb2.Transcript, speaker: str = "") -> dict[str, Signal]:
    """The STT kind's gate signals of a transcript (of `speaker`'s segments when they are labelled)."""
    labelled = any(s.speaker for s in transcript.segments)
    segments = [s for s in transcript.segments if not (speaker and labelled) or s.speaker == speaker]
    weights = [max(1, s.end_ms - s.start_ms) for s in segments]
    total = sum(weights)

    def mean(values: list[float]) -> float | None:
        return sum(v * w for v, w in zip(values, weights, strict=True)) / total if segments else None

    heard: dict[str, int] = {}
    for segment, weight in zip(segments, weights, strict=True):
        if segment.language_code:
            heard[segment.language_code] = heard.get(segment.language_code, 0) + weight
    language, probability = transcript.language_code, float(transcript.language_probability)
    if heard:
        language = max(heard, key=lambda code: heard[code])
        probability = next(s.language_probability for s in segments if s.language_code == language)
    spoken = [w.confidence for w in transcript.words if not (speaker and labelled) or w.speaker == speaker]
    return {
        "words": sum(len(s.text.split()) for s in segments),
        "word_confidence": sum(spoken) / len(spoken) if spoken else None,
        "avg_logprob": mean([s.avg_logprob for s in segments]),
        "no_speech_probability": mean([s.no_speech_probability for s in segments]),
        "language": language,
        "language_probability": probability,
    }


STYLES = {
    "inquiry": summarizer_pb2.SUMMARY_STYLE_INQUIRY,
    "bullets": summarizer_pb2.SUMMARY_STYLE_BULLETS,
    "abstract": summarizer_pb2.SUMMARY_STYLE_ABSTRACT,
    "custom": summarizer_pb2.SUMMARY_STYLE_CUSTOM,
}


def speaker_transcript(source: audio_pb2.Transcript, speakers: list[str]) -> audio_pb2.Transcript:
    """The part of a transcript spoken by `speakers` (all of it when none of them spoke)."""
    if not speakers:
        return source
    keep = [s for s in source.segments if s.speaker in speakers]
    if not keep:
        return source
    filtered = audio_pb2.Transcript(
        language_code=source.language_code,
        language_probability=source.language_probability,
        audio_duration_ms=source.audio_duration_ms,
        channel_count=source.channel_count,
    )
    filtered.segments.extend(keep)
    filtered.words.extend(w for w in source.words if w.speaker in speakers)
    filtered.text = "\n".join(f"{s.speaker}: {s.text.strip()}" if s.speaker else s.text.strip() for s in keep)
    return filtered


@register
class Summarize(StageKind):
    """summarizer.summarize: a summary of a transcript made by an earlier stage."""

    name = "summarizer.summarize"
    service = "summarizer"
    result_type: ClassVar[type[Message]] = summarizer_pb2.SummarizeResponse

    async def call(self, ctx: StageContext, args: Mapping[str, Any]) -> Message:
        source_stage = str(args.get("transcript_from", ""))
        recognized = ctx.result_of(source_stage, stt_pb2.RecognizeResponse)
        if not isinstance(recognized, stt_pb2.RecognizeResponse):
            raise InvalidArgument(f"summarizer.summarize: transcript_from {source_stage!r} has no transcript")
        transcript = speaker_transcript(recognized.transcript, _csv(args.get("speakers")))
        if not transcript.text.strip():
            raise InvalidArgument("nothing to summarize: the recording has no recognized speech")
        style = str(args.get("style", "abstract"))
        if style not in STYLES:
            raise InvalidArgument(f"unknown summary style {style!r}; choose {sorted(STYLES)}")
        request = summarizer_pb2.SummarizeRequest(
            transcript=transcript,
            style=STYLES[style],
            prompt=str(args.get("prompt", "")),
            language_code=str(args.get("language_code", "") or transcript.language_code),
            max_output_tokens=int(args.get("max_output_tokens", 0)),
            focus_speaker=str(args.get("focus_speaker", "") or ""),
            engine=str(args.get("engine", "") or ""),
        )
        response: Message = await ctx.clients.stub("summarizer").Summarize(request, timeout=ctx.timeout_s)
        return response

    def outputs(self, ctx: StageContext, args: Mapping[str, Any], result: Message) -> list[OutputFile]:
        files = []
        for name in _wanted(args):
            if name != "summary.json":
                raise InvalidArgument(f"summarizer.summarize writes summary.json, not {name!r}")
            files.append(OutputFile(name, _json_bytes(result), "application/json"))
        return files

    def apply(
        self, ctx: StageContext, args: Mapping[str, Any], result: Message, job_result: gateway_pb2.JobResult
    ) -> None:
        assert isinstance(result, summarizer_pb2.SummarizeResponse)
        job_result.summary.CopyFrom(
            gateway_pb2.SummaryResult(
                summary=result.summary, model=result.model, language_code=result.language_code
            )
        )

    def text_of(self, result: Message) -> str | None:
        assert isinstance(result, summarizer_pb2.SummarizeResponse)
        return result.summary.strip()

    signal_names = frozenset({"grounded", "fallback", "unsupported_terms", "engine"})

    def signals(self, result: Message, speaker: str = "") -> dict[str, Signal]:
        """The summarizer's grounding check: `grounded` (false when not checked), `fallback`
        (none, strict_retry, faithful_engine; unspecified: not checked), `unsupported_terms` (count)."""
        assert isinstance(result, summarizer_pb2.SummarizeResponse)
        fallback = summarizer_pb2.SummaryFallback.Name(result.fallback).removeprefix("SUMMARY_FALLBACK_")
        return {
            "grounded": result.grounded,
            "fallback": fallback.lower(),
            "unsupported_terms": len(result.unsupported_terms),
            "engine": result.engine,
        }


ENCODINGS = {
    "linear16": (audio_pb2.AUDIO_ENCODING_LINEAR16, "audio/wav"),
    "mulaw": (audio_pb2.AUDIO_ENCODING_MULAW, "audio/wav"),
    "alaw": (audio_pb2.AUDIO_ENCODING_ALAW, "audio/wav"),
    "mp3": (audio_pb2.AUDIO_ENCODING_MP3, "audio/mpeg"),
    "ogg-opus": (audio_pb2.AUDIO_ENCODING_OGG_OPUS, "audio/ogg"),
}
BCP47 = {
    "ko": "ko-KR",
    "en": "en-US",
    "ja": "ja-JP",
    "zh": "zh-CN",
    "es": "es-ES",
    "fr": "fr-FR",
    "de": "de-DE",
}


@register
class Synthesize(StageKind):
    """tts.synthesize: speech from a template filled with earlier results (e.g. the summary)."""

    name = "tts.synthesize"
    service = "tts"
    result_type: ClassVar[type[Message]] = tts_pb2.SynthesizeResponse
    late_bound: ClassVar[frozenset[str]] = frozenset({"template", "templates"})

    def _language(self, ctx: StageContext, args: Mapping[str, Any]) -> str:
        language = str(args.get("language_code", "") or "")
        if not language:
            for result in ctx.results.values():
                if isinstance(result, summarizer_pb2.SummarizeResponse) and result.language_code:
                    language = result.language_code
                elif isinstance(result, stt_pb2.RecognizeResponse) and result.transcript.language_code:
                    language = language or result.transcript.language_code
        language = language or "en"
        return BCP47.get(language, language)

    def text(self, ctx: StageContext, args: Mapping[str, Any]) -> tuple[str, str, dict[str, str]]:
        """(template, language, variables) for this job."""
        language = self._language(ctx, args)
        templates: dict[str, str] = dict(args.get("templates") or {})
        template = str(args.get("template", "") or "")
        if not template:
            base = language.split("-")[0]
            template = templates.get(language) or templates.get(base) or ""
            if not template and templates.get("en"):
                # No template in that language: the English one, spoken by an English voice (never
                # English words read out by another language's voice).
                template, language = templates["en"], BCP47["en"]
        if not template:
            raise InvalidArgument("tts.synthesize needs `template` or `templates` for the reply's language")
        variables = {**{k: str(v) for k, v in ctx.params.items()}, **stage_texts(ctx)}
        for result in ctx.results.values():
            if isinstance(result, summarizer_pb2.SummarizeResponse):
                variables["summary"] = result.summary.strip()
                # For templates that continue the sentence ("문의하신 내용이 {summary_phrase} 맞으신가요?").
                variables["summary_phrase"] = result.summary.strip().rstrip(".。!? ")
        return template, language, variables

    async def call(self, ctx: StageContext, args: Mapping[str, Any]) -> Message:
        template, language, variables = self.text(ctx, args)
        encoding_name = str(args.get("encoding", "linear16"))
        if encoding_name not in ENCODINGS:
            raise InvalidArgument(f"unknown encoding {encoding_name!r}; choose {sorted(ENCODINGS)}")
        request = tts_pb2.SynthesizeRequest(
            template=tts_pb2.TextTemplate(template=template, variables=variables),
            voice=tts_pb2.VoiceSelection(
                name=str(args.get("voice", "")), language_code=language, engine=str(args.get("engine", ""))
            ),
            audio_config=tts_pb2.AudioOutputConfig(
                encoding=ENCODINGS[encoding_name][0], sample_rate_hz=int(args.get("sample_rate_hz", 0))
            ),
        )
        response: Message = await ctx.clients.stub("tts").Synthesize(request, timeout=ctx.timeout_s)
        return response

    def outputs(self, ctx: StageContext, args: Mapping[str, Any], result: Message) -> list[OutputFile]:
        assert isinstance(result, tts_pb2.SynthesizeResponse)
        content_type = result.mime_type or ENCODINGS[str(args.get("encoding", "linear16"))][1]
        return [OutputFile(name, result.audio_content, content_type) for name in _wanted(args)]

    def apply(
        self, ctx: StageContext, args: Mapping[str, Any], result: Message, job_result: gateway_pb2.JobResult
    ) -> None:
        # The sentence spoken, as the person heard it; the audio itself is an output.
        template, _, variables = self.text(ctx, args)
        job_result.reply_text = render(template, variables)


@register
class Score(StageKind):
    """scoring.score: pronunciation of the source audio against the reference audio and/or text."""

    name = "scoring.score"
    service = "scoring"
    result_type: ClassVar[type[Message]] = scoring_pb2.ScoreResponse

    async def call(self, ctx: StageContext, args: Mapping[str, Any]) -> Message:
        learner = ctx.result_of(str(args.get("learner_from", "")), stt_pb2.RecognizeResponse)
        reference = ctx.result_of(str(args.get("reference_from", "")), stt_pb2.RecognizeResponse)
        reference_text = str(args.get("reference_text", "") or "")
        reference_uri = reference_audio_uri(ctx, args)
        if not reference_uri and not reference_text:
            raise InvalidArgument(
                "no reference for this recording: give reference_text, reference_uri, or upload the "
                "reference "
                "where the pipeline's key pattern expects it"
            )
        request = scoring_pb2.ScoreRequest(
            audio=source_audio(ctx),
            reference_text=reference_text,
            language_code=str(args.get("language_code", "en") or "en"),
            feedback_language_code=str(args.get("feedback_language_code", "en") or "en"),
        )
        if reference_uri:
            request.reference_audio.CopyFrom(audio_pb2.AudioInput(uri=reference_uri))
        if isinstance(learner, stt_pb2.RecognizeResponse):
            request.words.extend(learner.transcript.words)
        if isinstance(reference, stt_pb2.RecognizeResponse):
            request.reference_words.extend(reference.transcript.words)
        response: Message = await ctx.clients.stub("scoring").Score(request, timeout=ctx.timeout_s)
        return response

    def outputs(self, ctx: StageContext, args: Mapping[str, Any], result: Message) -> list[OutputFile]:
        files = []
        for name in _wanted(args):
            if name != "score.json":
                raise InvalidArgument(f"scoring.score writes score.json, not {name!r}")
            files.append(OutputFile(name, _json_bytes(result), "application/json"))
        return files

    def apply(
        self, ctx: StageContext, args: Mapping[str, Any], result: Message, job_result: gateway_pb2.JobResult
    ) -> None:
        assert isinstance(result, scoring_pb2.ScoreResponse)
        job_result.score.CopyFrom(result)

    def reads_source(self, with_: Mapping[str, Any]) -> bool:
        return True

    def persist(self, store: JobStore, ctx: StageContext, args: Mapping[str, Any], result: Message) -> None:
        """One row per scored attempt in `pronunciation_results`, what a learning app queries."""
        assert isinstance(result, scoring_pb2.ScoreResponse)
        store.save_pronunciation(pronunciation_row(ctx, args, result))


def reference_audio_uri(ctx: StageContext, args: Mapping[str, Any]) -> str:
    """The reference recording scored against: the job's, when its transcription ran ('' if none)."""
    reference = ctx.result_of(str(args.get("reference_from", "")), stt_pb2.RecognizeResponse)
    return ctx.params.get("reference_uri", "") if reference is not None else ""


#: Job metadata (SubmitJob's `metadata`, or the object's `x-amz-meta-*`) carried into an attempt's row:
#: the caller's own ids, e.g. a Django generic relation (`content_type_id`, `object_id`) and its user.
#: Dashes count as underscores (`x-amz-meta-content-type-id`).
EXTERNAL_IDS = ("user_id", "content_type_id", "object_id")
MAX_ID_CHARS = 200
#: What `mispronounced_ratio` counts: reference words not said as they should be.
NOT_CORRECT = frozenset(
    {
        scoring_pb2.WORD_ERROR_TYPE_MISPRONUNCIATION,
        scoring_pb2.WORD_ERROR_TYPE_SUBSTITUTION,
        scoring_pb2.WORD_ERROR_TYPE_OMISSION,
    }
)


def external_ids(metadata: Mapping[str, str], *, strict: bool = True) -> dict[str, str]:
    """The caller's ids among a job's metadata, checked: INVALID_ARGUMENT names a bad one.

    `content_type_id` must be a whole number (the id of a row of the app's content type table),
    so that an app's foreign key can join on it; the others are text of at most 200 characters.
    `strict=False` leaves out a bad id instead (the row of an attempt refused for it).
    """
    found: dict[str, str] = {}
    for key, value in metadata.items():
        name = key.strip().lower().replace("-", "_")
        if name in EXTERNAL_IDS and value.strip():
            found[name] = value.strip()
    for name, value in list(found.items()):
        problem = ""
        if len(value) > MAX_ID_CHARS:
            problem = f"metadata {name} is {len(value)} characters; the limit is {MAX_ID_CHARS}"
        elif name == "content_type_id" and not (value.isascii() and value.isdigit() and int(value) < 2**63):
            problem = (
                f"metadata content_type_id {value[:40]!r} is not a whole number: it names a row of the "
                "app's content types (Django's django_content_type.id)"
            )
        if problem and strict:
            raise InvalidArgument(problem)
        if problem:
            del found[name]
    return found


def scores_pronunciation(kinds: list[str]) -> bool:
    """Whether a pipeline whose stages use these kinds records attempts in `pronunciation_results`."""
    return Score.name in kinds


def pronunciation_attempt(
    job_id: str, source_uri: str, metadata: Mapping[str, str], params: Mapping[str, str]
) -> PronunciationRow:
    """An attempt's row before it is scored: who and what, from the caller's ids and the key's fields."""
    from soriflow.gateway.store import PronunciationRow

    ids = external_ids(metadata, strict=False)
    type_id = ids.get("content_type_id")
    return PronunciationRow(
        job_id=job_id,
        source_uri=source_uri,
        user_id=ids.get("user_id") or metadata.get("user", "")[:MAX_ID_CHARS],
        content_type_id=int(type_id) if type_id is not None else None,
        object_id=ids.get("object_id"),
        audio_file=source_uri.split("/", 3)[3] if source_uri.count("/") >= 3 else "",
        content_type=metadata.get("content_type", "")[:200],
        level=metadata.get("level", "")[:50],
        title=metadata.get("title", "")[:500],
        line=metadata.get("line", "")[:50],
        reference_uri=params.get("reference_uri", ""),
        reference_text=params.get("reference_text", ""),
    )


def pronunciation_row(
    ctx: StageContext, args: Mapping[str, Any], score: scoring_pb2.ScoreResponse
) -> PronunciationRow:
    """The row of a scored recording: the attempt's labels and every score the service computed.

    Similarities that need reference audio (pitch, rhythm, energy) are NULL without it, not 0:
    nothing was measured, and a learner must not see a zero for it.
    """
    row = pronunciation_attempt(ctx.job_id, ctx.source_uri, ctx.metadata, ctx.params)
    row.reference_uri = reference_audio_uri(ctx, args)
    with_audio = bool(row.reference_uri)
    reference_words = [w for w in score.words if w.error_type != scoring_pb2.WORD_ERROR_TYPE_INSERTION]
    wrong = [w for w in reference_words if w.error_type in NOT_CORRECT]
    row.reference_text = score.reference_text
    row.recognized_text = score.recognized_text
    row.overall_score = score.overall_score
    row.accuracy_score = score.accuracy_score
    row.fluency_score = score.fluency_score
    row.completeness_score = score.completeness_score
    row.prosody_score = score.prosody_score
    row.speed_ratio = score.speed_ratio
    row.pause_similarity = score.pause_similarity
    row.pitch_similarity = score.pitch_similarity if with_audio else None
    row.rhythm_similarity = score.prosody.rhythm_similarity if with_audio else None
    row.energy_similarity = score.prosody.energy_similarity if with_audio else None
    row.mispronounced_ratio = len(wrong) / len(reference_words) if reference_words else None
    row.mispronounced_words = [
        w.word for w in score.words if w.error_type != scoring_pb2.WORD_ERROR_TYPE_NONE
    ]
    row.feedback = list(score.feedback)
    return row


# The generation kinds register themselves; imported last, since they build on the above.
from soriflow.gateway import generation as _generation  # noqa: E402, F401
