#!/usr/bin/env bash
# Side-by-side comparison on the same inputs, in the same run: ckpt (LZ4 on 1 thread and on
# all cores, RAW; restore on 1 thread and all cores) against `lz4 -1`, `zstd -1 -T0` and
# `cp`, writing and restoring, with the ratios the parallel issue asks for and peak memory.
# Best of RUNS wall-clock times; writes docs/performance.md.
#   SIZE=1G RUNS=3 WORK=/tmp/ckpt-compare bash benches/compare.sh
set -euo pipefail
SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/ckpt-compare}
cd "$(dirname "$0")/.."
ROOT=$PWD

BENCH=compare
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

need_packages lz4:lz4 zstd:zstd
# Two commands: `--bin` would otherwise limit the build to that one binary.
cargo build --release -q -p ckpt-cli --bin ckpt
cargo build --release -q -p ckpt-benches --bin gen-data
CKPT=$ROOT/target/release/ckpt
CORES=$(nproc)
mkdir -p "$WORK"

# verify RESTORED COMMAND: RESTORED must equal the input file byte for byte.
verify() { same_bytes "$input" "$1" "$2 (restored)"; }

# runs VERIFY CMD...: the best wall time in seconds over RUNS runs (outputs removed before
# each). Any run exiting non-zero stops the script, naming CMD. Unless VERIFY is `-`, the
# file VERIFY that the first run restored must equal the input before any time counts.
runs() {
    local check=$1
    shift
    local best="" i
    for i in $(seq "$RUNS"); do
        rm -rf "$WORK/out" && mkdir -p "$WORK/out"
        local t0 t1 rc=0
        t0=$(date +%s%N)
        "$@" >/dev/null 2>"$WORK/run.err" || rc=$?
        t1=$(date +%s%N)
        [ "$rc" = 0 ] || fail "$rc" "$WORK/run.err" "$@"
        if [ "$i" = 1 ] && [ "$check" != - ]; then verify "$check" "$*"; fi
        local s
        s=$(seconds "$t0" "$t1")
        if lower "$s" "$best"; then best=$s; fi
    done
    echo "$best"
}

# best_of CMD...: runs for a write (nothing to compare).
best_of() { runs - "$@"; }

# restore_best_of RESTORED CMD...: runs for a restore that leaves the input's copy at RESTORED.
restore_best_of() { runs "$@"; }

peak() { # CMD...: peak resident set of one run in MiB (a failing CMD stops the script)
    rm -rf "$WORK/out" && mkdir -p "$WORK/out"
    local rc=0
    /usr/bin/time -o "$WORK/time.out" -f %M "$@" >/dev/null 2>"$WORK/run.err" || rc=$?
    [ "$rc" = 0 ] || fail "$rc" "$WORK/run.err" "$@"
    tail -1 "$WORK/time.out" | awk '{ printf "%.0f", $1 / 1024 }'
}

row() { # name seconds input_bytes output_bytes
    local mbs ratio
    mbs=$(awk -v n="$3" -v s="$2" 'BEGIN { printf "%.0f", n / s / 1e6 }')
    ratio=$(awk -v i="$3" -v o="$4" 'BEGIN { if (o > 0) printf "%.2f", i / o; else print "-" }')
    printf '| %s | %s | %s | %s |\n' "$1" "$2" "$mbs" "$ratio"
}

