"""The built images run the chart's release on this machine, and the demo's three jobs pass.

`make images-test` builds the images (`make images`) and runs this module with
SORIFLOW_CONTAINER_TESTS=1; elsewhere it is skipped, like the cluster test without a cluster.
moto, PostgreSQL and the five Deployments of the rendered chart (ci/cpu-values.yaml plus what a
real install sets: an auth token, AWS keys and the job store's URL from Secrets, the queue and
buckets) run as containers with the pod specs' own env, args, ports, volumes, security contexts
and memory limits (tests/deploy/containers.py). As Helm does, the pre-install hook (the Job
that runs `soriflow db upgrade`) runs to completion first; the gateway then starts without
migrating, so it would refuse the empty database had the hook not run. The test waits for
each to be SERVING through its published gRPC port, then runs `soriflow demo`'s jobs against
them: inputs synthesized by the TTS container, uploaded to moto, the S3 events consumed by the
gateway container, which calls the stage containers by their Service names.
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
        assert running.containers is not None
        running.hook_results = running.containers.run_hooks("pre-install")
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


def test_the_migration_hook_made_the_schema_before_the_gateway_started(release: ContainerRelease) -> None:
    """The pre-install hook Job upgraded the empty database; the gateway, which runs with
    SORIFLOW_GATEWAY_DATABASE_UPGRADE=false, found the schema it needs; the next `helm
    upgrade`'s pre-upgrade hook finds nothing to do."""
    from soriflow.gateway.store import migrations

    assert release.rendered is not None
    assert release.containers is not None
    [job] = release.rendered.kind("Job")
    [(code, output)] = release.hook_results[job["metadata"]["name"]].values()
    assert code == 0, output
    assert f"upgraded from revision (empty) to {migrations.head()}" in output
    assert release.rendered.config("gateway")["SORIFLOW_GATEWAY_DATABASE_UPGRADE"] == "false"
    again = release.containers.run_hooks("pre-upgrade")
    [(code, output)] = again[job["metadata"]["name"]].values()
    assert code == 0, output
    assert "nothing to do" in output


def test_the_helm_test_pod_finds_every_component_serving(release: ContainerRelease) -> None:
    """The chart's `helm test` hook (the gateway image's `soriflow health` against each Service
    name, and `soriflow db current --check` against the job store, as the release's test pod)
    run as containers on the release's network."""
    assert release.containers is not None
    assert release.rendered is not None
    [pod] = release.rendered.kind("Pod")
    results = release.containers.run_pod("Pod", pod["metadata"]["name"])
    assert set(results) == {*COMPONENTS, "job-store"}, results
    for component, (code, output) in results.items():
        assert code == 0, (component, output)
        assert ("revision" if component == "job-store" else "SERVING") in output, (component, output)


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


def test_the_llama_image_summarizes_as_the_chart_runs_it(chart: ChartRenderer) -> None:
    """summarizer.engine=llama-cpp runs the `-cpu-llama` image (`make images LLAMA=1`, not part of
    `make images-test`: it compiles llama.cpp): its pod, as rendered, serves a summary from the
    bundled GGUF through llama.cpp."""
    from scripts.images import find_engine
    from soriflow.client import open_channel
    from soriflow.v1 import summarizer_pb2, summarizer_pb2_grpc
    from tests.deploy.conftest import merged
    from tests.deploy.containers import AUTH_SECRET, AWS_SECRET, ChartContainers, release_values
    from tests.deploy.containers import PublishedConfig as Config

    engine = find_engine(need_run=True, install=False)
    values = merged(
        release_values(Config(), "http://moto:5000/123456789012/unused", "localhost"),
        {"summarizer": {"engine": "llama-cpp", "gpu": {"enabled": False}}},
    )
    rendered = chart.render(values)
    image = rendered.container("summarizer")["image"]
    if not engine.image_exists(image):
        pytest.skip(f"{image} is not built (make images LLAMA=1)")
    token = "llama-test-token"
    secrets = {
        AUTH_SECRET: {"token": token},
        AWS_SECRET: {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"},
    }
    containers = ChartContainers(engine, rendered, secrets)
    try:
        containers.start("summarizer")
        asyncio.run(containers.wait_serving("summarizer", STARTUP_TIMEOUT_S))

        async def summarize() -> summarizer_pb2.SummarizeResponse:
            async with open_channel(containers.address("summarizer"), token=token) as channel:
                stub = summarizer_pb2_grpc.SummarizerServiceStub(channel)
                return await stub.Summarize(
                    summarizer_pb2.SummarizeRequest(
                        text="My car was hit from behind at a red light this morning and the bumper is "
                        "cracked. I would like to know whether my policy covers the repair.",
                        style=summarizer_pb2.SUMMARY_STYLE_ABSTRACT,
                        max_output_tokens=32,
                    ),
                    timeout=120,
                )

        response = asyncio.run(summarize())
    finally:
        containers.close()
    assert response.summary.strip()
    assert "llama-cpp" in (response.engine, response.rejected_engine), response
