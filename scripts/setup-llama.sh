#!/usr/bin/env bash
# Installs the `llama` extra (llama-cpp-python with its OpenAI-compatible server) into .venv: the
# `llama-cpp` summarizer engine, and the real server the `openai` engine's tests run against.
# `make llama` runs it; `make test` depends on it, `make setup` and `make demo` do not: it compiles
# llama.cpp from the PyPI sdist (minutes on a small CPU the first time; pip's wheel cache makes later
# installs of the same version take seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"

log() { printf '\033[1;34m[setup-llama]\033[0m %s\n' "$*"; }

if [ ! -x "$PY" ]; then
  echo "$VENV is missing: run make setup first" >&2
  exit 1
fi
# The requirement (pinned version) is the `llama` extra of pyproject.toml: one place to change it.
requirement=$("$PY" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["llama"])')
wanted=${requirement##*==}
installed=$("$PY" -c "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)" 2>/dev/null || true)
if [ -n "$installed" ] && [ "$installed" = "$wanted" ]; then
  log "llama-cpp-python $installed is installed"
  exit 0
fi
for tool in cmake g++; do
  if ! command -v "$tool" >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      log "installing cmake and g++ (to compile llama.cpp)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake g++ >/dev/null
      break
    fi
    echo "$tool is missing: run sudo apt-get install cmake g++" >&2
    exit 1
  fi
done

log "installing $requirement (compiles llama.cpp once; the wheel is kept for later installs)"
start=$(date +%s)
# A portable x86-64-v3 build (AVX2/FMA/F16C), as the Dockerfile's LLAMA_CMAKE_ARGS, never one tuned
# to the build machine (GGML_NATIVE): a native build uses whatever the build CPU reports, and a VM
# can report AMX it faults on (ldtilecfg: general protection fault at the first batched matmul),
# or a cached wheel can reach a machine without AVX-512. Only the text model library: the
# multimodal part (mtmd) is never used here and adds build time.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_OPENMP=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# pip's own wheel cache is keyed by the sdist alone, so a wheel built with other flags would come
# back from it: the wheel is built without it, into a folder keyed by version and flags.
key=$(printf '%s %s' "$requirement" "$CMAKE_ARGS" | sha256sum | cut -c1-16)
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/soriflow/llama-wheels/$key"
set +e
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  mkdir -p "$wheels"
  "$PY" -m pip --disable-pip-version-check -q wheel --no-cache-dir --no-deps -w "$wheels" \
    "${requirement%%[*}==$wanted" 2>&1 | grep -v "^WARNING: Location"
fi
wheel=$(ls "$wheels"/llama_cpp_python-*.whl 2>/dev/null | head -n1)
if [ -n "$wheel" ]; then
  "$PY" -m pip --disable-pip-version-check -q install --force-reinstall --no-deps "$wheel" 2>&1 \
    | grep -v "^WARNING: Location"
  "$PY" -m pip --disable-pip-version-check -q install "${wheel}[server]" 2>&1 | grep -v "^WARNING: Location"
fi
status=${PIPESTATUS[0]}
set -e
if [ -z "$wheel" ] || [ "$status" != 0 ] || ! "$PY" -c "import llama_cpp, llama_cpp.server.app"; then
  echo "installing $requirement failed (pip exit $status)" >&2
  exit 1
fi
log "done in $(( $(date +%s) - start ))s"
