//! Layout, FIEMAP and the fallocate primitives on real files.
//!
//! Files live in a temporary directory under /tmp. Tests that rely on ext4 behaviour
//! (4 KiB data granularity, unwritten extents as holes) check the file system first and
//! print a `SKIP` line on stderr when it is not ext4, or fail under `CI=true`.

mod common;

use ckpt_sparse::{
    FiemapExtent, Interval, IntervalSet, SparseError, data_layout, fiemap, is_all_zero,
    preallocate, punch_hole, zero_range,
};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const BLOCK: u64 = 4096;
const EXT4_SUPER_MAGIC: i128 = 0xEF53;
const TMPFS_MAGIC: i128 = 0x0102_1994;
/// `FIEMAP_EXTENT_DELALLOC`.
const DELALLOC: u32 = 0x4;

fn iv(start: u64, end: u64) -> Interval {
    Interval::new(start, end).expect("start <= end")
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ckpt-sparse-layout-")
        .tempdir_in("/tmp")
        .expect("tempdir in /tmp")
}

fn fs_magic(path: &Path) -> i128 {
    i128::from(rustix::fs::statfs(path).expect("statfs").f_type)
}

/// Returns early from test `$test` unless `$dir` is on ext4: a failure under `CI=true`,
/// else a `SKIP` line on stderr.
macro_rules! require_ext4 {
    ($test:expr, $dir:expr) => {
        if fs_magic($dir) != EXT4_SUPER_MAGIC {
            let why = format!("{} is not ext4 (f_type {:#x})", $dir.display(), fs_magic($dir));
            common::unavailable($test, &why);
            return;
        }
    };
}

fn open_rw(path: &Path) -> File {
    OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).expect("open")
}

/// Writes a file of `size` bytes whose block `i` holds data when `blocks[i]`, and returns
/// the data it should report: those blocks, clipped to `size`.
fn make_file(path: &Path, blocks: &[bool], size: u64) -> (File, IntervalSet) {
    let file = open_rw(path);
    let mut want = IntervalSet::new();
    for (i, _) in blocks.iter().enumerate().filter(|(_, d)| **d) {
        let start = i as u64 * BLOCK;
        let end = (start + BLOCK).min(size);
        if start >= end {
            continue;
        }
        let len = usize::try_from(end - start).unwrap();
        let byte = u8::try_from(i % 250 + 1).unwrap();
        file.write_all_at(&vec![byte; len], start).expect("write");
        want.insert(iv(start, end));
    }
    file.set_len(size).expect("set_len");
    (file, want)
}

fn assert_layout(file: &File, path: &Path, size: u64, want: &IntervalSet, what: &str) {
    let layout = data_layout(file, path).expect("data_layout");
    assert_eq!(layout.size, size, "{what}: size");
    assert_eq!(&layout.data, want, "{what}: data");
    assert_eq!(layout.holes(), want.complement(iv(0, size)), "{what}: holes");
}

/// The data FIEMAP reports: written (not unwritten) extents, clipped to `size`.
fn fiemap_data(extents: &[FiemapExtent], size: u64) -> IntervalSet {
    IntervalSet::from_intervals(
        extents.iter().filter(|e| !e.unwritten).map(FiemapExtent::logical_range),
    )
    .clip(iv(0, size))
}

fn check_fiemap_shape(extents: &[FiemapExtent]) {
    for pair in extents.windows(2) {
        assert!(pair[0].logical + pair[0].len <= pair[1].logical, "extents out of order: {pair:?}");
        assert!(!pair[0].last, "LAST before the end: {pair:?}");
    }
    if let Some(e) = extents.last() {
        assert!(e.last, "last extent lacks FIEMAP_EXTENT_LAST: {e:?}");
    }
}

#[test]
fn three_block_patterns() {
    let dir = tempdir();
    require_ext4!("three_block_patterns", dir.path());
    for mask in 0u8..8 {
        let blocks: Vec<bool> = (0..3).map(|b| mask & (1 << b) != 0).collect();
        // Whole blocks, ending inside the last block (data or hole), and one byte into it.
        for size in [3 * BLOCK, 3 * BLOCK - 100, 2 * BLOCK + 1] {
            let path = dir.path().join(format!("p{mask}-{size}"));
            let (file, want) = make_file(&path, &blocks, size);
            assert_layout(
                &file,
                &path,
                size,
                &want,
                &format!("pattern {blocks:?} size {size} (dirty)"),
            );
            file.sync_all().unwrap();
            assert_layout(
                &file,
                &path,
                size,
                &want,
                &format!("pattern {blocks:?} size {size} (synced)"),
            );
            // Read-only descriptors work too.
            let ro = File::open(&path).unwrap();
            assert_layout(
                &ro,
                &path,
                size,
                &want,
                &format!("pattern {blocks:?} size {size} (read-only)"),
            );
        }
    }
}

