#!/usr/bin/env bash
# Checks the shipped Prometheus scrape config and alert rules with promtool
# (Debian's prometheus package). Fails when apt works but promtool cannot be
# had; skips, saying so, only when the package archive cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v promtool >/dev/null 2>&1; then
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
    if ! apt-get update -qq >/dev/null 2>&1; then
      echo "SKIPPING the Prometheus examples check: the Debian archive cannot be reached"
      exit 0
    fi
    echo "prometheus examples: FAILED: apt-get install prometheus failed" >&2
    exit 1
  fi
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# The config names the token file of a real install; point it at a scratch
# one so that promtool can read it.
echo example-token >"$dir/token"
sed "s#/etc/prometheus/ops-center.token#$dir/token#" examples/prometheus/prometheus.yml >"$dir/prometheus.yml"
cp examples/prometheus/ops-center-alerts.yml "$dir/"
promtool check config "$dir/prometheus.yml"
promtool check rules examples/prometheus/ops-center-alerts.yml
