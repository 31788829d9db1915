#!/bin/sh
# Fake agent CLI whose prompt says how long it works: the first word of
# the prompt (on stdin) is a number of seconds (decimals allowed; default
# 1); a second word `fail` makes it fail (exit 3) once its time is up.
# It prints a progress line, works, prints a deliverable and exits 0;
# TERM ends it at once (exit 143). With a JOURNAL file ($1) it appends
# "start TASK PID NANOS - LAUNCH" when it starts and "end TASK PID NANOS
# HOW LAUNCH" when it ends (HOW: ok, fail or term; LAUNCH: the launcher's
# name for the run, from its prompt file), so that a test can see which
# agents ran at the same time, and of which launch.
# Usage: AGENT_CMD_CODEX='examples/agents/fake-agent-timed.sh /tmp/journal'
journal=${1:-}
task=${OPS_TASK_ID:-0}
launch=$(basename "${OPS_PROMPT_FILE:-none}" .prompt.md)
set -- $(head -n 1)
secs=$(awk -v s="${1:-1}" 'BEGIN { print s + 0 }')
outcome=${2:-ok}
note() {
  if [ -n "$journal" ]; then
    printf '%s %s %s %s %s %s\n' "$1" "$task" "$$" "$(date +%s%N)" "${2:--}" "$launch" >> "$journal"
  fi
}
note start -
trap 'note end term; exit 143' TERM
echo "fake agent: task $task works for ${secs} s"
sleep "$secs" &
wait $!
if [ "$outcome" = fail ]; then
  echo "fake agent: error: task $task could not be done" >&2
  note end fail
  exit 3
fi
echo "fake agent: deliverable of task $task"
note end ok
exit 0
