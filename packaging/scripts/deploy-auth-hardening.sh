#!/usr/bin/env bash
# Rotates the OPS Center admin login and service token, restarts the
# services and verifies the result over HTTP. See --help.
set -euo pipefail

PROG=${0##*/}

usage() {
    cat <<EOF
usage: OPS_ADMIN_USER='<admin>' OPS_ADMIN_PASSWORD='<strong-pass>' \\
       OPS_SERVICE_TOKEN='<strong-token>' \\
       $PROG [--repo-path DIR] --confirm-prod [--dry-run]

Rotates the global admin (user and password) and the service token of an
OPS Center installation:
  1. checks the new secrets (no placeholders, no weak values);
  2. backs up the env files and the database (ops-center admin backup);
  3. writes OPS_ADMIN_USER, OPS_ADMIN_PASSWORD and OPS_SERVICE_TOKEN into
     \$OPS_ENV_DIR/ops-center and OPS_SERVICE_TOKEN into
     \$OPS_ENV_DIR/ops-dispatch-launcher (the launcher/doctor env);
  4. writes the token into ops_settings.service_api_token and the admin into
     the database (ops-center admin set-service-token / set-admin-password);
  5. restarts ops-center.service, and ops-dispatch-launcher.service if it
     is active (systemctl);
  6. verifies over HTTP that the new token is accepted, the previous one is
     refused and the admin can log in. Exit 0 only if all of that holds.

Secrets come only from the environment, never from arguments.

options:
  --confirm-prod     required: without it nothing is changed
  --dry-run          check the inputs and print the plan, change nothing
  --repo-path DIR    an OPS Center checkout: its target/release/ops-center is
                     used when present (default: ops-center on PATH, i.e.
                     /usr/bin/ops-center from the Debian package)
  -h, --help         this text

environment (all optional but the three secrets):
  OPS_ENV_DIR        folder of the env files (/etc/default)
  OPS_DB             the database (OPS_DB of the server env file, else
                     /var/lib/ops-center/ops.db)
  OPS_API_BASE       the API to verify against (from OPS_BIND of the server
                     env file, else http://127.0.0.1:3847/api)
  OPS_CENTER_BIN     the ops-center binary to use
  OPS_OLD_SERVICE_TOKEN  the token in use now, when the env files do not
                     hold it (to verify that it is refused afterwards)
  OPS_VERIFY_TIMEOUT seconds to wait for the restarted server (60)
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

say() { echo "[deploy-auth] $*"; }

confirm=0
dry_run=0
repo_path=
while [ $# -gt 0 ]; do
    case "$1" in
    --confirm-prod) confirm=1 ;;
    --dry-run) dry_run=1 ;;
    --repo-path)
        if [ $# -lt 2 ] || [ -z "$2" ]; then die "--repo-path needs a directory"; fi
        repo_path=$2
        shift
        ;;
    --repo-path=*) repo_path=${1#--repo-path=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    --admin-password* | --password* | --service-token* | --token*)
        die "$1: secrets are not taken as arguments (ps would show them); set OPS_ADMIN_USER, OPS_ADMIN_PASSWORD and OPS_SERVICE_TOKEN in the environment"
        ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

if [ "$confirm" != 1 ] && [ "$dry_run" != 1 ]; then
    echo "$PROG: refusing to run without --confirm-prod: this rotates the production admin password and service token and restarts the services (use --dry-run to see the plan)" >&2
    exit 2
fi

command -v curl >/dev/null 2>&1 || die "needs curl (apt-get install curl)"

# --- the binary ----------------------------------------------------------
if [ -n "$repo_path" ]; then
    [ -d "$repo_path" ] || die "--repo-path $repo_path is not a directory"
fi
if [ -n "${OPS_CENTER_BIN:-}" ]; then
    bin=$OPS_CENTER_BIN
elif [ -n "$repo_path" ] && [ -x "$repo_path/target/release/ops-center" ]; then
    bin=$repo_path/target/release/ops-center
else
    bin=$(command -v ops-center || true)
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    die "ops-center binary not found${bin:+ at $bin} (install the package, or set OPS_CENTER_BIN)"
fi

# --- the new secrets -----------------------------------------------------
new_user=${OPS_ADMIN_USER:-}
new_pass=${OPS_ADMIN_PASSWORD:-}
new_token=${OPS_SERVICE_TOKEN:-}
[ -n "$new_user" ] || die "OPS_ADMIN_USER is not set (the admin login to create or rotate)"
[ -n "$new_pass" ] || die "OPS_ADMIN_PASSWORD is not set"
[ -n "$new_token" ] || die "OPS_SERVICE_TOKEN is not set (the new service token)"

placeholder() { case "$1" in *'<'* | *'>'*) return 0 ;; esac; return 1; }
distinct_chars() { printf '%s' "$1" | fold -w1 | sort -u | wc -l; }
# Characters that keep their meaning in a systemd environment file and in
# JSON without quoting.
safe_chars() { [[ "$1" =~ ^[A-Za-z0-9._+=@%:,/~^!*?{}-]+$ ]]; }

placeholder "$new_user" && die "OPS_ADMIN_USER '$new_user' looks like a placeholder such as '<admin>'; give the real admin name"
[[ "$new_user" =~ ^[A-Za-z0-9._@-]{1,64}$ ]] || die "OPS_ADMIN_USER: use 1 to 64 letters, digits, '.', '_', '-' or '@'"

placeholder "$new_pass" && die "OPS_ADMIN_PASSWORD looks like a placeholder such as '<strong-pass>'; give a real password"
[ "${#new_pass}" -ge 12 ] || die "OPS_ADMIN_PASSWORD is too weak: at least 12 characters"
[ "$(distinct_chars "$new_pass")" -ge 6 ] || die "OPS_ADMIN_PASSWORD is too weak: use at least 6 different characters"
case "$(printf '%s' "$new_pass" | tr '[:upper:]' '[:lower:]')" in
*password* | *changeme* | *admin* | *123456* | *qwerty* | *secret* | *letmein*)
    die "OPS_ADMIN_PASSWORD is too weak: it contains a common word or sequence"
    ;;
