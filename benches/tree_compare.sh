#!/usr/bin/env bash
# Tree checkpoints side by side, same machine, same run: `ckpt write` / `ckpt restore` on all
# cores against GNU tar piped through `lz4 -1` and `zstd -1 -T0`, on two generated trees:
#   small  FILES (100,000) text-like files of 1-16 KiB (mean ~4 KiB), ~100 per directory,
#          directories nested two levels deep;
#   large  about SIZE (1 GiB): three large files (two of JSON logs, one of random bytes)
#          and 32 medium ones (SIZE/128 each, half logs, half random).
# The trees are generated once into WORK (deterministically: the same bytes and mtimes every
# time) and reused. Every command's exit status is checked (any non-zero, warnings included,
# aborts the script naming the command); the first restore of each tool is compared with the
# input (type, mode, owner, size, mtime and BLAKE2 of every entry) before its time counts.
# Best of RUNS wall times with caches warm alike; peak RSS of one extra run of each command
# (GNU time around every stage of a pipeline; the largest stage is reported); output sizes.
# Prints the Markdown block and replaces the block between `<!-- bench:tree:start -->` and
# `<!-- bench:tree:end -->` in DOC (docs/performance.md), leaving every other byte as it was.
#   FILES=100000 SIZE=1G RUNS=3 WORK=/tmp/ckpt-tree-compare bash benches/tree_compare.sh
# Knobs: SETS="small large" (which data sets), DOC=path (another file to update).
# `bash benches/tree_compare.sh --test-doc` only checks the doc block replacement.
set -euo pipefail
export LC_ALL=C
FILES=${FILES:-100000}
SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
WORK=${WORK:-/tmp/ckpt-tree-compare}
SETS=${SETS:-small large}
cd "$(dirname "$0")/.."
ROOT=$PWD
DOC=${DOC:-$ROOT/docs/performance.md}
CORES=$(nproc)
BENCH=tree_compare
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

