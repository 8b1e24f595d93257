"""`make images`: build every Soriflow image from the one Dockerfile with Docker, Podman or Buildah.

    python3 scripts/images.py                      # build, then print the images and their sizes
    REGISTRY=123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/soriflow PUSH=1 python3 scripts/images.py

Images (`<registry>/soriflow-<component>:<version>`, registry `localhost` unless REGISTRY is set):
gateway, scoring and tts on the slim Python base; stt and summarizer twice, as the CUDA images
the chart runs on GPU nodes and as `-cpu` variants on the slim Python base (what the chart runs
with `<component>.gpu.enabled=false`). `LLAMA=1` (or `--llama`) also builds the summarizer with
llama.cpp compiled in, `soriflow-summarizer:<version>-cpu-llama` (summarizer.engine=llama-cpp).

Where the public base images cannot be pulled (an offline machine, a CI runner without
registry access) `BASE=auto` (the default) builds the CPU images on a local Debian bookworm
base made with mmdebstrap (Debian's python3.11, the same CPython minor version as the slim
image) and skips the CUDA images, saying so; `BASE=public` insists on the public bases (a
release), `BASE=local` always uses the local one. Where the PyTorch index cannot be reached, a
local CPU torch wheel (pip's find-links) is bound into the build (Podman and Buildah).

The engine: Docker when its daemon answers, else Podman, else Buildah; installed with apt-get
(podman, runc, netavark, aardvark-dns, mmdebstrap) when none is there, as root on Debian. Only the standard
library is used, so it runs before `make setup`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
#: Podman/Buildah settings for hosts where they cannot set a container's rlimits (below).
RESTRICTED_CONTAINERS_CONF = ROOT / "deploy" / "images" / "containers-restricted.conf"

COMPONENTS = ("gateway", "scoring", "tts", "stt", "summarizer")  # build order: shared stages first
#: Components with a CUDA image; the chart runs their `-cpu` variant when gpu.enabled=false.
GPU_COMPONENTS = ("stt", "summarizer")
CPU_TAG_SUFFIX = "-cpu"  # the chart's image.cpuTagSuffix
#: The summarizer with llama.cpp compiled in (SORIFLOW_SUMMARIZER_ENGINE=llama-cpp), a CPU image
#: built with LLAMA=1: `soriflow-summarizer:<tag>-cpu-llama` (the chart's image.llamaTagSuffix).
LLAMA_TAG_SUFFIX = "-llama"
LLAMA_BUILD_ARGS = {"SUMMARIZER_EXTRAS": "summarizer,llama"}
GPU_BUILD_ARGS = {
    "BASE_IMAGE": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04",
    "UV_PYTHON_PREFERENCE": "only-managed",
    "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu128",
}
#: The local stand-in for the slim Python base: Debian bookworm with its Python 3.11.
LOCAL_BASE = "localhost/soriflow-python:3.11-bookworm"
LOCAL_BASE_PACKAGES = ("python3.11", "python3.11-venv", "ca-certificates")
DEBIAN_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
#: What `make images` installs where no engine is: Podman with runc, its netavark network stack
#: with aardvark-dns (the container test's Service names resolve through it; apt would not
#: pick them without recommends), and mmdebstrap for the local base.
APT_TOOLS = ("podman", "runc", "netavark", "aardvark-dns", "iptables", "mmdebstrap")


def log(message: str) -> None:
    print(f"\033[1;34m[images]\033[0m {message}", flush=True)


class ImagesError(RuntimeError):
    """Something `make images` cannot do here, with what to do about it."""


def version() -> str:
    match = re.search(r'^__version__ = "([^"]+)"', (ROOT / "soriflow" / "__init__.py").read_text(), re.M)
    assert match, "soriflow/__init__.py has no __version__"
    return match.group(1)


def dockerfile_default(arg: str) -> str:
    """The default of a global ARG of the Dockerfile (the one place it is written)."""
    match = re.search(rf"^ARG {arg}=(\S+)$", DOCKERFILE.read_text(), re.M)
    if not match:
        raise ImagesError(f"the Dockerfile has no `ARG {arg}=...`")
    return match.group(1)


def image_name(component: str, *, registry: str, tag: str, gpu: bool, llama: bool = False) -> str:
    suffix = CPU_TAG_SUFFIX if component in GPU_COMPONENTS and not gpu else ""
    suffix += LLAMA_TAG_SUFFIX if llama else ""
    return f"{registry.rstrip('/')}/soriflow-{component}:{tag}{suffix}"


# --- the engine ---------------------------------------------------------------------------------


def _has_cap_sys_resource() -> bool:
    """Whether this process may raise resource limits (bit 24 of its effective capabilities)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 24 & 1)
    except OSError:
        pass
    return True


