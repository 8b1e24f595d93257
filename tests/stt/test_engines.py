"""The in-process engine API other services use: load_engine, transcribe, batching, cancellation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from soriflow.audio import Audio
from soriflow.errors import Cancelled, InvalidArgument
from soriflow.stt.engines import TranscribeOptions, load_engine, resolve_device
from soriflow.stt.evaluation import corpus_wer, espeak_clips
from tests.stt.conftest import stt_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Audio, str]:
    clips = espeak_clips(tmp_path_factory.mktemp("engines"))[:8]
    pause = np.zeros(8000, np.float32)
    samples = np.concatenate([x for c in clips for x in (c.audio.samples, pause)])
    return Audio(samples, 16000), " ".join(c.reference for c in clips)


def test_device_and_precision_from_settings() -> None:
    assert resolve_device(stt_settings()) == ("cpu", "int8")
    assert resolve_device(stt_settings(stt_engine="openai-whisper")) == ("cpu", "float32")
    assert resolve_device(stt_settings(stt_device="auto"))[0] in ("cpu", "cuda")
    with pytest.raises(InvalidArgument, match="float16"):
        resolve_device(stt_settings(stt_engine="openai-whisper", stt_compute_type="float16"))


def test_batched_pipeline_matches_sequential_decoding(long_audio: tuple[Audio, str]) -> None:
    """faster-whisper's batched pipeline (the GPU default) forced on CPU: same words, same timeline."""
    audio, reference = long_audio
    assert audio.duration_s > 30
    options = TranscribeOptions(language="en", beam_size=1)
    sequential = load_engine(stt_settings(stt_batch_size=0)).transcribe(audio, options)
    batched_engine = load_engine(stt_settings(stt_batch_size=4))
    assert batched_engine.batch_size == 4  # type: ignore[attr-defined]
    batched = batched_engine.transcribe(audio, options)
    assert corpus_wer([reference], [batched.text]) <= corpus_wer([reference], [sequential.text]) + 0.05
    assert batched.words[-1].end == pytest.approx(sequential.words[-1].end, abs=1.5)
    unfiltered = batched_engine.transcribe(
        audio, TranscribeOptions(language="en", beam_size=1, vad_filter=False)
    )
    assert corpus_wer([reference], [unfiltered.text]) <= 0.35


def test_cancel_event_stops_a_transcription(long_audio: tuple[Audio, str]) -> None:
    engine = load_engine(stt_settings())
    # Four times the long clip (about two minutes): one 30 s window's encoder pass is most of a
    # single clip's time, so only a recording of several windows separates "stopped at the next
    # pass" from "ran to the end" on a busy machine.
    audio = Audio(np.tile(long_audio[0].samples, 4), long_audio[0].sample_rate)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.transcribe(audio, TranscribeOptions(language="en"), cancel)
    # Set while running: it stops at the next encoder/decoder pass, well before the end.
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    started = time.perf_counter()
    timer.start()
    full = 0.0
    with pytest.raises(Cancelled):
        engine.transcribe(audio, TranscribeOptions(language="en", beam_size=5), cancel)
    stopped = time.perf_counter() - started
    started = time.perf_counter()
    engine.transcribe(audio, TranscribeOptions(language="en", beam_size=5))
    full = time.perf_counter() - started
    assert stopped < full / 2


def test_english_only_engine_refuses_other_languages(speech_wav: Path) -> None:
    from soriflow.audio import decode_audio

    engine = load_engine(stt_settings())
    with pytest.raises(InvalidArgument, match="English-only"):
        engine.transcribe(decode_audio(speech_wav.read_bytes()), TranscribeOptions(language="de"))
