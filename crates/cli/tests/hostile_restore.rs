//! Restore and verify against hostile checkpoints and hostile destinations, each built here
//! with the format crate's own writer: a destination holding symlinks and FIFOs at the
//! names restore uses, a tiny checkpoint whose manifest claims a 64 GiB file, 2,048 nested
//! directories, 255-byte names, lying manifests that verify must catch, zero-frame
//! checkpoints and duplicate paths on both input paths, stale temporary files, and setuid
//! bits without ownership. Each shows the exit status and message, that nothing outside the
//! destination changed, bounded memory (the child's own peak from `wait4`) and no hang
//! (every run has a timeout).

use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink, Writer};
use ckpt_tree::manifest::{Entry, Kind, Manifest};
use ckpt_tree::{RestoreOptions, restore_checkpoint, restore_checkpoint_parallel};
use rustix::fs::{Mode, OFlags};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn entry(kind: Kind, path: &str, size: u64, mode: u32) -> Entry {
    Entry {
        kind,
        path: path.as_bytes().to_vec(),
        mode,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
        size,
        target: vec![],
        extents: None,
        ..Entry::default()
    }
}

/// A checkpoint: frame 0 the manifest (`frame_size`, `entries`, encoded as `ckpt` does),
/// then one RAW frame per element of `frames`, holding those buffers.
fn checkpoint(frame_size: u64, entries: Vec<Entry>, frames: &[&[&[u8]]]) -> Vec<u8> {
    let mut manifest = Manifest { frame_size, entries, parent: None }.encode();
    // As version 3 (the same bytes but the version, without a parent): no block table
    // frame to craft, and readers still accept it.
    manifest[4] = 3;
    let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([9; 16]));
    let mut f = w.open_frame(Style::Raw).unwrap();
    f.add(&manifest).unwrap();
    f.close().unwrap();
    for buffers in frames {
        let mut f = w.open_frame(Style::Raw).unwrap();
        for b in *buffers {
            f.add(b).unwrap();
        }
        f.close().unwrap();
    }
    w.finish().unwrap();
    w.into_sink().into_inner()
}

/// Runs `f` on another thread and fails the test if it takes longer than `limit` (a hang).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("no answer within {limit:?}: a hang"))
}

/// Every path under `dir` (not following symlinks) with its kind, size, mode and, for
/// files, content: to show that nothing changed.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let content = m.is_file().then(|| fs::read(&p).unwrap());
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p, (m.mode(), m.len(), content));
        }
    }
    out
}

struct Run {
    code: Option<i32>,
    stderr: String,
    /// The child's own peak resident set, from `wait4`.
    peak: u64,
}

