"""The seq2seq and causal-LM engines and LoRA adapters, through the settings, on tiny models built here."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from soriflow.client import open_channel
from soriflow.errors import Cancelled, InvalidArgument
from soriflow.server import Server, running
from soriflow.summarizer.engines import Task, load_model_engine
from soriflow.summarizer.engines.causal import CausalLmEngine
from soriflow.summarizer.pipeline import SummaryRequest, SummaryResult, build_summarizer
from soriflow.summarizer.service import create_service
from soriflow.summarizer.settings import Settings
from soriflow.summarizer.styles import Style
from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc
from tests.summarizer.conftest import summarizer_settings
from tests.summarizer.tiny import build_bart, build_causal

pytestmark = pytest.mark.slow

LONG_TEXT = " ".join(
    f"The customer number {i} says the package did not arrive and asks for a refund of order {i}."
    for i in range(12)
)
TASKS = [
    Task("My package did not arrive and I would like a refund.", Style.ABSTRACT, "en", 10),
    Task("I was in a car accident yesterday.", Style.INQUIRY, "en", 6),
    Task("Please check whether the rental car is covered while my car is repaired.", Style.BULLETS, "en", 8),
]


def make_adapter(base: Path, out: Path, *, seq2seq: bool) -> Path:
    """A LoRA adapter with random (non-zero) weights, saved like `soriflow train summarizer` saves one."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch.manual_seed(1)
    model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_pretrained(base)
    config = LoraConfig(
        r=4,
        lora_alpha=64,
        init_lora_weights=False,
        task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
    )
    get_peft_model(model, config).save_pretrained(out)
    return out


def test_causal_batches_answer_each_row_like_alone(tiny_causal: Path) -> None:
    engine = load_model_engine(summarizer_settings(summarizer_model=str(tiny_causal)))
    assert engine.info.engine == "causal-lm"
    assert engine.info.languages == ()
    batched = engine.generate(TASKS, threading.Event())
    alone = [engine.generate([task], threading.Event())[0] for task in TASKS]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.output_tokens for g in batched] == [g.output_tokens for g in alone]
    for task, generation in zip(TASKS, batched, strict=True):
        assert 0 < generation.output_tokens <= task.max_new_tokens
        assert generation.input_tokens > len(task.text.split())  # the prompt template counts too


def test_streaming_matches_and_cancel_stops(tiny_causal: Path) -> None:
    engine = load_model_engine(summarizer_settings(summarizer_model=str(tiny_causal)))
    pieces: list[str] = []
    streamed = engine.stream(TASKS[0], threading.Event(), lambda piece: pieces.append(piece) is None)
    assert "".join(pieces) == streamed.text == engine.generate([TASKS[0]], threading.Event())[0].text
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.generate(TASKS, cancel)


def test_lora_adapter_changes_the_causal_output(tiny_causal: Path, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_causal, tmp_path / "lora", seq2seq=False)
    base = load_model_engine(summarizer_settings(summarizer_model=str(tiny_causal)))
    tuned = load_model_engine(
        summarizer_settings(summarizer_model=str(tiny_causal), summarizer_adapter=str(adapter))
    )
    assert tuned.info.adapter == str(adapter.resolve())
    assert [g.text for g in tuned.generate(TASKS, threading.Event())] != [
        g.text for g in base.generate(TASKS, threading.Event())
    ]


def test_lora_adapter_changes_the_seq2seq_output(tiny_bart: Path, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_bart, tmp_path / "lora", seq2seq=True)
    settings = {"summarizer_engine": "seq2seq", "summarizer_model": str(tiny_bart)}
    base = load_model_engine(summarizer_settings(**settings))
    tuned = load_model_engine(summarizer_settings(**settings, summarizer_adapter=str(adapter)))
    assert (base.info.engine, tuned.info.engine) == ("seq2seq", "seq2seq")
    assert tuned.info.adapter == str(adapter.resolve())
    assert base.info.adapter in (None, "")
    before = [g.text for g in base.generate(TASKS, threading.Event())]
    after = [g.text for g in tuned.generate(TASKS, threading.Event())]
    assert after != before


def test_seq2seq_defaults_are_the_teams_beam_search(tmp_path: Path) -> None:
    """4 beams and at most 128 new tokens unless configured (the original team's KoBART settings)."""
    assert Settings.model_fields["summarizer_max_output_tokens"].default == 128
    bart = build_bart(tmp_path / "bart-256", context=256)  # room for 128 new tokens
    engine = load_model_engine(summarizer_settings(summarizer_engine="seq2seq", summarizer_model=str(bart)))
    assert engine.num_beams == 4  # type: ignore[attr-defined]
    kwargs = engine._kwargs(summarizer_settings().summarizer_max_output_tokens)  # type: ignore[attr-defined]
    assert (kwargs["num_beams"], kwargs["max_new_tokens"], kwargs["early_stopping"]) == (4, 128, True)
    assert kwargs["no_repeat_ngram_size"] == 3
    configured = load_model_engine(
        summarizer_settings(summarizer_engine="seq2seq", summarizer_model=str(bart), summarizer_num_beams=2)
    )
    assert configured.num_beams == 2  # type: ignore[attr-defined]