@dataclass
class Engine:
    """A container engine's command line and the environment it runs with."""

    name: str  # docker, podman or buildah
    env: dict[str, str] = field(default_factory=dict)

    @property
    def can_run(self) -> bool:
        return self.name != "buildah"

    def run(
        self, *args: str, check: bool = True, capture: bool = False, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [self.name, *args]
        result = subprocess.run(
            command,
            env={**os.environ, **self.env},
            text=True,
            capture_output=capture,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            detail = f":\n{result.stderr.strip()[-2000:]}" if capture else ""
            raise ImagesError(f"`{shlex.join(command)}` failed (exit {result.returncode}){detail}")
        return result

    def image_exists(self, image: str) -> bool:
        probe = {
            "docker": ["image", "inspect", image],
            "podman": ["image", "exists", image],
            "buildah": ["inspect", "--type", "image", image],
        }[self.name]
        return self.run(*probe, check=False, capture=True).returncode == 0

    def image_size(self, image: str) -> int:
        """Bytes of the image unpacked (what `docker images` shows)."""
        if self.name == "buildah":  # only a rounded human size ("384 MB", decimal units)
            out = self.run("images", "--json", image, capture=True).stdout
            number, _, unit = json.loads(out)[0]["size"].partition(" ")
            factor = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}[unit]
            return int(float(number) * factor)
        out = self.run("image", "inspect", "--format", "{{.Size}}", image, capture=True).stdout
        return int(out.split()[0]) if out.strip() else 0


def restricted_env() -> dict[str, str]:
    """Podman/Buildah settings for a host that may not raise rlimits (no CAP_SYS_RESOURCE).

    Podman gives every container (and every RUN of a build) its own open-files and process
    limits, which needs CAP_SYS_RESOURCE; in VMs and sandboxes without it, runc fails with
    `error setting rlimit ... operation not permitted`. There the containers inherit the
    limits of the engine's process instead (`default_ulimits = []`) and run with runc, whose
    cgroup handling works on hybrid cgroup hierarchies where crun's does not. An explicit
    CONTAINERS_CONF of the user wins.
    """
    if "CONTAINERS_CONF" in os.environ or _has_cap_sys_resource():
        return {}
    return {"CONTAINERS_CONF": str(RESTRICTED_CONTAINERS_CONF)}


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False, timeout=60)
    return probe.returncode == 0


def _apt_install(packages: Sequence[str]) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ImagesError(
            f"needs {', '.join(packages)}: install them (Debian/Ubuntu: sudo apt-get install -y "
            f"{' '.join(packages)}), or use a machine with a running Docker engine"
        )
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def find_engine(*, need_run: bool = False, install: bool = True) -> Engine:
    """Docker if its daemon answers, else Podman, else Buildah (builds only); installs Podman
    (with runc and mmdebstrap) where none is present, as root on Debian, if `install`."""
    preferred = os.environ.get("SORIFLOW_CONTAINER_ENGINE", "")
    if preferred:
        if not shutil.which(preferred):
            raise ImagesError(f"SORIFLOW_CONTAINER_ENGINE={preferred}, which is not installed")
        return Engine(preferred, restricted_env() if preferred != "docker" else {})
    if _docker_answers():
        return Engine("docker", {"DOCKER_BUILDKIT": "1"})
    if not shutil.which("podman") and not (shutil.which("buildah") and not need_run) and install:
        _apt_install(APT_TOOLS)
    if shutil.which("podman"):
        return Engine("podman", restricted_env())
    if shutil.which("buildah") and not need_run:
        return Engine("buildah", restricted_env())
    raise ImagesError(
        "no container engine: make images needs a running Docker engine (`docker info` failed), "
        "Podman or Buildah; see docs/deploy.md, section Images"
    )


# --- what the build needs -----------------------------------------------------------------------


