"""The scorer: from decoded audio and word timestamps to an `Assessment`.

Pipeline (each step in its own module):

1. reference words: the reference text, or the transcript of the reference
   audio (`text.tokenize`);
2. alignment of reference and recognised words by edit distance
   (`wordalign`): correct / substitution / omission / insertion;
3. accuracy of every spoken word (`engines`): phone GOP from a pocketsphinx
   forced alignment for English, recogniser confidence otherwise; the forced
   alignment also gives precise word times, which replace the recogniser's;
4. timing (`timing`): pauses checked on the signal, rates, runs, pause
   similarity at reference word junctions, speed ratio;
5. prosody (`prosody`): pitch and energy contours compared along a DTW path
   on MFCCs, rhythm from matched word durations, nPVI, monotone detection;
6. the scores (`scores`) and feedback sentences (`feedback`).

The scorer is synchronous and CPU-bound; the service runs it in a worker
thread and it checks the cancel event between steps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from soriflow.errors import Cancelled, InvalidArgument, ResourceExhausted
from soriflow.scoring import feedback as fb
from soriflow.scoring import scores
from soriflow.scoring.dtw import map_times
from soriflow.scoring.engines import AccuracyEngine, PhoneAccuracy, WordAccuracy, WordToAssess, build_engines
from soriflow.scoring.features import (
    HOP_S,
    clipped_fraction,
    energy_db,
    has_speech,
    silence_model,
)
from soriflow.scoring.model import (
    Assessment,
    ErrorType,
    ProsodyResult,
    Recording,
    ScoreInput,
    TimedWord,
    WordResult,
)
from soriflow.scoring.pitch import PitchTrack, downsample, extract_pitch
from soriflow.scoring.prosody import (
    MIN_VOICED_PAIRS,
    energy_similarity,
    is_monotone,
    npvi,
    pitch_similarity,
    rhythm_similarity,
    speech_path,
)
from soriflow.scoring.settings import Settings
from soriflow.scoring.text import Token, match_contractions, normalize_words, syllable_count, tokenize
from soriflow.scoring.timing import (
    Fluency,
    Pause,
    Span,
    find_pauses,
    measure_fluency,
    pause_similarity,
    rate_component,
    relative_gaps,
)
from soriflow.scoring.wordalign import Op, WordPair, align_words

log = logging.getLogger("soriflow.scoring")

VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
#: A learner pause this much longer than the reference's at the same place is worth a feedback sentence.
FEEDBACK_PAUSE_S = 0.35
#: Speed ratios outside this band get a feedback sentence.
FEEDBACK_SPEED_BAND = (0.8, 1.25)
#: Share of clipped samples above which the recording is called distorted.
CLIPPED_SHARE = 0.01

Key = tuple[str, int]


def base_language(code: str) -> str:
    """ISO 639-1 part of a language code ("" -> en, "en-US" -> en)."""
    return (code or "en").split("-")[0].split("_")[0].lower()


def _split(word: TimedWord, parts: Sequence[str]) -> list[TimedWord]:
    step = word.span.duration_s / len(parts)
    return [
        TimedWord(
            part, Span(word.span.start_s + k * step, word.span.start_s + (k + 1) * step), word.confidence
        )
        for k, part in enumerate(parts)
    ]


def expand_words(
    words: Sequence[TimedWord], language: str, reference: Sequence[str] | None = None
) -> list[TimedWord]:
    """Normalised words; a token that expands ("10" -> ten, "well-known") shares its span evenly.

    With `reference` (English), contractions are written as the reference
    writes them ("we're" heard, "we are" in the text), see `match_contractions`.
    """
    out: list[TimedWord] = []
    for w in sorted(words, key=lambda x: (x.span.start_s, x.span.end_s)):
        parts = normalize_words(w.text, language)
        if parts:
            out += _split(w, parts)
    if reference is None or language != "en":
        return out
    merged: list[TimedWord] = []
    groups = match_contractions([w.text for w in out], list(reference))
    for k, group in enumerate(groups):
        if len(group) == 1 and k + 1 < len(groups) and not groups[k + 1]:  # a join of k and k + 1
            first, second = out[k], out[k + 1]
            confidence = (
                min(first.confidence, second.confidence)
                if first.confidence is not None and second.confidence is not None
                else None
            )
            merged.append(TimedWord(group[0], Span(first.span.start_s, second.span.end_s), confidence))
        elif group:
            merged += (
                _split(out[k], group)
                if len(group) > 1
                else [TimedWord(group[0], out[k].span, out[k].confidence)]
            )
    return merged


@dataclass(frozen=True)
class _Timed:
    """A recording's words with final spans, its pauses and fluency."""

    words: list[str]
    spans: list[Span]
    pauses: list[Pause]
    fluency: Fluency
    vowel_durations: list[float]


