#!/usr/bin/env bash
# Dispatches one real OPS Center task, watches it and reports its outcome.
# See --help.
set -euo pipefail

PROG=${0##*/}

usage() {
    cat <<EOF
usage: OPS_SERVICE_TOKEN='<token>' $PROG --task-id N --confirm-pilot [--dry-run]
       [--timeout SECONDS] [--interval SECONDS]

Pilots one real dispatch under watch:
  1. checks the API (GET /dispatch/health): dispatch enabled, at least one
     fresh worker; and the task: interactive, with an agent, not archived,
     not blocked, not already running;
  2. dispatches it (POST /tasks/N/dispatch);
  3. follows it (queued -> dispatching -> doing -> ...), printing each change;
  4. reports the final status, blocker, exit code, log files and the tail of
     dispatch_output. Exit 0 when the task reached review or done, 1 when it
     ended blocked/waiting or was refused, 3 on timeout.

options:
  --task-id N        the task to dispatch (required)
  --confirm-pilot    required: without it nothing is dispatched
  --dry-run          run the checks of step 1 and stop
  --timeout SECONDS  how long to watch (default 1800)
  --interval SECONDS between two looks at the task (default 5)
  -h, --help         this text

environment:
  OPS_SERVICE_TOKEN  the service token (required)
  OPS_API_BASE       the API, including /api (default http://127.0.0.1:3847/api)
EOF
}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

say() { echo "[pilot] $*"; }

task_id=
confirm=0
dry_run=0
timeout=1800
interval=5
while [ $# -gt 0 ]; do
    case "$1" in
    --task-id)
        [ $# -ge 2 ] || die "--task-id needs a number"
        task_id=$2
        shift
        ;;
    --task-id=*) task_id=${1#--task-id=} ;;
    --confirm-pilot) confirm=1 ;;
    --dry-run) dry_run=1 ;;
    --timeout)
        [ $# -ge 2 ] || die "--timeout needs a number of seconds"
        timeout=$2
        shift
        ;;
    --timeout=*) timeout=${1#--timeout=} ;;
    --interval)
        [ $# -ge 2 ] || die "--interval needs a number of seconds"
        interval=$2
        shift
        ;;
    --interval=*) interval=${1#--interval=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    --token* | --service-token*)
        die "$1: the token is not taken as an argument (ps would show it); set OPS_SERVICE_TOKEN"
        ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

[ -n "$task_id" ] || die "--task-id N is required (the task to dispatch)"
[[ "$task_id" =~ ^[1-9][0-9]{0,17}$ ]] || die "--task-id must be a positive whole number, got '$task_id'"
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, got '$timeout'"
[[ "$interval" =~ ^[1-9][0-9]*$ ]] || die "--interval must be a positive number of seconds, got '$interval'"

if [ "$confirm" != 1 ] && [ "$dry_run" != 1 ]; then
    echo "$PROG: refusing to run without --confirm-pilot: this dispatches task $task_id to a real agent on a real host (use --dry-run to only check)" >&2
    exit 2
fi

for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || die "needs $tool (apt-get install $tool)"
done

token=${OPS_SERVICE_TOKEN:-}
[ -n "$token" ] || die "OPS_SERVICE_TOKEN is not set"
case "$token" in *'<'* | *'>'*) die "OPS_SERVICE_TOKEN looks like a placeholder such as '<token>'; export the real token" ;; esac
api=${OPS_API_BASE:-http://127.0.0.1:3847/api}
api=${api%/}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077
# The token goes to curl through a file, not an argument.
printf 'X-OPS-Service-Token: %s\n' "$token" >"$tmp/auth.h"

# call METHOD PATH [BODY]: sets $code, the body is in $tmp/body.
call() {
    local method=$1 path=$2 body=${3:-}
    local args=(-s -o "$tmp/body" -w '%{http_code}' --max-time 30 -X "$method" -H "@$tmp/auth.h")
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    code=$(curl "${args[@]}" "$api$path" || true)
    [ -s "$tmp/body" ] || echo '{}' >"$tmp/body"
}
field() { jq -r "$1" "$tmp/body" 2>/dev/null || echo '?'; }
api_error() { jq -r '(.error // "") + ": " + (.message // "")' "$tmp/body" 2>/dev/null || head -c 300 "$tmp/body"; }

# --- 1. checks -----------------------------------------------------------
call GET /dispatch/health
case "$code" in
200) ;;
000) die "cannot reach $api (is ops-center running? is OPS_API_BASE right?)" ;;
401) die "the service token was refused by $api" ;;
*) die "GET $api/dispatch/health answered $code: $(api_error)" ;;
esac
[ "$(field .ok)" = true ] || die "health says ok=false: $(cat "$tmp/body")"
enabled=$(field .dispatch_enabled)
fresh=$(field '.worker_summary.fresh // 0')
usable=$(field '(.agent_slugs // []) | join(",")')
stale=$(field '.queue.stale_dispatching // 0')
say "health: dispatch_enabled=$enabled fresh_workers=$fresh agent_slugs=[$usable] stale_dispatching=$stale"
field '(.warnings // [])[]' | sed 's/^/[pilot] warning: /'

