#!/usr/bin/env bash
# Contract test against the real agent CLIs: installs the current releases
# of opencode, Claude Code and codex (npm) and Hermes (PyPI) into a
# temporary prefix, none of them logged in, and checks that
#   - doctor rejects none of the built-in command lines and reports each
#     CLI NOT LOGGED IN (so it FAILs), never PASS;
#   - the logged-in checks take what each CLI takes: codex's CODEX_API_KEY
#     (not OPENAI_API_KEY alone), a key in opencode's opencode.json or in
#     the environment, an api_key in Hermes' config.yaml;
#   - a launcher reports the logged-out CLIs not usable, with the reason,
#     and claims no task for them (health names them);
#   - Hermes with a dummy provider key in its environment is claimed, fails,
#     and its task ends blocked, not in review;
#   - Claude Code run anyway (its check turned off) ends blocked with a
#     blocked_reason that says it is not logged in;
#   - opencode, logged in to a scripted local model (scripted-model.py, an
#     OpenAI-compatible server that answers with a `write` tool call), edits
#     inside its task's own clone: the task ends in review, the file is on
#     branch ops/task-<id> of the repository and in the task's reported
#     change, and neither in the launcher's working directory nor in the
#     repository's checkout;
#   - no task waits past 120 s.
# As root (as CI runs it) agents run as OPS_AGENT_USER=ops-agent, created
# when missing; as another user they run as that same user.
# When a registry cannot be reached it says SKIPPED and exits 0; it never
# passes without having run. Usage: packaging/tests/real-clis.sh [BIN]
set -euo pipefail
cd "$(dirname "$0")/../.."
me=real-clis
# shellcheck source=packaging/tests/clis-lib.sh
. packaging/tests/clis-lib.sh "$@"

agent_user ops-agent
install_clis
# A home of their own: no login, no configuration.
export HOME="$work/home"
mkdir -p "$HOME"
unset OPENAI_API_KEY ANTHROPIC_API_KEY OPENROUTER_API_KEY

say "doctor"
set +e
env ${agent_env[@]+"${agent_env[@]}"} SUPPORTED_AGENT_SLUGS=opencode,claudecode,codex,hermes "$bin" doctor \
    >"$work/doctor.txt" 2>&1
rc=$?
set -e
cat "$work/doctor.txt"
[ "$rc" = 1 ] || fail "doctor exited $rc, expected 1 with no CLI logged in"
if grep -q REJECTED "$work/doctor.txt"; then fail "a built-in command line is rejected by its CLI"; fi
for slug in opencode claudecode codex hermes; do
    grep -q "^\[doctor\] NOT LOGGED IN $slug: " "$work/doctor.txt" || fail "doctor did not find $slug logged out"
done

# The built-in logged-in checks accept what each CLI itself accepts, and
# only that: doctor is run for one slug at a time with a key in the
# environment or in the CLI's own configuration file.
logged_in() { # slug, then VAR=value… for doctor's environment: 0 when doctor finds it logged in
    local slug=$1 out
    shift
    out=$(env ${agent_env[@]+"${agent_env[@]}"} "$@" SUPPORTED_AGENT_SLUGS="$slug" "$bin" doctor 2>&1 || true)
    if grep -q "^\[doctor\] NOT LOGGED IN $slug: " <<<"$out"; then return 1; fi
    grep -q "^\[doctor\] OK $slug: " <<<"$out" || fail "doctor did not check $slug: $out"
}
say "login checks: codex with CODEX_API_KEY is logged in; with only OPENAI_API_KEY it is not (codex 0.171 does not send that key)"
logged_in codex CODEX_API_KEY=dummy-codex-key || fail "codex with CODEX_API_KEY is reported logged out"
if logged_in codex OPENAI_API_KEY=dummy-openai-key; then fail "codex with only OPENAI_API_KEY is reported logged in"; fi
say "login checks: opencode with an apiKey in its opencode.json, or a provider key in the environment, is logged in"
if logged_in opencode; then fail "opencode with no credential at all is reported logged in"; fi
put_agent_file "$agent_home/.config/opencode/opencode.json" 644 <<'EOF'
{ "provider": { "openai": { "options": { "apiKey": "dummy-key-in-the-config-file" } } } }
EOF
logged_in opencode || fail "opencode with an apiKey in opencode.json is reported logged out"
${as_agent[@]+"${as_agent[@]}"} rm -f "$agent_home/.config/opencode/opencode.json"
logged_in opencode ANTHROPIC_API_KEY=dummy-anthropic-key || fail "opencode with ANTHROPIC_API_KEY is reported logged out"
say "login checks: Hermes with an api_key in its config.yaml is logged in"
if logged_in hermes; then fail "hermes with no credential at all is reported logged in"; fi
put_agent_file "$agent_home/.hermes/config.yaml" 644 <<'EOF'
model:
  provider: custom
  base_url: http://127.0.0.1:9/v1
  api_key: dummy-key-in-the-config-file
