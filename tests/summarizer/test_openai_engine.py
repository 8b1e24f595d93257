"""The `openai` engine through the real gRPC path, against a real llama.cpp server on loopback.

The server is llama-cpp-python's OpenAI-compatible one serving the bundled
SmolLM2-135M GGUF with an API key (read by Soriflow from a file). Faults a
real server will not produce on cue (429, 503, silence) come from
`FaultProxy`, a real HTTP server in front of it. The fault tests that never
reach the model need no llama.cpp and run with the fast tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from soriflow.client import open_channel
from soriflow.server import running
from soriflow.summarizer.engines.openai_chat import NO_KEY, estimate_tokens, read_api_key
from soriflow.summarizer.service import create_service
from soriflow.summarizer.settings import Settings
from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc
from tests.conftest import free_port
from tests.summarizer.conftest import summarizer_settings
from tests.summarizer.llama_server import MODEL_ALIAS, FaultProxy, LlamaServer, fault_proxy, llama_server
from tests.summarizer.test_service import EN_CLAIM, EN_TOPICS, content_words

Stub = summarizer_pb2_grpc.SummarizerServiceStub
INQUIRY = summarizer_pb2.SUMMARY_STYLE_INQUIRY
#: Nothing listens there: the proxy's fault answers and stalls never forward.
NOWHERE = "http://127.0.0.1:9/v1"


@contextlib.asynccontextmanager
async def summarizer_for(base_url: str, **overrides: Any) -> AsyncIterator[Stub]:
    """A real summarizer gRPC server with the `openai` engine pointed at `base_url`.

    Every style goes to the engine (not the faithful inquiry default), and grounding reports
    instead of replacing (unless a test asks), so what is checked is the engine's own text; the
    replacement is tested in `test_grounding_is_enforced_on_the_server_s_text`.
    """
    settings = summarizer_settings(
        **{
            "summarizer_engine": "openai",
            "summarizer_model": MODEL_ALIAS,
            "summarizer_openai_base_url": base_url,
            "summarizer_grounding": "report",
            "summarizer_inquiry_engine": "",  # the inquiry style too is the engine's
        }
        | overrides
    )
    async with running(create_service(settings)) as server, open_channel(server.address) as channel:
        yield Stub(channel)


def request(text: str = EN_CLAIM, **fields: Any) -> summarizer_pb2.SummarizeRequest:
    return summarizer_pb2.SummarizeRequest(text=text, **({"max_output_tokens": 32} | fields))


async def status_of(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


# --- settings and estimates (no server) ------------------------------------------------------------


def test_api_key_comes_from_the_file_then_the_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("  sk-from-file\n")
    assert read_api_key(Settings(summarizer_openai_api_key_file=key_file, summarizer_openai_api_key="x")) == (
        "sk-from-file"
    )
    assert read_api_key(Settings(summarizer_openai_api_key="sk-env")) == "sk-env"
    assert read_api_key(Settings()) == NO_KEY
    from soriflow.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match=r"API_KEY_FILE=.*cannot be read"):
        read_api_key(Settings(summarizer_openai_api_key_file=tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InvalidArgument, match="is empty"):
        read_api_key(Settings(summarizer_openai_api_key_file=tmp_path / "empty"))


def test_token_estimate_runs_high() -> None:
    """Chunking must never overflow the served model's context: one token per 3 UTF-8 bytes."""
    assert estimate_tokens("") == 0
    assert estimate_tokens(EN_CLAIM) >= len(EN_CLAIM.split()) * 1.5
    assert estimate_tokens("자동차 사고 보험 여부 확인 요청") >= 13  # one per Hangul syllable at least


# --- faults that never reach a model (fast) --------------------------------------------------------


@pytest.fixture
def proxy_nowhere() -> Iterator[FaultProxy]:
    with fault_proxy(NOWHERE) as proxy:
        yield proxy


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (503, grpc.StatusCode.UNAVAILABLE, "failed with 503 after 2 retries"),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED, "still rate-limiting after 2 retries"),
    ],
)
async def test_retries_then_a_clear_status(
    proxy_nowhere: FaultProxy, status: int, code: grpc.StatusCode, words: str
) -> None:
    proxy_nowhere.reset(fail_status=status, fail_count=100)
    async with summarizer_for(proxy_nowhere.base_url, summarizer_openai_max_retries=2) as stub:
        error = await status_of(stub.Summarize(request(), timeout=60))
    assert error.code() == code, error.details()
    assert words in (error.details() or "")
    assert "injected by the test proxy" in (error.details() or "")  # the server's own message is passed on
    assert [action for method, _, action in proxy_nowhere.seen if method == "POST"] == [str(status)] * 3