TABLES=""
for kind in random logs; do
    in_dir=$WORK/$kind
    mkdir -p "$in_dir"
    [ -f "$in_dir/input.bin" ] || "$ROOT/target/release/gen-data" "$kind" "$SIZE" "$in_dir/input.bin"
    input=$in_dir/input.bin
    n=$(stat -c %s "$input")
    cat "$input" >/dev/null # warm the page cache for every tool alike
    t=""
    # Reference outputs kept for the restore rows and the ratios.
    must "$CKPT" write -o "$WORK/$kind.ckpt" --threads "$CORES" "$in_dir"
    must lz4 -1 -f -q "$input" "$WORK/$kind.lz4"
    must zstd -1 -T0 -f -q "$input" -o "$WORK/$kind.zst"
    ck=$(stat -c %s "$WORK/$kind.ckpt"); l4=$(stat -c %s "$WORK/$kind.lz4"); zs=$(stat -c %s "$WORK/$kind.zst")
    w1=$(best_of "$CKPT" write -o "$WORK/out/x.ckpt" --threads 1 "$in_dir")
    wn=$(best_of "$CKPT" write -o "$WORK/out/x.ckpt" --threads "$CORES" "$in_dir")
    l1=$(best_of lz4 -1 -f -q "$input" "$WORK/out/x.lz4")
    z1=$(best_of zstd -1 -T0 -f -q "$input" -o "$WORK/out/x.zst")
    raw=$(best_of "$CKPT" write -o "$WORK/out/x.ckpt" --style raw "$in_dir")
    cpp=$(best_of cp "$input" "$WORK/out/x.copy")
    # The same peers made durable, as ckpt write is: the output file is fsynced before exit.
    l1s=$(best_of sh -c "lz4 -1 -f -q '$input' '$WORK/out/x.lz4' && sync '$WORK/out/x.lz4'")
    z1s=$(best_of sh -c "zstd -1 -T0 -f -q '$input' -o '$WORK/out/x.zst' && sync '$WORK/out/x.zst'")
    cps=$(best_of sh -c "cp '$input' '$WORK/out/x.copy' && sync '$WORK/out/x.copy'")
    # Each restore's first run must give back the input, byte for byte, before it is timed.
    restored=$WORK/out/r/$kind/input.bin
    r1=$(restore_best_of "$restored" "$CKPT" restore "$WORK/$kind.ckpt" --threads 1 -C "$WORK/out/r")
    rn=$(restore_best_of "$restored" "$CKPT" restore "$WORK/$kind.ckpt" --threads "$CORES" -C "$WORK/out/r")
    ld=$(restore_best_of "$WORK/out/x.dec" lz4 -d -f -q "$WORK/$kind.lz4" "$WORK/out/x.dec")
    zd=$(restore_best_of "$WORK/out/x.dec" zstd -d -f -q "$WORK/$kind.zst" -o "$WORK/out/x.dec")
    t+=$(row "ckpt write, LZ4, 1 thread" "$w1" "$n" "$ck")$'\n'
    t+=$(row "ckpt write, LZ4, $CORES threads" "$wn" "$n" "$ck")$'\n'
    t+=$(row "lz4 -1 (file to file)" "$l1" "$n" "$l4")$'\n'
    t+=$(row "zstd -1 -T0" "$z1" "$n" "$zs")$'\n'
    t+=$(row "ckpt write, RAW (streamed, 1 thread)" "$raw" "$n" "$n")$'\n'
    t+=$(row "cp" "$cpp" "$n" "$n")$'\n'
    t+=$(row "lz4 -1, then sync FILE" "$l1s" "$n" "$l4")$'\n'
    t+=$(row "zstd -1 -T0, then sync FILE" "$z1s" "$n" "$zs")$'\n'
    t+=$(row "cp, then sync FILE" "$cps" "$n" "$n")$'\n'
    t+=$(row "ckpt restore, LZ4, 1 thread" "$r1" "$n" "$ck")$'\n'
    t+=$(row "ckpt restore, LZ4, $CORES threads" "$rn" "$n" "$ck")$'\n'
    t+=$(row "lz4 -d" "$ld" "$n" "$l4")$'\n'
    t+=$(row "zstd -d" "$zd" "$n" "$zs")$'\n'
    # Speed ratios (time of the other over time of ckpt: above 1 means ckpt is faster).
    t+=$'\n'"Ratios: LZ4 write $CORES threads over 1 thread $(ratio "$w1" "$wn")x; against lz4 -1"
    t+=" $(ratio "$l1" "$wn")x (durable $(ratio "$l1s" "$wn")x), zstd -1 -T0 $(ratio "$z1" "$wn")x"
    t+=" (durable $(ratio "$z1s" "$wn")x); RAW against cp then sync $(ratio "$cps" "$raw")x"
    t+=" (plain cp $(ratio "$cpp" "$raw")x); restore $CORES threads against lz4 -d"
    t+=" $(ratio "$ld" "$rn")x, 1 thread $(ratio "$ld" "$r1")x."$'\n'
    if [ -x /usr/bin/time ]; then
        pw=$(peak "$CKPT" write -o "$WORK/out/x.ckpt" --threads "$CORES" "$in_dir")
        pr=$(peak "$CKPT" write -o "$WORK/out/x.ckpt" --style raw "$in_dir")
        pd=$(peak "$CKPT" restore "$WORK/$kind.ckpt" -C "$WORK/out/r")
        t+=$'\n'"Peak resident memory (GNU time): LZ4 write $CORES threads $pw MiB,"
        t+=" RAW write $pr MiB,"
        t+=" restore $CORES threads $pd MiB."$'\n'
    fi
    TABLES+=$'\n'"### $kind data ($n bytes)"$'\n\n'"| command | best seconds | MB/s of input | ratio |"$'\n'"|---|---|---|---|"$'\n'"$t"
