"""Gates: signals of stage results, checks, pipeline validation, pinned parameters, safe replies, storage.

Model-free: transcripts are built the way the STT service sends them (per-channel segments with
log-probabilities and languages). The same gates over real speech are in test_call_review.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soriflow.errors import InvalidArgument
from soriflow.gateway import gates
from soriflow.gateway.notify import notification_document, subject
from soriflow.gateway.pipelines import PipelineRegistry, parse_pipeline
from soriflow.gateway.runner import job_result
from soriflow.gateway.stages import KINDS, StageContext, transcript_signals
from soriflow.gateway.store import JobRecord, JobStore
from soriflow.v1 import audio_pb2, stt_pb2, summarizer_pb2

SAFE_KO = "죄송합니다. 문의 내용을 한 번 더 말씀해 주시겠어요?"


def segment(
    speaker: str, text: str, start_s: float, end_s: float, logprob: float, **kw: Any
) -> audio_pb2.Segment:
    """A segment as the STT service sends it, its words at `confidence` (default 0.95)."""
    channel = 0 if speaker == "customer" else 1
    return audio_pb2.Segment(
        text=text,
        start_ms=int(start_s * 1000),
        end_ms=int(end_s * 1000),
        speaker=speaker,
        channel=channel,
        avg_logprob=logprob,
        no_speech_probability=kw.get("no_speech", 0.05),
        language_code=kw.get("language", "ko"),
        language_probability=kw.get("probability", 1.0),
        words=[
            audio_pb2.Word(word=w, confidence=kw.get("confidence", 0.95), speaker=speaker, channel=channel)
            for w in text.split()
        ],
    )


def recognized(*segments: audio_pb2.Segment, language: str = "ko") -> stt_pb2.RecognizeResponse:
    transcript = audio_pb2.Transcript(language_code=language, language_probability=1.0, channel_count=2)
    transcript.segments.extend(segments)
    transcript.words.extend(w for s in segments for w in s.words)
    transcript.text = "\n".join(f"{s.speaker}: {s.text}" for s in segments)
    return stt_pb2.RecognizeResponse(transcript=transcript)


CLEAR = recognized(
    segment("agent", "네 고객님 무엇을 도와드릴까요", 0, 2, -0.2),
    segment("customer", "어제 자동차 사고가 났는데 보험 처리가 되는지 궁금합니다", 2.5, 7.5, -0.3),
)


def test_signals_are_the_focus_speakers_weighted_by_duration() -> None:
    response = recognized(
        segment("agent", "네 고객님", 0, 1, -0.1),
        segment("customer", "어제 사고가 났어요", 1, 4, -0.4, no_speech=0.1, confidence=0.9),
        segment("customer", "보험", 4, 5, -1.2, no_speech=0.5, confidence=0.5),
    )
    signals = transcript_signals(response.transcript, "customer")
    assert signals["words"] == 4
    assert signals["word_confidence"] == pytest.approx((3 * 0.9 + 0.5) / 4)
    assert signals["avg_logprob"] == pytest.approx((3 * -0.4 + 1 * -1.2) / 4)
    assert signals["no_speech_probability"] == pytest.approx((3 * 0.1 + 0.5) / 4)
    assert (signals["language"], signals["language_probability"]) == ("ko", 1.0)
    assert transcript_signals(response.transcript, "agent")["words"] == 2
    # A speaker who said nothing: no words, nothing measured; unlabelled (mono) speech counts whole.
    silent = transcript_signals(response.transcript, "supervisor")
    assert (silent["words"], silent["avg_logprob"], silent["no_speech_probability"]) == (0, None, None)
    assert silent["word_confidence"] is None
    mono = recognized(audio_pb2.Segment(text="hello there you", start_ms=0, end_ms=900, avg_logprob=-0.3))
    assert transcript_signals(mono.transcript, "customer")["words"] == 3


def test_each_channel_has_its_own_language() -> None:
    """One channel of a Korean call detected as Finnish, the other as Thai: the customer's is what counts."""
    response = recognized(
        segment("agent", "ขอเกิดชาตุง ชาตุขา", 0, 3, -0.8, language="th", probability=0.67),
        segment("customer", "kiitos paljon hyvää", 3, 5, -0.9, language="fi", probability=0.41),
        language="th",
    )
    signals = transcript_signals(response.transcript, "customer")
    assert (signals["language"], signals["language_probability"]) == ("fi", pytest.approx(0.41))


