#!/bin/sh
# Fake agent CLI that works a little, then fails: some output, an error on
# stderr, exit code 3. The launcher reports it as
# "launcher process exited early (code=3, signal=null)".
cat > /dev/null
echo "fake agent: starting"
sleep 1
echo "fake agent: error: could not apply the patch" >&2
exit 3
