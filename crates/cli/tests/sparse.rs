//! `ckpt sparse map` and `ckpt sparse copy`, run as the real binary on real ext4 files.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

fn ckpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt")).args(args).output().unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ckpt(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// 16 MiB: data at 1 MiB (64 KiB), written zeros at 4 MiB (8 KiB), data at 9 MiB + 5 bytes.
fn image(path: &Path) {
    let f = File::create(path).unwrap();
    f.set_len(16 << 20).unwrap();
    f.write_all_at(&vec![7u8; 65_536], 1 << 20).unwrap();
    f.write_all_at(&[0u8; 8192], 4 << 20).unwrap();
    f.write_all_at(b"tail!", (9 << 20) + 5).unwrap();
}

fn extents(v: &serde_json::Value, key: &str) -> Vec<(u64, u64)> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["offset"].as_u64().unwrap(), e["len"].as_u64().unwrap()))
        .collect()
}

#[test]
fn map_and_copy_keep_bytes_and_data_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("disk.img"), dir.path().join("copy.img"));
    image(&src);
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let map = json(&["sparse", "map", s, "--json"]);
    assert_eq!(map["size"], 16 << 20);
    assert_eq!(
        extents(&map, "data"),
        [(1 << 20, 65_536), (4 << 20, 8192), (9 << 20, 4096)],
        "SEEK_DATA at 4 KiB granularity"
    );
    let fiemap = json(&["sparse", "map", s, "--fiemap", "--json"]);
    assert_eq!(fiemap["fiemap"].as_array().unwrap().len(), 3, "{fiemap:#}");

    let stats = json(&["sparse", "copy", s, d, "--json"]);
    assert_eq!(stats["zero_blocks"], 2, "{stats:#}");
    assert_eq!(stats["data_written"], 65_536 + 4096, "{stats:#}");
    assert!(fs::read(&src).unwrap() == fs::read(&dst).unwrap(), "contents differ");
    let copied = json(&["sparse", "map", d, "--json"]);
    assert_eq!(extents(&copied, "data"), [(1 << 20, 65_536), (9 << 20, 4096)]);

    let text = ckpt(&["sparse", "map", s]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("in 3 extents") && text.contains("hole"), "{text}");
}

#[test]
fn bad_inputs_are_clear_errors_and_leave_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("copy.img");
    fs::write(&dst, b"old").unwrap();
    let missing = dir.path().join("missing.img");
    for args in [
        vec!["sparse", "map", missing.to_str().unwrap()],
        vec!["sparse", "copy", missing.to_str().unwrap(), dst.to_str().unwrap()],
    ] {
        let out = ckpt(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("missing.img"), "{args:?}: {err}");
    }
    let out = ckpt(&["sparse", "copy", dst.to_str().unwrap(), dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("directory"));
    assert_eq!(fs::read(&dst).unwrap(), b"old");
}

#[test]
fn sync_locally_and_through_a_remote_command_sends_only_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, local, remote) =
        (dir.path().join("disk.img"), dir.path().join("local.img"), dir.path().join("remote.img"));
    image(&src);
    let (s, l, r) = (src.to_str().unwrap(), local.to_str().unwrap(), remote.to_str().unwrap());
    let first = json(&["sparse", "sync", s, l, "--json"]);
    assert_eq!(first["bytes_sent"], 65_536 + 4096, "{first:#}");
    let receiver = format!("{} sparse receive {r}", env!("CARGO_BIN_EXE_ckpt"));
    json(&["sparse", "sync", s, r, "--remote-cmd", &receiver, "--json"]);
    for t in [&local, &remote] {
        assert!(fs::read(&src).unwrap() == fs::read(t).unwrap(), "{}", t.display());
    }
    let again = json(&["sparse", "sync", s, r, "--remote-cmd", &receiver, "--json"]);
    assert_eq!(
        (again["bytes_sent"].as_u64(), again["blocks_changed"].as_u64()),
        (Some(0), Some(0))
    );
    File::options().write(true).open(&src).unwrap().write_all_at(b"changed", 3 << 20).unwrap();
    let changed = json(&["sparse", "sync", s, r, "--remote-cmd", &receiver, "--json"]);
    assert_eq!(
        (changed["bytes_sent"].as_u64(), changed["blocks_changed"].as_u64()),
        (Some(4096), Some(1))
    );
    assert!(fs::read(&src).unwrap() == fs::read(&remote).unwrap());
}