EOF
logged_in hermes || fail "hermes with an api_key in config.yaml is reported logged out"
${as_agent[@]+"${as_agent[@]}"} rm -f "$agent_home/.hermes/config.yaml"

start_server
call -X PUT -d '{"value":"true"}' "$api/settings/dispatch_enabled" >/dev/null
task_for() {
    local agent_id
    agent_id=$(call "$api/agents" | jq -r --arg s "$1" '.agents[] | select(.slug == $s) | .id')
    local id
    id=$(call -X POST -d "{\"title\":\"contract $1\",\"description\":\"Say hello.\",\"execution\":\"interactive\",\"agent_id\":$agent_id}" "$api/tasks" | jq -r .id)
    call -X POST "$api/tasks/$id/dispatch" >/dev/null
    echo "$id"
}
wait_blocked() {
    local id=$1 t status
    for _ in $(seq 120); do
        t=$(call "$api/tasks/$id")
        status=$(jq -r .status <<<"$t")
        case "$status" in
            waiting) jq -r '"task \(.id) (\(.agent)): waiting, blocked=\(.blocked): \(.blocked_reason)"' <<<"$t"; return 0 ;;
            review|done) fail "task $id ended in $status: $(jq -r .dispatch_output <<<"$t")" ;;
        esac
        sleep 1
    done
    fail "task $id still $status after 120 s"
}

say "launcher with the built-in logged-in checks"
ids=()
for slug in opencode claudecode codex hermes; do ids+=("$(task_for "$slug")"); done
launcher launcher SUPPORTED_AGENT_SLUGS=opencode,claudecode,codex,hermes
for _ in $(seq 30); do
    health=$(call "$api/dispatch/health")
    [ "$(jq '.workers[0].agents | length' <<<"$health")" = 4 ] && break
    sleep 1
done
for slug in opencode claudecode codex hermes; do
    jq -e --arg s "$slug" '.workers[0].agents[] | select(.slug == $s) | .available and (.authenticated | not) and (.reason | startswith("not logged in"))' \
        <<<"$health" >/dev/null || fail "$slug is not reported installed-but-logged-out: $(jq -c .workers[0].agents <<<"$health")"
done
jq -r '.warnings[]' <<<"$health"
sleep 3
for id in "${ids[@]}"; do
    [ "$(call "$api/tasks/$id" | jq -r .status)" = queued ] || fail "task $id of a logged-out CLI was claimed"
done
stop_launcher

say "Hermes with a dummy provider key: it runs, fails, and its task must not reach review"
launcher launcher SUPPORTED_AGENT_SLUGS=hermes OPENROUTER_API_KEY=dummy-key-for-the-contract-test
wait_blocked "${ids[3]}"
stop_launcher

say "Claude Code run with its check turned off"
launcher launcher SUPPORTED_AGENT_SLUGS=claudecode AGENT_AUTH_CHECK_CLAUDECODE=none
claude_task=${ids[1]}
wait_blocked "$claude_task"
call "$api/tasks/$claude_task" | jq -e '.blocked_reason | startswith("not logged in: claude")' >/dev/null \
    || fail "claude's blocked_reason does not say it is not logged in"

stop_launcher

say "opencode with a scripted model edits inside its task's clone"
# The logged-out opencode task of the first step must not run now that
# opencode is logged in: it has no repository.
call -X POST "$api/tasks/${ids[0]}/cancel" >/dev/null
[ "$(call "$api/tasks/${ids[0]}" | jq -r .status)" != queued ] || fail "task ${ids[0]} is still queued after its cancel"
start_model model --model scripted-writer --file hello.txt --content $'hello from the scripted model\n'
model_log="$work/model.log"
fail_logs+=("$model_log")
say "scripted model at $model_base; opencode $(opencode --version 2>&1 | head -n 1)"
opencode_login "$model_base"

repo="$work/repo"
make_repo "$repo"
main_before=$(git -C "$repo" rev-parse main)
# The launcher runs from a folder of its own, which the agent user could
# write: an agent that wrote to the launcher's folder rather than to its
# clone would leave its file here.
launcher_cwd="$work/launcher-cwd"
mkdir -p "$launcher_cwd"
[ "$(id -u)" != 0 ] || chown "$agent_user" "$launcher_cwd"

