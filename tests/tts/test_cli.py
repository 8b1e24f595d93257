"""`soriflow synthesize` and `soriflow voices`, run as a user runs them (in-process and --server)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soriflow.cli.main import app
from soriflow.server import Server
from tests.tts.checks import assert_speech, decode, probe

pytestmark = pytest.mark.slow
in_module_loop = pytest.mark.asyncio(loop_scope="module")

SORIFLOW = str(Path(sys.executable).with_name("soriflow"))


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        SORIFLOW, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


@in_module_loop
async def test_synthesize_file_in_process_to_connect_wav(tmp_path: Path) -> None:
    text = tmp_path / "reply.txt"
    text.write_text("문의하신 내용이 환불 맞으신가요?\n확인 후 연락드리겠습니다.", encoding="utf-8")
    out = tmp_path / "reply.wav"
    code, _, err = await run(
        "synthesize", "-f", str(text), "-o", str(out), "--language", "ko-KR", "--encoding", "mulaw"
    )
    assert code == 0, err
    assert "voice ko (espeak-ng), 2 sentence(s)" in err
    info = probe(out.read_bytes())
    assert (info["codec"], info["rate"], info["channels"]) == ("pcm_mulaw", 8000, 1)
    assert_speech(*decode(out.read_bytes()), min_s=2.0, max_s=8.0)


@in_module_loop
async def test_synthesize_through_a_server(tts_server: Server, tmp_path: Path) -> None:
    out = tmp_path / "hello.mp3"
    code, _, err = await run(
        "synthesize",
        "Hello from the neural voice.",
        "-o",
        str(out),
        "--engine",
        "piper",
        "--encoding",
        "mp3",
        "--sample-rate",
        "16000",
        "--server",
        tts_server.address,
    )
    assert code == 0, err
    info = probe(out.read_bytes())
    assert (info["codec"], info["rate"]) == ("mp3", 16000)
    assert_speech(*decode(out.read_bytes()), min_s=1.0, max_s=5.0)
    code, _, err = await run(
        "synthesize",
        "Hi.",
        "--voice",
        "nobody",
        "-o",
        str(tmp_path / "x.wav"),
        "--server",
        tts_server.address,
    )
    assert code == 1
    assert "NOT_FOUND: unknown voice 'nobody'" in err


@in_module_loop
async def test_voices_lists_korean() -> None:
    code, out, err = await run("voices", "--language", "ko")
    assert code == 0, err
    assert out.split() == ["espeak-ng", "ko", "ko", "male", "22050", "Hz", "ssml"]


def test_usage_errors_exit_1(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["synthesize", "hello", "--encoding", "flac", "-o", str(tmp_path / "a.wav")])
    assert result.exit_code == 1
    assert "unknown encoding 'flac'" in result.output
    result = runner.invoke(app, ["synthesize", "-o", str(tmp_path / "a.wav")])
    assert result.exit_code == 1
    assert "give the text" in result.output


@in_module_loop
async def test_synthesize_ogg_opus_and_linear16_with_a_chosen_voice(
    tts_server: Server, tmp_path: Path
) -> None:
    """--encoding ogg-opus and linear16 (checked with ffprobe), and --voice picking a voice that
    is not the default (an espeak-ng variant in-process, the piper voice through the server)."""
    opus = tmp_path / "reply.ogg"
    code, _, err = await run(
        "synthesize", "Your order has shipped.", "-o", str(opus), "--encoding", "ogg-opus",
        "--voice", "en_US-joe-medium", "--server", tts_server.address,
    )  # fmt: skip
    assert code == 0, err
    assert "voice en_US-joe-medium (piper)" in err
    info = probe(opus.read_bytes())
    assert (info["codec"], info["format"], info["channels"]) == ("opus", "ogg", 1)
    assert opus.read_bytes()[:4] == b"OggS"
    assert_speech(*decode(opus.read_bytes()), min_s=0.8, max_s=4.0)

    wav = tmp_path / "reply.wav"
    code, _, err = await run(
        "synthesize", "Your order has shipped.", "-o", str(wav), "--encoding", "linear16",
        "--sample-rate", "16000", "--voice", "en-us+f3",
    )  # fmt: skip
    assert code == 0, err
    assert "voice en-us+f3 (espeak-ng)" in err
    info = probe(wav.read_bytes())
    assert (info["codec"], info["rate"], info["channels"], info["format"]) == ("pcm_s16le", 16000, 1, "wav")
    samples, rate = decode(wav.read_bytes())
    assert_speech(samples, rate, min_s=0.8, max_s=4.0)
    assert info["duration"] == pytest.approx(len(samples) / rate, abs=0.01)
