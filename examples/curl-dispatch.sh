#!/usr/bin/env bash
# A whole dispatch by hand with curl, doing what a launcher does, so that
# each call of the protocol can be seen. Needs curl and jq, and a running
# server:
#   OPS_API_BASE=http://127.0.0.1:3847/api OPS_SERVICE_TOKEN=... examples/curl-dispatch.sh
# It creates one task (left in review at the end, for you to look at) and
# leaves dispatch_enabled as it found it.
set -euo pipefail
: "${OPS_API_BASE:=http://127.0.0.1:3847/api}"
: "${OPS_SERVICE_TOKEN:?export OPS_SERVICE_TOKEN first}"
WORKER=curl-walkthrough
api() { # METHOD PATH [JSON]
  curl -sS -f -X "$1" -H "X-OPS-Service-Token: $OPS_SERVICE_TOKEN" \
    -H 'Content-Type: application/json' ${3:+-d "$3"} "$OPS_API_BASE$2"
}
step() { printf '\n== %s\n' "$*"; }

step "1. Health"
api GET /dispatch/health | jq '{ok, dispatch_enabled, worker_summary, queue, agent_slugs, warnings}'

step "2. Heartbeat as a worker that can run codex"
api POST /dispatch/heartbeat "{\"worker_id\":\"$WORKER\",\"host\":\"$(hostname)\",\"pid\":$$,
  \"version\":\"curl\",\"agents\":[{\"slug\":\"codex\",\"cli\":\"codex\",\"available\":true,
  \"authenticated\":true,\"reason\":\"\"}],\"models\":[],\"slots_total\":1,\"slots_busy\":0,
  \"running_task_ids\":[],\"draining\":false}" | jq -c .

step "3. Create an interactive task for codex (status next)"
TASK=$(api POST /tasks '{"title":"curl walkthrough","description":"Say hello.","execution":"interactive","agent":"codex","priority":1000}' | jq -r .id)
echo "task $TASK"

step "4. Dispatch it (next -> queued)"
api POST "/tasks/$TASK/dispatch" | jq -c '{id, status}'

step "5. Enable dispatch (remembering the previous value)"
BEFORE=$(api GET /settings/dispatch_enabled | jq -r .value)
api PUT /settings/dispatch_enabled '{"value":"true"}' > /dev/null
echo "dispatch_enabled was $BEFORE, now true"

step "6. Claim (queued -> dispatching): the answer holds the claim token"
CLAIM=$(api POST /dispatch/next "{\"worker_id\":\"$WORKER\",\"agent_slugs\":[\"codex\"]}")
echo "$CLAIM" | jq -c '{task: .task.id, status: .task.status, agent, reconciled}'
TOKEN=$(echo "$CLAIM" | jq -r .claim_token)
[ "$(echo "$CLAIM" | jq -r .task.id)" = "$TASK" ] || echo "note: another queued task came first"
TASK=$(echo "$CLAIM" | jq -r .task.id)

step "7. Report started (dispatching -> doing)"
api POST "/dispatch/tasks/$TASK/started" "{\"worker_id\":\"$WORKER\",\"claim_token\":\"$TOKEN\",\"pid\":$$,
  \"log_path\":\"/tmp/task-$TASK.log\",\"err_log_path\":\"/tmp/task-$TASK.err.log\"}" | jq -c '{id, status}'

step "8. Stream output (an ai-dispatch log comment)"
api POST "/dispatch/tasks/$TASK/output" "{\"worker_id\":\"$WORKER\",\"claim_token\":\"$TOKEN\",\"chunk\":\"hello from curl\\n\"}" | jq -c '{id, status}'

step "9. A report with a wrong token is refused: 409 stale_claim"
curl -sS -X POST -H "X-OPS-Service-Token: $OPS_SERVICE_TOKEN" -H 'Content-Type: application/json' \
  -d "{\"worker_id\":\"$WORKER\",\"claim_token\":\"wrong\",\"chunk\":\"x\"}" \
  -w ' (HTTP %{http_code})\n' "$OPS_API_BASE/dispatch/tasks/$TASK/output"

step "10. Report finished (doing -> review, output kept in dispatch_output)"
api POST "/dispatch/tasks/$TASK/finished" "{\"worker_id\":\"$WORKER\",\"claim_token\":\"$TOKEN\",\"exit_code\":0,
  \"signal\":null,\"output\":\"hello from curl\"}" | jq -c '{id, status, dispatch_output}'

step "11. The task with its comments"
api GET "/tasks/$TASK" | jq '{id, status, dispatch_output, comments: [.comments[] | {author, kind, body}]}'

step "12. Restore dispatch_enabled and forget the walkthrough worker"
api PUT /settings/dispatch_enabled "{\"value\":\"$BEFORE\"}" > /dev/null
api DELETE "/dispatch/workers/$WORKER" | jq -c .
echo "done: task $TASK is in review"
