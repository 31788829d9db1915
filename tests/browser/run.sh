#!/usr/bin/env bash
# Drives the web UI in Debian's headless Chromium against the real server
# (tests/browser/*.test.mjs, Node's test runner with playwright-core).
# Installs Chromium (apt, as root) and playwright-core (npm) when missing;
# skips, saying why, only when those registries cannot be reached.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "browser tests: FAILED: chromium is not installed and this is not root (apt-get install chromium)" >&2
    exit 1
  fi
  echo "browser tests: installing Debian's chromium"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    if ! apt-get update -qq >/dev/null 2>&1; then
      echo "browser tests: SKIPPED: the Debian package registry cannot be reached to install chromium"
      exit 0
    fi
    echo "browser tests: FAILED: apt-get install chromium failed" >&2
    exit 1
  fi
fi
if ! command -v node >/dev/null 2>&1; then
  echo "browser tests: FAILED: node is not installed" >&2
  exit 1
fi
if [ ! -d node_modules/playwright-core ]; then
  # No lock file: the version is pinned in package.json.
  if ! npm install --no-package-lock --no-audit --no-fund --loglevel=error; then
    if ! npm view playwright-core version >/dev/null 2>&1; then
      echo "browser tests: SKIPPED: the npm registry cannot be reached to install playwright-core"
      exit 0
    fi
    echo "browser tests: FAILED: npm install failed" >&2
    exit 1
  fi
fi

(cd ../.. && cargo build --quiet --bin ops-center)
SCREENSHOT="${SCREENSHOT:-$(mktemp -d)/automatizaciones.png}" node --test ./*.test.mjs
