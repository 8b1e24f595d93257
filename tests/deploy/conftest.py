"""Rendering the Helm chart for the deploy tests, with Helm v4 itself (helm-python-sdk).

No cluster is needed: `Chart.render` runs Helm's real template engine and
values.schema.json validation offline. Each value set is rendered once per
session and shared by the tests that inspect it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "soriflow"
CI_VALUES = CHART / "ci"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

RELEASE = "demo"
NAMESPACE = "speech"
FULLNAME = f"{RELEASE}-soriflow"
COMPONENTS = ("gateway", "stt", "scoring", "summarizer", "tts")
STAGES = ("stt", "scoring", "summarizer", "tts")
GPU_COMPONENTS = ("stt", "summarizer")
GRPC_PORTS = {"gateway": 50050, "stt": 50051, "scoring": 50052, "summarizer": 50053, "tts": 50054}
METRICS_PORTS = {"gateway": 9150, "stt": 9151, "scoring": 9152, "summarizer": 9153, "tts": 9154}


#: What a Secret referenced by the chart holds, in the form the setting checks (for settings tests).
SECRET_PLACEHOLDERS = {
    "SORIFLOW_GATEWAY_WEBHOOK_SECRET": "whsec_" + "c29yaWZsb3ctdGVzdC13ZWJob29rLXNlY3JldC0zMmI=",
}


def secret_placeholder(name: str) -> str:
    return SECRET_PLACEHOLDERS.get(name, "from-a-secret")


def value_set(name: str) -> dict[str, Any]:
    """The values of a named set: `default` (none given) or a file under the chart's ci/."""
    if name == "default":
        return {}
    loaded: dict[str, Any] = yaml.safe_load((CI_VALUES / f"{name}-values.yaml").read_text())
    return loaded


VALUE_SETS = (
    "default",
    *sorted(p.name.removesuffix("-values.yaml") for p in CI_VALUES.glob("*-values.yaml")),
)


@dataclass
class Rendered:
    """One render of the chart: template outputs and the parsed manifests."""

    values: dict[str, Any]
    files: dict[str, str]
    docs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path, text in sorted(self.files.items()):
            if not path.endswith(".yaml"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.docs.append(doc)

    @property
    def notes(self) -> str:
        return self.files.get("soriflow/templates/NOTES.txt", "")

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        for doc in self.kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        return None

    def get(self, kind: str, name: str) -> dict[str, Any]:
        doc = self.find(kind, name)
        assert doc is not None, f"no {kind} {name} in {[d['metadata']['name'] for d in self.kind(kind)]}"
        return doc

    def deployment(self, component: str) -> dict[str, Any]:
        return self.get("Deployment", f"{FULLNAME}-{component}")

    def pod_spec(self, component: str) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment(component)["spec"]["template"]["spec"]
        return spec

    def container(self, component: str) -> dict[str, Any]:
        containers = self.pod_spec(component)["containers"]
        assert [c["name"] for c in containers] == [component]
        container: dict[str, Any] = containers[0]
        return container

    def config(self, component: str) -> dict[str, str]:
        """The SORIFLOW_* settings a component's container gets from its ConfigMaps."""
        common = self.get("ConfigMap", f"{FULLNAME}-common")["data"]
        own = self.get("ConfigMap", f"{FULLNAME}-{component}")["data"]
        return {**common, **own}

    def pods(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every pod spec the release creates: Deployments' and Jobs' templates, the test pod."""
        for kind in ("Deployment", "Job"):
            for doc in self.kind(kind):
                yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        for pod in self.kind("Pod"):
            yield pod["metadata"]["name"], pod["spec"]

    def hooks(self, event: str) -> list[dict[str, Any]]:
        """The hook objects Helm runs at `event` (pre-install, pre-upgrade, test, ...), in Helm's
        order: by helm.sh/hook-weight, then kind, then name."""
        found = []
        for doc in self.docs:
            annotations = doc["metadata"].get("annotations") or {}
            events = [e.strip() for e in annotations.get("helm.sh/hook", "").split(",")]
            if event in events:
                found.append((int(annotations.get("helm.sh/hook-weight", "0")), doc["kind"], doc))
        found.sort(key=lambda item: (item[0], item[1], item[2]["metadata"]["name"]))
        return [doc for _, _, doc in found]


class ChartRenderer:
    """A loaded chart that renders value sets (Helm's own engine and schema check)."""

    def __init__(self) -> None:
        import helm_python as helm

        self._chart = helm.Chart.load(CHART)
        self._cache: dict[str, Rendered] = {}

    def render(self, values: dict[str, Any] | None = None) -> Rendered:
        values = values or {}
        key = json.dumps(values, sort_keys=True)
        if key not in self._cache:
            files = self._chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            self._cache[key] = Rendered(values, files)
        return self._cache[key]

    def validate_schema(self, values: dict[str, Any]) -> None:
        self._chart.validate_schema(values)

    def close(self) -> None:
        self._chart.close()


@pytest.fixture(scope="session")
def chart() -> Iterator[ChartRenderer]:
    renderer = ChartRenderer()
    yield renderer
    renderer.close()


@pytest.fixture(scope="session", params=VALUE_SETS)
def rendered_set(request: pytest.FixtureRequest, chart: ChartRenderer) -> tuple[str, Rendered]:
    """Each value set's render, as (name, render)."""
    name: str = request.param
    return name, chart.render(value_set(name))


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of value dicts (later wins), as Helm merges -f files."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out
