#!/usr/bin/env bash
# Incremental checkpoints against full ones, same machine, same run: one file of SIZE
# (1 GiB) pseudo-random bytes written in full (`ckpt write`, default lz4), then 1%, 10% and
# 100% of it overwritten (scattered 4 KiB pieces at random, unaligned offsets; 100% = all
# new bytes) and written both as an incremental (`--parent full.ckpt`) and in full. Both
# are restored (the incremental through its chain) and compared byte for byte (cmp) with
# the changed state before any time counts. Best of RUNS; peak RSS of the incremental write
# (GNU time). Prints the table and replaces the block between `<!-- bench:incremental:start -->`
# and `<!-- bench:incremental:end -->` in DOC (docs/performance.md).
#   bash benches/incremental_compare.sh [--size 1G] [--runs 3]   (or SIZE=, RUNS=, WORK=, DOC=)
set -euo pipefail
export LC_ALL=C
SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
while (($#)); do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        *) echo "usage: $0 [--size SIZE] [--runs N]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
ROOT=$PWD
DOC=${DOC:-$ROOT/docs/performance.md}
BENCH=incremental_compare
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/ckpt-incremental.XXXXXX")}
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
log() { echo "$BENCH: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not $RUNS"
SIZE_BYTES=$(s=${SIZE%iB} && numfmt --from=iec "${s%B}" 2>/dev/null) || die "SIZE: $SIZE is not a size"
((SIZE_BYTES >= 1 << 20)) || die "SIZE must be at least 1M"
command -v python3 >/dev/null || die "python3 is needed"
HAVE_TIME=1
[ -x /usr/bin/time ] || HAVE_TIME=0

cargo build --release -q -p ckpt-cli --bin ckpt || die "cargo build -p ckpt-cli failed"
CKPT=${CARGO_TARGET_DIR:-$ROOT/target}/release/ckpt
cd "$WORK"

# [WARM="FILE..."] timed CMD...: runs CMD through `must` (exit status checked), sets T to
# its wall seconds and C to its CPU seconds (user + system, all threads; empty without GNU
# time). The dirty pages of earlier commands (gigabytes of checkpoints and restored files)
# are written back first and, where this user may, the page cache is emptied and only the
# command's inputs (WARM) read back into it: otherwise a command that writes a gigabyte
# runs into the kernel reclaiming the earlier commands' pages, and its wall and CPU time
# varied several-fold from run to run.
CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ] && echo 1 >/proc/sys/vm/drop_caches 2>/dev/null; then CAN_DROP=1; fi
timed() {
    local t0 t1
    sync
    if ((CAN_DROP)); then
        echo 1 >/proc/sys/vm/drop_caches
        # shellcheck disable=SC2086 # WARM is a list of names without spaces.
        if [ -n "${WARM:-}" ]; then cat $WARM >/dev/null; fi
    fi
    t0=$(date +%s%N)
    if ((HAVE_TIME)); then
        must /usr/bin/time -f "%U %S" -o "$WORK/cpu" "$@"
    else
        must "$@"
    fi
    t1=$(date +%s%N)
    T=$(seconds "$t0" "$t1")
    C=""
    if ((HAVE_TIME)); then C=$(awk 'END { printf "%.3f", $1 + $2 }' "$WORK/cpu"); fi
}
# best_cpu X BEST: the lower of two CPU times, either possibly empty.
best_cpu() { if [ -z "$2" ] || { [ -n "$1" ] && lower "$1" "$2"; }; then echo "$1"; else echo "$2"; fi; }
# cpu_ratio A B: A / B, or "-" without CPU times.
cpu_ratio() { if [ -n "$1" ] && [ -n "$2" ]; then echo "$(ratio "$1" "$2") ($1 / $2 s)"; else echo "-"; fi; }
# restored DEST: the restored copy of state/f (checkpoints of `state/` restore as state/f
# or f, depending on how the path is kept).
restored() { if [ -f "$1/state/f" ]; then echo "$1/state/f"; else echo "$1/f"; fi; }

# mutate PCT: overwrites PCT% of state/f in 4 KiB pieces at random offsets (100: all new bytes).
mutate() {
    python3 - state/f "$1" <<'PY'
import os, random, sys
path, pct = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
rng = random.Random(pct * 7919)
with open(path, "r+b") as f:
    if pct >= 100:
        left = size
        while left:
            n = min(left, 1 << 22)
            f.write(os.urandom(n))
            left -= n
    else:
        for _ in range(max(1, size * pct // 100 // 4096)):
            f.seek(rng.randrange(0, size - 4096))
            f.write(os.urandom(4096))
PY
}

log "state: $SIZE_BYTES random bytes in $WORK"
mkdir -p base
head -c "$SIZE_BYTES" /dev/urandom >base/f
rm -rf state && cp -r base state

# 1. Full write of the base state (the parent), best of RUNS.
FW=""
for r in $(seq "$RUNS"); do
    rm -f full.ckpt
    WARM=state/f timed "$CKPT" write -o full.ckpt state/
    lower "$T" "$FW" && FW=$T
    log "full write run $r: $T s"
done
FULL_SIZE=$(stat -c %s full.ckpt)
rm -rf out0 && mkdir out0
must "$CKPT" restore full.ckpt -C out0
same_bytes base/f "$(restored out0)" "ckpt restore full.ckpt"
rm -rf out0

ROWS=""
for pct in 1 10 100; do
    rm -rf state && cp -r base state
    mutate "$pct" || die "changing $pct% of the state failed"
    cat state/f >/dev/null
    IW="" FW2="" CR="" FR="" IWC="" FWC="" CRC="" FRC=""
    for r in $(seq "$RUNS"); do
        rm -f inc.ckpt full2.ckpt
        # Which write goes first alternates, so neither always meets the other's leftovers.
        if ((r % 2)); then
            WARM="state/f full.ckpt" timed "$CKPT" write -o inc.ckpt --parent full.ckpt state/
            iw=$T iwc=$C
            WARM=state/f timed "$CKPT" write -o full2.ckpt state/
            fw=$T fwc=$C
        else
            WARM=state/f timed "$CKPT" write -o full2.ckpt state/
            fw=$T fwc=$C
            WARM="state/f full.ckpt" timed "$CKPT" write -o inc.ckpt --parent full.ckpt state/
            iw=$T iwc=$C
        fi
        rm -rf out out2 && mkdir out out2
        if ((r % 2)); then
            WARM="inc.ckpt full.ckpt" timed "$CKPT" restore inc.ckpt -C out
            cr=$T crc=$C
            WARM=full2.ckpt timed "$CKPT" restore full2.ckpt -C out2
            fr=$T frc=$C
        else
            WARM=full2.ckpt timed "$CKPT" restore full2.ckpt -C out2
            fr=$T frc=$C
            WARM="inc.ckpt full.ckpt" timed "$CKPT" restore inc.ckpt -C out
            cr=$T crc=$C
        fi
        same_bytes state/f "$(restored out)" "ckpt restore inc.ckpt (chain, $pct%)"
        same_bytes state/f "$(restored out2)" "ckpt restore full2.ckpt ($pct%)"
        lower "$iw" "$IW" && IW=$iw
        lower "$fw" "$FW2" && FW2=$fw
        lower "$cr" "$CR" && CR=$cr
        lower "$fr" "$FR" && FR=$fr
        IWC=$(best_cpu "$iwc" "$IWC") FWC=$(best_cpu "$fwc" "$FWC")
        CRC=$(best_cpu "$crc" "$CRC") FRC=$(best_cpu "$frc" "$FRC")
        log "$pct%: run $r: inc write $iw s (cpu $iwc), full write $fw s (cpu $fwc), chain restore $cr s (cpu $crc), full restore $fr s (cpu $frc)"
    done
    ISIZE=$(stat -c %s inc.ckpt)
    F2SIZE=$(stat -c %s full2.ckpt)
    RSS="skipped (no /usr/bin/time)"
    if ((HAVE_TIME)); then
        rm -f inc.ckpt
        must /usr/bin/time -f %M -o rss "$CKPT" write -o inc.ckpt --parent full.ckpt state/
        RSS="$(awk '{ printf "%.0f", $1 / 1024 }' <(tail -n 1 rss)) MiB"
    fi
    rm -rf out out2 inc.ckpt full2.ckpt
    sp=$(awk -v a="$ISIZE" -v b="$F2SIZE" 'BEGIN { printf "%.2f", 100 * a / b }')
    wr=$(ratio "$IW" "$FW2")
    rr=$(ratio "$CR" "$FR")
    case $pct in
        1) sg="<= 3%"; wg="<= 0.2x" ;;
        100) sg="-"; wg="<= 1.05x" ;;
        *) sg="-"; wg="-" ;;
    esac
    ROWS+="| $pct% | $sp% ($ISIZE of $F2SIZE B) | $sg | $wr ($IW / $FW2 s) | $(cpu_ratio "$IWC" "$FWC") | $wg | $rr ($CR / $FR s) | $(cpu_ratio "$CRC" "$FRC") | <= 1.2x | $RSS |"$'\n'
done

BODY=$WORK/block.md
{
    echo "### One file of $SIZE_BYTES pseudo-random bytes"; echo
    cat <<HEAD
Measured by \`bash benches/incremental_compare.sh --size $SIZE --runs $RUNS\` on $(date -u +%Y-%m-%d):
$(nproc) cores, $(uname -r), load average at the end $(cut -d' ' -f1-3 /proc/loadavg). State: one
file of $SIZE_BYTES pseudo-random bytes; the parent \`full.ckpt\` ($FULL_SIZE B, best write
$FW s) is \`ckpt write -o full.ckpt state/\`. For each change, that fraction of the file is
overwritten in 4 KiB pieces at random (unaligned) offsets (100%: every byte new), then
\`ckpt write -o inc.ckpt --parent full.ckpt state/\` and, for the ratios, \`ckpt write -o full2.ckpt state/\`
of the same state, in the same run; \`ckpt restore inc.ckpt -C out\` (the chain) and
\`ckpt restore full2.ckpt -C out2\` are each \`cmp\`-checked against the changed state before a
time counts. $( ((CAN_DROP)) && echo "Before each timing the page cache is emptied and the command's inputs read back into it. ")Times are the best of $RUNS, wall and CPU (user + system of all threads, GNU
\`time\`) each; every exit status is checked. Size is the incremental's over the full write
of the same changed state. Peak RSS is GNU \`time -f %M\` of one more incremental write.

| change | incremental size / full | goal | incremental write / full write | CPU | goal | chain restore / full restore | CPU | goal | inc. write peak RSS |
|---|---|---|---|---|---|---|---|---|---|
HEAD
    printf '%s' "$ROWS"
} >"$BODY"
doc_block "$DOC" incremental "Incremental checkpoints" "$BODY" || die "could not update $DOC"
log "wrote the incremental block of $DOC"
cat "$BODY"