/// Runs `ckpt ARGS` (stdin from `input` if given) with a timeout; its exit code, stderr and
/// peak memory.
// The child is reaped by `wait4`, which std cannot do while also returning rusage.
#[allow(clippy::zombie_processes)]
fn ckpt(args: &[&str], input: Option<&Path>) -> Run {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    let input = input.map(Path::to_path_buf);
    within(Duration::from_mins(2), move || {
        let stdin = input.map_or_else(Stdio::null, |p| Stdio::from(fs::File::open(p).unwrap()));
        let stderr_file = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .args(&args)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr_file.reopen().unwrap()))
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
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        let stderr = fs::read_to_string(stderr_file.path()).unwrap();
        Run { code, stderr, peak: u64::try_from(usage.ru_maxrss).unwrap() * 1024 }
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A destination prepared by someone else: at the names restore's temporary files used to
/// have, and at names of restore's own temporary pattern for this process (the only pid an
/// in-process restore can have), symlinks to a file outside, dangling symlinks to new
/// outside paths, and FIFOs. Restore must write nothing outside, open no FIFO (hang), and
/// drop setuid/setgid (ownership is not stored).
#[test]
fn symlinks_and_fifos_at_temporary_names_redirect_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let victim = outside.join("victim");
    fs::write(&victim, b"precious").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let entries = vec![
        entry(Kind::File, "f", 4, 0o4777),
        entry(Kind::Dir, "d", 0, 0o2755),
        entry(Kind::File, "d/g", 3, 0o6755),
    ];
    let bytes = checkpoint(1 << 20, entries, &[&[b"evil", b"bad"]]);
    for parallel in [false, true] {
        let dest = tmp.path().join(format!("dest-{parallel}"));
        fs::create_dir_all(dest.join("d")).unwrap();
        let pid = std::process::id();
        for dir in [dest.clone(), dest.join("d")] {
            for name in ["f", "g"] {
                symlink(&victim, dir.join(format!(".{name}.ckpt-restore.{pid}"))).unwrap();
                let fifo = dir.join(format!(".{name}.ckpt-restore.{}", pid + 1));
                assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
            }
            for n in 0..64u64 {
                let target =
                    if n % 2 == 0 { victim.clone() } else { outside.join(format!("new-{n}")) };
                symlink(&target, dir.join(format!(".ckpt-r.{pid}.{n:x}"))).unwrap();
                symlink(&target, dir.join(format!(".ckpt-r.{pid}.{n:016x}"))).unwrap();
            }
            let fifo = dir.join(format!(".ckpt-r.{pid}.{:016x}", 64));
            assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        }
        let before = listing(&outside);
        let (dest2, bytes2, file) = (dest.clone(), bytes.clone(), tmp.path().join("c.ckpt"));
        fs::write(&file, &bytes).unwrap();
        let summary =
            within(Duration::from_mins(1), move || {
                if parallel {
                    restore_checkpoint_parallel(
                        || {
                            Ok(ckpt_frame_core::SeekSource::new(fs::File::open(&file).unwrap())
                                .unwrap())
                        },
                        &dest2,
                        &RestoreOptions::default(),
                        2,
                        &|_, _| {},
                    )
                } else {
                    restore_checkpoint(
                        SliceSource::new(&bytes2),
                        &dest2,
                        &RestoreOptions::default(),
                        &|_, _| {},
                    )
                }
            })
            .unwrap_or_else(|e| panic!("parallel {parallel}: {e}"));
        assert_eq!(listing(&outside), before, "parallel {parallel}: something changed outside");
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"evil");
        assert_eq!(fs::read(dest.join("d/g")).unwrap(), b"bad");
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&dest.join("f")), 0o777, "setuid dropped");
        assert_eq!(mode(&dest.join("d/g")), 0o755, "setuid and setgid dropped");
        assert_eq!(mode(&dest.join("d")), 0o755, "setgid dropped from the directory");
        assert_eq!(summary.privileges_dropped, 3);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(mode(&victim), 0o644);
    }
}

/// A 500-byte checkpoint whose manifest claims a 64 GiB file (or a 64 GiB frame size) with 10
/// bytes stored: refused with exit 1 from a file and from stdin, in little memory, leaving
/// no file in the destination. `verify` refuses it too.
#[test]
fn a_lying_manifest_cannot_make_restore_allocate_or_leave_a_huge_file() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = 1u64 << 36;
    let cases = [
        (
            "frame-size",
            checkpoint(huge, vec![entry(Kind::File, "big", huge, 0o644)], &[&[b"0123456789"]]),
        ),
        (
            "file-size",
            checkpoint(1 << 30, vec![entry(Kind::File, "big", huge, 0o644)], &[&[b"0123456789"]]),
        ),
    ];
    for (name, bytes) in cases {
        assert!(bytes.len() < 1000, "{name}: {} bytes", bytes.len());
        let file = tmp.path().join(format!("{name}.ckpt"));
        fs::write(&file, &bytes).unwrap();
        for from_stdin in [false, true] {
            let dest = tmp.path().join(format!("dest-{name}-{from_stdin}"));
            let run = if from_stdin {
                ckpt(&["restore", "-", "-C", s(&dest)], Some(&file))
            } else {
                ckpt(&["restore", s(&file), "-C", s(&dest)], None)
            };
            assert_eq!(run.code, Some(1), "{name} stdin {from_stdin}: {}", run.stderr);
            assert!(run.peak < 64 * MIB, "{name} stdin {from_stdin}: peak {} MiB", run.peak / MIB);
            let left: Vec<_> = fs::read_dir(&dest)
                .map(|d| d.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{name} stdin {from_stdin}: left {left:?}");
        }
        let run = ckpt(&["verify", s(&file)], None);
        assert_eq!(run.code, Some(1), "{name}: verify: {}", run.stderr);
    }
}

