//! `sparse_copy` on real ext4 files: every data/hole permutation the issue lists, targets
//! absent, shorter, longer and equal, preallocated extents, zero blocks inside data, sizes
//! off the block grid; content equal AND the target's data/hole layout equal to the
//! source's data (minus all-zero blocks). Plus the errors.

mod common;
use ckpt_sparse::Interval;
use ckpt_sparse::{CopyOptions, IntervalSet, SparseError, data_layout, preallocate, sparse_copy};
use common::Rng;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

const B: u64 = 4096;

/// Writes a file of `size` bytes whose blocks of `block` bytes are data where `pattern`
/// says so (the last block may be partial); returns the data set it must have.
fn make(path: &Path, pattern: &[bool], block: u64, size: u64, rng: &mut Rng) -> IntervalSet {
    let _ = fs::remove_file(path);
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut data = Vec::new();
    for (i, &is_data) in pattern.iter().enumerate() {
        let start = i as u64 * block;
        let end = (start + block).min(size);
        if is_data && start < end {
            f.write_all_at(&rng.bytes(end - start), start).unwrap();
            // The layout is clipped to the file's size.
            data.push(Interval::new(start, end).unwrap());
        }
    }
    IntervalSet::from_intervals(data)
}

fn layout_of(path: &Path) -> IntervalSet {
    let f = File::open(path).unwrap();
    data_layout(&f, path).unwrap().data
}

/// Copies and checks bytes, size, mode and that the target's data is exactly `want`.
fn copy_and_check(src: &Path, dst: &Path, want: &IntervalSet, what: &str) {
    let stats = sparse_copy(src, dst, &CopyOptions::default()).unwrap();
    let (a, b) = (fs::read(src).unwrap(), fs::read(dst).unwrap());
    assert!(a == b, "{what}: contents differ");
    assert_eq!(stats.size, a.len() as u64, "{what}");
    assert_eq!(layout_of(dst), *want, "{what}: target layout");
    let (ma, mb) = (fs::metadata(src).unwrap(), fs::metadata(dst).unwrap());
    assert_eq!(ma.permissions().mode(), mb.permissions().mode(), "{what}: mode");
    // Allocation matches the data: its 4 KiB blocks, plus at most two blocks of ext4's
    // extent tree when there are many extents.
    let data: u64 = want.iter().map(|i| i.end.next_multiple_of(B) - i.start).sum();
    let allocated = mb.blocks() * 512;
    assert!(
        (data..=data + 2 * B).contains(&allocated),
        "{what}: {allocated} bytes allocated for {data} bytes of data"
    );
}

use std::os::unix::fs::MetadataExt;

#[test]
fn all_three_block_patterns_and_targets_absent_shorter_longer_equal() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(7);
    for bits in 0..8u8 {
        let pattern: Vec<bool> = (0..3).map(|i| bits & (1 << i) != 0).collect();
        for size in [3 * B, 3 * B - 100, 2 * B + 1] {
            for target in ["absent", "shorter", "longer", "equal"] {
                let want = make(&src, &pattern, B, size, &mut rng);
                let _ = fs::remove_file(&dst);
                let old_len = match target {
                    "shorter" => Some(100),
                    "longer" => Some(5 * B),
                    "equal" => Some(size),
                    _ => None,
                };
                if let Some(len) = old_len {
                    fs::write(&dst, rng.bytes(len)).unwrap();
                }
                copy_and_check(&src, &dst, &want, &format!("{pattern:?} size {size} {target}"));
            }
        }
    }
}

#[test]
fn hundred_block_files_with_shifted_holes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(11);
    for shift in 0..10 {
        // Holes of 3 blocks every 10 blocks, shifted by one block each time.
        let pattern: Vec<bool> = (0..100).map(|i| (i + shift) % 10 >= 3).collect();
        let want = make(&src, &pattern, B, 100 * B, &mut rng);
        copy_and_check(&src, &dst, &want, &format!("shift {shift}"));
    }
}

#[test]
fn random_layouts_at_4_kib_and_4_mib_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(23);
    for (block, rounds, max_blocks) in [(B, 20, 256), (4 << 20, 3, 12)] {
        for round in 0..rounds {
            let n = 1 + rng.next() % max_blocks;
            let pattern: Vec<bool> = (0..n).map(|_| rng.next().is_multiple_of(3)).collect();
            let size = n * block - rng.next() % block;
            let want = make(&src, &pattern, block, size, &mut rng);
            copy_and_check(&src, &dst, &want, &format!("block {block} round {round}"));
        }
    }
}

#[test]
fn a_100_mib_block_layout_copies_only_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    // Three 100 MiB blocks: hole, data (only its first 8 MiB written), hole.
    let block = 100 << 20;
    let f = File::create(&src).unwrap();
    f.set_len(3 * block).unwrap();
    let mut rng = Rng(5);
    f.write_all_at(&rng.bytes(8 << 20), block).unwrap();
    let want = IntervalSet::from_intervals([Interval::new(block, block + (8 << 20)).unwrap()]);
    copy_and_check(&src, &dst, &want, "100 MiB blocks");
}

