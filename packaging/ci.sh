#!/usr/bin/env bash
# The packaging step of CI: installs the tools it needs when they are
# missing, lints the packaging shell scripts, then builds, installs, tests
# and purges the Debian package (packaging/test-deb.sh). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "packaging: skipped: packaging/test-deb.sh installs and purges the package, which needs root"
    exit 0
fi

need=()
command -v logrotate >/dev/null 2>&1 || need+=(logrotate)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
    echo "packaging: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "packaging: installing cargo-deb"
    cargo install cargo-deb --locked --version 3.8.0
fi

echo "packaging: shellcheck"
shellcheck -x packaging/ci.sh packaging/test-deb.sh packaging/scripts/*.sh packaging/tests/*.sh \
    packaging/tests/fake-systemctl packaging/debian/postinst packaging/debian/postrm

echo "packaging: packaging/test-deb.sh"
bash packaging/test-deb.sh
