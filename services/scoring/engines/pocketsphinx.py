"""Phone-level goodness of pronunciation (GOP) from a pocketsphinx forced alignment (English).

The learner audio is force-aligned to the expected words with the en-us
acoustic model and CMU dictionary that ship in the pocketsphinx wheel (two
passes: word alignment, then phone/state alignment). Pocketsphinx scores
every frame relative to the best-scoring senone of that frame, so the
alignment score of a phone divided by its frame count is

    GOP(p) = 1/T * sum_t [ log p(o_t | forced state) - max_s log p(o_t | s) ]

(in pocketsphinx's scaled log units): 0 when the expected phone is the best
explanation of every frame, very negative when the learner said something
else. This is the frame-max variant of Witt & Young's GOP; the free
phone-loop denominator was tried as well (a JSGF phone loop decoded, then
realigned for state scores) and rejected: on native speech the loop's
hypothesis scored *worse* than the forced alignment (-3568 vs -2316 on one
clean sentence) because of its insertion penalties, so the ratio was not a
likelihood ratio, and realigning it took 17 s for a 2 s sentence.

Phone score = 100 / (1 + exp(-(GOP - midpoint) / scale)), with midpoint and
scale calibrated on native recordings (docs/scoring.md); the word score is
the plain mean of its phone scores (not weighted by duration: the aligner
squeezes a wrong phone to its 30 ms minimum, which would hide it).

Where the whole run of words cannot be aligned (the decoder does not reach
the last word, as with a very different sentence or robotic audio), each
word is aligned alone inside its recogniser time span; a word that still
fails, or that is not in the dictionary, is scored by recogniser confidence
and the result says so.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from soriflow.scoring.engines.base import PhoneAccuracy, WordAccuracy, WordToAssess, confidence_result
from soriflow.scoring.timing import Span

from soriflow.errors import Cancelled, FailedPrecondition

log = logging.getLogger("soriflow.scoring")

RATE = 16000
FRAME_S = 0.01
#: Time added on each side of a recogniser word span when one word is aligned alone.
WORD_MARGIN_S = 0.15
#: Beams of the retry when a run of words fails to align with pocketsphinx's defaults (1e-48, 7e-29).
WIDE_BEAMS = {"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}
_SKIP = {"<s>", "</s>", "<sil>"}


@dataclass(frozen=True)
class _AlignedWord:
    span: Span
    phones: list[tuple[str, float, float, float]]  # phone, start_s, end_s, gop per frame


class _Decoders:
    """One request's decoders: default beams, and wide beams made on first need (a retry)."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self.normal = make(wide=False)
        self._wide: Any = None

    def lookup_word(self, word: str) -> str | None:
        found: str | None = self.normal.lookup_word(word)
        return found

    @property
    def wide(self) -> Any:
        if self._wide is None:
            self._wide = self._make(wide=True)
        return self._wide


def _base_word(name: str) -> str:
    """'new(2)' -> 'new' (pronunciation variants)."""
    return name.split("(", 1)[0]


