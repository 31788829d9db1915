#!/bin/sh
# Fake agent CLI that says one line and then hangs without a word, like a
# CLI retrying its network forever. The launcher's silence timeout
# (AGENT_SILENCE_MINUTES) must end it.
cat > /dev/null
echo "fake agent: connecting"
exec sleep 600
