#!/usr/bin/env bash
# Fake agent CLI whose wrapper calls a program that is not installed: bash
# prints "...: command not found" to stderr (the .err.log), which the
# launcher reports with the signature "command not found".
cat > /dev/null
echo "fake agent: preparing workspace"
ops-fake-tool-that-is-not-installed --sync
exit $?