/// 2,048 nested directories (a 4,095-byte path) with a file at the bottom restore in time
/// linear in the entries and their path lengths: the old walk from the top per entry took
/// 79 s here; the timeout only catches that kind of blow-up.
#[test]
fn deeply_nested_directories_restore_without_a_walk_per_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    let mut path = String::new();
    for _ in 0..2047 {
        if !path.is_empty() {
            path.push('/');
        }
        path.push('a');
        entries.push(entry(Kind::Dir, &path, 0, 0o755));
    }
    entries.push(entry(Kind::File, &format!("{path}/f"), 2, 0o644));
    let bytes = checkpoint(1 << 20, entries, &[&[b"ok"]]);
    let file = tmp.path().join("deep.ckpt");
    fs::write(&file, &bytes).unwrap();
    for from_stdin in [false, true] {
        let dest = tmp.path().join(format!("dest-{from_stdin}"));
        let started = Instant::now();
        let run = within(Duration::from_mins(1), {
            let (file, dest) = (file.clone(), dest.clone());
            move || {
                if from_stdin {
                    ckpt(&["restore", "-", "-C", s(&dest)], Some(&file))
                } else {
                    ckpt(&["restore", s(&file), "-C", s(&dest)], None)
                }
            }
        });
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        eprintln!(
            "2,048 nested directories (stdin {from_stdin}) restored in {:?}",
            started.elapsed()
        );
        // The file's path is longer than PATH_MAX: walk down by directory handles.
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY;
        let mut dir = rustix::fs::open(&dest, flags, Mode::empty()).unwrap();
        for _ in 0..2047 {
            dir = rustix::fs::openat(&dir, "a", flags, Mode::empty()).unwrap();
        }
        let f = rustix::fs::openat(&dir, "f", OFlags::RDONLY, Mode::empty()).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(rustix::io::read(&f, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"ok");
    }
}

/// Names of 236 to 255 bytes, legal everywhere, restore: the temporary name restore uses
/// is short whatever the final one.
#[test]
fn names_up_to_name_max_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let names: Vec<String> = [236, 250, 255].iter().map(|&n| "n".repeat(n)).collect();
    let entries: Vec<Entry> = names.iter().map(|n| entry(Kind::File, n, 1, 0o644)).collect();
    let bytes = checkpoint(1 << 20, entries, &[&[b"x", b"y", b"z"]]);
    let file = tmp.path().join("long.ckpt");
    fs::write(&file, &bytes).unwrap();
    let dest = tmp.path().join("dest");
    let run = ckpt(&["restore", s(&file), "-C", s(&dest)], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(fs::read(dest.join(&names[2])).unwrap(), b"z");
}

