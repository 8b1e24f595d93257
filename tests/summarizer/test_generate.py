"""The Generate RPC: free text from a prompt, through the real gRPC path, on every instruction-LM engine.

The bundled SmolLM2-135M runs in llama.cpp (in-process) and behind a real
llama.cpp server (the `openai` engine); a tiny random-weight Llama built by the
tests covers the transformers path (sampling with a seed, batching beside
greedy summaries). Errors need no model: they are checked before any is asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from soriflow.client import open_channel
from soriflow.server import running
from soriflow.summarizer.engines import Task, load_model_engine
from soriflow.summarizer.service import create_service
from soriflow.summarizer.styles import Style
from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc
from tests.summarizer.conftest import summarizer_settings
from tests.summarizer.llama_server import MODEL_ALIAS, llama_server, require_llama_cpp

Stub = summarizer_pb2_grpc.SummarizerServiceStub
STORY_PROMPT = "Write a short bedtime story for a small child about a fox who is afraid of the dark."


@contextlib.asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[Stub]:
    async with (
        running(create_service(summarizer_settings(**overrides))) as server,
        open_channel(server.address) as channel,
    ):
        yield Stub(channel)


def generate(prompt: str = STORY_PROMPT, **fields: Any) -> summarizer_pb2.GenerateRequest:
    return summarizer_pb2.GenerateRequest(prompt=prompt, **({"max_output_tokens": 40} | fields))


async def status_of(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


# --- checks made before any model is asked (no model loaded: extractive only) ----------------------


async def test_requests_are_checked_before_a_model_is_asked() -> None:
    async with serve(summarizer_engine="extractive") as stub:
        cases = [
            (generate(""), grpc.StatusCode.INVALID_ARGUMENT, "empty prompt"),
            (generate("  \n "), grpc.StatusCode.INVALID_ARGUMENT, "empty prompt"),
            (generate("tell me\x00a story"), grpc.StatusCode.INVALID_ARGUMENT, "control character"),
            (generate("?!... --"), grpc.StatusCode.INVALID_ARGUMENT, "no words"),
            (generate(temperature=2.5), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
            (generate(temperature=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, "temperature"),
            (generate(max_output_tokens=5000), grpc.StatusCode.INVALID_ARGUMENT, "MAX_OUTPUT_TOKENS_LIMIT"),
            (generate("word " * 30_000), grpc.StatusCode.RESOURCE_EXHAUSTED, "MAX_INPUT_CHARS"),
            (generate(engine="nope"), grpc.StatusCode.INVALID_ARGUMENT, "not loaded"),
            # TextRank only quotes: it cannot write a story.
            (generate(engine="extractive"), grpc.StatusCode.INVALID_ARGUMENT, "cannot write free text"),
            (generate(engine="faithful"), grpc.StatusCode.INVALID_ARGUMENT, "cannot write free text"),
            # No instruction LM configured at all: the deployment must change, not the request.
            (generate(), grpc.StatusCode.FAILED_PRECONDITION, "SORIFLOW_SUMMARIZER_ENGINE=extractive"),
        ]
        for request, code, words in cases:
            error = await status_of(stub.Generate(request, timeout=30))
            assert error.code() == code, (request.prompt[:40], error.details())
            assert words in (error.details() or ""), error.details()


# --- transformers (causal-lm) on a tiny random-weight Llama -----------------------------------------


def test_sampling_is_seeded_and_batches_split_by_sampling(tiny_causal: Path) -> None:
    engine = load_model_engine(summarizer_settings(summarizer_model=str(tiny_causal)))
    import threading

    cancel = threading.Event()
    greedy = Task(STORY_PROMPT, Style.GENERATE, "en", 12)
    seeded = Task(STORY_PROMPT, Style.GENERATE, "en", 12, temperature=1.5, seed=7)
    other_seed = Task(STORY_PROMPT, Style.GENERATE, "en", 12, temperature=1.5, seed=8)
    alone = [engine.generate([task], cancel)[0] for task in (greedy, seeded, other_seed)]
    # One call mixing greedy and sampled rows answers each as it would alone.
    mixed = engine.generate([seeded, greedy, other_seed], cancel)
    assert [g.text for g in mixed] == [alone[1].text, alone[0].text, alone[2].text]
    assert engine.generate([seeded], cancel)[0].text == alone[1].text  # same seed, same text
    assert alone[1].text != alone[2].text  # another seed, another text (random weights: varied)
    # The tiny model always writes its whole cap: the text is reported as cut off.
    assert all(g.truncated and g.output_tokens == 12 for g in alone)
    # The prompt is the user turn alone: no summarizing instruction of ours.
    prompt = engine.prompt(greedy)  # type: ignore[attr-defined]
    assert STORY_PROMPT in prompt
    assert "Summarize" not in prompt


@pytest.mark.slow
async def test_generate_on_transformers_through_grpc(tiny_causal: Path) -> None:
    async with serve(summarizer_model=str(tiny_causal), summarizer_languages=["en"]) as stub:
        first = await stub.Generate(generate(temperature=0.9, seed=11), timeout=60)
        again = await stub.Generate(generate(temperature=0.9, seed=11), timeout=60)
        assert (first.engine, first.seed) == ("causal-lm", 11)
        assert first.truncated == (first.output_tokens == 40)
        assert (first.text, first.output_tokens) == (again.text, again.output_tokens)
        drawn = await stub.Generate(generate(temperature=0.9), timeout=60)
        assert drawn.seed != 0  # the server drew one and says which
        replay = await stub.Generate(generate(temperature=0.9, seed=drawn.seed), timeout=60)
        assert replay.text == drawn.text
        # Greedy requests batch with summaries; concurrent ones each answer as alone.
        alone = await stub.Generate(generate(), timeout=60)
        together = await asyncio.gather(*(stub.Generate(generate(), timeout=60) for _ in range(3)))
        assert {r.text for r in together} == {alone.text}
        assert alone.seed == 0
        error = await status_of(stub.Generate(generate(language_code="ko"), timeout=30))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "writes en, not 'ko'" in (error.details() or "")
        # The tiny Llama has 512 positions: a prompt that does not fit is refused, never cut.
        error = await status_of(stub.Generate(generate("once upon a time " * 200), timeout=30))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "leaves room for" in (error.details() or "")


# --- the bundled SmolLM2 in llama.cpp, in-process and behind a llama.cpp server ----------------------


def _story_checks(response: summarizer_pb2.GenerateResponse, cap: int) -> None:
    assert response.text
    assert response.text == response.text.strip()
    words = {w.strip(".,!?\"'").lower() for w in response.text.split()}
    assert words & {"fox", "dark", "night", "afraid", "little", "once"}, response.text
    assert 0 < response.output_tokens <= cap
    assert response.input_tokens > 10


@pytest.mark.slow
async def test_generate_with_llama_cpp() -> None:
    require_llama_cpp()
    async with serve(summarizer_engine="llama-cpp", summarizer_model=MODEL_ALIAS) as stub:
        story = await stub.Generate(generate(max_output_tokens=120), timeout=300)
        _story_checks(story, 120)
        assert (story.engine, story.model, story.seed) == ("llama-cpp", MODEL_ALIAS, 0)
        assert (await stub.Generate(generate(max_output_tokens=120), timeout=300)).text == story.text
        short = await stub.Generate(generate(max_output_tokens=8), timeout=120)
        assert short.truncated
        assert short.output_tokens <= 8
        sampled = await stub.Generate(generate(max_output_tokens=40, temperature=0.9, seed=3), timeout=120)
        replay = await stub.Generate(generate(max_output_tokens=40, temperature=0.9, seed=3), timeout=120)
        assert sampled.text == replay.text
        assert sampled.seed == 3
        # Same limits and deadline as a summary.
    async with serve(
        summarizer_engine="llama-cpp", summarizer_model=MODEL_ALIAS, summarizer_generation_timeout_s=0.3
    ) as stub:
        error = await status_of(stub.Generate(generate(max_output_tokens=400), timeout=120))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "generating took longer than 0.3 s" in (error.details() or "")
        assert "SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S" in (error.details() or "")


@pytest.mark.slow
async def test_generate_through_an_openai_compatible_server(tmp_path: Path) -> None:
    key = secrets.token_hex(8)
    key_file = tmp_path / "key"
    key_file.write_text(key)
    with llama_server(key) as server:
        async with serve(
            summarizer_engine="openai",
            summarizer_model=MODEL_ALIAS,
            summarizer_openai_base_url=server.base_url,
            summarizer_openai_api_key_file=key_file,
        ) as stub:
            story = await stub.Generate(generate(max_output_tokens=100), timeout=300)
            _story_checks(story, 100)
            assert story.engine == "openai"
            short = await stub.Generate(generate(max_output_tokens=6), timeout=120)
            assert short.truncated  # the server's finish_reason "length"
            seeded = [await stub.Generate(generate(temperature=0.8, seed=5), timeout=120) for _ in range(2)]
            assert seeded[0].text == seeded[1].text  # llama.cpp's server honours the seed
