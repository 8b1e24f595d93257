# Soriflow developer commands. Every target works from a fresh clone: the ones that
# need the environment depend on `setup`, which is idempotent and cheap when done.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.soriflow-setup
BUF := .tools/node_modules/.bin/buf
PYTEST_ARGS ?=
BENCHES ?= $(sort $(basename $(notdir $(wildcard bench/[a-z]*_*.py))))
# The images' builder needs only the standard library: any Python 3.11 runs it before setup.
IMAGES_PY ?= $(shell command -v python3.11 || command -v python3)
IMAGES_TEST_TIMEOUT ?= 1500

.PHONY: help setup test-setup llama test test-fast lint format proto proto-check docs docs-check bench demo up images images-test clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## Install system packages, .venv with everything, bundled models and buf

$(STAMP): pyproject.toml setup.py scripts/setup.sh
	scripts/setup.sh
	@touch $@

test-setup: setup  ## What only the tests need: Debian chromium (page test), examples/node's npm packages
	scripts/setup_test_tools.sh

llama: setup  ## Install llama-cpp-python (+ its server): compiles llama.cpp once (minutes), cached after
	scripts/setup-llama.sh

test: setup test-setup llama  ## Run the whole test suite (unit + integration with real servers and models)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: setup  ## Only the fast tests (not marked slow)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: setup proto-check docs-check  ## ruff, mypy, buf lint, hadolint, helm lint, generated files fresh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) scripts/typecheck.py
	$(BUF) lint
	$(BIN)/python scripts/lint_deploy.py

format: setup  ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

proto: setup  ## Regenerate soriflow/v1 from protos/ and docs/api.md
	$(PY) scripts/protogen.py
	$(PY) scripts/apidoc.py > docs/api.md

proto-check: setup  ## Fail when the generated code or docs/api.md are stale
	$(PY) scripts/protogen.py --check
	$(PY) scripts/apidoc.py --check docs/api.md

docs: setup  ## Regenerate docs/configuration.md, docs/api.md and docs/benchmarks.md
	$(BIN)/soriflow config docs > docs/configuration.md
	$(PY) scripts/apidoc.py > docs/api.md
	$(PY) scripts/benchmarks_doc.py > docs/benchmarks.md

docs-check: setup  ## Fail when docs/configuration.md or docs/benchmarks.md is stale
	$(BIN)/soriflow config docs --check docs/configuration.md
	$(PY) scripts/benchmarks_doc.py --check docs/benchmarks.md

bench: setup llama  ## Run every benchmark and render docs/benchmarks.md
	@set -e; for b in $(BENCHES); do echo "== bench.$$b"; HF_HUB_OFFLINE=1 $(PY) -m bench.$$b; done
	$(PY) scripts/benchmarks_doc.py > docs/benchmarks.md

demo: setup  ## The whole pipeline locally on embedded defaults: S3 -> SQS -> every service -> results
	HF_HUB_OFFLINE=1 $(BIN)/soriflow demo

up: setup  ## Start the local stack (moto S3/SQS, all services, gateway) until Ctrl-C
	HF_HUB_OFFLINE=1 $(BIN)/soriflow up

images:  ## Build the container images with Docker, Podman or Buildah, then list them with their sizes
	$(IMAGES_PY) scripts/images.py

images-test: setup  ## Build the CPU images, run the chart's release in containers and the demo's jobs in it
	$(PY) scripts/images.py --gpu no
	SORIFLOW_CONTAINER_TESTS=1 timeout $(IMAGES_TEST_TIMEOUT) $(BIN)/pytest -m containers tests/deploy/test_container_stack.py -ra $(PYTEST_ARGS)

clean:  ## Remove caches and build output (keeps .venv)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache demo-output