log() { echo "tree_compare: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# replace_block DOC BODY_FILE: puts BODY between the tree markers of DOC, appending a
# "## Tree checkpoints against tar" section with them when DOC has neither (lib.sh).
replace_block() { doc_block "$1" tree "Tree checkpoints against tar" "$2"; }

# --test-doc: the replacement on a copy of DOC (append, then replace twice, also with the
# block moved between other blocks) must keep every byte outside the tree markers.
if [ "${1:-}" = "--test-doc" ]; then
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT
    cp "$DOC" "$t/orig.md"
    cp "$DOC" "$t/doc.md"
    printf '| a |\n|---|\n| 1 |\n' >"$t/b1"
    printf '\n\n### x\n\n| b |\n|---|\n| 2 |\n\n' >"$t/b2"
    outside() { # FILE: the file with the tree block's inside cut out
        python3 -c 'import sys; d = open(sys.argv[1], "rb").read()
s = d.index(b"<!-- bench:tree:start -->"); e = d.index(b"<!-- bench:tree:end -->")
sys.stdout.buffer.write(d[:s] + d[e:])' "$1"
    }
    if grep -q 'bench:tree:start' "$t/orig.md"; then
        replace_block "$t/doc.md" "$t/b1"
        cmp <(outside "$t/orig.md") <(outside "$t/doc.md") || die "test-doc: outside bytes changed"
    else
        replace_block "$t/doc.md" "$t/b1"
        cmp -n "$(stat -c %s "$t/orig.md")" "$t/orig.md" "$t/doc.md" ||
            die "test-doc: appending changed the existing text"
    fi
    cp "$t/doc.md" "$t/one.md"
    replace_block "$t/doc.md" "$t/b2"
    cmp <(outside "$t/one.md") <(outside "$t/doc.md") || die "test-doc: outside bytes changed"
    if ! grep -q '^| 2 |$' "$t/doc.md" || grep -q '^| 1 |$' "$t/doc.md"; then die "test-doc: body not replaced"; fi
    replace_block "$t/doc.md" "$t/b1"
    cmp "$t/one.md" "$t/doc.md" || die "test-doc: replacing back is not the first result"
    # A tree block in the middle, between the compare and sparse blocks, no final newline.
    # The doc's own tree block is taken out first: two blocks would be refused.
    python3 -c 'import re, sys; d = open(sys.argv[1], "rb").read()
d = re.sub(rb"<!-- bench:tree:start -->.*?<!-- bench:tree:end -->\n?", b"", d, flags=re.S)
m = b"<!-- bench:compare:end -->\n"; i = d.index(m) + len(m)
sys.stdout.buffer.write(d[:i] + b"\n<!-- bench:tree:start -->\nold\n<!-- bench:tree:end -->\ntail" + d[i:].rstrip(b"\n"))' \
        "$t/orig.md" >"$t/mid.md"
    cp "$t/mid.md" "$t/mid0.md"
    replace_block "$t/mid.md" "$t/b2"
    cmp <(outside "$t/mid0.md") <(outside "$t/mid.md") || die "test-doc: middle block: outside bytes changed"
    # Broken markers are refused and the file left alone.
    printf '<!-- bench:tree:start -->\nx\n' >"$t/bad.md"
    cp "$t/bad.md" "$t/bad0.md"
    if replace_block "$t/bad.md" "$t/b1" 2>/dev/null; then die "test-doc: a lone start marker was accepted"; fi
    cmp "$t/bad0.md" "$t/bad.md" || die "test-doc: a refused replacement changed the file"
    log "test-doc: ok (append, replace, replace back, block between others, bad markers)"
    exit 0
fi

[[ $FILES =~ ^[1-9][0-9]*$ ]] || die "FILES must be a positive integer, not $FILES"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not $RUNS"
SIZE_BYTES=$(s=${SIZE%iB} && numfmt --from=iec "${s%B}" 2>/dev/null) || die "SIZE: $SIZE is not a size (e.g. 1G, 64M)"
((SIZE_BYTES >= 1 << 20)) || die "SIZE must be at least 1M"

need=()
command -v lz4 >/dev/null || need+=(lz4)
command -v zstd >/dev/null || need+=(zstd)
[ -x /usr/bin/time ] || need+=(time)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is needed"
command -v python3 >/dev/null || die "python3 is needed (data generation, verification)"

cargo build --release -q -p ckpt-cli --bin ckpt || die "cargo build -p ckpt-cli --bin ckpt failed"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CKPT=$TARGET/release/ckpt
DATA=$WORK/data
OUT=$WORK/out
LOGS=$WORK/log
mkdir -p "$DATA" "$OUT" "$LOGS"

# ---- data sets -------------------------------------------------------------------------------

gen_small() { # DIR FILES
    python3 - "$1" "$2" <<'PY'
import os, random, sys
out, files = sys.argv[1], int(sys.argv[2])
os.umask(0o022)
rng = random.Random(20261203)
rand = rng.random
hexs = lambda bits: format(rng.getrandbits(bits), "x")
# Four kinds of text-like lines; every file draws from its kind's pool of distinct lines, so
# files differ but compress like logs, CSV, code and prose do.
words = ("account slot block replica frame chunk manifest restore write verify heal pool "
         "sparse extent hole checksum thread buffer commit publish rename directory file "
         "snapshot state model weight grid cache page writeback latency request").split()
def word(): return words[int(rand() * len(words))]
def num(n): return int(rand() * n)
levels, paths = ("INFO", "WARN", "DEBUG", "ERROR"), ("/api/v1/accounts", "/api/v1/slots", "/healthz", "/api/v2/blocks/recent")
ts = 1_700_000_000_000
pools = [[], [], [], []]
for i in range(16384):
    ts += num(1000)
    pools[0].append(f'{{"ts":{ts},"level":"{levels[num(4)]}","path":"{paths[num(4)]}","status":{200 + num(4) * 100},'
                    f'"latency_us":{num(50000)},"req":"{hexs(64)}"}}\n')
    pools[1].append(f"{num(100000)},{word()},{num(1 << 20)},{rand():.6f},{hexs(32)},{word()}\n")
    pools[2].append(f"    let {word()}_{num(100)} = {word()}::{word()}(&{word()}, {num(4096)})?; // {word()} {word()}\n")
    pools[3].append(" ".join(word() for _ in range(4 + num(12))).capitalize() + ".\n")
exts = (".json", ".csv", ".rs", ".txt")
leaves = -(-files // 100)
per_top = max(1, int(leaves ** 0.5 + 0.999999))
made = set()
for i in range(files):
    leaf = i // 100
    d = os.path.join(out, f"d{leaf // per_top:03d}", f"e{leaf % per_top:03d}")
    if d not in made:
        os.makedirs(d, exist_ok=True)
        made.add(d)
    size = min(16384, 1024 + int(rng.expovariate(1 / 3072)))
    kind = i % 4
    head = f"# {i} {hexs(64)}\n".encode()
    lines = rng.choices(pools[kind], k=size // 40 + 2)
    data = (head + "".join(lines).encode())[:size]
    while len(data) < size:  # long enough nearly always; pad deterministically otherwise
        data += "".join(rng.choices(pools[kind], k=64)).encode()
        data = data[:size]
    p = os.path.join(d, f"f{i:06d}{exts[kind]}")
    with open(p, "wb") as f:
        f.write(data)
    os.utime(p, (1_700_000_000 + i, 1_700_000_000 + i))
PY
}

gen_large() { # DIR BYTES
    local dir=$1 s=$2 q p
    q=$((s / 4))
    p=$((s / 128))
    cargo build --release -q -p ckpt-benches --bin gen-data || die "cargo build -p ckpt-benches --bin gen-data failed"
    "$TARGET/release/gen-data" logs $((2 * q + 16 * p)) "$DATA/logs.tmp" || die "gen-data logs failed"
    "$TARGET/release/gen-data" random $((q + 16 * p)) "$DATA/random.tmp" || die "gen-data random failed"
    python3 - "$dir" "$q" "$p" "$DATA/logs.tmp" "$DATA/random.tmp" <<'PY'
import os, sys
out, q, p, logs, rnd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
os.umask(0o022)
for sub in ("big", "medium/logs", "medium/bin"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)
plan = [(logs, ["big/a.log", "big/b.log"], q, [f"medium/logs/m{i:02d}.log" for i in range(16)]),
        (rnd, ["big/c.bin"], q, [f"medium/bin/m{i:02d}.bin" for i in range(16)])]
n = 0
for src, bigs, big_len, meds in plan:
    with open(src, "rb") as f:
        for name, length in [(b, big_len) for b in bigs] + [(m, p) for m in meds]:
            data = f.read(length)
            assert len(data) == length, (src, name)
            path = os.path.join(out, name)
            with open(path, "wb") as o:
                o.write(data)
            os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))
            n += 1
PY
    rm -f "$DATA/logs.tmp" "$DATA/random.tmp"
}

# ensure_set NAME: generates $DATA/NAME unless a complete one with the same parameters exists.
ensure_set() {
    local name=$1 want
    case $name in
        small) want="small v1 FILES=$FILES" ;;
        large) want="large v1 SIZE=$SIZE_BYTES" ;;
        *) die "unknown data set $name (SETS may hold small and large)" ;;
    esac
    if [ -d "$DATA/$name" ] && [ "$(cat "$DATA/$name.ok" 2>/dev/null)" = "$want" ]; then
        return
    fi
    log "generating $name ($want) in $DATA/$name"
    rm -rf "${DATA:?}/$name" "$DATA/$name.tmp" "$DATA/$name.ok"
    mkdir -p "$DATA/$name.tmp"
    if [ "$name" = small ]; then gen_small "$DATA/$name.tmp" "$FILES"; else gen_large "$DATA/$name.tmp" "$SIZE_BYTES"; fi
    chmod 755 "$DATA/$name.tmp"
    mv "$DATA/$name.tmp" "$DATA/$name"
    echo "$want" >"$DATA/$name.ok"
}

