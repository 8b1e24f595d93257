"""Calibration of the GOP -> 0-100 mapping: native words versus words replaced by other words.

The phone score is `100 / (1 + exp(-(GOP - midpoint) / scale))` with the
midpoint and scale in settings (SORIFLOW_SCORING_GOP_MIDPOINT / _SCALE).
This measures, with the mapping in force, what it does on

* native speech: the piper voice reading the evaluation sentences, and the
  real human voice of Debian's alsa-utils clips ("Front Center", ...);
* wrong words: in each piper sentence, one content word at a time replaced
  by another word (espeak-ng), scored as the expected word in the place
  where the other was said (as the service does for a substitution).

Figures: percentiles of native phone GOPs and word scores, replaced word
scores, the area under the ROC curve separating the two, and at the default
mispronunciation threshold (60) the share of native words flagged (false
alarms) and of replaced words passed (misses).

Run: `.venv/bin/python -m bench.scoring_calibration`.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ALSA = {
    "Front_Center": "front center",
    "Front_Left": "front left",
    "Front_Right": "front right",
    "Rear_Center": "rear center",
    "Rear_Left": "rear left",
    "Rear_Right": "rear right",
    "Side_Left": "side left",
    "Side_Right": "side right",
}
THRESHOLD = 60.0


def auc(positives: list[float], negatives: list[float]) -> float:
    """Probability that a native word outscores a replaced one (ties count half)."""
    pos, neg = np.asarray(positives)[:, None], np.asarray(negatives)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def main() -> None:
    from bench._common import report
    from bench.scoring_eval import (
        REPLACEMENTS,
        SENTENCES,
        Reference,
        espeak,
        forced_words,
        piper_voice,
        synthesize,
    )
    from soriflow.audio import decode_audio
    from soriflow.scoring import defects
    from soriflow.scoring.engines.base import WordToAssess
    from soriflow.scoring.engines.pocketsphinx import PocketsphinxEngine
    from soriflow.scoring.settings import Settings
    from soriflow.scoring.timing import Span

    settings = Settings()
    engine = PocketsphinxEngine(
        gop_midpoint=settings.scoring_gop_midpoint, gop_scale=settings.scoring_gop_scale
    )
    engine.load()
    folder = Path(tempfile.mkdtemp(prefix="scoring-calibration-"))
    cancel = threading.Event()

    native_phone_gop: list[float] = []
    native_words: dict[str, list[float]] = {"piper": [], "alsa (human)": []}
    voice = piper_voice()
    refs = []
    for text in SENTENCES:
        samples = synthesize(voice, text)
        words = forced_words(samples, text)
        refs.append(Reference(text, samples, words))
        results = engine.assess(samples, [WordToAssess(w, None, None) for w, _, _ in words], cancel)
        native_words["piper"] += [r.score for r in results if r.method == "gop"]
        native_phone_gop += [p.gop for r in results for p in r.phones]
    for name, text in ALSA.items():
        samples = decode_audio((Path("/usr/share/sounds/alsa") / f"{name}.wav").read_bytes()).samples
        results = engine.assess(samples, [WordToAssess(w, None, None) for w in text.split()], cancel)
        native_words["alsa (human)"] += [r.score for r in results if r.method == "gop"]
        native_phone_gop += [p.gop for r in results for p in r.phones]

    replaced: list[float] = []
    for ref in refs:
        for n, k in enumerate(ref.content_indices()):
            other = REPLACEMENTS[n % len(REPLACEMENTS)]
            _, start, end = ref.words[k]
            samples = defects.replace_span(ref.samples, 16000, (start, end), espeak(other, folder))
            shift = (len(samples) - len(ref.samples)) / 16000  # the other word is longer or shorter
            items = [
                WordToAssess(
                    w,
                    Span(s, e + shift)
                    if j == k
                    else Span(s + (shift if j > k else 0), e + (shift if j > k else 0)),
                    0.9,
                    other if j == k else None,
                )
                for j, (w, s, e) in enumerate(ref.words)
            ]
            result = engine.assess(samples, items, cancel)[k]
            replaced.append(result.score)

    all_native = native_words["piper"] + native_words["alsa (human)"]
    figures: dict[str, Any] = {
        "gop_midpoint": settings.scoring_gop_midpoint,
        "gop_scale": settings.scoring_gop_scale,
        "native_phones": len(native_phone_gop),
        "native_phone_gop_percentiles": {
            f"p{q}": round(float(np.percentile(native_phone_gop, q)), 1) for q in (5, 25, 50, 75)
        },
        "native_word_score": {
            name: {
                "words": len(v),
                "median": round(statistics.median(v), 1),
                "p5": round(float(np.percentile(v, 5)), 1),
            }
            for name, v in native_words.items()
        },
        "replaced_word_score": {
            "words": len(replaced),
            "median": round(statistics.median(replaced), 1),
            "p95": round(float(np.percentile(replaced, 95)), 1),
        },
        "auc_native_vs_replaced": round(auc(all_native, replaced), 3),
        "native_flagged_at_60": round(float(np.mean(np.asarray(all_native) < THRESHOLD)), 3),
        "replaced_passed_at_60": round(float(np.mean(np.asarray(replaced) >= THRESHOLD)), 3),
    }
    print(figures)
    flagged, passed = figures["native_flagged_at_60"], figures["replaced_passed_at_60"]
    words = figures["native_word_score"]
    summary = (
        f"GOP mapping midpoint {settings.scoring_gop_midpoint}, scale {settings.scoring_gop_scale}: "
        f"native word median {words['piper']['median']} (piper) / {words['alsa (human)']['median']} "
        f"(human clips), replaced words median {figures['replaced_word_score']['median']}; "
        f"AUC {figures['auc_native_vs_replaced']}; at 60, {flagged:.1%} of native words flagged, "
        f"{passed:.1%} of replaced words passed"
    )
    report("scoring_calibration", figures, summary=summary, command="python -m bench.scoring_calibration")


if __name__ == "__main__":
    main()
