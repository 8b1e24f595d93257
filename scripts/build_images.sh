#!/usr/bin/env bash
# `make images`: build the five service images (and the CPU variants of the GPU ones) with Docker.
#   REGISTRY=123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/soriflow make images   # tag for a registry
#   PUSH=1 ...                                                                        # and push
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "make images needs a running Docker engine (docker info failed); none is available here." >&2
  echo "Build on a machine with Docker: see docs/deploy.md, section Images." >&2
  exit 1
fi

VERSION=${VERSION:-$(sed -n 's/^__version__ = "\(.*\)"/\1/p' soriflow/__init__.py)}
PREFIX=${REGISTRY:+${REGISTRY%/}/}
# The CPU variants of the GPU images start from the slim Python base the CPU images use.
CPU_BASE_IMAGE=$(sed -n 's/^ARG PYTHON_IMAGE=//p' gateway/Dockerfile)
export DOCKER_BUILDKIT=1

build() {  # build NAME DOCKERFILE TAG [docker build args...]
  local name=$1 dockerfile=$2 tag=$3; shift 3
  echo "== ${PREFIX}soriflow-${name}:${tag}"
  docker build -f "$dockerfile" --build-arg VERSION="$VERSION" "$@" -t "${PREFIX}soriflow-${name}:${tag}" .
  if [[ "${PUSH:-0}" == 1 ]]; then docker push "${PREFIX}soriflow-${name}:${tag}"; fi
}

build gateway gateway/Dockerfile "$VERSION"
for name in scoring tts stt summarizer; do
  build "$name" "services/$name/Dockerfile" "$VERSION"
done
for name in stt summarizer; do  # what the chart runs with <name>.gpu.enabled=false
  build "$name" "services/$name/Dockerfile" "$VERSION-cpu" \
    --build-arg BASE_IMAGE="$CPU_BASE_IMAGE" --build-arg UV_PYTHON_PREFERENCE=only-system \
    --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
done
