"""Chat messages of a task, for engines that take messages rather than token ids.

The OpenAI-compatible and llama.cpp engines build their messages here from
the same `styles.prompt_parts` the transformers causal engine renders through
its chat template, with the same `SORIFLOW_SUMMARIZER_PROMPT_ROLE` choice, so
a prompt change (an operator's override, a stricter instruction) reaches
every instruction LM alike.
"""

from __future__ import annotations

from ..settings import Settings
from ..styles import prompt_parts
from .base import Task


def task_prompt_parts(task: Task, settings: Settings) -> tuple[str, str]:
    """(instruction, text part) of `task`'s prompt: its style, the operator's overrides, and the
    stricter wording when the pipeline retries an ungrounded summary (`Task.strict`)."""
    return prompt_parts(
        task.style,
        task.language,
        task.text,
        custom=task.prompt,
        overrides=settings.summarizer_prompts,
        focus_speaker=task.focus_speaker,
        partial=task.partial,
        transcript=task.transcript,
        strict=task.strict,
    )


def chat_messages(task: Task, settings: Settings) -> list[dict[str, str]]:
    """The conversation for `task`: the instruction in the user turn, or as system turn (setting).

    A Generate task has no instruction of ours: its prompt is the user turn alone.
    """
    instruction, text = task_prompt_parts(task, settings)
    if settings.summarizer_prompt_role == "system" and instruction.strip():
        return [
            {"role": "system", "content": instruction.strip()},
            {"role": "user", "content": text.strip()},
        ]
    return [{"role": "user", "content": instruction + text}]
