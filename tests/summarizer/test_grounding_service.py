"""Grounding over gRPC: a tiny LM that invents, its summaries retried and replaced, the fields that say so.

The tiny Llama built by the tests has random weights: whatever it writes, the words are not the
caller's. With grounding enforced the server retries under the stricter prompt and then answers
with the faithful engine; with `report` it returns the LM's text and names the unsupported words.
The strict-retry path is exercised in-process with an engine whose retry is grounded.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from soriflow.client import open_channel
from soriflow.server import Server, running
from soriflow.summarizer.engines.base import Engine, EngineInfo, Generation, OnText, Task
from soriflow.summarizer.engines.causal import CausalLmEngine
from soriflow.summarizer.engines.faithful import FaithfulEngine
from soriflow.summarizer.pipeline import Fallback, Summarizer, SummaryRequest
from soriflow.summarizer.service import create_service
from soriflow.summarizer.settings import Settings
from soriflow.summarizer.styles import STRICT_HINT, Style
from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc
from tests.summarizer.conftest import summarizer_settings

EN_CALL = (
    "Hi, I had a small accident this morning and someone backed into my car in a parking lot. "
    "I want to know whether the repair is covered and if my premium will go up."
)
KO_CALL = "어제 주차장에서 접촉 사고가 났는데 자동차 보험으로 처리가 되는지 확인하고 싶어요"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def servers(tiny_causal: Path) -> AsyncIterator[dict[str, Server]]:
    """The tiny LM as the configured model (English and Korean), grounding enforced and reported."""
    base = {"summarizer_model": str(tiny_causal), "summarizer_languages": ["en", "ko"]}
    async with (
        running(create_service(summarizer_settings(**base, summarizer_max_output_tokens=12))) as enforce,
        running(
            create_service(
                summarizer_settings(**base, summarizer_max_output_tokens=12, summarizer_grounding="report")
            )
        ) as report,
    ):
        yield {"enforce": enforce, "report": report}


async def call(server: Server, **fields: object) -> summarizer_pb2.SummarizeResponse:
    async with open_channel(server.address) as channel:
        stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)
        return await stub.Summarize(summarizer_pb2.SummarizeRequest(**fields), timeout=120)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_an_invented_summary_is_retried_then_replaced(servers: dict[str, Server]) -> None:
    reported = await call(servers["report"], text=EN_CALL, engine="causal-lm")
    assert reported.engine == "causal-lm"
    assert reported.summary  # the tiny LM's own words
    assert not reported.grounded
    assert list(reported.unsupported_terms)
    assert reported.fallback == summarizer_pb2.SUMMARY_FALLBACK_NONE

    replaced = await call(
        servers["enforce"], text=EN_CALL, engine="causal-lm", style=summarizer_pb2.SUMMARY_STYLE_INQUIRY
    )
    assert replaced.fallback == summarizer_pb2.SUMMARY_FALLBACK_FAITHFUL_ENGINE
    assert (replaced.engine, replaced.rejected_engine) == ("faithful", "causal-lm")
    assert replaced.grounded
    assert list(replaced.unsupported_terms) == []
    assert set(reported.unsupported_terms) <= set(replaced.rejected_terms)  # what the LM invented
    assert replaced.summary == "Customer asks whether the repair is covered and if their premium will go up"
    assert replaced.output_tokens > reported.output_tokens  # the retry's tokens count too

    # Korean and the abstract style: replaced by the faithful engine (TextRank quotes for abstract).
    korean = await call(servers["enforce"], text=KO_CALL, style=summarizer_pb2.SUMMARY_STYLE_ABSTRACT)
    assert korean.fallback == summarizer_pb2.SUMMARY_FALLBACK_FAITHFUL_ENGINE
    assert korean.summary == KO_CALL
    assert korean.grounded

    # The default inquiry engine writes from the caller's words: nothing to replace.
    default = await call(servers["enforce"], text=KO_CALL, style=summarizer_pb2.SUMMARY_STYLE_INQUIRY)
    assert (default.engine, default.fallback, default.grounded) == (
        "faithful",
        summarizer_pb2.SUMMARY_FALLBACK_NONE,
        True,
    )
    assert default.summary == "주차장 접촉 사고 자동차 보험 처리 여부 확인 요청" or default.summary.endswith(
        "확인 요청"
    )

    # A custom prompt asks for free text: checked and reported, never replaced.
    custom = await call(
        servers["enforce"], text=EN_CALL, style=summarizer_pb2.SUMMARY_STYLE_CUSTOM, prompt="Write a haiku."
    )
    assert (custom.engine, custom.fallback) == ("causal-lm", summarizer_pb2.SUMMARY_FALLBACK_NONE)
    assert not custom.grounded


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_the_stream_ends_with_the_replacement(servers: dict[str, Server]) -> None:
    request = summarizer_pb2.SummarizeRequest(
        text=EN_CALL, engine="causal-lm", style=summarizer_pb2.SUMMARY_STYLE_INQUIRY
    )
    async with open_channel(servers["enforce"].address) as channel:
        stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)
        events = [
            e
            async for e in stub.SummarizeStream(
                summarizer_pb2.SummarizeStreamRequest(request=request), timeout=120
            )
        ]
    result = events[-1].result
    assert result.fallback == summarizer_pb2.SUMMARY_FALLBACK_FAITHFUL_ENGINE
    assert result.engine == "faithful"
    assert result.grounded
    # The deltas were the rejected attempt; the result's summary is the answer.
    assert "".join(e.text_delta for e in events[:-1]) != result.summary


def test_the_retry_uses_the_strict_prompt(tiny_causal: Path) -> None:
    from soriflow.summarizer.engines import load_model_engine

    engine = load_model_engine(summarizer_settings(summarizer_model=str(tiny_causal)))
    assert isinstance(engine, CausalLmEngine)
    task = Task(EN_CALL, Style.INQUIRY, "en", 8)
    assert STRICT_HINT not in engine.prompt(task)
    assert STRICT_HINT in engine.prompt(Task(EN_CALL, Style.INQUIRY, "en", 8, strict=True))


class ScriptedLm(Engine):
    """An LM stand-in for the pipeline's branch logic: invents first, copies the caller when strict."""

    follows_prompts = True

    def __init__(self) -> None:
        self.info = EngineInfo(engine="causal-lm", model="scripted")
        self.tasks: list[Task] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def input_budget(self, task: Task) -> int:
        return 1000

    def generate(self, tasks: Sequence[Task], cancel: threading.Event) -> list[Generation]:
        self.tasks.extend(tasks)
        out = [
            "The repair is covered" if t.strict else "Your daughter was added to the policy last night"
            for t in tasks
        ]
        return [Generation(text, 10, len(text.split())) for text in out]

    def stream(self, task: Task, cancel: threading.Event, on_text: OnText) -> Generation:
        generation = self.generate([task], cancel)[0]
        on_text(generation.text)
        return generation


async def test_a_grounded_retry_is_kept() -> None:
    lm = ScriptedLm()
    summarizer = Summarizer({"causal-lm": lm, "faithful": FaithfulEngine()}, Settings())
    result = await summarizer.summarize(SummaryRequest(text=EN_CALL, style=Style.ABSTRACT))
    assert [t.strict for t in lm.tasks] == [False, True]
    assert result.summary == "The repair is covered"
    assert result.engine == "causal-lm"
    report = result.grounding
    assert (report.fallback, report.grounded, report.rejected_engine) == (
        Fallback.STRICT_RETRY,
        True,
        "causal-lm",
    )
    assert report.rejected_terms == ["daughter", "policy", "last", "night"]
    off = Summarizer({"causal-lm": ScriptedLm()}, Settings(summarizer_grounding="off"))
    unchecked = await off.summarize(SummaryRequest(text=EN_CALL, style=Style.ABSTRACT))
    assert unchecked.grounding.fallback is Fallback.UNSPECIFIED
    assert unchecked.summary.startswith("Your daughter")
