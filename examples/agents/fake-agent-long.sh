#!/bin/sh
# Fake agent CLI that runs long: one progress line per second for
# $1 seconds (default 600), then a deliverable and exit 0. Used to kill or
# restart the launcher (or the server) while an agent runs.
cat > /dev/null
n=${1:-600}
i=1
while [ "$i" -le "$n" ]; do
  echo "fake agent: progress $i/$n"
  sleep 1
  i=$((i + 1))
done
echo "fake agent: deliverable after $n s"
