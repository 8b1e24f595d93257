"""A real summarizer server on loopback with the bundled SmolLM2-135M (GGUF) and TextRank."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from soriflow.client import open_channel
from soriflow.server import Server, running
from soriflow.summarizer.engines import Task
from soriflow.summarizer.service import create_service
from soriflow.summarizer.styles import Style
from soriflow.v1 import audio_pb2, summarizer_pb2, summarizer_pb2_grpc
from tests.summarizer.conftest import MODEL_CACHE, summarizer_settings
from tests.summarizer.test_text import KO_CALL

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

Stub = summarizer_pb2_grpc.SummarizerServiceStub
LIMIT_CHARS = 6000
EN_CLAIM = (
    "I was in a car accident yesterday and I want to know if my insurance covers the repair of my car. "
    "The other driver hit my rear bumper at a red light. Can you check whether the damage is covered?"
)
EN_TOPICS = [
    EN_CLAIM,
    "My package was supposed to arrive last Monday but the delivery never came. I would like a refund "
    "for the order, or please send the package again.",
    "I cannot log in to my bank account because I forgot my password. The reset email never arrives. "
    "Please help me reset the password.",
    "My flight to Seoul was cancelled this morning. I need a new flight ticket for tomorrow and a hotel "
    "room for tonight.",
]
STOP = {
    "the",
    "and",
    "my",
    "to",
    "of",
    "a",
    "i",
    "is",
    "in",
    "for",
    "was",
    "you",
    "if",
    "at",
    "me",
    "or",
    "it",
}


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP and len(w) > 2}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[Server]:
    # These tests are about the LM path itself (batching, streaming, prompts): grounding only
    # reports here, so SmolLM2's own summaries come back; enforcement is tested in
    # test_grounding_service.py.
    settings = summarizer_settings(
        cache_dir=MODEL_CACHE,
        summarizer_max_input_chars=LIMIT_CHARS,
        summarizer_max_batch_size=4,
        summarizer_max_wait_ms=300,
        summarizer_grounding="report",
    )
    async with running(create_service(settings)) as started:
        yield started


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stub(server: Server) -> AsyncIterator[Stub]:
    async with open_channel(server.address) as channel:
        yield Stub(channel)


async def test_english_summary_from_the_bundled_lm(stub: Stub) -> None:
    response = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(text=EN_CLAIM, max_output_tokens=24), timeout=300
    )
    assert response.engine == "causal-lm"
    assert response.model == "smollm2-135m-instruct"
    assert response.language_code == "en"
    assert response.chunk_count == 1
    assert response.summary.strip()
    assert 0 < response.output_tokens <= 24
    assert response.input_tokens > 40
    shared = content_words(response.summary) & content_words(EN_CLAIM)
    assert len(shared) >= 2, (response.summary, shared)


async def test_stream_deltas_add_up_to_the_summary(stub: Stub) -> None:
    request = summarizer_pb2.SummarizeRequest(
        text=EN_CLAIM, style=summarizer_pb2.SUMMARY_STYLE_INQUIRY, max_output_tokens=16, engine="causal-lm"
    )
    events = [
        e
        async for e in stub.SummarizeStream(
            summarizer_pb2.SummarizeStreamRequest(request=request), timeout=300
        )
    ]
    deltas = [e.text_delta for e in events[:-1]]
    assert all(e.WhichOneof("event") == "text_delta" for e in events[:-1])
    assert events[-1].WhichOneof("event") == "result"
    result = events[-1].result
    assert len(deltas) >= 3, deltas  # token by token, not one piece at the end
    assert "".join(deltas) == result.summary
    assert result.summary
    assert "\n" not in result.summary  # an inquiry is one line
    assert result.engine == "causal-lm"
    assert result.fallback == summarizer_pb2.SUMMARY_FALLBACK_NONE  # reported, not replaced
    assert 0 < result.output_tokens <= 16


async def test_concurrent_requests_are_batched(stub: Stub, server: Server) -> None:
    batcher = server.service.summarizer.batchers["causal-lm"]  # type: ignore[attr-defined]
    multi_before = sum(n for size, n in batcher.stats.sizes.items() if size > 1)
    samples_before = (
        REGISTRY.get_sample_value("soriflow_summarizer_batch_size_count", {"engine": "causal-lm"}) or 0
    )
    requests = [summarizer_pb2.SummarizeRequest(text=t, max_output_tokens=12) for t in EN_TOPICS]
    responses = await asyncio.gather(*(stub.Summarize(r, timeout=300) for r in requests))
    assert sum(n for size, n in batcher.stats.sizes.items() if size > 1) > multi_before
    samples_after = REGISTRY.get_sample_value("soriflow_summarizer_batch_size_count", {"engine": "causal-lm"})
    assert samples_after is not None
    assert samples_after - samples_before < len(requests)
    for response in responses:
        assert response.summary.strip()
        assert response.engine == "causal-lm"
        assert 0 < response.output_tokens <= 12
    # Each caller got the answer to its own request: the same text as that request run alone
    # (greedy decoding; left padding and the attention mask make batching invisible).
    for request, batched in zip(requests, responses, strict=True):
        alone = await stub.Summarize(request, timeout=300)
        assert alone.summary == batched.summary


async def test_inquiry_goes_to_the_faithful_engine(stub: Stub) -> None:
    response = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(text=KO_CALL, style=summarizer_pb2.SUMMARY_STYLE_INQUIRY), timeout=60
    )
    assert (response.engine, response.language_code) == ("faithful", "ko")
    # One line in the team's style, compressed from the caller's words, ending with the intent.
    assert "보험" in response.summary
    assert response.summary.endswith(("문의", "요청", "항의"))
    assert "\n" not in response.summary
    assert len(response.summary) < len(KO_CALL) / 3
    assert response.grounded
    assert list(response.unsupported_terms) == []
    assert response.fallback == summarizer_pb2.SUMMARY_FALLBACK_NONE
    english = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(text=EN_CLAIM, style=summarizer_pb2.SUMMARY_STYLE_INQUIRY), timeout=60
    )
    assert english.engine == "faithful"
    assert english.summary.startswith("Customer asks whether their insurance covers the repair")
    assert english.grounded
    # TextRank on request quotes the most central request sentence (trimmed), it does not rephrase.
    quoted = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(
            text=KO_CALL, style=summarizer_pb2.SUMMARY_STYLE_INQUIRY, engine="extractive"
        ),
        timeout=60,
    )
    assert (quoted.engine, quoted.model) == ("extractive", "textrank")
    assert quoted.summary in KO_CALL
    assert "안녕하세요" not in quoted.summary


async def test_korean_bullets(stub: Stub) -> None:
    response = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(text=KO_CALL, style=summarizer_pb2.SUMMARY_STYLE_BULLETS), timeout=60
    )
    assert 3 <= len(response.bullets) <= 5
    assert response.summary.splitlines() == [f"- {item}" for item in response.bullets]


async def test_transcript_with_speakers_focuses_on_the_customer(stub: Stub) -> None:
    transcript = audio_pb2.Transcript(language_code="ko", channel_count=2)
    for speaker, text in [
        ("agent", "안녕하세요 소리화재 고객센터입니다 무엇을 도와드릴까요"),
        ("customer", "어제 주차장에서 접촉 사고가 났는데 자동차 보험으로 처리가 되는지 확인하고 싶어요"),
        ("agent", "네 고객님 확인을 위해 차량 번호를 말씀해 주시겠어요"),
        ("customer", "십이가 삼사오육입니다"),
    ]:
        transcript.segments.add(text=text, speaker=speaker)
    response = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(
            transcript=transcript, style=summarizer_pb2.SUMMARY_STYLE_INQUIRY, focus_speaker="customer"
        ),
        timeout=60,
    )
    assert response.language_code == "ko"
    assert response.engine == "faithful"
    # Only the customer's turns: the agent's greeting and question are not summarized.
    assert response.summary == "자동차 보험 처리 여부 확인 요청"


async def test_custom_prompt_on_the_lm_and_the_fallback(stub: Stub, server: Server) -> None:
    custom = summarizer_pb2.SUMMARY_STYLE_CUSTOM
    question = "Which part of the car was damaged?"
    response = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(text=EN_CLAIM, style=custom, prompt=question, max_output_tokens=12),
        timeout=300,
    )
    assert response.engine == "causal-lm"
    assert response.summary.strip()
    # The model read the custom prompt: the prompt rendered for it holds the question and the text,
    # and the request's input token count is that prompt's (not the built-in abstract prompt's).
    engine = server.service.summarizer.engines["causal-lm"]  # type: ignore[attr-defined]
    rendered = engine.prompt(Task(EN_CLAIM, Style.CUSTOM, "en", 12, prompt=question))
    assert f"{question}\n\n{EN_CLAIM}" in rendered
    assert "Summarize" not in rendered
    assert response.input_tokens == engine.count_tokens(rendered)
    abstract = engine.prompt(Task(EN_CLAIM, Style.ABSTRACT, "en", 12))
    assert engine.count_tokens(abstract) != response.input_tokens
    # Extractive cannot follow prompts: ABSTRACT instead, as the API documents.
    fallback = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(text=EN_CLAIM, style=custom, prompt="anything", engine="extractive"),
        timeout=60,
    )
    assert fallback.engine == "extractive"
    assert fallback.summary
    assert fallback.summary in EN_CLAIM


async def test_long_input_within_the_extractive_window_is_read_in_one_chunk(stub: Stub) -> None:
    text = " ".join(
        f"Sentence number {i} talks about topic {i % 7} and the insurance claim." for i in range(60)
    )
    response = await stub.Summarize(
        summarizer_pb2.SummarizeRequest(text=text[: LIMIT_CHARS - 1], engine="extractive"), timeout=60
    )
    assert response.chunk_count == 1  # extractive reads 1536 words at once
    assert response.summary
    assert response.input_tokens >= len(text[: LIMIT_CHARS - 1].split())


async def test_errors_have_actionable_statuses(stub: Stub) -> None:
    async def code_of(request: summarizer_pb2.SummarizeRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Summarize(request, timeout=60)
        return caught.value.code(), caught.value.details() or ""

    code, message = await code_of(summarizer_pb2.SummarizeRequest(text="   "))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty" in message
    code, message = await code_of(summarizer_pb2.SummarizeRequest(transcript=audio_pb2.Transcript()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = await code_of(summarizer_pb2.SummarizeRequest(text="a" * (LIMIT_CHARS + 1)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"{LIMIT_CHARS} characters" in message
    assert "SORIFLOW_SUMMARIZER_MAX_INPUT_CHARS" in message
    code, message = await code_of(summarizer_pb2.SummarizeRequest(text="hello", engine="seq2seq"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "causal-lm, extractive" in message
    code, message = await code_of(
        summarizer_pb2.SummarizeRequest(text="hello", style=summarizer_pb2.SUMMARY_STYLE_CUSTOM)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "prompt" in message
    code, message = await code_of(summarizer_pb2.SummarizeRequest(text="hello", max_output_tokens=5000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "1024" in message
    request = summarizer_pb2.SummarizeStreamRequest(request=summarizer_pb2.SummarizeRequest(text=""))
    call = stub.SummarizeStream(request, timeout=60)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_models(stub: Stub) -> None:
    response = await stub.ListSummarizerModels(summarizer_pb2.ListSummarizerModelsRequest(), timeout=10)
    models = {m.engine: m for m in response.models}
    assert set(models) == {"causal-lm", "extractive", "faithful"}
    assert models["causal-lm"].model == "smollm2-135m-instruct"
    assert list(models["causal-lm"].language_codes) == ["en"]
    assert models["causal-lm"].device == "cpu"
    assert models["extractive"].model == "textrank"
    assert not models["extractive"].language_codes
