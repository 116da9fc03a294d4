//! Test 5: durable publish. An uncommitted sink leaves the previous file untouched and no
//! temporary file; a writer killed with SIGKILL at any point (a real child process: this
//! test binary re-executed) leaves the final path holding exactly the old bytes or, once
//! the commit has happened, exactly the new ones; leftover temporary files are named
//! `.{name}.ckpt-tmp.{pid}.*` and `remove_stale_temps` removes them.

mod common;

use ckpt_frame_core::{Sink, Writer};
use ckpt_io_backends::{IoMode, OutputOptions, PublishSink, remove_stale_temps, temp_prefix};
use common::{assert_same, id, names_in, reference_bytes, size_bound, temps_of, write_plan};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const NAME: &str = "state.ckpt";

fn old_plan() -> common::Plan {
    common::big_plan(2, 50_000, 1)
}

fn new_plan() -> common::Plan {
    common::big_plan(12, 256 * 1024, 77)
}

fn publish(path: &Path, plan: &common::Plan, mode: IoMode) -> u64 {
    let opts = OutputOptions::new(mode).with_size_bound(size_bound(plan));
    let (sink, _) = write_plan(PublishSink::create(path, &opts).expect("create"), plan);
    sink.commit().expect("commit")
}

#[test]
fn temp_file_sits_next_to_the_target_under_the_documented_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(NAME);
    let sink = PublishSink::create(&path, &OutputOptions::new(IoMode::Buffered)).expect("create");
    let tmp = sink.temp_path().to_owned();
    assert_eq!(tmp.parent(), Some(dir.path()));
    let tmp_name = tmp.file_name().expect("name").to_string_lossy().into_owned();
    let prefix = format!(".{NAME}.ckpt-tmp.{}.", std::process::id());
    assert!(tmp_name.starts_with(&prefix), "{tmp_name}");
    assert_eq!(temp_prefix(NAME.as_ref()), format!(".{NAME}.ckpt-tmp.").as_str());
    assert!(tmp.exists() && !path.exists(), "written under the temporary name only");
    assert_eq!(sink.commit().expect("commit"), 0);
    assert_eq!(names_in(dir.path()), [NAME]);
}

#[test]
fn dropping_without_commit_leaves_the_old_file_and_no_temp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(NAME);
    let old = reference_bytes(&old_plan());
    publish(&path, &old_plan(), IoMode::Buffered);
    let plan = new_plan();
    for mode in IoMode::ALL {
        // Dropped right after create, after a partial frame, and after finish.
        drop(
            PublishSink::create(&path, &OutputOptions::new(mode).with_size_bound(1 << 20))
                .expect("create"),
        );
        let opts = OutputOptions::new(mode).with_size_bound(size_bound(&plan));
        let mut w = Writer::new(PublishSink::create(&path, &opts).expect("create"), id());
        {
            // An abandoned frame: the writer is dropped mid-frame.
            let mut f = w.open_frame(plan[0].0).expect("frame");
            f.add(&plan[0].1[0]).expect("add");
        }
        assert_eq!(temps_of(dir.path(), NAME).len(), 1, "{mode}: writing to the temp");
        drop(w);
        let (sink, _) = write_plan(PublishSink::create(&path, &opts).expect("create"), &plan);
        assert!(sink.written() > 1_000_000);
        drop(sink);
        assert_same(&std::fs::read(&path).expect("read"), &old, &format!("{mode}: old file"));
        assert_eq!(names_in(dir.path()), [NAME], "{mode}: no temporary file left");
    }
}

#[test]
fn commit_creates_or_replaces_and_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(NAME);
    assert_eq!(
        publish(&path, &old_plan(), IoMode::Mmap),
        reference_bytes(&old_plan()).len() as u64
    );
    let new = reference_bytes(&new_plan());
    publish(&path, &new_plan(), IoMode::Direct);
    assert_same(&std::fs::read(&path).expect("read"), &new, "replaced");
    assert_eq!(names_in(dir.path()), [NAME]);
    // Raw bytes through the Sink trait, Auto mode (direct on ext4, a 1-byte file).
    let mut sink = PublishSink::create(&path, &OutputOptions::new(IoMode::Auto)).expect("create");
    sink.write_all(b"x").expect("write");
    assert_eq!(sink.commit().expect("commit"), 1);
    assert_eq!(std::fs::read(&path).expect("read"), b"x");
}

// --- crash safety with a real child process -------------------------------------------

const CHILD_PATH: &str = "CKPT_IO_TEST_CRASH_PATH";
const CHILD_MODE: &str = "CKPT_IO_TEST_CRASH_MODE";
const CHILD_HANDSHAKE: &str = "CKPT_IO_TEST_CRASH_HANDSHAKE";
const TAG: &str = "ckpt-child: ";

