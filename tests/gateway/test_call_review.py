"""call-summary's gates end to end: S3 -> SQS -> gateway -> real STT, summarizer and TTS -> outputs + store.

A call that was understood is read back ("문의하신 내용이 … 맞으신가요?"); one that was not ends with
the safe reply and `needs_review`, never with the garbage transcript read back to the caller.

Korean runs on the bundled multilingual base model under `connect/ko/` (Korean pinned: Amazon Connect
recordings carry no metadata). espeak-ng's Korean voices are what this machine can synthesize, and
the base model does not understand them (it hears "보험 처리가 되는지" as "포폼의 가위디군", average
log-probability about -1.1, or drops the speech altogether: bench/review_gates.py), so a Korean
espeak-ng call is, to this model, an unintelligible one, and the gates treat it as such. The read-back
path in Korean is shown with a stand-in STT service on loopback answering with the transcript a
Korean-capable model returns for such a call (no such model or Korean voice can be had here);
summarizer, TTS (lexicon 문의 -> 무니), gateway, S3 and SQS stay real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from soriflow.audio import encode_wav_pcm16
from soriflow.client import GatewayClient
from soriflow.config import ServiceSettings
from soriflow.gateway.gates import REVIEW_REASONS
from soriflow.gateway.store import JobRecord, JobStore
from soriflow.server import GrpcService, ThreadedServer
from soriflow.v1 import audio_pb2, gateway_pb2, stt_pb2, stt_pb2_grpc, tts_pb2
from tests.gateway.conftest import READ_ANY_TEST_INPUT, AwsWorld, gateway_settings, service_thread
from tests.gateway.speech import silence, speak, stereo_call

pytestmark = pytest.mark.slow

SAFE_KO = "죄송합니다. 문의 내용을 한 번 더 말씀해 주시겠어요?"
SAFE_EN = "Sorry, I could not catch your request. Could you tell me once more?"
KO_VOICES = ("ko", "ko+f3")  # two espeak-ng Korean voices: customer left, agent right (Amazon Connect)
KOREAN_CALL = [
    (1, "안녕하세요, 소리플로우 보험입니다. 무엇을 도와드릴까요?"),
    (0, "어제 자동차 사고가 났는데요. 자차 보험으로 수리비 처리가 되는지 궁금합니다."),
    (1, "네, 고객님. 확인해 드리겠습니다."),
]


def finished(store: JobStore, count: int, timeout: float = 600) -> list[JobRecord]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs, _ = store.list_jobs(page_size=100)
        done = [j for j in jobs if j.terminal and not (j.state == "FAILED" and j.retryable)]
        if len(done) >= count:
            return done
        time.sleep(0.3)
    raise AssertionError(f"{count} jobs did not finish in {timeout}s")


def mumbled(samples: np.ndarray) -> np.ndarray:
    """Speech through a wall: only what is below 300 Hz, quiet (the vowels' hum, no consonants)."""
    low = sosfilt(butter(4, 300, "low", fs=16000, output="sos"), samples)
    return (low / max(1e-6, float(np.abs(low).max())) * 0.3).astype(np.float32)


def mumbled_call(customer: str, agent: str, voices: tuple[str, str]) -> bytes:
    """The agent speaks clearly on the right; on the left the customer is only a mumble."""
    talk = mumbled(speak(customer, voices[0]))
    greet = speak(agent, voices[1])
    left = np.concatenate([np.zeros_like(greet), silence(0.5), talk, silence(0.5)])
    right = np.concatenate([greet, silence(0.5), np.zeros_like(talk), silence(0.5)])
    return encode_wav_pcm16(np.stack([left, right]), 16000)


def reply_of(store: JobStore, job_id: str) -> tts_pb2.SynthesizeResponse:
    [stage] = [s for s in store.stages(job_id) if s.name == "reply"]
    assert stage.result is not None, stage
    return tts_pb2.SynthesizeResponse.FromString(stage.result)


def counted(reason: str) -> float:
    return float(REVIEW_REASONS.labels(pipeline="call-summary", reason=reason)._value.get())


def get_jobs(address: str, **filters: Any) -> list[gateway_pb2.Job]:
    async def go() -> list[gateway_pb2.Job]:
        async with GatewayClient(address) as client:
            if "job_id" in filters:
                return [await client.get(filters["job_id"])]
            request = gateway_pb2.ListJobsRequest(**filters)
            return list((await client.stub.ListJobs(request)).jobs)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def stt_base_service(moto_endpoint: str) -> Iterator[ThreadedServer]:
    """STT on the bundled multilingual base model (what pinning Korean needs)."""
    from soriflow.stt.service import create_service
    from soriflow.stt.settings import Settings

    settings = Settings(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        stt_model="base",
        stt_device="cpu",
        s3_endpoint_url=moto_endpoint,
        read_uris=[READ_ANY_TEST_INPUT],
    )
    server = service_thread("stt-base", lambda: create_service(settings))
    yield server
    server.stop()


def test_korean_calls_the_model_does_not_understand_get_the_safe_reply_in_korean(
    aws: AwsWorld,
    tmp_path: Path,
    stt_base_service: ThreadedServer,
    summarizer_service: ThreadedServer,
    tts_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
) -> None:
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            stt_address=stt_base_service.address,
            summarizer_address=summarizer_service.address,
            tts_address=tts_service.address,
        )
    )
    store: JobStore = gateway.service.store
    before = counted("stt.avg_logprob") + counted("stt.words")
    espeak_call = aws.upload("connect/ko/2026/12/06/espeak.wav", stereo_call(KOREAN_CALL, voices=KO_VOICES))
    mumble = aws.upload(
        "connect/ko/2026/12/06/mumble.wav",
        mumbled_call(KOREAN_CALL[1][1], KOREAN_CALL[0][1], KO_VOICES),
    )
    jobs = {j.source_uri: j for j in finished(store, 2)}
    assert set(jobs) == {espeak_call, mumble}
    for uri, job in jobs.items():
        assert job.state == "SUCCEEDED", job.error
        assert job.parameters["language_code"] == "ko"  # pinned by the key prefix, no metadata needed
        assert job.needs_review, uri
        [message] = get_jobs(gateway.address, job_id=job.id)
        result = message.result
        # Pinned: STT never guesses (no Thai or Finnish channel), and the reply is Korean.
        assert {s.language_code for s in result.transcript.segments} <= {"ko"}
        assert result.reply_text == SAFE_KO
        heard = " ".join(s.text for s in result.transcript.segments if s.speaker == "customer")
        assert not heard.strip() or heard.strip() not in result.reply_text
        assert message.needs_review
        assert result.needs_review
        reasons = {f"{r.stage}.{r.signal}" for r in result.review_reasons}
        assert reasons & {"stt.avg_logprob", "stt.words"}, reasons
        assert all(r.message for r in result.review_reasons)
        stages = {s.name: s for s in message.stages}
        assert stages["summarize"].state == gateway_pb2.STAGE_STATE_SKIPPED
        assert stages["summarize"].error.startswith("not applicable: needs review (stt: ")
        assert stages["reply"].state == gateway_pb2.STAGE_STATE_SUCCEEDED
        outputs = {o.name for o in store.outputs(job.id)}
        assert outputs == {"transcript.txt", "transcript.json", "reply.wav"}  # nothing summarized
        reply = reply_of(store, job.id)
        assert "무니" in reply.prepared_text  # the lexicon: 문의 is said [무니], not /mun-ui/
        assert (reply.sample_rate_hz, reply.encoding) == (8000, audio_pb2.AUDIO_ENCODING_MULAW)
    assert counted("stt.avg_logprob") + counted("stt.words") > before
    flagged = get_jobs(gateway.address, needs_review=True)
    assert {j.job_id for j in flagged} == {j.id for j in jobs.values()}
    assert get_jobs(gateway.address, needs_review=False) == []


