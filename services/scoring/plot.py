"""Drawing both pitch contours on one time axis, with the words marked (`soriflow score --plot`).

Works from a ScoreResponse alone, so it draws the same picture for an
in-process run and for a remote server: the learner contour is placed on
the reference's time axis with `learner_pitch.reference_times_ms` (the DTW
alignment), and the reference words are shaded where they are in the
reference audio, red when the learner got them wrong. Without reference
audio the learner contour is drawn on its own time axis with its own words.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from soriflow.v1 import scoring_pb2

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_WRONG = {
    scoring_pb2.WORD_ERROR_TYPE_OMISSION,
    scoring_pb2.WORD_ERROR_TYPE_SUBSTITUTION,
    scoring_pb2.WORD_ERROR_TYPE_MISPRONUNCIATION,
}


def _segments(
    times_s: list[float], values: list[float], voiced: list[bool]
) -> list[tuple[list[float], list[float]]]:
    """Voiced stretches as separate line segments (no lines drawn across unvoiced gaps)."""
    out: list[tuple[list[float], list[float]]] = []
    xs: list[float] = []
    ys: list[float] = []
    for t, v, ok in zip(times_s, values, voiced, strict=False):
        if ok:
            xs.append(t)
            ys.append(v)
        elif xs:
            out.append((xs, ys))
            xs, ys = [], []
    if xs:
        out.append((xs, ys))
    return out


def draw_contours(response: scoring_pb2.ScoreResponse, *, title: str | None = None) -> Figure:
    """The figure of the learner and reference pitch contours (semitones re each speaker's median).

    Returned open, so tests can inspect what was drawn; `plot_contours` saves and closes it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learner, reference = response.learner_pitch, response.reference_pitch
    aligned = len(learner.reference_times_ms) == len(learner.times_ms) and len(learner.times_ms) > 0
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=110)
    if response.HasField("reference_pitch") and reference.times_ms:
        for k, (xs, ys) in enumerate(
            _segments(
                [t / 1000 for t in reference.times_ms], list(reference.semitones), list(reference.voiced)
            )
        ):
            ax.plot(xs, ys, color="#1f77b4", lw=2.2, label="reference" if k == 0 else None)
    learner_times = learner.reference_times_ms if aligned else learner.times_ms
    for k, (xs, ys) in enumerate(
        _segments([t / 1000 for t in learner_times], list(learner.semitones), list(learner.voiced))
    ):
        ax.plot(xs, ys, color="#ff7f0e", lw=1.8, label="learner" if k == 0 else None)

    ymin, ymax = -12.0, 12.0
    ax.set_ylim(ymin, ymax)
    for w in response.words:
        start, end = (w.reference_start_ms, w.reference_end_ms) if aligned else (w.start_ms, w.end_ms)
        if end <= start:
            continue
        wrong = w.error_type in _WRONG
        ax.axvspan(
            start / 1000, end / 1000, color="#d62728" if wrong else "#999999", alpha=0.12 if wrong else 0.06
        )
        ax.text(
            (start + end) / 2000,
            ymax - 1.0,
            w.word,
            ha="center",
            va="top",
            fontsize=9,
            color="#d62728" if wrong else "#333333",
            rotation=0,
        )
    ax.axhline(0, color="#cccccc", lw=0.8)
    ax.set_xlabel("time in the reference audio (s)" if aligned else "time (s)")
    ax.set_ylabel("pitch (semitones re speaker median)")
    ax.set_title(
        title
        or f"overall {response.overall_score:.0f}  |  pitch similarity "
        f"{response.pitch_similarity:.2f}  |  prosody {response.prosody_score:.0f}"
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_contours(response: scoring_pb2.ScoreResponse, path: Path, *, title: str | None = None) -> Path:
    """Writes a PNG of the learner and reference pitch contours, with the words marked."""
    fig = draw_contours(response, title=title)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
