"""A ScoreResponse as tables for people: used by `soriflow score`, `soriflow watch` and the demo.

Depends only on rich and the generated messages, so the gateway's CLI can
show a pronunciation result without the scoring service's own dependencies.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from soriflow.v1 import scoring_pb2


def error_name(value: int) -> str:
    """WORD_ERROR_TYPE_MISPRONUNCIATION -> "mispronunciation"."""
    return scoring_pb2.WordErrorType.Name(value).removeprefix("WORD_ERROR_TYPE_").lower()  # type: ignore[arg-type]


def print_score(
    response: scoring_pb2.ScoreResponse, console: Console, *, title: str = "Pronunciation scores"
) -> None:
    """Scores, timing, the words with their errors, and the feedback."""
    scores = Table(title=title, show_header=True)
    for name in ("overall", "accuracy", "fluency", "completeness", "prosody"):
        scores.add_column(name, justify="right")
    scores.add_row(
        *(
            f"{v:.0f}"
            for v in (
                response.overall_score,
                response.accuracy_score,
                response.fluency_score,
                response.completeness_score,
                response.prosody_score,
            )
        )
    )
    console.print(scores)
    f = response.learner_fluency
    console.print(
        f"speed ratio {response.speed_ratio:.2f}  pause similarity {response.pause_similarity:.2f}  "
        f"pitch similarity {response.pitch_similarity:.2f}  articulation "
        f"{f.articulation_rate_syllables_per_second:.1f} syll/s  pauses {len(f.pauses)} "
        f"(longest {f.longest_pause_ms} ms)  monotone {'yes' if response.prosody.monotone else 'no'}"
    )
    words = Table(show_header=True)
    for name in ("word", "heard", "error", "accuracy", "start", "pause before"):
        words.add_column(name, justify="right" if name in ("accuracy", "start", "pause before") else "left")
    for w in response.words:
        error = error_name(w.error_type)
        style = "" if error == "none" else "red"
        words.add_row(
            w.word,
            w.recognized_word,
            f"[{style}]{error}[/{style}]" if style else error,
            f"{w.accuracy_score:.0f}",
            f"{w.start_ms / 1000:.2f}s" if w.end_ms else "",
            f"{w.pause_before_ms} ms" if w.pause_before_ms else "",
        )
    console.print(words)
    for line in response.feedback:
        console.print(f"- {line}")
    for note in response.notes:
        console.print(f"[dim]note: {note}[/dim]")
