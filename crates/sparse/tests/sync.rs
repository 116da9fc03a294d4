//! Sync of changed blocks on real ext4 files: targets absent, shorter, longer and equal;
//! content AND data/hole layout equal afterwards; only changed sub-blocks sent; an
//! interrupted sync leaves its dirty marker, is never reported as a success, and the next
//! run redoes it.

mod common;
use ckpt_sparse::sync::{SyncError, SyncOptions, marker_path, receive, send, sync_local};
use ckpt_sparse::{IntervalSet, data_layout};
use common::Rng;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

const B: u64 = 4096;

fn make(path: &Path, pattern: &[bool], size: u64, rng: &mut Rng) {
    let _ = fs::remove_file(path);
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (i, &data) in pattern.iter().enumerate() {
        let start = i as u64 * B;
        if data && start < size {
            f.write_all_at(&rng.bytes((start + B).min(size) - start), start).unwrap();
        }
    }
}

fn layout(path: &Path) -> IntervalSet {
    data_layout(&File::open(path).unwrap(), path).unwrap().data
}

fn assert_synced(src: &Path, dst: &Path, what: &str) {
    assert!(fs::read(src).unwrap() == fs::read(dst).unwrap(), "{what}: contents differ");
    assert_eq!(layout(src), layout(dst), "{what}: layouts differ");
    assert!(!marker_path(dst).exists(), "{what}: dirty marker left after success");
}

fn opts() -> SyncOptions {
    SyncOptions { block_size: 64 * 1024, sub_block_size: 4096, ..SyncOptions::default() }
}

#[test]
fn patterns_and_targets_absent_shorter_longer_equal() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(3);
    for bits in 0..8u8 {
        let pattern: Vec<bool> = (0..3).map(|i| bits & (1 << i) != 0).collect();
        for size in [3 * B, 3 * B - 100] {
            for target in ["absent", "shorter", "longer", "equal", "other-layout"] {
                make(&src, &pattern, size, &mut rng);
                let _ = fs::remove_file(&dst);
                match target {
                    "shorter" => make(&dst, &[true], 100, &mut rng),
                    "longer" => make(&dst, &[true, false, true, true, true], 5 * B, &mut rng),
                    "equal" => fs::copy(&src, &dst).map(|_| ()).unwrap(),
                    "other-layout" => {
                        let inverse: Vec<bool> = pattern.iter().map(|d| !d).collect();
                        make(&dst, &inverse, size, &mut rng);
                    }
                    _ => {}
                }
                let what = format!("{pattern:?} size {size} target {target}");
                let stats = sync_local(&src, &dst, &opts()).unwrap();
                assert_synced(&src, &dst, &what);
                if target == "equal" {
                    assert_eq!(stats.bytes_sent, 0, "{what}: {stats:?}");
                }
                let again = sync_local(&src, &dst, &opts()).unwrap();
                assert_eq!((again.bytes_sent, again.blocks_changed), (0, 0), "{what}: re-sync");
            }
        }
    }
}

#[test]
fn only_changed_sub_blocks_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(9);
    let pattern: Vec<bool> = (0..2048).map(|i| i % 7 != 0).collect(); // 8 MiB
    make(&src, &pattern, 2048 * B, &mut rng);
    sync_local(&src, &dst, &opts()).unwrap();
    assert_synced(&src, &dst, "first");
    // Change 20 scattered 4 KiB pieces and punch one data block.
    let f = fs::OpenOptions::new().write(true).open(&src).unwrap();
    for k in 0..20u64 {
        f.write_all_at(&rng.bytes(B), (k * 97 + 5) * B).unwrap();
    }
    ckpt_sparse::punch_hole(&f, &src, ckpt_sparse::Interval::new(B, 2 * B).unwrap()).unwrap();
    let stats = sync_local(&src, &dst, &opts()).unwrap();
    assert_synced(&src, &dst, "after change");
    assert_eq!(stats.blocks_changed, 21, "{stats:?}");
    assert_eq!(stats.bytes_sent, 20 * B, "{stats:?}");
}

/// A writer that fails after `left` bytes, as a broken connection does.
struct Cut<W> {
    inner: W,
    left: usize,
}

