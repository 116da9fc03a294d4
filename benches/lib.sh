# Shared helpers of the comparison runners in benches/ (sourced, not run):
#   BENCH=compare WORK=/tmp/x; source "$ROOT/benches/lib.sh"
# BENCH prefixes every message; WORK must exist and holds run.err, the stderr of the last
# command run through `must`. Every helper that runs a command checks its exit status and
# stops the script, naming the command, when it is not 0: no time of a failed command is
# ever recorded.
# shellcheck shell=bash

# fail RC LOG CMD...: says which command failed, with its output (LOG), and stops.
# Called in $(...) too: the exit ends that subshell, and `set -e` then stops the script.
fail() {
    local rc=$1 log=$2
    shift 2
    echo "$BENCH: FAILED (exit $rc): $*" >&2
    if [ -s "$log" ]; then sed "s/^/$BENCH:   /" "$log" >&2; fi
    exit 1
}

# must CMD...: runs CMD (stdout discarded, stderr in $WORK/run.err), stopping loudly when
# it fails.
must() {
    local rc=0
    "$@" >/dev/null 2>"$WORK/run.err" || rc=$?
    [ "$rc" = 0 ] || fail "$rc" "$WORK/run.err" "$@"
}

# same_bytes WANT GOT WHAT: GOT must equal WANT byte for byte, else stop naming WHAT.
same_bytes() {
    if ! cmp "$1" "$2" >"$WORK/run.err" 2>&1; then
        echo "$BENCH: FAILED: $3 gave $2, which differs from $1:" >&2
        sed "s/^/$BENCH:   /" "$WORK/run.err" >&2
        exit 1
    fi
}

# seconds T0 T1: the time between two `date +%s%N` readings, in seconds with 3 decimals.
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# lower X BEST: true when BEST is empty or X < BEST (keeping the best of several runs).
lower() { [ -z "$2" ] || awk -v x="$1" -v y="$2" 'BEGIN { exit !(x < y) }'; }

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# need_packages [CMD:PACKAGE]...: installs (apt-get) the Debian packages whose command is
# missing; a CMD that is a path (/usr/bin/time) must be executable.
need_packages() {
    local want=() pair cmd
    for pair in "$@"; do
        cmd=${pair%%:*}
        if [[ $cmd == /* ]]; then [ -x "$cmd" ] && continue; else command -v "$cmd" >/dev/null && continue; fi
        want+=("${pair#*:}")
    done
    if ((${#want[@]})); then
        echo "$BENCH: installing ${want[*]}" >&2
        apt-get update -qq && apt-get install -y -qq "${want[@]}"
    fi
}
