#!/usr/bin/env bash
# Agent sessions against the real agent CLIs: installs the current releases
# of opencode, Claude Code, codex (npm) and Hermes (PyPI) as real-clis.sh
# does, points each at a scripted local model (scripted-model.py, which
# answers a task with a call of the CLI's file-writing tool, then a final
# message, each answer counted as 10 tokens in and 5 out), and runs them
# through `ops-center serve` and the real launcher. For each of the four:
#   - a task with a repository (committed on main, not writable by the
#     agent user, allowed by the workspace's repo_roots) reaches review;
#     hello.txt is on branch ops/task-<id>; its run has a session_id, a
#     transcript with a tool_call and the session event, and exactly the
#     usage the CLI reports: Claude Code tokens and its own cost
#     (cost_source "cli"), codex and opencode tokens and no cost, Hermes
#     (whose -Q mode prints no usage) no tokens, no cost and no usage event;
#   - a follow-up asking for followup.txt resumes that session: a second
#     run whose resumed_session is the first run's session_id, with the
#     follow-up's own usage (codex counts the whole session in its stream:
#     run 2 must not count run 1 again), followup.txt beside hello.txt on
#     the branch, the task back in review, and the scripted model's log
#     shows the follow-up's request carrying the first conversation's user
#     text.
# And once, with Claude Code, in a second workspace served by a second
# launcher (AGENT_SILENCE_MINUTES=20s) and a second scripted model
# (--slow 30 --rate-limit 1):
#   - a 429 from the model ends the run rate_limited: the task is back in
#     queued with a not_before in the future, event dispatch.rate_limited,
#     no dispatch.failed, and a watchdog pass (its failure threshold set to
#     1) raises no dispatch.recurring_failure;
#   - a model that takes 30 s per answer, streaming a delta every 5 s, does
#     not get the run ended as silent: it reaches review, the launcher's
#     log says no "agent silent".
# The four CLIs' tasks, their follow-ups and the Claude Code cases run at
# once. When a registry cannot be reached it says SKIPPED and exits 0; it
# never passes without having run. Usage: packaging/tests/agent-sessions.sh [BIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
me=agent-sessions
# shellcheck source=packaging/tests/clis-lib.sh
. packaging/tests/clis-lib.sh "$@"
started=$SECONDS
# The scripted model's own decisions first: the checks below rely on them.
out=$(python3 packaging/tests/scripted-model-test.py 2>&1) || { echo "$out"; fail "scripted-model-test.py failed"; }

# As root the agents run as a user of this test's own, not the package's
# ops-agent that real-clis.sh and the package test create and remove. As
# another user, its HOME (where codex keeps its home) must not be under
# /tmp: codex will not make its helper binaries there.
if [ "$(id -u)" != 0 ]; then
    nonroot_home=$(mktemp -d /var/tmp/agent-sessions-home.XXXXXX)
    remove_at_exit+=("$nonroot_home")
fi
agent_user ops-agent-sessions
install_clis
if [ "$(id -u)" = 0 ]; then export HOME="$work/home"; else export HOME="$agent_home"; fi
mkdir -p "$HOME"
unset OPENAI_API_KEY ANTHROPIC_API_KEY ANTHROPIC_BASE_URL OPENROUTER_API_KEY CODEX_API_KEY

slugs=(claudecode codex opencode hermes)
content="hello from the scripted model"

# The scripted models: one for the four CLIs' sessions, one for the rate
# limit and the slow model (its first model request gets a 429, every
# later answer takes 30 s, a delta every 5 s).
start_model model --model scripted-writer --file hello.txt --content "$content"$'\n' --follow-up-file followup.txt
model=$model_base
start_model slow --model scripted-writer --file hello.txt --content "$content"$'\n' --slow 30 --rate-limit 1
slow_model=$model_base
fail_logs+=("$work/model.log" "$work/slow.log")
say "scripted models at $model (sessions) and $slow_model (a 429, then 30 s an answer)"
# Claude Code is pointed at its model by the launcher's environment
# (ANTHROPIC_* reaches Claude Code's agents, see boundary::builtin_env),
# so each launcher names its own; the other three by their files.
opencode_login "$model"
codex_login "$model"
hermes_login "$model"