/// The writer, when this binary runs as the crash child; a no-op otherwise. It writes the
/// new checkpoint frame by frame, reports its progress on stdout and, in handshake mode,
/// waits for "go" on stdin after each step so the parent can kill it at an exact point.
#[test]
fn crash_writer_child() {
    let Some(path) = std::env::var_os(CHILD_PATH) else { return };
    let mode: IoMode = std::env::var(CHILD_MODE).expect("mode").parse().expect("mode");
    let handshake = std::env::var(CHILD_HANDSHAKE).is_ok_and(|v| v == "1");
    let stdin = std::io::stdin();
    let step = |msg: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{TAG}{msg}").expect("report");
        out.flush().expect("flush");
        if handshake {
            let mut line = String::new();
            stdin.read_line(&mut line).expect("wait for go");
        }
    };
    let plan = new_plan();
    let opts = OutputOptions::new(mode).with_size_bound(size_bound(&plan));
    let sink = PublishSink::create(Path::new(&path), &opts).expect("create");
    step(format!("created {}", sink.temp_path().display()));
    let mut w = Writer::new(sink, id());
    for (i, (style, bufs)) in plan.iter().enumerate() {
        let mut f = w.open_frame(*style).expect("frame");
        for b in bufs {
            f.add(b).expect("add");
        }
        let end = f.close().expect("close");
        step(format!("frame {i} ends at {end}"));
    }
    w.finish().expect("finish");
    step("finished".to_owned());
    let len = w.into_sink().commit().expect("commit");
    step(format!("committed {len}"));
}

enum KillAt {
    /// In handshake mode: after the child's n-th report (0 = created).
    Report(usize),
    /// Free running: this long after the child's first report.
    Delay(Duration),
}

/// Runs the crash child against `path` (which holds `old`) and kills it; returns the
/// reports it made before dying.
fn crash_once(dir: &Path, mode: IoMode, kill: &KillAt, old: &[u8], new: &[u8]) -> Vec<String> {
    let path = dir.join(NAME);
    let handshake = if matches!(kill, KillAt::Report(_)) { "1" } else { "0" };
    let mut child = common::self_command(
        "crash_writer_child",
        &[
            (CHILD_PATH, path.to_str().expect("utf-8")),
            (CHILD_MODE, mode.as_str()),
            (CHILD_HANDSHAKE, handshake),
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn child");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut reports = Vec::new();
    let mut next_report = |reports: &mut Vec<String>| loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(r) = l.strip_prefix(TAG) {
                    reports.push(r.to_owned());
                    return true;
                }
                if let Some(r) = l.split(TAG).nth(1) {
                    // libtest may print "test crash_writer_child ... " on the same line.
                    reports.push(r.to_owned());
                    return true;
                }
            }
            Some(Err(e)) => panic!("reading the child: {e}"),
            None => return false,
        }
    };
    match kill {
        KillAt::Report(n) => {
            while next_report(&mut reports) {
                if reports.len() > *n {
                    break;
                }
                stdin.write_all(b"go\n").expect("tell the child to go on");
            }
            assert_eq!(reports.len(), n + 1, "the child reached report {n}: {reports:?}");
            child.kill().expect("SIGKILL");
        }
        KillAt::Delay(d) => {
            assert!(next_report(&mut reports), "the child started");
            std::thread::sleep(*d);
            // Already exited on its own if it was faster than the delay.
            let _ = child.kill();
        }
    }
    let status = child.wait().expect("reap the child");
    // Everything the child reported was reported before it died.
    while next_report(&mut reports) {}
    drop(stdin);

    let committed = reports.iter().any(|r| r.starts_with("committed"));
    let finished = reports.iter().any(|r| r.starts_with("finished"));
    let what = format!(
        "{mode}, killed {}, reports {reports:?}, {status}",
        match kill {
            KillAt::Report(n) => format!("after report {n}"),
            KillAt::Delay(d) => format!("after {d:?}"),
        }
    );
    let now = std::fs::read(&path).expect("the final path always exists");
    if committed {
        assert_same(&now, new, &format!("{what}: committed => exactly the new bytes"));
    } else if !finished {
        assert_same(&now, old, &format!("{what}: not finished => exactly the old bytes"));
    } else {
        assert!(now == old || now == new, "{what}: neither old nor new ({} bytes)", now.len());
    }
    // Leftovers are the child's temporary files, under the documented name.
    let temps = temps_of(dir, NAME);
    let prefix = format!(".{NAME}.ckpt-tmp.{pid}.");
    assert!(temps.iter().all(|t| t.starts_with(&prefix)), "{what}: {temps:?}");
    if committed {
        assert!(temps.is_empty(), "{what}: nothing left after a commit");
    } else if matches!(kill, KillAt::Report(_)) {
        assert_eq!(temps.len(), 1, "{what}: killed mid-write leaves its temporary file");
    }
    let others: Vec<_> =
        names_in(dir).into_iter().filter(|n| n != NAME && !temps.contains(n)).collect();
    assert!(others.is_empty(), "{what}: unexpected files {others:?}");
    // The child is dead and reaped: its temporary files are stale.
    assert_eq!(remove_stale_temps(dir, NAME).expect("clean"), temps.len(), "{what}");
    assert_eq!(names_in(dir), [NAME]);
    // Put the old file back for the next round.
    if now != old {
        publish(&path, &old_plan(), IoMode::Buffered);
    }
    reports
}