call GET "/tasks/$task_id"
case "$code" in
200) ;;
404) die "task $task_id not found" ;;
*) die "GET $api/tasks/$task_id answered $code: $(api_error)" ;;
esac
title=$(field .title)
status=$(field .status)
execution=$(field .execution)
agent_id=$(field '.agent_id // empty')
say "task $task_id: \"$title\" status=$status execution=$execution agent=$(field '.agent // "none"') sensitive=$(field .sensitive)"

problems=()
[ "$enabled" = true ] || problems+=("dispatch_enabled is false: enable it first (PUT $api/settings/dispatch_enabled {\"value\":\"true\"})")
[ "$fresh" -ge 1 ] 2>/dev/null || problems+=("no fresh worker: start ops-dispatch-launcher.service on an agent host and check ops-center doctor")
[ "$execution" = interactive ] || problems+=("task $task_id has execution=$execution; only interactive tasks are dispatched")
agent=$(field '.agent // empty')
if [ -z "$agent_id" ]; then
    problems+=("task $task_id has no agent assigned")
elif [ "$fresh" -ge 1 ] 2>/dev/null && [[ ",$usable," != *",$agent,"* ]]; then
    problems+=("no fresh worker can run agent ${agent:-$agent_id} (usable now: ${usable:-none}); check the launcher's SUPPORTED_AGENT_SLUGS and ops-center doctor on its host")
fi
[ "$(field '.archived_at // empty')" = "" ] || problems+=("task $task_id is archived")
[ "$(field .blocked)" != true ] || problems+=("task $task_id is blocked: $(field .blocked_reason)")
case "$status" in
queued | dispatching | doing) problems+=("task $task_id is already $status") ;;
esac
if [ "${#problems[@]}" -gt 0 ]; then
    for p in "${problems[@]}"; do say "refused: $p"; done
    exit 1
fi
if [ "$dry_run" = 1 ]; then
    say "dry run: checks passed; task $task_id would be dispatched now. Nothing changed."
    exit 0
fi

# --- 2. dispatch ---------------------------------------------------------
call POST "/tasks/$task_id/dispatch" '{}'
case "$code" in
200 | 201 | 202) say "dispatched: task $task_id is $(field '.status // "queued"')" ;;
409)
    if [ "$(field .error)" = human_gate ]; then
        say "refused by the Human Gate: task $task_id is sensitive; a human admin must approve it (UI or POST /tasks/$task_id/approve) before it can be dispatched"
    else
        say "refused: $(api_error)"
    fi
    exit 1
    ;;
*)
    say "dispatch failed ($code): $(api_error)"
    exit 1
    ;;
esac

# --- 3. watch ------------------------------------------------------------
deadline=$((SECONDS + timeout))
last=
final=
while :; do
    call GET "/tasks/$task_id"
    if [ "$code" = 200 ]; then
        status=$(field .status)
        blocked=$(field .blocked)
        now=$status
        if [ "$blocked" = true ]; then now="$now (blocked)"; fi
        if [ "$now" != "$last" ]; then
            worker=$(field '.claimed_by // empty')
            say "$(date -u +%H:%M:%S) status: $now${worker:+ worker=$worker}"
            last=$now
        fi
        case "$status" in
        review | done | waiting)
            final=$status
            break
            ;;
        esac
        if [ "$blocked" = true ]; then
            final=$status
            break
        fi
    else
        say "$(date -u +%H:%M:%S) GET /tasks/$task_id answered $code; retrying"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        break
    fi
    sleep "$interval"
done

# --- 4. report -----------------------------------------------------------
say "---- task $task_id ----"
say "status:          $(field .status)"
say "blocked:         $(field .blocked)$(field '.blocked_reason // "" | if . == "" then "" else " (" + . + ")" end')"
say "worker:          $(field '.claimed_by // "-"')"
say "attempts:        $(field '.dispatch_attempts // 0')"
say "exit code:       $(field '.exit_code // "-"')"
say "log:             $(field '.log_path // "-"')"
say "error log:       $(field '.err_log_path // "-"')"
say "dispatch_output (last 20 lines):"
field '.dispatch_output // ""' | tail -n 20 | sed 's/^/    /'
blocker=$(field '[(.comments // [])[] | select(.kind == "blocker")] | last | .body // empty')
if [ -n "$blocker" ]; then
    say "last blocker comment:"
    printf '%s\n' "$blocker" | tail -n 20 | sed 's/^/    /'
fi
case "$final" in
review | done)
    say "PASS task $task_id reached $final; check its deliverable before moving it to done"
    exit 0
    ;;
'')
    say "TIMEOUT task $task_id is still $(field .status) after ${timeout}s; it keeps running (watch it in Operacion -> Automatizaciones)"
    exit 3
    ;;
*)
    say "FAIL task $task_id ended $final$([ "$(field .blocked)" = true ] && echo ', blocked'); see the blocker above and the log files"
    exit 1
    ;;
esac
