"""How tests/deploy/containers.py turns the rendered pod specs into engine options (no engine needed).

The container test (`make images-test`) runs what this translation produces; here each part of
a pod spec is checked to come out as the option that does the same thing, and what it cannot
honour is refused.
"""

from __future__ import annotations

import copy
import subprocess
from typing import Any

import pytest

from scripts.images import Engine
from tests.deploy.conftest import COMPONENTS, FULLNAME, GRPC_PORTS, NAMESPACE, ChartRenderer, Rendered
from tests.deploy.containers import (
    AUTH_SECRET,
    AWS_SECRET,
    DB_SECRET,
    ChartContainers,
    PublishedConfig,
    Unsupported,
    quantity_bytes,
    release_values,
)

SECRETS = {
    AUTH_SECRET: {"token": "t0ken"},
    AWS_SECRET: {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"},
    DB_SECRET: {"url": "postgresql://postgres@postgres:5432/postgres"},
}


class RecordingEngine(Engine):
    """Answers like Podman without running anything; images run as USER 10001:10001."""

    def __init__(self) -> None:
        super().__init__("podman")
        self.calls: list[tuple[str, ...]] = []

    def run(
        self, *args: str, check: bool = True, capture: bool = False, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        stdout = "10001:10001\n" if args[:2] == ("image", "inspect") else ""
        return subprocess.CompletedProcess(["podman", *args], 0, stdout, "")


@pytest.fixture(scope="module")
def rendered(chart: ChartRenderer) -> Rendered:
    config = PublishedConfig(host="127.0.0.1", aws_port=1)
    return chart.render(release_values(config, "http://moto:5000/123456789012/soriflow-jobs", "localhost"))


def options(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_pod_becomes_a_locked_down_container(rendered: Rendered, component: str) -> None:
    engine = RecordingEngine()
    pod = ChartContainers(engine, rendered, SECRETS, prefix="t").pod(component)
    args = pod.run_args
    assert options(args, "--user") == ["10001:10001"]
    assert options(args, "--group-add") == ["10001"]  # fsGroup
    assert "--read-only" in args
    assert "--read-only-tmpfs=false" in args  # Podman would otherwise add writable /tmp and /run
    assert "--cap-drop=ALL" in args
    assert options(args, "--security-opt") == ["no-new-privileges"]
    limit = rendered.container(component)["resources"]["limits"]["memory"]
    assert options(args, "--memory") == [str(quantity_bytes(limit))]
    env = dict(e.split("=", 1) for e in options(args, "--env"))
    assert env["SORIFLOW_AUTH_TOKEN"] == "t0ken"  # secretKeyRef, from the test's Secret
    assert env["AWS_ACCESS_KEY_ID"] == "a"
    assert env["SORIFLOW_S3_ENDPOINT_URL"] == "http://moto:5000"  # envFrom the common ConfigMap
    assert (
        env[f"SORIFLOW_{component.upper()}_ADDRESS"]
        == f"{FULLNAME}-{component}.{NAMESPACE}.svc:{GRPC_PORTS[component]}"
    )
    assert env["HOME"] == "/tmp"  # env wins over the image
    mounts = {m.split(":")[1]: m for m in options(args, "--volume")}
    assert set(mounts) >= {"/tmp", "/var/cache/soriflow"}
    assert f"{FULLNAME}-{component}.{NAMESPACE}.svc" in pod.aliases
    assert pod.image == rendered.container(component)["image"]
    assert pod.image.startswith("localhost/soriflow-")
    assert pod.ports["grpc"] == GRPC_PORTS[component]
    assert pod.probe["grpc"]["port"] == GRPC_PORTS[component]
    # every emptyDir is a fresh tmpfs volume, group-owned by the pod's fsGroup
    creates = [c for c in engine.calls if c[:2] == ("volume", "create")]
    assert len(creates) == len(pod.volumes) == len(mounts)
    for call in creates:
        assert "o=mode=2777,gid=10001" in call


def test_the_gateway_gets_its_queue_and_store(rendered: Rendered) -> None:
    pod = ChartContainers(RecordingEngine(), rendered, SECRETS, prefix="t").pod("gateway")
    env = dict(e.split("=", 1) for e in options(pod.run_args, "--env"))
    assert env["SORIFLOW_GATEWAY_QUEUE_URL"] == "http://moto:5000/123456789012/soriflow-jobs"
    assert env["SORIFLOW_GATEWAY_DATABASE_URL"] == "postgresql://postgres@postgres:5432/postgres"
    assert env["SORIFLOW_GATEWAY_DATABASE_UPGRADE"] == "false"  # the hook Job migrates
    assert "/var/lib/soriflow" in {m.split(":")[1] for m in options(pod.run_args, "--volume")}


def test_install_hooks_run_first_as_containers_of_their_own(rendered: Rendered) -> None:
    engine = RecordingEngine()
    results = ChartContainers(engine, rendered, SECRETS, prefix="t").run_hooks("pre-install")
    assert list(results) == [f"{FULLNAME}-db-upgrade"]
    [run] = [c for c in engine.calls if c[:2] == ("run", "--rm")]
    assert run[-4:] == ("db", "upgrade", "--wait", "60")
    assert "--entrypoint" in run
    assert run[run.index("--entrypoint") + 1] == "soriflow"
    assert "SORIFLOW_GATEWAY_DATABASE_URL=postgresql://postgres@postgres:5432/postgres" in run
    assert "--read-only" in run
    assert not [c for c in engine.calls if "configmap" in " ".join(c).lower()]


def test_an_install_hook_that_needs_the_release_is_refused(rendered: Rendered) -> None:
    """Helm creates the release's ConfigMaps after the pre-install hooks: a hook using one is refused."""
    docs = copy.deepcopy(rendered.docs)
    job = next(d for d in docs if d["kind"] == "Job")
    _main(job)["envFrom"] = [{"configMapRef": {"name": f"{FULLNAME}-common"}}]
    broken = Rendered(rendered.values, {})
    broken.docs = docs
    with pytest.raises(Unsupported, match="pre-install hook uses ConfigMap"):
        ChartContainers(RecordingEngine(), broken, SECRETS, prefix="t").run_hooks("pre-install")
    # after the install (a pre-upgrade hook) the ConfigMap exists
    ChartContainers(RecordingEngine(), broken, SECRETS, prefix="t").run_hooks("pre-upgrade")


def test_a_failed_hook_stops_the_install(rendered: Rendered) -> None:
    class Failing(RecordingEngine):
        def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
            done = super().run(*args, **kwargs)
            if args[:2] == ("run", "--rm"):
                return subprocess.CompletedProcess(done.args, 69, "", "cannot reach the job store")
            return done

    with pytest.raises(RuntimeError, match="pre-install hook Job demo-soriflow-db-upgrade failed"):
        ChartContainers(Failing(), rendered, SECRETS, prefix="t").run_hooks("pre-install")


def _broken(rendered: Rendered, change: Any) -> Rendered:
    docs = copy.deepcopy(rendered.docs)
    broken = Rendered(rendered.values, {})
    broken.docs = docs
    change(next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{FULLNAME}-stt"))
    return broken


def _spec(d: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = d["spec"]["template"]["spec"]
    return spec


def _main(d: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _spec(d)["containers"][0]
    return container


@pytest.mark.parametrize(
    "change",
    [
        lambda d: _spec(d).update(hostNetwork=True),
        lambda d: _spec(d)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        lambda d: _main(d)["securityContext"].update(privileged=True),
        lambda d: _main(d)["securityContext"].update(procMount="Unmasked"),
        lambda d: _main(d)["resources"]["limits"].update({"nvidia.com/gpu": 1}),
        lambda d: _main(d)["env"].append({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}),
        lambda d: _main(d).update(lifecycle={}),
    ],
    ids=["hostNetwork", "hostPath", "privileged", "procMount", "gpu", "fieldRef", "lifecycle"],
)
def test_what_cannot_be_honoured_is_refused(rendered: Rendered, change: Any) -> None:
    with pytest.raises(Unsupported):
        ChartContainers(RecordingEngine(), _broken(rendered, change), SECRETS, prefix="t").pod("stt")


def test_a_missing_secret_is_an_error(rendered: Rendered) -> None:
    with pytest.raises(KeyError, match=AUTH_SECRET):
        ChartContainers(RecordingEngine(), rendered, {AWS_SECRET: SECRETS[AWS_SECRET]}, prefix="t").pod("tts")


def test_quantities() -> None:
    assert quantity_bytes("3Gi") == 3 * 2**30
    assert quantity_bytes("512Mi") == 512 * 2**20
    assert quantity_bytes("2G") == 2 * 10**9
    with pytest.raises(Unsupported):
        quantity_bytes("3 gigs")


def test_a_secret_the_chart_renders_is_used(rendered: Rendered) -> None:
    """A chart may render a Secret itself (a generated token): its data is read from the render."""
    docs = copy.deepcopy(rendered.docs)
    docs.append({"kind": "Secret", "metadata": {"name": AUTH_SECRET}, "data": {"token": "Z2VuZXJhdGVk"}})
    with_secret = Rendered(rendered.values, {})
    with_secret.docs = docs
    aws_only = {AWS_SECRET: SECRETS[AWS_SECRET]}
    pod = ChartContainers(RecordingEngine(), with_secret, aws_only, prefix="t").pod("tts")
    env = dict(e.split("=", 1) for e in options(pod.run_args, "--env"))
    assert env["SORIFLOW_AUTH_TOKEN"] == "generated"
