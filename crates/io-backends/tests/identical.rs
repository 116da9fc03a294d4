//! Test 1: the same plan comes out byte for byte identical through every backend (buffered,
//! `O_DIRECT`, mmap, auto, and a stream through a real pipe), and every output restores
//! equal through every input mode, indexed and streaming, and from a pipe.

mod common;

use ckpt_io_backends::{IoMode, OutputOptions, PublishSink, StreamSink, open_input, stream_source};
use common::{
    assert_same, capture_logs, reference_bytes, restore_indexed, restore_streaming, size_bound,
    standard_plan, write_plan,
};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

/// Pipes `bytes` through a `cat` child and returns what comes out: writes into its stdin
/// with `write_into`, reads its stdout on another thread.
fn through_cat<T>(write_into: impl FnOnce(std::process::ChildStdin) -> T) -> (T, Vec<u8>) {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).expect("read cat's stdout");
        out
    });
    let t = write_into(child.stdin.take().expect("stdin"));
    let out = reader.join().expect("reader thread");
    assert!(child.wait().expect("wait cat").success());
    (t, out)
}

#[test]
fn every_backend_writes_the_same_bytes_and_every_mode_restores_them() {
    let plan = standard_plan();
    let reference = reference_bytes(&plan);
    let bound = size_bound(&plan);
    println!("reference checkpoint: {} bytes (mmap bound {bound})", reference.len());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();

    for mode in IoMode::ALL {
        let path = dir.path().join(format!("out-{mode}.ckpt"));
        let opts = OutputOptions::new(mode).with_size_bound(bound);
        let ((len, used), logs) = capture_logs(|| {
            let sink = PublishSink::create(&path, &opts).expect("create");
            let used = sink.mode();
            let (sink, summary) = write_plan(sink, &plan);
            let len = sink.commit().expect("commit");
            assert_eq!(len, summary.len);
            (len, used)
        });
        let expected = if mode == IoMode::Auto { IoMode::Direct } else { mode };
        assert_eq!(used, expected, "{mode} on ext4 resolves to {expected}");
        if mode == IoMode::Auto {
            assert!(
                logs.iter().any(|l| l.contains("writing with direct I/O")),
                "auto says what it chose: {logs:?}"
            );
        }
        let bytes = std::fs::read(&path).expect("read back");
        assert_eq!(len, reference.len() as u64);
        assert_same(&bytes, &reference, &format!("PublishSink {mode}"));
        assert_eq!(common::names_in(dir.path()).len(), files.len() + 1, "no temporary files left");
        files.push(path);
    }

    // A stream through a real pipe: StreamSink into cat's stdin, bytes from its stdout.
    let (written, piped) = through_cat(|stdin| {
        let sink = StreamSink::with_name(stdin, "<cat stdin>");
        let (sink, summary) = write_plan(sink, &plan);
        assert_eq!(sink.written(), summary.len);
        drop(sink.finish().expect("finish stream"));
        summary.len
    });
    assert_eq!(written, reference.len() as u64);
    assert_same(&piped, &reference, "StreamSink through cat");
    let piped_path = dir.path().join("out-pipe.ckpt");
    std::fs::write(&piped_path, &piped).expect("save piped output");
    files.push(piped_path);

    // Every file restores equal through every input mode, indexed and streaming.
    for file in &files {
        for mode in IoMode::ALL {
            let what = format!("{} read {mode}", file.display());
            let src = open(file, mode);
            assert!(src.is_seekable());
            assert_eq!(src.len(), Some(reference.len() as u64));
            let want = if mode == IoMode::Auto { IoMode::Direct } else { mode };
            assert_eq!(src.mode(), want, "{what}");
            restore_indexed(src, &plan, &what);
            restore_streaming(open(file, mode), &plan, &what);
        }
    }

    // And through a streaming read from a pipe: the file's bytes fed into cat, the reader
    // on cat's stdout.
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let mut stdin = child.stdin.take().expect("stdin");
    let feed = reference.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&feed).expect("feed cat"));
    let src = stream_source(child.stdout.take().expect("stdout"), "<cat stdout>");
    assert!(!src.is_seekable());
    restore_streaming(src, &plan, "stream from a pipe");
    feeder.join().expect("feeder");
    assert!(child.wait().expect("wait").success());
}

/// Opens `file` in `mode`; a map through the unsafe constructor.
fn open(file: &std::path::Path, mode: IoMode) -> ckpt_io_backends::InputSource {
    if mode == IoMode::Mmap {
        // SAFETY: the test's own temporary file, which nothing changes while it is mapped.
        return unsafe { ckpt_io_backends::open_input_mapped(file) }.expect("map input");
    }
    open_input(file, mode).expect("open input")
}
