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

# doc_block DOC NAME HEADING BODY_FILE: puts BODY_FILE's text between the lines
# `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->` of DOC; when DOC has neither,
# appends a `## HEADING` section holding them. Every byte outside the block is kept. A marker
# twice, only one of the two, or the end before the start is refused, DOC left as it was.
doc_block() {
    python3 - "$@" <<'PY'
import os, shutil, sys, tempfile
path, name, heading, body_path = sys.argv[1:5]
start, end = f"<!-- bench:{name}:start -->".encode(), f"<!-- bench:{name}:end -->".encode()
doc = open(path, "rb").read() if os.path.exists(path) else b""
body = open(body_path, "rb").read().strip()

def find(marker):
    hits, off = [], 0
    for line in doc.splitlines(keepends=True):
        if line.strip() == marker:
            hits.append((off, off + len(line)))
        off += len(line)
    return hits

s, e = find(start), find(end)
if not s and not e:
    new = (doc.rstrip(b"\n") + (b"\n\n" if doc.strip() else b"") + b"## " + heading.encode()
           + b"\n\n" + start + b"\n\n" + body + b"\n\n" + end + b"\n")
else:
    if len(s) != 1 or len(e) != 1:
        sys.exit(f"{path}: need exactly one {start.decode()} and one {end.decode()}; fix by hand")
    (_, s_end), (e_start, _) = s[0], e[0]
    if e_start < s_end:
        sys.exit(f"{path}: {end.decode()} comes before {start.decode()}")
    if not doc[:s_end].endswith(b"\n"):
        sys.exit(f"{path}: {start.decode()} is the last line")
    new = doc[:s_end] + b"\n" + body + b"\n\n" + doc[e_start:]
fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".bench-doc.")
with os.fdopen(fd, "wb") as f:
    f.write(new)
if os.path.exists(path):
    shutil.copymode(path, tmp)
os.replace(tmp, path)
PY
}
