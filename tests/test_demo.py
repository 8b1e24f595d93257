"""`soriflow demo`, the best end-to-end test there is: every service, S3 -> SQS -> gateway -> outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from soriflow.stack import HTTP_PORTS, METRICS_PORTS, PORTS

pytestmark = pytest.mark.slow


def _ports_free() -> bool:
    import socket

    for port in (*PORTS.values(), *HTTP_PORTS.values(), *METRICS_PORTS.values(), 4566):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


SAFE_EN = "Sorry, I could not catch your request. Could you tell me once more?"
SAFE_KO = "죄송합니다. 문의 내용을 한 번 더 말씀해 주시겠어요?"


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not _ports_free():
        pytest.fail(
            "the demo's fixed ports (50050-50054, 9150-9154, 4566) are taken: is `soriflow up` running?"
        )
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    env.pop("SORIFLOW_S3_ENDPOINT_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "soriflow.cli.main", "demo", "--output-dir", "out", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def test_demo_runs_the_jobs_and_its_outputs_are_real(tmp_path: Path) -> None:
    result = run_demo(tmp_path)
    assert "demo finished: 4 jobs succeeded" in result.stdout
    out = tmp_path / "out"
    summary = json.loads((out / "demo.json").read_text())
    assert summary["problems"] == []
    assert set(summary["jobs"]) == {"call", "unclear-call", "pronunciation", "transcribe"}
    assert set(summary["states"].values()) == {"JOB_STATE_SUCCEEDED"}
    # The call understood is read back; the mumbled one is not: the safe reply, and a person reviews it.
    assert summary["needs_review"] == {
        "call": False,
        "unclear-call": True,
        "pronunciation": False,
        "transcribe": False,
    }
    assert summary["replies"]["call"].startswith("Let me confirm your request: Customer asks")
    assert summary["replies"]["unclear-call"] == SAFE_EN
    assert not (out / "unclear-call" / "summary.json").exists()  # what was not understood is not summarized
    assert "needs review:" in result.stdout

    transcript = json.loads((out / "call" / "transcript.json").read_text())
    words = [w["word"].lower().strip(".,") for w in transcript["words"]]
    assert {"car", "accident", "insurance"} <= set(words)
    assert {w["speaker"] for w in transcript["words"]} == {"customer", "agent"}
    summary_json = json.loads((out / "call" / "summary.json").read_text())
    assert summary_json["engine"] == "faithful"
    assert summary_json["grounded"] is True
    one_line = summary_json["summary"].strip()
    assert one_line
    assert "\n" not in one_line
    header = (out / "call" / "reply.wav").read_bytes()[:28]
    assert header[:4] == b"RIFF"
    assert header[8:12] == b"WAVE"
    assert (
        int.from_bytes(header[20:22], "little"),
        int.from_bytes(header[22:24], "little"),
        int.from_bytes(header[24:28], "little"),
    ) == (7, 1, 8000)
    reply = sf.info(out / "call" / "reply.wav")
    assert (reply.samplerate, reply.channels, reply.subtype) == (8000, 1, "ULAW")
    assert reply.duration > 1.0, "the reply reads the summary back: more than a second of speech"
    samples, _ = sf.read(out / "call" / "reply.wav")
    assert float(abs(samples).max()) > 0.05, "the reply is not silence"

    score = json.loads((out / "pronunciation" / "score.json").read_text())
    assert 0 <= score["overall_score"] <= 100
    omitted = [w["word"] for w in score["words"] if w.get("error_type") == "WORD_ERROR_TYPE_OMISSION"]
    assert omitted == ["toy"], "the learner reading leaves out 'toy'"
    assert (out / "pronunciation" / "pitch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    srt = (out / "transcribe" / "subtitles.srt").read_text()
    assert srt.startswith("1\n00:00:00")
    assert "-->" in srt
    assert "subtitles" in srt.lower()


def test_the_korean_demo_never_reads_back_what_was_not_understood(tmp_path: Path) -> None:
    """`soriflow demo --language ko`: two espeak-ng Korean voices under connect/ko/ (Korean pinned), the
    multilingual base model. It does not understand espeak-ng's Korean, so both calls get the Korean
    safe reply and need review; what matters is that nothing it misheard is read back."""
    result = run_demo(tmp_path, "--language", "ko")
    assert "demo finished: 2 jobs succeeded" in result.stdout
    out = tmp_path / "out"
    summary = json.loads((out / "demo.json").read_text())
    assert summary["problems"] == []
    assert summary["language"] == "ko"
    assert summary["needs_review"]["unclear-call"] is True
    for name in ("call", "unclear-call"):
        transcript = json.loads((out / name / "transcript.json").read_text())
        assert transcript["language"] == "ko"  # pinned: never Thai or Finnish
        assert {s["language"] for s in transcript["segments"]} <= {"ko"}
        reply = summary["replies"][name]
        if summary["needs_review"][name]:
            assert reply == SAFE_KO
        else:
            assert reply.startswith("문의하신 내용이 ")
        assert sf.info(out / name / "reply.wav").samplerate == 8000
