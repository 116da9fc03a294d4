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
