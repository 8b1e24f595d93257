"""Incremental Silero voice activity detection for live streams.

faster-whisper bundles the Silero VAD (ONNX) and `get_speech_timestamps`,
which scores a whole array from a fresh state. A stream would have to rescore
a window on every chunk; instead this keeps the model's recurrent state and
the 64-sample context between calls, so every 32 ms frame is scored exactly
once as it arrives (the same numbers the batch call gives for the same audio),
and turns the frame probabilities into a timeline of speech segments with
Silero's hysteresis: speech starts at a frame above `threshold`, continues
while frames stay above `threshold - 0.15`, and ends after `min_silence_s`
below it; segments shorter than `min_speech_s` (clicks) are dropped.

Scoring happens as audio is received, ahead of the (slower) transcription,
so the stream knows an utterance has ended even while a decode is running.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

SAMPLE_RATE = 16000
FRAME = 512
CONTEXT = 64
FRAME_S = FRAME / SAMPLE_RATE


@dataclass
class SpeechSegment:
    """Speech from `start` to `end`, in seconds from the start of the stream."""

    start: float
    end: float


class VadTimeline:
    """Speech segments of a stream, updated frame by frame."""

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_silence_s: float = 0.1,
        min_speech_s: float = 0.12,
        pad_s: float = 0.03,
    ) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)
        self.min_silence_s = min_silence_s
        self.min_speech_s = min_speech_s
        self.pad_s = pad_s
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames = 0
        self.segments: list[SpeechSegment] = []
        self._open_start: float | None = None
        self._last_voice = 0.0

    @property
    def processed_s(self) -> float:
        """Stream time up to which frames have been scored."""
        return self._frames * FRAME_S

    def probabilities(self, samples: FloatArray) -> FloatArray:
        """Scores whole frames of `samples` (continuing the stream's state); keeps the remainder."""
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        count = len(self._pending) // FRAME
        if count == 0:
            return np.zeros(0, np.float32)
        frames = self._pending[: count * FRAME].reshape(count, FRAME)
        self._pending = self._pending[count * FRAME :].copy()
        context = np.concatenate([self._context[None, :], frames[:-1, -CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([context, frames], axis=1))
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = frames[-1, -CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)[:count]

    def feed(self, samples: FloatArray) -> None:
        """Scores new audio and extends the timeline."""
        for p in self.probabilities(samples):
            start = self._frames * FRAME_S
            end = start + FRAME_S
            self._frames += 1
            if p >= self.threshold:
                if self._open_start is None:
                    self._open_start = start
                self._last_voice = end
            elif self._open_start is not None:
                if p >= self.neg_threshold:
                    self._last_voice = end
                elif end - self._last_voice >= self.min_silence_s:
                    self._close()

    def _close(self) -> None:
        assert self._open_start is not None
        if self._last_voice - self._open_start >= self.min_speech_s:
            self.segments.append(
                SpeechSegment(max(0.0, self._open_start - self.pad_s), self._last_voice + self.pad_s)
            )
        self._open_start = None

    def speech(self, start: float, end: float) -> list[SpeechSegment]:
        """Speech overlapping [start, end), clipped to it; speech still going on at `end` ends at `end`."""
        out = [
            SpeechSegment(max(s.start, start), min(s.end, end))
            for s in self.segments
            if s.end > start and s.start < end
        ]
        if self._open_start is not None and self._open_start < end:
            voiced_until = self._last_voice + self.pad_s
            if self._last_voice - self._open_start >= self.min_speech_s or self.processed_s > end:
                seg_end = end if voiced_until >= end else voiced_until
                if seg_end > start:
                    out.append(SpeechSegment(max(self._open_start - self.pad_s, start), seg_end))
        return out

    def trailing_silence(self) -> float:
        """Seconds since speech was last heard (0 while speaking; the whole stream before any)."""
        if self._open_start is not None and self.processed_s - self._last_voice < self.min_silence_s:
            return 0.0
        last = (
            self._last_voice
            if self._open_start is not None
            else (self.segments[-1].end if self.segments else 0.0)
        )
        return max(0.0, self.processed_s - last)

    def forget_before(self, t: float) -> None:
        """Drops segments that ended before `t` (keeps memory flat on endless streams)."""
        self.segments = [s for s in self.segments if s.end >= t]
