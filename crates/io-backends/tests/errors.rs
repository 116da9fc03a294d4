//! Test 7: clear, one-line errors that name the path: missing files, missing directories,
//! a directory or a FIFO as output, an unwritable directory, streams that break.
//!
//! Unwritable directory: tests run as root here, and root ignores permission bits, so a
//! `chmod 0o500` directory is only used when not root; as root the test uses `/sys/kernel`,
//! where the kernel refuses to create files even for root (EACCES). The ramfs child in
//! `direct.rs` also checks a read-only filesystem (EROFS).

mod common;

use ckpt_frame_core::{Sink, Source};
use ckpt_io_backends::{
    BackendError, IoMode, OutputOptions, PublishSink, StreamSink, open_input, stream_source,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn check_message(err: &BackendError, path: &Path, words: &[&str]) -> String {
    let msg = err.to_string();
    println!("{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(msg.contains(&path.display().to_string()), "names {}: {msg}", path.display());
    for w in words {
        assert!(msg.contains(w), "mentions {w:?}: {msg}");
    }
    assert_eq!(err.path(), path);
    msg
}

#[test]
fn opening_a_missing_file_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.ckpt");
    for mode in IoMode::ALL {
        let err = open_input(&path, mode).expect_err("missing");
        assert!(matches!(err, BackendError::Open { .. }), "{err:?}");
        check_message(&err, &path, &["cannot open", "No such file"]);
        assert!(std::error::Error::source(&err).is_some(), "keeps the io::Error as source");
    }
    let err = open_input(dir.path(), IoMode::Buffered).expect_err("a directory");
    check_message(&err, dir.path(), &["directory"]);
}

#[test]
fn output_into_a_missing_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no").join("such").join("dir").join("c.ckpt");
    for mode in IoMode::ALL {
        let opts = OutputOptions::new(mode).with_size_bound(4096);
        let err = PublishSink::create(&path, &opts).expect_err("missing dir");
        assert!(matches!(err, BackendError::Publish { op: "open its directory", .. }), "{err:?}");
        check_message(&err, &path, &["cannot publish", "directory", "No such file"]);
    }
}

#[test]
fn a_directory_fifo_or_nameless_path_as_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let err = PublishSink::create(&sub, &OutputOptions::new(IoMode::Buffered)).expect_err("dir");
    assert!(matches!(err, BackendError::Unsupported { .. }), "{err:?}");
    check_message(&err, &sub, &["is a directory"]);
    let fifo = common::make_fifo(dir.path());
    let err = PublishSink::create(&fifo, &OutputOptions::new(IoMode::Auto)).expect_err("fifo");
    check_message(&err, &fifo, &["FIFO", "stream"]);
    // SAFETY: a FIFO is refused before anything is mapped.
    let err = unsafe { ckpt_io_backends::open_input_mapped(&fifo) }.expect_err("mmap of a fifo");
    check_message(&err, &fifo, &["regular file"]);
    // The safe opener refuses a map outright, naming the unsafe one.
    let err = open_input(&fifo, IoMode::Mmap).expect_err("mmap through open_input");
    check_message(&err, &fifo, &["open_input_mapped"]);
    let root = Path::new("/");
    let err =
        PublishSink::create(root, &OutputOptions::new(IoMode::Buffered)).expect_err("no name");
    check_message(&err, root, &["file name"]);
    assert_eq!(common::names_in(dir.path()), ["fifo", "sub"], "nothing created");
}

#[test]
fn output_into_an_unwritable_directory() {
    let root = rustix::process::geteuid().is_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = if root {
        println!("running as root: permission bits do not stop root; using /sys/kernel");
        PathBuf::from("/sys/kernel")
    } else {
        use std::os::unix::fs::PermissionsExt;
        let d = tmp.path().join("ro");
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o500)).expect("chmod");
        d
    };
    let path = dir.join("ckpt-io-backends-test.ckpt");
    for mode in IoMode::ALL {
        let opts = OutputOptions::new(mode).with_size_bound(4096);
        let err = PublishSink::create(&path, &opts).expect_err("unwritable");
        assert!(
            matches!(err, BackendError::Publish { op: "create the temporary file", .. }),
            "{err:?}"
        );
        check_message(&err, &path, &["cannot publish", "temporary file", "Permission denied"]);
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    }
}

#[test]
fn a_broken_pipe_names_the_stream() {
    // `true` exits at once without reading: writing into its stdin breaks the pipe.
    let mut child = Command::new("true").stdin(Stdio::piped()).spawn().expect("spawn");
    let stdin = child.stdin.take().expect("stdin");
    child.wait().expect("wait");
    let mut sink = StreamSink::with_name(stdin, "<pipe to true>");
    let big = vec![0u8; 3 << 20];
    let err = sink.write_all(&big).expect_err("broken pipe");
    let msg = err.to_string();
    println!("{msg}");
    assert!(msg.contains("<pipe to true>") && msg.contains("Broken pipe"), "{msg}");
    let err = sink.finish().expect_err("finish after a failure");
    check_message(&err, Path::new("<pipe to true>"), &["earlier write failed"]);
}

#[test]
fn a_truncated_stream_is_an_end_of_file() {
    let mut src = stream_source(&b"abc"[..], "<three bytes>");
    let mut buf = [0u8; 4];
    let err = src.read_exact(&mut buf).expect_err("short");
    assert_eq!(err.kind(), ckpt_frame_core::IoErrorKind::UnexpectedEof);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("short");
    std::fs::write(&path, b"abc").expect("write");
    let open = |mode| {
        if mode == IoMode::Mmap {
            // SAFETY: the test's own temporary file, which nothing changes while mapped.
            unsafe { ckpt_io_backends::open_input_mapped(&path) }.expect("map")
        } else {
            open_input(&path, mode).expect("open")
        }
    };
    for mode in IoMode::ALL {
        let mut src = open(mode);
        let err = src.read_exact(&mut buf).expect_err("short");
        assert_eq!(err.kind(), ckpt_frame_core::IoErrorKind::UnexpectedEof, "{mode}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        // A reader reports truncation, not an I/O failure.
        let r = ckpt_frame_core::Reader::open(open(mode));
        assert!(matches!(r, Err(ckpt_frame_core::Error::Truncated { .. })), "{mode}: {r:?}");
    }
}

#[test]
fn io_mode_parsing_lists_the_choices() {
    for m in IoMode::ALL {
        assert_eq!(m.to_string().parse::<IoMode>(), Ok(m));
    }
    assert_eq!("DIRECT".parse::<IoMode>(), Ok(IoMode::Direct));
    let err = "o_direct".parse::<IoMode>().expect_err("unknown");
    assert_eq!(
        err.to_string(),
        "unknown I/O mode `o_direct`: expected one of buffered, direct, mmap, auto"
    );
}
