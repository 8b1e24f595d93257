"""The `llama-cpp` engine (the bundled GGUF in-process with llama.cpp) through the real gRPC path."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from soriflow.client import open_channel
from soriflow.errors import Cancelled
from soriflow.server import running
from soriflow.summarizer.engines import Task, load_model_engine
from soriflow.summarizer.service import create_service
from soriflow.summarizer.styles import Style
from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc
from tests.summarizer.conftest import summarizer_settings
from tests.summarizer.llama_server import MODEL_ALIAS, require_llama_cpp
from tests.summarizer.test_service import EN_CLAIM, content_words
from tests.summarizer.test_text import KO_CALL

pytestmark = pytest.mark.slow

Stub = summarizer_pb2_grpc.SummarizerServiceStub
STORY = summarizer_pb2.SummarizeRequest(
    text=EN_CLAIM,
    style=summarizer_pb2.SUMMARY_STYLE_CUSTOM,
    prompt="Retell the text below as a long, detailed story of at least ten paragraphs.",
    max_output_tokens=512,
)


@pytest.fixture(autouse=True)
def _llama_cpp_installed() -> None:
    require_llama_cpp()


@contextlib.asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[Stub]:
    # Every style goes to the engine and grounding reports rather than replaces, so the engine's own
    # text is what the tests check.
    settings = summarizer_settings(
        **{
            "summarizer_engine": "llama-cpp",
            "summarizer_model": MODEL_ALIAS,
            "summarizer_grounding": "report",
            "summarizer_inquiry_engine": "",
        }
        | overrides
    )
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        yield Stub(channel)


async def test_summary_stream_and_routing() -> None:
    async with serve() as stub:
        response = await stub.Summarize(
            summarizer_pb2.SummarizeRequest(text=EN_CLAIM, max_output_tokens=48), timeout=120
        )
        assert (response.engine, response.model, response.language_code) == ("llama-cpp", MODEL_ALIAS, "en")
        assert 0 < response.output_tokens <= 48
        assert response.input_tokens > 40
        shared = content_words(response.summary) & content_words(EN_CLAIM)
        assert len(shared) >= 2, (response.summary, shared)

        request = summarizer_pb2.SummarizeRequest(
            text=EN_CLAIM, style=summarizer_pb2.SUMMARY_STYLE_INQUIRY, max_output_tokens=24
        )
        events = [
            e
            async for e in stub.SummarizeStream(
                summarizer_pb2.SummarizeStreamRequest(request=request), timeout=120
            )
        ]
        deltas = [e.text_delta for e in events[:-1]]
        result = events[-1].result
        assert len(deltas) >= 3, deltas
        assert "".join(deltas) == result.summary
        assert result.summary
        assert "\n" not in result.summary
        assert (await stub.Summarize(request, timeout=120)).summary == result.summary  # greedy

        capped = await stub.Summarize(
            summarizer_pb2.SummarizeRequest(text=EN_CLAIM, max_output_tokens=3), timeout=120
        )
        assert 0 < capped.output_tokens <= 3

        # The bundled model writes English only: Korean goes to TextRank, as with the causal engine.
        korean = await stub.Summarize(summarizer_pb2.SummarizeRequest(text=KO_CALL), timeout=60)
        assert korean.engine == "extractive"


async def test_generation_deadline_on_llama_cpp() -> None:
    async with serve() as stub:
        started = time.monotonic()
        full = await stub.Summarize(STORY, timeout=300)
        took = time.monotonic() - started
    assert full.output_tokens >= 100, full.summary  # long enough to cut
    deadline = max(0.1, took / 4)
    async with serve(summarizer_generation_timeout_s=deadline) as stub:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Summarize(STORY, timeout=300)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S" in (caught.value.details() or "")
        assert time.monotonic() - started < deadline + max(1.0, took / 2)


def test_prompt_is_the_models_chat_template_and_cancel_stops() -> None:
    engine = load_model_engine(
        summarizer_settings(summarizer_engine="llama-cpp", summarizer_model=MODEL_ALIAS)
    )
    try:
        task = Task(EN_CLAIM, Style.INQUIRY, "en", 16)
        prompt = engine.prompt(task)  # type: ignore[attr-defined]
        # SmolLM2's ChatML template from the GGUF, the instruction in the user turn (the default role).
        assert prompt.startswith("<|im_start|>system\n")
        assert "<|im_start|>user\nSummarize the customer's request below in one short line." in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
        assert engine.count_tokens(EN_CLAIM) < len(prompt)
        assert 0 < engine.input_budget(task) <= 1536
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(Cancelled):
            engine.generate([task], cancel)
    finally:
        engine.close()