#[test]
fn a_receiver_killed_mid_sync_fails_the_sync_and_the_next_run_redoes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("big.img"), dir.path().join("copy.img"));
    // 256 MiB of data in the source, different data in the target: a long phase 5.
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut fill = |f: &File| {
        let mut block = vec![0u8; 1 << 20];
        for i in 0..256u64 {
            for b in block.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&(x | 1).to_le_bytes());
            }
            f.write_all_at(&block, i << 20).unwrap();
        }
    };
    fill(&File::create(&src).unwrap());
    let marker = dir.path().join("copy.img.ckpt-sync");
    let pid_file = dir.path().join("receiver.pid");
    let mut interrupted = 0;
    for _attempt in 0..3 {
        fill(&File::create(&dst).unwrap());
        let cmd = format!(
            "echo $$ > {}; exec {} sparse receive {}",
            pid_file.display(),
            env!("CARGO_BIN_EXE_ckpt"),
            dst.display()
        );
        let sync = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .args([
                "sparse",
                "sync",
                src.to_str().unwrap(),
                dst.to_str().unwrap(),
                "--remote-cmd",
                &cmd,
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Kill the receiver (SIGKILL) as soon as it has started changing the target.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !marker.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if let Ok(pid) = fs::read_to_string(&pid_file) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let out = sync.wait_with_output().unwrap();
        if out.status.success() {
            continue; // the receiver finished first: try again
        }
        interrupted += 1;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("sync of") && err.contains("failed"), "{err}");
        assert!(marker.exists(), "an interrupted sync left no dirty marker");
        let redo =
            json(&["sparse", "sync", src.to_str().unwrap(), dst.to_str().unwrap(), "--json"]);
        assert_eq!(redo["redone"], true, "{redo:#}");
        assert!(!marker.exists());
        assert!(fs::read(&src).unwrap() == fs::read(&dst).unwrap(), "redo did not finish the job");
        break;
    }
    assert!(interrupted > 0, "no kill landed during the sync in 3 attempts");
}

#[test]
fn fold_and_prune_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child) = (dir.path().join("base.img"), dir.path().join("delta.img"));
    fs::write(&parent, vec![1u8; 8192]).unwrap();
    let c = File::create(&child).unwrap();
    c.set_len(16384).unwrap();
    c.write_all_at(&[2u8; 4096], 4096).unwrap();
    let (p, ch) = (parent.to_str().unwrap(), child.to_str().unwrap());
    let folded = json(&["sparse", "fold", ch, p, "--json"]);
    assert_eq!(
        (folded["bytes_written"].as_u64(), folded["parent_size"].as_u64()),
        (Some(4096), Some(16384))
    );
    let bytes = fs::read(&parent).unwrap();
    assert_eq!((bytes[0], bytes[4096], bytes[8192]), (1, 2, 0));
    let pruned = json(&["sparse", "prune", p, ch, "--json"]);
    assert_eq!(pruned["bytes_punched"], 4096);
    assert!(fs::read(&parent).unwrap()[4096..8192].iter().all(|&b| b == 0));
    let out = ckpt(&["sparse", "fold", dir.path().join("nope").to_str().unwrap(), p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn checkpoints_store_only_the_data_of_sparse_files_and_restore_their_holes() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("vm");
    fs::create_dir(&tree).unwrap();
    let disk = tree.join("disk.img");
    let f = File::create(&disk).unwrap();
    f.set_len(256 << 20).unwrap();
    f.write_all_at(&vec![9u8; 3 << 20], 16 << 20).unwrap();
    f.write_all_at(b"superblock", 4096 * 3).unwrap();
    f.write_all_at(b"end", (256 << 20) - 3).unwrap();
    drop(f);
    fs::write(tree.join("dense.txt"), "x".repeat(10_000)).unwrap();
    let want_layout = json(&["sparse", "map", disk.to_str().unwrap(), "--json"]);
    for style in ["raw", "lz4"] {
        let ckpt_file = dir.path().join(format!("{style}.ckpt"));
        let c = ckpt_file.to_str().unwrap();
        let out = ckpt(&["write", "-o", c, "--style", style, tree.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stored = fs::metadata(&ckpt_file).unwrap().len();
        assert!(stored < (4 << 20), "{style}: {stored} bytes stored for 3 MiB of data");
        for (how, threads) in [("parallel", "2"), ("serial", "1")] {
            let dest = dir.path().join(format!("back-{style}-{how}"));
            let out = if how == "serial" {
                // From stdin: the streaming restore.
                Command::new(env!("CARGO_BIN_EXE_ckpt"))
                    .args(["restore", "-", "-C", dest.to_str().unwrap()])
                    .stdin(File::open(&ckpt_file).unwrap())
                    .output()
                    .unwrap()
            } else {
                ckpt(&["restore", c, "--threads", threads, "-C", dest.to_str().unwrap()])
            };
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let back = dest.join("vm/disk.img");
            assert!(fs::read(&disk).unwrap() == fs::read(&back).unwrap(), "{style} {how}");
            let got = json(&["sparse", "map", back.to_str().unwrap(), "--json"]);
            assert_eq!(got["data"], want_layout["data"], "{style} {how}: holes not restored");
            assert_eq!(fs::read(dest.join("vm/dense.txt")).unwrap().len(), 10_000);
        }
    }
}