class PocketsphinxEngine:
    """GOP scoring with a small pool of pocketsphinx decoders (one per concurrent request)."""

    name = "pocketsphinx"

    def __init__(
        self,
        *,
        acoustic_model: Path | None = None,
        dictionary: Path | None = None,
        gop_midpoint: float = -36.0,
        gop_scale: float = 7.0,
        max_decoders: int = 2,
    ) -> None:
        self.acoustic_model = acoustic_model
        self.dictionary = dictionary
        self.gop_midpoint = gop_midpoint
        self.gop_scale = gop_scale
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max_decoders)
        self._created = 0
        self._lock = threading.Lock()

    def _new_decoder(self, *, wide: bool = False) -> Any:
        from pocketsphinx import Decoder, get_model_path

        hmm = self.acoustic_model or Path(get_model_path("en-us/en-us"))
        dic = self.dictionary or Path(get_model_path("en-us/cmudict-en-us.dict"))
        for path, what, setting in (
            (hmm, "acoustic model", "SORIFLOW_SCORING_ACOUSTIC_MODEL"),
            (dic, "pronunciation dictionary", "SORIFLOW_SCORING_PRONUNCIATION_DICT"),
        ):
            if not Path(path).exists():
                raise FailedPrecondition(f"the pocketsphinx {what} {path} does not exist; fix {setting}")
        try:
            beams = WIDE_BEAMS if wide else {}
            return Decoder(hmm=str(hmm), dict=str(dic), lm=None, loglevel="FATAL", **beams)
        except (RuntimeError, ValueError) as exc:
            raise FailedPrecondition(f"pocketsphinx could not load {hmm} with {dic}: {exc}") from exc

    def load(self) -> None:
        """Creates the first decoder, so a broken model fails service start instead of a request."""
        with self._lease():
            pass

    @contextlib.contextmanager
    def _lease(self) -> Iterator[Any]:
        self._slots.acquire()
        try:
            try:
                decoder = self._pool.get_nowait()
            except queue.Empty:
                decoder = _Decoders(self._new_decoder)
                with self._lock:
                    self._created += 1
            try:
                yield decoder
            finally:
                self._pool.put(decoder)
        finally:
            self._slots.release()

    def phone_score(self, gop: float) -> float:
        """Maps a per-frame GOP to 0-100 with the calibrated logistic."""
        z = (gop - self.gop_midpoint) / self.gop_scale
        return float(100.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))

    # ------------------------------------------------------------------ alignment

    @staticmethod
    def _align(
        decoder: Any, pcm: npt.NDArray[np.int16], start_s: float, end_s: float, words: Sequence[str]
    ) -> list[_AlignedWord] | None:
        """Forced alignment of `words` to pcm[start_s:end_s]; None when the decoder cannot place them all."""
        lo = max(0, int(start_s * RATE))
        hi = min(len(pcm), int(np.ceil(end_s * RATE)))
        if hi - lo < int(0.05 * RATE) * max(1, len(words)):  # under ~50 ms a word: nothing to align
            return None
        data = pcm[lo:hi].tobytes()
        offset = lo / RATE
        try:
            # a fresh feature state per alignment: pocketsphinx carries its cepstral-mean estimate from one
            # utterance into the next, which made the same audio score differently after other requests
            decoder.reinit_feat()
            decoder.set_align_text(" ".join(words))
            decoder.start_utt()
            decoder.process_raw(data, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            if hyp is None or [_base_word(w) for w in hyp.hypstr.split()] != list(words):
                return None
            decoder.set_alignment()
            decoder.start_utt()
            decoder.process_raw(data, full_utt=True)
            decoder.end_utt()
            alignment = decoder.get_alignment()
        except RuntimeError:
            return None
        if alignment is None:
            return None
        out: list[_AlignedWord] = []
        for entry in alignment:
            name = _base_word(entry.name)
            if name in _SKIP or name.startswith("["):
                continue
            phones = [
                (
                    p.name,
                    offset + p.start * FRAME_S,
                    offset + (p.start + p.duration) * FRAME_S,
                    p.score / max(p.duration, 1),
                )
                for p in entry
            ]
            span = Span(offset + entry.start * FRAME_S, offset + (entry.start + entry.duration) * FRAME_S)
            out.append(_AlignedWord(span, phones))
        return out if len(out) == len(words) else None

    def _align_run(
        self,
        decoders: _Decoders,
        pcm: npt.NDArray[np.int16],
        start_s: float,
        end_s: float,
        words: Sequence[str],
    ) -> list[_AlignedWord] | None:
        """`_align` with the default beams, then once more with wide ones (the default prunes the right
        path away now and then: once in about fifty native sentences in testing)."""
        aligned = self._align(decoders.normal, pcm, start_s, end_s, words)
        if aligned is None:
            aligned = self._align(decoders.wide, pcm, start_s, end_s, words)
        return aligned

    def _result(self, aligned: _AlignedWord) -> WordAccuracy:
        phones = [PhoneAccuracy(name, s, e, g, self.phone_score(g)) for name, s, e, g in aligned.phones]
        score = float(np.mean([p.score for p in phones])) if phones else 0.0
        return WordAccuracy(score, "gop", aligned.span, phones)

    def _substituted(
        self, heard: WordAccuracy | None, expected: list[_AlignedWord] | None, index: int, known: bool
    ) -> WordAccuracy | None:
        """The expected word's score at the place of a substitution, keeping the heard word's span.

        The scores come from aligning the expected words in place of the heard
        ones over the same stretch (only the substituted word's phones are
        used, so its neighbours keep the boundaries of the better alignment).
        When the expected word cannot be fitted at all, its score is 0.
        """
        if heard is None or not known:
            return None
        if expected is None:
            return WordAccuracy(0.0, "gop", heard.span, [])
        scored = self._result(expected[index])
        return WordAccuracy(scored.score, "gop", heard.span, scored.phones)

    def assess(
        self, samples: npt.NDArray[np.float32], words: Sequence[WordToAssess], cancel: threading.Event
    ) -> list[WordAccuracy]:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
        duration = len(pcm) / RATE
        results: list[WordAccuracy | None] = [None] * len(words)
        with self._lease() as decoder:
            known = [decoder.lookup_word(w.word) is not None for w in words]
            # align with what was heard where it differs and is pronounceable (substitutions)
            spoken = [
                w.heard
                if w.heard and w.heard != w.word and decoder.lookup_word(w.heard) is not None
                else w.word
                for w in words
            ]
            pronounceable = [known[k] or spoken[k] != words[k].word for k in range(len(words))]
            for run in _runs(pronounceable):
                if cancel.is_set():
                    raise Cancelled("scoring was cancelled")
                first, last = run[0], run[-1]
                before = words[first - 1].span if first > 0 else None
                after = words[last + 1].span if last + 1 < len(words) else None
                start = before.end_s if before else 0.0
                end = after.start_s if after else duration
                first_span, last_span = words[first].span, words[last].span
                if first_span is not None:
                    start = min(start, max(0.0, first_span.start_s - WORD_MARGIN_S))
                if last_span is not None:
                    end = max(end, min(duration, last_span.end_s + WORD_MARGIN_S))
                aligned = self._align_run(decoder, pcm, start, end, [spoken[k] for k in run])
                if aligned is not None:
                    for k, aligned_word in zip(run, aligned, strict=True):
                        results[k] = self._result(aligned_word)
                    substituted = [k for k in run if spoken[k] != words[k].word]
                    if substituted:  # score the expected words where the others were said, in context
                        expected = self._align_run(
                            decoder, pcm, start, end, [words[k].word if known[k] else spoken[k] for k in run]
                        )
                        for k in substituted:
                            results[k] = self._substituted(results[k], expected, run.index(k), known[k])
                elif len(run) > 1:
                    for k in run:  # the run as a whole failed: each word alone in its recogniser span
                        span = words[k].span
                        if span is None:
                            continue
                        one = self._align(
                            decoder.normal,
                            pcm,
                            span.start_s - WORD_MARGIN_S,
                            span.end_s + WORD_MARGIN_S,
                            [spoken[k]],
                        )
                        if one is None:
                            continue
                        results[k] = self._result(one[0])
                        if spoken[k] != words[k].word:
                            target = (
                                self._align(
                                    decoder.normal,
                                    pcm,
                                    span.start_s - WORD_MARGIN_S,
                                    span.end_s + WORD_MARGIN_S,
                                    [words[k].word],
                                )
                                if known[k]
                                else None
                            )
                            results[k] = self._substituted(results[k], target, 0, known[k])
        out: list[WordAccuracy] = []
        for k, item in enumerate(words):
            result = results[k]
            if result is None:
                note = (
                    f"'{item.word}' is not in the pronunciation dictionary: its accuracy comes from the "
                    "recogniser's confidence"
                    if not known[k]
                    else f"'{item.word}' could not be aligned to the audio: its accuracy comes from the "
                    "recogniser's confidence"
                )
                result = confidence_result(item, note)
            out.append(result)
        return out


def _runs(known: Sequence[bool]) -> list[list[int]]:
    """Index runs of consecutive in-dictionary words."""
    runs: list[list[int]] = []
    current: list[int] = []
    for k, ok in enumerate(known):
        if ok:
            current.append(k)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs
