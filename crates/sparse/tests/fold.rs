//! fold and prune on real ext4 files: the results, idempotence, and re-running after an
//! interrupted run.

use ckpt_sparse::fold::{fold, marker_path, prune};
use ckpt_sparse::{Interval, IntervalSet, data_layout};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

const B: u64 = 4096;

fn layout(path: &Path) -> IntervalSet {
    data_layout(&File::open(path).unwrap(), path).unwrap().data
}

fn fill(seed: u8, len: u64) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(u8::try_from(i % 251).unwrap()) | 1).collect()
}

/// Parent: 16 blocks, data in 0-7. Child: 24 blocks, data in 4-5 and 20, zeros in 6.
fn chain(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (parent, child) = (dir.join("base.img"), dir.join("delta.img"));
    let p = File::create(&parent).unwrap();
    p.set_len(16 * B).unwrap();
    p.write_all_at(&fill(1, 8 * B), 0).unwrap();
    let c = File::create(&child).unwrap();
    c.set_len(24 * B).unwrap();
    c.write_all_at(&fill(2, 2 * B), 4 * B).unwrap();
    c.write_all_at(&vec![0u8; usize::try_from(B).unwrap()], 6 * B).unwrap();
    c.write_all_at(&fill(3, B), 20 * B).unwrap();
    (parent, child)
}

fn expected_fold(parent_before: &[u8], child: &[u8], child_data: &IntervalSet) -> Vec<u8> {
    let mut out = parent_before.to_vec();
    out.resize(child.len().max(out.len()), 0);
    for i in child_data.iter() {
        let (s, e) = (usize::try_from(i.start).unwrap(), usize::try_from(i.end).unwrap());
        out[s..e].copy_from_slice(&child[s..e]);
    }
    out
}

#[test]
fn fold_overlays_the_child_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child) = chain(dir.path());
    let want =
        expected_fold(&fs::read(&parent).unwrap(), &fs::read(&child).unwrap(), &layout(&child));
    let first = fold(&child, &parent).unwrap();
    assert_eq!(fs::read(&parent).unwrap(), want);
    assert_eq!((first.bytes_written, first.bytes_punched, first.parent_size), (3 * B, B, 24 * B));
    let data = IntervalSet::from_intervals([
        Interval::new(0, 6 * B).unwrap(),
        Interval::new(7 * B, 8 * B).unwrap(),
        Interval::new(20 * B, 21 * B).unwrap(),
    ]);
    assert_eq!(layout(&parent), data, "zero block 6 became a hole, 20 was added");
    fold(&child, &parent).unwrap();
    assert_eq!(fs::read(&parent).unwrap(), want, "a second fold changes nothing");
    assert!(!marker_path(&parent, "fold").exists());
}

#[test]
fn an_interrupted_fold_is_finished_by_running_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child) = chain(dir.path());
    let want =
        expected_fold(&fs::read(&parent).unwrap(), &fs::read(&child).unwrap(), &layout(&child));
    // A crash after part of the work: the marker exists and block 4 is already written.
    File::create(marker_path(&parent, "fold")).unwrap();
    let c = fs::read(&child).unwrap();
    File::options()
        .write(true)
        .open(&parent)
        .unwrap()
        .write_all_at(&c[usize::try_from(4 * B).unwrap()..usize::try_from(5 * B).unwrap()], 4 * B)
        .unwrap();
    fold(&child, &parent).unwrap();
    assert_eq!(fs::read(&parent).unwrap(), want);
    assert!(!marker_path(&parent, "fold").exists());
}

#[test]
fn prune_punches_the_parent_where_the_child_has_data() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child) = chain(dir.path());
    let before = fs::read(&parent).unwrap();
    let stats = prune(&parent, &child).unwrap();
    assert_eq!(stats.bytes_punched, 3 * B, "blocks 4-6 of the parent's data");
    let after = fs::read(&parent).unwrap();
    assert_eq!(after.len(), before.len(), "size kept");
    assert_eq!(
        &after[..usize::try_from(4 * B).unwrap()],
        &before[..usize::try_from(4 * B).unwrap()]
    );
    assert!(
        after[usize::try_from(4 * B).unwrap()..usize::try_from(7 * B).unwrap()]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(
        layout(&parent),
        IntervalSet::from_intervals([
            Interval::new(0, 4 * B).unwrap(),
            Interval::new(7 * B, 8 * B).unwrap()
        ])
    );
    assert_eq!(prune(&parent, &child).unwrap().bytes_punched, 0, "idempotent");
    assert!(!marker_path(&parent, "prune").exists());
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, _) = chain(dir.path());
    let missing = dir.path().join("missing.img");
    let e = fold(&missing, &parent).unwrap_err();
    assert!(e.to_string().contains("missing.img"), "{e}");
    let e = prune(&missing, &parent).unwrap_err();
    assert!(e.to_string().contains("missing.img"), "{e}");
    assert!(!marker_path(&missing, "prune").exists(), "no marker for a parent never opened");
}