def understood() -> list[gates.CheckDef]:
    return PipelineRegistry.load().get("call-summary").gates["understood"]


def reasons_for(response: stt_pb2.RecognizeResponse, **params: str) -> list[str]:
    variables = {"focus_speaker": "customer", "language_code": "", **params}
    measure = {"stt": KINDS["stt.recognize"].signals}
    checks = {"understood": understood()}
    found = gates.evaluate(checks, ["understood"], {"stt": response}, measure, variables)
    return [f"{r.stage}.{r.signal}" for r in found]


def test_the_call_summary_gate_passes_a_clear_call_and_names_what_is_wrong_with_others() -> None:
    assert reasons_for(CLEAR, language_code="ko") == []
    words = "도대체 도대체 하사고가 아는데요 도폼이"  # espeak-ng Korean, as the base model heard it
    garbled = recognized(segment("customer", words, 0, 5, -1.13, no_speech=0.3, confidence=0.53))
    assert reasons_for(garbled, language_code="ko") == ["stt.word_confidence", "stt.avg_logprob"]
    # Fluent and wrong ("I would charge twice for my team in this month"): only its words' confidence tells.
    fluent = recognized(
        segment("customer", "I would charge twice for my team", 0, 4, -0.62, confidence=0.71, language="en")
    )
    assert reasons_for(fluent, language_code="en") == ["stt.word_confidence"]
    nothing = recognized(segment("agent", "네 고객님 말씀하세요", 0, 2, -0.2))
    assert reasons_for(nothing, language_code="ko") == [
        "stt.words",
        "stt.word_confidence",
        "stt.avg_logprob",
        "stt.no_speech_probability",
    ]
    thai = recognized(
        segment("customer", "ขอเกิดชาตุง ชาตุขา ขาหนึ่ง เดียว", 0, 5, -0.79, language="th", probability=0.67)
    )
    assert reasons_for(thai) == ["stt.language"]  # detected, not pinned: only the reply's languages
    assert reasons_for(CLEAR, language_code="en") == ["stt.language"]  # pinned English, heard Korean


def test_check_messages_and_templates() -> None:
    spec = gates.CheckDef(
        stage="stt",
        speaker="{who}",
        min={"words": 3},
        max={"no_speech_probability": 0.5},
        equal={"language": "{lang}", "grounded": True},
        one_of={"language": ["ko", "{extra}"]},
    )
    signals: dict[str, gates.Signal] = {
        "words": 1,
        "no_speech_probability": None,
        "language": "en",
        "grounded": False,
    }
    found = gates.check("g", spec, signals, {"who": "customer", "lang": "", "extra": ""})
    assert [(r.signal, r.observed, r.requirement) for r in found] == [
        ("words", "1", ">= 3"),
        ("no_speech_probability", "not measured", "<= 0.5"),
        ("grounded", "false", "== true"),
        ("language", "en", "in ko"),  # `lang` rendered empty: that check is not made
    ]
    assert found[0].message == "stt: words of customer 1 is below 3"
    assert gates.check("g", spec, signals | {"words": 3, "no_speech_probability": 0.1, "grounded": True},
                       {"who": "c", "lang": "en", "extra": "en"}) == []  # fmt: skip