start_server
call -X PUT -d '{"value":"true"}' "$api/settings/dispatch_enabled" >/dev/null
# One failed dispatch is then a recurring failure: a rate-limited run
# counted as failed would raise the alert at once.
call -X PUT -d '{"value":"1"}' "$api/settings/watchdog_failure_threshold" | jq -e '.value == "1" or .value == 1' >/dev/null \
    || fail "watchdog_failure_threshold could not be set"
ws2=$(as_admin -X POST -d '{"name":"agent sessions: rate limit and slow model"}' "$api/workspaces" | jq -r .id)
[[ "$ws2" =~ ^[0-9]+$ ]] || fail "the second workspace was not created"
repos="$work/repos"
mkdir -p "$repos"
allow_repo 1 "$repos"
allow_repo "$ws2" "$repos"
# The launchers run from a folder of their own.
launcher_cwd="$work/launcher-cwd"
mkdir -p "$launcher_cwd"

# `new_task WORKSPACE SLUG NAME [MODEL]`: a task of agent SLUG with a
# repository of its own ($repos/NAME), dispatched; sets `id`.
new_task() {
    local ws=$1 slug=$2 name=$3 model=${4:-} body created
    make_repo "$repos/$name"
    body=$(jq -n --argjson ws "$ws" --arg slug "$slug" --arg name "$name" --arg repo "$repos/$name" --arg model "$model" \
        '{workspace_id: $ws, title: "agent sessions: \($name)", execution: "interactive", agent: $slug,
          description: "Write hello.txt with a greeting. [task \($name)]", repo_path: $repo}
         + (if $model == "" then {} else {model: $model} end)')
    created=$(call -X POST -d "$body" "$api/tasks")
    id=$(jq -r .id <<<"$created")
    [[ "$id" =~ ^[0-9]+$ ]] || fail "the task $name was not created: $created"
    call -X POST "$api/tasks/$id/dispatch" | jq -e '.task.status // .status | . == "queued" or . == "dispatching"' >/dev/null \
        || fail "task $id ($name) was not dispatched: $(call "$api/tasks/$id" | jq -c '{status, blocked_reason}')"
}

declare -A task phase
for slug in "${slugs[@]}"; do
    model_arg=
    [ "$slug" != opencode ] || model_arg=scripted/scripted-writer
    new_task 1 "$slug" "$slug" "$model_arg"
    task[$slug]=$id
    phase[$slug]=first
done
new_task "$ws2" claudecode claude-rate-limited
rl_task=$id
phase[rl]=rate_limit
say "tasks: $(for s in "${slugs[@]}"; do printf '%s=%s ' "$s" "${task[$s]}"; done)rate-limited=$rl_task"

common=(ANTHROPIC_API_KEY=scripted-key CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
    AGENT_TIMEOUT_OPENCODE=180s AGENT_TIMEOUT_CODEX=180s AGENT_TIMEOUT_CLAUDECODE=180s AGENT_TIMEOUT_HERMES=180s)
launcher sessions OPS_WORKSPACE_ID=1 SUPPORTED_AGENT_SLUGS=claudecode,codex,opencode,hermes OPS_LAUNCHER_SLOTS=4 \
    "${common[@]}" ANTHROPIC_BASE_URL="$model" OPENAI_API_KEY=scripted-key
# The rate limit is Claude Code's: with CLAUDE_CODE_MAX_RETRIES=0 it
# ends at the first 429 (API Error: Request rejected (429) … try again in
# 30s), in about a second, where codex and Hermes retry with backoff first
# and opencode retries without end. The slow model is Claude Code's too,
# as it streams each delta (--include-partial-messages) as activity.
launcher limits OPS_WORKSPACE_ID="$ws2" SUPPORTED_AGENT_SLUGS=claudecode OPS_LAUNCHER_SLOTS=1 \
    "${common[@]}" ANTHROPIC_BASE_URL="$slow_model" CLAUDE_CODE_MAX_RETRIES=0 \
    AGENT_SILENCE_MINUTES=20s AGENT_TIMEOUT_CLAUDECODE=240s

# --- What is checked of each ------------------------------------------------

