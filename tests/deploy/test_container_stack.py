"""The built images run the chart's release on this machine, and the demo's three jobs pass.

`make images-test` builds the images (`make images`) and runs this module with
SORIFLOW_CONTAINER_TESTS=1; elsewhere it is skipped, like the cluster test without a cluster.
moto and the five Deployments of the rendered chart (ci/cpu-values.yaml plus what a real
install sets: an auth token and AWS keys from Secrets, the queue and buckets) run as
containers with the pod specs' own env, args, ports, volumes, security contexts and memory
limits (tests/deploy/containers.py). The test waits for each to be SERVING through its
published gRPC port, then runs `soriflow demo`'s jobs against them: inputs synthesized by
the TTS container, uploaded to moto, the S3 events consumed by the gateway container, which
calls the stage containers by their Service names.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tests.deploy.conftest import COMPONENTS, ChartRenderer
from tests.deploy.containers import ContainerRelease

pytestmark = [
    pytest.mark.slow,
    pytest.mark.containers,
    pytest.mark.skipif(
        os.environ.get("SORIFLOW_CONTAINER_TESTS") != "1",
        reason="runs under `make images-test`, which builds the images first (SORIFLOW_CONTAINER_TESTS=1)",
    ),
]

STARTUP_TIMEOUT_S = float(os.environ.get("SORIFLOW_CONTAINER_STARTUP_TIMEOUT", "600"))
DEMO_TIMEOUT_S = float(os.environ.get("SORIFLOW_CONTAINER_DEMO_TIMEOUT", "480"))


@pytest.fixture(scope="module")
def release(chart: ChartRenderer) -> Iterator[ContainerRelease]:
    from scripts.images import find_engine, python_base

    engine = find_engine(need_run=True, install=False)
    running = ContainerRelease(engine, python_base(engine, os.environ.get("BASE", "auto")))
    try:
        running.start_aws(chart)
        deployments = running.deployments()
        assert set(COMPONENTS) <= set(deployments), deployments
        missing = running.missing_images(deployments)
        assert not missing, f"images not built: {missing} (make images)"
        startup = asyncio.run(running.start(deployments, STARTUP_TIMEOUT_S))
        print("container start -> SERVING:", startup)
        yield running
    finally:
        running.close()


def test_every_container_runs_as_the_chart_says(release: ContainerRelease) -> None:
    """uid 10001, read-only root, no capabilities, and the pod's volumes the only writable places."""
    assert release.containers is not None
    for component, pod in release.containers.pods.items():
        probe = (
            "import os; print(os.getuid(), os.getgid()); "
            "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0]); "
            "import tempfile; tempfile.NamedTemporaryFile(dir='/tmp'); "
            "import pathlib; pathlib.Path(os.environ['SORIFLOW_CACHE_DIR'], 'probe').write_text('x'); "
            "\ntry:\n open('/opt/venv/probe', 'w')\nexcept OSError as e:\n print(e.errno)"
        )
        out = release.engine.run("exec", pod.container, "python", "-c", probe, capture=True).stdout.split()
        assert out == ["10001", "10001", "0000000000000000", "30"], (component, out)  # 30: EROFS


def test_the_helm_test_pod_finds_every_component_serving(release: ContainerRelease) -> None:
    """The chart's `helm test` hook (the gateway image's `soriflow health` against each Service
    name, as the release's test pod) run as containers on the release's network."""
    assert release.containers is not None
    assert release.rendered is not None
    [pod] = release.rendered.kind("Pod")
    results = release.containers.run_pod("Pod", pod["metadata"]["name"])
    assert set(COMPONENTS) <= set(results), results
    for component, (code, output) in results.items():
        assert code == 0, (component, output)
        assert "SERVING" in output, (component, output)


def test_the_demo_jobs_succeed_in_the_containers(
    release: ContainerRelease, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soriflow.demo import Demo, report_all, run_jobs

    assert release.aws is not None
    monkeypatch.setenv("SORIFLOW_AUTH_TOKEN", release.token)  # the demo's clients send it
    console = Console(record=True, width=120)
    demo = Demo(release.aws, tmp_path / "demo-output", console)
    jobs = asyncio.run(run_jobs(demo, DEMO_TIMEOUT_S))
    status = report_all(demo, jobs)
    assert status == 0, console.export_text()[-4000:]
    outputs = {job.name: sorted(o.name for o in job.job.outputs) for job in jobs}
    assert "summary.json" in outputs["call"], outputs
    assert "reply.wav" in outputs["call"], outputs
    assert "reply.wav" in outputs["unclear-call"], outputs  # the safe reply
    assert "score.json" in outputs["pronunciation"], outputs
    assert "subtitles.srt" in outputs["transcribe"], outputs
