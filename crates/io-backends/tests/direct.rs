//! Tests 2 and 3: `O_DIRECT` details (alignment, lengths that are not multiples of it, a
//! flush in the middle, reads at odd offsets) and direct I/O refused by a real target.
//!
//! The refusal target: ramfs, a real in-kernel filesystem that refuses `O_DIRECT` (tmpfs
//! accepts it on this kernel). It is mounted in a private mount namespace of a child
//! process (`unshare --mount`), so nothing outside the test sees it. Where that is not
//! permitted the ramfs part fails under `CI=true` and is otherwise skipped with a `SKIP`
//! line on stderr, and the refusals below that need no privileges still run: a `/proc`
//! file and `/dev/null` (the kernel refuses `O_DIRECT` when opening them) and a FIFO.

mod common;

use ckpt_frame_core::{IoErrorKind, Reader, Sink, Source};
use ckpt_io_backends::{
    AlignmentSource, BackendError, IoMode, OutputOptions, PublishSink, direct_alignment, open_input,
};
use common::{
    Rng, assert_same, capture_logs, reference_bytes, restore_indexed, restore_streaming,
    standard_plan, write_plan,
};
use std::path::Path;

/// Writes `data` through `sink` in odd pieces, alternating `write_all` and
/// `reserve`/`commit`, with a `flush` (which writes the padded tail block) half way.
fn write_odd_pieces(sink: &mut PublishSink, data: &[u8]) {
    let pieces = [1usize, 7, 511, 4099, 65_549, 3];
    let mut at = 0;
    let mut i = 0;
    let mut flushed = false;
    while at < data.len() {
        let n = pieces[i % pieces.len()].min(data.len() - at);
        let piece = &data[at..at + n];
        if i % 3 == 2 {
            let mem = sink.reserve(n + 17).expect("buffered and direct sinks lend memory");
            mem[..n].copy_from_slice(piece);
            Sink::commit(sink, n).expect("commit");
        } else {
            sink.write_all(piece).expect("write");
        }
        at += n;
        i += 1;
        if !flushed && at >= data.len() / 2 {
            Sink::flush(sink).expect("flush");
            flushed = true;
        }
    }
}

#[test]
fn direct_output_of_unaligned_lengths_is_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"x").expect("probe file");
    let a = direct_alignment(&probe).expect("alignment");
    println!(
        "O_DIRECT alignment on {}: {a} -> buffers aligned to {}",
        dir.path().display(),
        a.buffer()
    );
    assert_eq!(a.source, AlignmentSource::Statx, "this kernel and ext4 report STATX_DIOALIGN");

    let mut rng = Rng::new(2);
    for total in [1usize, 511, 512, 513, 4095, 4096, 4097, (1 << 20) + 1, (3 << 20) + 7] {
        let data = rng.bytes(total);
        let path = dir.path().join(format!("direct-{total}"));
        let mut sink =
            PublishSink::create(&path, &OutputOptions::new(IoMode::Direct)).expect("create");
        assert_eq!(sink.mode(), IoMode::Direct);
        assert_eq!(sink.direct_alignment(), Some(a));
        write_odd_pieces(&mut sink, &data);
        assert_eq!(sink.commit().expect("commit"), total as u64);
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len(),
            total as u64,
            "exact length {total}"
        );
        assert_same(&std::fs::read(&path).expect("read"), &data, &format!("direct {total}"));

        // Read back with O_DIRECT in odd pieces, with seeks and borrowed reads.
        let mut src = open_input(&path, IoMode::Direct).expect("open direct");
        assert_eq!(src.mode(), IoMode::Direct);
        assert_eq!(src.direct_alignment(), Some(a));
        assert_eq!(src.total_len().expect("len"), Some(total as u64));
        let mut back = vec![0u8; total];
        let mut at = 0;
        for (i, n) in [3usize, 509, 4099, 70_001, 1].iter().cycle().enumerate() {
            if at == total {
                break;
            }
            let n = (*n).min(total - at);
            if i % 2 == 1 {
                let lent = src.read_borrowed(n).expect("direct lends").expect("borrowed read");
                back[at..at + n].copy_from_slice(lent);
            } else {
                src.read_exact(&mut back[at..at + n]).expect("read");
            }
            at += n;
        }
        assert_same(&back, &data, &format!("direct read {total}"));
        let mut one = [0u8; 1];
        let err = src.read_exact(&mut one).expect_err("read past the end");
        assert_eq!(err.kind(), IoErrorKind::UnexpectedEof);
        for off in [total / 2, 0, total - 1, total / 3] {
            src.seek(off as u64).expect("seek");
            let n = (total - off).min(600);
            let mut buf = vec![0u8; n];
            src.read_exact(&mut buf).expect("read after seek");
            assert_same(&buf, &data[off..off + n], "read after seek");
        }
    }
}

