//! `DirectReader` on a real ext4 file: `O_DIRECT` is really on, and reads at unaligned
//! offsets and lengths, across block boundaries, at and past the end of the file, and of
//! zero bytes give exactly what buffered `pread` gives. Plus refusal and fallback where
//! the kernel refuses `O_DIRECT` (`/dev/null`), and errors naming the file.
//!
//! The temporary directory must be on ext4 (this project's machines and CI); elsewhere the
//! ext4 tests fail under `CI=true` and are otherwise skipped with a `SKIP` line on stderr.

mod common;

use ckpt_io_backends::{BackendError, DirectReader, IoMode};
use common::Rng;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

const EXT4_MAGIC: u64 = 0xEF53;

/// A temporary directory on ext4, or `None` (after `common::unavailable`) where the
/// temporary directory is elsewhere.
fn ext4_dir(test: &str) -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs_type = rustix::fs::statfs(dir.path()).expect("statfs").f_type;
    if u64::try_from(fs_type).ok() != Some(EXT4_MAGIC) {
        let why = format!("{} is not on ext4 (f_type {fs_type:#x})", dir.path().display());
        common::unavailable(test, &why);
        return None;
    }
    Some(dir)
}

fn sample(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let bytes = Rng::new(seed).bytes(len);
    let f = File::create(path).expect("create");
    f.write_all_at(&bytes, 0).expect("write");
    f.sync_all().expect("fsync");
    bytes
}

/// What buffered `pread` gives for `len` bytes at `offset`: up to the end of the file.
fn pread(file: &File, offset: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut out[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("pread of {len} at {offset}: {e}"),
        }
    }
    out.truncate(got);
    out
}

#[test]
fn direct_reads_on_ext4_equal_buffered_pread() {
    let Some(dir) = ext4_dir("direct_reads_on_ext4_equal_buffered_pread") else { return };
    let path = dir.path().join("img");
    // Not a multiple of any block size: the last direct read is short.
    let size = 3 * 1024 * 1024 + 1234;
    let bytes = sample(&path, size, 7);
    let plain = File::open(&path).expect("open");

    let mut direct = DirectReader::open(&path, IoMode::Direct).expect("O_DIRECT on ext4");
    assert!(direct.is_direct() && direct.fallback_reason().is_none());
    let a = direct.alignment().expect("direct readers have an alignment").buffer();
    assert!(a.is_power_of_two() && a >= 512, "alignment {a}");
    // Really direct: the descriptor has O_DIRECT, so the kernel refuses an unaligned read.
    let flags = rustix::fs::fcntl_getfl(direct.file()).expect("flags");
    assert!(flags.contains(rustix::fs::OFlags::DIRECT), "{flags:?}");
    let unaligned = rustix::io::pread(direct.file(), &mut [0u8; 3], 1);
    assert_eq!(unaligned, Err(rustix::io::Errno::INVAL), "an unaligned read with O_DIRECT");
    // Auto on ext4 is direct too.
    let auto = DirectReader::open(&path, IoMode::Auto).expect("auto");
    assert!(auto.is_direct() && auto.fallback_reason().is_none());

    let mut buffered = DirectReader::open(&path, IoMode::Buffered).expect("buffered");
    assert!(!buffered.is_direct() && buffered.alignment().is_none());

    let size64 = size as u64;
    let a64 = a as u64;
    let mut cases: Vec<(u64, usize)> = vec![
        (0, 1),
        (0, a),
        (1, a - 1),
        (1, a),
        (a64 - 1, 2),
        (a64 - 1, a + 2),
        (a64, a),
        (a64 + 1, 3 * a),
        (5 * a64 - 7, 14),
        (12_345, 2 << 20),
        (0, size),
        (1, size - 1),
        (size64 - 1, 1),
        (size64 - 1234, 1234),
        (size64 - 5000, 5000),
        (size64 - 5000, 4999),
        (size64 / a64 * a64, size % a),
        (size64 / a64 * a64 - 1, size % a + 1),
    ];
    let mut rng = Rng::new(11);
    for _ in 0..300 {
        let off = rng.next_u64() % size64;
        let room = usize::try_from(size64 - off).expect("fits");
        let len = usize::try_from(rng.next_u64()).expect("fits") % room.min(300_000) + 1;
        cases.push((off, len));
    }
    for (off, len) in cases {
        let at = usize::try_from(off).expect("fits");
        let want = &bytes[at..at + len];
        assert_eq!(pread(&plain, off, len), want, "the reference read of {len} at {off}");
        assert!(direct.read_at(off, len).expect("direct") == want, "direct read of {len} at {off}");
        assert!(buffered.read_at(off, len).expect("buffered") == want, "buffered {len} at {off}");
    }

    // At and past the end: read_up_to gives what pread gives; read_at is an end of file.
    for (off, len) in [
        (size64 - 1, 2),
        (size64 - 1234, 5000),
        (size64 - 1234 - a64, 1234 + 2 * a),
        (size64 / a64 * a64, a + 1),
        (size64, 1),
        (size64 + 1, 10),
        (size64 + 3 * a64, a),
        (0, size + 1),
        (7, 8 << 20),
    ] {
        let want = pread(&plain, off, len);
        assert!(want.len() < len, "the case {len} at {off} reaches the end");
        for reader in [&mut direct, &mut buffered] {
            let what = format!("{len} at {off} (direct {})", reader.is_direct());
            assert!(reader.read_up_to(off, len).expect("read_up_to") == want, "{what}");
            let err = reader.read_at(off, len).expect_err(&what);
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{what}: {err}");
            assert!(matches!(err, BackendError::Io { .. }), "{what}: {err:?}");
            let text = err.to_string();
            assert!(text.contains("/img") && text.contains("end of file"), "{text}");
        }
    }

    // Zero-length reads: empty at any offset, even past the end, with no error.
    for off in [0, 1, a64 - 1, a64, size64 - 1, size64, size64 + 1, u64::MAX] {
        for reader in [&mut direct, &mut buffered] {
            assert!(reader.read_at(off, 0).expect("empty read").is_empty(), "0 at {off}");
            assert!(reader.read_up_to(off, 0).expect("empty read").is_empty(), "0 at {off}");
        }
    }

    // Ranges that overflow, or are far larger than the file, are ends of file, not huge
    // allocations; the reader stays usable.
    for (off, len) in [(u64::MAX - 1, 5), (u64::MAX, 1), (0, 1 << 40), (size64 - 1, usize::MAX)] {
        for reader in [&mut direct, &mut buffered] {
            let err = reader.read_at(off, len).expect_err("past the end");
            assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{len} at {off}: {err}");
        }
    }
    assert!(direct.read_at(a64 - 2, 4).expect("still usable") == &bytes[a - 2..a + 2]);
}