# manifest DIR: one sorted line per entry under DIR (DIR itself included as "."): type, mode,
# uid:gid, and for files size, mtime in ns and BLAKE2b-128 of the contents (hashed on all
# cores); link targets for symlinks. Directory mtimes are left out (tar sets them at 1 s).
manifest() {
    python3 - "$1" "$CORES" <<'PY'
import hashlib, os, stat, sys
from concurrent.futures import ThreadPoolExecutor
root, cores = sys.argv[1], int(sys.argv[2])
entries = []
for dirpath, dirnames, filenames in os.walk(root):
    for n in dirnames + filenames:
        entries.append(os.path.join(dirpath, n))
entries.append(root)
def line(path):
    st = os.lstat(path)
    rel = os.path.relpath(path, root)
    head = f"{stat.S_IFMT(st.st_mode):o} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid}"
    if stat.S_ISREG(st.st_mode):
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return f"{rel}\0{head} {st.st_size} {st.st_mtime_ns} {h.hexdigest()}"
    if stat.S_ISLNK(st.st_mode):
        return f"{rel}\0{head} -> {os.readlink(path)}"
    return f"{rel}\0{head}"
with ThreadPoolExecutor(max_workers=cores) as ex:
    lines = sorted(ex.map(line, entries, chunksize=64))
sys.stdout.write("".join(l.replace("\0", " ") + "\n" for l in lines))
PY
}