esac
[ "$new_pass" != "$new_user" ] || die "OPS_ADMIN_PASSWORD must differ from the user name"
safe_chars "$new_pass" || die "OPS_ADMIN_PASSWORD: use letters, digits and . _ + = @ % : , / ~ ^ ! * ? { } - only (spaces, quotes, \\, \$, \`, # and ; change meaning in env files)"

placeholder "$new_token" && die "OPS_SERVICE_TOKEN looks like a placeholder such as '<strong-token>'; generate one, e.g. head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'"
[ "${#new_token}" -ge 32 ] || die "OPS_SERVICE_TOKEN is too weak: at least 32 characters"
[ "$(distinct_chars "$new_token")" -ge 8 ] || die "OPS_SERVICE_TOKEN is too weak: use at least 8 different characters"
safe_chars "$new_token" || die "OPS_SERVICE_TOKEN: use letters, digits and . _ + = @ % : , / ~ ^ ! * ? { } - only"
[ "$new_token" != "$new_pass" ] || die "OPS_SERVICE_TOKEN must differ from OPS_ADMIN_PASSWORD"

# --- where things are ----------------------------------------------------
env_dir=${OPS_ENV_DIR:-/etc/default}
server_env=$env_dir/ops-center
launcher_env=$env_dir/ops-dispatch-launcher
[ -f "$server_env" ] || die "$server_env not found (is the ops-center package installed? set OPS_ENV_DIR otherwise)"

# The value of VAR in an env file (last uncommented assignment), unquoted.
env_get() {
    local file=$1 key=$2
    [ -f "$file" ] || return 0
    sed -n "s/^[[:space:]]*$key=//p" "$file" | tail -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/"
}

db=${OPS_DB:-$(env_get "$server_env" OPS_DB)}
db=${db:-/var/lib/ops-center/ops.db}
if [ -n "${OPS_API_BASE:-}" ]; then
    api=${OPS_API_BASE%/}
