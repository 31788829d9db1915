# shellcheck shell=bash
# What the tests against the real agent CLIs (real-clis.sh,
# agent-sessions.sh) share: a temporary folder cleaned at exit with every
# process started from it, the agent user, the CLIs' install (npm and
# PyPI, SKIPPED only when a registry cannot be reached), files put in the
# agent user's home and put back at exit, the server, launchers, the
# scripted model and a repository the agent user can read but not write.
#
# Sourced from the repository's root with the script's arguments, after
# `set -euo pipefail`, with `me` set to the name its messages start with:
#   me=real-clis; . packaging/tests/clis-lib.sh "$@"
# It sets `bin` (the first argument, else target/debug/ops-center, built
# when missing) and `work`, and installs the exit trap.

: "${me:?set me (the name of the script) before sourcing clis-lib.sh}"
bin=${1:-target/debug/ops-center}
if [ ! -x "$bin" ]; then
    cargo build --quiet --bin ops-center
    bin=target/debug/ops-center
fi
bin=$(realpath "$bin")

work=$(mktemp -d)
pids=()
# Files of the agent user's home that were replaced: "path saved-copy"
# ("path -" when there was none), put back at exit.
replaced=()
# The agent user, when it was created here: removed at exit.
created_user=
# Folders removed at exit besides $work.
remove_at_exit=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # Agents run in process groups of their own, under supervisors started
    # from this binary: end whatever is left.
    for p in $(pgrep -f "$work" || true); do
        kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
    done
    local i r path saved
    # Newest first: a file replaced twice gets its first original back.
    for ((i = ${#replaced[@]} - 1; i >= 0; i--)); do
        r=${replaced[i]}
        path=${r% *} saved=${r##* }
        rm -f "$path"
        if [ "$saved" != - ]; then mv -f "$saved" "$path"; fi
    done
    if [ -n "$created_user" ]; then
        userdel --remove "$created_user" 2>/dev/null || say "could not remove the agent user $created_user"
    fi
    rm -rf "$work" ${remove_at_exit[@]+"${remove_at_exit[@]}"}
}
trap cleanup EXIT

say() { echo "$me: $*"; }
for tool in curl jq npm python3 git; do
    command -v "$tool" >/dev/null 2>&1 || { say "FAILED: $tool is needed"; exit 1; }
done
# Files whose tail a failure shows (launchers' logs are added as they
# start).
fail_logs=()
fail() {
    say "FAILED: $*"
    local f
    for f in ${fail_logs[@]+"${fail_logs[@]}"}; do
        [ -f "$f" ] || continue
        echo "--- tail of $f"
        tail -n 40 "$f"
    done
    exit 1
}

# Who the agents run as: `agent_user USER` sets agent_user, agent_home,
# as_agent (the words that run a command as it) and agent_env (the
# launcher's variables that name it). A root launcher refuses to run
# agents without OPS_AGENT_USER, so as root they run as USER, created
# (and removed at exit) when missing, which must be able to reach the CLIs
# installed under $work. As another user they run as that same user, with
# `nonroot_home` (default $work/home) as HOME.
agent_user() {
    if [ "$(id -u)" = 0 ]; then
        agent_user=$1
        if ! getent passwd "$agent_user" >/dev/null; then
            useradd --system --create-home --home-dir "/var/lib/$agent_user" --shell /usr/sbin/nologin "$agent_user" \
                || fail "cannot create the agent user $agent_user"
            created_user=$agent_user
            say "created the agent user $agent_user (removed at exit)"
        fi
        agent_home=$(getent passwd "$agent_user" | cut -d: -f6)
        [ -d "$agent_home" ] || fail "the home $agent_home of $agent_user does not exist"
        chmod 755 "$work"
        as_agent=(runuser -u "$agent_user" --)
        agent_env=(OPS_AGENT_USER="$agent_user")
        say "running as root: agents run as $agent_user (home $agent_home)"
    else
        agent_user=$(id -un)
        agent_home=${nonroot_home:-$work/home}
        mkdir -p "$agent_home"
        as_agent=()
        agent_env=()
        say "not running as root: agents run as this script's own user $agent_user (no OPS_AGENT_USER), nothing separates them from the launcher"
    fi
}

# Installs the current releases of opencode, Claude Code and codex (npm)
# and Hermes (PyPI) under $work, both at once, and puts them first on
# PATH. A registry that cannot be reached: SKIPPED, exit 0.
install_clis() {
    say "installing the current releases into $work"
    npm install --prefix "$work/npm" --no-audit --no-fund --no-package-lock --loglevel=error \
        opencode-ai @anthropic-ai/claude-code @openai/codex >"$work/npm.log" 2>&1 &
    local npm_pid=$! npm_rc=0 pip_rc=0
    # The agent user must be able to run the venv's interpreter: not one
    # under root's home (pyenv), say.
    local python=python3 p
    if [ "$(id -u)" = 0 ]; then
        python=
        for p in $(type -ap python3); do
            if "${as_agent[@]}" "$p" -c '' 2>/dev/null; then python=$p; break; fi
        done
        [ -n "$python" ] || fail "no python3 on PATH that the agent user $agent_user can run"
    fi
    { "$python" -m venv "$work/venv" && "$work/venv/bin/pip" install -q hermes-agent >"$work/pip.log" 2>&1; } || pip_rc=$?
    wait "$npm_pid" || npm_rc=$?
    if [ "$npm_rc" != 0 ]; then
        if ! npm view opencode-ai version >/dev/null 2>&1; then
            say "SKIPPED: the npm registry cannot be reached"
            exit 0
        fi
        cat "$work/npm.log"
        fail "npm install failed"
    fi
    if [ "$pip_rc" != 0 ]; then
        if ! python3 -m pip download --no-deps -q -d "$work/probe" hermes-agent >/dev/null 2>&1; then
            say "SKIPPED: PyPI cannot be reached"
            exit 0
        fi
        cat "$work/pip.log" 2>/dev/null || true
        fail "pip install hermes-agent failed"
    fi
    export PATH="$work/npm/node_modules/.bin:$work/venv/bin:$PATH"
    local cli out
    # Run here in a home of their own, not in this user's.
    mkdir -p "$work/home"
    for cli in opencode claude codex hermes; do
        # (codex warns first that it makes no helper binaries under /tmp.)
        say "$cli --version: $(HOME="$work/home" "$cli" --version 2>&1 | grep -v '^WARNING' | head -n 1)"
    done
    # Doctor and the launcher cannot tell a CLI the agent user cannot
    # execute from one that is logged out: make sure it can run each one.
    for cli in opencode claude codex hermes; do
        out=$(${as_agent[@]+"${as_agent[@]}"} env PATH="$PATH" HOME="$agent_home" "$cli" --version 2>&1) \
            || fail "the agent user $agent_user cannot run $cli: $out"
    done
}

# `put_agent_file PATH MODE` with the content on stdin: a file of the agent
# user's home, owned by it; whatever was there is put back at exit.
put_agent_file() {
    local path=$1 saved=-
    if [ -e "$path" ]; then
        saved="$work/saved-$(echo "$path" | tr / _)"
        mv "$path" "$saved"
    fi
    replaced+=("$path $saved")
    ${as_agent[@]+"${as_agent[@]}"} mkdir -p "$(dirname "$path")"
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
    ${as_agent[@]+"${as_agent[@]}"} sh -c 'umask 077; cat >"$1"; chmod "$2" "$1"' sh "$path" "$2"
}

# The server on a new database in $work, with the admin user `admin`
# (password $admin_password) and the service token $token; sets `api`.
token=clis-test-service-token-0123456789abcdef
admin_password=clis-test-admin-pw
start_server() {
    OPS_SERVICE_TOKEN=$token OPS_ADMIN_USER=admin OPS_ADMIN_PASSWORD=$admin_password "$bin" serve \
        --bind 127.0.0.1:0 --db "$work/ops.db" >"$work/server.out" 2>"$work/server.log" &
    pids+=($!)
    fail_logs+=("$work/server.log")
    for _ in $(seq 100); do
        grep -q '^listening on ' "$work/server.out" && break
        sleep 0.1
    done
    api="$(sed -n 's/^listening on \(http:\/\/.*\)$/\1/p' "$work/server.out")/api"
    [ "$api" != /api ] || fail "the server did not start: $(cat "$work/server.log")"
}
# A request as the service.
call() { curl -sS -H "X-OPS-Service-Token: $token" -H 'Content-Type: application/json' "$@"; }
# A request as the admin user (logged in on first use).
as_admin() {
    local jar="$work/admin.jar"
    if [ ! -s "$jar" ]; then
        curl -sS -c "$jar" -H 'Content-Type: application/json' -X POST \
            -d "{\"username\":\"admin\",\"password\":\"$admin_password\"}" "$api/auth/login" >/dev/null
    fi
    curl -sS -b "$jar" -H 'Content-Type: application/json' "$@"
}
# The id of the agent with slug $1.
agent_id() { call "$api/agents" | jq -r --arg s "$1" '.agents[] | select(.slug == $s) | .id'; }

# `start_model NAME ARGS…`: the scripted model (scripted-model.py ARGS),
# logging to $work/NAME.log; sets `model_base` (http://127.0.0.1:PORT).
start_model() {
    local name=$1
    shift
    python3 packaging/tests/scripted-model.py --port-file "$work/$name.port" --log "$work/$name.log" "$@" \
        >"$work/$name.out" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        [ -s "$work/$name.port" ] && break
        sleep 0.1
    done
    [ -s "$work/$name.port" ] || fail "the scripted model $name did not start: $(cat "$work/$name.out")"
    touch "$work/$name.log"
    # shellcheck disable=SC2034 # the sourcing script's
    model_base="http://127.0.0.1:$(cat "$work/$name.port")"
}

# Each CLI pointed at the scripted model at $1 (http://127.0.0.1:PORT) by
# the files of the agent user's home, as a person would set it up; the key
# is the one the scripted model's --require-key would take.
#
# opencode: a provider "scripted" (@ai-sdk/openai-compatible, which
# opencode bundles; its model `scripted/scripted-writer`) and a credential
# for it, which the launcher's built-in check (opencode auth list) counts.
opencode_login() {
    put_agent_file "$agent_home/.config/opencode/opencode.json" 644 <<EOF
{
  "\$schema": "https://opencode.ai/config.json",
  "provider": {
    "scripted": {
      "npm": "@ai-sdk/openai-compatible",
      "name": "Scripted model",
      "options": { "baseURL": "$1/v1" },
      "models": { "scripted-writer": { "name": "Scripted writer", "tool_call": true } }
    }
  }
}
EOF
    put_agent_file "$agent_home/.local/share/opencode/auth.json" 600 <<'EOF'
{ "scripted": { "type": "api", "key": "scripted-key" } }
EOF
}
# codex: a provider of its own (which the built-in check counts as logged
# in), its key from OPENAI_API_KEY in the agent's environment (the
# launcher passes OPENAI_* to codex). Its home must not be under /tmp,
# where codex will not make its helper binaries (`bwrap: execvp
# codex-linux-sandbox`): the agent user's home is not.
codex_login() {
    put_agent_file "$agent_home/.codex/config.toml" 600 <<EOF
model = "scripted-writer"
model_provider = "scripted"

[model_providers.scripted]
name = "Scripted model"
base_url = "$1/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
EOF
}
# Hermes: a custom OpenAI-compatible provider with its key in config.yaml
# (which the built-in check counts).
hermes_login() {
    put_agent_file "$agent_home/.hermes/config.yaml" 600 <<EOF
model:
  provider: custom
  base_url: $1/v1
  default: scripted-writer
  api_key: scripted-key
EOF
}

# `make_repo DIR`: a repository committed on main, readable but not
# writable by the agent user (the launcher refuses one the agent user can
# write).
make_repo() {
    local repo=$1
    mkdir -p "$repo"
    git -C "$repo" init -q -b main
    echo "a repository for the tests against the real agent CLIs" >"$repo/README"
    git -C "$repo" add README
    git -C "$repo" -c user.name=clis-test -c user.email=clis-test@localhost commit -q -m "first commit"
    chmod -R go-w "$repo"
}

# `allow_repo WORKSPACE DIR`: the workspace allows tasks naming DIR (a
# workspace admin's decision, made here by the admin).
allow_repo() {
    local roots
    roots=$(jq -n --arg repo "$2" '{repo_roots: [$repo]}')
    as_admin -X PATCH -d "$roots" "$api/workspaces/$1" | jq -e --arg repo "$2" '.repo_roots == [$repo]' >/dev/null \
        || fail "workspace $1 does not allow $2"
}

# `launcher NAME VAR=…`: a launcher in the background, started in
# $launcher_cwd, with its log in $work/NAME.log, its agents' logs in
# $work/NAME-logs and its clones in $work/NAME-worktrees; the variables
# given override the defaults here. Its pid is ${pids[-1]}.
launcher_cwd=$PWD
launcher() {
    local name=$1
    shift
    fail_logs+=("$work/$name.log")
    (
        cd "$launcher_cwd" || exit 1
        exec env OPS_API_BASE="$api" OPS_SERVICE_TOKEN="$token" OPS_LAUNCHER_LOG_DIR="$work/$name-logs" \
            OPS_LAUNCHER_LOG_FILE="$work/$name.log" OPS_LAUNCHER_WORKTREES_DIR="$work/$name-worktrees" \
            OPS_LAUNCHER_HEARTBEAT_SECONDS=2 OPS_LAUNCHER_POLL_SECONDS=1 \
            AGENT_SILENCE_MINUTES=60s AGENT_TIMEOUT_OPENCODE=100s AGENT_TIMEOUT_CODEX=100s \
            AGENT_TIMEOUT_CLAUDECODE=100s AGENT_TIMEOUT_HERMES=100s ${agent_env[@]+"${agent_env[@]}"} "$@" "$bin" launcher
    ) &
    pids+=($!)
}
# Stops the launcher started last.
stop_launcher() {
    kill "${pids[-1]}"
    wait "${pids[-1]}" 2>/dev/null || true
}