#[test]
fn killed_writer_leaves_old_or_new_never_a_mix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(NAME);
    let old = reference_bytes(&old_plan());
    let new = reference_bytes(&new_plan());
    publish(&path, &old_plan(), IoMode::Buffered);
    let frames = new_plan().len();
    // Reports: 0 created, 1..=frames after each frame, frames+1 finished, frames+2 committed.
    let points = [0, 1, frames / 2, frames, frames + 1, frames + 2];
    for mode in [IoMode::Buffered, IoMode::Direct, IoMode::Mmap] {
        for &n in &points {
            let reports = crash_once(dir.path(), mode, &KillAt::Report(n), &old, &new);
            println!("{mode}: killed after {:?}", reports.last());
        }
    }
    let mut outcomes = Vec::new();
    for ms in [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 15, 30] {
        let reports = crash_once(
            dir.path(),
            IoMode::Auto,
            &KillAt::Delay(Duration::from_millis(ms)),
            &old,
            &new,
        );
        outcomes.push((ms, reports.last().cloned()));
    }
    println!("free-running kills (delay ms, last report): {outcomes:?}");
}

#[test]
fn remove_stale_temps_removes_only_dead_writers_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead = child.id();
    child.wait().expect("reap");
    let me = std::process::id();
    let files = [
        format!(".{NAME}.ckpt-tmp.{dead}.0123456789abcdef"),
        format!(".{NAME}.ckpt-tmp.{me}.0123456789abcdef"),
        format!(".{NAME}.ckpt-tmp.notapid.0123456789abcdef"),
        format!(".other.ckpt-tmp.{dead}.0123456789abcdef"),
        NAME.to_owned(),
    ];
    for f in &files {
        std::fs::write(d.join(f), b"x").expect("write");
    }
    std::fs::create_dir(d.join(format!(".{NAME}.ckpt-tmp.{dead}.dir"))).expect("mkdir");
    // A live sink's own temporary file is kept.
    let sink =
        PublishSink::create(&d.join(NAME), &OutputOptions::new(IoMode::Buffered)).expect("create");
    assert_eq!(remove_stale_temps(d, NAME).expect("clean"), 1);
    assert!(!d.join(&files[0]).exists(), "the dead writer's file is removed");
    for f in &files[1..] {
        assert!(d.join(f).exists(), "{f} is kept");
    }
    assert!(sink.temp_path().exists(), "a live writer's file is kept");
    assert_eq!(remove_stale_temps(d, NAME).expect("clean again"), 0);
    drop(sink);
    let err = remove_stale_temps(&d.join("missing"), NAME).expect_err("missing dir");
    assert!(err.to_string().contains("missing"), "{err}");
}

/// Buffered writes of 16 KiB or more bypass the sink's buffer (one `pwritev` with what the
/// buffer held) and go out in pieces of at most 128 KiB; mixed with small writes, lent
/// memory and flushes, the file must still be exactly the bytes given, in order.
#[test]
fn buffered_pass_through_keeps_every_byte_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = common::Rng::new(9);
    let data = rng.bytes(3 << 20);
    let pieces = [5usize, 16 * 1024, 16 * 1024 - 1, 300_000, 1, 128 * 1024 + 1, 65_568, 40];
    let path = dir.path().join(NAME);
    let mut sink =
        PublishSink::create(&path, &OutputOptions::new(IoMode::Buffered)).expect("create");
    let (mut at, mut i) = (0, 0);
    while at < data.len() {
        let n = pieces[i % pieces.len()].min(data.len() - at);
        let piece = &data[at..at + n];
        match i % 5 {
            3 => {
                let mem = sink.reserve(n).expect("the buffered sink lends memory");
                mem.copy_from_slice(piece);
                Sink::commit(&mut sink, n).expect("commit");
            }
            4 => {
                sink.write_all(piece).expect("write");
                Sink::flush(&mut sink).expect("flush");
            }
            _ => sink.write_all(piece).expect("write"),
        }
        at += n;
        i += 1;
    }
    assert_eq!(sink.commit().expect("commit"), data.len() as u64);
    assert_same(&std::fs::read(&path).expect("read"), &data, "buffered pass-through");
}