else
    bind=$(env_get "$server_env" OPS_BIND)
    bind=${bind:-127.0.0.1:3847}
    # A wildcard bind is reached on loopback.
    case "$bind" in
    0.0.0.0:*) bind="127.0.0.1:${bind#0.0.0.0:}" ;;
    '[::]:'*) bind="[::1]:${bind#'[::]:'}" ;;
    esac
    api=http://$bind/api
fi
timeout=${OPS_VERIFY_TIMEOUT:-60}
[[ "$timeout" =~ ^[0-9]+$ ]] || die "OPS_VERIFY_TIMEOUT must be a number of seconds"

old_token=${OPS_OLD_SERVICE_TOKEN:-}
[ -n "$old_token" ] || old_token=$(env_get "$server_env" OPS_SERVICE_TOKEN)
[ -n "$old_token" ] || old_token=$(env_get "$launcher_env" OPS_SERVICE_TOKEN)
if [ "$old_token" = "$new_token" ]; then
    die "OPS_SERVICE_TOKEN is the token in use now; a rotation needs a new one (if an earlier run stopped half-way, restore its *.pre-auth-hardening-* backups first)"
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
say "binary:        $bin"
say "env files:     $server_env, $launcher_env"
say "database:      $db"
say "API:           $api"
say "admin user:    $new_user"
if [ -n "$old_token" ]; then
    say "old token:     found (will be checked to be refused)"
else
    say "old token:     unknown (the env files hold none; a wrong token will be checked to be refused instead)"
fi

if [ "$dry_run" = 1 ]; then
    say "dry run: would back up $server_env, $launcher_env and $db (suffix .pre-auth-hardening-$stamp)"
    say "dry run: would write OPS_ADMIN_USER, OPS_ADMIN_PASSWORD, OPS_SERVICE_TOKEN into $server_env"
    say "dry run: would write OPS_SERVICE_TOKEN into $launcher_env"
    say "dry run: would run: $bin admin set-service-token --db $db; $bin admin set-admin-password --db $db --user $new_user"
    say "dry run: would run: systemctl restart ops-center.service (and ops-dispatch-launcher.service if active)"
    say "dry run: would verify over $api: new token accepted, old token refused, admin login works"
    say "dry run: nothing changed"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077

# --- 2. backups ----------------------------------------------------------
for f in "$server_env" "$launcher_env"; do
    if [ -f "$f" ]; then
        cp -p "$f" "$f.pre-auth-hardening-$stamp"
        say "backup: $f.pre-auth-hardening-$stamp"
    fi
done
if [ -f "$db" ]; then
    "$bin" admin backup --db "$db" --to "$db.pre-auth-hardening-$stamp" >/dev/null
    say "backup: $db.pre-auth-hardening-$stamp"
fi

# --- 3. env files --------------------------------------------------------
# Sets KEY=value in an env file: replaces the last uncommented assignment,
# else fills the first commented one, else appends. Keeps the file's
# owner and mode (rewrites it in place).
env_set() {
    local file=$1 key=$2 value=$3
    KEY=$key VALUE=$value awk '
        BEGIN { key = ENVIRON["KEY"]; value = ENVIRON["VALUE"] }
        { lines[NR] = $0 }
        $0 ~ "^[ \t]*" key "=" { last = NR }
        $0 ~ "^[ \t]*#[ \t]*" key "=" && !commented { commented = NR }
        END {
            target = last ? last : commented
            for (i = 1; i <= NR; i++) print (i == target ? key "=" value : lines[i])
            if (!target) print key "=" value
        }' "$file" >"$tmp/env"
    cat "$tmp/env" >"$file"
    [ "$(env_get "$file" "$key")" = "$value" ] || die "could not write $key into $file"
}

env_set "$server_env" OPS_ADMIN_USER "$new_user"
env_set "$server_env" OPS_ADMIN_PASSWORD "$new_pass"
env_set "$server_env" OPS_SERVICE_TOKEN "$new_token"
say "wrote OPS_ADMIN_USER, OPS_ADMIN_PASSWORD, OPS_SERVICE_TOKEN into $server_env"
if [ -f "$launcher_env" ]; then
    env_set "$launcher_env" OPS_SERVICE_TOKEN "$new_token"
    say "wrote OPS_SERVICE_TOKEN into $launcher_env"