impl<W: Write> Write for Cut<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection cut"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn an_interrupted_sync_leaves_its_marker_fails_and_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(17);
    make(&src, &vec![true; 512], 512 * B, &mut rng);
    make(&dst, &vec![true; 512], 512 * B, &mut rng); // all different
    // Cut the sender's stream in the middle of its data.
    let (to_recv_r, to_recv_w) = std::io::pipe().unwrap();
    let (to_send_r, to_send_w) = std::io::pipe().unwrap();
    let dst2 = dst.clone();
    let receiver = std::thread::spawn(move || receive(&dst2, to_recv_r, to_send_w));
    let sent = send(&src, to_send_r, Cut { inner: to_recv_w, left: 600_000 }, &opts());
    let receiver_result = receiver.join().unwrap();
    assert!(sent.is_err(), "an interrupted sync was reported as a success");
    assert!(receiver_result.is_err(), "the receiver committed an interrupted sync");
    assert!(marker_path(&dst).exists(), "the dirty marker is gone after an interrupted sync");
    let redo = sync_local(&src, &dst, &opts()).unwrap();
    assert!(redo.redone, "the next run saw the marker: {redo:?}");
    assert_synced(&src, &dst, "after redo");
}

#[test]
fn a_refused_or_failing_receiver_is_never_a_success() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mut rng = Rng(1);
    make(&src, &[true, false, true], 3 * B, &mut rng);
    let nowhere = dir.path().join("no/such/dir/dst");
    match sync_local(&src, &nowhere, &opts()) {
        Err(e) => assert!(e.to_string().contains("no/such/dir"), "{e}"),
        Ok(s) => panic!("a sync into a missing directory succeeded: {s:?}"),
    }
    let bad = SyncOptions { block_size: 4096, sub_block_size: 8192, ..SyncOptions::default() };
    assert!(matches!(
        sync_local(&src, &dir.path().join("d"), &bad),
        Err(SyncError::BlockSizes { block: 4096, sub: 8192 })
    ));
    let missing = dir.path().join("missing");
    assert!(sync_local(&missing, &dir.path().join("d"), &opts()).is_err());
}

#[test]
fn shifted_holes_and_random_layouts_at_4_kib_and_4_mib_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(29);
    // 100-block files whose holes shift by one block each time, synced onto the previous.
    for shift in 0..10 {
        let pattern: Vec<bool> = (0..100).map(|i| (i + shift) % 10 >= 3).collect();
        make(&src, &pattern, 100 * B, &mut rng);
        sync_local(&src, &dst, &opts()).unwrap();
        assert_synced(&src, &dst, &format!("shift {shift}"));
    }
    // Random layouts of 1-256 blocks at 4 KiB, and a few at 4 MiB, each onto the last.
    for (block, rounds, max) in [(B, 12, 256), (4 << 20, 2, 6)] {
        for round in 0..rounds {
            let n = 1 + rng.next() % max;
            let pattern: Vec<bool> = (0..n).map(|_| rng.next().is_multiple_of(3)).collect();
            let size = n * block - rng.next() % block;
            let _ = fs::remove_file(&src);
            let f = File::create(&src).unwrap();
            f.set_len(size).unwrap();
            for (i, &data) in pattern.iter().enumerate() {
                let start = i as u64 * block;
                if data {
                    f.write_all_at(&rng.bytes((start + block).min(size) - start), start).unwrap();
                }
            }
            drop(f);
            sync_local(&src, &dst, &opts()).unwrap();
            assert_synced(&src, &dst, &format!("block {block} round {round}"));
        }
    }
}

#[test]
fn a_second_sync_of_a_locked_target_is_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(41);
    make(&src, &[true, true], 2 * B, &mut rng);
    make(&dst, &[true], 2 * B, &mut rng);
    let before = fs::read(&dst).unwrap();
    // Another sync in progress holds the target's lock.
    let holder = File::open(&dst).unwrap();
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
    match sync_local(&src, &dst, &opts()) {
        Err(e @ SyncError::Busy { .. }) => assert!(e.to_string().contains("another sync"), "{e}"),
        other => panic!("a locked target was synced: {other:?}"),
    }
    assert_eq!(fs::read(&dst).unwrap(), before, "the busy target was not touched");
    assert!(!marker_path(&dst).exists());
    drop(holder);
    sync_local(&src, &dst, &opts()).unwrap();
    assert_synced(&src, &dst, "after the lock was released");
}

