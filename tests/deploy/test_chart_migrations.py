"""The job store's schema migrations in the chart: a pre-install/pre-upgrade hook Job runs
`soriflow db upgrade` against a PostgreSQL store and the gateways start without migrating;
the embedded SQLite store (a file in the gateway pod's emptyDir) keeps upgrading at start.

A pre-install hook runs before any object of the release exists, so the Job may use only what
the operator created beforehand: that is checked on every value set. The rendered command is
run against the machine's real PostgreSQL, and the gateway's own store then opens the database
with the settings the chart gives it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import FULLNAME, ChartRenderer, Rendered, merged, value_set

JOB = f"{FULLNAME}-db-upgrade"
POSTGRES = {"gateway": {"database": {"existingSecret": "soriflow-db"}}}
HOOK_ANNOTATIONS = {
    "helm.sh/hook": "pre-install,pre-upgrade",
    "helm.sh/hook-weight": "-10",
    "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def job_container(rendered: Rendered) -> dict[str, Any]:
    [container] = rendered.get("Job", JOB)["spec"]["template"]["spec"]["containers"]
    return container


def test_a_postgresql_store_is_upgraded_by_a_hook_job_before_the_gateways(chart: ChartRenderer) -> None:
    rendered = chart.render(POSTGRES)
    job = rendered.get("Job", JOB)
    assert job["metadata"]["annotations"] == HOOK_ANNOTATIONS
    assert rendered.hooks("pre-install") == rendered.hooks("pre-upgrade") == [job]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 600
    container = job_container(rendered)
    gateway = rendered.container("gateway")
    assert container["image"] == gateway["image"]  # the revisions the new gateways need
    assert container["command"] == ["soriflow", "db", "upgrade"]
    assert container["args"] == ["--wait", "60"]
    url = env_of(container)["SORIFLOW_GATEWAY_DATABASE_URL"]
    assert url["valueFrom"] == {"secretKeyRef": {"name": "soriflow-db", "key": "url"}}
    assert url == env_of(gateway)["SORIFLOW_GATEWAY_DATABASE_URL"]
    # the gateway pod's security, as the other pods
    assert pod["securityContext"] == rendered.pod_spec("gateway")["securityContext"]
    assert container["securityContext"] == gateway["securityContext"]
    # ... and the gateways never migrate: they refuse a schema they were not built for
    assert rendered.config("gateway")["SORIFLOW_GATEWAY_DATABASE_UPGRADE"] == "false"


def test_the_job_uses_the_gateway_s_placement_and_the_operator_s_extra_env(chart: ChartRenderer) -> None:
    extra = [{"name": "PGSSLMODE", "value": "require"}]
    rendered = chart.render(
        merged(
            POSTGRES,
            {
                "gateway": {
                    "extraEnv": extra,
                    "nodeSelector": {"pool": "system"},
                    "priorityClassName": "soriflow-high",
                    "database": {
                        "key": "dsn",
                        "migrations": {"waitSeconds": 120, "backoffLimit": 0, "activeDeadlineSeconds": 90},
                    },
                },
                "imagePullSecrets": [{"name": "regcred"}],
            },
        )
    )
    job = rendered.get("Job", JOB)
    pod = job["spec"]["template"]["spec"]
    container = job_container(rendered)
    assert env_of(container)["PGSSLMODE"] == extra[0]
    assert env_of(container)["SORIFLOW_GATEWAY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "dsn"
    assert container["args"] == ["--wait", "120"]
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 90)
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["priorityClassName"] == "soriflow-high"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.parametrize(
    ("values", "upgrade_at_start"),
    [
        ({}, "SQLite in the pod's emptyDir"),
        (merged(POSTGRES, {"gateway": {"database": {"migrations": {"mode": "start"}}}}), "mode start"),
        (merged(POSTGRES, {"gateway": {"enabled": False}}), None),
    ],
    ids=["sqlite", "start", "no-gateway"],
)
def test_no_hook_where_the_gateway_upgrades_at_start(
    chart: ChartRenderer, values: dict[str, Any], upgrade_at_start: str | None
) -> None:
    rendered = chart.render(values)
    assert rendered.kind("Job") == []
    assert rendered.hooks("pre-install") == rendered.hooks("pre-upgrade") == []
    if upgrade_at_start:  # the setting's default (true) applies
        assert "SORIFLOW_GATEWAY_DATABASE_UPGRADE" not in rendered.config("gateway")


def _references(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every object a pod spec names: ConfigMaps, Secrets, its ServiceAccount."""
    found: set[tuple[str, str]] = set()
    if spec.get("serviceAccountName"):
        found.add(("ServiceAccount", spec["serviceAccountName"]))
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            found.add(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"]))
        if "persistentVolumeClaim" in volume:
            found.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for source in container.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source:
                    found.add((kind, source[key]["name"]))
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {})
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if key in ref:
                    found.add((kind, ref[key]["name"]))
    return found


def _install_hook_problems(rendered: Rendered) -> list[str]:
    release_objects = {
        (d["kind"], d["metadata"]["name"])
        for d in rendered.docs
        if "helm.sh/hook" not in (d["metadata"].get("annotations") or {})
    }
    problems = []
    for hook in rendered.hooks("pre-install"):
        spec = hook["spec"]["template"]["spec"] if hook["kind"] == "Job" else hook["spec"]
        for kind, name in sorted(_references(spec) & release_objects):
            problems.append(f"{hook['kind']} {hook['metadata']['name']} needs {kind} {name}")
    return problems


