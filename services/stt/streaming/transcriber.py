"""The streaming policy: when to decode, what to commit, when an utterance ends.

Audio accumulates in a buffer that starts at the current utterance (or at
the last trim point). Each step:

1. Silero VAD (faster-whisper's bundled ONNX model, scored incrementally as
   audio arrives: `vad.py`) says whether speech has started, is still going
   on, or has been silent for `silence_s` since it last ended.
2. If the utterance has ended, it is finalized: the last hypothesis is
   committed when it already covered the audio up to the end of speech (no
   decode at all: the final goes out at once), otherwise the speech is
   decoded one last time and committed. The final carries the words.
3. Otherwise, once `min_chunk_s` more speech has arrived, the buffer is
   re-decoded with the committed text as prompt and LocalAgreement-2 commits
   what two decodes agree on; an interim result is produced.
4. The buffer is trimmed: before speech starts only a short pre-roll is kept;
   after a final, everything up to the end of speech goes; and when a long
   utterance fills `max_buffer_s`, audio up to the last committed word is cut
   (its text stays in the prompt). If nothing could be committed by then the
   utterance is finalized as it stands. Memory and time per step are thus
   bounded by `max_buffer_s`, however long the stream.

Silence is never decoded (Whisper invents "Thank you." on silence), and a
decode never extends past the end of speech by more than a short pad.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from soriflow.audio import Audio
from soriflow.errors import Cancelled
from soriflow.stt.engines.base import SAMPLE_RATE, Engine, TranscribeOptions, Word
from soriflow.stt.streaming.agreement import LocalAgreement, norm
from soriflow.stt.streaming.vad import VadTimeline

FloatArray = npt.NDArray[np.float32]

#: Audio kept before speech starts, so the onset of the first word is not cut.
_PRE_ROLL_S = 0.5
#: Audio decoded past the detected end of speech (VAD ends speech a little early).
_END_PAD_S = 0.2
#: Silence after which the speech so far is decoded at once, so that the final needs no decode.
#: It equals the end pad: the pause decode then covers exactly the audio the final would decode
#: (a shorter pause left the final 0.05-0.1 s short of it, and so re-decoding the whole utterance).
_PAUSE_S = _END_PAD_S
#: Committed words after which a pause-less utterance is finalized anyway (bounds memory).
_MAX_UTTERANCE_WORDS = 200
#: Fallback temperatures of stream decodes: a repetition loop is re-decoded once, not five times.
_TEMPERATURES = (0.0, 0.4)
#: Token budget per second of decoded audio (fast speech is ~4 words, ~6 tokens a second).
_TOKENS_PER_S = 12
#: How far the middle of a word may lie after / before VAD speech and still count as heard
#: Hallucinated words land after the speech, so that side is strict; the first word of an
#: utterance is often aligned to the start of the pre-roll, so the other side is not.
_WORD_AFTER_SPEECH_S = 0.05
_WORD_BEFORE_SPEECH_S = _PRE_ROLL_S + 0.1
#: Characters of previous text given as prompt.
_PROMPT_CHARS = 200
#: Punctuation with which Whisper ends a sentence (Latin, CJK full-width, Devanagari danda).
_SENTENCE_END = (".", "?", "!", "。", "？", "！", "।")


@dataclass(frozen=True)
class StreamingOptions:
    """The streaming policy's knobs (from settings) and the request's decoding options."""

    decode: TranscribeOptions
    interim_results: bool = True
    min_chunk_s: float = 0.5
    silence_s: float = 0.6
    #: Silence that ends an utterance whose decoded text already ends a sentence.
    sentence_silence_s: float = 0.6
    max_buffer_s: float = 15.0


@dataclass(frozen=True)
class StreamResult:
    """One hypothesis about one utterance (times in seconds from the start of the stream)."""

    text: str
    stable_text: str
    is_final: bool
    stability: float
    start: float
    end: float
    utterance_index: int
    language: str
    language_probability: float = 0.0
    words: tuple[Word, ...] = ()


class StreamingTranscriber:
    """The state of one live stream. Not thread-safe: one step at a time (the servicer ensures it)."""

    def __init__(self, engine: Engine, options: StreamingOptions, vad: VadTimeline | None = None) -> None:
        self.engine = engine
        self.options = options
        #: Speech segments of the stream. Given by the caller, it is fed by the caller as audio
        #: arrives (ahead of the transcription); otherwise `push` feeds it.
        self.vad = vad or VadTimeline()
        self._feeds_vad = vad is None
        #: True while an interim decode runs: the caller may interrupt it when speech ends.
        self.decoding_interim = False
        #: True when the last step's interim decode was stopped by its cancel event (the step
        #: still returns normally: the caller tells a moot decode from a departed client).
        self.interim_stopped = False
        self.agreement = LocalAgreement()
        self.buffer: FloatArray = np.zeros(0, np.float32)
        #: Stream time of buffer[0], seconds.
        self.buffer_start = 0.0
        self.utterance_index = 0
        self.language: str | None = options.decode.language
        self.language_probability = 1.0 if self.language else 0.0
        self._speech_seen = False
        self._utterance_start = 0.0
        self._last_speech_end = 0.0
        self._decoded_until = 0.0
        #: The largest buffer seen, in seconds (tests check it stays bounded).
        self.peak_buffer_s = 0.0
        self.decodes = 0

    # ------------------------------------------------------------------ audio

    @property
    def received(self) -> float:
        """Seconds of audio received so far."""
        return float(self.buffer_start + len(self.buffer) / SAMPLE_RATE)

    def push(self, samples: FloatArray) -> None:
        if self._feeds_vad:
            self.vad.feed(samples)
        if samples.size:
            self.buffer = np.concatenate([self.buffer, samples.astype(np.float32, copy=False)])
            self.peak_buffer_s = max(self.peak_buffer_s, len(self.buffer) / SAMPLE_RATE)

    def pending_s(self) -> float:
        """Audio received since the last decode (decides whether a step is worth running)."""
        return self.received - max(self._decoded_until, self.buffer_start)

    def _trim_to(self, t: float) -> None:
        """Drops buffered audio before stream time `t`."""
        cut = round((t - self.buffer_start) * SAMPLE_RATE)
        if cut > 0:
            cut = min(cut, len(self.buffer))
            self.buffer = self.buffer[cut:].copy()
            self.buffer_start += cut / SAMPLE_RATE

    def _segment(self, end: float) -> FloatArray:
        stop = round((end - self.buffer_start) * SAMPLE_RATE)
        return self.buffer[: max(0, min(stop, len(self.buffer)))]

    # ------------------------------------------------------------------ VAD

    def _update_vad(self) -> None:
        """Speech start and last speech end of the current utterance, from the VAD timeline."""
        now = self.received
        segments = self.vad.speech(self.buffer_start, now)
        if not segments:
            return
        if not self._speech_seen:
            self._speech_seen = True
            self._utterance_start = max(self.buffer_start, segments[0].start - 0.1)
        self._last_speech_end = max(self._last_speech_end, segments[-1].end)
        self.vad.forget_before(self.buffer_start - 5.0)

    # ------------------------------------------------------------------ decoding

    def _prompt(self) -> str | None:
        """Text before the buffer: the request's prompt and this utterance's committed words already
        trimmed away. Committed words still in the buffer stay out (as in whisper_streaming):
        Whisper, told text that the audio then repeats, tends to skip or garble those words.

        Earlier utterances stay out too: on audio it hears poorly (a multilingual model on
        synthetic Korean), Whisper copies the prompt into the next utterance's hypothesis, and
        the copied words, aligned onto real speech, pass every check after the decode. Each
        utterance is therefore decoded as Recognize would decode it alone (finals' WER on the
        streaming benchmark unchanged, decodes shorter by the prompt's tokens)."""
        trimmed = " ".join(w.word for w in self.agreement.committed if w.end <= self.buffer_start + 0.01)
        parts = [self.options.decode.initial_prompt or "", trimmed]
        text = " ".join(p for p in parts if p).strip()
        return text[-_PROMPT_CHARS:] if text else None

    def _decode(self, end: float, cancel: threading.Event | None) -> list[Word]:
        """Decodes the buffer up to stream time `end`; words in stream time."""
        audio = self._segment(end)
        if len(audio) < SAMPLE_RATE // 10:
            return []
        options = replace(
            self.options.decode,
            language=self.language,
            initial_prompt=self._prompt(),
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            temperatures=_TEMPERATURES,
            short_window=True,
            max_new_tokens=int(len(audio) / SAMPLE_RATE * _TOKENS_PER_S) + 16,
        )
        transcript = self.engine.transcribe(Audio(audio, SAMPLE_RATE), options, cancel)
        self.decodes += 1
        if self.language is None:
            self.language = transcript.language
            self.language_probability = transcript.language_probability
        self._decoded_until = end
        offset = self.buffer_start
        words = [
            replace(w, start=w.start + offset, end=w.end + offset)
            for s in transcript.segments
            for w in s.words
        ]
        words = [w for w in words if any(c.isalnum() for c in w.word) and self._heard(w, end)]
        return _without_repeat(words)

    def _heard(self, word: Word, end: float) -> bool:
        """Whether the VAD heard speech where Whisper placed the word.

        Whisper, decoding the silence after an utterance, can append text nobody said ("Thank
        you.", "See you in the next video"); word alignment then puts those words at the very
        end of the audio, or in the silence after the speech. Such words are dropped: a word
        counts when its middle lies within the VAD's speech.
        """
        if word.start >= end - 0.02:
            return False
        middle = (word.start + word.end) / 2
        return bool(self.vad.speech(middle - _WORD_AFTER_SPEECH_S, middle + _WORD_BEFORE_SPEECH_S))

    def _interim(self) -> StreamResult:
        a = self.agreement
        return StreamResult(
            text=a.text,
            stable_text=a.stable_text,
            is_final=False,
            stability=a.stability,
            start=self._utterance_start,
            end=self._decoded_until,
            utterance_index=self.utterance_index,
            language=self.language or "",
            language_probability=self.language_probability,
        )

    def _finalize(self, words: list[Word] | None, end: float) -> StreamResult | None:
        self.agreement.commit_all(words)
        committed = list(self.agreement.committed)
        text = " ".join(w.word for w in committed)
        result = None
        if committed:
            result = StreamResult(
                text=text,
                stable_text=text,
                is_final=True,
                stability=1.0,
                start=min(self._utterance_start, committed[0].start),
                end=end,
                utterance_index=self.utterance_index,
                language=self.language or "",
                language_probability=self.language_probability,
                words=tuple(committed),
            )
            self.utterance_index += 1
        self.agreement.reset()
        self._speech_seen = False
        self._trim_to(end)
        self._decoded_until = self.buffer_start
        return result

    # ------------------------------------------------------------------ the policy

    def step(self, cancel: threading.Event | None = None, *, decode: bool = True) -> list[StreamResult]:
        """Runs the policy over the audio received so far; returns results to send.

        `decode=False` when more audio is already waiting (a client ahead of real time, or the
        server catching up after a slow decode): utterance ends are still found slice by slice,
        but interim decodes are left to the latest audio, so a backlog is worked off instead of
        growing by one decode per slice.
        """
        self.interim_stopped = False
        self._update_vad()
        now = self.received
        if not self._speech_seen:
            self._trim_to(now - _PRE_ROLL_S)
            self._decoded_until = self.buffer_start
            return []
        out: list[StreamResult] = []
        speech_end = min(now, self._last_speech_end + _END_PAD_S)
        silent = now - self._last_speech_end
        if silent >= self.options.silence_s or (
            silent >= self.options.sentence_silence_s and self._sentence_complete(speech_end)
        ):
            words = None if self._decoded_until >= speech_end - 0.05 else self._decode(speech_end, cancel)
            final = self._finalize(words, speech_end)
            return [final] if final else []
        paused = now - self._last_speech_end >= _PAUSE_S and speech_end - self._decoded_until > 0.05
        if decode and (paused or speech_end - self._decoded_until >= self.options.min_chunk_s):
            self.decoding_interim = True
            try:
                words = self._decode(speech_end, cancel)
            except Cancelled:
                # Interrupted because speech ended meanwhile (or the client left): the decode of
                # the speech up to its end comes next and makes this one moot.
                self.interim_stopped = True
                return out
            finally:
                self.decoding_interim = False
            self.agreement.insert(words)
            if self.options.interim_results:
                out.append(self._interim())
        out.extend(self._bound())
        return out

    def _sentence_complete(self, speech_end: float) -> bool:
        """Whether the latest decode covers all the speech and ends a sentence.

        Endpointing on silence alone must wait long enough not to split a sentence at a pause;
        when Whisper has already closed the sentence on the whole utterance, a shorter silence
        is enough evidence that the speaker has finished. A wrong guess costs no words: the
        speech that follows becomes the next utterance.
        """
        if self._decoded_until < speech_end - 0.05:
            return False
        words = [*self.agreement.committed, *self.agreement.tentative]
        return bool(words) and words[-1].word.rstrip().rstrip("\"'”’)]").endswith(_SENTENCE_END)

    def _bound(self) -> list[StreamResult]:
        """Keeps the buffer and the utterance within their limits."""
        if len(self.buffer) / SAMPLE_RATE < self.options.max_buffer_s and (
            len(self.agreement.committed) < _MAX_UTTERANCE_WORDS
        ):
            return []
        committed_end = self.agreement.last_committed_end
        if (
            len(self.agreement.committed) < _MAX_UTTERANCE_WORDS
            and committed_end - self.buffer_start >= self.options.max_buffer_s / 3
        ):
            self._trim_to(committed_end)
            return []
        final = self._finalize(None, max(self._decoded_until, committed_end))
        if self._last_speech_end > self.buffer_start:  # speech goes on: the next utterance starts here
            self._speech_seen = True
            self._utterance_start = self.buffer_start
        return [final] if final else []

    def finish(self, cancel: threading.Event | None = None) -> list[StreamResult]:
        """The client half-closed: the utterance in progress gets its final."""
        self._update_vad()
        if not self._speech_seen:
            return []
        end = min(self.received, self._last_speech_end + _END_PAD_S)
        words = None if self._decoded_until >= end - 0.05 else self._decode(end, cancel)
        final = self._finalize(words, end)
        return [final] if final else []


def _without_repeat(words: list[Word], min_run: int = 4) -> list[Word]:
    """The hypothesis cut where it starts repeating itself ("A B C D. A B C D.").

    Whisper sometimes decodes a short buffer twice over, and word alignment squeezes the copy
    into the same speech, where the VAD gate cannot see it. A run of at least `min_run` words
    immediately repeated is a loop, not speech, and is cut at its second copy.
    """
    keys = [norm(w.word) for w in words]
    for i in range(min_run, len(keys)):
        for n in range(min_run, min(i, len(keys) - i) + 1):
            if keys[i - n : i] == keys[i : i + n]:
                return words[:i]
    return words