/// The smaller ones: `verify` of an empty file is not "ok"; a checkpoint with zero frames,
/// and one with a duplicate path, get exit 1 from a file and from stdin alike; a manifest
/// that does not describe the frames fails `verify` as it fails restore.
#[test]
fn empty_zero_frame_duplicate_and_lying_layout_inputs_fail_the_same_on_every_path() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.ckpt");
    fs::write(&empty, b"").unwrap();
    let run = ckpt(&["verify", s(&empty)], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("not a ckpt checkpoint"), "{}", run.stderr);

    let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([4; 16]));
    w.finish().unwrap();
    let zero = tmp.path().join("zero.ckpt");
    fs::write(&zero, w.into_sink().into_inner()).unwrap();
    let dup = tmp.path().join("dup.ckpt");
    let entries = vec![entry(Kind::File, "x", 1, 0o644), entry(Kind::File, "x", 1, 0o644)];
    fs::write(&dup, checkpoint(1 << 20, entries, &[&[b"1", b"2"]])).unwrap();
    for (c, words) in [(&zero, "no manifest frame"), (&dup, "also entry 0")] {
        for from_stdin in [false, true] {
            let dest = tmp.path().join("dest-none");
            let run = if from_stdin {
                ckpt(&["restore", "-", "-C", s(&dest)], Some(c))
            } else {
                ckpt(&["restore", s(c), "-C", s(&dest)], None)
            };
            assert_eq!(run.code, Some(1), "{} stdin {from_stdin}: {}", c.display(), run.stderr);
            assert!(run.stderr.contains(words), "{}", run.stderr);
        }
    }
    // Two files, one data frame holding one buffer: every check value holds.
    let liar = tmp.path().join("liar.ckpt");
    let entries = vec![entry(Kind::File, "a", 2, 0o644), entry(Kind::File, "b", 2, 0o644)];
    fs::write(&liar, checkpoint(1 << 20, entries, &[&[b"abcd"]])).unwrap();
    let run = ckpt(&["verify", s(&liar)], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("differ"), "{}", run.stderr);
    let run = ckpt(&["restore", s(&liar), "-C", s(&tmp.path().join("dest-liar"))], None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
}

/// A restore killed mid-way leaves its temporary file; the next restore into that
/// directory removes it (its pid is not running), and keeps anything that is not such a
/// regular file.
#[test]
fn a_later_restore_removes_the_temporary_files_of_a_dead_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir_all(dest.join("d")).unwrap();
    let stale = dest.join("d/.ckpt-r.999999999.00000000deadbeef");
    fs::write(&stale, vec![0u8; 4096]).unwrap();
    let stale_top = dest.join(".ckpt-r.999999998.0000000000000001");
    fs::write(&stale_top, b"x").unwrap();
    let not_ours = dest.join("d/.ckpt-r.999999997.0000000000000002");
    symlink("/etc/passwd", &not_ours).unwrap();
    let c = tmp.path().join("c.ckpt");
    let entries = vec![entry(Kind::Dir, "d", 0, 0o755), entry(Kind::File, "d/f", 1, 0o644)];
    fs::write(&c, checkpoint(1 << 20, entries, &[&[b"1"]])).unwrap();
    let run = ckpt(&["restore", s(&c), "-C", s(&dest)], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!stale.exists() && !stale_top.exists(), "stale temporary files removed");
    assert!(fs::symlink_metadata(&not_ours).is_ok(), "a symlink is not restore's: kept");
    assert_eq!(fs::read(dest.join("d/f")).unwrap(), b"1");
}

/// Restoring again into the same directory replaces what the checkpoint holds, symlinks
/// included: a symlink someone left at a symlink's name (pointing outside) is replaced,
/// never followed; a directory in the way of a symlink is refused.
#[test]
fn restoring_again_replaces_files_and_symlinks_without_following_them() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), b"precious").unwrap();
    let mut link = entry(Kind::Symlink, "l", 0, 0o777);
    link.target = b"f".to_vec();
    let entries = vec![entry(Kind::File, "f", 2, 0o644), link];
    let c = tmp.path().join("c.ckpt");
    fs::write(&c, checkpoint(1 << 20, entries, &[&[b"hi"]])).unwrap();
    let dest = tmp.path().join("dest");
    for round in 0..2 {
        let run = ckpt(&["restore", s(&c), "-C", s(&dest)], None);
        assert_eq!(run.code, Some(0), "round {round}: {}", run.stderr);
    }
    fs::remove_file(dest.join("l")).unwrap();
    symlink(outside.join("victim"), dest.join("l")).unwrap();
    let run = ckpt(&["restore", s(&c), "-C", s(&dest)], None);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(fs::read_link(dest.join("l")).unwrap(), Path::new("f"));
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"precious");
    fs::remove_file(dest.join("l")).unwrap();
    fs::create_dir(dest.join("l")).unwrap();
    let run = ckpt(&["restore", s(&c), "-C", s(&dest)], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("a directory is in the way of a symlink"), "{}", run.stderr);
}
