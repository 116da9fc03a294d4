//! The real `ckpt` binary on real files: round trips, pipes, every --io mode, verify, heal,
//! hostile checkpoints, clear errors, and a writer killed mid-way.

use ckpt_frame_core::scan::{Depth, RegionKind, scan};
use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink, Writer};
use ckpt_tree::manifest::{Entry, Kind, Manifest};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ID: &str = "00112233445566778899aabbccddeeff";

fn ckpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt")).args(args).output().expect("run ckpt")
}

fn ok(args: &[&str]) -> Output {
    let out = ckpt(args);
    assert!(out.status.success(), "ckpt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn fails(args: &[&str], code: i32, needle: &str) -> String {
    let out = ckpt(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "ckpt {args:?}: {err}");
    assert!(err.contains(needle), "ckpt {args:?}: {err:?} lacks {needle:?}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
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

/// A tree with every kind of entry.
fn sample_tree(root: &Path) -> PathBuf {
    let t = root.join("tree");
    fs::create_dir_all(t.join("sub/deeper")).unwrap();
    fs::create_dir_all(t.join("empty-dir")).unwrap();
    fs::write(t.join("hello.txt"), b"hello\n").unwrap();
    fs::write(t.join("empty"), b"").unwrap();
    fs::write(t.join("sub/random.bin"), noise(3 << 20, 7)).unwrap();
    fs::write(t.join("sub/deeper/text.log"), "line of text\n".repeat(50_000)).unwrap();
    fs::write(t.join("run.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(t.join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("hello.txt", t.join("link")).unwrap();
    symlink("/nonexistent/target", t.join("dangling")).unwrap();
    t
}

/// Panics unless the trees hold the same names, kinds, bytes, modes, symlink targets and
/// file mtimes.
fn assert_same_tree(a: &Path, b: &Path) {
    let names = |p: &Path| {
        let mut v: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b), "{} vs {}", a.display(), b.display());
    for n in names(a) {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (fs::symlink_metadata(&pa).unwrap(), fs::symlink_metadata(&pb).unwrap());
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pb.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
            continue;
        }
        assert_eq!(ma.permissions().mode(), mb.permissions().mode(), "{}", pb.display());
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else {
            assert!(fs::read(&pa).unwrap() == fs::read(&pb).unwrap(), "{} differs", pb.display());
            assert_eq!(ma.modified().unwrap(), mb.modified().unwrap(), "{} mtime", pb.display());
        }
    }
}

#[test]
fn tree_round_trips_in_both_styles() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = sample_tree(tmp.path());
    for style in ["lz4", "raw"] {
        let out = tmp.path().join(format!("{style}.ckpt"));
        ok(&["write", "-o", s(&out), "--style", style, "--frame-size", "1M", s(&tree)]);
        let dest = tmp.path().join(format!("back-{style}"));
        ok(&["restore", s(&out), "-C", s(&dest)]);
        assert_same_tree(&tree, &dest.join("tree"));
    }
}

#[test]
fn checkpoint_of_nothing_but_an_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("nothing");
    fs::create_dir(&empty).unwrap();
    let out = tmp.path().join("nothing.ckpt");
    ok(&["write", "-o", s(&out), s(&empty)]);
    let info = ok(&["info", s(&out), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["files"], 0);
    assert_eq!(v["frames"].as_array().unwrap().len(), 2, "the manifest and the block table");
    ok(&["restore", s(&out), "-C", s(&tmp.path().join("back"))]);
    assert!(tmp.path().join("back/nothing").is_dir());
}

#[test]
fn stdout_pipes_into_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = sample_tree(tmp.path());
    let dest = tmp.path().join("piped");
    let mut writer = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["write", "-o", "-", "--frame-size", "256K", s(&tree)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let restore = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["restore", "-", "-C", s(&dest)])
        .stdin(writer.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(writer.wait().unwrap().success());
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
    assert_same_tree(&tree, &dest.join("tree"));
}

#[test]
fn every_io_mode_and_thread_count_writes_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = sample_tree(tmp.path());
    let mut outputs = Vec::new();
    for io in ["buffered", "direct", "mmap", "auto"] {
        let out = tmp.path().join(format!("{io}.ckpt"));
        ok(&["write", "-o", s(&out), "--io", io, "--id", ID, s(&tree)]);
        outputs.push((io, fs::read(&out).unwrap()));
        let dest = tmp.path().join(format!("back-{io}"));
        ok(&["restore", s(&out), "--io", io, "-C", s(&dest)]);
        assert_same_tree(&tree, &dest.join("tree"));
    }
    for threads in ["1", "2", "3", "8"] {
        let out = tmp.path().join(format!("threads-{threads}.ckpt"));
        let args =
            ["write", "-o", s(&out), "--threads", threads, "--frame-size", "256K", "--id", ID];
        ok(&[&args[..], &[s(&tree)]].concat());
        outputs.push(("threads", fs::read(&out).unwrap()));
    }
    let streamed = ok(&["write", "-o", "-", "--id", ID, s(&tree)]).stdout;
    for (io, bytes) in &outputs[..4] {
        assert!(*bytes == outputs[0].1, "--io {io} wrote different bytes");
    }
    for bytes in outputs[4..].iter().map(|(_, b)| b) {
        assert!(*bytes == outputs[4].1, "--threads changed the bytes");
    }
    assert!(streamed == outputs[0].1, "stdout differs from files");
    for threads in ["1", "2", "8"] {
        let dest = tmp.path().join(format!("back-threads-{threads}"));
        ok(&[
            "restore",
            s(&tmp.path().join("threads-1.ckpt")),
            "--threads",
            threads,
            "-C",
            s(&dest),
        ]);
        assert_same_tree(&tree, &dest.join("tree"));
    }
}

#[test]
fn parallel_restore_of_a_damaged_frame_names_it_and_publishes_nothing_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = sample_tree(tmp.path());
    let out = tmp.path().join("c.ckpt");
    ok(&["write", "-o", s(&out), "--frame-size", "256K", s(&tree)]);
    // Damage the stored data of the last chunk of the middle data frame.
    let chunks = chunks_of(&out);
    let frames: Vec<u64> = chunks.iter().map(|c| c.0).collect();
    let middle = frames[frames.len() / 2];
    let victim = chunks.iter().rfind(|c| c.0 == middle).unwrap();
    flip(&out, victim.1 + 40);
    for threads in ["1", "2", "8"] {
        let dest = tmp.path().join(format!("back-{threads}"));
        let err = fails(&["restore", s(&out), "--threads", threads, "-C", s(&dest)], 1, "");
        assert!(err.contains(&format!("frame {middle}")), "threads {threads}: {err}");
        let leftovers: Vec<_> = walk(&dest)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".ckpt-restore"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        assert!(!dest.join("tree/sub/random.bin").exists(), "a damaged file was published");
    }
}