PIPELINE = """
name: gated
key_prefixes: ["calls/"]
parameters:
  language_code: {default: ""}
prefix_parameters:
  "calls/ko/": {language_code: ko}
  "calls/ko/en-desk/": {language_code: en}
gates:
  heard:
    - {stage: a, min: {words: 3}}
stages:
  - name: a
    uses: stt.recognize
  - name: b
    uses: summarizer.summarize
    needs: [a]
    gates: [heard]
    on_review: skip
  - name: c
    uses: tts.synthesize
    needs: [b]
    gates: [heard]
    on_review: {with: {template: "Sorry?"}}
"""


def test_a_gated_pipeline_loads_and_pins_parameters_by_prefix() -> None:
    pipeline = parse_pipeline(PIPELINE, "test")
    assert pipeline.stages[1].on_review is not None
    assert pipeline.stages[1].on_review.skip
    assert pipeline.stages[2].arguments_for({"heard"}) == {"template": "Sorry?"}
    assert pipeline.stages[2].arguments_for(set()) == {}
    resolve = pipeline.resolve_parameters
    assert resolve({}, bucket="b", key="calls/x.wav") == {"language_code": ""}
    assert resolve({}, bucket="b", key="calls/ko/x.wav") == {"language_code": "ko"}
    assert resolve({}, bucket="b", key="calls/ko/en-desk/x.wav") == {"language_code": "en"}  # longest
    assert resolve({"language_code": "ja"}, bucket="b", key="calls/ko/x.wav") == {"language_code": "ja"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("gates: [heard]\n    on_review: skip", "gates: [nope]\n    on_review: skip"), "no gate 'nope'"),
        (("{words: 3}", "{loudness: 3}"), r"measures \[.*\], not \['loudness'\]"),
        (("{stage: a,", "{stage: zz,"), "checks 'zz', which is not a main stage"),
        (("{stage: a,", "{stage: b,"), r"measures \[.*grounded.*\], not \['words'\]"),
        (("on_review: skip", "on_review: maybe"), "on_review"),
        (("    gates: [heard]\n    on_review: skip\n", "    on_review: skip\n"), "on_review but no gates"),
        (('"calls/ko/": {language_code: ko}', '"calls/ko/": {colour: red}'), r"\['colour'\] are not"),
        (('"calls/ko/": {language_code: ko}', '"other/": {language_code: ko}'), "under none of"),
    ],
)
def test_bad_gates_and_pins_are_refused_at_load(change: tuple[str, str], message: str) -> None:
    text = PIPELINE.replace(*change)
    assert text != PIPELINE
    with pytest.raises(InvalidArgument, match=message):
        parse_pipeline(text, "test")


def test_a_gate_must_check_stages_that_run_before() -> None:
    text = PIPELINE.replace("    needs: [a]\n    gates: [heard]", "    gates: [heard]")
    with pytest.raises(InvalidArgument, match=r"uses gate 'heard', which checks \['a'\]: add them"):
        parse_pipeline(text, "test")


def _ctx(results: dict[str, Any], **params: str) -> StageContext:
    return StageContext(
        job_id="j",
        source_uri="s3://b/connect/ko/x.wav",
        params=params,
        results=results,
        clients=None,  # type: ignore[arg-type]
        timeout_s=1,
    )


def test_the_reply_reads_back_or_asks_again_in_the_calls_language() -> None:
    pipeline = PipelineRegistry.load().get("call-summary")
    reply = next(s for s in pipeline.stages if s.name == "reply")
    kind = KINDS["tts.synthesize"]
    params = pipeline.resolve_parameters({}, bucket="b", key="connect/ko/x.wav")
    summary = summarizer_pb2.SummarizeResponse(summary="자동차 사고 보험 처리 여부 문의", language_code="ko")
    ctx = _ctx({"stt": CLEAR, "summarize": summary}, **params)
    template, language, variables = kind.text(ctx, kind.arguments(reply.arguments_for(set()), params))  # type: ignore[attr-defined]
    assert (language, template.format_map(variables)) == (
        "ko-KR",
        "문의하신 내용이 자동차 사고 보험 처리 여부 문의 맞으신가요?",
    )
    safe = kind.arguments(reply.arguments_for({"understood"}), params)
    template, language, _ = kind.text(_ctx({"stt": CLEAR}), safe)  # type: ignore[attr-defined]
    assert (language, template) == ("ko-KR", SAFE_KO)
    # Detected Thai (no pin): no Thai template, so the English one, with an English voice.
    thai = recognized(segment("customer", "ขอเกิด", 0, 1, -0.8, language="th"), language="th")
    template, language, _ = kind.text(_ctx({"stt": thai}), safe)  # type: ignore[attr-defined]
    assert language == "en-US"
    assert template.startswith("Sorry")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    job_store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    yield job_store
    job_store.close()