class _KoreanStt(stt_pb2_grpc.SpeechToTextServiceServicer):
    """Answers with the per-channel transcript a Korean-capable model returns for KOREAN_CALL."""

    def __init__(self, requests: list[stt_pb2.RecognizeRequest]) -> None:
        self.requests = requests

    async def Recognize(self, request: stt_pb2.RecognizeRequest, context: Any) -> stt_pb2.RecognizeResponse:
        self.requests.append(request)
        labels = list(request.config.channel_labels) or ["ch0", "ch1"]
        transcript = audio_pb2.Transcript(
            language_code=request.config.language_code or "ko",
            language_probability=1.0,
            audio_duration_ms=12000,
            channel_count=2,
        )
        start = 0
        for index, (channel, text) in enumerate(KOREAN_CALL):
            end = start + 300 * len(text)
            segment = transcript.segments.add(
                id=index,
                text=text,
                start_ms=start,
                end_ms=end,
                channel=channel,
                speaker=labels[channel],
                avg_logprob=-0.25,
                no_speech_probability=0.02,
                language_code="ko",
                language_probability=1.0,
            )
            segment.words.extend(
                audio_pb2.Word(word=w, confidence=0.93, channel=channel, speaker=labels[channel])
                for w in text.split()
            )
            transcript.words.extend(segment.words)
            start = end + 500
        transcript.text = "\n".join(f"{s.speaker}: {s.text}" for s in transcript.segments)
        return stt_pb2.RecognizeResponse(transcript=transcript, model="stand-in")


