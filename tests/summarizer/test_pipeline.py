"""The request pipeline without gRPC or models: limits, routing, map-reduce and streaming on TextRank."""

from __future__ import annotations

from typing import Any

import pytest

from soriflow.errors import InvalidArgument, ResourceExhausted
from soriflow.summarizer.engines.extractive import ExtractiveEngine
from soriflow.summarizer.pipeline import Summarizer, SummaryRequest, SummaryResult
from soriflow.summarizer.settings import Settings
from soriflow.summarizer.styles import Style

LONG = " ".join(
    f"Customer {i} reports that order {i} arrived late and asks about delivery fee {i}." for i in range(120)
)


def summarizer(**settings: Any) -> Summarizer:
    base: dict[str, Any] = {"summarizer_engine": "extractive", "summarizer_chunk_tokens": 64}
    config = Settings(**(base | settings))
    return Summarizer({"extractive": ExtractiveEngine(chunk_words=config.summarizer_chunk_tokens)}, config)


async def test_long_input_is_chunked_and_reduced_not_truncated() -> None:
    result = await summarizer().summarize(SummaryRequest(text=LONG, style=Style.BULLETS))
    words = len(LONG.split())
    assert result.chunk_count >= words // 64  # chunks of at most 64 words (packed to 95%)
    assert result.input_tokens > words  # every word read once, plus the partial summaries re-read
    assert 3 <= len(result.bullets) <= 5
    assert result.language == "en"
    assert result.engine == "extractive"


async def test_token_and_character_limits_name_themselves() -> None:
    words = len(LONG.split())
    with pytest.raises(
        ResourceExhausted, match=rf"input is {words} tokens; the limit is 100 tokens.*MAX_INPUT_TOKENS"
    ):
        await summarizer(summarizer_max_input_tokens=100).summarize(SummaryRequest(text=LONG))
    with pytest.raises(ResourceExhausted, match=r"the limit is 50 characters"):
        await summarizer(summarizer_max_input_chars=50).summarize(SummaryRequest(text=LONG))
    with pytest.raises(InvalidArgument, match="not loaded"):
        await summarizer().summarize(SummaryRequest(text="hello", engine="seq2seq"))


async def test_stream_through_the_pipeline() -> None:
    events = [
        e async for e in summarizer().stream(SummaryRequest(text=LONG, style=Style.ABSTRACT, language="en"))
    ]
    result = events[-1]
    assert isinstance(result, SummaryResult)
    assert all(isinstance(e, str) for e in events[:-1])
    assert "".join(str(e) for e in events[:-1]) == result.summary
    assert result.chunk_count > 1