task_logs() { # the agent logs of task $1, for a failure's tail
    local f
    for f in "$work"/*-logs/task-"$1"-*.log; do [ -f "$f" ] && fail_logs+=("$f"); done
    return 0
}
# `fail_task ID WHAT`: fails showing the task, its runs and its logs.
fail_task() {
    task_logs "$1"
    echo "--- task $1: $(call "$api/tasks/$1" | jq -c '{status, blocked, blocked_reason, not_before, dispatch_output: (.dispatch_output // "" | .[-400:])}')"
    echo "--- its runs: $(call "$api/tasks/$1/runs" | jq -c .runs)"
    fail "$2"
}
# `expect ID JSON FILTER WHAT`: FILTER (jq -e) holds for JSON, else fails.
expect() {
    jq -e "$3" <<<"$2" >/dev/null || fail_task "$1" "$4: $(jq -c . <<<"$2" | cut -c1-600)"
}
# `run_events ID N`: sets `events` to the run events of run N of task ID,
# as one JSON list.
run_events() {
    local tr
    tr=$(call "$api/tasks/$1/transcript")
    jq -e '.more == false' <<<"$tr" >/dev/null || fail_task "$1" "its transcript has more than one page"
    events=$(jq -c --argjson n "$2" '[.events[] | select(.run == $n)]' <<<"$tr")
}
# What each CLI reports of a run of $2 model answers (10 in and 5 out
# each), with its cost: Claude Code's own figure; codex and opencode give
# tokens but no price (opencode's step cost is 0 for a model it does not
# know, counted as none); Hermes -Q prints no usage at all.
usage_filter() {
    local n=$2
    case $1 in
        claudecode) echo ".tokens_in == $((10 * n)) and .tokens_out == $((5 * n)) and .cost_usd > 0 and .cost_source == \"cli\"" ;;
        codex|opencode) echo ".tokens_in == $((10 * n)) and .tokens_out == $((5 * n)) and .cost_usd == null" ;;
        hermes) echo '.tokens_in == 0 and .tokens_out == 0 and .cost_usd == null' ;;
    esac
}

# The first run: review, the file on the task's branch, session, transcript
# and usage.
check_first() {
    local slug=$1 id=${task[$1]} runs run got
    got=$(git -C "$repos/$slug" show "ops/task-$id:hello.txt" 2>&1) || fail_task "$id" "$slug: hello.txt is not on ops/task-$id: $got"
    [ "$got" = "$content" ] || fail_task "$id" "$slug: hello.txt on ops/task-$id holds \"$got\""
    runs=$(call "$api/tasks/$id/runs")
    expect "$id" "$runs" '(.runs | length) == 1 and .can_resume' "$slug: one run that can be resumed"
    run=$(jq -c '.runs[0]' <<<"$runs")
    expect "$id" "$run" ".number == 1 and .agent == \"$slug\" and .outcome == \"finished\" and .follow_up == null and .resumed_session == null" \
        "$slug: run 1 is not a finished fresh run"
    expect "$id" "$run" '.session_id | type == "string" and length > 0' "$slug: run 1 has no session_id"
    expect "$id" "$run" "$(usage_filter "$slug" 2)" "$slug: run 1's usage is not what $slug reports for two answers"
    run_events "$id" 1
    expect "$id" "$events" 'any(.[]; .kind == "tool_call")' "$slug: run 1's transcript has no tool_call"
    jq -e --arg s "$(jq -r .session_id <<<"$run")" 'any(.[]; .kind == "session" and .id == $s)' <<<"$events" >/dev/null \
        || fail_task "$id" "$slug: run 1's transcript does not name its session"
    if [ "$slug" = hermes ]; then
        expect "$id" "$events" 'all(.[]; .kind != "usage")' "hermes: a usage event where Hermes prints none"
    else
        expect "$id" "$events" 'any(.[]; .kind == "usage")' "$slug: run 1's transcript has no usage event"
    fi
    say "$slug task $id: review, ops/task-$id:hello.txt, $(jq -r '"session \(.session_id), tokens \(.tokens_in)/\(.tokens_out), cost \(.cost_usd) (\(.cost_source))"' <<<"$run"), $(jq -r '[.[].kind] | group_by(.) | map("\(.[0]) \(length)") | join(", ")' <<<"$events")"
}

follow_up() {
    local slug=$1 id=${task[$1]} answer
    answer=$(call -X POST -d "{\"message\":\"Also write followup.txt. [follow-up $slug]\"}" "$api/tasks/$id/follow-up")
    [ "$(call "$api/tasks/$id" | jq -r .status)" != review ] || fail_task "$id" "$slug: the follow-up left the task in review: $answer"
}

# The follow-up's run: the same session resumed, its own usage, and the
# model asked with the first conversation.
check_second() {
    local slug=$1 id=${task[$1]} runs first second got
    runs=$(call "$api/tasks/$id/runs")
    expect "$id" "$runs" '(.runs | length) == 2' "$slug: not two runs after the follow-up"
    first=$(jq -c '.runs[0]' <<<"$runs")
    second=$(jq -c '.runs[1]' <<<"$runs")
    jq -e --argjson first "$first" --arg slug "$slug" \
        '.number == 2 and .outcome == "finished" and .resumed_session == $first.session_id
         and .session_id == $first.session_id and (.follow_up | contains("[follow-up \($slug)]"))' <<<"$second" >/dev/null \
        || fail_task "$id" "$slug: run 2 did not resume run 1's session $(jq -r .session_id <<<"$first"): $second"
    expect "$id" "$second" "$(usage_filter "$slug" 2)" "$slug: run 2's usage is not what $slug reports for its two answers"
    run_events "$id" 2
    expect "$id" "$events" 'any(.[]; .kind == "tool_call") and any(.[]; .kind == "message")' \
        "$slug: run 2's transcript has no tool_call or no message"
    got=$(git -C "$repos/$slug" show "ops/task-$id:followup.txt" 2>&1) || fail_task "$id" "$slug: followup.txt is not on ops/task-$id: $got"
    git -C "$repos/$slug" show "ops/task-$id:hello.txt" >/dev/null 2>&1 || fail_task "$id" "$slug: hello.txt left ops/task-$id"
    # The follow-up's request (its last user text is the follow-up) holds
    # the task's own words from the first run.
    jq -se --arg fu "[follow-up $slug]" --arg first "[task $slug]" \
        '[.[] | select((.last_user_text // "") | contains($fu))] as $asked
         | ($asked | length) > 0 and all($asked[]; .earlier_user_texts | any(contains($first)))' \
        "$work/model.log" >/dev/null \
        || fail_task "$id" "$slug: the follow-up's request to the model did not carry the first conversation: $(
            jq -c --arg fu "[follow-up $slug]" 'select((.last_user_text // "") | contains($fu)) | {protocol, roles, earlier_user_texts: [.earlier_user_texts[] | .[-80:]]}' "$work/model.log" | head -c 800)"
    say "$slug task $id: follow-up resumed session $(jq -r .session_id <<<"$second"), tokens $(jq -r '"\(.tokens_in)/\(.tokens_out), cost \(.cost_usd)"' <<<"$second"), the model saw the first conversation"
}

check_rate_limited() {
    local id=$rl_task t runs events report now nb
    t=$(call "$api/tasks/$id")
    runs=$(call "$api/tasks/$id/runs")
    expect "$id" "$runs" '(.runs | length) == 1 and .runs[0].outcome == "rate_limited"' "the 429's run is not rate_limited"
    expect "$id" "$t" '.status == "queued" and .not_before != null and (.blocked | not)' "the rate-limited task is not queued with a not_before"
    nb=$(date -d "$(jq -r .not_before <<<"$t")" +%s) || fail_task "$id" "not_before is no time: $(jq -r .not_before <<<"$t")"
    now=$(date +%s)
    [ "$nb" -gt "$now" ] || fail_task "$id" "not_before $(jq -r .not_before <<<"$t") is not in the future"
    events=$(call "$api/events?task_id=$id&limit=200")
    expect "$id" "$events" 'any(.events[]; .kind == "dispatch.rate_limited")' "no dispatch.rate_limited event"
    expect "$id" "$events" 'all(.events[]; .kind != "dispatch.failed")' "a dispatch.failed event for a rate-limited run"
    report=$(call -X POST "$api/watchdog/run")
    expect "$id" "$report" '.alerts | type == "array"' "the watchdog did not report"
    expect "$id" "$report" 'all(.alerts[]; .kind != "dispatch.recurring_failure")' "the watchdog raised a recurring failure"
    expect "$id" "$(call "$api/alerts?status=open")" 'all(.alerts[]; .kind != "dispatch.recurring_failure")' \
        "a recurring failure alert is open"
    jq -se 'first(.[] | select(.answer)) | .answer == ["429"] and .protocol == "anthropic"' "$work/slow.log" >/dev/null \
        || fail_task "$id" "the slow model's first answer was not Claude Code's 429"
    say "rate-limited task $id: run 1 rate_limited, queued again until $(jq -r .not_before <<<"$t") ($((nb - now)) s), dispatch.rate_limited, no dispatch.failed, no recurring failure"
    # Not run again: its next run would meet the slow model.
    call -X POST "$api/tasks/$id/cancel" >/dev/null
}

check_slow() {
    local id=$slow_task runs run secs
    runs=$(call "$api/tasks/$id/runs")
    expect "$id" "$runs" '(.runs | length) == 1' "the slow model's task ran more than once"
    run=$(jq -c '.runs[0]' <<<"$runs")
    expect "$id" "$run" '.outcome == "finished" and .ended_at != null' "the slow model's run did not finish"
    secs=$(($(date -d "$(jq -r .ended_at <<<"$run")" +%s) - $(date -d "$(jq -r .started_at <<<"$run")" +%s)))
    # Two answers of 30 s: had the launcher gone by the silence limit
    # (20 s) alone, without the deltas, it would have ended the run.
    [ "$secs" -ge 50 ] || fail_task "$id" "the slow model's run took $secs s, not the two slow answers' 60"
    if grep -q "agent silent" "$work/limits.log"; then
        fail_task "$id" "the launcher ended an agent as silent: $(grep "agent silent" "$work/limits.log")"
    fi
    git -C "$repos/claude-slow" show "ops/task-$id:hello.txt" >/dev/null 2>&1 || fail_task "$id" "hello.txt is not on ops/task-$id"
    say "slow-model task $id: review after $secs s with answers of 30 s and AGENT_SILENCE_MINUTES=20s, no \"agent silent\""
}

# --- Every task on its way at once ------------------------------------------

# `status_of ID`: sets `status` to its status, failing on one that is not
# on its way.
status_of() {
    local t
    t=$(call "$api/tasks/$1")
    status=$(jq -r .status <<<"$t")
    case "$status" in
        waiting|done|blocked) fail_task "$1" "task $1 ended in $status, not review" ;;
    esac
    if jq -e .blocked <<<"$t" >/dev/null; then fail_task "$1" "task $1 is blocked"; fi
}
deadline=$((SECONDS + 360))
slow_task=
while :; do
    pending=0
    for slug in "${slugs[@]}"; do
        id=${task[$slug]}
        case ${phase[$slug]} in
            first)
                pending=1
                status_of "$id"
                if [ "$status" = review ]; then
                    check_first "$slug"
                    follow_up "$slug"
                    phase[$slug]=second
                fi ;;
            second)
                pending=1
                status_of "$id"
                if [ "$status" = review ]; then
                    check_second "$slug"
                    phase[$slug]=checked
                fi ;;
        esac
    done
    case ${phase[rl]} in
        rate_limit)
            pending=1
            outcome=$(call "$api/tasks/$rl_task/runs" | jq -r '.runs[0].outcome // "none"')
            if [ "$outcome" != none ] && [ "$outcome" != running ]; then
                check_rate_limited
                new_task "$ws2" claudecode claude-slow
                slow_task=$id
                say "slow-model task: $slow_task"
                phase[rl]=slow
            fi ;;
        slow)
            pending=1
            status_of "$slow_task"
            if [ "$status" = review ]; then
                check_slow
                phase[rl]=checked
            fi ;;
    esac
    [ "$pending" = 1 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
        for slug in "${slugs[@]}"; do task_logs "${task[$slug]}"; done
        fail "still on their way after 360 s: $(for s in "${slugs[@]}" rl; do printf '%s:%s ' "$s" "${phase[$s]}"; done)"
    fi
    sleep 1
done

say "what each CLI reported (run: tokens in/out, cost, source, session):"
for slug in "${slugs[@]}"; do
    call "$api/tasks/${task[$slug]}/runs" | jq -r --arg s "$slug" \
        '.runs[] | "  \($s) run \(.number): \(.tokens_in)/\(.tokens_out), \(.cost_usd) \(.cost_source), \(.session_id)"'
done
say "PASSED in $((SECONDS - started)) s: sessions, transcripts, usage and follow-ups of the four CLIs; Claude Code's rate limit and slow model"
