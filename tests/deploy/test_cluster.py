"""End to end on a real cluster: install the chart, wait for the rollout, `helm test`, run a job.

Skipped unless KUBECONFIG names a cluster (there is none where the unit tests run).
The images must be pullable by the cluster (`make images` and push, or load them into
kind). docs/deploy.md ("Testing on a cluster") has the commands. Knobs:

- SORIFLOW_E2E_IMAGE_REGISTRY / SORIFLOW_E2E_IMAGE_TAG: where the images are
  (default: the chart's registry and appVersion);
- SORIFLOW_E2E_VALUES: a values file merged over ci/cpu-values.yaml (e.g. GPUs on);
- SORIFLOW_E2E_TIMEOUT: seconds for the install and each wait (default 1200);
- SORIFLOW_E2E_KEEP=1: leave the namespace for inspection.

The cluster needs no AWS: an S3-compatible moto server runs in the test namespace,
with throwaway credentials in a Secret. It comes from moto's own image
(SORIFLOW_E2E_MOTO_IMAGE, default MOTO_IMAGE below; load it into kind beside the
Soriflow images), not from the gateway image, which does not ship moto.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, CI_VALUES, COMPONENTS, merged

KUBECONFIG = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not any(Path(p).is_file() for p in KUBECONFIG),
        reason="no Kubernetes cluster configured: set KUBECONFIG (docs/deploy.md, 'Testing on a cluster')",
    ),
]

TIMEOUT = int(os.environ.get("SORIFLOW_E2E_TIMEOUT", "1200"))
# moto's published server image, at the moto version the dev extra installs here.
MOTO_IMAGE = os.environ.get("SORIFLOW_E2E_MOTO_IMAGE", "docker.io/motoserver/moto:5.2.5")
RELEASE = "e2e"
FULLNAME = f"{RELEASE}-soriflow"
BUCKETS = ["s3://soriflow-e2e-input/submissions/", "s3://soriflow-e2e-output/results/"]
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def wait_for(what: str, check: Callable[[], bool], timeout: float = TIMEOUT, interval: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        time.sleep(interval)


class Cluster:
    """The few Kubernetes calls the test needs, on one namespace."""

    def __init__(self, namespace: str) -> None:
        from kubernetes import client, config

        load: Callable[..., None] = config.load_kube_config  # untyped in the client
        load(config_file=next(p for p in KUBECONFIG if Path(p).is_file()))
        self.namespace = namespace
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.batch = client.BatchV1Api()

    def apply(self, manifest: dict[str, Any]) -> None:
        from kubernetes import utils
        from kubernetes.client import ApiClient

        create: Callable[..., object] = utils.create_from_dict  # untyped in the client
        create(ApiClient(), manifest, namespace=self.namespace)

    def deployments_ready(self, selector: str) -> bool:
        items = self.apps.list_namespaced_deployment(self.namespace, label_selector=selector).to_dict()[
            "items"
        ]

        def ready(d: dict[str, Any]) -> bool:
            wanted = d["spec"].get("replicas") or 1
            status = d.get("status") or {}
            return bool(
                (status.get("ready_replicas") or 0) >= wanted
                and (status.get("updated_replicas") or 0) >= wanted
            )

        return bool(items) and all(ready(d) for d in items)

    def run_job(
        self,
        name: str,
        image: str,
        args: list[str],
        labels: dict[str, str],
        env_from: list[dict[str, Any]],
        script: str,
        env: list[dict[str, Any]] | None = None,
    ) -> str:
        """Runs `python /e2e/e2e_job.py ARGS` as a Job; returns its log, raising if it failed."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-script"},
                "data": {"e2e_job.py": script},
            }
        )
        self.apply(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "restartPolicy": "Never",
                            "automountServiceAccountToken": False,
                            "enableServiceLinks": False,
                            "securityContext": POD_SECURITY,
                            "containers": [
                                {
                                    "name": "job",
                                    "image": image,
                                    "command": ["python", "/e2e/e2e_job.py", *args],
                                    "envFrom": env_from,
                                    "env": [{"name": "HOME", "value": "/tmp"}, *(env or [])],
                                    "securityContext": CONTAINER_SECURITY,
                                    "volumeMounts": [
                                        {"name": "script", "mountPath": "/e2e"},
                                        {"name": "tmp", "mountPath": "/tmp"},
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "script", "configMap": {"name": f"{name}-script"}},
                                {"name": "tmp", "emptyDir": {}},
                            ],
                        },
                    },
                },
            }
        )

        def status() -> dict[str, Any]:
            job: dict[str, Any] = self.batch.read_namespaced_job_status(name, self.namespace).to_dict()
            return job.get("status") or {}

        def finished() -> bool:
            return bool(status().get("succeeded") or status().get("failed"))

        wait_for(f"job {name}", finished, interval=3)
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}").to_dict()[
            "items"
        ]
        log = "".join(
            str(self.core.read_namespaced_pod_log(p["metadata"]["name"], self.namespace)) for p in pods
        )
        assert status().get("succeeded"), f"job {name} failed:\n{log}"
        return str(log)


def e2e_values(moto_url: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CI_VALUES / "cpu-values.yaml").read_text())
    credentials = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": "e2e-moto-credentials", "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    values = merged(
        values,
        {
            "aws": {"s3EndpointUrl": moto_url},
            "gateway": {"submissionsUri": BUCKETS[0], "outputUri": BUCKETS[1]},
            **{name: {"extraEnv": credentials} for name in COMPONENTS},
        },
    )
    image: dict[str, str] = {}
    if os.environ.get("SORIFLOW_E2E_IMAGE_REGISTRY"):
        image["registry"] = os.environ["SORIFLOW_E2E_IMAGE_REGISTRY"]
    if os.environ.get("SORIFLOW_E2E_IMAGE_TAG"):
        image["tag"] = os.environ["SORIFLOW_E2E_IMAGE_TAG"]
    if image:
        values = merged(values, {"image": image})
    if os.environ.get("SORIFLOW_E2E_VALUES"):
        values = merged(values, yaml.safe_load(Path(os.environ["SORIFLOW_E2E_VALUES"]).read_text()))
    return values