# The task names its own repository: the workspace must allow it.
allow_repo 1 "$repo"
agent_id=$(call "$api/agents" | jq -r '.agents[] | select(.slug == "opencode") | .id')
task=$(jq -n --arg repo "$repo" --argjson agent "$agent_id" '{title: "contract opencode clone",
    description: "Write hello.txt with a greeting.", execution: "interactive", agent_id: $agent,
    model: "scripted/scripted-writer", repo_path: $repo}')
created=$(call -X POST -d "$task" "$api/tasks")
oc_id=$(jq -r .id <<<"$created")
[[ "$oc_id" =~ ^[0-9]+$ ]] || fail "the opencode task was not created: $created"
call -X POST "$api/tasks/$oc_id/dispatch" >/dev/null
launcher launcher SUPPORTED_AGENT_SLUGS=opencode
for _ in $(seq 120); do
    t=$(call "$api/tasks/$oc_id")
    status=$(jq -r .status <<<"$t")
    case "$status" in
        review) break ;;
        waiting|done|blocked)
            for f in "$work"/launcher-logs/task-"$oc_id"-*.log; do fail_logs+=("$f"); done
            fail "opencode task $oc_id ended in $status, not review: $(jq -r '"\(.blocked_reason) \(.dispatch_output)"' <<<"$t")" ;;
    esac
    sleep 1
done
for f in "$work"/launcher-logs/task-"$oc_id"-*.log; do fail_logs+=("$f"); done
[ "$status" = review ] || fail "opencode task $oc_id still $status after 120 s"
jq -r '"task \(.id) (\(.agent), model \(.model)): \(.status), exit code \(.exit_code)"' <<<"$t"
jq -se 'any(.[]; .answer[0] == "tool" and .answer[1] == "write")' "$model_log" >/dev/null \
    || fail "the scripted model was never asked with opencode's write tool"
jq -se 'any(.[]; .roles[-1] == "tool")' "$model_log" >/dev/null || fail "opencode never sent the write tool's result back"
jq -se 'all(.[]; .authorization == "Bearer scripted-key")' "$model_log" >/dev/null \
    || fail "opencode did not use the credential in the agent user's home"
say "the scripted model's answers (request's last message, then the answer):"
jq -r '"  \(.roles[-1]) -> \(.answer[0]) \(.answer[1])"' "$model_log"

branch="ops/task-$oc_id"
got=$(git -C "$repo" show "$branch:hello.txt" 2>&1) || fail "hello.txt is not on $branch: $got"
[ "$got" = "hello from the scripted model" ] || fail "hello.txt on $branch holds \"$got\""
say "$branch:hello.txt: $got"
[ "$(git -C "$repo" rev-parse main)" = "$main_before" ] || fail "main moved"
[ "$(git -C "$repo" symbolic-ref --short HEAD)" = main ] || fail "the repository's checkout left main"
[ ! -e "$repo/hello.txt" ] || fail "hello.txt was written in the repository's checkout"
[ -z "$(git -C "$repo" status --porcelain)" ] || fail "the repository's checkout changed: $(git -C "$repo" status --porcelain)"
[ ! -e "$launcher_cwd/hello.txt" ] || fail "hello.txt was written in the launcher's working directory"
[ ! -e "$agent_home/hello.txt" ] || fail "hello.txt was written in the agent user's home"
clone="$work/launcher-worktrees/task-$oc_id"
[ -f "$clone/hello.txt" ] || fail "hello.txt is not in the task's clone $clone"
say "the clone $clone holds hello.txt, owned by $(stat -c %U "$clone/hello.txt")"
[ "$(stat -c %U "$clone/hello.txt")" = "$agent_user" ] || fail "hello.txt in the clone is not the agent user's"

changes=$(jq -c .changes <<<"$t")
jq -e --arg b "$branch" '.branch == $b' <<<"$changes" >/dev/null || fail "the task's change is not on $branch: $changes"
jq -e '.diff_stat | test("hello\\.txt +\\| +1 \\+")' <<<"$changes" >/dev/null \
    || fail "the task's diff_stat does not name hello.txt: $(jq -r .diff_stat <<<"$changes")"
jq -e '.patch | contains("+++ b/hello.txt") and contains("+hello from the scripted model")' <<<"$changes" >/dev/null \
    || fail "the task's patch does not add hello.txt: $(jq -r .patch <<<"$changes")"
say "the task's reported change:"
jq -r '.diff_stat' <<<"$changes"

say "PASSED: doctor, logged-out CLIs, Hermes with a dummy key, Claude Code and opencode in its clone behaved as the contract says"