def _reason(signal: str, observed: str = "-1.1") -> Any:
    return gates.gateway_pb2.ReviewReason(
        gate="understood", stage="stt", signal=signal, observed=observed, message=f"stt: {signal} {observed}"
    )


def test_the_store_keeps_review_reasons_once_and_lists_by_them(store: JobStore) -> None:
    flagged, _ = store.create_job(
        pipeline="call-summary", source_uri="s3://in/connect/a.wav", origin="sqs", metadata={}, parameters={}
    )
    clean, _ = store.create_job(
        pipeline="call-summary", source_uri="s3://in/connect/b.wav", origin="sqs", metadata={}, parameters={}
    )
    assert [r.signal for r in store.flag_review(flagged.id, [_reason("avg_logprob"), _reason("words")])] == [
        "avg_logprob",
        "words",
    ]
    # A re-run evaluates the gate again: nothing new is recorded (or counted).
    assert store.flag_review(flagged.id, [_reason("words", "0")]) == []
    record = store.require_job(flagged.id)
    assert record.needs_review
    observed = [(r.signal, r.observed) for r in record.review_reasons]
    assert observed == [("avg_logprob", "-1.1"), ("words", "-1.1")]
    assert not store.require_job(clean.id).needs_review
    assert [j.id for j in store.list_jobs(needs_review=True)[0]] == [flagged.id]
    assert [j.id for j in store.list_jobs(needs_review=False)[0]] == [clean.id]
    assert len(store.list_jobs()[0]) == 2
    notes = [e.message for e in store.events_after(flagged.id, 0)]
    assert "needs review: stt: avg_logprob -1.1; stt: words -1.1" in notes


def test_a_job_needing_review_says_so_everywhere(store: JobStore) -> None:
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    job = JobRecord(
        id="j1",
        pipeline="call-summary",
        state="SUCCEEDED",  # type: ignore[arg-type]
        origin="sqs",
        source_uri="s3://in/connect/ko/call.wav",
        metadata={},
        parameters=PipelineRegistry.load()
        .get("call-summary")
        .resolve_parameters({}, bucket="in", key="connect/ko/call.wav"),
        created_at=now,
        ended_at=now,
        needs_review=True,
        review_reasons=[_reason("avg_logprob")],
    )
    assert subject(job) == "Soriflow: call-summary job succeeded - needs review"
    document = notification_document(job, [], now)
    assert document["needs_review"] is True
    assert document["review_reasons"][0]["signal"] == "avg_logprob"
    assert "Needs review: a person should check" in document["text"]
    assert "- stt: avg_logprob -1.1" in document["text"]
    # The job's result, rebuilt from stored stage results: the safe reply, with the reasons.
    pipeline = PipelineRegistry.load().get("call-summary")
    tts = KINDS["tts.synthesize"].result_type()
    result = job_result(
        pipeline,
        {"stt": CLEAR.SerializeToString(), "reply": tts.SerializeToString()},
        job,
        None,  # type: ignore[arg-type]
    )
    assert result.reply_text == SAFE_KO
    assert result.needs_review
    assert result.review_reasons[0].signal == "avg_logprob"
