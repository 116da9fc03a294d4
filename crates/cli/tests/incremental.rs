//! `ckpt write --parent`, restore, verify and info of chains, `fold` and `prune`, as a user
//! runs them: the real binary on real files, and every refusal with its exit status.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};

fn ckpt(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt")).current_dir(dir).args(args).output().expect("run ckpt")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = ckpt(dir, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ckpt {args:?}: {err}");
    err + &String::from_utf8_lossy(&out.stdout)
}

fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = ckpt(dir, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "ckpt {args:?}: {err}");
    err
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

fn change(path: &Path, pieces: u64, seed: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    for i in 0..pieces {
        let at = (i * 104_729 * 13 + seed * 977) % (len - 4096);
        f.write_all_at(&noise(4096, seed + i), at).unwrap();
    }
}

fn same(a: &Path, b: &Path) {
    assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "{} differs", b.display());
}

#[test]
fn a_chain_is_written_shown_verified_restored_pruned_and_folded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("state")).unwrap();
    std::fs::write(d.join("state/big"), noise(8 << 20, 1)).unwrap();
    std::fs::write(d.join("state/small"), b"v1").unwrap();
    ok(d, &["write", "-o", "a.ckpt", "state"]);
    change(&d.join("state/big"), 20, 2);
    let said = ok(d, &["write", "-o", "b.ckpt", "--parent", "a.ckpt", "state"]);
    assert!(said.contains("incremental on a.ckpt"), "{said}");
    let (a_len, b_len) = (
        std::fs::metadata(d.join("a.ckpt")).unwrap().len(),
        std::fs::metadata(d.join("b.ckpt")).unwrap().len(),
    );
    // 20 scattered 4 KiB changes of 8 MiB: at most 2 blocks each, plus the 16 KiB table.
    assert!(b_len < 250_000 && b_len * 30 < a_len, "{b_len} of {a_len}");
    std::fs::write(d.join("state/small"), b"v2").unwrap();
    ok(d, &["write", "-o", "c.ckpt", "--parent", "b.ckpt", "state"]);

    let info = ok(d, &["info", "c.ckpt"]);
    assert!(info.contains("a chain of 3 checkpoints"), "{info}");
    let json: serde_json::Value =
        serde_json::from_slice(&ckpt(d, &["info", "--json", "c.ckpt"]).stdout).unwrap();
    let chain = json["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 3);
    assert!(chain[2]["path"].as_str().unwrap().ends_with("a.ckpt"));
    let verified = ok(d, &["verify", "c.ckpt"]);
    assert!(verified.contains("chain of 3 checkpoints verified"), "{verified}");

    ok(d, &["restore", "c.ckpt", "-C", "out"]);
    same(&d.join("state/big"), &d.join("out/state/big"));
    same(&d.join("state/small"), &d.join("out/state/small"));

    // Prune b: c is rewritten on a, b is removed, the state is the same.
    let pruned = ok(d, &["prune", "c.ckpt"]);
    assert!(pruned.contains("removed") && !d.join("b.ckpt").exists(), "{pruned}");
    ok(d, &["restore", "c.ckpt", "-C", "out2"]);
    same(&d.join("state/big"), &d.join("out2/state/big"));
    fails(d, &["prune", "c.ckpt"], 2);

    // Fold: self-contained, a can go.
    ok(d, &["fold", "c.ckpt", "-o", "folded.ckpt"]);
    ok(d, &["fold", "c.ckpt"]);
    std::fs::remove_file(d.join("a.ckpt")).unwrap();
    for name in ["c.ckpt", "folded.ckpt"] {
        let out = format!("out_{name}");
        ok(d, &["restore", name, "-C", &out]);
        same(&d.join("state/big"), &d.join(&out).join("state/big"));
        assert!(!ok(d, &["info", name]).contains("incremental"));
    }
}

#[test]
fn a_missing_replaced_or_damaged_parent_is_refused_and_nothing_restored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("state")).unwrap();
    std::fs::write(d.join("state/big"), noise(4 << 20, 5)).unwrap();
    ok(d, &["write", "-o", "a.ckpt", "--style", "raw", "state"]);
    change(&d.join("state/big"), 8, 6);
    ok(d, &["write", "-o", "b.ckpt", "--parent", "a.ckpt", "state"]);
    let good = std::fs::read(d.join("a.ckpt")).unwrap();
    let nothing = |out: &str| {
        let big = d.join(out).join("state/big");
        assert!(!big.exists(), "{} was restored", big.display());
    };

    std::fs::rename(d.join("a.ckpt"), d.join("elsewhere")).unwrap();
    let e = fails(d, &["restore", "b.ckpt", "-C", "o1"], 2);
    assert!(e.contains("a.ckpt") && e.contains("missing"), "{e}");
    nothing("o1");
    fails(d, &["verify", "b.ckpt"], 2);
    std::fs::rename(d.join("elsewhere"), d.join("a.ckpt")).unwrap();

    std::fs::write(d.join("state/other"), b"x").unwrap();
    ok(d, &["write", "-o", "a.ckpt", "state"]);
    let e = fails(d, &["restore", "b.ckpt", "-C", "o2"], 1);
    assert!(e.contains("a.ckpt") && e.contains("replaced"), "{e}");
    nothing("o2");

    let mut damaged = good.clone();
    damaged[1 << 20] ^= 1;
    std::fs::write(d.join("a.ckpt"), &damaged).unwrap();
    let e = fails(d, &["restore", "b.ckpt", "-C", "o3"], 1);
    assert!(e.contains("a.ckpt") && e.contains("damaged"), "{e}");
    nothing("o3");
    let e = fails(d, &["verify", "b.ckpt"], 1);
    assert!(e.contains("a.ckpt"), "{e}");

    // Only a local file can be incremental; an incremental one does not stream.
    std::fs::write(d.join("a.ckpt"), &good).unwrap();
    fails(d, &["write", "-o", "-", "--parent", "a.ckpt", "state"], 2);
    let b = std::fs::File::open(d.join("b.ckpt")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .current_dir(d)
        .args(["restore", "-", "-C", "o4"])
        .stdin(b)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parent"));
    nothing("o4");
}
