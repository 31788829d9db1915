#!/bin/sh
# Fake agent CLI that is not logged in: Claude Code's message and exit 1.
cat > /dev/null
echo "Not logged in · Please run /login" >&2
exit 1