# verify SET TOOL DEST: the restored tree must be exactly the input.
verify() {
    local set=$1 tool=$2 dest=$3
    local top
    top=$(find "$dest" -mindepth 1 -maxdepth 1 -printf '%P\n')
    [ "$top" = "$set" ] || die "$tool restore of $set: $dest holds $(head -5 <<<"$top" | tr '\n' ' ')instead of just $set"
    manifest "$dest/$set" >"$LOGS/$set.$tool.manifest" || die "listing the $tool restore of $set failed"
    if ! cmp -s "$LOGS/$set.manifest" "$LOGS/$set.$tool.manifest"; then
        diff "$LOGS/$set.manifest" "$LOGS/$set.$tool.manifest" | head -20 >&2 || true
        die "$tool restore of $set differs from the input (lists: $LOGS/$set.manifest, $LOGS/$set.$tool.manifest)"
    fi
    log "verified: $tool restore of $set matches the input ($(wc -l <"$LOGS/$set.manifest") entries)"
}

# ---- the commands ----------------------------------------------------------------------------
# S1 and S2 prefix the stages of each command: empty when timed, GNU time (-o a file per
# stage) for the peak-memory run. Each function is a single command or pipeline, so its status
# is the command's (pipefail: any failing stage).
S1=()
S2=()
write_ckpt() { "${S1[@]}" "$CKPT" write -o "$1" --threads "$CORES" "$2/$3"; }
write_lz4() { "${S1[@]}" tar -cf - -C "$2" "$3" | "${S2[@]}" lz4 -1 -q >"$1"; }
write_zstd() { "${S1[@]}" tar -cf - -C "$2" "$3" | "${S2[@]}" zstd -1 -T0 -q >"$1"; }
restore_ckpt() { "${S1[@]}" "$CKPT" restore "$1" -C "$2" --threads "$CORES"; }
restore_lz4() { "${S1[@]}" lz4 -dc -q "$1" | "${S2[@]}" tar -xf - -C "$2"; }
restore_zstd() { "${S1[@]}" zstd -dc -q "$1" | "${S2[@]}" tar -xf - -C "$2"; }
TOOLS=(ckpt lz4 zstd)
declare -A EXT=([ckpt]=ckpt [lz4]=tar.lz4 [zstd]=tar.zst)
declare -A NAME=([ckpt]="ckpt ($CORES threads)" [lz4]="tar \\| lz4 -1" [zstd]="tar \\| zstd -1 -T0")
describe() { # OP TOOL ARCHIVE PARENT SET|DEST: the command as a person would type it
    case $1:$2 in
        write:ckpt) echo "ckpt write -o $3 --threads $CORES $4/$5" ;;
        write:lz4) echo "tar -cf - -C $4 $5 | lz4 -1 -q > $3" ;;
        write:zstd) echo "tar -cf - -C $4 $5 | zstd -1 -T0 -q > $3" ;;
        restore:ckpt) echo "ckpt restore $3 -C $5 --threads $CORES" ;;
        restore:lz4) echo "lz4 -dc -q $3 | tar -xf - -C $5" ;;
        restore:zstd) echo "zstd -dc -q $3 | tar -xf - -C $5" ;;
    esac
}