class KoreanStt(GrpcService[ServiceSettings]):
    name = "korean-stt"
    service_names = ("soriflow.v1.SpeechToTextService",)

    def __init__(self) -> None:
        super().__init__(ServiceSettings(host="127.0.0.1", port=0, metrics_port=None, log_format="text"))
        self.requests: list[stt_pb2.RecognizeRequest] = []

    def register(self, server: grpc.aio.Server) -> None:
        stt_pb2_grpc.add_SpeechToTextServiceServicer_to_server(_KoreanStt(self.requests), server)


def test_a_korean_call_that_was_understood_is_read_back_in_korean(
    aws: AwsWorld,
    tmp_path: Path,
    summarizer_service: ThreadedServer,
    tts_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
) -> None:
    korean_stt = ThreadedServer(KoreanStt, name="korean-stt").start()
    try:
        gateway = start_gateway(
            gateway_settings(
                aws,
                tmp_path,
                stt_address=korean_stt.address,
                summarizer_address=summarizer_service.address,
                tts_address=tts_service.address,
            )
        )
        store: JobStore = gateway.service.store
        aws.upload("connect/ko/2026/12/06/call.wav", stereo_call(KOREAN_CALL, voices=KO_VOICES))
        [job] = finished(store, 1, timeout=300)
        assert job.state == "SUCCEEDED", job.error
        assert not job.needs_review, job.review_reasons
        [request] = korean_stt.service.requests
        assert request.config.language_code == "ko"  # the pin reached STT
        summary = json.loads(
            aws.s3.get_object(Bucket=aws.output_bucket, Key=f"results/{job.id}/summary.json")["Body"].read()
        )
        assert summary["engine"] == "faithful"
        assert summary["grounded"] is True
        line = summary["summary"].strip()
        assert line.endswith(("문의", "요청", "항의"))
        assert "수리비" in line
        [message] = get_jobs(gateway.address, job_id=job.id)
        assert message.result.reply_text == f"문의하신 내용이 {line} 맞으신가요?"
        assert not message.result.needs_review
        assert not message.needs_review
        reply = reply_of(store, job.id)
        assert "무니하신 내용이" in reply.prepared_text
        assert reply.duration_ms > 1500
    finally:
        korean_stt.stop()


def test_english_fluent_nonsense_is_not_read_back_but_a_clear_call_is(
    aws: AwsWorld,
    tmp_path: Path,
    stt_service: ThreadedServer,
    summarizer_service: ThreadedServer,
    tts_service: ThreadedServer,
    start_gateway: Callable[..., ThreadedServer],
) -> None:
    """tiny.en turns a mumble into fluent, wrong English ("I cannot contact with him tomorrow"): its
    own confidence gives it away."""
    gateway = start_gateway(
        gateway_settings(
            aws,
            tmp_path,
            stt_address=stt_service.address,
            summarizer_address=summarizer_service.address,
            tts_address=tts_service.address,
        )
    )
    store: JobStore = gateway.service.store
    inquiry = (
        "Hi. I had a car accident this morning, and I want to check whether my insurance covers the repair."
    )
    greeting = "Thank you for calling, how can I help you?"
    clear = aws.upload("connect/en/clear.wav", stereo_call([(1, greeting), (0, inquiry)]))
    muffled = aws.upload("calls/muffled.wav", mumbled_call(inquiry, greeting, ("en-us", "en-us+m3")))
    jobs = {j.source_uri: j for j in finished(store, 2, timeout=300)}
    assert jobs[clear].state == jobs[muffled].state == "SUCCEEDED"
    assert not jobs[clear].needs_review, jobs[clear].review_reasons
    [good] = get_jobs(gateway.address, job_id=jobs[clear].id)
    assert good.result.reply_text.startswith("Let me confirm your request: Customer ")
    assert jobs[muffled].needs_review
    [bad] = get_jobs(gateway.address, job_id=jobs[muffled].id)
    assert bad.result.reply_text == SAFE_EN
    assert "stt.avg_logprob" in {f"{r.stage}.{r.signal}" for r in bad.result.review_reasons}
    heard = " ".join(s.text for s in bad.result.transcript.segments if s.speaker == "customer")
    assert len(heard.split()) >= 3  # fluent text was heard, and still not read back
