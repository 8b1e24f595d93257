"""The CTranslate2 -> openai-whisper converter, and both engines on the same weights."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from soriflow.stt.convert import convert_ct2_to_openai, read_ct2_model, to_openai_state_dict
from soriflow.stt.engines import TranscribeOptions, load_engine
from soriflow.stt.evaluation import SENTENCES, alsa_clips, corpus_wer, piper_clips
from soriflow.stt.models import locate_model
from tests.stt.conftest import stt_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return locate_model("tiny.en").path


@pytest.fixture(scope="module")
def checkpoint(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "tiny.en.pt"
    summary = convert_ct2_to_openai(tiny_dir, out)
    assert summary["source_dtypes"] == ["float16"]  # what the bundled model holds
    assert summary["alignment_heads"] == 8
    return out


def test_checkpoint_loads_strictly_into_openai_whisper(checkpoint: Path, tiny_dir: Path) -> None:
    import whisper

    data = torch.load(checkpoint, weights_only=True)
    dims = whisper.model.ModelDimensions(**data["dims"])
    assert (dims.n_mels, dims.n_audio_state, dims.n_audio_layer, dims.n_text_layer, dims.n_vocab) == (
        80,
        384,
        4,
        4,
        51864,
    )
    model = whisper.model.Whisper(dims)
    model.load_state_dict(data["model_state_dict"], strict=True)  # every tensor present, none extra
    assert not model.is_multilingual
    model.set_alignment_heads(data["alignment_heads"].encode())
    heads = model.alignment_heads.to_dense().nonzero().tolist()
    assert heads == json.loads((tiny_dir / "config.json").read_text())["alignment_heads"]
    raw = read_ct2_model(tiny_dir / "model.bin").variables
    fused = raw["encoder/layer_0/self_attention/linear_0/weight"]
    assert torch.equal(
        model.encoder.blocks[0].attn.key.weight.half(), torch.from_numpy(fused[384:768].copy())
    )
    assert torch.equal(
        model.decoder.token_embedding.weight.half(), torch.from_numpy(raw["decoder/embeddings/weight"].copy())
    )


def _write_int8_copy(src: Path, dest: Path) -> None:
    """The same model quantized to int8 by CTranslate2's own writer (as `--quantization int8` makes)."""
    from ctranslate2.specs import whisper_spec

    variables = read_ct2_model(src / "model.bin").variables
    spec = whisper_spec.WhisperSpec(4, 6, 4, 6)
    for name, value in variables.items():
        if value.ndim == 0:
            continue
        node = spec
        *scopes, attr = name.split("/")
        for scope in scopes:
            indexed = re.fullmatch(r"(\w+?)_(\d+)", scope)
            node = (
                getattr(node, indexed.group(1))[int(indexed.group(2))]
                if indexed and not hasattr(node, scope)
                else getattr(node, scope)
            )
        setattr(node, attr, np.array(value, dtype=np.float32))
    spec.register_vocabulary((src / "vocabulary.txt").read_text().splitlines())
    spec.validate()
    spec.optimize("int8")
    dest.mkdir(parents=True)
    spec._serialize(str(dest / "model.bin"))
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy(src / name, dest / name)


def test_int8_weights_are_dequantized_with_their_scales(tiny_dir: Path, tmp_path: Path) -> None:
    _write_int8_copy(tiny_dir, tmp_path / "int8")
    quantized = read_ct2_model(tmp_path / "int8" / "model.bin")
    assert quantized.variables["encoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
    _, reference = to_openai_state_dict(read_ct2_model(tiny_dir / "model.bin"))
    _, restored = to_openai_state_dict(quantized)
    assert reference.keys() == restored.keys()
    for name, want in reference.items():
        want32 = want.astype(np.float32)
        got = restored[name].astype(np.float32)
        rows = want32.reshape(want32.shape[0], -1) if want32.ndim > 1 else want32[None]
        step = np.abs(rows).max(axis=1, keepdims=True) / 127  # one int8 step of each row
        error = np.abs(got.reshape(rows.shape) - rows)
        assert (error <= step * 0.5 + 1e-3 * step + 1e-7).all(), name
    # And the dequantized checkpoint still transcribes.
    out = tmp_path / "int8.pt"
    convert_ct2_to_openai(tmp_path / "int8", out)
    engine = load_engine(stt_settings(stt_engine="openai-whisper", stt_model=str(out)))
    clip = alsa_clips()[0]
    assert (
        corpus_wer([clip.reference], [engine.transcribe(clip.audio, TranscribeOptions(language="en")).text])
        == 0
    )


def test_engines_agree_on_real_speech(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """faster-whisper and openai-whisper on the same weights and precision: WER within 2 points.

    Greedy decoding keeps the test quick (openai-whisper's beam search is slow on CPU); the
    benchmark (bench/stt_engines.py) compares them with beam 5.
    """
    clips = alsa_clips() + piper_clips(tmp_path_factory.mktemp("piper"), SENTENCES[:6])
    references = [c.reference for c in clips]
    options = TranscribeOptions(language="en", beam_size=1)
    faster = load_engine(stt_settings(stt_compute_type="float32"))
    faster_wer = corpus_wer(references, [faster.transcribe(c.audio, options).text for c in clips])
    faster.close()
    openai = load_engine(stt_settings(stt_engine="openai-whisper", stt_model=str(checkpoint)))
    assert openai.info.engine == "openai-whisper"
    openai_wer = corpus_wer(references, [openai.transcribe(c.audio, options).text for c in clips])
    assert faster_wer < 0.25
    assert abs(faster_wer - openai_wer) <= 0.02, (faster_wer, openai_wer)


def test_openai_engine_runs_the_bundled_model_with_vad_and_words() -> None:
    """SORIFLOW_STT_ENGINE=openai-whisper on `tiny.en`: converted once into the cache, then served."""
    engine = load_engine(stt_settings(stt_engine="openai-whisper"))
    clip = alsa_clips()[0]
    padded = np.concatenate([np.zeros(16000 * 5, np.float32), clip.audio.samples])
    from soriflow.audio import Audio

    transcript = engine.transcribe(Audio(padded, 16000), TranscribeOptions(language="en", vad_filter=True))
    assert corpus_wer([clip.reference], [transcript.text]) == 0
    assert transcript.words[0].start >= 4.5  # times map back past the silence VAD removed
    assert all(0 < w.probability <= 1 for w in transcript.words)