def qualified(image: str) -> str:
    """`python:3.11` -> `docker.io/library/python:3.11` (Podman refuses ambiguous short names)."""
    first = image.split("/")[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image


def pull(engine: Engine, image: str) -> bool:
    """Whether the image is here or could be pulled."""
    if engine.image_exists(image) or engine.image_exists(qualified(image)):
        return True
    result = engine.run("pull", qualified(image), check=False, capture=True, timeout=1800)
    if result.returncode != 0:
        log(f"cannot pull {image}: {result.stderr.strip().splitlines()[-1] if result.stderr else ''}")
    return result.returncode == 0


def build_local_base(engine: Engine, *, rebuild: bool = False) -> str:
    """Debian bookworm (minbase) with python3.11, made with mmdebstrap and imported as LOCAL_BASE.

    Only Debian's package archive is needed. Documentation, man pages and translations are
    left out, as in the official slim images.
    """
    if not rebuild and engine.image_exists(LOCAL_BASE):
        return LOCAL_BASE
    if not shutil.which("mmdebstrap"):
        _apt_install(["mmdebstrap"])
    started = time.monotonic()
    log(f"making the local base {LOCAL_BASE} with mmdebstrap (Debian bookworm + python3.11)")
    with tempfile.TemporaryDirectory(prefix="soriflow-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--include={','.join(LOCAL_BASE_PACKAGES)}",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/info/*",
                "bookworm",
                str(rootfs),
                *DEBIAN_SOURCES,
            ],
            check=True,
        )
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["python3.11"]',
        ]
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        if engine.name == "buildah":  # buildah has no import: go through podman's storage format
            raise ImagesError("making the local base needs Docker or Podman (buildah cannot import)")
        engine.run(*args, str(rootfs), LOCAL_BASE, capture=True)
    log(f"local base ready in {time.monotonic() - started:.0f}s")
    return LOCAL_BASE


def _pip_find_links() -> list[Path]:
    """The folders pip's configuration and environment point `--find-links` at."""
    values = [os.environ.get("PIP_FIND_LINKS", "")]
    for python in (ROOT / ".venv" / "bin" / "python", Path(sys.executable)):
        if python.exists():
            out = subprocess.run(
                [str(python), "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
            ).stdout
            values += [
                line.split("=", 1)[1].strip("'\"") for line in out.splitlines() if "find-links" in line
            ]
            break
    return [Path(v) for value in values for v in value.split() if v and Path(v).is_dir()]


def local_torch_wheelhouse() -> Path | None:
    """A folder with a CPU torch wheel for CPython 3.11 on this machine, if there is one."""
    for folder in _pip_find_links():
        if sorted(folder.glob("torch-*+cpu-cp311-cp311-*linux*_x86_64.whl")):
            return folder
    return None


def torch_index_reachable(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=15):
            return True
    except OSError:
        return False


def ca_bundle() -> str | None:
    for path in CA_BUNDLES:
        if Path(path).is_file():
            return path
    return None


# --- building -----------------------------------------------------------------------------------


@dataclass
class Plan:
    engine: Engine
    registry: str
    tag: str
    python_image: str
    gpu: bool
    wheelhouse: Path | None
    skipped: list[str] = field(default_factory=list)
    llama: bool = False


@dataclass
class Built:
    image: str
    component: str
    gpu: bool
    seconds: float
    size_bytes: int = 0
    llama: bool = False


def python_base(engine: Engine, base: str, *, rebuild_local: bool = False) -> str:
    """The Python base image: the public slim image if it is here or can be pulled (or must be),
    else (or when `base` is `local`) the local Debian one, made once (again with `rebuild_local`,
    e.g. for Debian's security updates)."""
    public = dockerfile_default("PYTHON_IMAGE")
    if base == "local":
        return build_local_base(engine, rebuild=rebuild_local)
    if pull(engine, public):
        return public
    if base == "public":
        raise ImagesError(f"BASE=public, but {public} cannot be pulled")
    log(f"{public} cannot be pulled: building on a local Debian base instead")
    return build_local_base(engine, rebuild=rebuild_local)


def plan(engine: Engine, *, base: str, gpu: str, registry: str, tag: str, rebuild_base: bool = False) -> Plan:
    python_image = python_base(engine, base, rebuild_local=rebuild_base)
    skipped: list[str] = []
    with_gpu = gpu == "yes"
    if gpu == "auto":
        if python_image != dockerfile_default("PYTHON_IMAGE"):
            skipped.append(f"the CUDA images ({', '.join(GPU_COMPONENTS)}): no public base images here")
        elif not pull(engine, GPU_BUILD_ARGS["BASE_IMAGE"]):
            skipped.append(f"the CUDA images: {GPU_BUILD_ARGS['BASE_IMAGE']} cannot be pulled")
        else:
            with_gpu = True
    wheelhouse = None
    cpu_index = re.search(r"^ARG TORCH_INDEX_URL=(\S+)$", DOCKERFILE.read_text(), re.M)
    if engine.name != "docker" and cpu_index and not torch_index_reachable(cpu_index.group(1)):
        wheelhouse = local_torch_wheelhouse()
        if wheelhouse is None:
            log(f"{cpu_index.group(1)} is unreachable and no local CPU torch wheel was found")
        else:
            log(f"PyTorch's index is unreachable: torch comes from the local wheel in {wheelhouse}")
    return Plan(engine, registry, tag, python_image, with_gpu, wheelhouse, skipped)


def common_build_args(engine: Engine) -> list[str]:
    """What every build gets: the CA bundle as a secret, Docker's image format (HEALTHCHECK)."""
    args: list[str] = []
    bundle = ca_bundle()
    if bundle:
        args += ["--secret", f"id=ca-certificates,src={bundle}"]
    if engine.name in ("podman", "buildah"):
        args += ["--format", "docker", "--layers"]
    return args


def build_args(p: Plan, component: str, gpu: bool, llama: bool = False) -> list[str]:
    args = ["--target", component, "--build-arg", f"VERSION={version()}"]
    args += ["--build-arg", f"PYTHON_IMAGE={p.python_image}"]
    if gpu:
        for key, value in GPU_BUILD_ARGS.items():
            args += ["--build-arg", f"{key}={value}"]
    if llama:
        for key, value in LLAMA_BUILD_ARGS.items():
            args += ["--build-arg", f"{key}={value}"]
    elif p.wheelhouse is not None and component in GPU_COMPONENTS:
        args += ["--volume", f"{p.wheelhouse}:/wheelhouse:ro"]
    return args + common_build_args(p.engine)


def build(p: Plan, components: Sequence[str], *, push: bool = False) -> list[Built]:
    env_note = f" ({', '.join(f'{k}={v}' for k, v in p.engine.env.items())})" if p.engine.env else ""
    log(f"engine: {p.engine.name}{env_note}; base: {p.python_image}")
    jobs = [(c, False, False) for c in components]
    if p.gpu:
        jobs += [(c, True, False) for c in components if c in GPU_COMPONENTS]
    if p.llama and "summarizer" in components:
        # CPU only: llama.cpp with CUDA needs the CUDA compiler, which the runtime bases lack
        jobs.append(("summarizer", False, True))
    built: list[Built] = []
    for component, gpu, llama in jobs:
        image = image_name(component, registry=p.registry, tag=p.tag, gpu=gpu, llama=llama)
        log(f"== {image}" + (" (compiles llama.cpp: minutes)" if llama else ""))
        started = time.monotonic()
        p.engine.run(
            "build", "-f", str(DOCKERFILE), *build_args(p, component, gpu, llama), "-t", image, str(ROOT)
        )
        built.append(Built(image, component, gpu, round(time.monotonic() - started, 1), llama=llama))
        if push:
            p.engine.run("push", image)
    for item in built:
        item.size_bytes = p.engine.image_size(item.image)
    return built


def print_table(built: Sequence[Built], skipped: Sequence[str]) -> None:
    print()
    print(f"{'image':<60} {'size':>10} {'build':>8}")
    for item in built:
        print(f"{item.image:<60} {item.size_bytes / 1e6:>8.0f}MB {item.seconds:>7.0f}s")
    for reason in skipped:
        print(f"skipped: {reason}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("components", nargs="*", help=f"some of {', '.join(COMPONENTS)} (default: all)")
    parser.add_argument("--base", choices=["auto", "public", "local"], default=os.environ.get("BASE", "auto"))
    parser.add_argument("--gpu", choices=["auto", "yes", "no"], default=os.environ.get("GPU", "auto"))
    parser.add_argument("--registry", default=os.environ.get("REGISTRY") or "localhost")
    parser.add_argument("--tag", default=os.environ.get("VERSION") or version())
    parser.add_argument("--push", action="store_true", default=os.environ.get("PUSH") == "1")
    parser.add_argument(
        "--llama",
        action="store_true",
        default=os.environ.get("LLAMA") == "1",
        help="also the summarizer with llama.cpp (engine llama-cpp), tagged <tag>-cpu-llama",
    )
    parser.add_argument("--rebuild-base", action="store_true", help="make the local Debian base again")
    parser.add_argument("--json", type=Path, help="also write the images, sizes and build times here")
    args = parser.parse_args(argv)
    unknown = set(args.components) - set(COMPONENTS)
    if unknown:
        parser.error(f"unknown components {sorted(unknown)}; choose from {', '.join(COMPONENTS)}")
    try:
        engine = find_engine()
        if args.push and args.base != "public":
            args.base = "public"  # what is pushed runs on clusters: never the local stand-in base
        p = plan(
            engine,
            base=args.base,
            gpu=args.gpu,
            registry=args.registry,
            tag=args.tag,
            rebuild_base=args.rebuild_base,
        )
        p.llama = args.llama
        built = build(p, args.components or COMPONENTS, push=args.push)
    except ImagesError as exc:
        print(f"make images: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(
            f"make images: `{shlex.join(map(str, exc.cmd))}` failed (exit {exc.returncode})", file=sys.stderr
        )
        return 1
    print_table(built, p.skipped)
    if args.json:
        record = {
            "engine": engine.name,
            "base": p.python_image,
            "images": [vars(b) for b in built],
            "skipped": p.skipped,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
