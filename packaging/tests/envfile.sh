# Sourced by the test helpers. envfile_vars FILE appends each VAR=value of
# FILE to the array `vars`, as systemd reads an EnvironmentFile=: comment
# and blank lines skipped, one level of surrounding quotes removed.
# shellcheck shell=bash
envfile_vars() {
    local line key value
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in '' | '#'* | ';'*) continue ;; esac
        [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || continue
        key=${line%%=*} value=${line#*=}
        if [[ "$value" =~ ^\"(.*)\"$ ]] || [[ "$value" =~ ^\'(.*)\'$ ]]; then
            value=${BASH_REMATCH[1]}
        fi
        vars+=("$key=$value")
    done <"$1"
}
