"""What the chart hands the gateway is configuration the gateway really accepts: the rendered
pipelines load with the gateway's own loader, the settings build and pass its loop guard, and
the pods' termination grace leaves room for the shutdown the settings ask for. The chart also
refuses an S3 loop at render time, with the same rule as the gateway.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    COMPONENTS,
    FULLNAME,
    ChartRenderer,
    Rendered,
    merged,
    secret_placeholder,
    value_set,
)

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/soriflow-ingest"
SHUTDOWN_MARGIN_S = 10  # closing clients and handing jobs back after the last grace period


def rejection(chart: ChartRenderer, values: dict[str, Any]) -> str:
    import helm_python as helm

    with pytest.raises((helm.HelmValuesError, helm.HelmRenderError)) as info:
        chart.render(values)
    return str(info.value)


def component_env(rendered: Rendered, component: str) -> dict[str, str]:
    """The SORIFLOW_* environment a component's container starts with (secrets as placeholders)."""
    env = dict(rendered.config(component))
    for entry in rendered.container(component).get("env", []):
        if entry["name"].startswith("SORIFLOW_"):
            env[entry["name"]] = entry.get("value", secret_placeholder(entry["name"]))
    return env


def settings_of(component: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    import importlib

    for key in list(os.environ):
        if key.startswith("SORIFLOW_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return importlib.import_module(f"soriflow.{component}.settings").Settings()


def gateway_pipelines_file(rendered: Rendered, folder: Path) -> Path | None:
    """The file the gateway pod reads at SORIFLOW_GATEWAY_PIPELINES_FILE, from the rendered
    ConfigMap and the pod's mount of it (None when the chart configures no extra pipelines)."""
    env = rendered.config("gateway")
    target = env.get("SORIFLOW_GATEWAY_PIPELINES_FILE")
    if target is None:
        return None
    spec = rendered.pod_spec("gateway")
    mount = next(
        m for m in rendered.container("gateway")["volumeMounts"] if target.startswith(m["mountPath"] + "/")
    )
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    config_map = rendered.get("ConfigMap", volume["configMap"]["name"])
    [item] = [
        i for i in volume["configMap"]["items"] if i["path"] == target.removeprefix(mount["mountPath"] + "/")
    ]
    path = folder / "pipelines.yaml"
    path.write_text(config_map["data"][item["key"]])
    return path


def check_stage_wiring(pipeline: Any) -> None:
    """What the loader leaves to run time, checked here: a summary reads the transcript of an
    stt.recognize stage it waits for (otherwise every job fails at that stage)."""
    by_name = {s.name: s for s in pipeline.stages}

    def upstream(name: str) -> set[str]:
        found: set[str] = set()
        for need in by_name[name].needs:
            found |= {need, *upstream(need)}
        return found

    for stage in pipeline.stages:
        if stage.uses != "summarizer.summarize":
            continue
        source = stage.with_.get("transcript_from")
        assert source, f"{pipeline.name}/{stage.name}: summarizer.summarize needs with.transcript_from"
        assert source in by_name, f"{pipeline.name}/{stage.name}: transcript_from {source!r} is no stage"
        assert by_name[source].uses == "stt.recognize", (
            f"{pipeline.name}/{stage.name}: {source} is no stt stage"
        )
        assert source in upstream(stage.name), f"{pipeline.name}/{stage.name}: does not need {source!r}"


def load_gateway_config(rendered: Rendered, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What GatewayService does with the rendered configuration before it opens its port."""
    from soriflow.gateway import loopguard
    from soriflow.gateway.pipelines import PipelineRegistry

    env = component_env(rendered, "gateway")
    pipelines = gateway_pipelines_file(rendered, folder)
    if pipelines is not None:
        env["SORIFLOW_GATEWAY_PIPELINES_FILE"] = str(pipelines)
    settings = settings_of("gateway", env, monkeypatch)
    registry = PipelineRegistry.load(settings.gateway_pipelines_file)
    loopguard.check_static(settings.gateway_output_uri, settings.gateway_input_uris)
    for pipeline in registry.by_name.values():
        check_stage_wiring(pipeline)
    return registry


def test_every_value_set_gives_the_gateway_a_config_it_loads(
    rendered_set: tuple[str, Rendered], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, rendered = rendered_set
    registry = load_gateway_config(rendered, tmp_path, monkeypatch)
    assert {"call-summary", "pronunciation", "transcribe"} <= set(registry.by_name)
    for pipeline in rendered.values.get("gateway", {}).get("pipelines", []):
        assert registry.get(pipeline["name"]).stages, name


def test_the_keda_example_pipeline_is_wired(
    chart: ChartRenderer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = load_gateway_config(chart.render(value_set("keda")), tmp_path, monkeypatch)
    notes = registry.get("meeting-notes")
    assert [s.name for s in notes.topological_order()] == ["stt", "summary"]
    assert notes.stages[1].needs == ["stt"]
    assert registry.route("meetings/2024/standup.wav") is notes


@pytest.mark.parametrize(
    ("stage", "problem"),
    [
        ({"depends_on": ["stt"], "with": {"transcript_from": "stt"}}, "depends_on"),
        ({"needs": ["stt"], "with": {"style": "bullets"}}, "needs with.transcript_from"),
        ({"with": {"transcript_from": "stt"}}, "does not need 'stt'"),
    ],
    ids=["unknown-key", "no-transcript", "no-needs"],
)
def test_a_miswired_pipeline_in_values_is_caught(
    chart: ChartRenderer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stage: dict[str, Any],
    problem: str,
) -> None:
    """The check above fails for the mistakes it exists for (the KEDA example had the first two)."""
    pipeline = {
        "name": "meeting-notes",
        "key_prefixes": ["meetings/"],
        "stages": [
            {"name": "stt", "uses": "stt.recognize", "with": {"audio": "source"}},
            {"name": "summary", "uses": "summarizer.summarize", **stage},
        ],
    }
    rendered = chart.render({"gateway": {"pipelines": [pipeline]}})
    with pytest.raises(Exception) as info:  # noqa: PT011 - the loader's InvalidArgument or the wiring check
        load_gateway_config(rendered, tmp_path, monkeypatch)
    assert problem in str(info.value)


# --- the S3 loop guard at render time --------------------------------------------------------

LOOP_CASES = [
    ("s3://media/results/", ["s3://media/"], True),
    ("s3://media/results/", ["s3://media/results/calls/"], True),
    ("s3://media/results/", ["s3://media/res"], True),
    ("s3://media/results/", ["s3://media/connect/", "s3://media/results/"], True),
    ("s3://media/results/", ["s3://media/connect/"], False),
    ("s3://media-output/results/", ["s3://media/results/"], False),
    ("s3://media/results/", [], False),
]


@pytest.mark.parametrize(("output", "inputs", "loops"), LOOP_CASES)
def test_the_chart_refuses_an_s3_loop_as_the_gateway_does(
    chart: ChartRenderer, output: str, inputs: list[str], loops: bool
) -> None:
    from soriflow.errors import FailedPrecondition
    from soriflow.gateway import loopguard

    values = {"gateway": {"outputUri": output, "inputUris": inputs}}
    try:
        loopguard.check_static(output, inputs)
        gateway_refuses = False
    except FailedPrecondition:
        gateway_refuses = True
    assert gateway_refuses == loops
    if loops:
        message = rejection(chart, values)
        assert f"gateway.outputUri {output} overlaps the ingest trigger" in message
        assert "every job output would land where S3 events start new jobs" in message
        assert "Put the outputs in another bucket" in message
    else:
        chart.render(values)


def test_the_loop_guard_sees_settings_overrides(chart: ChartRenderer) -> None:
    """gateway.settings override the chart's own keys, so the check reads the effective values."""
    message = rejection(
        chart,
        {
            "gateway": {
                "inputUris": ["s3://media/connect/"],
                "settings": {"gateway_output_uri": "s3://media/connect/out/"},
            }
        },
    )
    assert (
        "gateway.outputUri s3://media/connect/out/ overlaps the ingest trigger s3://media/connect/" in message
    )
    message = rejection(chart, {"gateway": {"settings": {"gateway_input_uris": ["s3://soriflow-output/"]}}})
    assert "overlaps the ingest trigger s3://soriflow-output/" in message


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({}, False),  # 120 s > 60 s
        ({"gateway_visibility_timeout_s": 900, "gateway_lease_s": 300}, False),
        ({"gateway_visibility_timeout_s": 60}, True),  # equal to the default lease
        ({"gateway_lease_s": 300}, True),
    ],
    ids=str,
)
def test_the_chart_refuses_a_visibility_timeout_the_lease_outlasts(
    chart: ChartRenderer, settings: dict[str, Any], refused: bool
) -> None:
    """The same rule the gateway's settings enforce at start, so it fails at install, not in a CrashLoop."""
    from pydantic import ValidationError

    from soriflow.gateway.settings import Settings

    try:
        Settings(**settings)
        gateway_refuses = False
    except ValidationError:
        gateway_refuses = True
    assert gateway_refuses == refused
    values = {"gateway": {"settings": settings}}
    if refused:
        message = rejection(chart, values)
        assert "must be greater than gateway_lease_s" in message
        assert "Raise the visibility timeout or lower the lease" in message
    else:
        chart.render(values)


# --- shutdown: the pod's grace period covers the gateway's drain ------------------------------


def test_termination_grace_covers_the_configured_drain(
    rendered_set: tuple[str, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SIGTERM the gateway drains RPCs (grace_period_s), then its consumer and running jobs
    (grace_period_s); stage services drain RPCs once. Kubernetes kills the pod when
    terminationGracePeriodSeconds ends, so it must cover that plus a margin to hand work back."""
    name, rendered = rendered_set
    for component in COMPONENTS:
        settings = settings_of(component, component_env(rendered, component), monkeypatch)
        pod_grace = rendered.pod_spec(component)["terminationGracePeriodSeconds"]
        phases = 2 if component == "gateway" else 1
        assert settings.grace_period_s > 0, (name, component)
        assert pod_grace >= phases * settings.grace_period_s + SHUTDOWN_MARGIN_S, (
            name,
            component,
            pod_grace,
            settings.grace_period_s,
        )
    gateway = rendered.pod_spec("gateway")["terminationGracePeriodSeconds"]
    assert gateway > settings_of("gateway", component_env(rendered, "gateway"), monkeypatch).grace_period_s


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"gateway": {"gracePeriodSeconds": 60}},
            "gateway.terminationGracePeriodSeconds (70) must be at least 130",
        ),
        (
            {"gateway": {"settings": {"grace_period_s": 45}}},
            "gateway.terminationGracePeriodSeconds (70) must be at least 100",
        ),
        (
            {"gateway": {"terminationGracePeriodSeconds": 30}},
            "gateway.terminationGracePeriodSeconds (30) must be at least 70",
        ),
        (
            {"stt": {"terminationGracePeriodSeconds": 60}},
            "stt.terminationGracePeriodSeconds (60) must be at least 115",
        ),
    ],
    ids=["gateway-grace", "gateway-setting", "gateway-pod", "stt-pod"],
)
def test_a_grace_period_the_pod_cannot_honour_is_refused(
    chart: ChartRenderer, values: dict[str, Any], expected: str
) -> None:
    message = rejection(chart, values)
    assert expected in message
    assert "Raise terminationGracePeriodSeconds or lower the grace period" in message


def test_the_grace_period_reaches_the_settings(chart: ChartRenderer, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = chart.render({"gateway": {"gracePeriodSeconds": 50, "terminationGracePeriodSeconds": 110}})
    assert rendered.config("gateway")["SORIFLOW_GRACE_PERIOD_S"] == "50"
    assert rendered.pod_spec("gateway")["terminationGracePeriodSeconds"] == 110
    overridden = chart.render({"stt": {"settings": {"grace_period_s": 20}}})
    settings = settings_of("stt", component_env(overridden, "stt"), monkeypatch)
    assert settings.grace_period_s == 20


def test_config_map_of_the_pipelines_is_yaml_documents(chart: ChartRenderer) -> None:
    """The gateway splits the file on `\\n---` lines; every document must be one pipeline."""
    extra = {"name": "second", "stages": [{"name": "stt", "uses": "stt.recognize"}]}
    values = merged(
        value_set("keda"), {"gateway": {"pipelines": [*value_set("keda")["gateway"]["pipelines"], extra]}}
    )
    text = chart.render(values).get("ConfigMap", f"{FULLNAME}-pipelines")["data"]["pipelines.yaml"]
    documents = [d for d in text.split("\n---") if d.strip()]
    assert [yaml.safe_load(d)["name"] for d in documents] == ["meeting-notes", "second"]