async def test_silent_server_hits_the_read_timeout(proxy_nowhere: FaultProxy) -> None:
    proxy_nowhere.reset(stall_s=30)
    async with summarizer_for(
        proxy_nowhere.base_url, summarizer_openai_read_timeout_s=0.5, summarizer_openai_max_retries=1
    ) as stub:
        started = time.monotonic()
        error = await status_of(stub.Summarize(request(), timeout=60))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
    assert "SORIFLOW_SUMMARIZER_OPENAI_READ_TIMEOUT_S" in (error.details() or "")
    assert time.monotonic() - started < 10
    assert [action for method, _, action in proxy_nowhere.seen if method == "POST"] == ["stalled"] * 2


async def test_generation_deadline_stops_the_remote_request(proxy_nowhere: FaultProxy) -> None:
    """Past SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S the request fails and its HTTP request is closed."""
    proxy_nowhere.reset(stall_s=30)
    async with summarizer_for(
        proxy_nowhere.base_url, summarizer_generation_timeout_s=1.0, summarizer_openai_read_timeout_s=60
    ) as stub:
        started = time.monotonic()
        error = await status_of(stub.Summarize(request(), timeout=60))
        took = time.monotonic() - started
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()
        assert "SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S" in (error.details() or "")
        assert 0.9 < took < 10  # not the 60 s read timeout
        for _ in range(200):  # the server sees the connection close soon after
            if proxy_nowhere.hangups:
                break
            await asyncio.sleep(0.05)
        assert proxy_nowhere.hangups
        assert proxy_nowhere.hangups[0] - started < 10

        # The same for a stream.
        proxy_nowhere.reset(stall_s=30)
        stream = stub.SummarizeStream(summarizer_pb2.SummarizeStreamRequest(request=request()), timeout=60)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream:
                pass
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "SORIFLOW_SUMMARIZER_GENERATION_TIMEOUT_S" in (caught.value.details() or "")


async def test_the_rpc_deadline_wins_when_sooner(proxy_nowhere: FaultProxy) -> None:
    proxy_nowhere.reset(stall_s=30)
    async with summarizer_for(proxy_nowhere.base_url, summarizer_generation_timeout_s=60) as stub:
        started = time.monotonic()
        error = await status_of(stub.Summarize(request(), timeout=1.5))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 10
        for _ in range(200):
            if proxy_nowhere.hangups:
                break
            await asyncio.sleep(0.05)
        assert proxy_nowhere.hangups, "the remote request was not closed at the RPC's deadline"


async def test_unreachable_server_is_unavailable() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    async with summarizer_for(base_url, summarizer_openai_max_retries=1) as stub:
        error = await status_of(stub.Summarize(request(), timeout=60))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert f"cannot reach the chat server at {base_url}" in (error.details() or "")
    assert "SORIFLOW_SUMMARIZER_OPENAI_BASE_URL" in (error.details() or "")


# --- against the real llama.cpp server -------------------------------------------------------------


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LlamaServer, Path]]:
    """The llama.cpp server with a random API key, and a file holding that key."""
    key = secrets.token_hex(16)
    key_file = tmp_path_factory.mktemp("openai-key") / "api-key"
    key_file.write_text(key + "\n")
    with llama_server(key) as server:
        yield server, key_file


@pytest.fixture(scope="module")
def proxy(llama: tuple[LlamaServer, Path]) -> Iterator[FaultProxy]:
    with fault_proxy(llama[0].base_url) as started:
        yield started


@pytest.mark.slow
async def test_summary_and_stream_from_a_real_llama_cpp_server(llama: tuple[LlamaServer, Path]) -> None:
    server, key_file = llama
    async with summarizer_for(server.base_url, summarizer_openai_api_key_file=key_file) as stub:
        response = await stub.Summarize(request(max_output_tokens=48), timeout=120)
        assert (response.engine, response.model, response.language_code) == ("openai", MODEL_ALIAS, "en")
        assert response.summary.strip()
        assert 0 < response.output_tokens <= 48
        assert response.input_tokens > 40  # the server's usage: the templated prompt's tokens
        shared = content_words(response.summary) & content_words(EN_CLAIM)
        assert len(shared) >= 2, (response.summary, shared)

        stream_request = request(style=INQUIRY, max_output_tokens=24)
        events = [
            e
            async for e in stub.SummarizeStream(
                summarizer_pb2.SummarizeStreamRequest(request=stream_request), timeout=120
            )
        ]
        deltas = [e.text_delta for e in events[:-1]]
        assert all(e.WhichOneof("event") == "text_delta" for e in events[:-1])
        result = events[-1].result
        assert len(deltas) >= 3, deltas  # token by token from the server's SSE, not one piece
        assert "".join(deltas) == result.summary
        assert result.summary
        assert "\n" not in result.summary
        unary = await stub.Summarize(stream_request, timeout=120)
        # Not necessarily the streamed text: the server reuses the KV cache of the previous request's
        # common prefix, and on CPU that moves the logits enough to change a greedy continuation.
        assert unary.summary
        assert "\n" not in unary.summary

        models = await stub.ListSummarizerModels(summarizer_pb2.ListSummarizerModelsRequest(), timeout=10)
        openai_model = next(m for m in models.models if m.engine == "openai")
        assert openai_model.model == MODEL_ALIAS
        assert openai_model.device.startswith("remote (127.0.0.1:")