fn chunks_of(path: &Path) -> Vec<(u64, u64, u64)> {
    let bytes = fs::read(path).unwrap();
    let report = scan(&mut SliceSource::new(&bytes), Depth::Stored).unwrap();
    report
        .regions
        .iter()
        .filter(|r| r.kind == RegionKind::Chunk)
        .map(|r| (r.frame.unwrap(), r.offset, r.len))
        .collect()
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[usize::try_from(at).unwrap()] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

#[test]
fn verify_names_frame_and_offset_of_each_damaged_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = sample_tree(tmp.path());
    let out = tmp.path().join("c.ckpt");
    ok(&["write", "-o", s(&out), "--frame-size", "1M", s(&tree)]);
    let v: serde_json::Value =
        serde_json::from_slice(&ok(&["verify", s(&out), "--json"]).stdout).unwrap();
    assert_eq!(v, serde_json::json!({"ok": true, "bad_chunks": []}));
    let chunks = chunks_of(&out);
    let picked = [chunks[1], chunks[chunks.len() / 2], chunks[chunks.len() - 1]];
    for (_, offset, len) in picked {
        flip(&out, offset + len - 1);
    }
    let before = fs::read(&out).unwrap();
    let res = ckpt(&["verify", s(&out), "--json"]);
    assert_eq!(res.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let bad: Vec<(u64, u64)> = v["bad_chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["frame"].as_u64().unwrap(), c["offset"].as_u64().unwrap()))
        .collect();
    assert_eq!(bad, picked.iter().map(|&(f, o, _)| (f, o)).collect::<Vec<_>>());
    assert!(fs::read(&out).unwrap() == before, "verify must not write");
    fails(&["verify", s(&out)], 1, &format!("chunk at offset {}", picked[0].1));
}

#[test]
fn heal_rewrites_only_damaged_chunks_and_refuses_strangers() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = sample_tree(tmp.path());
    let good = tmp.path().join("good.ckpt");
    ok(&["write", "-o", s(&good), "--frame-size", "512K", s(&tree)]);
    let damaged = tmp.path().join("damaged.ckpt");
    fs::copy(&good, &damaged).unwrap();
    let chunks = chunks_of(&good);
    let hit: Vec<_> = chunks.iter().step_by(5).copied().collect();
    for &(_, offset, len) in &hit {
        flip(&damaged, offset + len / 2);
    }
    let dry = ok(&["heal", s(&damaged), "--from", s(&good), "--dry-run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(v["healed"].as_array().unwrap().len(), hit.len());
    assert_eq!(ckpt(&["verify", s(&damaged)]).status.code(), Some(1), "dry run wrote");

    let res = ok(&["heal", s(&damaged), "--from", s(&good), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["ok"], true);
    let healed: Vec<u64> =
        v["healed"].as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!(healed, hit.iter().map(|c| c.1).collect::<Vec<_>>(), "exactly the damaged chunks");
    assert!(fs::read(&damaged).unwrap() == fs::read(&good).unwrap());
    ok(&["verify", s(&damaged)]);
    ok(&["restore", s(&damaged), "-C", s(&tmp.path().join("back"))]);
    assert_same_tree(&tree, &tmp.path().join("back/tree"));

    let stranger = tmp.path().join("stranger.ckpt");
    ok(&["write", "-o", s(&stranger), "--frame-size", "512K", s(&tree)]);
    flip(&damaged, hit[0].1 + 30);
    let before = fs::read(&damaged).unwrap();
    fails(&["heal", s(&damaged), "--from", s(&stranger)], 1, "different checkpoints");
    assert!(fs::read(&damaged).unwrap() == before, "a refused heal must not write");
}

/// A checkpoint whose manifest holds `entries` and whose data is `data` (for hostile input).
fn crafted(path: &Path, entries: Vec<Entry>, data: &[u8]) {
    let mut manifest = Manifest { frame_size: 1 << 20, entries, parent: None }.encode();
    // As version 3 (the same bytes but the version, without a parent): no block table
    // frame to craft, and readers still accept it.
    manifest[4] = 3;
    let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([1; 16]));
    let mut f = w.open_frame(Style::Raw).unwrap();
    f.add(&manifest).unwrap();
    f.close().unwrap();
    if !data.is_empty() {
        let mut f = w.open_frame(Style::Raw).unwrap();
        f.add(data).unwrap();
        f.close().unwrap();
    }
    w.finish().unwrap();
    fs::write(path, w.into_sink().into_inner()).unwrap();
}

fn file_entry(path: &str, size: u64) -> Entry {
    Entry {
        kind: Kind::File,
        path: path.into(),
        mode: 0o644,
        mtime_sec: 0,
        mtime_nsec: 0,
        size,
        target: vec![],
        extents: None,
        ..Entry::default()
    }
}

#[test]
fn hostile_paths_are_refused_and_nothing_is_written_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let evil = s(&outside).trim_start_matches('/').to_string();
    for (name, path) in [
        ("dotdot", "../outside/pwned"),
        ("absolute", "/tmp/ckpt-pwned"),
        ("deep", "a/../../outside/pwned"),
    ] {
        let c = tmp.path().join(format!("{name}.ckpt"));
        crafted(&c, vec![file_entry(path, 4)], b"evil");
        fails(&["restore", s(&c), "-C", s(&dest)], 1, "refusing path");
    }
    let _ = evil;
    // A symlink already in the destination is never followed.
    fs::create_dir_all(&dest).unwrap();
    symlink(&outside, dest.join("sub")).unwrap();
    let c = tmp.path().join("through-link.ckpt");
    crafted(&c, vec![file_entry("sub/pwned", 4)], b"evil");
    fails(&["restore", s(&c), "-C", s(&dest)], 2, "symbolic link");
    // A symlink in the checkpoint is created last, so later entries cannot go through it.
    let c = tmp.path().join("link-then-file.ckpt");
    let link = Entry {
        kind: Kind::Symlink,
        path: "l".into(),
        mode: 0o777,
        mtime_sec: 0,
        mtime_nsec: 0,
        size: 0,
        target: s(&outside).into(),
        extents: None,
        ..Entry::default()
    };
    crafted(&c, vec![link, file_entry("l/pwned", 4)], b"evil");
    let dest2 = tmp.path().join("dest2");
    assert_ne!(ckpt(&["restore", s(&c), "-C", s(&dest2)]).status.code(), Some(0));
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "something was written outside");
    assert!(!Path::new("/tmp/ckpt-pwned").exists());
}

#[test]
fn clear_errors_for_bad_inputs_and_destinations() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = sample_tree(tmp.path());
    let missing = tmp.path().join("no-such-file");
    fails(&["write", "-o", s(&tmp.path().join("x.ckpt")), s(&missing)], 2, "no-such-file");
    fails(&["write", "-o", s(tmp.path()), s(&tree)], 2, "is a directory");
    fails(&["restore", s(&missing)], 2, "no-such-file");
    fails(&["write", "-o", "/proc/ckpt-test.ckpt", s(&tree)], 2, "/proc");
    fails(
        &["write", "-o", s(&tmp.path().join("x")), "--frame-size", "lots", s(&tree)],
        2,
        "not a size",
    );
    fails(&["write", "-o", "-", "--io", "direct", s(&tree)], 2, "needs a file");
    let out = tmp.path().join("c.ckpt");
    ok(&["write", "-o", s(&out), s(&tree)]);
    fails(&["restore", s(&out), "-C", "/proc/ckpt-restore-test"], 2, "/proc");
    fails(&["info", s(&tree.join("hello.txt"))], 1, "not a ckpt checkpoint");
}

