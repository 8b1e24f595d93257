"""The bad-input corpus, sent to every service and to SubmitJob.

One corpus of what real clients and attackers send (empty, truncated, garbage, lying headers,
NaN/inf samples, 0.05 s, silence, 1 MB of text, NUL/RTL/zero-width text, bad and traversing
URIs, huge metadata) goes to stt Recognize and StreamingRecognize, scoring, the summarizer, TTS
and the gateway's SubmitJob, all real servers on loopback with S3 on moto. For each pair the
table below says what must come back: the status code, and words the message must hold so a
person knows what to fix. Then nothing may be stored for a refused request (no job, no
submission object), and the next valid request to the same service must work.

Expectations are data: a new corpus item needs a row per target, or the suite says which are
missing.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from soriflow.audio import decode_audio, encode_wav_pcm16
from soriflow.server import ThreadedServer
from soriflow.v1 import (
    audio_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    stt_pb2,
    stt_pb2_grpc,
    summarizer_pb2,
    summarizer_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
)

pytestmark = pytest.mark.slow

SPEECH = Path("/usr/share/sounds/alsa/Front_Center.wav")
SENTENCE = "front center"
BUCKET = f"corpus-in-{uuid.uuid4().hex[:8]}"
SECRET_BUCKET = f"corpus-secret-{uuid.uuid4().hex[:8]}"
ALLOWED = f"s3://{BUCKET}/allowed/"


# --- the corpus ----------------------------------------------------------------------------------


def _wav_header(*, rate: int, channels: int, bits: int, tag: int, data: bytes) -> bytes:
    block = bits // 8 * channels
    fmt = struct.pack("<IHHIIHH", 16, tag, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVE"
        + b"fmt "
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )


def _lying(rate: int = 16000, channels: int = 1, frames: int = 1600) -> bytes:
    return _wav_header(
        rate=rate, channels=channels, bits=16, tag=1, data=np.zeros(frames * channels, "<i2").tobytes()
    )


def _float_wav(value: float) -> bytes:
    samples = np.zeros(16000, "<f4")
    samples[100:200] = value
    return _wav_header(rate=16000, channels=1, bits=32, tag=3, data=samples.tobytes())


def _speech() -> bytes:
    return SPEECH.read_bytes()


AUDIO: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "truncated": lambda: _speech()[:30],
    "garbage": lambda: bytes(np.random.default_rng(7).integers(0, 256, 20_000, dtype=np.uint8)),
    "text": lambda: ("hello " * 1000).encode(),
    "lying-rate": lambda: _lying(rate=2_147_483_647),
    "lying-channels": lambda: _lying(channels=1024, frames=2),
    "nan": lambda: _float_wav(float("nan")),
    "inf": lambda: _float_wav(float("inf")),
    "0.05s": lambda: encode_wav_pcm16(decode_audio(_speech()).samples[4000:4800], 16000),
    "silence": lambda: encode_wav_pcm16(np.zeros(32_000, np.float32), 16000),
}
URIS = {
    "no-key": f"s3://{BUCKET}",
    "prefix": ALLOWED,
    "other-bucket": f"s3://{SECRET_BUCKET}/secret.wav",
    "other-prefix": f"s3://{BUCKET}/private/secret.wav",
    "traversal": f"s3://{BUCKET}/allowed/../private/secret.wav",
    "nul-key": f"s3://{BUCKET}/allowed/a\x00.wav",
    "not-s3": "https://example.com/allowed/a.wav",
    "missing": f"{ALLOWED}missing.wav",
}
TEXT = {
    "empty": "",
    "1mb": "word " * 200_000,
    "nul": "hello\x00world",
    "rtl": "\u202eThe parcel arrived late. The customer wants a refund.",
    "zero-width": "\u200b\u200c\u200d\ufeff",
    "punctuation": "...!!! ???",
}

OK = "OK"
BAD = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
TOO_BIG = grpc.StatusCode.RESOURCE_EXHAUSTED
MISSING = grpc.StatusCode.NOT_FOUND
#: The job is accepted, then FAILED with this code and these words as its recorded reason.
JOB_FAILED = "JOB_FAILED"
Expected = tuple[Any, tuple[str, ...]]

AUDIO_MESSAGES: dict[str, Expected] = {
    "empty": (BAD, ("empty",)),
    "truncated": (BAD, ("could not decode",)),
    "garbage": (BAD, ("not a recognised audio format",)),
    "text": (BAD, ("look like text",)),
    "lying-rate": (BAD, ("2147483647 Hz",)),
    "lying-channels": (BAD, ("1024 channels",)),
    "nan": (BAD, ("NaN",)),
    "inf": (BAD, ("infinit",)),
}
URI_MESSAGES: dict[str, Expected] = {
    "no-key": (BAD, ("names a bucket, not an object",)),
    "prefix": (BAD, ("names a prefix",)),
    "other-bucket": (DENIED, ("SORIFLOW_READ_URIS",)),
    "other-prefix": (DENIED, ("SORIFLOW_READ_URIS",)),
    "traversal": (BAD, ("traversal",)),
    "nul-key": (BAD, ("control characters",)),
    "not-s3": (BAD, ("not an S3 URI",)),
    "missing": (MISSING, ("does not exist",)),
}
STREAM_MESSAGES: dict[str, Expected] = {
    "empty": (OK, ()),  # a stream that ends before any audio: no results, no error
    "truncated": (BAD, ("WAV",)),
    "garbage": (BAD, ("no known container",)),
    "text": (BAD, ("no known container",)),
    "lying-rate": (BAD, ("2147483647 Hz",)),
    "lying-channels": (BAD, ("1024 channels",)),
    "nan": (BAD, ("NaN",)),
    "inf": (BAD, ("infinite",)),
    "0.05s": (OK, ()),
    "silence": (OK, ()),
}
EXPECT: dict[str, dict[str, Expected]] = {
    "stt.Recognize": {
        **{f"audio:{k}": v for k, v in AUDIO_MESSAGES.items()},
        "audio:0.05s": (OK, ()),
        "audio:silence": (OK, ()),
        **{f"uri:{k}": v for k, v in URI_MESSAGES.items()},
    },
    "stt.StreamingRecognize": {f"audio:{k}": v for k, v in STREAM_MESSAGES.items()},
    "scoring.Score": {
        **{f"audio:{k}": v for k, v in AUDIO_MESSAGES.items()},
        "audio:0.05s": (BAD, ("0.05 s long", "at least 0.3 s")),
        "audio:silence": (OK, ()),  # scored: every word omitted
        **{f"uri:{k}": v for k, v in URI_MESSAGES.items()},
        "text:empty": (BAD, ("give reference_text",)),
        "text:1mb": (BAD, ("reference_text is 1000000 characters", "5000")),
        "text:nul": (BAD, ("reference_text", "U+0000")),
        "text:rtl": (OK, ()),
        "text:zero-width": (BAD, ("no words",)),
        "text:punctuation": (BAD, ("no words",)),
    },
    "summarizer.Summarize": {
        "text:empty": (BAD, ("empty input",)),
        "text:1mb": (TOO_BIG, ("1000000 characters", "SORIFLOW_SUMMARIZER_MAX_INPUT_CHARS")),
        "text:nul": (BAD, ("U+0000",)),
        "text:rtl": (OK, ()),
        "text:zero-width": (BAD, ("no words to summarize",)),
        "text:punctuation": (BAD, ("no words to summarize",)),
    },
    "tts.Synthesize": {
        "text:empty": (BAD, ("empty",)),
        "text:1mb": (BAD, ("1000000 characters", "SORIFLOW_TTS_MAX_TEXT_CHARS")),
        "text:nul": (BAD, ("U+0000",)),
        "text:rtl": (OK, ()),
        "text:zero-width": (BAD, ("no words to say",)),
        "text:punctuation": (BAD, ("no words to say",)),
    },
    "gateway.SubmitJob": {
        "audio:empty": (BAD, ("empty",)),
        "audio:truncated": (BAD, ("without its format chunk",)),
        "audio:garbage": (BAD, ("not a recognized audio file",)),
        "audio:text": (BAD, ("not a recognized audio file",)),
        "audio:lying-rate": (BAD, ("2147483647 Hz",)),
        "audio:lying-channels": (BAD, ("1024 channels",)),
        "audio:nan": (JOB_FAILED, ("INVALID_ARGUMENT", "NaN")),  # found when decoding: a failed job
        "audio:inf": (JOB_FAILED, ("INVALID_ARGUMENT", "infinit")),
        "audio:0.05s": (OK, ()),
        "audio:silence": (OK, ()),
        **{f"uri:{k}": v for k, v in URI_MESSAGES.items()},
        "metadata:1000x1k": (TOO_BIG, ("metadata has 1000 entries", "64")),
        "metadata:20mb": (TOO_BIG, ("metadata['note'] is 20000000 bytes",)),
        "metadata:nul": (BAD, ("metadata['user']", "NUL")),
        "idempotency:1mb": (BAD, ("idempotency_key", "256")),
        "idempotency:nul": (BAD, ("idempotency_key", "control")),
        "filename:nul": (BAD, ("filename", "NUL")),
        "filename:rtl": (BAD, ("filename", "bidi")),
        "pipeline:unknown": (BAD, ("no-such-pipeline",)),
    },
}
CASES = [(target, case) for target, cases in EXPECT.items() for case in cases]


def test_every_target_has_a_row_for_every_corpus_item() -> None:
    audio = {f"audio:{k}" for k in AUDIO}
    uris = {f"uri:{k}" for k in URIS}
    text = {f"text:{k}" for k in TEXT}
    wanted = {
        "stt.Recognize": audio | uris,
        "stt.StreamingRecognize": audio,
        "scoring.Score": audio | uris | text,
        "summarizer.Summarize": text,
        "tts.Synthesize": text,
        "gateway.SubmitJob": audio | uris,
    }
    for target, cases in wanted.items():
        assert cases <= set(EXPECT[target]), f"{target} lacks {sorted(cases - set(EXPECT[target]))}"


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    stt: ThreadedServer
    scoring: ThreadedServer
    summarizer: ThreadedServer
    tts: ThreadedServer
    gateway: ThreadedServer
    s3: Any


@pytest.fixture(scope="module")
def stack(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import boto3

    from soriflow.gateway.service import create_service as gateway_service
    from soriflow.gateway.settings import Settings as GatewaySettings
    from soriflow.scoring.service import create_service as scoring_service
    from soriflow.scoring.settings import Settings as ScoringSettings
    from soriflow.stt.service import create_service as stt_service
    from soriflow.stt.settings import Settings as SttSettings
    from soriflow.summarizer.service import create_service as summarizer_service
    from soriflow.summarizer.settings import Settings as SummarizerSettings
    from soriflow.tts.service import create_service as tts_service
    from soriflow.tts.settings import Settings as TtsSettings

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    for bucket in (BUCKET, SECRET_BUCKET, f"{BUCKET}-out"):
        s3.create_bucket(Bucket=bucket)
    for bucket, key in (
        (SECRET_BUCKET, "secret.wav"),
        (BUCKET, "private/secret.wav"),
        (BUCKET, "allowed/a.wav"),
    ):
        s3.put_object(Bucket=bucket, Key=key, Body=_speech())
    base: dict[str, Any] = dict(
        host="127.0.0.1",
        port=0,
        metrics_port=None,
        log_format="text",
        log_level="ERROR",
        s3_endpoint_url=moto_endpoint,
        read_uris=[ALLOWED, f"s3://{BUCKET}/submissions/"],
    )
    started: list[ThreadedServer] = []

    def start(name: str, factory: Callable[[], Any]) -> ThreadedServer:
        server = ThreadedServer(factory, name=name).start()
        started.append(server)
        return server

    try:
        stt = start("stt", lambda: stt_service(SttSettings(**base, stt_model="tiny.en", stt_device="cpu")))
        scoring = start("scoring", lambda: scoring_service(ScoringSettings(**base, stt_address=stt.address)))
        summarizer = start(
            "summarizer",
            lambda: summarizer_service(
                SummarizerSettings(**base, summarizer_engine="extractive", summarizer_device="cpu")
            ),
        )
        tts = start(
            "tts",
            lambda: tts_service(
                TtsSettings(**base, tts_engines=["espeak-ng"], tts_default_engine="espeak-ng")
            ),
        )
        gateway = start(
            "gateway",
            lambda: gateway_service(
                GatewaySettings(
                    **(base | {"read_uris": []}),
                    stt_address=stt.address,
                    gateway_queue_url=None,
                    gateway_input_uris=[ALLOWED],
                    gateway_submissions_uri=f"s3://{BUCKET}/submissions/",
                    gateway_output_uri=f"s3://{BUCKET}-out/results/",
                    gateway_database_url=f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'jobs.db'}",
                    gateway_lease_s=10,
                    gateway_visibility_timeout_s=30,
                    grace_period_s=2,
                )
            ),
        )
        yield Stack(stt, scoring, summarizer, tts, gateway, s3)
    finally:
        for server in reversed(started):
            server.stop(grace=2)


# --- sending one case ----------------------------------------------------------------------------


def _audio_input(case: str) -> audio_pb2.AudioInput:
    kind, name = case.split(":", 1)
    if kind == "valid":
        return audio_pb2.AudioInput(content=_speech())
    if kind == "audio":
        return audio_pb2.AudioInput(content=AUDIO[name]())
    return audio_pb2.AudioInput(uri=URIS[name])


def _text(case: str) -> str:
    kind, name = case.split(":", 1)
    return VALID_TEXT if kind == "valid" else TEXT[name] if kind == "text" else ""


def _stream(address: str, data: bytes) -> list[str]:
    """Streams `data` as WAV; the final texts. With grpc's sync client: the asyncio one may report
    INTERNAL "Internal error from Core" instead of the server's status when the server ends the
    call while the client still writes (grpc/grpc#36066), which is what a refused stream does."""

    def requests() -> Iterator[stt_pb2.StreamingRecognizeRequest]:
        config = stt_pb2.StreamingRecognitionConfig(encoding=audio_pb2.AUDIO_ENCODING_WAV)
        yield stt_pb2.StreamingRecognizeRequest(streaming_config=config)
        for offset in range(0, len(data), 8000):
            yield stt_pb2.StreamingRecognizeRequest(audio_content=data[offset : offset + 8000])

    finals = []
    with grpc.insecure_channel(address) as channel:
        for response in stt_pb2_grpc.SpeechToTextServiceStub(channel).StreamingRecognize(
            requests(), timeout=120
        ):
            finals += [r.text for r in response.results if r.is_final]
    return finals


def _submission(case: str) -> gateway_pb2.SubmitJobRequest:
    kind = case.split(":", 1)[0]
    request = gateway_pb2.SubmitJobRequest(pipeline="transcribe")
    speech = audio_pb2.AudioInput(content=_speech())
    if kind in ("audio", "uri", "valid"):
        request.audio.CopyFrom(_audio_input(case))
    else:
        request.audio.CopyFrom(speech)
    if case == "metadata:1000x1k":
        request.metadata.update({f"k{i}": "v" * 1024 for i in range(1000)})
    elif case == "metadata:20mb":
        request.metadata["note"] = "x" * 20_000_000
    elif case == "metadata:nul":
        request.metadata["user"] = "kim\x00"
    elif case == "idempotency:1mb":
        request.idempotency_key = "k" * 1_000_000
    elif case == "idempotency:nul":
        request.idempotency_key = "retry\x00"
    elif case == "filename:nul":
        request.filename = "call\x00.wav"
    elif case == "filename:rtl":
        request.filename = "evil\u202egnp.wav"
    elif case == "pipeline:unknown":
        request.pipeline = "no-such-pipeline"
    return request


async def _send(stack: Stack, target: str, case: str) -> Any:
    """One request of `case` to `target`; returns the response (raises the RPC error)."""
    from soriflow.client import open_channel

    service = target.split(".")[0]
    async with open_channel(getattr(stack, service).address) as channel:
        if target == "stt.Recognize":
            return await stt_pb2_grpc.SpeechToTextServiceStub(channel).Recognize(
                stt_pb2.RecognizeRequest(audio=_audio_input(case)), timeout=120
            )
        if target == "stt.StreamingRecognize":
            return await asyncio.to_thread(_stream, stack.stt.address, _audio_input(case).content)
        if target == "scoring.Score":
            request = scoring_pb2.ScoreRequest(reference_text=SENTENCE)
            if case.startswith("text:"):
                request.audio.content = _speech()
                request.reference_text = _text(case)
            else:
                request.audio.CopyFrom(_audio_input(case))
            return await scoring_pb2_grpc.PronunciationScoringServiceStub(channel).Score(request, timeout=120)
        text = _text(case)
        if target == "summarizer.Summarize":
            return await summarizer_pb2_grpc.SummarizerServiceStub(channel).Summarize(
                summarizer_pb2.SummarizeRequest(text=text), timeout=120
            )
        if target == "tts.Synthesize":
            return await tts_pb2_grpc.TextToSpeechServiceStub(channel).Synthesize(
                tts_pb2.SynthesizeRequest(text=text), timeout=120
            )
        return await gateway_pb2_grpc.GatewayServiceStub(channel).SubmitJob(_submission(case), timeout=120)


#: The valid request sent after each case: speech for the audio services, a short text otherwise.
VALID = "valid:request"
VALID_TEXT = "The parcel arrived two days late. The customer asks for a refund of the shipping fee."


def _gateway_state(stack: Stack) -> tuple[int, list[str]]:
    """Jobs in the store and objects under submissions/: what a refused request must not add."""
    jobs, _ = stack.gateway.service.store.list_jobs(page_size=1000)
    listing = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="submissions/")
    return len(jobs), sorted(o["Key"] for o in listing.get("Contents", []))