# run_checked DESCRIPTION CMD...: runs CMD (stdout and stderr to $LOGS/last.*), sets ELAPSED_US
# to its wall time; any non-zero status aborts, naming the command, before a time is kept.
run_checked() {
    local what=$1 t0 t1 rc=0
    shift
    t0=$EPOCHREALTIME
    "$@" >"$LOGS/last.out" 2>"$LOGS/last.err" || rc=$?
    t1=$EPOCHREALTIME
    if ((rc != 0)); then
        sed 's/^/    /' "$LOGS/last.err" | tail -20 >&2
        die "FAILED (exit $rc): $what"
    fi
    ELAPSED_US=$((${t1/./} - ${t0/./}))
}

warm_tree() { # PARENT SET: every file's data and inode read, so each write starts warm alike
    tar -cf - -C "$1" "$2" | cat >/dev/null || die "warming $1/$2 failed"
}

# peak_kib FILE...: the largest %M among GNU time's outputs (one per stage)
peak_kib() {
    local f v max=0
    for f in "$@"; do
        [ -s "$f" ] || die "no GNU time output in $f"
        v=$(tail -n 1 "$f")
        [[ $v =~ ^[0-9]+$ ]] || die "unexpected GNU time output in $f: $v"
        ((v > max)) && max=$v
    done
    echo "$max"
}

secs() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1e6 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

declare -A WBEST RBEST WPEAK RPEAK OSIZE
TABLES=""
SUMMARY=""

