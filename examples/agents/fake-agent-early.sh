#!/bin/sh
# Fake agent CLI that exits at once with no output, as a CLI does when a
# flag is wrong or its configuration is missing.
echo "fake agent: unknown option --bogus" >&2
exit 2
