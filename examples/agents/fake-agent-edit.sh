#!/bin/sh
# Fake coding agent: after $3 seconds (default 1) writes "change of task
# $2" to file $1 in its working directory (the task's worktree when the
# task names a repository; "none": changes nothing), and prints where it
# worked unless $4 is "quiet". $5, if given ({workdir}), must be its
# working directory. Usage:
#   AGENT_CMD_CODEX='examples/agents/fake-agent-edit.sh shared.txt {task_id} 1 loud {workdir}'
cat > /dev/null
if [ -n "$5" ] && [ "$5" != "$(pwd)" ]; then
  echo "fake agent: {workdir} $5 is not the working directory $(pwd)" >&2
  exit 3
fi
sleep "${3:-1}"
if [ "$1" != none ]; then
  printf 'change of task %s\n' "$2" > "$1"
fi
if [ "$4" != quiet ]; then
  echo "fake agent: task $2 wrote $1 in $(pwd) on ${OPS_TASK_BRANCH:-no branch}"
fi
exit 0