done

# Sections other runners wrote (benches/sparse_compare.sh) are kept after these tables.
KEPT=""
if [ -f "$ROOT/docs/performance.md" ]; then
    KEPT=$(sed -n '/^## Sparse files/,$p' "$ROOT/docs/performance.md")
fi
{
    cat <<HEAD
# Performance

<!-- bench:compare:start -->

Measured by \`SIZE=$SIZE RUNS=$RUNS bash benches/compare.sh\` on $(date -u +%Y-%m-%d): $CORES cores,
$(uname -r), ext4, $(lz4 --version 2>&1 | head -1 | sed 's/\*//g' | xargs), $(zstd --version | sed 's/\*//g' | xargs).
Every command reads the same warm input file and writes to the same file system; each figure is
the best of $RUNS runs. \`ckpt write\` publishes durably (fsync of the file, rename, fsync of the
directory) and checksums every chunk; plain \`lz4\`, \`zstd\` and \`cp\` do neither and leave
their output dirty in the page cache, so the table also gives them followed by \`sync FILE\`
(an fsync of the output), the condition ckpt always works under. Ratios are input bytes over
output bytes.

In-memory engine figures (no file I/O) come from criterion:
\`cargo bench -p ckpt-benches --bench frame_core\` and \`--bench parallel\`.
HEAD
    printf '%s\n' "$TABLES"
    cat <<'NOTES'
## Notes

- Random data does not compress, so its write is bound by the kernel's copies into the page
  cache and by the disk, not by LZ4: 1 and 2 threads take the same time (0.85-1.1 s over
  four runs each); the threads pay off on compressible data (logs: 1.72x).
- RAW output is streamed on one thread in 64 KiB pieces: read, hash (XXH3 at ~15 GiB/s) and
  write while the piece is in cache. Three measured effects of this VM's Linux 6.18 / ext4
  shaped it: reads into memory 16 bytes past a cache line (where large `malloc` blocks
  start) are four times slower than into 64-byte aligned memory, so every buffer the kernel
  fills or drains is aligned; page-cache writes larger than 128 KiB are up to five times
  slower (the write size sets the folio size), so writes go out in pieces of at most
  128 KiB; and writeback is started every 8 MiB (`sync_file_range`), so the final `fsync`
  has little left. `cp` copies inside the kernel (`copy_file_range`) and makes one copy
  where ckpt makes two (it must see the bytes to checksum them).
- Peak memory of every write and restore on a 384 MiB input is also checked by a test:
  `cargo test -p ckpt-cli --test memory -- --nocapture` (LZ4 write 16/28/53 MiB with
  1/2/4 threads, RAW 4 MiB, restore 9/13/22 MiB; the limit asserted is 64 MiB). Memory grows
  with threads, about 4 x threads x `--frame-size` (4 MiB): with 8 or more threads, lower
  `--frame-size` to stay under 64 MiB.
NOTES
    printf '\n<!-- bench:compare:end -->\n'
    if [ -n "$KEPT" ]; then printf '\n%s\n' "$KEPT"; fi
} > "$ROOT/docs/performance.md"
echo "compare: wrote docs/performance.md"
cat "$ROOT/docs/performance.md"

# Tree checkpoints against `tar | lz4` and `tar | zstd -T0` (benches/tree_compare.sh, which
# replaces only its own block of docs/performance.md). TREE=0 skips it; FILES passes through.
TREE=${TREE:-1}
if [ "$TREE" != 0 ]; then
    WORK="$WORK/tree" SIZE="$SIZE" RUNS="$RUNS" bash "$ROOT/benches/tree_compare.sh"
fi