#[test]
fn hundred_blocks_with_shifting_holes() {
    let dir = tempdir();
    require_ext4!("hundred_blocks_with_shifting_holes", dir.path());
    let size = 100 * BLOCK;
    for shift in 0..8 {
        // Two-block holes every five blocks, moved along by one block each round.
        let blocks: Vec<bool> = (0..100).map(|i| (i + shift) % 5 >= 2).collect();
        let path = dir.path().join(format!("shift{shift}"));
        let (file, want) = make_file(&path, &blocks, size);
        assert!(want.len() >= 19);
        assert_layout(&file, &path, size, &want, &format!("shift {shift}"));
        let extents = fiemap(&file, &path, true).unwrap().expect("ext4 has FIEMAP");
        check_fiemap_shape(&extents);
        assert_eq!(fiemap_data(&extents, size), want, "shift {shift}: fiemap");
    }
}

#[test]
fn unaligned_sizes() {
    let dir = tempdir();
    require_ext4!("unaligned_sizes", dir.path());
    for size in [1, 100, BLOCK - 1, BLOCK + 1, 5 * BLOCK + 7] {
        // Data everywhere.
        let blocks = vec![true; 6];
        let path = dir.path().join(format!("full{size}"));
        let (file, want) = make_file(&path, &blocks, size);
        assert_eq!(want, IntervalSet::from(iv(0, size)));
        assert_layout(&file, &path, size, &want, &format!("all data, size {size}"));
        // Data in the first block only, the tail a hole that ends mid-block.
        let path = dir.path().join(format!("head{size}"));
        let (file, want) = make_file(&path, &[true], size);
        assert_layout(&file, &path, size, &want, &format!("head data, size {size}"));
        // Data in the last (partial) block only.
        let last = usize::try_from(size.div_ceil(BLOCK) - 1).unwrap();
        let blocks: Vec<bool> = (0..=last).map(|i| i == last).collect();
        let path = dir.path().join(format!("tail{size}"));
        let (file, want) = make_file(&path, &blocks, size);
        assert_eq!(want.span().map(|s| s.end), Some(size));
        assert_layout(&file, &path, size, &want, &format!("tail data, size {size}"));
    }
}

#[test]
fn empty_and_all_hole_files() {
    let dir = tempdir();
    let path = dir.path().join("empty");
    let file = open_rw(&path);
    let layout = data_layout(&file, &path).unwrap();
    assert_eq!(layout.size, 0);
    assert!(layout.data.is_empty() && layout.holes().is_empty());
    if let Some(extents) = fiemap(&file, &path, true).unwrap() {
        assert!(extents.is_empty(), "{extents:?}");
    }

    for size in [1, BLOCK, 1 << 20, (1 << 30) + 3] {
        let path = dir.path().join(format!("hole{size}"));
        let file = open_rw(&path);
        file.set_len(size).unwrap();
        let layout = data_layout(&file, &path).unwrap();
        assert_eq!(layout.size, size);
        assert!(layout.data.is_empty(), "size {size}: {:?}", layout.data);
        assert_eq!(layout.holes(), IntervalSet::from(iv(0, size)));
        if let Some(extents) = fiemap(&file, &path, true).unwrap() {
            assert!(extents.is_empty(), "size {size}: {extents:?}");
        }
    }
}

