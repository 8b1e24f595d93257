"""`soriflow score`: JSON, table and plot, against a running service and in-process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import soundfile as sf

from soriflow.scoring.plot import draw_contours
from soriflow.server import Server
from soriflow.v1 import scoring_pb2, scoring_pb2_grpc

from .speech import RATE, SENTENCE, piper, wav_input

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SORIFLOW = str(Path(sys.executable).parent / "soriflow")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("clips")
    reference, learner = folder / "reference.wav", folder / "learner.wav"
    sf.write(reference, piper(SENTENCE), RATE)
    sf.write(learner, piper("I bought a new boat at the store yesterday."), RATE)
    return learner, reference


async def soriflow(*args: str) -> tuple[int, str, str]:
    env = os.environ | {"SORIFLOW_LOG_FORMAT": "text", "HF_HUB_OFFLINE": "1"}
    process = await asyncio.create_subprocess_exec(
        SORIFLOW, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    return process.returncode or 0, out.decode(), err.decode()


async def test_json_against_the_service(scoring_server: Server, clips: tuple[Path, Path]) -> None:
    learner, reference = clips
    code, out, err = await soriflow(
        "score",
        "--audio",
        str(learner),
        "--reference-audio",
        str(reference),
        "--json",
        "--server",
        scoring_server.address,
    )
    assert code == 0, err
    result = json.loads(out)
    for key in ("overall", "accuracy", "fluency", "completeness", "prosody", "speed_ratio"):
        assert 0 <= result[key] <= (100 if key != "speed_ratio" else 10)
    toy = next(w for w in result["words"] if w["word"] == "toy")
    assert toy["error"] == "substitution"
    assert toy["recognized"] == "boat"
    assert {"word", "error"} <= set(result["words"][0])
    bought = next(w for w in result["words"] if w["word"] == "bought")
    assert [p["phone"] for p in bought["phones"]] == ["B", "AA", "T"]  # English: phone-level scores
    assert all(0 <= p["accuracy"] <= 100 for p in bought["phones"])


async def test_table_and_plot(scoring_server: Server, clips: tuple[Path, Path], tmp_path: Path) -> None:
    learner, reference = clips
    png = tmp_path / "contours.png"
    code, out, err = await soriflow(
        "score",
        "--audio",
        str(learner),
        "--reference-audio",
        str(reference),
        "--reference-text",
        SENTENCE,
        "--plot",
        str(png),
        "--server",
        scoring_server.address,
    )
    assert code == 0, err
    assert "overall" in out
    assert "substitution" in out
    assert "You said 'boat' instead of 'toy'." in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000


async def test_plot_draws_both_contours_and_marks_the_words(
    scoring_stub: scoring_pb2_grpc.PronunciationScoringServiceStub,
) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    request = scoring_pb2.ScoreRequest(
        audio=wav_input(piper("I bought a new boat at the store yesterday.")),
        reference_audio=wav_input(piper(SENTENCE)),
        reference_text=SENTENCE,
    )
    response = await scoring_stub.Score(request, timeout=120)
    fig = draw_contours(response)
    try:
        (ax,) = fig.axes
        labels = {text.get_text(): to_hex(text.get_color()) for text in ax.texts}
        assert list(labels) == SENTENCE.lower().rstrip(".").split()
        assert labels["toy"] == "#d62728"  # the substituted word in red
        assert labels["store"] == "#333333"
        xs = {t.get_text(): t.get_position()[0] for t in ax.texts}
        toy = next(w for w in response.words if w.word == "toy")
        assert xs["toy"] == pytest.approx((toy.reference_start_ms + toy.reference_end_ms) / 2000)
        assert xs["i"] < xs["toy"] < xs["yesterday"]  # on the reference's time axis, in order
        lines = {line.get_label() for line in ax.get_lines()}
        assert {"reference", "learner"} <= lines
        assert ax.get_xlabel() == "time in the reference audio (s)"
    finally:
        plt.close(fig)


async def test_in_process_with_an_stt_address(stt_server: Server, clips: tuple[Path, Path]) -> None:
    learner, _ = clips
    code, out, err = await soriflow(
        "score",
        "--audio",
        str(learner),
        "--reference-text",
        SENTENCE,
        "--json",
        "--stt",
        stt_server.address,
        "--feedback-language",
        "ko",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["completeness"] == pytest.approx(100 * 8 / 9, abs=0.1)
    assert result["feedback"][0] == "'toy' 자리에서 다른 단어('boat')가 들렸어요."


async def test_errors_are_reported_not_raised(tmp_path: Path, clips: tuple[Path, Path]) -> None:
    learner, _ = clips
    code, _, err = await soriflow("score", "--audio", str(learner))
    assert code == 1
    assert "give --reference-audio, --reference-text, or both" in err
    code, _, err = await soriflow("score", "--audio", str(tmp_path / "missing.wav"), "--reference-text", "hi")
    assert code == 1
    assert "does not exist" in err
    code, _, err = await soriflow(
        "score",
        "--audio",
        str(learner),
        "--reference-text",
        "hi",
        "--server",
        "127.0.0.1:9",
        "--timeout",
        "20",
    )
    assert code == 1
    assert "UNAVAILABLE" not in err
    assert "127.0.0.1:9" in err