@pytest.mark.slow
async def test_grounding_is_enforced_on_the_server_s_text(llama: tuple[LlamaServer, Path]) -> None:
    """A remote model is checked like a local one: whatever it wrote, the answer is grounded, and
    when its text was not, the response names the overruled engine and what it invented."""
    server, key_file = llama
    async with summarizer_for(
        server.base_url, summarizer_openai_api_key_file=key_file, summarizer_grounding="enforce"
    ) as stub:
        response = await stub.Summarize(request(style=INQUIRY, max_output_tokens=48), timeout=120)
    assert response.grounded
    assert not response.unsupported_terms
    if response.engine != "openai":
        assert response.fallback == summarizer_pb2.SUMMARY_FALLBACK_FAITHFUL_ENGINE
        assert response.rejected_engine == "openai"
        assert response.rejected_terms
    allowed = content_words(EN_CLAIM) | {"customer", "asks", "whether", "their", "they", "them"}
    assert content_words(response.summary) <= allowed, response.summary


@pytest.mark.slow
async def test_concurrent_requests_and_free_form_prompts(llama: tuple[LlamaServer, Path]) -> None:
    """Requests go to the server at once (it batches or queues); each gets its own answer."""
    server, key_file = llama
    async with summarizer_for(server.base_url, summarizer_openai_api_key_file=key_file) as stub:
        requests = [request(text, max_output_tokens=16) for text in EN_TOPICS[:3]]
        together = await asyncio.gather(*(stub.Summarize(r, timeout=120) for r in requests))
        for one, answer in zip(requests, together, strict=True):
            assert answer.summary == (await stub.Summarize(one, timeout=120)).summary

        # A free-form prompt (Style.CUSTOM), as the gateway's generate stage will send.
        custom = await stub.Summarize(
            request(
                style=summarizer_pb2.SUMMARY_STYLE_CUSTOM,
                prompt="Which part of the car was hit? Answer with one word.",
                max_output_tokens=8,
            ),
            timeout=120,
        )
        assert custom.engine == "openai"
        assert custom.summary.strip()

        # The token cap: the server's max_tokens, and at most that many tokens reported.
        capped = await stub.Summarize(request(max_output_tokens=3), timeout=120)
        assert 0 < capped.output_tokens <= 3
        assert len(capped.summary.split()) <= 4


@pytest.mark.slow
async def test_rate_limit_is_retried_until_served(proxy: FaultProxy, llama: tuple[LlamaServer, Path]) -> None:
    proxy.reset(fail_status=429, fail_count=2, retry_after="1")
    async with summarizer_for(proxy.base_url, summarizer_openai_api_key_file=llama[1]) as stub:
        started = time.monotonic()
        response = await stub.Summarize(request(max_output_tokens=12), timeout=120)
        assert response.summary.strip()
        assert response.engine == "openai"
        assert time.monotonic() - started >= 2  # Retry-After: 1 honoured twice
        assert [a for m, _, a in proxy.seen if m == "POST"] == ["429", "429", "proxied"]

        proxy.reset(fail_status=502, fail_count=1)  # a gateway in front of the server failing once
        events = [
            e
            async for e in stub.SummarizeStream(
                summarizer_pb2.SummarizeStreamRequest(request=request(max_output_tokens=12)), timeout=120
            )
        ]
        assert "".join(e.text_delta for e in events[:-1]) == events[-1].result.summary
        assert [a for m, _, a in proxy.seen if m == "POST"] == ["502", "proxied"]


@pytest.mark.slow
async def test_bad_api_key_is_a_clear_error(llama: tuple[LlamaServer, Path]) -> None:
    server, _ = llama
    async with summarizer_for(server.base_url, summarizer_openai_api_key="not-the-key") as stub:
        error = await status_of(stub.Summarize(request(), timeout=60))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    details = error.details() or ""
    assert f"the chat server at {server.base_url} refused the API key (401" in details
    assert "SORIFLOW_SUMMARIZER_OPENAI_API_KEY_FILE" in details
    assert "not-the-key" not in details


@pytest.mark.slow
async def test_an_answer_cut_short_is_an_error_not_a_summary(
    proxy: FaultProxy, llama: tuple[LlamaServer, Path]
) -> None:
    """A stream that ends without a finish_reason (server restart, interrupted) never becomes a summary."""
    proxy.reset(cut_after_events=3)
    async with summarizer_for(proxy.base_url, summarizer_openai_api_key_file=llama[1]) as stub:
        error = await status_of(stub.Summarize(request(max_output_tokens=32), timeout=120))
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert "ended its answer early (no finish_reason" in (error.details() or "")
