"""The scorer end to end on real speech with known defects, and its robustness cases."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from soriflow.errors import InvalidArgument
from soriflow.scoring import defects
from soriflow.scoring.model import Assessment, ErrorType, Recording, ScoreInput
from soriflow.scoring.scorer import Scorer
from soriflow.scoring.settings import Settings
from soriflow.scoring.timing import Span
from tests.conftest import ALSA_DIR

from .speech import OTHER_SENTENCE, RATE, SENTENCE, aligned_words, piper

pytestmark = pytest.mark.slow

SAID = "i bought a new toy at the store yesterday"


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    s = Scorer(Settings(port=0, metrics_port=None))
    s.load()
    return s


def recording(samples: np.ndarray, said: str | None = SAID) -> Recording:
    return Recording(samples, RATE, aligned_words(samples, said) if said else [])


@pytest.fixture(scope="module")
def native() -> Recording:
    return recording(piper(SENTENCE))


def finite(value: Any, path: str = "result") -> None:
    """Every number anywhere in the result is finite (no NaN, no inf)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            finite(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            finite(item, f"{path}[{k}]")
    elif isinstance(value, np.ndarray):
        assert np.isfinite(value).all(), path
    elif isinstance(value, float):
        assert math.isfinite(value), path


def in_range(a: Assessment) -> None:
    finite(a)
    for v in (a.overall, a.accuracy, a.fluency, a.completeness, a.prosody):
        assert 0.0 <= v <= 100.0
    assert 0.0 <= a.pause_similarity <= 1.0
    assert 0.0 <= a.prosody_metrics.pitch_similarity <= 1.0


def score(
    scorer: Scorer, learner: Recording, reference: Recording | None, text: str = "", **kw: Any
) -> Assessment:
    a = scorer.score(ScoreInput(learner=learner, reference=reference, reference_text=text, **kw))
    in_range(a)
    return a


def test_recording_against_itself_scores_at_least_95(scorer: Scorer, native: Recording) -> None:
    a = score(scorer, native, native)
    assert a.overall >= 95
    assert all(w.error is ErrorType.NONE for w in a.words)
    assert a.completeness == 100
    assert a.pause_similarity == 1.0
    assert a.speed_ratio == pytest.approx(1.0)
    assert a.prosody_metrics.pitch_similarity == pytest.approx(1.0)
    assert a.feedback == ["Well done: your reading was clear and close to the reference."]
    assert a.learner_contour_reference_times_s is not None
    assert len(a.learner_contour.times_s) == 200


def test_against_text_only(scorer: Scorer, native: Recording) -> None:
    a = score(scorer, native, None, SENTENCE)
    assert a.overall >= 85
    assert a.reference_fluency is None
    assert a.prosody_metrics.pitch_similarity == 0.0  # no reference audio to compare with
    assert a.words[-1].phones
    assert a.words[-1].phones[0].phone == "Y"


def test_replaced_word_is_a_substitution_with_feedback(scorer: Scorer, native: Recording) -> None:
    learner = recording(
        piper("I bought a new boat at the store yesterday."), "i bought a new boat at the store yesterday"
    )
    a = score(scorer, learner, native)
    toy = a.words[4]
    assert (toy.word, toy.recognized, toy.error) == ("toy", "boat", ErrorType.SUBSTITUTION)
    assert toy.accuracy < 60
    assert a.feedback[0] == "You said 'boat' instead of 'toy'."
    assert score(scorer, learner, native, feedback_language="ko").feedback[0] == (
        "'toy' 자리에서 다른 단어('boat')가 들렸어요."
    )
    assert a.overall < score(scorer, native, native).overall


def test_omitted_word(scorer: Scorer, native: Recording) -> None:
    learner = recording(
        piper("I bought a toy at the store yesterday."), "i bought a toy at the store yesterday"
    )
    a = score(scorer, learner, native)
    assert [w.word for w in a.words if w.error is ErrorType.OMISSION] == ["new"]
    assert a.completeness == pytest.approx(100 * 8 / 9)
    assert "You skipped 'new'." in a.feedback


def test_inserted_pause_is_found_and_named(scorer: Scorer, native: Recording) -> None:
    store = next(w for w in native.words or [] if w.text == "store")
    samples = defects.insert_silences(native.samples, RATE, [store.span.start_s - 0.01], 1.0)
    a = score(scorer, recording(samples), native)
    pauses = a.learner_fluency.pauses
    assert len(pauses) == 1
    assert pauses[0].word_after == "store"
    assert pauses[0].duration_s == pytest.approx(1.0, abs=0.15)
    assert next(w for w in a.words if w.word == "store").pause_before_s == pytest.approx(1.0, abs=0.15)
    assert any(line.startswith("You paused 1.") and "before 'store'" in line for line in a.feedback)
    assert a.pause_similarity < 0.7
    assert a.fluency < 90
    ko = score(scorer, recording(samples), native, feedback_language="ko")
    assert any("'store' 앞에서 1." in line and "초 쉬었어요" in line for line in ko.feedback)


def test_slowed_reading(scorer: Scorer, native: Recording) -> None:
    slow = recording(defects.time_stretch(native.samples, RATE, 1.6))
    a = score(scorer, slow, native)
    assert a.speed_ratio == pytest.approx(1 / 1.6, rel=0.12)
    assert a.fluency < 85
    assert any("more slowly" in line for line in a.feedback)
    assert a.pause_similarity > 0.8  # the same (absent) pauses at another tempo


def test_flattened_pitch_is_monotone(scorer: Scorer, native: Recording) -> None:
    flat = recording(defects.flatten_pitch(native.samples, RATE, 1.0))
    a = score(scorer, flat, native)
    assert a.prosody_metrics.monotone
    assert a.prosody_metrics.learner_range_st < 1.0 < 5.0 < a.prosody_metrics.reference_range_st
    assert a.prosody_metrics.pitch_similarity < 0.6
    assert a.prosody < 80
    assert any("intonation was flat" in line for line in a.feedback)


def test_short_real_clip_gets_a_real_pitch_score(scorer: Scorer) -> None:
    """alsa-utils' human "Front center" against piper's: a correct reading scored 0.00 before.

    The two speakers put the accent on different words (frame correlation is
    negative) but both end with a fall and move their voices about as much;
    the same clip flattened or with its melody mirrored scores lower.
    """
    from soriflow.audio import decode_audio

    human = decode_audio((ALSA_DIR / "Front_Center.wav").read_bytes()).samples
    reference = recording(piper("Front center"), "front center")
    similarity = {
        name: score(
            scorer, recording(samples, "front center"), reference, "Front center"
        ).prosody_metrics.pitch_similarity
        for name, samples in {
            "as read": human,
            "flattened": defects.flatten_pitch(human, RATE, 1.0),
            "mirrored": defects.mirror_pitch(human, RATE),
        }.items()
    }
    assert similarity["as read"] > 0.15
    assert similarity["flattened"] < 0.05
    assert similarity["mirrored"] < similarity["as read"]


def test_different_sentence_scores_low(scorer: Scorer, native: Recording) -> None:
    other = recording(piper(OTHER_SENTENCE), "the weather is very nice today")
    a = score(scorer, other, native)
    assert a.overall < 50
    assert a.completeness < 20


def test_silence_gives_the_defined_zero_result(scorer: Scorer, native: Recording) -> None:
    silent = Recording(np.zeros(RATE * 2, dtype=np.float32), RATE, [])
    a = score(scorer, silent, native)
    assert (a.overall, a.accuracy, a.completeness, a.fluency, a.prosody) == (0, 0, 0, 0, 0)
    assert all(w.error is ErrorType.OMISSION for w in a.words)
    assert len(a.words) == 9
    assert a.feedback == ["We could not hear any speech: check your microphone and read the sentence aloud."]
    assert "no speech detected in the learner audio" in a.notes


def test_whisper_has_no_pitch_but_a_defined_result(scorer: Scorer, native: Recording) -> None:
    whispered = recording(defects.whisperize(native.samples, RATE))
    a = score(scorer, whispered, native)
    assert a.prosody_metrics.pitch_similarity == 0.0
    assert not a.prosody_metrics.monotone
    assert any("no voiced frames" in n for n in a.notes)
    assert any("whispering" in line for line in a.feedback)


def test_very_short_audio_is_refused_with_its_duration(scorer: Scorer, native: Recording) -> None:
    short = Recording(native.samples[: int(0.2 * RATE)], RATE, [])
    with pytest.raises(InvalidArgument, match=r"0\.20 s long; at least 0\.3 s"):
        scorer.score(ScoreInput(learner=short, reference=native))
    with pytest.raises(InvalidArgument, match=r"reference audio is 0\.20 s"):
        scorer.score(ScoreInput(learner=native, reference=short))


def test_clipped_recording_is_scored_with_a_note(scorer: Scorer, native: Recording) -> None:
    clipped = recording(defects.clip(native.samples, 12.0))
    a = score(scorer, clipped, native)
    assert any("clipped" in n for n in a.notes)
    assert a.overall > 40


def test_bad_references_and_languages(scorer: Scorer, native: Recording) -> None:
    with pytest.raises(InvalidArgument, match="no words"):
        scorer.score(ScoreInput(learner=native, reference_text=" ?! "))
    with pytest.raises(InvalidArgument, match="give reference_text"):
        scorer.score(ScoreInput(learner=native))
    with pytest.raises(InvalidArgument, match="feedback_language_code 'fr'"):
        scorer.score(ScoreInput(learner=native, reference_text=SENTENCE, feedback_language="fr"))
    silent_ref = Recording(np.zeros(RATE, dtype=np.float32), RATE, [])
    with pytest.raises(InvalidArgument, match="no speech detected in the reference audio"):
        scorer.score(ScoreInput(learner=native, reference=silent_ref))


def test_other_languages_use_word_confidence(scorer: Scorer, native: Recording, tmp_path: Path) -> None:
    words = [dataclasses.replace(w, confidence=0.5) for w in native.words or []]
    learner = Recording(native.samples, RATE, words)
    a = score(scorer, learner, None, SENTENCE, language="de")
    assert {w.method for w in a.words} == {"confidence"}
    assert a.accuracy == pytest.approx(50.0)
    assert all(not w.phones for w in a.words)
    # confidence 0.5 -> accuracy 50, under the default threshold 60: every word is a Mispronunciation
    assert {w.error for w in a.words} == {ErrorType.MISPRONUNCIATION}
    assert a.completeness == 100  # a mispronounced word was still said
    assert a.feedback == ["'i' sounded unclear.", "'bought' sounded unclear.", "'a' sounded unclear."]
    lenient = score(scorer, learner, None, SENTENCE, language="de", mispronunciation_threshold=40)
    assert {w.error for w in lenient.words} == {ErrorType.NONE}
    assert not any("unclear" in line for line in lenient.feedback)
    assert lenient.accuracy == a.accuracy


def test_a_wrong_word_timed_as_the_right_one_is_a_phone_level_mispronunciation(scorer: Scorer) -> None:
    """The recogniser "heard" 'toy' where 'boat' was said: GOP of its phones flags it (English)."""
    samples = piper("I bought a new boat at the store yesterday.")
    heard = aligned_words(samples, "i bought a new boat at the store yesterday")
    heard[4] = dataclasses.replace(heard[4], text="toy")
    a = score(scorer, Recording(samples, RATE, heard), None, SENTENCE)
    toy = a.words[4]
    assert (toy.word, toy.recognized, toy.method) == ("toy", "toy", "gop")
    assert toy.error is ErrorType.MISPRONUNCIATION
    assert [p.phone for p in toy.phones] == ["T", "OY"]
    worst = min(toy.phones, key=lambda p: p.score)
    assert worst.score < 60
    assert toy.accuracy < 60
    assert a.completeness == 100
    for w in ("bought", "store", "yesterday"):
        assert next(r for r in a.words if r.word == w).error is ErrorType.NONE
    sound = {"T": "'t' sound, as in 'tea'", "OY": "'oy' sound, as in 'boy'"}[worst.phone]
    assert a.feedback[0] == f"'toy' sounded unclear: check the {sound}."
    assert a.accuracy < score(scorer, recording(piper(SENTENCE)), None, SENTENCE).accuracy
    lenient = score(scorer, Recording(samples, RATE, heard), None, SENTENCE, mispronunciation_threshold=20)
    assert lenient.words[4].error is ErrorType.NONE
    assert lenient.words[4].accuracy == pytest.approx(toy.accuracy)


def test_a_recogniser_contraction_matches_the_reference_words(scorer: Scorer) -> None:
    text = "So we are going to the park."
    samples = piper(text)
    words = aligned_words(samples, text)
    we, are = words[1], words[2]
    heard = [
        words[0],
        dataclasses.replace(we, text="we're", span=Span(we.span.start_s, are.span.end_s)),
        *words[3:],
    ]
    a = score(scorer, Recording(samples, RATE, heard), None, text)
    assert a.completeness == 100
    assert [w.word for w in a.words] == ["so", "we", "are", "going", "to", "the", "park"]
