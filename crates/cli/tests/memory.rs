//! Peak memory of `ckpt write` and `ckpt restore` on an input much larger than their
//! window. The bound is on resident memory, not time, so it holds on a loaded machine.
//!
//! Each run's own peak comes from `wait4`, so other tests' children do not blur it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const MIB: u64 = 1 << 20;
/// The target for a streaming write, whatever the input's size.
const LIMIT: u64 = 64 * MIB;

/// Runs ckpt and returns its own peak resident set in bytes, from `wait4`.
// The child is reaped by `wait4`, which std cannot do while also returning rusage.
#[allow(clippy::zombie_processes)]
fn run(args: &[&str]) -> u64 {
    let (ok, peak) = run_any(args);
    assert!(ok, "{args:?} failed");
    peak
}

/// Runs ckpt; returns whether it exited 0 and its own peak resident set in bytes.
#[allow(clippy::zombie_processes)]
fn run_any(args: &[&str]) -> (bool, u64) {
    let child = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: `wait4` reaps our own child `pid` (std never waits for it: `child` is not
    // used again) and writes only the status and `rusage` it is given, both ours.
    let (status, usage) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &raw mut status, 0, &raw mut usage), pid);
        (status, usage)
    };
    assert!(libc::WIFEXITED(status), "{args:?} died: status {status:#x}");
    (libc::WEXITSTATUS(status) == 0, u64::try_from(usage.ru_maxrss).unwrap() * 1024)
}

/// A 307-byte checkpoint whose (checksum-valid) manifest claims one 1 TiB file in 1-byte
/// frames: both restore paths refuse it in little memory instead of planning 2^40 frames
/// (found while writing the manifest fuzz target).
#[test]
fn a_manifest_claiming_two_to_the_forty_frames_is_refused_in_little_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hostile-manifest.ckpt");
    for threads in ["1", "2"] {
        let out = tmp.path().join(format!("out-{threads}"));
        let (ok, peak) =
            run_any(&["restore", fixture, "-C", out.to_str().unwrap(), "--threads", threads]);
        assert!(!ok, "restore of a hostile manifest succeeded");
        assert!(peak < LIMIT, "--threads {threads}: peak {} MiB", peak / MIB);
    }
}

/// 384 MiB that LZ4 cannot shrink (so encoded frames are as large as they get), written
/// in 1 MiB pieces.
fn write_input(path: &Path, len: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; usize::try_from(MIB).unwrap()];
    for _ in 0..len / MIB {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn write_and_restore_stay_under_64_mib_on_a_384_mib_input() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("big.bin");
    write_input(&input, 384 * MIB);
    let ckpt = tmp.path().join("big.ckpt");
    let (i, c) = (input.to_str().unwrap(), ckpt.to_str().unwrap());
    let mut report = Vec::new();
    for (style, threads) in [("lz4", "1"), ("lz4", "2"), ("lz4", "4"), ("raw", "2")] {
        let peak = run(&["write", "-o", c, "--style", style, "--threads", threads, i]);
        report.push(format!("write {style} --threads {threads}: {} MiB", peak / MIB));
        assert!(peak < LIMIT, "write {style} with {threads} threads peaked at {peak} bytes");
    }
    for threads in ["1", "2", "4"] {
        let dest = tmp.path().join(format!("back-{threads}"));
        let peak = run(&["restore", c, "--threads", threads, "-C", dest.to_str().unwrap()]);
        report.push(format!("restore --threads {threads}: {} MiB", peak / MIB));
        assert!(peak < LIMIT, "restore with {threads} threads peaked at {peak} bytes");
        assert_eq!(std::fs::metadata(dest.join("big.bin")).unwrap().len(), 384 * MIB);
    }
    // Shown with --nocapture; quoted in docs/performance.md.
    println!("peak RSS: {}", report.join("; "));
}