#[test]
fn preallocated_range_is_hole_and_unwritten() {
    let dir = tempdir();
    require_ext4!("preallocated_range_is_hole_and_unwritten", dir.path());
    let path = dir.path().join("prealloc");
    let size = 8 * BLOCK;
    let (file, want) = make_file(&path, &[true], size);
    preallocate(&file, &path, iv(2 * BLOCK, 6 * BLOCK)).unwrap();
    // Beyond the end too: KEEP_SIZE keeps the size.
    preallocate(&file, &path, iv(10 * BLOCK, 12 * BLOCK)).unwrap();
    assert_eq!(file.metadata().unwrap().len(), size);
    assert_layout(&file, &path, size, &want, "after preallocate");
    let extents = fiemap(&file, &path, true).unwrap().expect("ext4 has FIEMAP");
    check_fiemap_shape(&extents);
    let unwritten = IntervalSet::from_intervals(
        extents.iter().filter(|e| e.unwritten).map(FiemapExtent::logical_range),
    );
    assert_eq!(
        unwritten,
        IntervalSet::from_intervals([iv(2 * BLOCK, 6 * BLOCK), iv(10 * BLOCK, 12 * BLOCK)])
    );
    assert_eq!(fiemap_data(&extents, size), want);
    // Preallocating over data leaves the data alone.
    preallocate(&file, &path, iv(0, BLOCK)).unwrap();
    assert_layout(&file, &path, size, &want, "after preallocate over data");

    // Reading an unwritten range puts up-to-date zero pages in the page cache, and ext4's
    // SEEK_DATA (iomap) counts cached pages over unwritten extents as data: while they stay
    // cached, the range shows as data. Never less than the real data, never more than data
    // plus what was read.
    let mut buf = vec![1u8; usize::try_from(4 * BLOCK).unwrap()];
    file.read_exact_at(&mut buf, 2 * BLOCK).unwrap();
    assert!(is_all_zero(&buf));
    let after_read = data_layout(&file, &path).unwrap().data;
    eprintln!("after reading the preallocated range, SEEK_DATA reports {after_read:?}");
    assert_eq!(after_read.intersect(&want), want);
    assert!(
        after_read
            .subtract(&want)
            .subtract(&IntervalSet::from(iv(2 * BLOCK, 6 * BLOCK)))
            .is_empty()
    );
    // FIEMAP still says unwritten.
    let extents = fiemap(&file, &path, false).unwrap().expect("ext4 has FIEMAP");
    assert_eq!(fiemap_data(&extents, size), want);
}

#[test]
fn fiemap_sync_reports_dirty_data() {
    let dir = tempdir();
    require_ext4!("fiemap_sync_reports_dirty_data", dir.path());
    let blocks: Vec<bool> = (0..16).map(|i| i % 3 != 1).collect();
    let size = 16 * BLOCK;

    // Without sync, a freshly written file on ext4 shows delayed allocations (if any are
    // still pending); with sync it shows real extents matching SEEK_DATA.
    let path = dir.path().join("dirty-nosync");
    let (file, want) = make_file(&path, &blocks, size);
    let before = fiemap(&file, &path, false).unwrap().expect("ext4 has FIEMAP");
    check_fiemap_shape(&before);
    eprintln!(
        "fiemap without sync on a dirty file: {} extents, {} delalloc",
        before.len(),
        before.iter().filter(|e| e.flags & DELALLOC != 0).count()
    );
    assert_eq!(fiemap_data(&before, size), want, "delalloc extents still cover the data");

    let path = dir.path().join("dirty-sync");
    let (file, want) = make_file(&path, &blocks, size);
    let extents = fiemap(&file, &path, true).unwrap().expect("ext4 has FIEMAP");
    check_fiemap_shape(&extents);
    assert!(extents.iter().all(|e| e.flags & DELALLOC == 0), "delalloc after sync: {extents:?}");
    assert!(extents.iter().all(|e| e.physical != 0 && !e.shared), "{extents:?}");
    assert_eq!(fiemap_data(&extents, size), want);
    assert_eq!(fiemap_data(&extents, size), data_layout(&file, &path).unwrap().data);

    // A read-only descriptor can ask for the sync too.
    let path = dir.path().join("dirty-ro");
    let (_file, want) = make_file(&path, &blocks, size);
    let ro = File::open(&path).unwrap();
    let extents = fiemap(&ro, &path, true).unwrap().expect("ext4 has FIEMAP");
    assert!(extents.iter().all(|e| e.flags & DELALLOC == 0), "delalloc after sync: {extents:?}");
    assert_eq!(fiemap_data(&extents, size), want);
}

#[test]
fn is_all_zero_matches_bytewise_check() {
    let mut buf = vec![0u8; 300];
    for len in 0..300 {
        assert!(is_all_zero(&buf[..len]));
        for pos in 0..len {
            buf[pos] = 0x80;
            assert!(!is_all_zero(&buf[..len]), "len {len}, nonzero at {pos}");
            // Unaligned starts too.
            if len >= 3 {
                assert_eq!(is_all_zero(&buf[3..len]), pos < 3, "len {len}, pos {pos}");
            }
            buf[pos] = 0;
        }
    }
}

