"""faster-whisper vs openai-whisper on the same weights and audio: speed, memory and WER.

Both engines run the bundled tiny.en weights — openai-whisper through the
checkpoint `soriflow models convert` makes from the CTranslate2 model — on the
same audio: the ten piper sentences joined with half-second pauses (long-form,
~40 s) plus the alsa-utils clips. Each engine runs in its own fresh process
(so peak resident memory is its own: `ru_maxrss` after the runs, and the
memory the model and its first transcription added over the bare
interpreter), is warmed up once, then transcribes the audio `--repeat` times;
the real-time factor is the median wall time over the audio duration, without
word timestamps (as faster-whisper's README compares), plus one run with them.
faster-whisper runs int8 (its CPU default) and float32 (openai-whisper's CPU
precision); the speed-up is openai-whisper's time over each.
faster-whisper's README reports ~4x on CPU for this comparison.

Run from the repository root: `python -m bench.stt_engines [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import median, report

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = (("faster-whisper", "int8"), ("faster-whisper", "float32"), ("openai-whisper", "float32"))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(engine_name: str, compute: str, repeat: int, corpus_dir: str) -> dict[str, Any]:
    """Runs in a fresh process: loads one engine and times it."""
    import numpy as np

    from soriflow.audio import Audio
    from soriflow.stt.engines import TranscribeOptions, load_engine
    from soriflow.stt.evaluation import alsa_clips, corpus_wer, piper_clips
    from soriflow.stt.settings import Settings

    clips = piper_clips(Path(corpus_dir))
    pause = np.zeros(8000, np.float32)
    long_form = Audio(np.concatenate([x for c in clips for x in (c.audio.samples, pause)]), 16000)
    short = alsa_clips()
    baseline_rss = _rss_mb()
    started = time.perf_counter()
    engine = load_engine(Settings(stt_engine=engine_name, stt_compute_type=compute, stt_device="cpu"))
    load_s = time.perf_counter() - started
    options = TranscribeOptions(language="en", beam_size=5, vad_filter=False, word_timestamps=False)
    with_words = TranscribeOptions(language="en", beam_size=5, vad_filter=False, word_timestamps=True)
    engine.transcribe(short[0].audio, with_words)  # warm-up (openai-whisper's numba DTW, CT2 caches)
    times, text = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        text = engine.transcribe(long_form, options).text
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    engine.transcribe(long_form, with_words)
    words_s = time.perf_counter() - started
    short_started = time.perf_counter()
    short_text = [engine.transcribe(c.audio, options).text for c in short]
    short_s = time.perf_counter() - short_started
    return {
        "engine": engine_name,
        "compute_type": compute,
        "load_s": round(load_s, 2),
        "long_form_audio_s": round(long_form.duration_s, 1),
        "long_form_s": [round(t, 2) for t in times],
        "rtf_long_form": round(median(times) / long_form.duration_s, 4),
        "rtf_long_form_with_words": round(words_s / long_form.duration_s, 4),
        "short_clips_audio_s": round(sum(c.audio.duration_s for c in short), 1),
        "rtf_short_clips": round(short_s / sum(c.audio.duration_s for c in short), 4),
        "wer_long_form": round(corpus_wer([" ".join(c.reference for c in clips)], [text]), 4),
        "wer_short_clips": round(corpus_wer([c.reference for c in short], short_text), 4),
        "peak_rss_mb": round(_rss_mb(), 1),
        "model_rss_mb": round(_rss_mb() - baseline_rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "COMPUTE"), help=argparse.SUPPRESS)
    parser.add_argument("--corpus-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.repeat, args.corpus_dir)))
        return
    corpus_dir = tempfile.mkdtemp(prefix="stt-engines-")
    results: dict[str, Any] = {}
    for engine_name, compute in CONFIGS:
        out = (
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.stt_engines",
                    "--worker",
                    engine_name,
                    compute,
                    "--repeat",
                    str(args.repeat),
                    "--corpus-dir",
                    corpus_dir,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        results[f"{engine_name}/{compute}"] = json.loads(out)
        print(results[f"{engine_name}/{compute}"], flush=True)
    openai = results["openai-whisper/float32"]
    figures: dict[str, Any] = {"engines": results, "load_average_1m_end": round(os.getloadavg()[0], 2)}
    for key in ("faster-whisper/int8", "faster-whisper/float32"):
        fw = results[key]
        figures[f"speedup_long_form_{key.split('/')[1]}"] = round(
            openai["rtf_long_form"] / fw["rtf_long_form"], 2
        )
        figures[f"speedup_short_clips_{key.split('/')[1]}"] = round(
            openai["rtf_short_clips"] / fw["rtf_short_clips"], 2
        )
        figures[f"speedup_with_words_{key.split('/')[1]}"] = round(
            openai["rtf_long_form_with_words"] / fw["rtf_long_form_with_words"], 2
        )
        figures[f"memory_ratio_{key.split('/')[1]}"] = round(fw["peak_rss_mb"] / openai["peak_rss_mb"], 2)
    figures["wer_difference_points_float32"] = round(
        100 * abs(openai["wer_long_form"] - results["faster-whisper/float32"]["wer_long_form"]), 2
    )
    summary = (
        f"tiny.en on CPU, long form: faster-whisper int8 {figures['speedup_long_form_int8']}x and float32 "
        f"{figures['speedup_long_form_float32']}x faster than openai-whisper; peak RSS "
        f"{results['faster-whisper/int8']['peak_rss_mb']:.0f} / "
        f"{results['faster-whisper/float32']['peak_rss_mb']:.0f}"
        f" / {openai['peak_rss_mb']:.0f} MB"
    )
    report("stt_engines", figures, summary=summary)


if __name__ == "__main__":
    main()
