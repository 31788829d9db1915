#!/bin/sh
# Fake agent CLI: reads the prompt on stdin, "works" briefly, prints a
# deliverable and exits 0. Usage: fake-agent-ok.sh [prompt_file] [task_id]
# (e.g. AGENT_CMD_CODEX='examples/agents/fake-agent-ok.sh {prompt_file} {task_id}').
prompt=$(cat)
echo "fake agent: task ${2:-$OPS_TASK_ID}, model ${OPS_TASK_MODEL:-none}"
echo "fake agent: prompt on stdin: $(printf '%s' "$prompt" | head -n 1)"
if [ -n "$1" ]; then
  echo "fake agent: prompt file $1 has $(wc -c < "$1") bytes"
fi
if [ -n "${OPS_SERVICE_TOKEN:-}" ]; then
  echo "fake agent: service token visible: yes"
else
  echo "fake agent: service token visible: no"
fi
sleep 1
echo "fake agent: deliverable: all steps done"
exit 0