#[test]
fn truncated_checkpoint_fails_and_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = sample_tree(tmp.path());
    let out = tmp.path().join("c.ckpt");
    ok(&["write", "-o", s(&out), "--style", "raw", "--frame-size", "1M", s(&tree)]);
    let bytes = fs::read(&out).unwrap();
    // Cut in the middle of sub/random.bin's 3 MiB.
    let cut = tmp.path().join("cut.ckpt");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let dest = tmp.path().join("back");
    fails(&["restore", s(&cut), "-C", s(&dest)], 1, "truncated");
    fails(&["verify", s(&cut)], 1, "");
    assert!(!dest.join("tree/sub/random.bin").exists(), "a partial file looks complete");
    let leftovers: Vec<_> =
        walk(&dest).into_iter().filter(|p| p.to_string_lossy().contains(".ckpt-restore")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // What was restored before the cut is complete and correct.
    assert_eq!(fs::read(dest.join("tree/hello.txt")).unwrap(), b"hello\n");
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

#[test]
fn killed_writer_leaves_old_checkpoint_or_new_complete_one() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    fs::create_dir(&big).unwrap();
    for i in 0..6 {
        fs::write(big.join(format!("part{i}")), noise(24 << 20, i)).unwrap();
    }
    let small = sample_tree(tmp.path());
    let out = tmp.path().join("state.ckpt");
    ok(&["write", "-o", s(&out), s(&small)]);
    let old = fs::read(&out).unwrap();
    let mut outcomes = (0, 0);
    for delay_ms in [5u64, 40, 120, 300, 2000] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .args(["write", "-o", s(&out), "--style", "raw", s(&big)])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let now = fs::read(&out).unwrap();
        if now == old {
            outcomes.0 += 1;
        } else {
            // Replaced: it must be the complete new checkpoint. The writer may still have
            // been killed, after its rename but before it exited.
            ok(&["verify", s(&out)]);
            outcomes.1 += 1;
            fs::write(&out, &old).unwrap();
        }
    }
    assert!(outcomes.0 > 0, "no kill landed before publish: {outcomes:?}");
}
