"""faster-whisper (CTranslate2): the default engine — int8 on CPU, float16 on GPU.

One `WhisperModel` is loaded per process with `num_workers` equal to the
service's concurrency, so that many requests decode at once on their own
CTranslate2 workers. On a GPU, long audio goes through faster-whisper's
`BatchedInferencePipeline`, which decodes its 30 s windows as one batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from soriflow.audio import Audio
from soriflow.errors import InvalidArgument
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

log = logging.getLogger("soriflow.stt.faster")

#: Audio shorter than this is not worth the batched pipeline's VAD pass.
_BATCH_MIN_DURATION_S = 30.0

#: Mel frames of the short encoder window (10 s; Whisper's own is 3000 frames, 30 s).
SHORT_WINDOW_FRAMES = 1000

#: The cancel event of the transcription running on this thread (faster-whisper runs a whole
#: transcription in the thread that consumes its segment generator).
_current = threading.local()


def _install_short_window() -> bool:
    """Lets a transcription on this thread pad short audio to a 10 s encoder window.

    faster-whisper pads every window's features to 30 s with the module-level
    `pad_or_trim` before encoding. That function is wrapped once: while the calling
    thread has `_current.window` set and the features fit in it, they are padded to that
    window instead. Padding (not trimming to the audio) matters: without it Whisper
    loses the end-of-audio cue and repeats itself. Other threads and calls are untouched.
    Returns False when this faster-whisper has no such function (the option is then a no-op).
    """
    import faster_whisper.transcribe as fwt

    original = getattr(fwt, "pad_or_trim", None)
    if original is None:
        return False
    if getattr(original, "_soriflow_window", False):
        return True

    def pad_or_trim(array: Any, length: int = 3000, *, axis: int = -1) -> Any:
        window = getattr(_current, "window", None)
        if window and length == 3000 and array.shape[axis] <= window:
            length = window
        return original(array, length, axis=axis)

    pad_or_trim._soriflow_window = True  # type: ignore[attr-defined]
    fwt.pad_or_trim = pad_or_trim
    return True


class _CancellableModel:
    """The CTranslate2 model as faster-whisper sees it, checking the running call's cancel event
    before every encoder, decoder and alignment pass: a cancelled call stops within one pass
    instead of after a whole 30 s window (decode plus word alignment)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def _check(self) -> None:
        check_cancel(getattr(_current, "cancel", None))

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._model.encode(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._model.generate(*args, **kwargs)

    def align(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._model.align(*args, **kwargs)

    def detect_language(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._model.detect_language(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def whisper_languages(multilingual: bool) -> tuple[str, ...]:
    """Language codes the model can transcribe ("en" only for `.en` models)."""
    if not multilingual:
        return ("en",)
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


class FasterWhisperEngine:
    """A CTranslate2 Whisper model behind the `Engine` interface."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        source: str,
        device: str,
        compute_type: str,
        cpu_threads: int = 0,
        workers: int = 1,
        batch_size: int = 0,
    ) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.model = WhisperModel(
            str(path),
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=workers,
            local_files_only=True,
        )
        self.model.model = _CancellableModel(self.model.model)
        self.short_window = _install_short_window()
        self.parallelism = workers
        self.batch_size = batch_size
        self._batched = BatchedInferencePipeline(self.model) if batch_size > 1 else None
        multilingual = bool(self.model.model.is_multilingual)
        self.info = EngineInfo(
            name=name,
            engine="faster-whisper",
            source=source,
            device=device,
            compute_type=compute_type,
            multilingual=multilingual,
            languages=whisper_languages(multilingual),
        )

    def transcribe(
        self, audio: Audio, options: TranscribeOptions, cancel: threading.Event | None = None
    ) -> Transcript:
        samples = mono_16k(audio)
        duration = len(samples) / SAMPLE_RATE
        check_cancel(cancel)
        kwargs: dict[str, Any] = {
            "language": options.language,
            "task": options.task,
            "beam_size": options.beam_size,
            "initial_prompt": options.initial_prompt or None,
            "hotwords": " ".join(options.hotwords) or None,
            "word_timestamps": options.word_timestamps,
            "vad_filter": options.vad_filter,
            "condition_on_previous_text": options.condition_on_previous_text,
            "prefix": options.prefix or None,
        }
        kwargs["temperature"] = list(options.temperatures)
        if options.max_new_tokens:
            kwargs["max_new_tokens"] = options.max_new_tokens
        if not self.info.multilingual and options.language not in (None, "en"):
            raise InvalidArgument(
                f"model {self.info.name} is English-only; it cannot transcribe {options.language!r}"
            )
        _current.cancel = cancel
        _current.window = SHORT_WINDOW_FRAMES if options.short_window and self.short_window else None
        try:
            if self._batched is not None and duration >= _BATCH_MIN_DURATION_S:
                if not options.vad_filter:
                    window = 30.0
                    kwargs["clip_timestamps"] = [
                        {"start": t, "end": min(t + window, duration)} for t in _frange(0.0, duration, window)
                    ]
                kwargs.pop("condition_on_previous_text")
                kwargs.pop("prefix")
                segments, info = self._batched.transcribe(samples, batch_size=self.batch_size, **kwargs)
            else:
                segments, info = self.model.transcribe(samples, **kwargs)
            collected = self._collect(segments, cancel)
        finally:
            _current.cancel = None
            _current.window = None
        return Transcript(
            segments=tuple(collected),
            language=info.language,
            language_probability=float(info.language_probability),
            duration=duration,
        )

    @staticmethod
    def _collect(segments: Iterable[Any], cancel: threading.Event | None) -> list[Segment]:
        """Pulls the lazy segment generator, checking for cancellation between segments."""
        out: list[Segment] = []
        for seg in segments:
            check_cancel(cancel)
            words = tuple(
                Word(
                    word=w.word.strip(),
                    start=float(w.start),
                    end=float(w.end),
                    probability=float(w.probability),
                )
                for w in (seg.words or ())
                if w.word.strip()
            )
            out.append(
                Segment(
                    id=len(out),
                    start=float(seg.start),
                    end=float(seg.end),
                    text=seg.text.strip(),
                    words=words,
                    avg_logprob=float(seg.avg_logprob),
                    no_speech_prob=float(seg.no_speech_prob),
                )
            )
        check_cancel(cancel)
        return out

    def close(self) -> None:
        self._batched = None
        del self.model


def _frange(start: float, stop: float, step: float) -> list[float]:
    values = []
    value = start
    while value < stop:
        values.append(value)
        value += step
    return values