#[test]
fn fiemap_more_extents_than_one_call_holds() {
    let dir = tempdir();
    require_ext4!("fiemap_more_extents_than_one_call_holds", dir.path());
    // 600 one-block extents separated by one-block holes: three batches of 256.
    let blocks: Vec<bool> = (0..1200).map(|i| i % 2 == 0).collect();
    let size = 1200 * BLOCK;
    let path = dir.path().join("many");
    let (file, want) = make_file(&path, &blocks, size);
    let extents = fiemap(&file, &path, true).unwrap().expect("ext4 has FIEMAP");
    check_fiemap_shape(&extents);
    assert_eq!(extents.len(), 600);
    assert_eq!(fiemap_data(&extents, size), want);
    assert_layout(&file, &path, size, &want, "600 extents");
}

#[test]
fn tmpfs_has_no_fiemap_but_seek_data_works() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() || fs_magic(shm) != TMPFS_MAGIC {
        common::unavailable("tmpfs_has_no_fiemap_but_seek_data_works", "/dev/shm is not tmpfs");
        return;
    }
    let dir = tempfile::Builder::new().prefix("ckpt-sparse-layout-").tempdir_in(shm).unwrap();
    let path = dir.path().join("shm");
    let size = 6 * BLOCK;
    let (file, want) = make_file(&path, &[true, false, true, true, false, false], size);
    // This kernel (6.18): tmpfs has no FIEMAP, the ioctl fails with EOPNOTSUPP.
    assert_eq!(fiemap(&file, &path, true).unwrap(), None);
    assert_eq!(fiemap(&file, &path, false).unwrap(), None);
    // SEEK_DATA/SEEK_HOLE work on tmpfs at page granularity.
    assert_layout(&file, &path, size, &want, "tmpfs");
    // tmpfs punches holes...
    punch_hole(&file, &path, iv(2 * BLOCK, 3 * BLOCK)).unwrap();
    let want = IntervalSet::from_intervals([iv(0, BLOCK), iv(3 * BLOCK, 4 * BLOCK)]);
    assert_layout(&file, &path, size, &want, "tmpfs after punch");
    // ...but has no ZERO_RANGE: zero_range falls back to punching.
    zero_range(&file, &path, iv(0, BLOCK)).unwrap();
    assert_layout(
        &file,
        &path,
        size,
        &IntervalSet::from(iv(3 * BLOCK, 4 * BLOCK)),
        "tmpfs after zero_range",
    );
    // Preallocated pages on tmpfs are holes to SEEK_DATA as well.
    preallocate(&file, &path, iv(4 * BLOCK, 6 * BLOCK)).unwrap();
    assert_layout(
        &file,
        &path,
        size,
        &IntervalSet::from(iv(3 * BLOCK, 4 * BLOCK)),
        "tmpfs after preallocate",
    );
}

#[test]
fn punch_zero_preallocate_change_layout_keep_size() {
    let dir = tempdir();
    require_ext4!("punch_zero_preallocate_change_layout_keep_size", dir.path());
    let path = dir.path().join("ops");
    let size = 10 * BLOCK - 10;
    let (file, mut want) = make_file(&path, &[true; 10], size);
    assert_layout(&file, &path, size, &want, "initial");

    punch_hole(&file, &path, iv(BLOCK, 3 * BLOCK)).unwrap();
    want = want.subtract(&IntervalSet::from(iv(BLOCK, 3 * BLOCK)));
    assert_layout(&file, &path, size, &want, "after punch");

    zero_range(&file, &path, iv(4 * BLOCK, 6 * BLOCK)).unwrap();
    want = want.subtract(&IntervalSet::from(iv(4 * BLOCK, 6 * BLOCK)));
    assert_layout(&file, &path, size, &want, "after zero_range (ext4: unwritten = hole)");

    // Unaligned ranges: the partial blocks are zeroed in place and stay data; only whole
    // blocks inside the range change.
    punch_hole(&file, &path, iv(6 * BLOCK + 100, 8 * BLOCK + 100)).unwrap();
    want = want.subtract(&IntervalSet::from(iv(7 * BLOCK, 8 * BLOCK)));
    assert_layout(&file, &path, size, &want, "after unaligned punch");
    zero_range(&file, &path, iv(10, 20)).unwrap();
    assert_layout(&file, &path, size, &want, "after small zero_range");

    // Punching through the end (the tail block is partial) keeps the size.
    punch_hole(&file, &path, iv(9 * BLOCK, 12 * BLOCK)).unwrap();
    want = want.subtract(&IntervalSet::from(iv(9 * BLOCK, size)));
    assert_layout(&file, &path, size, &want, "after punch past the end");

    // Preallocating a hole keeps it a hole.
    preallocate(&file, &path, iv(BLOCK, 3 * BLOCK)).unwrap();
    assert_layout(&file, &path, size, &want, "after preallocate");

    // Empty ranges do nothing.
    punch_hole(&file, &path, iv(0, 0)).unwrap();
    zero_range(&file, &path, iv(5, 5)).unwrap();
    preallocate(&file, &path, iv(7, 7)).unwrap();
    assert_layout(&file, &path, size, &want, "after empty ranges");

    assert_eq!(file.metadata().unwrap().len(), size);
    let mut contents = vec![0xAAu8; usize::try_from(size).unwrap()];
    file.read_exact_at(&mut contents, 0).unwrap();
    let zeroed = IntervalSet::from_intervals([
        iv(10, 20),
        iv(BLOCK, 3 * BLOCK),
        iv(4 * BLOCK, 6 * BLOCK),
        iv(6 * BLOCK + 100, 8 * BLOCK + 100),
        iv(9 * BLOCK, size),
    ]);
    for (offset, byte) in (0u64..).zip(&contents) {
        let expect_zero = zeroed.contains(offset);
        assert_eq!(*byte == 0, expect_zero, "byte at {offset} is {byte}");
    }
}