#[test]
fn direct_checkpoint_with_flush_mid_way_matches_reference() {
    // Writer::finish flushes (padded tail) and the commit truncates: a whole checkpoint,
    // whose length is not a multiple of the alignment, is still exact.
    let plan = standard_plan();
    let reference = reference_bytes(&plan);
    assert_ne!(reference.len() % 512, 0, "the test wants an unaligned total length");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c");
    let sink = PublishSink::create(&path, &OutputOptions::new(IoMode::Direct)).expect("create");
    let (sink, _) = write_plan(sink, &plan);
    sink.commit().expect("commit");
    assert_same(&std::fs::read(&path).expect("read"), &reference, "direct checkpoint");
}

fn assert_direct_refused(err: &BackendError, path: &Path) {
    match err {
        BackendError::DirectUnsupported { path: p, reason } => {
            assert_eq!(p, path);
            let msg = err.to_string();
            println!("refused as expected: {msg}");
            assert!(msg.contains(&path.display().to_string()) && msg.contains("O_DIRECT"), "{msg}");
            assert!(!reason.is_empty() && !msg.contains('\n'));
        }
        other => panic!("expected DirectUnsupported for {}, got {other:?}", path.display()),
    }
}

#[test]
fn direct_refused_by_proc_dev_null_and_fifo_inputs_auto_falls_back() {
    // /proc files and /dev/null: the kernel's open() refuses O_DIRECT with EINVAL.
    for p in ["/proc/self/status", "/dev/null"] {
        let path = Path::new(p);
        assert_direct_refused(&open_input(path, IoMode::Direct).expect_err("refused"), path);
        let (src, logs) = capture_logs(|| open_input(path, IoMode::Auto).expect("auto falls back"));
        assert_eq!(src.mode(), IoMode::Buffered);
        assert!(src.fallback_reason().is_some_and(|r| r.contains("EINVAL")));
        assert!(
            logs.iter()
                .any(|l| l.starts_with("WARN") && l.contains("falling back to buffered I/O")),
            "a log line says so: {logs:?}"
        );
    }
    // A FIFO: refused from its type (opening it would wait for a writer); Auto and Buffered
    // read it as a stream.
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = common::make_fifo(dir.path());
    assert_direct_refused(&open_input(&fifo, IoMode::Direct).expect_err("refused"), &fifo);
    let plan = common::big_plan(3, 100_000, 9);
    let bytes = reference_bytes(&plan);
    let fifo2 = fifo.clone();
    let writer = std::thread::spawn(move || std::fs::write(&fifo2, &bytes).expect("write fifo"));
    let src = open_input(&fifo, IoMode::Auto).expect("auto on a fifo");
    assert_eq!(src.mode(), IoMode::Buffered);
    assert!(!src.is_seekable());
    restore_streaming(src, &plan, "fifo");
    writer.join().expect("writer");
}

const RAMFS_ENV: &str = "CKPT_IO_TEST_RAMFS_DIR";

#[test]
fn direct_refused_on_ramfs_and_auto_falls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mountpoint = dir.path().to_str().expect("utf-8 temp path");
    let me = "direct_refused_on_ramfs_and_auto_falls_back";
    let test = "ramfs_child";
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(RAMFS_ENV, mountpoint)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            common::unavailable(me, &format!("ramfs part: cannot run unshare(1): {e}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        let why = format!("ramfs part: no private mount namespace here: {}", stderr.trim());
        common::unavailable(me, &why);
        return;
    }
    println!("{}", common::show(&out));
    // After libtest's `test ramfs_child ... ` on the same line, with --nocapture.
    if let Some(at) = stdout.find("SKIP:") {
        let said = stdout[at..].lines().next().unwrap_or_default();
        common::unavailable(me, &format!("ramfs part: the child said {said:?}"));
        return;
    }
    assert!(out.status.success(), "ramfs child failed");
    assert!(stdout.contains("ramfs checks passed"), "the child ran the checks");
}