bench_set() {
    local set=$1 parent=$DATA tool r dest arc files dirs bytes prev
    ensure_set "$set"
    log "$set: listing the input"
    manifest "$DATA/$set" >"$LOGS/$set.manifest" || die "listing $DATA/$set failed"
    files=$(grep -c '^[^ ]* 100000 ' "$LOGS/$set.manifest" || true)
    dirs=$(grep -c '^[^ ]* 40000 ' "$LOGS/$set.manifest" || true)
    bytes=$(awk '$2 == "100000" { s += $5 } END { printf "%d", s }' "$LOGS/$set.manifest")
    mkdir -p "$OUT/$set"

    # Writes: RUNS rounds, the tools taking turns within a round, so drift hits all alike.
    for r in $(seq "$RUNS"); do
        for tool in "${TOOLS[@]}"; do
            arc=$OUT/$set/$set.${EXT[$tool]}
            rm -f "$arc"
            warm_tree "$parent" "$set"
            sync
            run_checked "write $set: $(describe write "$tool" "$arc" "$parent" "$set")" \
                "write_$tool" "$arc" "$parent" "$set"
            [ -s "$arc" ] || die "write $set with $tool left no output at $arc"
            prev=${WBEST[$set:$tool]:-}
            if [ -z "$prev" ] || ((ELAPSED_US < prev)); then WBEST[$set:$tool]=$ELAPSED_US; fi
            log "$set write $tool run $r: $(secs "$ELAPSED_US") s"
        done
    done
    for tool in "${TOOLS[@]}"; do OSIZE[$set:$tool]=$(stat -c %s "$OUT/$set/$set.${EXT[$tool]}"); done

    # Restores from the last written outputs; the first restore of each tool is verified
    # before its time is kept.
    for r in $(seq "$RUNS"); do
        for tool in "${TOOLS[@]}"; do
            arc=$OUT/$set/$set.${EXT[$tool]}
            # A fresh directory each time, the old ones deleted only after the set: ext4
            # skips inodes freed in the last minute when it allocates, at a cost that made
            # 100,000-file restores right after a deletion 3-6x slower, for every tool.
            dest=$OUT/$set/restore.$r.$tool
            mkdir -p "$dest"
            cat "$arc" >/dev/null
            sync
            run_checked "restore $set: $(describe restore "$tool" "$arc" "$parent" "$dest")" \
                "restore_$tool" "$arc" "$dest"
            if ((r == 1)); then verify "$set" "$tool" "$dest"; fi
            prev=${RBEST[$set:$tool]:-}
            if [ -z "$prev" ] || ((ELAPSED_US < prev)); then RBEST[$set:$tool]=$ELAPSED_US; fi
            log "$set restore $tool run $r: $(secs "$ELAPSED_US") s"
        done
    done

    # Peak RSS: one more run of each command with GNU time around every stage.
    S1=(/usr/bin/time -f %M -o "$LOGS/rss.1")
    for tool in "${TOOLS[@]}"; do
        if [ "$tool" = ckpt ]; then S2=(); else S2=(/usr/bin/time -f %M -o "$LOGS/rss.2"); fi
        local stages=("$LOGS/rss.1")
        ((${#S2[@]})) && stages+=("$LOGS/rss.2")
        arc=$OUT/$set/peak.${EXT[$tool]}
        rm -f "$arc" "$LOGS"/rss.*
        warm_tree "$parent" "$set"
        sync
        run_checked "write $set (peak memory run): $(describe write "$tool" "$arc" "$parent" "$set")" \
            "write_$tool" "$arc" "$parent" "$set"
        WPEAK[$set:$tool]=$(peak_kib "${stages[@]}")
        log "$set write $tool peak KiB per stage: $(cat "${stages[@]}" | tr '\n' ' ')"
        rm -f "$arc" "$LOGS"/rss.*
        arc=$OUT/$set/$set.${EXT[$tool]}
        dest=$OUT/$set/restore.peak.$tool
        mkdir -p "$dest"
        cat "$arc" >/dev/null
        sync
        run_checked "restore $set (peak memory run): $(describe restore "$tool" "$arc" "$parent" "$dest")" \
            "restore_$tool" "$arc" "$dest"
        RPEAK[$set:$tool]=$(peak_kib "${stages[@]}")
        log "$set restore $tool peak KiB per stage: $(cat "${stages[@]}" | tr '\n' ' ')"
    done
    S1=()
    S2=()
    rm -rf "$OUT/$set"/restore.* "$LOGS"/rss.*

    local t desc wr rr
    if [ "$set" = small ]; then
        desc="$set: $files files of 1-16 KiB (text-like) in $dirs directories, $bytes bytes"
    else
        desc="$set: $files files (3 large, the rest medium; JSON logs and random bytes), $bytes bytes"
    fi
    t=$'\n'"### $desc"$'\n\n'
    t+="| tool | write s | restore s | write peak MiB | restore peak MiB | output size | write time / tar\\|zstd -T0 | restore time / tar\\|zstd -T0 |"$'\n'
    t+="|---|---|---|---|---|---|---|---|"$'\n'
    for tool in "${TOOLS[@]}"; do
        t+="| ${NAME[$tool]} | $(secs "${WBEST[$set:$tool]}") | $(secs "${RBEST[$set:$tool]}")"
        t+=" | $(awk -v k="${WPEAK[$set:$tool]}" 'BEGIN { printf "%.0f", k / 1024 }')"
        t+=" | $(awk -v k="${RPEAK[$set:$tool]}" 'BEGIN { printf "%.0f", k / 1024 }')"
        t+=" | $(mib "${OSIZE[$set:$tool]}") MiB ($(ratio "$bytes" "${OSIZE[$set:$tool]}")x)"
        t+=" | $(ratio "${WBEST[$set:$tool]}" "${WBEST[$set:zstd]}")"
        t+=" | $(ratio "${RBEST[$set:$tool]}" "${RBEST[$set:zstd]}") |"$'\n'
    done
    wr=$(ratio "${WBEST[$set:ckpt]}" "${WBEST[$set:zstd]}")
    rr=$(ratio "${RBEST[$set:ckpt]}" "${RBEST[$set:zstd]}")
    t+=$'\n'"ckpt/(tar | zstd -T0): write ${wr}x, restore ${rr}x"
    if [ "$set" = small ]; then
        local met="met"
        awk -v w="$wr" -v r="$rr" 'BEGIN { exit !(w <= 0.5 && r <= 0.5) }' || met="not met"
        t+=" (goal on the $files-file tree: at most 0.5x for both; $met)"
    fi
    t+="."$'\n'
    TABLES+=$t
    SUMMARY+="$set: write ${wr}x, restore ${rr}x; "
}

for set in $SETS; do bench_set "$set"; done

# ---- the block -------------------------------------------------------------------------------
fs=$(findmnt -n -o FSTYPE --target "$WORK" 2>/dev/null || stat -f -c %T "$WORK")
knobs="FILES=$FILES SIZE=$SIZE RUNS=$RUNS"
[ "$SETS" = "small large" ] || knobs+=" SETS=\"$SETS\""
BODY=$LOGS/block.md
{
    cat <<HEAD
Measured by \`$knobs bash benches/tree_compare.sh\` on $(date -u +%Y-%m-%d): $CORES cores,
$(uname -r), $fs, $(tar --version | head -1), $(lz4 --version 2>&1 | head -1 | sed 's/\*//g' | xargs),
$(zstd --version | sed 's/\*//g' | xargs). Both trees are generated once (deterministic bytes and
mtimes) and reused. Each time is the best of $RUNS runs, the three tools taking turns within a
run; before every run the input tree (for writes) or the archive (for restores) is read once so
the page cache is warm alike and \`sync\` is called, all outside the timed region. Every restore
goes to a fresh directory, and the restored trees are deleted only after the data set: ext4
avoids reusing inodes freed in the last minute, and allocating past them made 100,000-file
restores started right after a deletion 3 to 6 times slower, for tar and ckpt alike. Commands, run from the same directory to the same file system:

- write: \`ckpt write -o OUT.ckpt --threads $CORES DIR\`, \`tar -cf - -C PARENT NAME | lz4 -1 -q > OUT.tar.lz4\`,
  \`tar -cf - -C PARENT NAME | zstd -1 -T0 -q > OUT.tar.zst\`
- restore: \`ckpt restore OUT.ckpt -C DEST --threads $CORES\`, \`lz4 -dc -q OUT.tar.lz4 | tar -xf - -C DEST\`,
  \`zstd -dc -q OUT.tar.zst | tar -xf - -C DEST\`

Every exit status is checked (a pipeline fails if any stage does), and the first restore of each
tool is compared with the input, untimed: type, mode, owner, size, mtime and BLAKE2b of every
file, and type, mode and owner of every directory. Peak memory is the peak RSS of one more run
(GNU \`time -f %M\` around each stage; for a pipeline the largest stage, which is the
compressor or decompressor, not the sum). \`ckpt write\` makes its output durable (fsync,
rename, fsync of the directory); the tar pipelines leave theirs in the page cache. The ratio
columns are each tool's time over \`tar | zstd -T0\`'s; the output size's ratio is input bytes
over output bytes.
HEAD
    printf '%s\n' "$TABLES"
} >"$BODY"

replace_block "$DOC" "$BODY" || die "could not update $DOC"
log "wrote the tree block of $DOC; $SUMMARY"
cat "$BODY"
