//! The README's first command, `ckpt demo`, runs its whole tour (checkpoint, restore,
//! compare, verify, damage, heal, pool scrub, restore from the pool) and succeeds, at the
//! sizes where the pool has only a few blocks (which once made the tour damage a block an
//! even number of times and then fail its own check) and at a size with every kind of file.

use std::process::Command;

fn demo(size: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["demo", "--size", size, "--dir"])
        .arg(dir.path())
        .output()
        .expect("run ckpt demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo --size {size}: {:?}\n{stdout}\n{stderr}", out.status);
    stdout
}

#[test]
fn the_demo_runs_end_to_end_at_small_sizes() {
    for size in ["0", "64KiB", "8MiB", "24MiB"] {
        let out = demo(size);
        for step in ["write", "restore", "compare", "verify", "damage", "heal", "pool", "scrub"] {
            assert!(out.lines().any(|l| l.starts_with(step)), "{size}: no {step} step in\n{out}");
        }
        assert!(out.contains("restored tree identical to the source"), "{size}:\n{out}");
        assert!(out.contains("from the pool: identical to the source"), "{size}:\n{out}");
    }
}
