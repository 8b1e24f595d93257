"""The chart lints clean and every manifest it renders is valid for the Kubernetes API.

Built-in kinds are validated with kubernetes-validate against the newest
Kubernetes schemas it bundles, in strict mode (unknown fields are errors).
KEDA's and prometheus-operator's custom resources are validated against the
schemas in tests/deploy/schemas/, written from those projects' CRDs.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.conftest import CHART, NAMESPACE, SCHEMAS, VALUE_SETS, ChartRenderer, Rendered, value_set

KUBE_VERSION = kubernetes_validate.utils.latest_version()
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


@cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    path = SCHEMAS / f"{api_version.replace('/', '_')}_{kind}.json"
    return jsonschema.Draft7Validator(json.loads(path.read_text()))


@cache
def _sqs_metadata_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads((SCHEMAS / "keda_aws-sqs-queue_metadata.json").read_text()))


def validate_manifest(doc: dict[str, Any]) -> None:
    """Raises if `doc` would be refused (or, for CRDs, misread) by the cluster."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CUSTOM_KINDS:
        _crd_validator(*key).validate(doc)
        for trigger in doc["spec"].get("triggers", []):
            if trigger["type"] == "aws-sqs-queue":
                _sqs_metadata_validator().validate(trigger["metadata"])
        return
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_kubernetes_schemas_are_the_newest_bundled() -> None:
    versions = kubernetes_validate.utils.all_versions()
    assert versions[-1] == KUBE_VERSION
    assert tuple(int(x) for x in KUBE_VERSION.split(".")[:2]) >= (1, 33)


def test_every_manifest_is_valid(rendered_set: tuple[str, Rendered]) -> None:
    name, rendered = rendered_set
    assert rendered.docs, f"{name}: nothing rendered"
    problems = []
    for doc in rendered.docs:
        try:
            validate_manifest(doc)
        except (kubernetes_validate.utils.ValidationError, jsonschema.ValidationError) as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_every_object_is_namespaced_and_labelled(rendered_set: tuple[str, Rendered]) -> None:
    _, rendered = rendered_set
    for doc in rendered.docs:
        meta = doc["metadata"]
        assert meta["namespace"] == NAMESPACE, meta["name"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "demo"
        assert meta["labels"]["app.kubernetes.io/part-of"] == "soriflow"
        assert len(meta["name"]) <= 63, meta["name"]


@pytest.mark.parametrize(
    ("kind", "break_it", "expected"),
    [
        ("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(portz=[]), "portz"),
        (
            "Deployment",
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="grpc"),
            "containerPort",
        ),
        ("NetworkPolicy", lambda d: d["spec"].update(policyTypes="Ingress"), "policyTypes"),
        ("ScaledObject", lambda d: d["spec"].pop("triggers"), "triggers"),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0]["metadata"].update(queueLength=8), "queueLength"),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0]["metadata"].pop("awsRegion"), "awsRegion"),
        ("TriggerAuthentication", lambda d: d["spec"]["podIdentity"].update(provider="aws-irsa"), "aws-irsa"),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds"), "30 seconds"),
    ],
)
def test_the_validation_catches_broken_manifests(
    chart: ChartRenderer, kind: str, break_it: Any, expected: str
) -> None:
    """The validators are not vacuous: a broken copy of a rendered object is refused."""
    rendered = chart.render(value_set("keda"))
    doc = copy.deepcopy(rendered.kind(kind)[0])
    validate_manifest(doc)
    break_it(doc)
    with pytest.raises((kubernetes_validate.utils.ValidationError, jsonschema.ValidationError)) as info:
        validate_manifest(doc)
    assert expected in str(info.value)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_is_clean(name: str) -> None:
    import helm_python as helm

    report = helm.lint(CHART, value_set(name) or None, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_helm_lint_reports_bad_values() -> None:
    import helm_python as helm

    report = helm.lint(CHART, {"stt": {"replicas": -1}}, strict=True, namespace=NAMESPACE)
    assert any("/stt/replicas" in error for error in report["errors"])