else
    say "note: $launcher_env does not exist; the launcher and doctor need OPS_SERVICE_TOKEN set to the new token"
fi

# --- 4. the database -----------------------------------------------------
if [ -f "$db" ]; then
    OPS_SERVICE_TOKEN=$new_token "$bin" admin set-service-token --db "$db" </dev/null | sed 's/^/[deploy-auth] /'
    OPS_ADMIN_PASSWORD=$new_pass "$bin" admin set-admin-password --db "$db" --user "$new_user" </dev/null |
        sed 's/^/[deploy-auth] /'
else
    say "note: $db does not exist yet; the server writes the token and the admin from $server_env when it starts"
fi

# --- 5. restart ----------------------------------------------------------
command -v systemctl >/dev/null 2>&1 || die "systemctl not found: restart ops-center yourself, then rerun to verify"
if ! systemctl restart ops-center.service; then
    say "FAIL systemctl restart ops-center.service failed (see: journalctl -u ops-center.service); the previous env files and database are kept as *.pre-auth-hardening-$stamp"
    exit 1
fi
say "restarted ops-center.service"
if systemctl --quiet is-active ops-dispatch-launcher.service; then
    if ! systemctl restart ops-dispatch-launcher.service; then
        say "FAIL systemctl restart ops-dispatch-launcher.service failed (see: journalctl -u ops-dispatch-launcher.service)"
        exit 1
    fi
    say "restarted ops-dispatch-launcher.service (running agents keep running)"
else
    say "ops-dispatch-launcher.service is not active here; not restarted"
fi

# --- 6. verify -----------------------------------------------------------
# Secrets go to curl through files, not arguments.
printf 'X-OPS-Service-Token: %s\n' "$new_token" >"$tmp/new.h"
printf 'X-OPS-Service-Token: %s\n' "${old_token:-wrong-token-$stamp-0123456789abcdef}" >"$tmp/old.h"
printf '{"username":"%s","password":"%s"}' "$new_user" "$new_pass" >"$tmp/login.json"

# HTTP status of GET $1 with the header file $2.
status_with() {
    curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 -H "@$2" "$api$1" || true
}

# The endpoint to check a token against: the dispatch health, or
# /auth/me on a server that does not have it.
probe=/dispatch/health
deadline=$((SECONDS + timeout))
while :; do
    code=$(status_with "$probe" "$tmp/new.h")
    if [ "$code" = 404 ] && [ "$probe" = /dispatch/health ]; then
        probe=/auth/me
        continue
    fi
    [ "$code" = 000 ] || break
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 1
done

failed=0
if [ "$code" = 200 ]; then
    say "PASS new token accepted (GET $api$probe: 200)"
else
    say "FAIL new token not accepted (GET $api$probe: $code): $(head -c 300 "$tmp/body" 2>/dev/null || true)"
    failed=1
fi
code=$(status_with "$probe" "$tmp/old.h")
if [ "$code" = 401 ]; then
    say "PASS $([ -n "$old_token" ] && echo previous || echo wrong) token refused (401)"
else
    say "FAIL $([ -n "$old_token" ] && echo previous || echo wrong) token not refused (GET $api$probe: $code)"
    failed=1
fi
code=$(curl -s -o "$tmp/body" -w '%{http_code}' --max-time 30 -H 'Content-Type: application/json' \
    --data-binary "@$tmp/login.json" "$api/auth/login" || true)
if [ "$code" = 200 ]; then
    say "PASS admin $new_user can log in"
else
    say "FAIL admin $new_user cannot log in (POST $api/auth/login: $code)"
    failed=1
fi

if [ "$failed" != 0 ]; then
    say "FAIL the rotation is not verified; the previous env files and database are kept as *.pre-auth-hardening-$stamp"
    exit 1
fi
say "PASS admin and service token rotated and verified; update OPS_SERVICE_TOKEN wherever else it is used (CI, other launcher hosts)"
