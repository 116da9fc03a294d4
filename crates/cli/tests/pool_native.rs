//! Checkpoints in native pools through the real `ckpt` binary: a checkpoint restores
//! exactly with one replica deleted and another damaged; scrub heals and reports, with the
//! exit codes a script relies on; a second checkpoint replaces the first for readers.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

fn ckpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt")).args(args).output().expect("run ckpt")
}

fn ok(args: &[&str]) -> Output {
    let out = ckpt(args);
    assert!(out.status.success(), "ckpt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn tree(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.bin"), noise(3 << 20, seed)).unwrap();
    fs::write(root.join("sub/b.txt"), format!("generation {seed}\n").repeat(5000)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
}

fn same(a: &Path, b: &Path) {
    for rel in ["a.bin", "sub/b.txt", "empty"] {
        assert!(fs::read(a.join(rel)).unwrap() == fs::read(b.join(rel)).unwrap(), "{rel} differs");
    }
}

/// Flips one byte in every third 64 KiB block from `first` on, `count` times, in `file`
/// past its first 64 KiB (header, descriptor, control records, table of a small pool).
fn damage(file: &Path, first: u64, count: u64) {
    let f = fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    for k in 0..count {
        let off = (2 + first + 3 * k) * 65536 + 777;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[!b[0]], off).unwrap();
    }
}

/// Flips a byte of published block `k` in every replica, through the pool's own layout.
fn damage_published_block_everywhere(set: &Path, k: u64) {
    use ckpt_poolset::native::{Access, NativePool};
    let pool = NativePool::open(set, Access::Read).unwrap();
    let (desc, published) = (pool.descriptor(), pool.published());
    let at = desc.data_at + published.start + k * u64::from(desc.block_size) + 99;
    let poolset = ckpt_poolset::grammar::PoolSet::from_file(set).unwrap();
    for r in 0..poolset.replicas.len() {
        let e = poolset
            .replica_extents(r)
            .unwrap()
            .into_iter()
            .find(|e| e.pool_offset <= at && at < e.pool_offset + e.len)
            .unwrap();
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&poolset.replicas[r].parts[e.part].path)
            .unwrap();
        let off = e.file_offset + (at - e.pool_offset);
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[!b[0]], off).unwrap();
    }
}