/// Equal contents, compared 8 MiB at a time (the files here are hundreds of MiB).
fn assert_same_bytes(left: &Path, right: &Path, what: &str) {
    let (fl, fr) = (File::open(left).unwrap(), File::open(right).unwrap());
    let size = fl.metadata().unwrap().len();
    assert_eq!(size, fr.metadata().unwrap().len(), "{what}: sizes differ");
    let (mut lbuf, mut rbuf) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    let mut at = 0;
    while at < size {
        let len = usize::try_from((size - at).min(8 << 20)).unwrap();
        fl.read_exact_at(&mut lbuf[..len], at).unwrap();
        fr.read_exact_at(&mut rbuf[..len], at).unwrap();
        assert!(
            lbuf[..len] == rbuf[..len],
            "{what}: contents differ in [{at}, {})",
            at + len as u64
        );
        at += len as u64;
    }
}

#[test]
fn random_layouts_at_100_mib_blocks_with_progress() {
    const BLOCK: u64 = 100 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let mut rng = Rng(101);
    // One random MiB, varied per MiB written, keeps generating 100 MiB blocks cheap.
    let base = rng.bytes(1 << 20);
    let mut sizes = Vec::new();
    for round in 0..3 {
        let n = 1 + rng.next() % 4;
        let mut pattern: Vec<bool> = (0..n).map(|_| rng.next().is_multiple_of(2)).collect();
        pattern[usize::try_from(rng.next() % n).unwrap()] = true;
        let size = n * BLOCK - rng.next() % BLOCK;
        sizes.push(size);
        let _ = fs::remove_file(&src);
        let f = File::create(&src).unwrap();
        f.set_len(size).unwrap();
        let mut piece = base.clone();
        for (i, _) in pattern.iter().enumerate().filter(|&(_, &d)| d) {
            let mut at = i as u64 * BLOCK;
            while at < ((i as u64 + 1) * BLOCK).min(size) {
                piece[..8].copy_from_slice(&(at ^ round).to_le_bytes());
                let len = usize::try_from(((i as u64 + 1) * BLOCK).min(size) - at).unwrap();
                f.write_all_at(&piece[..len.min(piece.len())], at).unwrap();
                at += piece.len() as u64;
            }
        }
        drop(f);
        let mut phases = Vec::new();
        let stats = ckpt_sparse::sync::sync_local_with_progress(
            &src,
            &dst,
            &SyncOptions::default(),
            &mut |phase, done, total| phases.push((phase, done, total)),
        )
        .unwrap();
        let what = format!("round {round}: {n} blocks {pattern:?}, size {size}");
        assert_same_bytes(&src, &dst, &what);
        assert_eq!(layout(&src), layout(&dst), "{what}: layouts differ");
        assert!(!marker_path(&dst).exists(), "{what}");
        // Progress: hashing up to all the data, then sending up to what was sent.
        let data = layout(&src).total_len();
        let hashing: Vec<_> =
            phases.iter().filter(|p| p.0 == ckpt_sparse::sync::SyncPhase::Hashing).collect();
        assert_eq!(hashing.last().map(|p| (p.1, p.2)), Some((data, data)), "{what}");
        let sending: Vec<_> =
            phases.iter().filter(|p| p.0 == ckpt_sparse::sync::SyncPhase::Sending).collect();
        assert_eq!(
            sending.last().map(|p| (p.1, p.2)),
            Some((stats.bytes_sent, stats.bytes_sent)),
            "{what}"
        );
        assert!(phases.windows(2).all(|w| w[0].0 != w[1].0 || w[0].1 <= w[1].1), "{what}");
    }
    // A few scattered 4 KiB changes to the last file: only those are sent.
    let f = fs::OpenOptions::new().write(true).open(&src).unwrap();
    let data: Vec<_> = layout(&src).iter().collect();
    let mut changed = std::collections::BTreeSet::new();
    for k in 0..5u64 {
        let extent = data[usize::try_from(k).unwrap() % data.len()];
        let at = (extent.start + (k * 7919 * B) % extent.len()) / B * B;
        if at + B <= extent.end {
            f.write_all_at(&rng.bytes(B), at).unwrap();
            changed.insert(at);
        }
    }
    drop(f);
    assert!(!changed.is_empty());
    let stats = sync_local(&src, &dst, &SyncOptions::default()).unwrap();
    assert_same_bytes(&src, &dst, "after scattered changes");
    assert_eq!(stats.bytes_sent, changed.len() as u64 * B, "{stats:?}");
}
