"""Summary styles: the prompts instruction LMs get, and how their output is shaped.

The same shaping runs on a streamed summary piece by piece and on a batched
one at once, so the text deltas of `SummarizeStream` always concatenate to
the final summary: leading whitespace is dropped, trailing whitespace is held
back until more text follows, and an `inquiry` summary ends at its first line
break (the model is told to write one line; the shaper makes sure, and the
engine stops generating there).
"""

from __future__ import annotations

import enum
import re

from .text import language_name


class Style(enum.StrEnum):
    """Kinds of summary (proto `SummaryStyle`)."""

    INQUIRY = "inquiry"
    BULLETS = "bullets"
    ABSTRACT = "abstract"
    CUSTOM = "custom"
    #: Free text from a prompt (the Generate RPC): the prompt is the whole user turn, nothing is
    #: added to it, and the output is only stripped of surrounding whitespace.
    GENERATE = "generate"


#: Instructions for instruction LMs by style, put in the user turn before the text (`{text}`).
#: Small models follow an instruction in the user turn much better than a system prompt: with
#: the instruction in the system turn SmolLM2-135M answered the customer instead of summarizing.
DEFAULT_PROMPTS: dict[Style, str] = {
    Style.INQUIRY: "Summarize the customer's request below in one short line.{language}\n\n{label}: {text}",
    Style.BULLETS: (
        "Summarize the following text as 3 to 5 short bullet points, each line starting with '- '."
        "{language}\n\n{label}: {text}"
    ),
    Style.ABSTRACT: "Summarize the following text in two or three sentences.{language}\n\n{label}: {text}",
}
#: Used for the partial summaries of map-reduce (the map step), whatever the final style.
PARTIAL_PROMPT = (
    "Summarize this part of a longer text in a few sentences, keeping every request, name, number and "
    "date.{language}\n\n{label}: {text}"
)
#: Added after the instruction of a retry whose first summary named things the text does not say.
STRICT_HINT = (
    " Use only words, names, numbers, dates and facts that appear in the text; add nothing else."
    " If unsure, copy the customer's own words."
)
#: Added after the instruction when the input is a transcript and a speaker is in focus.
FOCUS_HINT = " Focus on what {speaker} says and asks."


def prompt_parts(
    style: Style,
    language: str,
    text: str,
    *,
    custom: str = "",
    overrides: dict[str, str] | None = None,
    focus_speaker: str = "",
    partial: bool = False,
    transcript: bool = False,
    strict: bool = False,
) -> tuple[str, str]:
    """(instruction, text part) for `style`; joined they are the user turn (see `user_prompt`).

    The instruction is the template before `{text}` up to its last blank line; the text part is
    the rest (the label line, e.g. "Customer: ", the text and what follows it). With
    `SORIFLOW_SUMMARIZER_PROMPT_ROLE=system` the instruction becomes the system turn and the
    text part the user turn.

    Templates may use `{text}`, `{language}` (" Write the summary in Korean." for languages other
    than English, else nothing; a bare language name where the template wants it is
    `{language_name}`), `{label}` ("Text", "Customer" or "Conversation"). A custom prompt without
    `{text}` gets the text after a blank line. `strict` (the grounding retry) adds `STRICT_HINT`
    where `{language}` goes.
    """
    if style is Style.GENERATE:
        return "", text
    name = language_name(language)
    if partial:
        template = PARTIAL_PROMPT
    elif style is Style.CUSTOM:
        template = custom if "{text}" in custom else f"{custom}\n\n{{text}}"
    else:
        template = (overrides or {}).get(style.value) or DEFAULT_PROMPTS[style]
    if transcript:
        label = "Conversation"
    elif style is Style.INQUIRY and not partial:
        label = "Customer"
    else:
        label = "Text"
    language_hint = "" if name == "English" else f" Write the summary in {name}."
    focus = FOCUS_HINT.replace("{speaker}", focus_speaker) if focus_speaker else ""
    if strict:
        focus += STRICT_HINT
    instruction, sep, rest = template.partition("{text}")
    instruction = (
        instruction.replace("{language_name}", name)
        .replace("{language}", language_hint + focus)
        .replace("{label}", label)
    )
    body = f"\n{text}" if transcript else text  # one "speaker: words" line per turn
    head, brk, tail = instruction.rpartition("\n\n")
    if not brk:
        head, tail = instruction, ""
    return head + brk, tail + sep.replace("{text}", body) + rest.replace("{label}", label)


def user_prompt(
    style: Style,
    language: str,
    text: str,
    *,
    custom: str = "",
    overrides: dict[str, str] | None = None,
    focus_speaker: str = "",
    partial: bool = False,
    transcript: bool = False,
    strict: bool = False,
) -> str:
    """The user turn for `style`: instruction and text (arguments as for `prompt_parts`)."""
    return "".join(
        prompt_parts(
            style,
            language,
            text,
            custom=custom,
            overrides=overrides,
            focus_speaker=focus_speaker,
            partial=partial,
            transcript=transcript,
            strict=strict,
        )
    )


class OutputShaper:
    """Turns raw generated text, fed piece by piece, into the summary text that is sent.

    `feed()` returns the text that may be emitted now; `finish()` the rest.
    `done` becomes true when the style needs no more text (an inquiry line ended):
    the engine then stops generating.
    """

    def __init__(self, style: Style) -> None:
        self.style = style
        self.done = False
        self._started = False
        self._held = ""  # trailing whitespace not emitted yet
        self._emitted: list[str] = []

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return "".join(self._emitted)

    def feed(self, piece: str) -> str:
        if self.done or not piece:
            return ""
        if not self._started:
            piece = piece.lstrip()
            if not piece:
                return ""
            self._started = True
        if self.style is Style.INQUIRY and "\n" in piece:
            piece = piece.split("\n", 1)[0]
            self.done = True
            self._held = ""
            return self._emit(piece.rstrip())
        text = self._held + piece
        stripped = text.rstrip()
        self._held = text[len(stripped) :]
        return self._emit(stripped)

    def finish(self) -> str:
        """Called once at the end; trailing whitespace is never emitted."""
        self.done = True
        self._held = ""
        return ""

    def _emit(self, text: str) -> str:
        if text:
            self._emitted.append(text)
        return text


def shape(style: Style, raw: str) -> str:
    """The summary text for a whole generated output."""
    shaper = OutputShaper(style)
    shaper.feed(raw)
    shaper.finish()
    return shaper.text


_BULLET = re.compile(r"^\s*(?:[-*•·▪●◦]|\d{1,2}[.)])\s+")


def parse_bullets(summary: str) -> list[str]:
    """Bullet items of a summary: lines with a bullet marker, else every non-empty line."""
    lines = [line.strip() for line in summary.splitlines() if line.strip()]
    marked = [_BULLET.sub("", line).strip() for line in lines if _BULLET.match(line)]
    items = marked or lines
    return [item for item in items if item]


def format_bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)