async def _wait_job(stack: Stack, job_id: str) -> Any:
    store = stack.gateway.service.store
    for _ in range(600):
        job = await asyncio.to_thread(store.require_job, job_id)
        if job.terminal and not (job.state == "FAILED" and job.retryable):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end")


@pytest.mark.parametrize(
    ("target", "case"),
    CASES,
    ids=[f"{t}-{c}" for t, c in CASES],
)
def test_bad_input(stack: Stack, target: str, case: str) -> None:
    expected, words = EXPECT[target][case]

    async def run() -> None:
        before = _gateway_state(stack) if target.startswith("gateway") else None
        try:
            response = await _send(stack, target, case)
        except grpc.RpcError as error:
            code, details = error.code(), error.details() or ""  # type: ignore[attr-defined]
            assert code == expected, f"{target} {case}: {code.name} {details!r}, expected {expected}"
            for word in words:
                assert word in details, f"{target} {case}: {details!r} does not say {word!r}"
            assert "Traceback" not in details
            if before is not None:  # refused: no job, no stored submission
                assert _gateway_state(stack) == before, f"{case} left a job or a stored submission"
        else:
            assert expected in (OK, JOB_FAILED), f"{target} {case}: OK, expected {expected}"
            if target == "gateway.SubmitJob":
                job = await _wait_job(stack, response.job.job_id)
                if expected == JOB_FAILED:  # the failure is recorded with its reason
                    assert job.state == "FAILED", job.state
                    assert job.error_code == words[0], job.error_code
                    assert all(w in job.error for w in words[1:]), job.error
                else:
                    assert job.state == "SUCCEEDED", job.error
            if target == "summarizer.Summarize" and case == "text:rtl":
                assert "\u202e" not in response.summary  # no display tricks handed back
        # The service still serves: the next valid request works.
        valid = await _send(stack, target, VALID)
        if target == "gateway.SubmitJob":
            assert (await _wait_job(stack, valid.job.job_id)).state == "SUCCEEDED"
        elif target.startswith("stt"):
            text = valid.transcript.text if target == "stt.Recognize" else " ".join(valid)
            assert "front" in text.lower()

    asyncio.run(run())
