"""openai-whisper (PyTorch): the reference implementation our users' stack runs.

It loads an openai-whisper checkpoint (`dims` + `model_state_dict`). Given a
CTranslate2 model instead (the bundled ones), it converts it once into the
model cache with `soriflow.stt.convert`, so both engines run the same weights.
Tokenizer vocabularies and mel filters ship inside the `openai-whisper` wheel
(`whisper/assets`), so nothing is downloaded.

What openai-whisper lacks is filled in the way faster-whisper does it:
voice activity filtering uses the same Silero model (`faster_whisper.vad`),
with timestamps mapped back to the original audio; hot words are appended to
the prompt (faster-whisper puts them in the same prompt slot); the language
probability comes from an explicit detection pass. Cancellation is checked
before each 30 s window is decoded, through a thin proxy around the model.

PyTorch modules are not safe to run from several threads here (word
alignment installs hooks on the shared decoder), so calls are serialized;
`parallelism` is 1 and the torch thread pool does the parallel work.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from soriflow.audio import Audio
from soriflow.errors import InvalidArgument
from soriflow.models import cache_lock, cache_root
from soriflow.stt.engines.base import (
    SAMPLE_RATE,
    EngineInfo,
    Segment,
    TranscribeOptions,
    Transcript,
    Word,
    check_cancel,
    mono_16k,
)
from soriflow.stt.engines.faster import whisper_languages

if TYPE_CHECKING:
    from soriflow.stt.models import ModelFiles
    from soriflow.stt.settings import Settings

log = logging.getLogger("soriflow.stt.openai")


def converted_checkpoint(files: ModelFiles, settings: Settings | None = None) -> Path:
    """The openai-whisper checkpoint of a CTranslate2 model, converted into the cache once."""
    from soriflow.stt.convert import convert_ct2_to_openai

    model_bin = files.path / "model.bin"
    stat = model_bin.stat()
    key = hashlib.sha256(f"{model_bin.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache_root(settings) / "openai-whisper" / f"{files.name}-{key}.pt"
    if not out.is_file():
        with cache_lock(out):
            if not out.is_file():
                summary = convert_ct2_to_openai(files.path, out)
                log.info(
                    "converted %s to an openai-whisper checkpoint at %s (%d tensors)",
                    files.path,
                    out,
                    summary["tensors"],
                )
    return out


class _Cancellable:
    """The model as `whisper.transcribe` sees it, checking for cancellation before each window."""

    def __init__(self, model: Any, cancel: threading.Event | None) -> None:
        self._model = model
        self._cancel = cancel

    def decode(self, mel: Any, options: Any) -> Any:
        from whisper.decoding import decode

        check_cancel(self._cancel)
        return decode(self._model, mel, options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


class OpenAIWhisperEngine:
    """An openai-whisper model behind the `Engine` interface."""

    parallelism = 1

    def __init__(
        self, checkpoint: Path, *, name: str, source: str, device: str, compute_type: str, threads: int = 0
    ) -> None:
        import torch
        import whisper

        if threads:
            torch.set_num_threads(threads)
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or "dims" not in data or "model_state_dict" not in data:
            raise InvalidArgument(
                f"{checkpoint} is not an openai-whisper checkpoint (no dims/model_state_dict)"
            )
        model = whisper.model.Whisper(whisper.model.ModelDimensions(**data["dims"]))
        model.load_state_dict(data["model_state_dict"])
        heads = data.get("alignment_heads")
        if heads:
            model.set_alignment_heads(heads.encode() if isinstance(heads, str) else heads)
        elif name in whisper._ALIGNMENT_HEADS:
            model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
        self.fp16 = compute_type == "float16"
        model = model.to(device)
        if self.fp16:
            model = model.half()
        self.model = model.eval()
        self._lock = threading.Lock()
        _compile_dtw()
        multilingual = bool(model.is_multilingual)
        self.info = EngineInfo(
            name=name,
            engine="openai-whisper",
            source=source,
            device=device,
            compute_type=compute_type,
            multilingual=multilingual,
            languages=whisper_languages(multilingual),
        )

    @classmethod
    def from_files(
        cls, files: ModelFiles, *, settings: Settings, device: str, compute_type: str, threads: int = 0
    ) -> OpenAIWhisperEngine:
        checkpoint = files.path if files.format == "openai" else converted_checkpoint(files, settings)
        return cls(
            checkpoint,
            name=files.name,
            source=files.source,
            device=device,
            compute_type=compute_type,
            threads=threads,
        )

    def detect_language(self, samples: npt.NDArray[np.float32]) -> tuple[str, float]:
        """The most likely language of the first 30 s and its probability."""
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(samples), self.model.dims.n_mels)
        mel = mel.to(self.model.device)
        if self.fp16:
            mel = mel.half()
        _, probs = self.model.detect_language(mel)
        language = max(probs, key=probs.get)
        return str(language), float(probs[language])

    def transcribe(
        self, audio: Audio, options: TranscribeOptions, cancel: threading.Event | None = None
    ) -> Transcript:
        import torch
        import whisper

        samples = mono_16k(audio)
        duration = len(samples) / SAMPLE_RATE
        if not self.info.multilingual and options.language not in (None, "en"):
            raise InvalidArgument(
                f"model {self.info.name} is English-only; it cannot transcribe {options.language!r}"
            )
        speech = _speech_chunks(samples) if options.vad_filter else None
        if speech is not None:
            from faster_whisper.vad import collect_chunks

            chunks, _ = collect_chunks(samples, speech)
            samples = np.concatenate(chunks).astype(np.float32)
        prompt = " ".join(p for p in (options.initial_prompt, " ".join(options.hotwords)) if p) or None
        with self._lock, torch.inference_mode():
            check_cancel(cancel)
            if len(samples) == 0:
                return Transcript((), options.language or "en", 1.0 if options.language else 0.0, duration)
            if options.language is not None:
                language, probability = options.language, 1.0
            elif not self.info.multilingual:
                language, probability = "en", 1.0
            else:
                language, probability = self.detect_language(samples)
            kwargs: dict[str, Any] = {
                "language": language,
                "task": options.task,
                "word_timestamps": options.word_timestamps,
                "initial_prompt": prompt,
                "condition_on_previous_text": options.condition_on_previous_text,
                "fp16": self.fp16,
                "verbose": None,
            }
            kwargs["temperature"] = options.temperatures
            if options.max_new_tokens:
                kwargs["sample_len"] = options.max_new_tokens
            if options.beam_size > 1:
                kwargs["beam_size"] = options.beam_size
            if options.prefix:
                kwargs["prefix"] = options.prefix
            result = whisper.transcribe(_Cancellable(self.model, cancel), samples, **kwargs)  # type: ignore[arg-type]
        check_cancel(cancel)
        segments = [_segment(i, s) for i, s in enumerate(result["segments"])]
        if speech is not None:
            segments = _restore_times(segments, speech)
        return Transcript(
            segments=tuple(s for s in segments if s.text),
            language=language,
            language_probability=probability,
            duration=duration,
        )

    def close(self) -> None:
        del self.model


def _compile_dtw() -> None:
    """Compiles openai-whisper's numba DTW now: the first word alignment would otherwise take ~20 s."""
    from whisper.timing import dtw_cpu

    dtw_cpu(np.random.default_rng(0).random((8, 8)))


