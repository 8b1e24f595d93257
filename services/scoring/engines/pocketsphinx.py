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
the last word, as with a very different sentence or robotic audio), it is
retried with wide beams, then each word is aligned alone inside its
recogniser time span; where the word pass succeeds but the phone pass fails
(a word squeezed into fewer frames than its states), each word is aligned
alone inside the boundaries the word pass found. A word that still has no
phones, or that is not in the dictionary, is scored by recogniser confidence
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

from soriflow.errors import Cancelled, FailedPrecondition
from soriflow.scoring.engines.base import PhoneAccuracy, WordAccuracy, WordToAssess, confidence_result
from soriflow.scoring.timing import Span

log = logging.getLogger("soriflow.scoring")

RATE = 16000
FRAME_S = 0.01
#: Time added on each side of a recogniser word span when one word is aligned alone.
WORD_MARGIN_S = 0.15
#: GOP of a typical native phone (the calibration set's median is about -8 and quartile -13): with
#: reference audio, a learner phone gets credit for however much worse the native's own phone scored.
NATIVE_GOP = -10.0
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
            segmentation = [
                _AlignedWord(
                    Span(offset + seg.start_frame * FRAME_S, offset + (seg.end_frame + 1) * FRAME_S), []
                )
                for seg in decoder.seg()
                if _base_word(seg.word) not in _SKIP and not seg.word.startswith("[")
            ]
        except RuntimeError:
            return None
        if len(segmentation) != len(words):
            return None
        try:  # second pass: phones and states inside the word boundaries found above
            decoder.set_alignment()
            decoder.start_utt()
            decoder.process_raw(data, full_utt=True)
            decoder.end_utt()
            alignment = decoder.get_alignment()
        except RuntimeError:  # e.g. a word squeezed into fewer frames than its states: words only
            return segmentation
        if alignment is None:
            return segmentation
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
        return out if len(out) == len(words) else segmentation

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

    def relative(self, learner: WordAccuracy, reference: Sequence[PhoneAccuracy]) -> WordAccuracy:
        """The learner's phones credited where the native reference itself scores below a typical native.

        With reference audio, the learner is compared with that speaker, not
        only with the acoustic model: a phone the model finds hard in the
        native recording too (a reduced vowel, a voice the model fits badly)
        is not held against the learner. Each learner phone's GOP is raised by
        `max(0, NATIVE_GOP - reference GOP)` of the matching reference phone
        (the word's mean when the two pronunciations differ), capped at 0.
        The native reading of itself therefore scores at least the typical
        native phone score everywhere, while a wrong word (GOP -60 to -150
        against a native -5 to -20) stays wrong.
        """
        if learner.method != "gop" or not learner.phones or not reference:
            return learner
        if [p.phone for p in learner.phones] == [p.phone for p in reference]:
            credits = [max(0.0, NATIVE_GOP - r.gop) for r in reference]
        else:
            credit = max(0.0, NATIVE_GOP - float(np.mean([r.gop for r in reference])))
            credits = [credit] * len(learner.phones)
        phones = []
        for p, credit in zip(learner.phones, credits, strict=True):
            gop = min(0.0, p.gop + credit)
            phones.append(PhoneAccuracy(p.phone, p.start_s, p.end_s, gop, self.phone_score(gop)))
        return WordAccuracy(
            float(np.mean([p.score for p in phones])), "gop", learner.span, phones, learner.note
        )

    def _alone(
        self, decoders: _Decoders, pcm: npt.NDArray[np.int16], word: str, span: Span
    ) -> _AlignedWord | None:
        """One word aligned by itself inside `span` plus a margin (None: it cannot be placed there)."""
        one = self._align_run(decoders, pcm, span.start_s - WORD_MARGIN_S, span.end_s + WORD_MARGIN_S, [word])
        return one[0] if one else None

    def _expected_score(
        self,
        decoders: _Decoders,
        pcm: npt.NDArray[np.int16],
        word: str,
        heard: _AlignedWord,
        in_context: _AlignedWord | None,
    ) -> WordAccuracy | None:
        """The expected word's score at the place of a substitution, keeping the heard word's span.

        `in_context` is the expected word from aligning the expected words in
        place of the heard ones over the same stretch (only its phones are
        used, so the neighbours keep the boundaries of the better alignment);
        without it the word is aligned alone inside the heard word's span.
        When the expected word cannot be fitted there at all, its score is 0;
        None when it fits but no phones came out (confidence fallback).
        """
        found = in_context if in_context is not None and in_context.phones else None
        if found is None:
            found = self._alone(decoders, pcm, word, heard.span)
            if found is None:
                return WordAccuracy(0.0, "gop", heard.span, [])
            if not found.phones:
                return None
        scored = self._result(found)
        return WordAccuracy(scored.score, "gop", heard.span, scored.phones)

    def _run_window(
        self, words: Sequence[WordToAssess], run: list[int], duration: float
    ) -> tuple[float, float]:
        """The stretch a run of words is aligned in: between its out-of-run neighbours' recogniser spans."""
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
        return start, end

    def assess(
        self, samples: npt.NDArray[np.float32], words: Sequence[WordToAssess], cancel: threading.Event
    ) -> list[WordAccuracy]:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
        duration = len(pcm) / RATE
        results: list[WordAccuracy | None] = [None] * len(words)
        spans: list[Span | None] = [w.span for w in words]
        with self._lease() as decoders:
            known = [decoders.lookup_word(w.word) is not None for w in words]
            # align with what was heard where it differs and is pronounceable (substitutions)
            spoken = [
                w.heard
                if w.heard and w.heard != w.word and decoders.lookup_word(w.heard) is not None
                else w.word
                for w in words
            ]
            pronounceable = [known[k] or spoken[k] != words[k].word for k in range(len(words))]
            for run in _runs(pronounceable):
                if cancel.is_set():
                    raise Cancelled("scoring was cancelled")
                start, end = self._run_window(words, run, duration)
                aligned = self._align_run(decoders, pcm, start, end, [spoken[k] for k in run])
                found: dict[int, _AlignedWord | None] = {}
                if aligned is not None:
                    found = dict(zip(run, aligned, strict=True))
                elif len(run) > 1:  # the run as a whole failed: each word alone in its recogniser span
                    found = {
                        k: self._alone(decoders, pcm, spoken[k], sp) for k in run if (sp := words[k].span)
                    }
                for k, item in list(found.items()):
                    if item is not None and not item.phones:  # word boundaries only: phones of it alone
                        alone = self._alone(decoders, pcm, spoken[k], item.span)
                        if (
                            alone is not None
                        ):  # the run's boundaries stay (alone, it may reach into neighbours)
                            found[k] = _AlignedWord(item.span, alone.phones)
                in_context: dict[int, _AlignedWord] = {}
                if aligned is not None and any(spoken[k] != words[k].word for k in run):
                    expected = self._align_run(
                        decoders, pcm, start, end, [words[k].word if known[k] else spoken[k] for k in run]
                    )
                    in_context = dict(zip(run, expected, strict=True)) if expected else {}
                for k, item in found.items():
                    if item is None:
                        continue
                    spans[k] = item.span
                    if spoken[k] == words[k].word:
                        results[k] = self._result(item) if item.phones else None
                    elif known[k]:
                        results[k] = self._expected_score(
                            decoders, pcm, words[k].word, item, in_context.get(k)
                        )
        out: list[WordAccuracy] = []
        for k, word in enumerate(words):
            result = results[k]
            if result is None:
                reason = "is not in the pronunciation dictionary" if not known[k] else "could not be aligned"
                note = f"'{word.word}' {reason}: its accuracy comes from the recogniser's confidence"
                fallback = confidence_result(word, note)
                result = WordAccuracy(fallback.score, "confidence", spans[k], [], fallback.note)
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
