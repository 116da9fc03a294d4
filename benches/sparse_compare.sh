#!/usr/bin/env bash
# Sparse-file comparison, same machine, same run: `ckpt sparse copy` against
# `cp --sparse=always` and `rsync --sparse` on
#   - a 4 GiB file with about 10% data in scattered 1 MiB extents (first copy), and
#   - a 1 GiB worst case of alternating 4 KiB data blocks and 4 KiB holes.
# The page cache is dropped before every run where the kernel allows it (root), so each
# tool reads from disk; every copy is followed by `sync` of its output, as ckpt makes its
# copies durable. Best of RUNS; prints a Markdown table.
#   RUNS=3 WORK=/tmp/ckpt-sparse-compare bash benches/sparse_compare.sh
set -euo pipefail
RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/ckpt-sparse-compare}
cd "$(dirname "$0")/.."
BENCH=sparse_compare
# shellcheck source=benches/lib.sh
source benches/lib.sh
need_packages rsync:rsync
cargo build --release -q -p ckpt-cli --bin ckpt
CKPT=$PWD/target/release/ckpt
export CKPT
mkdir -p "$WORK"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

# best_of SRC CMD...: the best wall time in seconds over RUNS runs (output removed before
# each). Any run exiting non-zero stops the script, naming CMD; the copy the first run made
# ($WORK/out.img) must equal SRC byte for byte before any time counts.
best_of() {
    local src=$1
    shift
    local best="" i
    for i in $(seq "$RUNS"); do
        rm -f "$WORK/out.img"
        drop_caches
        local t0 t1 s rc=0
        t0=$(date +%s%N)
        "$@" >/dev/null 2>"$WORK/run.err" || rc=$?
        [ "$rc" = 0 ] || fail "$rc" "$WORK/run.err" "$@"
        sync "$WORK/out.img" 2>"$WORK/run.err" || fail $? "$WORK/run.err" sync "$WORK/out.img" after "$@"
        t1=$(date +%s%N)
        if [ "$i" = 1 ]; then same_bytes "$src" "$WORK/out.img" "$*"; fi
        s=$(seconds "$t0" "$t1")
        if lower "$s" "$best"; then best=$s; fi
    done
    echo "$best"
}

python3 - "$WORK" <<'PY'
import os, random, sys
work = sys.argv[1]
random.seed(42)
scattered = os.path.join(work, "scattered.img")
if not os.path.exists(scattered):
    fd = os.open(scattered, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    size = 4 << 30
    os.ftruncate(fd, size)
    slots = random.sample(range(size >> 20), (size >> 20) // 10)
    for s in slots:
        os.pwrite(fd, os.urandom(1 << 20), s << 20)
    os.close(fd)
worst = os.path.join(work, "worst.img")
if not os.path.exists(worst):
    fd = os.open(worst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.ftruncate(fd, 1 << 30)
    block = os.urandom(4096)
    for off in range(0, 1 << 30, 8192):
        os.pwrite(fd, block, off)
    os.close(fd)
PY

echo "### First copy (page cache dropped before each run; output synced)"
echo
echo "| input | command | best seconds | ratio to cp |"
echo "|---|---|---|---|"
for input in scattered worst; do
    src=$WORK/$input.img
    cp_t=$(best_of "$src" cp --sparse=always "$src" "$WORK/out.img")
    ck_t=$(best_of "$src" "$CKPT" sparse copy "$src" "$WORK/out.img")
    sy_t=$(best_of "$src" "$CKPT" sparse sync "$src" "$WORK/out.img")
    rs_t=$(best_of "$src" rsync --sparse "$src" "$WORK/out.img")
    for row in "cp --sparse=always:$cp_t" "ckpt sparse copy:$ck_t" "ckpt sparse sync (new target):$sy_t" "rsync --sparse:$rs_t"; do
        name=${row%%:*}; t=${row##*:}
        echo "| $input | $name | $t | $(awk -v a="$t" -v b="$cp_t" 'BEGIN { printf "%.2f", a / b }') |"
    done
done

# Re-syncs of the scattered file: a target already synced, then (a) no change, (b) 1% of
# the source's data changed in 4 KiB pieces scattered over it. rsync is forced to compare
# content (-I: no size/time shortcut; --no-W: its delta algorithm even locally).
timed() { # CMD...: seconds of one run, its stdout kept in $WORK/last.out; stops if it fails
    drop_caches
    local t0 t1 rc=0
    t0=$(date +%s%N)
    "$@" >"$WORK/last.out" 2>&1 || rc=$?
    t1=$(date +%s%N)
    [ "$rc" = 0 ] || fail "$rc" "$WORK/last.out" "$@"
    seconds "$t0" "$t1"
}
src=$WORK/scattered.img
work=$WORK/resync.img
must cp --sparse=always "$src" "$work"
data=$("$CKPT" sparse map "$work" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_bytes"])')
rm -f "$WORK/ck.img" "$WORK/rs.img"
must "$CKPT" sparse sync "$work" "$WORK/ck.img"
must rsync --sparse "$work" "$WORK/rs.img"
echo
echo "### Re-sync of the 4 GiB scattered file ($data bytes of data)"
echo
echo "| change | command | seconds | data sent | share of the data |"
echo "|---|---|---|---|---|"
resync_rows() { # label
    local t sent
    t=$(timed "$CKPT" sparse sync "$work" "$WORK/ck.img" --json)
    sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_sent"])' "$WORK/last.out")
    echo "| $1 | ckpt sparse sync | $t | $sent | $(awk -v a="$sent" -v b="$data" 'BEGIN { printf "%.2f%%", 100 * a / b }') |"
    t=$(timed rsync --sparse -I --no-W --stats "$work" "$WORK/rs.img")
    sent=$(awk -F': ' '/Literal data/ { gsub(/[^0-9]/, "", $2); print $2 }' "$WORK/last.out")
    echo "| $1 | rsync --sparse -I --no-W | $t | $sent | $(awk -v a="$sent" -v b="$data" 'BEGIN { printf "%.2f%%", 100 * a / b }') |"
}
resync_rows "none"
python3 - "$work" <<'PY'
import json, os, random, subprocess, sys
path = sys.argv[1]
random.seed(7)
m = json.loads(subprocess.check_output([os.environ["CKPT"], "sparse", "map", path, "--json"]))
blocks = [e["offset"] + k for e in m["data"] for k in range(0, e["len"], 4096)]
fd = os.open(path, os.O_WRONLY)
for off in random.sample(blocks, len(blocks) // 100):
    os.pwrite(fd, os.urandom(4096), off)
os.close(fd)
PY
resync_rows "1% in scattered 4 KiB pieces"