#[test]
fn a_checkpoint_in_a_pool_survives_a_lost_replica_and_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = d.join("pool.set");
    fs::write(
        &set,
        format!(
            "PMEMPOOLSET\n32M {}\nREPLICA\n16M {}\n16M {}\nREPLICA\n32M {}\n",
            d.join("r0").display(),
            d.join("r1a").display(),
            d.join("r1b").display(),
            d.join("r2").display()
        ),
    )
    .unwrap();
    let set_s = set.to_str().unwrap();
    let target = format!("pool:{set_s}");
    ok(&["pool", "create", set_s]);
    // A create over existing parts is refused and leaves them alone.
    let out = ckpt(&["pool", "create", set_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let data = d.join("data");
    tree(&data, 1);
    ok(&["write", "--style", "raw", "-o", &target, data.to_str().unwrap()]);
    // Replica 1 lost, replica 2 damaged in 12 blocks: the restore reads verified copies.
    fs::remove_file(d.join("r1a")).unwrap();
    fs::remove_file(d.join("r1b")).unwrap();
    damage(&d.join("r2"), 0, 12);
    let out_dir = d.join("out");
    ok(&["restore", &target, "-C", out_dir.to_str().unwrap()]);
    same(&data, &out_dir.join("data"));
    // check names the lost replica; sync rebuilds it; scrub heals replica 2.
    let out = ckpt(&["pool", "check", set_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing"));
    ok(&["pool", "sync", set_s]);
    let out = ok(&["pool", "scrub", set_s, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replicas"][2]["blocks_healed"], 12, "{report:#}");
    assert_eq!(report["replicas"][0]["blocks_healed"], 0);
    assert_eq!(report["unrecoverable_blocks"].as_array().unwrap().len(), 0);
    let again: serde_json::Value =
        serde_json::from_slice(&ok(&["pool", "scrub", set_s, "--json"]).stdout).unwrap();
    assert_eq!(again["replicas"][2]["blocks_healed"], 0, "healed for good: {again:#}");

    // A second checkpoint replaces the first for readers.
    tree(&data, 2);
    ok(&["write", "-o", &target, data.to_str().unwrap()]);
    let out2 = d.join("out2");
    ok(&["restore", &target, "-C", out2.to_str().unwrap()]);
    same(&data, &out2.join("data"));

    // The same block damaged in every replica: scrub exits 1, names it, overwrites nothing;
    // the restore fails clearly instead of returning wrong bytes.
    damage_published_block_everywhere(&set, 5);
    let before = fs::read(d.join("r0")).unwrap();
    let out = ckpt(&["pool", "scrub", set_s, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unrecoverable_blocks"].as_array().unwrap().len(), 1, "{report:#}");
    assert!(fs::read(d.join("r0")).unwrap() == before, "an unverifiable block was overwritten");
    let out3 = d.join("out3");
    let out = ckpt(&["restore", &target, "-C", out3.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verifies"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pool as a replicated, checksummed address space from the command line: `pool write`
/// publishes, `pool read` returns verified bytes with a replica damaged, never past the
/// published range.
#[test]
fn pool_write_and_read_at_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = d.join("a.set");
    fs::write(
        &set,
        format!(
            "PMEMPOOLSET\n8M {}\nREPLICA\n8M {}\n",
            d.join("x").display(),
            d.join("y").display()
        ),
    )
    .unwrap();
    let set_s = set.to_str().unwrap();
    ok(&["pool", "create", set_s, "--block-size", "4KiB"]);
    let first = noise(10_000, 5);
    let second = noise(3_000, 6);
    fs::write(d.join("first"), &first).unwrap();
    fs::write(d.join("second"), &second).unwrap();
    ok(&["pool", "write", set_s, "--offset", "100", d.join("first").to_str().unwrap()]);
    ok(&["pool", "write", set_s, "--offset", "12000", d.join("second").to_str().unwrap()]);
    let all = ok(&["pool", "read", set_s]).stdout;
    assert_eq!(all.len(), 12000 + 3000 - 100, "published 100..15000");
    assert!(all[..10_000] == first[..]);
    assert!(all[11_900..] == second[..]);
    // Damage replica x's copy of the first data block: reads still verify from y.
    damage_published_block_everywhere_but(&set, 0, "y");
    let again = ok(&["pool", "read", set_s, "--offset", "0", "--len", "10000"]).stdout;
    assert!(again == first);
    let out = ckpt(&["pool", "read", set_s, "--offset", "14000", "--len", "5000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("published"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Flips a byte of published block `k` in every replica whose part file is not named
/// `spare`.
fn damage_published_block_everywhere_but(set: &Path, k: u64, spare: &str) {
    use ckpt_poolset::native::{Access, NativePool};
    let pool = NativePool::open(set, Access::Read).unwrap();
    let (desc, published) = (pool.descriptor(), pool.published());
    let at = desc.data_at + published.start + k * u64::from(desc.block_size) + 7;
    let poolset = ckpt_poolset::grammar::PoolSet::from_file(set).unwrap();
    for r in 0..poolset.replicas.len() {
        let e = poolset
            .replica_extents(r)
            .unwrap()
            .into_iter()
            .find(|e| e.pool_offset <= at && at < e.pool_offset + e.len)
            .unwrap();
        let path = &poolset.replicas[r].parts[e.part].path;
        if path.file_name().is_some_and(|n| n == spare) {
            continue;
        }
        let f = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
        let off = e.file_offset + (at - e.pool_offset);
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[!b[0]], off).unwrap();
    }
}
