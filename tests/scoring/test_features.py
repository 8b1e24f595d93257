"""Frame features: energy, silence, speech presence, clipping, MFCC."""

from __future__ import annotations

import numpy as np

from soriflow.scoring.features import (
    clipped_fraction,
    energy_db,
    has_speech,
    mfcc,
    silence_model,
    speech_bounds,
)

from .speech import RATE, SENTENCE, piper


def test_digital_silence_and_quiet_noise_have_no_speech() -> None:
    assert not has_speech(energy_db(np.zeros(RATE, dtype=np.float32), RATE))
    noise = (np.random.default_rng(0).standard_normal(RATE) * 1e-4).astype(np.float32)
    assert not has_speech(energy_db(noise, RATE))
    levels = energy_db(np.zeros(RATE, dtype=np.float32), RATE)
    assert np.isfinite(levels).all()


def test_speech_is_found_and_bounded() -> None:
    x = np.concatenate(
        [np.zeros(RATE // 2, dtype=np.float32), piper(SENTENCE), np.zeros(RATE, dtype=np.float32)]
    )
    levels = energy_db(x, RATE)
    assert has_speech(levels)
    lo, hi = speech_bounds(levels)
    assert abs(lo * 0.01 - 0.5) < 0.1
    assert abs(hi * 0.01 - (len(x) / RATE - 1.0)) < 0.15
    model = silence_model(levels)
    assert model.noise_db < model.threshold_db < model.speech_db


def test_clipping_and_mfcc_shapes() -> None:
    x = piper(SENTENCE)
    assert clipped_fraction(x) < 0.001
    assert clipped_fraction(np.clip(x * 20, -1, 1)) > 0.05
    features = mfcc(x, RATE)
    assert features.shape == (len(energy_db(x, RATE)), 12)
    assert np.isfinite(features).all()
    assert np.allclose(features.mean(axis=0), 0, atol=1e-6)