@pytest.fixture(scope="module")
def installed() -> Iterator[tuple[Cluster, Any, dict[str, Any]]]:
    import helm_python as helm

    namespace = f"soriflow-e2e-{secrets.token_hex(3)}"
    cluster = Cluster(namespace)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"soriflow.io/e2e": "true"}},
        }
    )
    config = helm.Config(
        kubeconfig_path=next(p for p in KUBECONFIG if Path(p).is_file()), namespace=namespace
    )
    try:
        # moto stands in for S3: throwaway credentials, reachable only inside the namespace
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "e2e-moto-credentials"},
                "stringData": {"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e"},
            }
        )
        values = e2e_values(f"http://moto.{namespace}.svc:5000")
        with helm.Chart.load(CHART) as chart:
            registry = chart.merge_values(values)["image"]["registry"]
            tag = values.get("image", {}).get("tag") or chart.metadata["appVersion"]
        gateway_image = f"{registry}/soriflow-gateway:{tag}"
        moto_labels = {"app.kubernetes.io/name": "e2e-moto"}
        cluster.apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "moto", "labels": moto_labels},
                "spec": {
                    "selector": {"matchLabels": moto_labels},
                    "template": {
                        "metadata": {"labels": moto_labels},
                        "spec": {
                            "securityContext": POD_SECURITY,
                            "automountServiceAccountToken": False,
                            "containers": [
                                {
                                    "name": "moto",
                                    "image": MOTO_IMAGE,
                                    "command": ["moto_server", "-H", "0.0.0.0", "-p", "5000"],
                                    "ports": [{"containerPort": 5000, "name": "s3"}],
                                    "readinessProbe": {"tcpSocket": {"port": 5000}, "periodSeconds": 2},
                                    "securityContext": CONTAINER_SECURITY,
                                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                                }
                            ],
                            "volumes": [{"name": "tmp", "emptyDir": {}}],
                        },
                    },
                },
            }
        )
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "moto"},
                "spec": {"selector": moto_labels, "ports": [{"port": 5000, "targetPort": "s3"}]},
            }
        )
        wait_for("moto", lambda: cluster.deployments_ready("app.kubernetes.io/name=e2e-moto"))
        credentials = [{"secretRef": {"name": "e2e-moto-credentials"}}]
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "e2e-s3"},
                "data": {"SORIFLOW_S3_ENDPOINT_URL": values["aws"]["s3EndpointUrl"]},
            }
        )
        cluster.run_job(
            "e2e-buckets",
            gateway_image,
            ["--create-buckets", *BUCKETS],
            {"app": "e2e-setup"},
            [*credentials, {"configMapRef": {"name": "e2e-s3"}}],
            Path(__file__).with_name("e2e_job.py").read_text(),
        )

        release = config.install(str(CHART), RELEASE, values, wait="watcher", timeout=TIMEOUT)
        assert release["status"] == "deployed"
        yield cluster, config, {"values": values, "gateway_image": gateway_image}
    finally:
        if os.environ.get("SORIFLOW_E2E_KEEP") != "1":
            config.uninstall(RELEASE, ignore_not_found=True, wait="watcher", timeout=300)
            cluster.core.delete_namespace(namespace)
        config.close()


def test_every_component_rolls_out(installed: tuple[Cluster, Any, dict[str, Any]]) -> None:
    cluster, _, _ = installed
    wait_for("rollout", lambda: cluster.deployments_ready(f"app.kubernetes.io/instance={RELEASE}"))
    deployments = cluster.apps.list_namespaced_deployment(
        cluster.namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}"
    ).to_dict()["items"]
    names = {d["metadata"]["name"] for d in deployments}
    assert names == {f"{FULLNAME}-{c}" for c in COMPONENTS}


def test_helm_test_reports_every_component_serving(installed: tuple[Cluster, Any, dict[str, Any]]) -> None:
    cluster, config, _ = installed
    result = config.test(RELEASE, timeout=600, logs=True)  # raises if any check failed
    logs = str(result.get("logs", ""))
    for component in COMPONENTS:
        assert f"{FULLNAME}-{component}.{cluster.namespace}.svc" in logs, logs
    assert logs.count(": SERVING") == len(COMPONENTS), logs


def test_a_job_runs_through_the_gateway(installed: tuple[Cluster, Any, dict[str, Any]]) -> None:
    cluster, _, setup = installed
    labels = {  # the chart's NetworkPolicies let this release's test pods call the gateway and the stages
        "app.kubernetes.io/name": "soriflow",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "test",
    }
    log = cluster.run_job(
        "e2e-transcribe",
        setup["gateway_image"],
        [
            "--gateway",
            f"{FULLNAME}-gateway.{cluster.namespace}.svc:50050",
            "--tts",
            f"{FULLNAME}-tts.{cluster.namespace}.svc:50054",
            "--timeout",
            "900",
        ],
        labels,
        [{"configMapRef": {"name": f"{FULLNAME}-common"}}, {"secretRef": {"name": "e2e-moto-credentials"}}],
        Path(__file__).with_name("e2e_job.py").read_text(),
        # the token the chart generated at install: the API requires it
        env=[
            {
                "name": "SORIFLOW_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": f"{FULLNAME}-auth", "key": "token"}},
            }
        ],
    )
    assert '"state": "JOB_STATE_SUCCEEDED"' in log, log