#[test]
fn zero_blocks_and_preallocated_extents_become_holes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let f = File::create(&src).unwrap();
    f.set_len(64 * B + 10).unwrap();
    let mut rng = Rng(3);
    // Data blocks 0-7, of which 2 and 5 are written zeros; preallocated blocks 20-29;
    // data in the partial last block.
    f.write_all_at(&rng.bytes(8 * B), 0).unwrap();
    f.write_all_at(&vec![0u8; usize::try_from(B).unwrap()], 2 * B).unwrap();
    f.write_all_at(&vec![0u8; usize::try_from(B).unwrap()], 5 * B).unwrap();
    preallocate(&f, &src, Interval::new(20 * B, 30 * B).unwrap()).unwrap();
    f.write_all_at(b"tail", 64 * B + 2).unwrap();
    drop(f);
    let want = IntervalSet::from_intervals([
        Interval::new(0, 2 * B).unwrap(),
        Interval::new(3 * B, 5 * B).unwrap(),
        Interval::new(6 * B, 8 * B).unwrap(),
        Interval::new(64 * B, 64 * B + 10).unwrap(),
    ]);
    let stats = sparse_copy(&src, &dst, &CopyOptions::default()).unwrap();
    assert_eq!(stats.zero_blocks, 2, "{stats:?}");
    // Blocks 0-7 and the 10-byte tail block (the layout is clipped to the size).
    assert_eq!(stats.data_read, 8 * B + 10, "preallocated blocks are not read: {stats:?}");
    assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
    let got = layout_of(&dst);
    assert_eq!(
        got.clip(Interval::new(0, 64 * B).unwrap()),
        want.clip(Interval::new(0, 64 * B).unwrap())
    );
}

#[test]
fn keep_zeros_copies_data_extents_whole_in_the_kernel_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(11);
    // Data, written zeros inside data, a 3 MiB extent (several 1 MiB pieces), a tail.
    let f = File::create(&src).unwrap();
    f.set_len(4 << 20).unwrap();
    f.write_all_at(&rng.bytes(2 * B), 0).unwrap();
    f.write_all_at(&vec![0u8; usize::try_from(2 * B).unwrap()], 2 * B).unwrap();
    f.write_all_at(&rng.bytes(3 << 20), 1 << 20).unwrap();
    f.write_all_at(b"end", (4 << 20) - 3).unwrap();
    drop(f);
    let source_data = layout_of(&src);
    let opts = CopyOptions { detect_zeros: false, ..CopyOptions::default() };
    let mut seen = Vec::new();
    let stats = ckpt_sparse::sparse_copy_with_progress(&src, &dst, &opts, &mut |done, total| {
        seen.push((done, total));
    })
    .unwrap();
    assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
    // Written zeros stay data: the copy's layout is the source's.
    assert_eq!(layout_of(&dst), source_data);
    assert_eq!(stats.zero_blocks, 0, "{stats:?}");
    assert_eq!(stats.data_written, source_data.total_len(), "{stats:?}");
    // ext4 on this kernel has copy_file_range between two of its files.
    assert_eq!(stats.kernel_copied, stats.data_written, "{stats:?}");
    let total = source_data.total_len();
    assert!(seen.len() >= 4, "progress after every piece: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "progress never goes back: {seen:?}");
    assert!(seen.iter().all(|&(d, t)| t == total && d <= t), "{seen:?}");
    assert_eq!(seen.last(), Some(&(total, total)));

    // The default (zero detection) reports the same way and leaves the zeros as holes.
    seen.clear();
    let stats = ckpt_sparse::sparse_copy_with_progress(
        &src,
        &dst,
        &CopyOptions::default(),
        &mut |done, total| seen.push((done, total)),
    )
    .unwrap();
    assert_eq!((stats.kernel_copied, stats.zero_blocks), (0, 2), "{stats:?}");
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
}

#[test]
fn errors_name_the_path_and_leave_the_target_alone() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst");
    fs::write(&dst, b"keep me").unwrap();
    let missing = dir.path().join("missing");
    match sparse_copy(&missing, &dst, &CopyOptions::default()) {
        Err(e @ SparseError::Io { .. }) => {
            assert!(e.to_string().contains("missing"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    match sparse_copy(dir.path(), &dst, &CopyOptions::default()) {
        Err(e @ (SparseError::Unsupported { .. } | SparseError::Io { .. })) => {
            assert!(e.to_string().contains(dir.path().to_str().unwrap()), "{e}");
        }
        other => panic!("a directory as source: {other:?}"),
    }
    let src = dir.path().join("src");
    fs::write(&src, b"new").unwrap();
    match sparse_copy(&src, dir.path(), &CopyOptions::default()) {
        Err(e @ SparseError::Unsupported { .. }) => {
            assert!(e.to_string().contains("directory"), "{e}");
        }
        other => panic!("a directory as target: {other:?}"),
    }
    let nowhere = dir.path().join("no/such/dir/dst");
    assert!(matches!(
        sparse_copy(&src, &nowhere, &CopyOptions::default()),
        Err(SparseError::Io { .. })
    ));
    assert_eq!(fs::read(&dst).unwrap(), b"keep me", "failed copies left the target alone");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".ckpt-sparse."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