/// Runs in the child, inside its own mount namespace: mounts a ramfs on the directory it
/// is given and checks refusal and fallback there. A no-op in normal test runs.
#[test]
fn ramfs_child() {
    let Some(dir) = std::env::var_os(RAMFS_ENV) else { return };
    let dir = Path::new(&dir);
    if let Err(e) =
        rustix::mount::mount("ckpt-test", dir, "ramfs", rustix::mount::MountFlags::empty(), None)
    {
        println!("SKIP: cannot mount a ramfs: {e}");
        return;
    }
    let statfs = rustix::fs::statfs(dir).expect("statfs");
    assert_eq!(statfs.f_type, 0x8584_58f6, "ramfs magic: the target is really ramfs");

    let plan = common::big_plan(4, 300_000, 5);
    let reference = reference_bytes(&plan);
    let path = dir.join("state.ckpt");

    // Direct output: refused, naming the path, and nothing left behind.
    let err = PublishSink::create(&path, &OutputOptions::new(IoMode::Direct)).expect_err("refused");
    assert_direct_refused(&err, &path);
    assert!(
        common::names_in(dir).is_empty(),
        "no temporary file left: {:?}",
        common::names_in(dir)
    );

    // Auto output: falls back to buffered, says so, and writes the exact bytes.
    let (sink, logs) = capture_logs(|| {
        PublishSink::create(&path, &OutputOptions::new(IoMode::Auto)).expect("auto")
    });
    assert_eq!(sink.mode(), IoMode::Buffered);
    assert!(sink.fallback_reason().is_some_and(|r| r.contains("O_DIRECT")));
    println!("auto output log: {logs:?}");
    assert!(
        logs.iter().any(|l| l.starts_with("WARN") && l.contains("falling back to buffered I/O"))
    );
    let (sink, _) = write_plan(sink, &plan);
    sink.commit().expect("commit");
    assert_same(&std::fs::read(&path).expect("read"), &reference, "auto output on ramfs");

    // Direct input: refused; Auto input: falls back and restores.
    assert_direct_refused(&open_input(&path, IoMode::Direct).expect_err("refused"), &path);
    let (src, logs) = capture_logs(|| open_input(&path, IoMode::Auto).expect("auto input"));
    println!("auto input log: {logs:?}");
    assert_eq!(src.mode(), IoMode::Buffered);
    assert!(
        logs.iter().any(|l| l.starts_with("WARN") && l.contains("falling back to buffered I/O"))
    );
    restore_indexed(src, &plan, "auto input on ramfs");
    restore_streaming(
        open_input(&path, IoMode::Auto).expect("auto"),
        &plan,
        "auto stream on ramfs",
    );

    // Mmap works on ramfs, both ways.
    let mpath = dir.join("mapped.ckpt");
    let opts = OutputOptions::new(IoMode::Mmap).with_size_bound(common::size_bound(&plan));
    let (sink, _) = write_plan(PublishSink::create(&mpath, &opts).expect("mmap"), &plan);
    sink.commit().expect("commit");
    assert_same(&std::fs::read(&mpath).expect("read"), &reference, "mmap on ramfs");
    // SAFETY: the test's own file in its private ramfs; nothing changes it while mapped.
    let mapped = unsafe { ckpt_io_backends::open_input_mapped(&mpath) }.expect("map");
    let mut r = Reader::open(mapped).expect("reader");
    assert_eq!(r.frame_count(), Some(plan.len() as u64));
    r.finish().expect("finish");

    // A read-only filesystem is an unwritable directory even for root.
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    rustix::mount::mount("ckpt-test-ro", &ro, "ramfs", rustix::mount::MountFlags::RDONLY, None)
        .expect("mount read-only ramfs");
    let target = ro.join("state.ckpt");
    let err =
        PublishSink::create(&target, &OutputOptions::new(IoMode::Buffered)).expect_err("read-only");
    let msg = err.to_string();
    println!("read-only directory: {msg}");
    assert!(
        matches!(err, BackendError::Publish { op: "create the temporary file", .. }),
        "{err:?}"
    );
    assert!(
        msg.contains(&target.display().to_string()) && msg.contains("Read-only file system"),
        "{msg}"
    );

    println!("ramfs checks passed");
}

#[test]
fn auto_on_ext4_uses_direct_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c");
    std::fs::write(&path, reference_bytes(&common::big_plan(1, 1000, 1))).expect("write");
    let (src, logs) = capture_logs(|| open_input(&path, IoMode::Auto).expect("auto"));
    assert_eq!(src.mode(), IoMode::Direct);
    assert!(src.fallback_reason().is_none());
    assert!(logs.iter().any(|l| l.starts_with("INFO") && l.contains("direct I/O")), "{logs:?}");
}