def test_install_hooks_use_only_what_exists_before_the_release(rendered_set: tuple[str, Rendered]) -> None:
    """Helm creates the release's objects after its pre-install hooks: a hook that named the
    chart's ConfigMaps, its generated token Secret or its ServiceAccount would never start."""
    name, rendered = rendered_set
    assert _install_hook_problems(rendered) == [], name


@pytest.mark.parametrize(
    ("values", "account"),
    [
        ({}, None),  # the chart creates the account: the namespace's default, which exists
        ({"serviceAccount": {"create": False, "name": "speech-jobs"}}, "speech-jobs"),
        ({"gateway": {"serviceAccountName": "gateway-irsa"}}, "gateway-irsa"),
    ],
    ids=["chart-account", "existing-account", "gateway-account"],
)
def test_the_job_runs_under_an_account_that_already_exists(
    chart: ChartRenderer, values: dict[str, Any], account: str | None
) -> None:
    rendered = chart.render(merged(POSTGRES, values))
    spec = rendered.get("Job", JOB)["spec"]["template"]["spec"]
    assert spec.get("serviceAccountName") == account
    assert spec["automountServiceAccountToken"] is False
    assert _install_hook_problems(rendered) == []


def test_the_check_catches_a_hook_that_needs_the_release(chart: ChartRenderer) -> None:
    """Not vacuous: the Job pointed at the chart's own ConfigMap or token Secret is caught."""
    rendered = chart.render(POSTGRES)
    container = job_container(rendered)
    container["envFrom"] = [{"configMapRef": {"name": f"{FULLNAME}-common"}}]
    container["env"].append(
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": f"{FULLNAME}-auth", "key": "token"}}}
    )
    try:
        assert _install_hook_problems(rendered) == [
            f"Job {JOB} needs ConfigMap {FULLNAME}-common",
            f"Job {JOB} needs Secret {FULLNAME}-auth",
        ]
    finally:
        container.pop("envFrom")
        container["env"].pop()


def test_notes_name_the_job(chart: ChartRenderer) -> None:
    assert f"kubectl -n speech logs job/{JOB}" in chart.render(POSTGRES).notes
    assert "db-upgrade" not in chart.render().notes


def test_the_migration_values_are_checked(chart: ChartRenderer) -> None:
    import helm_python as helm

    for bad, where in [
        ({"mode": "init"}, "/gateway/database/migrations/mode"),
        ({"backoffLimit": -1}, "/gateway/database/migrations/backoffLimit"),
        ({"activeDeadlineSeconds": 0}, "/gateway/database/migrations/activeDeadlineSeconds"),
    ]:
        with pytest.raises(helm.HelmValuesError) as info:
            chart.render({"gateway": {"database": {"migrations": bad}}})
        assert where in str(info.value)


# --- the rendered command against a real PostgreSQL -------------------------------------------


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    import psycopg

    name = f"soriflow_chart_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_container(container: dict[str, Any], secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The container's command and args with its env (secret references resolved), on this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SORIFLOW_")}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[f"{ref['name']}/{ref['key']}"]
    env["HOME"] = str(Path.home())  # the pod's /tmp volume is this machine's home
    command = [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:]]
    return subprocess.run(
        [*command, *container.get("args", [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_hook_upgrades_the_store_the_gateway_then_opens_without_migrating(
    chart: ChartRenderer, empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soriflow.errors import SoriflowError
    from soriflow.gateway.store import JobStore, migrations
    from tests.deploy.test_chart_config import component_env, settings_of

    rendered = chart.render(value_set("keda"))  # a production value set with a PostgreSQL Secret
    secrets = {"soriflow-db/url": empty_database}

    def gateway_opens() -> None:
        env = component_env(rendered, "gateway") | {"SORIFLOW_GATEWAY_DATABASE_URL": empty_database}
        settings = settings_of("gateway", env, monkeypatch)
        assert settings.gateway_database_upgrade is False
        JobStore.open(settings.gateway_database_url, upgrade=settings.gateway_database_upgrade).close()

    with pytest.raises(SoriflowError, match="soriflow db upgrade"):  # before the hook: refused
        gateway_opens()
    first = _run_container(job_container(rendered), secrets)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from revision (empty) to {migrations.head()}" in first.stdout
    assert "soriflow_chart_" in first.stdout  # the database is named, its password never
    gateway_opens()
    again = _run_container(job_container(rendered), secrets)  # the next helm upgrade's hook
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    [check] = [
        c
        for c in rendered.get("Pod", f"{FULLNAME}-test-health")["spec"]["containers"]
        if c["name"] == "job-store"
    ]
    assert _run_container(check, secrets).returncode == 0  # `helm test` agrees


def test_the_hook_fails_with_one_line_when_the_database_is_down(chart: ChartRenderer) -> None:
    from tests.conftest import free_port

    rendered = chart.render(merged(POSTGRES, {"gateway": {"database": {"migrations": {"waitSeconds": 1}}}}))
    down = f"postgresql://soriflow:hunter2@127.0.0.1:{free_port()}/jobs"
    result = _run_container(job_container(rendered), {"soriflow-db/url": down})
    assert result.returncode == 69  # EX_UNAVAILABLE: Kubernetes retries the pod (backoffLimit)
    assert "cannot reach the job store" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
