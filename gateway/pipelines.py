"""Pipelines as data: YAML documents of stages, wiring, retry policy and failure handling.

A pipeline names its stages, which service call each one makes (`uses`),
which stages it `needs` (stages whose needs are met run in parallel), its
deadline and retry policy, whether the job may finish without it
(`optional`), and a `when` parameter that must be set for it to run. Jobs
are routed to a pipeline by the object key's prefix, or named by the caller.
`on_failure:` stages are the failure path (Step Functions' Catch): they run,
in dependency order, when the job fails for good (e.g. a spoken apology or
a transcript of what did work); the job stays FAILED whatever they do.
`schedules:` are cron schedules (`schedules.py`): each tick starts one job
with the schedule's parameters and no source audio.

`prefix_parameters` pin parameters per key prefix (the call center's language for the
recordings Amazon Connect writes under `connect/`, which carry no metadata); `gates` are checks on
stage results that decide whether a stage runs as written or the job needs review
(`soriflow.gateway.gates`).

Values in `with:` and parameter defaults are templates (`soriflow.text.templates`):
`{name}` is replaced by a job parameter, a variable captured from the key by
`key_pattern`, or `bucket`/`key` of the source object, and filters reshape it:
`s3://standard-audio-file/{content_type}/{title|replace('_', ' ')}/line_{line}.wav`.
Every template is parsed when the pipeline is loaded, so a typo stops the load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from soriflow.errors import InvalidArgument
from soriflow.gateway.gates import CheckDef, OnReview
from soriflow.gateway.retry import RetryPolicy as RetryPolicy
from soriflow.gateway.schedules import ScheduleDef
from soriflow.gateway.stages import KINDS
from soriflow.gateway.templates import check, render, strings
from soriflow.text.templates import capture_pattern


class StageDef(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    uses: str = Field(description="The stage kind (`soriflow.gateway.stages.KINDS`), e.g. stt.recognize.")
    needs: list[str] = Field(default_factory=list)
    optional: bool = False
    when: str | None = Field(None, description="Run only when this job parameter is non-empty.")
    timeout_s: float = Field(300.0, gt=0)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    gates: list[str] = Field(
        default_factory=list,
        description="Gates (the pipeline's `gates:`) that must pass for it to run as written.",
    )
    on_review: OnReview | None = Field(
        None,
        description="When a gate fails (the job then needs review): `skip`, or `{with: {...}}` arguments "
        "that replace the stage's. Unset: it runs as written, the job flagged.",
    )

    @field_validator("uses")
    @classmethod
    def _known_kind(cls, uses: str) -> str:
        if uses not in KINDS:
            raise ValueError(f"unknown stage kind {uses!r}; this gateway has {', '.join(sorted(KINDS))}")
        return uses

    @property
    def service(self) -> str:
        return KINDS[self.uses].service

    def arguments_for(self, failed_gates: set[str]) -> dict[str, Any]:
        """The stage's `with:`, or with its `on_review` arguments when one of its gates failed."""
        if self.on_review is not None and self.on_review.with_ and failed_gates & set(self.gates):
            return {**self.with_, **self.on_review.with_}
        return self.with_


class ParameterDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    default: str = ""


class PipelineDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    description: str = ""
    key_prefixes: list[str] = Field(default_factory=list)
    key_pattern: str | None = Field(
        None, description="Template whose {fields} are captured from the source key."
    )
    parameters: dict[str, ParameterDef] = Field(default_factory=dict)
    prefix_parameters: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Parameters pinned per key prefix (the longest matching prefix wins): what jobs "
        "under it get unless the caller or the object's metadata says otherwise. Amazon Connect "
        "recordings carry no metadata, so a call center pins its language here.",
    )
    gates: dict[str, list[CheckDef]] = Field(
        default_factory=dict,
        description="Named checks on stage results (`soriflow.gateway.gates`); stages name the gates "
        "they need in `gates:`.",
    )
    stages: list[StageDef]
    on_failure: list[StageDef] = Field(
        default_factory=list,
        description="Stages run when the job fails for good; they may use the results of stages "
        "that succeeded (`needs`), and never change the job's state.",
    )
    schedules: list[ScheduleDef] = Field(
        default_factory=list,
        description="Cron schedules: each tick starts a job with the schedule's parameters "
        "(no source audio).",
    )
    presign_expiry_s: int | None = Field(
        None,
        ge=1,
        le=604800,
        description="Validity of this pipeline's presigned output links (job views, notifications); "
        "unset: SORIFLOW_GATEWAY_PRESIGN_EXPIRY_S.",
    )
    source_yaml: str = Field("", exclude=True)

    @field_validator("stages")
    @classmethod
    def _non_empty(cls, stages: list[StageDef]) -> list[StageDef]:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        return stages

    @model_validator(mode="after")
    def _check_graph(self) -> PipelineDef:
        names = [s.name for s in (*self.stages, *self.on_failure)]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate stage names: {sorted(duplicates)}")
        main = {s.name for s in self.stages}
        for stage in (*self.stages, *self.on_failure):
            known = main | ({s.name for s in self.on_failure} if stage in self.on_failure else set())
            missing = [n for n in stage.needs if n not in known]
            if missing:
                raise ValueError(f"stage {stage.name!r} needs unknown stages {missing}")
            if stage.when is not None and stage.when not in self.parameters:
                raise ValueError(f"stage {stage.name!r}: `when: {stage.when}` is not a declared parameter")
        self.topological_order()  # raises on cycles
        self.topological_order(self.on_failure)
        self._check_templates()
        self._check_schedules()
        self._check_gates()
        for prefix, values in self.prefix_parameters.items():
            if unknown := sorted(set(values) - set(self.parameters)):
                raise ValueError(f"prefix_parameters {prefix!r}: {unknown} are not declared parameters")
            if not any(prefix.startswith(p) for p in self.key_prefixes):
                raise ValueError(f"prefix_parameters {prefix!r} is under none of {self.key_prefixes}")
        return self

    def _check_templates(self) -> None:
        """Parses every template now: a bad one is an error at load, not in the first job."""
        where: list[tuple[str, list[str]]] = [
            (f"parameters.{name}.default", [spec.default]) for name, spec in self.parameters.items()
        ]
        where += [(f"stage {s.name} with", list(strings(s.with_))) for s in (*self.stages, *self.on_failure)]
        for origin, templates in where:
            try:
                check(templates)
            except InvalidArgument as exc:
                raise ValueError(f"{origin}: {exc.message}") from None
        if self.key_pattern:
            try:
                capture_pattern(self.key_pattern)
            except InvalidArgument as exc:
                raise ValueError(f"key_pattern: {exc.message}") from None

    def _check_schedules(self) -> None:
        if len(self.schedules) == 1 and not self.schedules[0].name:
            self.schedules[0].name = self.name
        for schedule in self.schedules:
            if not schedule.name:
                raise ValueError("a pipeline with several schedules names each of them (`name:`)")
            unknown = sorted(set(schedule.parameters) - set(self.parameters))
            if unknown:
                raise ValueError(f"schedule {schedule.name!r} sets undeclared parameters {unknown}")
        reading = self.audio_readers()
        if self.schedules and reading:
            raise ValueError(
                f"a scheduled job has no source audio, but stages {reading} read it: schedule a pipeline "
                "whose stages start from parameters (e.g. summarizer.generate)"
            )

    def audio_readers(self) -> list[str]:
        """The stages that read the job's source audio (none: jobs may start from parameters alone)."""
        return [s.name for s in (*self.stages, *self.on_failure) if KINDS[s.uses].reads_source(s.with_)]

    def _check_gates(self) -> None:
        """Gates name known stages and signals, and only stages that finish before those that use them."""
        every = {s.name: s for s in (*self.stages, *self.on_failure)}
        main = {s.name for s in self.stages}
        for gate, checks in self.gates.items():
            for spec in checks:
                if spec.stage not in main:
                    raise ValueError(f"gate {gate!r} checks {spec.stage!r}, which is not a main stage")
                kind = KINDS[every[spec.stage].uses]
                if unknown := sorted(spec.signal_names - kind.signal_names):
                    raise ValueError(
                        f"gate {gate!r}: {kind.name} measures {sorted(kind.signal_names) or 'nothing'}, "
                        f"not {unknown}"
                    )

        def before(name: str, seen: set[str]) -> set[str]:
            for need in every[name].needs:
                if need not in seen:
                    seen.add(need)
                    before(need, seen)
            return seen

        for stage in every.values():
            if stage.on_review is not None and not stage.gates:
                raise ValueError(f"stage {stage.name!r} has on_review but no gates")
            for gate in stage.gates:
                if gate not in self.gates:
                    raise ValueError(f"stage {stage.name!r}: no gate {gate!r} in {sorted(self.gates)}")
                upstream = before(stage.name, set())
                if late := sorted({c.stage for c in self.gates[gate]} - upstream):
                    raise ValueError(
                        f"stage {stage.name!r} uses gate {gate!r}, which checks {late}: add them to its "
                        "needs (directly or through the stages it needs)"
                    )

    def pinned_parameters(self, key: str) -> dict[str, str]:
        """The parameters pinned for the longest of `prefix_parameters` that `key` starts with."""
        matches = [p for p in self.prefix_parameters if key.startswith(p)]
        return dict(self.prefix_parameters[max(matches, key=len)]) if matches else {}

    def topological_order(self, stages: list[StageDef] | None = None) -> list[StageDef]:
        """The stages (by default the main ones) ordered so that each comes after what it needs."""
        stages = self.stages if stages is None else stages
        by_name = {s.name: s for s in stages}
        order: list[StageDef] = []
        state: dict[str, int] = {}

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise ValueError(f"stages form a cycle: {' -> '.join((*trail, name))}")
            state[name] = 1
            for need in by_name[name].needs:
                if need in by_name:  # a failure-path stage may need a main stage: already done
                    visit(need, (*trail, name))
            state[name] = 2
            order.append(by_name[name])

        for stage in stages:
            visit(stage.name, ())
        return order

    @cached_property
    def _key_regex(self) -> re.Pattern[str] | None:
        if not self.key_pattern:
            return None
        return capture_pattern(self.key_pattern)

    def key_variables(self, key: str) -> dict[str, str]:
        """Fields captured from the object key by `key_pattern` (empty if it does not match)."""
        regex = self._key_regex
        match = regex.match(key) if regex else None
        return dict(match.groupdict()) if match else {}

    def resolve_parameters(self, given: Mapping[str, str], *, bucket: str, key: str) -> dict[str, str]:
        """Declared parameters with defaults rendered; unknown names are INVALID_ARGUMENT."""
        unknown = sorted(set(given) - set(self.parameters))
        if unknown:
            raise InvalidArgument(
                f"pipeline {self.name!r} does not take parameters {unknown}; "
                f"it takes {sorted(self.parameters)}"
            )
        variables = {"bucket": bucket, "key": key, **self.key_variables(key)}
        pinned = self.pinned_parameters(key)
        resolved: dict[str, str] = {}
        for name, spec in self.parameters.items():
            if given.get(name):
                resolved[name] = given[name]
            else:
                resolved[name] = render(pinned.get(name, spec.default), variables, strict=False)
        return resolved