def test_prompt_role_puts_the_instruction_in_the_user_or_the_system_turn(tiny_causal: Path) -> None:
    task = Task("My package did not arrive.", Style.ABSTRACT, "en", 8)
    instruction = "Summarize the following text in two or three sentences."
    user = load_model_engine(summarizer_settings(summarizer_model=str(tiny_causal)))
    assert isinstance(user, CausalLmEngine)
    assert user.prompt(task) == (
        f"<|im_start|>user\n{instruction}\n\nText: My package did not arrive.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    system = load_model_engine(
        summarizer_settings(summarizer_model=str(tiny_causal), summarizer_prompt_role="system")
    )
    assert isinstance(system, CausalLmEngine)
    assert system.prompt(task) == (
        f"<|im_start|>system\n{instruction}<|im_end|>\n"
        "<|im_start|>user\nText: My package did not arrive.<|im_end|>\n<|im_start|>assistant\n"
    )
    # A custom prompt without {text} is the whole system turn; operator templates split at the
    # last blank line before {text}.
    custom = Task("Text here.", Style.CUSTOM, "ko", 8, prompt="Give it a title.")
    assert system.prompt(custom).startswith(
        "<|im_start|>system\nGive it a title.<|im_end|>\n<|im_start|>user\nText here.<|im_end|>"
    )
    generated = system.generate([task], threading.Event())[0]
    assert generated.input_tokens == system.count_tokens(system.prompt(task))
    assert generated.input_tokens != user.count_tokens(user.prompt(task))
    assert system.input_budget(task) != user.input_budget(task)  # the budget counts the real template


@pytest.fixture(scope="module")
def causal_128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny causal LM with a 128-token context, so an ordinary text must be split."""
    return build_causal(tmp_path_factory.mktemp("tiny-causal-128"), context=128)


async def test_causal_map_reduce_on_a_small_context(causal_128: Path) -> None:
    settings = summarizer_settings(
        summarizer_model=str(causal_128), summarizer_languages=["en"], summarizer_max_wait_ms=0
    )
    summarizer = build_summarizer(settings)
    try:
        engine = summarizer.engines["causal-lm"]
        assert engine.context == 128  # type: ignore[attr-defined]
        assert engine.count_tokens(LONG_TEXT) > 128
        request = SummaryRequest(text=LONG_TEXT, language="en", max_output_tokens=8)
        result = await summarizer.summarize(request)
        assert result.engine == "causal-lm"
        assert result.chunk_count > 1
        # every chunk's prompt was read, plus the final prompt over the joined partial summaries
        assert result.input_tokens > engine.count_tokens(LONG_TEXT) > 128
        assert result.output_tokens > 0
        assert result.summary
        events = [e async for e in summarizer.stream(request)]
        final = events[-1]
        assert isinstance(final, SummaryResult)
        assert all(isinstance(e, str) for e in events[:-1])
        assert "".join(str(e) for e in events[:-1]) == final.summary == result.summary
        assert final.chunk_count == result.chunk_count
    finally:
        await summarizer.close()


def test_engine_must_match_the_model(tiny_bart: Path, tiny_causal: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="SORIFLOW_SUMMARIZER_ENGINE=seq2seq"):
        load_model_engine(summarizer_settings(summarizer_model=str(tiny_bart), summarizer_engine="causal-lm"))
    with pytest.raises(InvalidArgument, match="not a LoRA adapter"):
        load_model_engine(
            summarizer_settings(summarizer_model=str(tiny_causal), summarizer_adapter=str(tmp_path))
        )
    with pytest.raises(InvalidArgument, match="not a model"):
        load_model_engine(summarizer_settings(summarizer_model=str(tmp_path)))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bart_server(tiny_bart: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """A server running the tiny BART (64-position encoder) with a LoRA adapter on top."""
    adapter = make_adapter(tiny_bart, tmp_path_factory.mktemp("bart-lora"), seq2seq=True)
    settings = summarizer_settings(
        summarizer_engine="seq2seq",
        summarizer_model=str(tiny_bart),
        summarizer_adapter=str(adapter),
        summarizer_languages=["en"],
        summarizer_max_output_tokens=8,
        # The random tiny BART invents every word: report grounding so its own output (chunking,
        # beams, streaming) is what comes back; enforcement is tested in test_grounding_service.py.
        summarizer_grounding="report",
    )
    async with running(create_service(settings)) as server:
        yield server


@pytest.mark.asyncio(loop_scope="module")
async def test_seq2seq_server_chunks_long_input_and_streams(bart_server: Server, tiny_bart: Path) -> None:
    async with open_channel(bart_server.address) as channel:
        stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)
        models = await stub.ListSummarizerModels(summarizer_pb2.ListSummarizerModelsRequest(), timeout=10)
        seq2seq = next(m for m in models.models if m.engine == "seq2seq")
        assert seq2seq.model == tiny_bart.name
        assert seq2seq.adapter.endswith("bart-lora0")

        # Longer than the 64-position encoder: split into chunks, summarized map-reduce.
        response = await stub.Summarize(summarizer_pb2.SummarizeRequest(text=LONG_TEXT), timeout=120)
        assert response.engine == "seq2seq"
        assert response.chunk_count > 1
        assert response.input_tokens > 64
        assert response.output_tokens > 0

        short = summarizer_pb2.SummarizeRequest(text="My package did not arrive and I would like a refund.")
        unary = await stub.Summarize(short, timeout=60)
        assert unary.chunk_count == 1
        # Beam search (4 beams) cannot stream token by token: one delta, then the result.
        events = [e async for e in stub.SummarizeStream(summarizer_pb2.SummarizeStreamRequest(request=short))]
        assert events[-1].result.summary == unary.summary == "".join(e.text_delta for e in events[:-1])

        # Korean is not in this model's languages: extractive answers.
        korean = await stub.Summarize(
            summarizer_pb2.SummarizeRequest(text="택배가 안 왔어요. 환불해 주세요.")
        )
        assert korean.engine == "extractive"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Summarize(
                summarizer_pb2.SummarizeRequest(text="hello", engine="causal-lm"), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