class Scorer:
    """Scores learner recordings; thread-safe (engines pool their own decoders)."""

    def __init__(self, settings: Settings, engines: dict[str, AccuracyEngine] | None = None) -> None:
        self.settings = settings
        self.engines = engines if engines is not None else build_engines(settings)

    def load(self) -> None:
        """Loads every engine (once each) and warms what the first request would otherwise pay for.

        That is parsing the CMU dictionary for syllable counts (~1 s) and
        importing parselmouth; after this a request costs only its own work.
        """
        seen: set[int] = set()
        for engine in self.engines.values():
            if id(engine) not in seen:
                seen.add(id(engine))
                engine.load()
        syllable_count("warm", "en")
        extract_pitch(np.zeros(1600, dtype=np.float32), 16000)

    def engine_for(self, language: str) -> AccuracyEngine:
        return self.engines.get(base_language(language)) or self.engines["*"]

    def check_duration(self, duration_s: float, what: str) -> None:
        """INVALID_ARGUMENT under the minimum, RESOURCE_EXHAUSTED over the maximum duration."""
        s = self.settings
        if duration_s < s.scoring_min_duration_s:
            raise InvalidArgument(
                f"the {what} is {duration_s:.2f} s long; at least {s.scoring_min_duration_s:g} s of audio is "
                "needed to score pronunciation"
            )
        if duration_s > s.scoring_max_duration_s:
            raise ResourceExhausted(
                f"the {what} is {duration_s:.1f} s long; the scoring limit is {s.scoring_max_duration_s:g} s "
                "(SORIFLOW_SCORING_MAX_DURATION_S): score one sentence or paragraph at a time"
            )

    # ------------------------------------------------------------------ helpers

    def _timing(
        self,
        words: list[str],
        spans: list[Span],
        syllables: list[int],
        levels: np.ndarray,
        phones: Sequence[Sequence[PhoneAccuracy]],
    ) -> _Timed:
        order = sorted(range(len(spans)), key=lambda k: spans[k].start_s)
        words = [words[k] for k in order]
        spans = [spans[k] for k in order]
        syllables = [syllables[k] for k in order]
        silent = silence_model(levels).silent(levels)
        pauses = [
            replace(p, word_before=words[p.after_word - 1], word_after=words[p.after_word])
            for p in find_pauses(spans, silent, self.settings.scoring_pause_threshold_ms / 1000.0)
        ]
        vowels = [p.duration_s for k in order for p in phones[k] if p.phone in VOWELS] if phones else []
        return _Timed(words, spans, pauses, measure_fluency(spans, syllables, pauses), vowels)

    def _reference_timing(
        self, tokens: list[Token], reference: Recording, language: str, cancel: threading.Event
    ) -> tuple[list[Span | None], list[list[PhoneAccuracy]]]:
        """Each reference token's span in the reference audio (forced alignment where possible) and phones."""
        heard = expand_words(reference.words or [], language, [t.word for t in tokens])
        hints: list[Span | None] = [None] * len(tokens)
        confidence: list[float | None] = [None] * len(tokens)
        for pair in align_words([t.word for t in tokens], [w.text for w in heard]):
            if pair.ref is not None and pair.hyp is not None:
                hints[pair.ref] = heard[pair.hyp].span
                confidence[pair.ref] = heard[pair.hyp].confidence
        engine = self.engine_for(language)
        if engine.name == "confidence":
            return hints, [[] for _ in tokens]
        results = engine.assess(
            reference.samples,
            [WordToAssess(t.word, hints[k], confidence[k]) for k, t in enumerate(tokens)],
            cancel,
        )
        spans = [r.span if r.method == "gop" else hints[k] for k, r in enumerate(results)]
        return spans, [r.phones for r in results]

    # ------------------------------------------------------------------ scoring

    def score(self, inp: ScoreInput, cancel: threading.Event | None = None) -> Assessment:
        """Scores one learner recording (see the module docstring for the steps)."""
        cancel = cancel or threading.Event()
        s = self.settings
        language = base_language(inp.language)
        fb_language = fb.feedback_language(inp.feedback_language)
        learner, reference = inp.learner, inp.reference
        self.check_duration(learner.duration_s, "learner audio")
        if reference is not None:
            self.check_duration(reference.duration_s, "reference audio")
        notes: list[str] = []

        levels_l = energy_db(learner.samples, learner.sample_rate)
        levels_r = energy_db(reference.samples, reference.sample_rate) if reference is not None else None
        if reference is not None and levels_r is not None and not has_speech(levels_r):
            raise InvalidArgument("no speech detected in the reference audio: it is silent or nearly so")
        if inp.reference_text.strip():
            tokens = tokenize(inp.reference_text, language)
            reference_text = inp.reference_text.strip()
        elif reference is not None:
            tokens = tokenize(" ".join(w.text for w in reference.words or []), language)
            reference_text = " ".join(w.text.strip() for w in reference.words or [])
        else:
            raise InvalidArgument("give reference_text, reference_audio, or both")
        if not tokens:
            raise InvalidArgument(
                "the reference has no words: reference_text is empty after removing punctuation"
                if inp.reference_text.strip()
                else (
                    "no words were recognised in the reference audio: check it holds speech, "
                    "or give reference_text"
                )
            )

        if clipped_fraction(learner.samples) > CLIPPED_SHARE:
            notes.append("the learner audio is clipped (over 1% of samples at full scale); scores may suffer")

        hyp = expand_words(learner.words or [], language, [t.word for t in tokens])
        recognized_text = " ".join(w.text.strip() for w in learner.words or [])
        pitch_l = extract_pitch(
            learner.samples,
            learner.sample_rate,
            floor_hz=s.scoring_pitch_floor_hz,
            ceiling_hz=s.scoring_pitch_ceiling_hz,
        )
        pitch_r = (
            extract_pitch(
                reference.samples,
                reference.sample_rate,
                floor_hz=s.scoring_pitch_floor_hz,
                ceiling_hz=s.scoring_pitch_ceiling_hz,
            )
            if reference is not None
            else None
        )
        speech = has_speech(levels_l)
        if not speech or not hyp:
            notes.append(
                "no speech detected in the learner audio"
                if not speech
                else "no words were recognised in the learner audio"
            )
            return self._silent_result(
                inp, tokens, reference_text, recognized_text, pitch_l, pitch_r, fb_language, notes
            )
        self._check_cancel(cancel)

        pairs = align_words([t.word for t in tokens], [w.text for w in hyp])
        engine = self.engine_for(language)
        assess_pairs = [p for p in pairs if p.hyp is not None]
        items = [
            WordToAssess(
                tokens[p.ref].word if p.ref is not None else hyp[p.hyp].text,
                hyp[p.hyp].span,
                hyp[p.hyp].confidence,
                hyp[p.hyp].text,
            )
            for p in assess_pairs
            if p.hyp is not None
        ]
        results = engine.assess(learner.samples, items, cancel)
        by_hyp: dict[int, WordAccuracy] = {
            p.hyp: r for p, r in zip(assess_pairs, results, strict=True) if p.hyp is not None
        }
        for r in results:
            if r.note and r.note not in notes:
                notes.append(r.note)
        self._check_cancel(cancel)

        # learner timing (forced-alignment spans where available)
        spans_l = [by_hyp[j].span or hyp[j].span if j in by_hyp else hyp[j].span for j in range(len(hyp))]
        timed_l = self._timing(
            [w.text for w in hyp],
            spans_l,
            [syllable_count(w.text, language) for w in hyp],
            levels_l,
            [by_hyp[j].phones if j in by_hyp else [] for j in range(len(hyp))],
        )
        hyp_order = sorted(range(len(hyp)), key=lambda j: spans_l[j].start_s)
        position = {j: k for k, j in enumerate(hyp_order)}  # hyp index -> index in timed_l

        # reference timing
        ref_spans: list[Span | None] = [None] * len(tokens)
        timed_r: _Timed | None = None
        ref_timed_tokens: list[int] = []
        if reference is not None and levels_r is not None:
            ref_spans, ref_phones = self._reference_timing(tokens, reference, language, cancel)
            present = [(k, span) for k, span in enumerate(ref_spans) if span is not None]
            timed_spans = sorted(present, key=lambda ks: ks[1].start_s)
            ref_timed_tokens = [k for k, _ in timed_spans]
            timed_r = self._timing(
                [tokens[k].word for k in ref_timed_tokens],
                [span for _, span in timed_spans],
                [syllable_count(tokens[k].word, language) for k in ref_timed_tokens],
                levels_r,
                [ref_phones[k] for k in ref_timed_tokens],
            )
            # accuracy relative to the native: credit where the reference itself scores low
            for pair in pairs:
                if (
                    pair.hyp is not None
                    and pair.ref is not None
                    and pair.hyp in by_hyp
                    and ref_phones[pair.ref]
                ):
                    by_hyp[pair.hyp] = engine.relative(by_hyp[pair.hyp], ref_phones[pair.ref])
        self._check_cancel(cancel)

        # pauses, keyed by the reference junction they fall at
        hyp_to_ref = {p.hyp: p.ref for p in pairs if p.hyp is not None and p.ref is not None}

        def learner_key(after_position: int) -> Key:
            for k in range(after_position, len(hyp_order)):
                ref = hyp_to_ref.get(hyp_order[k])
                if ref is not None:
                    return ("ref", ref)
            return ("end", after_position)

        gaps_l: dict[Key, float] = {}
        seconds_l: dict[Key, tuple[float, Pause]] = {}
        for after, rel in relative_gaps(timed_l.spans, timed_l.pauses).items():
            key = learner_key(after)
            gaps_l[key] = gaps_l.get(key, 0.0) + rel
        for pause in timed_l.pauses:
            key = learner_key(pause.after_word)
            prev = seconds_l.get(key)
            seconds_l[key] = ((prev[0] if prev else 0.0) + pause.duration_s, pause)
        gaps_r: dict[Key, float] = {}
        seconds_r: dict[Key, float] = {}
        if timed_r is not None:
            for after, rel in relative_gaps(timed_r.spans, timed_r.pauses).items():
                gaps_r[("ref", ref_timed_tokens[after])] = rel
            for pause in timed_r.pauses:
                key = ("ref", ref_timed_tokens[pause.after_word])
                seconds_r[key] = seconds_r.get(key, 0.0) + pause.duration_s
            allowed = len(timed_r.pauses)
        else:  # text only: pauses at punctuation are free
            free = {("ref", k) for k in range(1, len(tokens)) if tokens[k - 1].break_after}
            gaps_r = {key: value for key, value in gaps_l.items() if key in free}
            seconds_r = {key: value[0] for key, value in seconds_l.items() if key in free}
            allowed = len(free)
        keys = sorted(set(gaps_l) | set(gaps_r))
        pause_sim = pause_similarity([gaps_l.get(k, 0.0) for k in keys], [gaps_r.get(k, 0.0) for k in keys])

        # speed
        native = s.scoring_native_articulation_rate
        ref_rate = timed_r.fluency.articulation_rate if timed_r is not None else native
        ref_rate = ref_rate if ref_rate > 0 else native
        speed_ratio = timed_l.fluency.articulation_rate / ref_rate if ref_rate > 0 else 0.0

        # prosody
        prosody = self._prosody(
            inp, pairs, spans_l, ref_spans, pitch_l, pitch_r, levels_l, levels_r, timed_l, timed_r, notes
        )
        path_times = prosody[1]
        prosody_metrics = prosody[0]

        # words
        threshold = inp.mispronunciation_threshold or s.scoring_mispronunciation_threshold
        pause_before = {p.after_word: p.duration_s for p in timed_l.pauses}
        words: list[WordResult] = []
        spoken_scores: list[float] = []
        matched = 0
        for pair in pairs:
            words.append(
                self._word_result(
                    pair, tokens, hyp, by_hyp, spans_l, ref_spans, position, pause_before, threshold
                )
            )
            if pair.op is Op.MATCH:
                matched += 1
            if pair.ref is not None and pair.hyp is not None:
                spoken_scores.append(words[-1].accuracy)

        completeness = scores.completeness(matched, len(tokens))
        accuracy = scores.accuracy(spoken_scores)
        if matched == 0:
            fluency = prosody_score = 0.0
            notes.append("none of the reference words were recognised: fluency and prosody are 0")
        else:
            fluency = scores.fluency(
                pause_sim, rate_component(speed_ratio), scores.runs_component(len(timed_l.pauses), allowed)
            )
            if reference is not None:
                prosody_score = scores.prosody_with_reference(
                    prosody_metrics.pitch_similarity,
                    prosody_metrics.energy_similarity,
                    prosody_metrics.rhythm_similarity,
                )
            else:
                prosody_score = scores.prosody_text_only(
                    prosody_metrics.learner_range_st, prosody_metrics.learner_npvi
                )
        overall = scores.overall(accuracy, fluency, completeness, prosody_score)

        issues = self._issues(
            words,
            timed_l,
            seconds_l,
            seconds_r,
            speed_ratio,
            prosody_metrics,
            pitch_l,
            reference is not None,
            threshold,
            learner,
        )
        contour_l = downsample(pitch_l, inp.contour_points or 200)
        contour_times = None
        if path_times is not None:
            frames = np.clip(np.round(contour_l.times_s / HOP_S).astype(int), 0, len(path_times) - 1)
            contour_times = path_times[frames] * HOP_S
        return Assessment(
            overall=overall,
            accuracy=accuracy,
            fluency=fluency,
            completeness=completeness,
            prosody=prosody_score,
            speed_ratio=float(speed_ratio),
            pause_similarity=pause_sim,
            words=words,
            learner_fluency=timed_l.fluency,
            reference_fluency=timed_r.fluency if timed_r is not None else None,
            prosody_metrics=prosody_metrics,
            feedback=fb.compose(issues, fb_language),
            learner_contour=contour_l,
            reference_contour=downsample(pitch_r, inp.contour_points or 200) if pitch_r is not None else None,
            learner_contour_reference_times_s=contour_times,
            recognized_text=recognized_text,
            reference_text=reference_text,
            duration_s=learner.duration_s,
            notes=notes,
        )

    @staticmethod
    def _check_cancel(cancel: threading.Event) -> None:
        if cancel.is_set():
            raise Cancelled("scoring was cancelled")

    def _word_result(
        self,
        pair: WordPair,
        tokens: list[Token],
        hyp: list[TimedWord],
        by_hyp: dict[int, WordAccuracy],
        spans_l: list[Span],
        ref_spans: list[Span | None],
        position: dict[int, int],
        pause_before: dict[int, float],
        threshold: float,
    ) -> WordResult:
        ref_span = ref_spans[pair.ref] if pair.ref is not None else None
        if pair.hyp is None:
            assert pair.ref is not None
            return WordResult(
                tokens[pair.ref].word, "", ErrorType.OMISSION, 0.0, None, None, pair.ref, ref_span
            )
        result = by_hyp[pair.hyp]
        score = result.score
        if pair.op is Op.SUBSTITUTION and result.method == "confidence":
            score = 0.0  # confidence in another word says nothing about the reference word
        error = {
            Op.MATCH: ErrorType.MISPRONUNCIATION if score < threshold else ErrorType.NONE,
            Op.SUBSTITUTION: ErrorType.SUBSTITUTION,
            Op.INSERTION: ErrorType.INSERTION,
        }[pair.op]
        word = tokens[pair.ref].word if pair.ref is not None else hyp[pair.hyp].text
        return WordResult(
            word=word,
            recognized=hyp[pair.hyp].text,
            error=error,
            accuracy=float(score),
            method=result.method,
            span=spans_l[pair.hyp],
            reference_index=pair.ref if pair.ref is not None else -1,
            reference_span=ref_span,
            pause_before_s=pause_before.get(position[pair.hyp], 0.0),
            phones=result.phones,
        )

    def _prosody(
        self,
        inp: ScoreInput,
        pairs: list[WordPair],
        spans_l: list[Span],
        ref_spans: list[Span | None],
        pitch_l: PitchTrack,
        pitch_r: PitchTrack | None,
        levels_l: np.ndarray,
        levels_r: np.ndarray | None,
        timed_l: _Timed,
        timed_r: _Timed | None,
        notes: list[str],
    ) -> tuple[ProsodyResult, np.ndarray | None]:
        learner_range = pitch_l.range_semitones()
        reference_range = pitch_r.range_semitones() if pitch_r is not None else None
        if pitch_l.voiced_count < MIN_VOICED_PAIRS:
            notes.append(
                "no voiced frames in the learner audio (whispered or noise?): intonation could not be "
                "measured"
            )
        l_npvi = npvi(
            timed_l.vowel_durations
            if len(timed_l.vowel_durations) >= 2
            else [sp.duration_s for sp in timed_l.spans]
        )
        r_npvi = 0.0
        if timed_r is not None:
            r_npvi = npvi(
                timed_r.vowel_durations
                if len(timed_r.vowel_durations) >= 2
                else [sp.duration_s for sp in timed_r.spans]
            )
        monotone = is_monotone(learner_range, reference_range, self.settings.scoring_monotone_range_st)
        if inp.reference is None or pitch_r is None or levels_r is None:
            return ProsodyResult(0.0, learner_range, 0.0, monotone, l_npvi, 0.0, 0.0, 0.0), None

        learner, reference = inp.learner, inp.reference
        path = speech_path(
            learner.samples, learner.sample_rate, levels_l, reference.samples, reference.sample_rate, levels_r
        )
        similarity = pitch_similarity(pitch_l, pitch_r, path)
        if similarity is None:
            similarity = 0.0
            if pitch_l.voiced_count >= MIN_VOICED_PAIRS:
                notes.append("too few frames are voiced in both recordings to compare intonation")
        energy = energy_similarity(levels_l, levels_r, path)
        durations_l, durations_r = [], []
        for pair in pairs:
            if pair.op is Op.MATCH and pair.hyp is not None and pair.ref is not None:
                ref_span = ref_spans[pair.ref]
                if ref_span is not None:
                    durations_l.append(spans_l[pair.hyp].duration_s)
                    durations_r.append(ref_span.duration_s)
        rhythm = rhythm_similarity(durations_l, durations_r)
        times = map_times(path, len(levels_l))
        result = ProsodyResult(
            similarity, learner_range, reference_range or 0.0, monotone, l_npvi, r_npvi, energy, rhythm
        )
        return result, times

    def _issues(
        self,
        words: list[WordResult],
        timed_l: _Timed,
        seconds_l: dict[Key, tuple[float, Pause]],
        seconds_r: dict[Key, float],
        speed_ratio: float,
        prosody: ProsodyResult,
        pitch_l: PitchTrack,
        has_reference_audio: bool,
        threshold: float,
        learner: Recording,
    ) -> list[fb.Issue]:
        issues: list[fb.Issue] = []
        omitted = tuple(w.word for w in words if w.error is ErrorType.OMISSION)
        if omitted:
            issues.append(fb.Issue("omission", 1.0 + 0.1 * len(omitted), words=omitted[:3]))
        for w in words:
            if w.error is ErrorType.SUBSTITUTION:
                issues.append(fb.Issue("substitution", 0.95, word=w.word, other=w.recognized))
            elif w.error is ErrorType.MISPRONUNCIATION:
                worst = min(w.phones, key=lambda p: p.score).phone if w.phones else ""
                issues.append(
                    fb.Issue(
                        "mispronunciation", 0.5 + (threshold - w.accuracy) / 100.0, word=w.word, other=worst
                    )
                )
            elif w.error is ErrorType.INSERTION:
                issues.append(fb.Issue("insertion", 0.4, word=w.word))
        for key, (seconds, pause) in seconds_l.items():
            extra = seconds - seconds_r.get(key, 0.0)
            if extra >= FEEDBACK_PAUSE_S:
                issues.append(fb.Issue("pause", 0.2 + extra, word=pause.word_after, value=seconds))
        low, high = FEEDBACK_SPEED_BAND
        if 0 < speed_ratio < low:
            issues.append(fb.Issue("slow", 1.5 * abs(np.log(speed_ratio)), value=speed_ratio))
        elif speed_ratio > high:
            issues.append(fb.Issue("fast", 1.5 * abs(np.log(speed_ratio)), value=speed_ratio))
        if pitch_l.voiced_count < MIN_VOICED_PAIRS:
            issues.append(fb.Issue("unvoiced", 0.9))
        elif prosody.monotone:
            issues.append(fb.Issue("monotone", 0.7))
        if clipped_fraction(learner.samples) > CLIPPED_SHARE:
            issues.append(fb.Issue("clipped", 0.3))
        return issues

    def _silent_result(
        self,
        inp: ScoreInput,
        tokens: list[Token],
        reference_text: str,
        recognized_text: str,
        pitch_l: PitchTrack,
        pitch_r: PitchTrack | None,
        fb_language: str,
        notes: list[str],
    ) -> Assessment:
        """The defined result for a learner recording without speech: every reference word omitted, all 0."""
        words = [WordResult(t.word, "", ErrorType.OMISSION, 0.0, None, None, k) for k, t in enumerate(tokens)]
        points = inp.contour_points or 200
        return Assessment(
            overall=0.0,
            accuracy=0.0,
            fluency=0.0,
            completeness=0.0,
            prosody=0.0,
            speed_ratio=0.0,
            pause_similarity=0.0,
            words=words,
            learner_fluency=Fluency(),
            reference_fluency=None,
            prosody_metrics=ProsodyResult(reference_range_st=pitch_r.range_semitones() if pitch_r else 0.0),
            feedback=[fb.render(fb.Issue("no_speech", 1.0), fb_language)],
            learner_contour=downsample(pitch_l, points),
            reference_contour=downsample(pitch_r, points) if pitch_r is not None else None,
            learner_contour_reference_times_s=None,
            recognized_text=recognized_text,
            reference_text=reference_text,
            duration_s=inp.learner.duration_s,
            notes=notes,
        )