def parse_pipeline(text: str, origin: str) -> PipelineDef:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"{origin}: a pipeline must be a YAML mapping")
    try:
        pipeline = PipelineDef.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'pipeline'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidArgument(f"{origin}: invalid pipeline: {problems}") from exc
    pipeline.source_yaml = text
    return pipeline


def builtin_pipelines() -> list[PipelineDef]:
    folder = resources.files("soriflow.gateway") / "builtin_pipelines"
    return [
        parse_pipeline(entry.read_text(encoding="utf-8"), f"builtin {entry.name}")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    ]


class PipelineRegistry:
    """The pipelines a gateway runs, and routing of object keys to them."""

    def __init__(self, pipelines: Iterable[PipelineDef]) -> None:
        self.by_name: dict[str, PipelineDef] = {}
        for pipeline in pipelines:
            self.by_name[pipeline.name] = pipeline  # later definitions override built-ins
        seen: dict[str, str] = {}
        for schedule, pipeline in self.schedules():
            if schedule.name in seen:
                raise InvalidArgument(
                    f"schedule {schedule.name!r} is declared by pipelines {seen[schedule.name]!r} and "
                    f"{pipeline.name!r}: schedule names are unique"
                )
            seen[schedule.name] = pipeline.name

    @classmethod
    def load(cls, extra_file: str | Path | None = None) -> PipelineRegistry:
        pipelines = builtin_pipelines()
        if extra_file:
            path = Path(extra_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise InvalidArgument(f"cannot read pipelines file {path}: {exc.strerror}") from exc
            documents = [d for d in text.split("\n---") if d.strip()]
            pipelines += [parse_pipeline(doc, str(path)) for doc in documents]
        return cls(pipelines)

    def get(self, name: str) -> PipelineDef:
        try:
            return self.by_name[name]
        except KeyError:
            raise InvalidArgument(
                f"unknown pipeline {name!r}; this gateway runs: {', '.join(sorted(self.by_name))}"
            ) from None

    def route(self, key: str) -> PipelineDef | None:
        """The pipeline whose longest key prefix matches `key`."""
        best: tuple[int, PipelineDef] | None = None
        for pipeline in self.by_name.values():
            for prefix in pipeline.key_prefixes:
                if key.startswith(prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), pipeline)
        return best[1] if best else None

    def schedules(self) -> list[tuple[ScheduleDef, PipelineDef]]:
        """Every schedule with its pipeline."""
        return [(schedule, p) for p in self.by_name.values() for schedule in p.schedules]

    def presign_expiry_s(self, pipeline: str, default: int) -> int:
        """How long the presigned links of `pipeline`'s outputs are valid."""
        found = self.by_name.get(pipeline)
        return found.presign_expiry_s if found is not None and found.presign_expiry_s else default

    def prefixes(self) -> list[str]:
        return sorted({p for pipeline in self.by_name.values() for p in pipeline.key_prefixes})