#[test]
fn layout_keeps_file_position_and_survives_unlink() {
    let dir = tempdir();
    let path = dir.path().join("pos");
    let (mut file, want) = make_file(&path, &[true, false, true], 3 * BLOCK);
    file.seek(SeekFrom::Start(1234)).unwrap();
    let layout = data_layout(&file, &path).unwrap();
    assert_eq!(file.stream_position().unwrap(), 1234);
    std::fs::remove_file(&path).unwrap();
    // The path is gone, the open file is not.
    assert_eq!(data_layout(&file, &path).unwrap(), layout);
    if fs_magic(dir.path()) == EXT4_SUPER_MAGIC {
        assert_eq!(layout.data, want);
    }
}

fn expect_io(err: SparseError, path: &Path, op: &str) -> std::io::Error {
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "message lacks the path: {text}");
    assert!(text.contains(op), "message lacks the operation: {text}");
    assert_eq!(err.path(), path);
    assert!(std::error::Error::source(&err).is_some());
    match err {
        SparseError::Io { path: p, op: o, source, .. } => {
            assert_eq!(p, path);
            assert_eq!(o, op);
            source
        }
        other => panic!("expected SparseError::Io, got {other:?}"),
    }
}

#[test]
fn errors_name_path_and_operation() {
    let dir = tempdir();

    // A directory.
    let d: PathBuf = dir.path().join("subdir");
    std::fs::create_dir(&d).unwrap();
    let handle = File::open(&d).unwrap();
    let source = expect_io(data_layout(&handle, &d).unwrap_err(), &d, "map the data of");
    assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory);

    // A file opened read-only cannot be punched, zeroed or preallocated.
    let path = dir.path().join("ro");
    make_file(&path, &[true, true], 2 * BLOCK);
    let ro = File::open(&path).unwrap();
    let err = punch_hole(&ro, &path, iv(0, BLOCK)).unwrap_err();
    assert!(matches!(err, SparseError::Io { offset: Some(0), .. }));
    let source = expect_io(err, &path, "punch a hole in");
    assert_eq!(source.raw_os_error(), Some(libc_ebadf()));
    expect_io(zero_range(&ro, &path, iv(BLOCK, 2 * BLOCK)).unwrap_err(), &path, "zero a range of");
    let err = preallocate(&ro, &path, iv(BLOCK, 2 * BLOCK)).unwrap_err();
    assert!(err.to_string().contains(&format!("at offset {BLOCK}")), "{err}");
    expect_io(err, &path, "preallocate space in");

    // A pipe is not a regular file.
    let (reader, _writer) = std::io::pipe().unwrap();
    let pipe = File::from(std::os::fd::OwnedFd::from(reader));
    let fake = dir.path().join("pipe");
    match data_layout(&pipe, &fake) {
        Err(err @ SparseError::Unsupported { .. }) => {
            assert!(err.to_string().contains(&fake.display().to_string()), "{err}");
            assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }

    // Conversion into io::Error keeps the kind and the message.
    let err = punch_hole(&ro, &path, iv(0, BLOCK)).unwrap_err();
    let text = err.to_string();
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::Error::from_raw_os_error(libc_ebadf()).kind());
    assert_eq!(io.to_string(), text);
}

fn libc_ebadf() -> i32 {
    rustix::io::Errno::BADF.raw_os_error()
}
