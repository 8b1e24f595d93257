#!/usr/bin/env bash
# What only the tests need, kept out of `make setup` so `make demo` stays fast (`make test` runs it):
#   - Debian's chromium, driven by Playwright for the live-caption page test (no browser download)
#   - examples/node's locked npm dependencies (`ws`), for the Node relay test
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1;34m[test-setup]\033[0m %s\n' "$*"; }

if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian's chromium (the live page test drives it headless)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "chromium is missing — run: sudo apt-get install chromium" >&2
    exit 1
  fi
fi

if [ ! -d examples/node/node_modules/ws ] || [ examples/node/package-lock.json -nt examples/node/node_modules ]; then
  if command -v npm >/dev/null; then
    log "npm ci in examples/node (the Node relay test)"
    npm ci --silent --no-audit --no-fund --prefix examples/node >/dev/null
  else
    echo "npm not found: the Node relay test will fail" >&2
    exit 1
  fi
fi
