#!/bin/sh
# Fake agent CLI that fails after $1 seconds (default 3): a progress line on
# stdout, the error on stderr, exit code 3. Used to check that a restarted
# launcher judges an agent it adopted by its exit code, as the launcher that
# started it would, and not by whether it printed something.
cat > /dev/null
echo "fake agent: working"
sleep "${1:-3}"
echo "fake agent: error: the build broke" >&2
exit 3