def _segment(index: int, raw: dict[str, Any]) -> Segment:
    words = tuple(
        Word(
            word=str(w["word"]).strip(),
            start=float(w["start"]),
            end=float(w["end"]),
            probability=float(w["probability"]),
        )
        for w in raw.get("words") or ()
        if str(w["word"]).strip()
    )
    return Segment(
        id=index,
        start=float(raw["start"]),
        end=float(raw["end"]),
        text=str(raw["text"]).strip(),
        words=words,
        avg_logprob=float(raw["avg_logprob"]),
        no_speech_prob=float(raw["no_speech_prob"]),
    )


def _speech_chunks(samples: npt.NDArray[np.float32]) -> list[dict[str, int]]:
    """Silero speech regions with faster-whisper's default options (so both engines filter alike)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return list(get_speech_timestamps(samples, VadOptions()))


def _restore_times(segments: list[Segment], speech: list[dict[str, int]]) -> list[Segment]:
    """Times on the speech-only audio mapped back to the original, as faster-whisper does."""
    from dataclasses import replace

    from faster_whisper.vad import SpeechTimestampsMap

    ts_map = SpeechTimestampsMap(speech, SAMPLE_RATE)
    restored = []
    for seg in segments:
        if seg.words:
            words = []
            for w in seg.words:
                chunk = ts_map.get_chunk_index((w.start + w.end) / 2)
                words.append(
                    replace(
                        w,
                        start=ts_map.get_original_time(w.start, chunk),
                        end=ts_map.get_original_time(w.end, chunk),
                    )
                )
            restored.append(replace(seg, words=tuple(words), start=words[0].start, end=words[-1].end))
        else:
            restored.append(
                replace(
                    seg,
                    start=ts_map.get_original_time(seg.start),
                    end=ts_map.get_original_time(seg.end, is_end=True),
                )
            )
    return restored
