"""Image sizes and cold starts: each service's container from `run` to SERVING, against the same
service started as a plain process in the same run.

Per component and round, alternately:

- container: the chart's pod as a container (tests/deploy/containers.py: the rendered env and
  args, read-only root, uid 10001, fresh emptyDir volumes, its memory limit), timed from the
  engine's `run` to gRPC SERVING through the published port;
- process: `soriflow serve <component>` from this checkout's virtualenv with the same rendered
  settings (ports, AWS endpoint and cache folder made local; a fresh, empty cache folder like
  the container's emptyDir), timed from spawn to SERVING.

Both find the image's or the venv's files in the page cache after the first round, so the
ratio is what the container itself adds at start. moto runs in a container for both (the
gateway checks its queue at start). Needs the images (`make images`) and Docker or Podman.

    python -m bench.images_cold_start --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import median, report
from scripts.images import find_engine, python_base
from soriflow.client import wait_for_serving
from tests.conftest import free_port
from tests.deploy.conftest import COMPONENTS, ChartRenderer
from tests.deploy.containers import ContainerRelease


async def process_start(
    env: dict[str, str], component: str, port: int, folder: Path, timeout_s: float
) -> float:
    """Seconds from spawning `soriflow serve` to SERVING; the process is stopped again."""
    log_path = folder / f"{component}.log"
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - the child's log, opened before it starts
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "soriflow.cli.main", "serve", component, env=env, stdout=log, stderr=log
        )
        try:
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"{component} exited: {log_path.read_text()[-2000:]}")
                try:
                    await wait_for_serving(f"127.0.0.1:{port}", timeout=2, interval=0.2)
                    return time.monotonic() - started
                except TimeoutError:
                    if time.monotonic() - started > timeout_s:
                        raise
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def process_env(release: ContainerRelease, component: str, folder: Path) -> tuple[dict[str, str], int]:
    """The rendered container's settings, made local: ports, AWS endpoint, cache, database."""
    assert release.containers is not None
    assert release.aws is not None
    container = release.containers.release.container(component)
    env = {"PATH": os.environ["PATH"], **release.containers.environment(container)}
    port = free_port()
    env.update(
        {
            "HOME": str(folder),
            "XDG_CACHE_HOME": str(folder / "xdg"),
            "MPLCONFIGDIR": str(folder / "matplotlib"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "SORIFLOW_HOST": "127.0.0.1",
            "SORIFLOW_PORT": str(port),
            "SORIFLOW_METRICS_PORT": str(free_port()),
            "SORIFLOW_CACHE_DIR": str(folder / "cache"),
            "SORIFLOW_S3_ENDPOINT_URL": release.aws.config.aws_endpoint,
        }
    )
    if component == "gateway":
        env["SORIFLOW_GATEWAY_QUEUE_URL"] = release.aws.queue_url
        env["SORIFLOW_GATEWAY_DATABASE_URL"] = f"sqlite:///{folder / 'jobs.db'}"
    return env, port


async def measure(
    release: ContainerRelease, rounds: int, timeout_s: float
) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {c: {"container": [], "process": []} for c in COMPONENTS}
    for round_index in range(rounds):
        for component in COMPONENTS:
            seconds = (await release.start((component,), timeout_s))[component]
            assert release.containers is not None
            release.containers.stop(component)
            times[component]["container"].append(seconds)
            folder = Path(tempfile.mkdtemp(prefix=f"cold-start-{component}-"))
            try:
                env, port = process_env(release, component, folder)
                times[component]["process"].append(
                    await process_start(env, component, port, folder, timeout_s)
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            print(
                f"round {round_index + 1} {component}: container {times[component]['container'][-1]:.1f}s, "
                f"process {times[component]['process'][-1]:.1f}s",
                flush=True,
            )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    engine = find_engine(need_run=True, install=False)
    base = python_base(engine, os.environ.get("BASE", "auto"))
    renderer = ChartRenderer()
    release = ContainerRelease(engine, base)
    try:
        release.start_aws(renderer)
        missing = release.missing_images(COMPONENTS)
        if missing:
            sys.exit(f"images not built: {missing}; run `make images` first")
        assert release.rendered is not None
        images = {c: release.rendered.container(c)["image"] for c in COMPONENTS}
        sizes = {c: round(engine.image_size(image) / 1e6) for c, image in images.items()}
        times = asyncio.run(measure(release, args.rounds, args.timeout))
    finally:
        release.close()
        renderer.close()

    figures: dict[str, Any] = {}
    for component in COMPONENTS:
        container_s = median(times[component]["container"])
        process_s = median(times[component]["process"])
        figures[component] = {
            "image": images[component].rsplit("/", 1)[1],
            "image_size_mb": sizes[component],
            "container_start_to_serving_s_median": round(container_s, 2),
            "process_start_to_serving_s_median": round(process_s, 2),
            "container_over_process_ratio": round(container_s / process_s, 2),
            "container_over_process_ratio_of_fastest": round(
                min(times[component]["container"]) / min(times[component]["process"]), 2
            ),
            "container_s_each_round": [round(s, 2) for s in times[component]["container"]],
            "process_s_each_round": [round(s, 2) for s in times[component]["process"]],
        }
    figures["engine"] = engine.name
    figures["base_image"] = base
    report(
        "images_cold_start",
        figures,
        summary=(
            "Image sizes (unpacked, as the engine reports them) and cold starts of each service image: "
            "a fresh container of the chart's pod (rendered env, read-only root, uid 10001, empty "
            "emptyDir volumes, the chart's memory limit) from `run` to gRPC SERVING through its "
            "published port, against the same service as a plain `soriflow serve` process with the "
            "same settings and an empty cache folder, alternating; medians of the rounds, and the "
            "ratio of the fastest starts (the least disturbed by other work on the machine). Round 1 "
            "may find the image's files out of the page cache. stt and summarizer are the -cpu "
            "images (tiny.en int8; SmolLM2-135M converted from its GGUF into "
            "the empty cache at every start, as a pod with an emptyDir cache does). The ratio is what "
            "the container adds; absolute seconds depend on this shared 2-core machine."
        ),
    )


if __name__ == "__main__":
    main()
