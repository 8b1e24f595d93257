"""Gates: checks on earlier stages' results that decide whether a job's output may be trusted as is.

A model's output is not evidence that it understood: Whisper writes fluent text over noise,
mumbles and speech it cannot follow, and a summary of that text reads as well as any. What tells
is what the stages measure about their own results — the STT kind's average log-probability,
no-speech probability, language and its probability and word count (of one speaker's channel),
the summarizer kind's grounding — so a pipeline states, as data, which values it trusts:

```yaml
gates:
  understood:                      # a gate: checks, each on one stage's signals
    - stage: stt
      speaker: "{focus_speaker}"   # signals of this speaker's channel
      min: {words: 3, avg_logprob: -0.8}
      max: {no_speech_probability: 0.5}
      equal: {language: "{language_code}"}   # a value that renders empty is not checked
      one_of: {language: [ko, en]}
stages:
  - name: reply
    gates: [understood]            # run as written only when these pass
    on_review: {with: {template: "Sorry, could you say that again?"}}   # or: skip
```

When a stage's gates fail, the job needs review: the reasons are stored with the job (and shown
in its result, counted in `soriflow_gateway_review_reasons_total`, told in its notification), and
the stage does what its `on_review` says: it is skipped, or runs with other `with:` arguments (a
safe reply instead of reading back what was not understood). The runner knows no signal in
particular: each stage kind says what it measures (`StageKind.signals`).

A signal a check names but the stage could not measure (no speech: no log-probability) fails the
check: a gate passes on evidence, never on its absence. A check on a stage that did not run
(skipped, not applicable) is not evaluated: that stage's own state tells.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from soriflow.gateway.templates import render
from soriflow.v1 import gateway_pb2

log = logging.getLogger("soriflow.gateway.gates")

#: What a stage kind measures about a result: numbers, words, flags; None when it could not measure it.
Signal = float | int | str | bool | None

REVIEW_REASONS = Counter(
    "soriflow_gateway_review_reasons_total",
    "Jobs flagged for review, by pipeline and failed check (stage.signal); a job counts once per check.",
    ["pipeline", "reason"],
)


class CheckDef(BaseModel):
    """Requirements on the signals of one stage's result. Values may be `{parameter}` templates."""

    model_config = ConfigDict(extra="forbid")

    stage: str = Field(description="The stage whose result is checked.")
    speaker: str = Field(
        "", description="Signals of this speaker's part only (stage kinds that know speakers); a template."
    )
    min: dict[str, float] = Field(default_factory=dict, description="signal >= value.")
    max: dict[str, float] = Field(default_factory=dict, description="signal <= value.")
    equal: dict[str, str | bool | float] = Field(
        default_factory=dict, description="signal == value; a template that renders empty is not checked."
    )
    one_of: dict[str, list[str]] = Field(default_factory=dict, description="signal is one of the values.")

    @property
    def signal_names(self) -> set[str]:
        return {*self.min, *self.max, *self.equal, *self.one_of}


class OnReview(BaseModel):
    """What a stage does when one of its gates fails: nothing (`skip`), or run with other arguments."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    skip: bool = False
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value == "skip":  # `on_review: skip`
            return {"skip": True}
        return value

    @model_validator(mode="after")
    def _one_thing(self) -> OnReview:
        if self.skip == bool(self.with_):
            raise ValueError("on_review is `skip` or `{with: {...}}` (arguments replacing the stage's)")
        return self


def _text(value: Signal) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _same(observed: Signal, wanted: str | bool | float) -> bool:
    if isinstance(wanted, bool) or isinstance(observed, bool):
        return _text(observed).lower() == _text(wanted).lower()
    if isinstance(wanted, float | int) and isinstance(observed, float | int):
        return float(observed) == float(wanted)
    return str(observed).strip().lower() == str(wanted).strip().lower()


def check(
    gate: str, spec: CheckDef, signals: Mapping[str, Signal], variables: Mapping[str, str]
) -> list[gateway_pb2.ReviewReason]:
    """The requirements of `spec` that `signals` fail, as review reasons."""
    speaker = render(spec.speaker, variables) if spec.speaker else ""
    of = f" of {speaker}" if speaker else ""
    reasons = []

    def fail(signal: str, requirement: str, why: str) -> None:
        observed = _text(signals.get(signal))
        reasons.append(
            gateway_pb2.ReviewReason(
                gate=gate,
                stage=spec.stage,
                signal=signal,
                observed=observed,
                requirement=requirement,
                message=f"{spec.stage}: {signal}{of} {observed} {why}",
            )
        )

    for name, bound in spec.min.items():
        value = signals.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < bound:
            fail(name, f">= {bound:g}", f"is below {bound:g}" if value is not None else "(no speech)")
    for name, bound in spec.max.items():
        value = signals.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value > bound:
            fail(name, f"<= {bound:g}", f"is above {bound:g}" if value is not None else "(no speech)")
    for name, wanted in spec.equal.items():
        if isinstance(wanted, str):
            wanted = render(wanted, variables).strip()
            if not wanted:
                continue
        if not _same(signals.get(name), wanted):
            fail(name, f"== {_text(wanted)}", f"is not {_text(wanted)}")
    for name, options in spec.one_of.items():
        allowed = [o for o in (render(str(o), variables).strip() for o in options) if o]
        if allowed and not any(_same(signals.get(name), o) for o in allowed):
            fail(name, "in " + ", ".join(allowed), "is not one of " + ", ".join(allowed))
    return reasons


def evaluate(
    gates: Mapping[str, list[CheckDef]],
    names: list[str],
    results: Mapping[str, Message],
    measure: Mapping[str, Any],
    variables: Mapping[str, str],
) -> list[gateway_pb2.ReviewReason]:
    """Every failed check of the gates `names` over the stage results so far.

    `measure[stage]` is the stage kind's `signals(result, speaker)`; a stage without a result (it
    did not run) is not checked.
    """
    reasons: list[gateway_pb2.ReviewReason] = []
    for gate in names:
        for spec in gates[gate]:
            result = results.get(spec.stage)
            if result is None:
                continue
            speaker = render(spec.speaker, variables) if spec.speaker else ""
            signals = measure[spec.stage](result, speaker)
            reasons += check(gate, spec, signals, variables)
    return reasons


def failed_gates(reasons: list[gateway_pb2.ReviewReason]) -> set[str]:
    return {r.gate for r in reasons}


def count(pipeline: str, reasons: list[gateway_pb2.ReviewReason]) -> None:
    """Counts newly recorded reasons (a re-run of the job repeats none)."""
    for reason in reasons:
        REVIEW_REASONS.labels(pipeline=pipeline, reason=f"{reason.stage}.{reason.signal}").inc()
