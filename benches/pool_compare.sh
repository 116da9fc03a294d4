#!/usr/bin/env bash
# Pool set repair, same machine, same run: `ckpt pool sync` against `pmempool sync` (PMDK),
#   - rebuilding a whole 1 GiB replica (8 parts of 128 MiB), and
#   - rebuilding one 128 MiB part,
# of a two-replica pmemobj pool whose root object fills 900 MiB with non-zero data (written
# through libpmemobj), so neither tool can skip zeros. Wall time (best of RUNS) and peak
# resident memory; the page cache is dropped before every run where the kernel allows it.
# After every run `pmempool check` must call the set consistent and the root object must
# read back intact.
#   RUNS=3 WORK=/tmp/ckpt-pool-compare bash benches/pool_compare.sh
set -euo pipefail
RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/ckpt-pool-compare}
cd "$(dirname "$0")/.."
if ! command -v pmempool >/dev/null || [ ! -e /usr/include/libpmemobj.h ]; then
    echo "pool_compare: installing pmdk-tools libpmemobj-dev" >&2
    apt-get update -qq && apt-get install -y -qq pmdk-tools libpmemobj-dev
fi
cargo build --release -q -p ckpt-cli --bin ckpt
CKPT=$PWD/target/release/ckpt
rm -rf "$WORK" && mkdir -p "$WORK"
ROOT_TOOL=$WORK/pmemobj_root
cc -O2 -o "$ROOT_TOOL" crates/poolset/tests/fixtures/pmemobj_root.c -lpmemobj
ROOT_LEN=$((900 << 20))

SET=$WORK/pool.set
{
    echo PMEMPOOLSET
    for i in 0 1 2 3 4 5 6 7; do echo "128M $WORK/r0p$i"; done
    echo REPLICA
    for i in 0 1 2 3 4 5 6 7; do echo "128M $WORK/r1p$i"; done
} >"$SET"
pmempool create obj --layout=bench "$SET"
"$ROOT_TOOL" write "$SET" - 42 "$ROOT_LEN" >/dev/null
mkdir -p "$WORK/pristine"
cp --sparse=always "$WORK"/r1p* "$WORK/pristine/"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

# damage KIND: remove the replica-1 parts the scenario rebuilds.
damage() {
    cp --sparse=always "$WORK"/pristine/r1p* "$WORK/"
    rm -f "$WORK"/*.ckpt-journal
    case $1 in
    replica) rm -f "$WORK"/r1p* ;;
    part) rm -f "$WORK/r1p5" ;;
    esac
}

# best_of KIND CMD...: best wall seconds and the peak RSS (KiB) of that run.
best_of() {
    local kind=$1
    shift
    local best="" rss=""
    for _ in $(seq "$RUNS"); do
        damage "$kind"
        drop_caches
        local out s m
        /usr/bin/time -o "$WORK/time.out" -f "%e %M" "$@" >/dev/null 2>"$WORK/run.err" ||
            { echo "pool_compare: $* failed:" >&2; cat "$WORK/run.err" >&2; exit 1; }
        out=$(tail -1 "$WORK/time.out")
        s=${out% *}
        m=${out#* }
        pmempool check "$SET" >/dev/null || { echo "pool_compare: $* left an inconsistent set" >&2; exit 1; }
        "$ROOT_TOOL" verify "$SET" - 42 "$ROOT_LEN" >/dev/null || { echo "pool_compare: $* lost the root object" >&2; exit 1; }
        if [ -z "$best" ] || awk -v x="$s" -v y="$best" 'BEGIN { exit !(x < y) }'; then best=$s; rss=$m; fi
    done
    echo "$best $rss"
}

echo "### Rebuilding replica data (pmemobj pool of 2 replicas x 8 parts of 128 MiB, 900 MiB root object)"
echo
echo "| rebuilt | command | best seconds | peak RSS | time ratio to pmempool |"
echo "|---|---|---|---|---|"
for kind in replica part; do
    label="1 GiB replica (8 parts)"
    [ "$kind" = part ] && label="one 128 MiB part"
    # Through $(...), not < <(...): a failing best_of then stops the script (set -e).
    r=$(best_of "$kind" pmempool sync "$SET")
    read -r ps pm <<<"$r"
    r=$(best_of "$kind" "$CKPT" pool sync "$SET")
    read -r cs cm <<<"$r"
    echo "| $label | pmempool sync | $ps | $((pm / 1024)) MiB | 1.00 |"
    echo "| $label | ckpt pool sync | $cs | $((cm / 1024)) MiB | $(awk -v a="$cs" -v b="$ps" 'BEGIN { printf "%.2f", a / b }') |"
done
