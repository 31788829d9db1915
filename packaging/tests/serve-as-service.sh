#!/usr/bin/env bash
# Starts the installed /usr/bin/ops-center serve the way ops-center.service
# does, for hosts without a running systemd (tests): as the ops-center user,
# in /var/lib/ops-center, with OPS_DB=/var/lib/ops-center/ops.db overridden
# by the environment file, then Litestream's environment file beside it when
# it exists (the unit's EnvironmentFile=-/etc/default/ops-center-litestream),
# after running the unit's ExecStartPre= commands (read from the installed
# unit) in that environment; a failing one fails the start, as under
# systemd. Prints the address once it listens.
#
# usage: serve-as-service.sh ENV_FILE BIND PIDFILE OUTFILE
#   BIND replaces the env file's OPS_BIND (e.g. 127.0.0.1:0 for a free port)
set -euo pipefail

[ $# -eq 4 ] || {
    echo "usage: $0 ENV_FILE BIND PIDFILE OUTFILE" >&2
    exit 1
}
env_file=$1 bind=$2 pidfile=$3 out=$4
unit=/usr/lib/systemd/system/ops-center.service

# shellcheck source=packaging/tests/envfile.sh
. "$(dirname "$(readlink -f "$0")")/envfile.sh"
vars=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/ops-center
    OPS_DB=/var/lib/ops-center/ops.db)
envfile_vars "$env_file"
litestream_env=$(dirname "$env_file")/ops-center-litestream
if [ -f "$litestream_env" ]; then envfile_vars "$litestream_env"; fi
vars+=("OPS_BIND=$bind")

: >"$out"
cd /var/lib/ops-center
as_service() {
    setpriv --reuid=ops-center --regid=ops-center --init-groups env -i "${vars[@]}" "$@"
}
while IFS= read -r pre; do
    [ -n "$pre" ] || continue
    read -r -a argv <<<"$pre"
    if ! as_service "${argv[@]}" >>"$out" 2>&1 </dev/null; then
        echo "ExecStartPre=$pre failed:" >&2
        cat "$out" >&2
        exit 1
    fi
done < <(sed -n 's/^ExecStartPre=//p' "$unit")
setsid setpriv --reuid=ops-center --regid=ops-center --init-groups \
    env -i "${vars[@]}" /usr/bin/ops-center serve >>"$out" 2>&1 </dev/null &
echo $! >"$pidfile"

for _ in $(seq 1 300); do
    if addr=$(sed -n 's#^listening on http://##p' "$out") && [ -n "$addr" ]; then
        echo "$addr"
        exit 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "ops-center serve exited before listening:" >&2
        cat "$out" >&2
        exit 1
    fi
    sleep 0.1
done
echo "ops-center serve did not listen within 30 s:" >&2
cat "$out" >&2
exit 1
