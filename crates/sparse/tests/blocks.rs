//! `BlockReader` on real files: `O_DIRECT` on ext4 returns the same bytes as buffered reads
//! at any offset and length, reads past the end are errors naming the file, and a file
//! system without `O_DIRECT` is read buffered. Plus a sync whose sender reads direct.

mod common;
use ckpt_sparse::sync::{SyncOptions, sync_local};
use ckpt_sparse::{BlockReader, ReadMode, SparseError};
use common::Rng;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

fn sample(path: &Path, size: u64, rng: &mut Rng) -> Vec<u8> {
    let bytes = rng.bytes(size);
    let f = File::create(path).unwrap();
    f.write_all_at(&bytes, 0).unwrap();
    f.sync_all().unwrap();
    bytes
}

#[test]
fn direct_reads_equal_the_bytes_at_any_offset_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let mut rng = Rng(7);
    // Not a multiple of any block size: the last direct read is short.
    let size = 3 * 1024 * 1024 + 1234;
    let bytes = sample(&path, size, &mut rng);
    let mut direct = BlockReader::open(&path, ReadMode::Direct).unwrap();
    assert!(direct.is_direct(), "ext4 supports O_DIRECT");
    let mut buffered = BlockReader::open(&path, ReadMode::Buffered).unwrap();
    assert!(!buffered.is_direct());
    let mut cases: Vec<(u64, usize)> = vec![
        (0, 0),
        (0, 1),
        (0, 4096),
        (1, 4095),
        (4095, 2),
        (size - 1, 1),
        (size - 1234, 1234),
        (size - 5000, 5000),
        (0, usize::try_from(size).unwrap()),
        (12_345, 2 << 20),
    ];
    for _ in 0..200 {
        let off = rng.next() % size;
        let len = usize::try_from(rng.next() % (size - off).min(300_000)).unwrap();
        cases.push((off, len));
    }
    for (off, len) in cases {
        let want = &bytes[usize::try_from(off).unwrap()..usize::try_from(off).unwrap() + len];
        assert!(direct.read_at(off, len).unwrap() == want, "direct read of {len} at {off}");
        assert!(buffered.read_at(off, len).unwrap() == want, "buffered read of {len} at {off}");
    }
}

#[test]
fn direct_reads_see_data_still_in_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let f = File::create(&path).unwrap();
    f.write_all_at(&[9; 10_000], 70_000).unwrap();
    // Not fsynced: the kernel writes the range back before a direct read of it.
    let mut direct = BlockReader::open(&path, ReadMode::Direct).unwrap();
    assert_eq!(direct.read_at(69_999, 3).unwrap(), [0, 9, 9]);
    assert_eq!(direct.read_at(79_999, 1).unwrap(), [9]);
}

#[test]
fn reads_past_the_end_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short");
    sample(&path, 5000, &mut Rng(3));
    for mode in [ReadMode::Direct, ReadMode::Buffered] {
        let mut reader = BlockReader::open(&path, mode).unwrap();
        for (off, len) in [(4999, 2), (5000, 1), (8192, 10), (u64::MAX - 1, 5)] {
            let err = reader.read_at(off, len).unwrap_err();
            assert!(
                matches!(&err, SparseError::Io { offset: Some(o), .. } if *o == off),
                "{mode:?} {off}+{len}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains("/short") && text.contains("read"), "{text}");
            assert!(text.contains("end of file") || text.contains("fill whole buffer"), "{text}");
        }
        // The reader is still usable after an error.
        assert_eq!(reader.read_at(4998, 2).unwrap().len(), 2);
    }
    let missing = dir.path().join("missing");
    let err = BlockReader::open(&missing, ReadMode::Direct).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_file_system_without_direct_io_is_read_buffered() {
    // tmpfs: either it takes O_DIRECT (newer kernels) or the reader falls back; the bytes
    // are right both ways.
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        common::unavailable("a_file_system_without_direct_io_is_read_buffered", "no /dev/shm");
        return;
    }
    let dir = tempfile::Builder::new().prefix("ckpt-sparse-blocks-").tempdir_in(shm).unwrap();
    let path = dir.path().join("img");
    let bytes = sample(&path, 100_000, &mut Rng(5));
    let mut reader = BlockReader::open(&path, ReadMode::Direct).unwrap();
    eprintln!("tmpfs: direct = {}", reader.is_direct());
    assert!(reader.read_at(123, 50_000).unwrap() == &bytes[123..50_123]);
}

#[test]
fn a_sync_whose_sender_reads_direct() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(17);
    let f = File::create(&src).unwrap();
    f.set_len(40 << 20).unwrap();
    for at in [0u64, 5 << 20, (17 << 20) + 4096, (40 << 20) - 777] {
        let len = (40u64 << 20).saturating_sub(at).min(300_000);
        f.write_all_at(&rng.bytes(len), at).unwrap();
    }
    drop(f);
    let opts = SyncOptions { read_mode: ReadMode::Direct, ..SyncOptions::default() };
    sync_local(&src, &dst, &opts).unwrap();
    assert!(fs::read(&src).unwrap() == fs::read(&dst).unwrap());
    // A change is found and sent with direct reads too.
    File::options().write(true).open(&src).unwrap().write_all_at(b"new", 5 << 20).unwrap();
    let stats = sync_local(&src, &dst, &opts).unwrap();
    assert_eq!(stats.bytes_sent, 4096, "{stats:?}");
    assert!(fs::read(&src).unwrap() == fs::read(&dst).unwrap());
}