#[test]
fn direct_reads_see_data_still_in_the_page_cache_and_empty_files() {
    let test = "direct_reads_see_data_still_in_the_page_cache_and_empty_files";
    let Some(dir) = ext4_dir(test) else { return };
    let path = dir.path().join("img");
    let f = File::create(&path).expect("create");
    f.write_all_at(&[9; 10_000], 70_000).expect("write");
    // Not fsynced: the kernel writes the range back before a direct read of it.
    let mut direct = DirectReader::open(&path, IoMode::Direct).expect("direct");
    assert!(direct.is_direct());
    assert_eq!(direct.read_at(69_999, 3).expect("read"), [0, 9, 9]);
    assert_eq!(direct.read_at(79_999, 1).expect("read"), [9]);
    assert!(direct.read_up_to(79_999, 2).expect("read") == [9]);

    let empty = dir.path().join("empty");
    File::create(&empty).expect("create");
    let mut direct = DirectReader::open(&empty, IoMode::Direct).expect("direct, empty");
    assert!(direct.is_direct());
    assert!(direct.read_up_to(0, 4096).expect("read").is_empty());
    assert!(direct.read_at(0, 0).expect("read").is_empty());
    assert_eq!(direct.read_at(0, 1).expect_err("eof").kind(), ErrorKind::UnexpectedEof);
    // The file grows while open: the reader sees it.
    std::fs::write(&empty, b"grown").expect("write");
    assert_eq!(direct.read_at(1, 3).expect("read"), b"row");
}

#[test]
fn refused_direct_is_an_error_and_auto_falls_back() {
    let null = Path::new("/dev/null");
    let err = DirectReader::open(null, IoMode::Direct).expect_err("refused");
    match &err {
        BackendError::DirectUnsupported { path, reason } => {
            assert_eq!(path, null);
            assert!(reason.contains("EINVAL"), "{reason}");
        }
        other => panic!("expected DirectUnsupported, got {other:?}"),
    }
    assert!(err.to_string().contains("/dev/null"), "{err}");
    let (reader, logs) =
        common::capture_logs(|| DirectReader::open(null, IoMode::Auto).expect("auto"));
    let mut reader = reader;
    assert!(!reader.is_direct() && reader.alignment().is_none());
    assert!(reader.fallback_reason().is_some_and(|r| r.contains("EINVAL")));
    assert!(
        logs.iter().any(|l| l.starts_with("WARN") && l.contains("falling back to buffered I/O")),
        "a log line says so: {logs:?}"
    );
    assert!(reader.read_up_to(0, 10).expect("read").is_empty());
    assert_eq!(reader.read_at(0, 1).expect_err("eof").kind(), ErrorKind::UnexpectedEof);

    // A FIFO is refused from its type, without opening it (which would wait for a writer).
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = common::make_fifo(dir.path());
    let err = DirectReader::open(&fifo, IoMode::Direct).expect_err("refused");
    assert!(matches!(err, BackendError::DirectUnsupported { .. }), "{err:?}");
}

#[test]
fn bad_paths_and_modes_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    for mode in IoMode::ALL {
        let err = DirectReader::open(&missing, mode).expect_err("missing");
        assert!(matches!(err, BackendError::Open { .. }), "{mode}: {err:?}");
        assert!(err.to_string().contains("missing"), "{err}");
        let err = DirectReader::open(dir.path(), mode).expect_err("a directory");
        assert!(matches!(err, BackendError::Unsupported { .. }), "{mode}: {err:?}");
        assert!(err.to_string().contains("directory"), "{err}");
    }
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").expect("write");
    let err = DirectReader::open(&file, IoMode::Mmap).expect_err("mmap");
    assert!(matches!(err, BackendError::Unsupported { .. }), "{err:?}");
    // A buffered reader of an open file is named as told.
    let mut reader = DirectReader::buffered(File::open(&file).expect("open"), "named");
    assert_eq!(reader.path(), Path::new("named"));
    let err = reader.read_at(0, 2).expect_err("eof");
    assert!(err.to_string().contains("named"), "{err}");
}
