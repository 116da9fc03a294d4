//! `sync` against PMDK: pool sets that the real `pmempool create obj` made, with a root
//! object written through the real libpmemobj across both parts of each replica, damaged in
//! the ways `pmempool sync` handles (a deleted part, a zeroed header, a bad checksum, a lost
//! replica, an alien part, a wrong size, `SINGLEHDR`) and in the ways it does not (no replica
//! whole; every replica broken in one range; a part that is locked or unreadable; a damaged
//! journal). After a sync that succeeds, our health check and `pmempool check` call the set
//! healthy, libpmemobj reads the root object back intact, the report names exactly the
//! damaged parts, and every rebuilt byte equals the replica the report says it came from.
//! After a sync that fails, nothing in the directory changed.
//!
//! Also: replicas of different part layouts, a broken uuid link, a part copied over another
//! replica's, the journals an interrupted run leaves (prepared, committed, committed with
//! the part removed since), a dry run that finds a committed journal, and the owner and
//! mode of a replaced part.

mod common;

use ckpt_poolset::PoolError;
use ckpt_poolset::grammar::PoolSet;
use ckpt_poolset::header::{HEADER_SIZE, offset};
use ckpt_poolset::health;
use ckpt_poolset::journal::{Action, Journal, State, journal_path};
use ckpt_poolset::sync::{SyncOptions, SyncReport, sync};
use common::{
    create_obj_pool, flip_byte, libpmemobj_or_skip, pmempool_check, pmempool_or_skip, read_at,
    set_parts, verify_root, write_at, write_root, write_set, write_set_named,
};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Every part is 16 MiB: part 0 holds pool bytes 4 KiB..16 MiB, part 1 16 MiB..32 MiB - 4 KiB
/// (with `SINGLEHDR`, 16 MiB..32 MiB).
const PART_SIZE: u64 = 16 << 20;
/// The root object starts about 3.5 MiB into the pool, so 20 MB of it cross into part 1.
const ROOT_LEN: usize = 20_000_000;
const LAYOUT: &str = "sync_interop";

/// A pool set made by `pmempool create obj` with a root object written by libpmemobj.
struct Pool {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    set: PathBuf,
    /// Part files by replica.
    parts: Vec<Vec<PathBuf>>,
    seed: u64,
}

impl Pool {
    fn part(&self, replica: usize, part: usize) -> &Path {
        &self.parts[replica][part]
    }

    fn parsed(&self) -> PoolSet {
        PoolSet::from_file(&self.set).expect("the poolset file parses")
    }
}

/// `replicas` × 2 parts of 16 MiB (`rRpP` in a fresh directory), `OPTION`s as given; `None`
/// (after a loud SKIPPED line) without PMDK.
fn make_pool(test: &str, replicas: usize, options: &[&str], seed: u64) -> Option<Pool> {
    make_pool_with(test, seed, |dir| write_layout(dir, "pool.set", replicas, options))
}

/// A pool set whose poolset file `write` writes into a fresh directory (replica 0 must have
/// parts of 16 MiB, so that the root object spans two of them).
fn make_pool_with(test: &str, seed: u64, write: impl FnOnce(&Path) -> PathBuf) -> Option<Pool> {
    pmempool_or_skip(test)?;
    if !libpmemobj_or_skip(test) {
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = fs::canonicalize(tmp.path()).expect("canonicalize");
    let set = write(&dir);
    create_obj_pool(&set, LAYOUT);
    let root = write_root(&set, seed, ROOT_LEN);
    assert!(
        root.offset < PART_SIZE && root.offset + ROOT_LEN as u64 > PART_SIZE,
        "the root object {root:?} must span the boundary of parts 0 and 1"
    );
    verify_root(&set, seed, ROOT_LEN).expect("the fresh pool reads back");
    let parts = set_parts(&set);
    Some(Pool { _tmp: tmp, dir, set, parts, seed })
}

/// Writes `dir/name` for `replicas` × 2 parts named `rRpP` (a prefix may be in `name`'s
/// stem so that two sets share a directory).
fn write_layout(dir: &Path, name: &str, replicas: usize, options: &[&str]) -> PathBuf {
    let prefix = name.strip_suffix(".set").filter(|p| *p != "pool").unwrap_or("");
    let names: Vec<[String; 2]> =
        (0..replicas).map(|r| [format!("{prefix}r{r}p0"), format!("{prefix}r{r}p1")]).collect();
    let layout: Vec<Vec<(&str, &str)>> =
        names.iter().map(|[a, b]| vec![("16M", a.as_str()), ("16M", b.as_str())]).collect();
    let refs: Vec<&[(&str, &str)]> = layout.iter().map(Vec::as_slice).collect();
    write_set_named(dir, name, &refs, options)
}

/// What a directory entry looks like, to prove that nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryState {
    kind: &'static str,
    len: u64,
    mtime: SystemTime,
    /// xxh3 of the contents of a regular file.
    hash: Option<u64>,
}

/// Every entry of `dir` but our lock file (`SET.ckpt-lock`, which a run may create and
/// leaves empty).
fn snapshot(dir: &Path) -> BTreeMap<String, EntryState> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".ckpt-lock") {
            continue;
        }
        let meta = fs::symlink_metadata(entry.path()).expect("lstat");
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            "file"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_socket() {
            "socket"
        } else {
            "other"
        };
        let hash = ft
            .is_file()
            .then(|| xxhash_rust::xxh3::xxh3_64(&fs::read(entry.path()).expect("read a part")));
        out.insert(
            name,
            EntryState { kind, len: meta.len(), mtime: meta.modified().expect("mtime"), hash },
        );
    }
    out
}

/// Temporary parts, journals and their temporary files left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".ckpt-build")
                || n.ends_with(".ckpt-journal")
                || n.ends_with(".ckpt-journal.tmp")
        })
        .collect()
}

fn run_sync(set: &Path, dry_run: bool) -> Result<SyncReport, PoolError> {
    let mut last = 0;
    sync(set, &SyncOptions { dry_run }, &mut |done, total| {
        assert!(done >= last && done <= total, "progress {done}/{total} after {last}");
        last = done;
    })
}

/// Asserts that exactly the parts in `expected` (replica, part, problem kind) are unhealthy,
/// each with that kind; returns their problems' text by (replica, part).
fn assert_damage(
    pool: &Pool,
    expected: &[(usize, usize, &str)],
) -> BTreeMap<(usize, usize), String> {
    let health = health::check(&pool.set).expect("health check");
    let mut found = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for (r, replica) in health.replicas.iter().enumerate() {
        for (p, part) in replica.parts.iter().enumerate() {
            if let Some(problem) = &part.problem {
                found.insert((r, p), problem.to_string());
                kinds.insert((r, p), problem.kind());
            }
        }
    }
    let want: BTreeMap<(usize, usize), &str> =
        expected.iter().map(|&(r, p, kind)| ((r, p), kind)).collect();
    assert_eq!(kinds, want, "the damage as our health check sees it: {found:#?}");
    found
}

/// Asserts that the report names exactly the damaged parts, each with the reason the health
/// check gave, and that each part's sources cover its data without gaps, from other replicas.
fn assert_report_names(
    pool: &Pool,
    report: &SyncReport,
    damage: &BTreeMap<(usize, usize), String>,
) {
    let named: BTreeMap<(usize, usize), String> =
        report.rebuilt.iter().map(|p| ((p.replica, p.part), p.reason.clone())).collect();
    assert_eq!(&named, damage, "the rebuilt parts and their reasons: {report:#?}");
    let set = pool.parsed();
    for part in &report.rebuilt {
        assert_eq!(part.path, pool.part(part.replica, part.part), "{part:?}");
        let extent = set.replica_extents(part.replica).expect("extents")[part.part];
        let end = (extent.pool_offset + extent.len).min(set.pool_size());
        let mut at = extent.pool_offset;
        for s in &part.sources {
            assert_eq!(s.start, at, "sources of {part:?} leave a gap or overlap");
            assert!(s.end > s.start, "{part:?}");
            assert_ne!(s.replica, part.replica, "{part:?} copied from its own replica");
            at = s.end;
        }
        assert_eq!(at, end, "sources of {part:?} do not reach the end of its data");
    }
}

/// Pool bytes `start..end` of replica `replica`, read through its part files.
fn read_pool(set: &PoolSet, replica: usize, start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for e in set.replica_extents(replica).expect("extents") {
        let from = start.max(e.pool_offset);
        let to = end.min(e.pool_offset + e.len);
        if from < to {
            let path = &set.replicas[replica].parts[e.part].path;
            let len = usize::try_from(to - from).expect("fits");
            out.extend(read_at(path, e.file_offset + (from - e.pool_offset), len));
        }
    }
    assert_eq!(out.len() as u64, end - start, "replica {replica} holds {start:#x}..{end:#x}");
    out
}

/// Asserts that every rebuilt range equals the same pool range of the replica the report
/// says it was copied from. Must run before anything opens the pool with libpmemobj, which
/// writes run-time state into the master's mapping only.
fn assert_data_copied(pool: &Pool, report: &SyncReport) {
    let set = pool.parsed();
    for part in &report.rebuilt {
        for s in &part.sources {
            let rebuilt = read_pool(&set, part.replica, s.start, s.end);
            let source = read_pool(&set, s.replica, s.start, s.end);
            if let Some(at) = rebuilt.iter().zip(&source).position(|(a, b)| a != b) {
                panic!(
                    "replica {} part {} differs from replica {} at pool offset {:#x}",
                    part.replica,
                    part.part,
                    s.replica,
                    s.start + at as u64
                );
            }
        }
    }
}

/// After a successful sync: no temporary files or journal, our health check and
/// `pmempool check` agree the set is healthy, and libpmemobj reads the root object back.
fn assert_healthy_and_intact(pool: &Pool) {
    assert_eq!(leftovers(&pool.dir), Vec::<String>::new(), "files left behind");
    let health = health::check(&pool.set).expect("health check");
    assert!(health.is_healthy(), "not healthy after sync: {health:#?}");
    let check = pmempool_check(&pool.set);
    assert!(check.consistent, "pmempool check after sync:\n{}", check.output);
    if let Err(e) = verify_root(&pool.set, pool.seed, ROOT_LEN) {
        panic!("root object after sync: {e}");
    }
}

/// Damage, sync, and every check of a successful heal; returns the report.
fn heal(pool: &Pool, expected: &[(usize, usize, &str)]) -> SyncReport {
    heal_after(pool, None, expected)
}

/// [`heal`] where the sync finds a journal in state `recovered` first.
fn heal_after(
    pool: &Pool,
    recovered: Option<State>,
    expected: &[(usize, usize, &str)],
) -> SyncReport {
    let damage = assert_damage(pool, expected);
    let report = run_sync(&pool.set, false).unwrap_or_else(|e| panic!("sync failed: {e}"));
    assert!(!report.dry_run);
    assert_eq!(report.recovered, recovered);
    assert_report_names(pool, &report, &damage);
    let total: u64 = report.rebuilt.iter().flat_map(|p| &p.sources).map(|s| s.end - s.start).sum();
    assert_eq!(report.bytes_copied, total);
    assert_data_copied(pool, &report);
    assert_healthy_and_intact(pool);
    report
}

fn source_replicas(report: &SyncReport) -> Vec<usize> {
    let mut r: Vec<usize> =
        report.rebuilt.iter().flat_map(|p| &p.sources).map(|s| s.replica).collect();
    r.sort_unstable();
    r.dedup();
    r
}

fn zero_header(path: &Path) {
    write_at(path, 0, &[0u8; HEADER_SIZE]);
}

#[test]
fn a_deleted_part_is_rebuilt_from_the_other_replica() {
    let Some(pool) = make_pool("a_deleted_part_is_rebuilt_from_the_other_replica", 2, &[], 1)
    else {
        return;
    };
    fs::remove_file(pool.part(1, 1)).unwrap();
    let report = heal(&pool, &[(1, 1, "missing")]);
    assert_eq!(source_replicas(&report), [0]);
}

#[test]
fn a_zeroed_master_header_is_rebuilt() {
    let Some(pool) = make_pool("a_zeroed_master_header_is_rebuilt", 2, &[], 2) else { return };
    zero_header(pool.part(0, 0));
    let report = heal(&pool, &[(0, 0, "zeroed_header")]);
    assert_eq!(source_replicas(&report), [1]);
}

#[test]
fn a_header_with_a_bad_checksum_is_rebuilt() {
    let Some(pool) = make_pool("a_header_with_a_bad_checksum_is_rebuilt", 2, &[], 3) else {
        return;
    };
    // A byte of the creation time: covered by the checksum, checked by nothing else.
    flip_byte(pool.part(1, 0), offset::CRTIME as u64 + 1, 0x40);
    let report = heal(&pool, &[(1, 0, "bad_checksum")]);
    assert!(report.rebuilt[0].reason.contains("checksum"), "{report:#?}");
}

#[test]
fn a_lost_replica_of_three_is_rebuilt() {
    let Some(pool) = make_pool("a_lost_replica_of_three_is_rebuilt", 3, &[], 4) else { return };
    fs::remove_file(pool.part(2, 0)).unwrap();
    fs::remove_file(pool.part(2, 1)).unwrap();
    heal(&pool, &[(2, 0, "missing"), (2, 1, "missing")]);
}

#[test]
fn with_no_replica_whole_the_parts_are_assembled_from_both() {
    let Some(pool) =
        make_pool("with_no_replica_whole_the_parts_are_assembled_from_both", 2, &[], 5)
    else {
        return;
    };
    fs::remove_file(pool.part(0, 1)).unwrap();
    zero_header(pool.part(1, 0));
    let report = heal(&pool, &[(0, 1, "missing"), (1, 0, "zeroed_header")]);
    assert_eq!(source_replicas(&report), [0, 1], "{report:#?}");
}

#[test]
fn a_range_no_replica_holds_fails_and_changes_nothing() {
    let Some(pool) = make_pool("a_range_no_replica_holds_fails_and_changes_nothing", 2, &[], 6)
    else {
        return;
    };
    fs::remove_file(pool.part(0, 1)).unwrap();
    fs::remove_file(pool.part(1, 1)).unwrap();
    assert_damage(&pool, &[(0, 1, "missing"), (1, 1, "missing")]);
    let before = snapshot(&pool.dir);
    let pool_size = pool.parsed().pool_size();
    assert_eq!(pool_size, 2 * PART_SIZE - 4096);
    for dry_run in [true, false] {
        match run_sync(&pool.set, dry_run) {
            Err(PoolError::NoHealthyCopy { replica: 0, part: 1, start, end }) => {
                assert_eq!((start, end), (PART_SIZE, pool_size), "dry run {dry_run}");
            }
            other => panic!("dry run {dry_run}: expected NoHealthyCopy, got {other:?}"),
        }
        assert_eq!(snapshot(&pool.dir), before, "dry run {dry_run}");
        assert_eq!(leftovers(&pool.dir), Vec::<String>::new());
    }
    let message = run_sync(&pool.set, false).unwrap_err().to_string();
    assert!(message.contains("0x1000000..0x1fff000"), "{message}");
}

#[test]
fn a_locked_part_is_left_alone() {
    let Some(pool) = make_pool("a_locked_part_is_left_alone", 2, &[], 7) else { return };
    zero_header(pool.part(1, 1));
    // First the damaged part itself (pmempool sync would delete it), then a healthy one.
    for (r, p) in [(1, 1), (0, 0)] {
        let before = snapshot(&pool.dir);
        let held = fs::File::open(pool.part(r, p)).unwrap();
        // What libpmemobj does to every part while a program has the pool open.
        rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        assert!(
            verify_root(&pool.set, pool.seed, ROOT_LEN).is_err(),
            "libpmemobj opened the pool although part ({r}, {p}) is locked"
        );
        for dry_run in [true, false] {
            match run_sync(&pool.set, dry_run) {
                Err(PoolError::Locked { path, .. }) => assert_eq!(path, pool.part(r, p)),
                other => panic!("part ({r}, {p}): expected Locked, got {other:?}"),
            }
        }
        let message = run_sync(&pool.set, false).unwrap_err().to_string();
        assert!(message.contains(&*pool.part(r, p).to_string_lossy()), "{message}");
        assert_eq!(snapshot(&pool.dir), before, "part ({r}, {p}) locked");
        assert_eq!(leftovers(&pool.dir), Vec::<String>::new());
        drop(held);
    }
    // Once the lock is gone the same set heals.
    heal(&pool, &[(1, 1, "zeroed_header")]);
}

/// Root reads anything whatever the permissions, so the unreadable parts here are files
/// that `open(2)` refuses to everyone: a Unix socket (ENXIO), then a symlink to itself
/// (ELOOP).
#[test]
fn an_unreadable_part_is_left_alone() {
    let Some(pool) = make_pool("an_unreadable_part_is_left_alone", 2, &[], 8) else { return };
    let target = pool.part(1, 1).to_path_buf();
    fs::remove_file(&target).unwrap();
    // A missing part elsewhere, so that there is work the error must stop.
    fs::remove_file(pool.part(0, 0)).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&target).unwrap();
    assert_unreadable_is_left_alone(&pool, "socket");
    drop(listener);
    fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink(&target, &target).unwrap();
    assert_unreadable_is_left_alone(&pool, "symlink loop");
}

fn assert_unreadable_is_left_alone(pool: &Pool, what: &str) {
    let target = pool.part(1, 1);
    assert!(fs::File::open(target).is_err(), "{what}: open must fail even for root");
    assert_damage(pool, &[(0, 0, "missing"), (1, 1, "unreadable")]);
    let before = snapshot(&pool.dir);
    for dry_run in [true, false] {
        match run_sync(&pool.set, dry_run) {
            Err(PoolError::Unreadable { path, .. }) => assert_eq!(path, target, "{what}"),
            other => panic!("{what}: expected Unreadable, got {other:?}"),
        }
    }
    assert_eq!(snapshot(&pool.dir), before, "{what}");
    assert_eq!(leftovers(&pool.dir), Vec::<String>::new());
    assert!(!pool.part(0, 0).exists(), "{what}: the missing part was rebuilt anyway");
}

#[test]
fn a_dry_run_changes_nothing_and_plans_what_the_sync_does() {
    let Some(pool) = make_pool("a_dry_run_changes_nothing_and_plans_what_the_sync_does", 2, &[], 9)
    else {
        return;
    };
    fs::remove_file(pool.part(1, 1)).unwrap();
    zero_header(pool.part(0, 0));
    let damage = assert_damage(&pool, &[(0, 0, "zeroed_header"), (1, 1, "missing")]);
    let before = snapshot(&pool.dir);
    let plan = run_sync(&pool.set, true).expect("dry run");
    assert!(plan.dry_run);
    assert_eq!(plan.bytes_copied, 0);
    assert_eq!(plan.recovered, None);
    assert_report_names(&pool, &plan, &damage);
    assert_eq!(snapshot(&pool.dir), before);
    assert_eq!(leftovers(&pool.dir), Vec::<String>::new());
    let done = heal(&pool, &[(0, 0, "zeroed_header"), (1, 1, "missing")]);
    let key = |r: &SyncReport| {
        r.rebuilt
            .iter()
            .map(|p| (p.replica, p.part, p.path.clone(), p.reason.clone(), p.sources.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&plan), key(&done));
    assert_eq!(plan.relinked, done.relinked);
}

#[test]
fn a_healthy_set_is_left_untouched() {
    let Some(pool) = make_pool("a_healthy_set_is_left_untouched", 2, &[], 10) else { return };
    assert_damage(&pool, &[]);
    let before = snapshot(&pool.dir);
    for dry_run in [true, false] {
        let report = run_sync(&pool.set, dry_run).expect("sync");
        assert!(report.rebuilt.is_empty() && report.relinked.is_empty(), "{report:#?}");
        assert_eq!((report.bytes_copied, report.recovered), (0, None));
        assert_eq!(snapshot(&pool.dir), before, "dry run {dry_run}");
    }
    assert_healthy_and_intact(&pool);
}

/// A part of another pool set in place of one of ours carries a valid header of that other
/// set: it may be a part of another live pool, so sync refuses, naming it, and changes
/// nothing, as `pmempool sync` refuses ("part files from various poolsets"). Once the
/// stray file is moved away, sync rebuilds the part.
#[test]
fn an_alien_part_from_another_pmempool_set_is_never_overwritten() {
    let Some(pool) =
        make_pool("an_alien_part_from_another_pmempool_set_is_never_overwritten", 2, &[], 11)
    else {
        return;
    };
    let other = write_layout(&pool.dir, "other.set", 2, &[]);
    create_obj_pool(&other, LAYOUT);
    let alien = &set_parts(&other)[1][0];
    fs::copy(alien, pool.part(1, 0)).unwrap();
    assert_refused(&pool, &[("foreign_part", (1, Some(0)))]);
    fs::remove_file(pool.part(1, 0)).unwrap();
    let report = heal(&pool, &[(1, 0, "missing")]);
    assert_eq!(source_replicas(&report), [0]);
}

/// Runs sync (a dry run, then a real one) on a set whose file disagrees with the pool and
/// asserts that both refuse with exactly the disagreements `expected` (kind, place), change
/// nothing and leave no journal or temporary file; and that `pmempool sync` refuses a copy
/// of the same set too.
fn assert_refused(pool: &Pool, expected: &[(&str, (usize, Option<usize>))]) {
    let before = snapshot(&pool.dir);
    for dry_run in [true, false] {
        let err = run_sync(&pool.set, dry_run).unwrap_err();
        let PoolError::SetDisagrees { disagreements, .. } = &err else {
            panic!("expected a refusal, got {err:?}")
        };
        let found: Vec<(&str, (usize, Option<usize>))> =
            disagreements.iter().map(|d| (d.kind(), d.place())).collect();
        assert_eq!(found, expected, "{err}");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert_eq!(snapshot(&pool.dir), before, "a refused sync changes nothing");
        assert!(leftovers(&pool.dir).is_empty(), "{:?}", leftovers(&pool.dir));
    }
    let health = health::check(&pool.set).unwrap();
    assert!(!health.is_healthy() && health.disagreements.len() == expected.len());
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = common::copy_set(&pool.set, copy_dir.path());
    let out = common::run_pmempool(&["sync".as_ref(), copy.as_ref()]);
    assert!(!out.status.success(), "pmempool sync accepted the same set");
}

#[test]
fn singlehdr_a_deleted_part_without_header_is_rebuilt() {
    let Some(pool) =
        make_pool("singlehdr_a_deleted_part_without_header_is_rebuilt", 2, &["SINGLEHDR"], 12)
    else {
        return;
    };
    assert_eq!(pool.parsed().pool_size(), 2 * PART_SIZE);
    fs::remove_file(pool.part(0, 1)).unwrap();
    let report = heal(&pool, &[(0, 1, "missing")]);
    assert_eq!(source_replicas(&report), [1]);
    // The part has no header: its first bytes are pool data.
    let set = pool.parsed();
    assert_eq!(read_at(pool.part(0, 1), 0, 4096), read_pool(&set, 1, PART_SIZE, PART_SIZE + 4096));
}

#[test]
fn a_truncated_part_is_rebuilt() {
    let Some(pool) = make_pool("a_truncated_part_is_rebuilt", 2, &[], 13) else { return };
    fs::OpenOptions::new()
        .write(true)
        .open(pool.part(1, 1))
        .unwrap()
        .set_len(PART_SIZE / 2)
        .unwrap();
    heal(&pool, &[(1, 1, "wrong_size")]);
    assert_eq!(fs::metadata(pool.part(1, 1)).unwrap().len(), PART_SIZE);
}

#[test]
fn a_damaged_journal_stops_the_sync_and_changes_nothing() {
    let Some(pool) = make_pool("a_damaged_journal_stops_the_sync_and_changes_nothing", 2, &[], 14)
    else {
        return;
    };
    fs::remove_file(pool.part(1, 1)).unwrap();
    let temp = pool.dir.join(".r1p1.ckpt-build");
    let journal = Journal {
        state: State::Committed,
        actions: vec![
            Action::Temp(temp.clone()),
            Action::Rename { from: temp, to: pool.part(1, 1).to_path_buf() },
        ],
    }
    .encode();
    let mut flipped = journal.clone();
    flipped[journal.len() / 2] ^= 0x01;
    let cases: [(&str, Vec<u8>); 3] = [
        ("a flipped byte", flipped),
        ("torn in half", journal[..journal.len() / 2].to_vec()),
        ("not a journal", b"hello, world".to_vec()),
    ];
    let path = journal_path(&pool.set);
    for (what, bytes) in cases {
        fs::write(&path, &bytes).unwrap();
        let before = snapshot(&pool.dir);
        for dry_run in [true, false] {
            match run_sync(&pool.set, dry_run) {
                Err(PoolError::Journal { path: p, detail }) => {
                    assert_eq!(p, path, "{what}: {detail}");
                }
                other => panic!("{what}: expected a Journal error, got {other:?}"),
            }
        }
        assert_eq!(snapshot(&pool.dir), before, "{what}: the journal is kept, nothing changed");
        assert_eq!(fs::read(&path).unwrap(), bytes, "{what}");
    }
    fs::remove_file(&path).unwrap();
    heal(&pool, &[(1, 1, "missing")]);
}

#[test]
fn grammar_errors_name_line_and_column_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fs::canonicalize(tmp.path()).unwrap();
    let part = dir.join("part").display().to_string();
    // (text, line, column, a word of the message); the column is where the token begins,
    // where the missing path was expected (the end of the line), or the first character
    // that differs from `PMEMPOOLSET`.
    let cases = [
        (format!("PMEMPOOLSET\n16M {part}0\n16Q {part}1\n"), 3, 1, "16Q"),
        (format!("PMEMPOOLSET\n16M {part}0\nREPLICA\n16M\n"), 4, 4, "path is missing"),
        (format!("PMEMPOOLSET\nOPTION FOO\n16M {part}0\n"), 2, 8, "FOO"),
        (format!("PMEMPOOLSET\n16M {part}0 extra\n"), 2, 5 + part.len() + 1 + 1, "extra"),
        ("PMEMPOOLSET\n16M relative/part\n".to_owned(), 2, 5, "absolute"),
        ("PMEMPOOLSE\n".to_owned(), 1, 11, "PMEMPOOLSET"),
    ];
    let set = dir.join("bad.set");
    for (text, line, column, needle) in cases {
        fs::write(&set, &text).unwrap();
        for result in [run_sync(&set, false).map(|_| ()), run_sync(&set, true).map(|_| ())] {
            let err = result.expect_err(&text);
            let PoolError::Grammar(g) = &err else { panic!("{text:?}: {err:?}") };
            assert_eq!(g.position(), Some((line, column)), "{text:?}: {err}");
            let message = err.to_string();
            assert!(message.contains(&format!("line {line}, column {column}")), "{message}");
            assert!(message.contains(needle), "{message}");
        }
        assert!(matches!(health::check(&set), Err(PoolError::Grammar(_))), "{text:?}");
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["bad.set"], "{text:?}: a refused set creates nothing");
    }
}

/// Replicas laid out differently (2 × 16 MiB and 1 × 32 MiB) are synced by pool offset, in
/// both directions.
#[test]
fn replicas_of_different_layouts_are_synced_by_pool_offset() {
    let Some(pool) =
        make_pool_with("replicas_of_different_layouts_are_synced_by_pool_offset", 16, |dir| {
            write_set(dir, &[&[("16M", "r0p0"), ("16M", "r0p1")], &[("32M", "r1p0")]], &[])
        })
    else {
        return;
    };
    assert_eq!(pool.parsed().pool_size(), 2 * PART_SIZE - 4096);
    fs::remove_file(pool.part(1, 0)).unwrap();
    let report = heal(&pool, &[(1, 0, "missing")]);
    // Two parts of replica 0, one range.
    let sources: Vec<_> =
        report.rebuilt[0].sources.iter().map(|s| (s.start, s.end, s.replica)).collect();
    assert_eq!(sources, [(4096, 2 * PART_SIZE - 4096, 0)]);
    fs::remove_file(pool.part(0, 1)).unwrap();
    let report = heal(&pool, &[(0, 1, "missing")]);
    assert_eq!(source_replicas(&report), [1]);
}

/// A part copied over the same part of another replica (an operator's slip) carries a valid
/// header of the set, but its uuid is its original's and its links fit the other replica:
/// the copy is the broken part, and the three others, whose rings agree, are healthy. PMDK
/// 1.12 only says "ambiguous `pool_hdr.uuid`" and refuses to sync.
#[test]
fn a_part_copied_over_another_replicas_part_is_the_one_rebuilt() {
    let Some(pool) =
        make_pool("a_part_copied_over_another_replicas_part_is_the_one_rebuilt", 2, &[], 17)
    else {
        return;
    };
    fs::copy(pool.part(0, 0), pool.part(1, 0)).unwrap();
    let health = health::check(&pool.set).expect("health check");
    let broken: Vec<(usize, usize, String)> = health
        .replicas
        .iter()
        .enumerate()
        .flat_map(|(r, rep)| {
            rep.parts.iter().enumerate().filter_map(move |(p, part)| {
                part.problem.as_ref().map(|problem| (r, p, problem.to_string()))
            })
        })
        .collect();
    assert_eq!(
        broken.iter().map(|(r, p, _)| (*r, *p)).collect::<Vec<_>>(),
        [(1, 0)],
        "only the copy is broken, the master is whole: {broken:#?}"
    );
    let report = run_sync(&pool.set, false).unwrap_or_else(|e| panic!("sync failed: {e}"));
    let damage = BTreeMap::from([((1, 0), broken[0].2.clone())]);
    assert_report_names(&pool, &report, &damage);
    assert_eq!(source_replicas(&report), [0]);
    assert_data_copied(&pool, &report);
    assert_healthy_and_intact(&pool);
}

/// The state a sync killed while building leaves: a prepared journal and a half-built
/// temporary part. The next sync deletes the temporary part and rebuilds from scratch.
#[test]
fn a_prepared_journal_is_rolled_back() {
    let Some(pool) = make_pool("a_prepared_journal_is_rolled_back", 2, &[], 18) else { return };
    let part = pool.part(1, 1).to_path_buf();
    let temp = pool.dir.join(".r1p1.ckpt-build");
    // Half built: the first 8 MiB of the master's part, header included.
    fs::write(&temp, read_at(pool.part(0, 1), 0, 8 << 20)).unwrap();
    fs::remove_file(&part).unwrap();
    Journal { state: State::Prepared, actions: vec![Action::Temp(temp.clone())] }
        .store(&journal_path(&pool.set))
        .unwrap();
    heal_after(&pool, Some(State::Prepared), &[(1, 1, "missing")]);
    assert!(!temp.exists());
}

/// The state a sync killed after its commit leaves: a committed journal and a complete
/// temporary part not yet renamed. The next sync renames it and has nothing to rebuild.
#[test]
fn a_committed_journal_is_rolled_forward() {
    let Some(pool) = make_pool("a_committed_journal_is_rolled_forward", 2, &[], 19) else {
        return;
    };
    let part = pool.part(1, 1).to_path_buf();
    let temp = pool.dir.join(".r1p1.ckpt-build");
    fs::rename(&part, &temp).unwrap();
    let complete = fs::read(&temp).unwrap();
    Journal {
        state: State::Committed,
        actions: vec![Action::Temp(temp.clone()), Action::Rename { from: temp, to: part.clone() }],
    }
    .store(&journal_path(&pool.set))
    .unwrap();
    assert_damage(&pool, &[(1, 1, "missing")]);
    let report = run_sync(&pool.set, false).unwrap_or_else(|e| panic!("sync failed: {e}"));
    assert_eq!(report.recovered, Some(State::Committed));
    assert!(report.rebuilt.is_empty() && report.relinked.is_empty(), "{report:#?}");
    assert_eq!(report.bytes_copied, 0);
    assert_eq!(fs::read(&part).unwrap(), complete);
    assert_healthy_and_intact(&pool);
}

/// A sync killed after its commit renamed the rebuilt part into place, whose part was then
/// removed again (say by an operator starting over) before the next run: the rename is
/// done, and the part is simply missing. The next sync must not fail on the rename for
/// ever (the journal is only removed once every action applies).
#[test]
fn a_committed_rename_whose_part_is_gone_since_does_not_block_every_later_sync() {
    let test = "a_committed_rename_whose_part_is_gone_since_does_not_block_every_later_sync";
    let Some(pool) = make_pool(test, 2, &[], 20) else { return };
    let part = pool.part(1, 1).to_path_buf();
    let temp = pool.dir.join(".r1p1.ckpt-build");
    fs::remove_file(&part).unwrap();
    Journal {
        state: State::Committed,
        actions: vec![Action::Temp(temp.clone()), Action::Rename { from: temp, to: part }],
    }
    .store(&journal_path(&pool.set))
    .unwrap();
    heal_after(&pool, Some(State::Committed), &[(1, 1, "missing")]);
}

/// A dry run that finds a committed journal plans what the real run will do once it has
/// rolled the journal forward: here, nothing to rebuild (the real run only renames the
/// finished part into place).
#[test]
fn a_dry_run_after_an_interrupted_commit_plans_what_the_sync_does() {
    let test = "a_dry_run_after_an_interrupted_commit_plans_what_the_sync_does";
    let Some(pool) = make_pool(test, 2, &[], 21) else { return };
    let part = pool.part(1, 1).to_path_buf();
    let temp = pool.dir.join(".r1p1.ckpt-build");
    fs::rename(&part, &temp).unwrap();
    Journal {
        state: State::Committed,
        actions: vec![Action::Temp(temp.clone()), Action::Rename { from: temp, to: part }],
    }
    .store(&journal_path(&pool.set))
    .unwrap();
    let before = snapshot(&pool.dir);
    let plan = run_sync(&pool.set, true).expect("dry run");
    assert_eq!(snapshot(&pool.dir), before, "the dry run changed something");
    let done = run_sync(&pool.set, false).expect("sync");
    assert_healthy_and_intact(&pool);
    assert_eq!(plan.recovered, Some(State::Committed));
    assert_eq!(done.recovered, Some(State::Committed));
    let parts = |r: &SyncReport| r.rebuilt.iter().map(|p| (p.replica, p.part)).collect::<Vec<_>>();
    assert_eq!(parts(&plan), parts(&done), "the dry run planned {plan:#?}\nthe sync did {done:#?}");
}

/// A rebuilt part replaces a broken file that a service may own: its owner and mode stay,
/// or the program that uses the pool (not root) cannot open it any more.
#[test]
fn a_rebuilt_part_keeps_the_owner_and_mode_of_the_file_it_replaces() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let test = "a_rebuilt_part_keeps_the_owner_and_mode_of_the_file_it_replaces";
    let Some(pool) = make_pool(test, 2, &[], 22) else { return };
    let part = pool.part(1, 1);
    let (uid, gid) = (4321, 4322);
    if let Err(e) = std::os::unix::fs::chown(part, Some(uid), Some(gid)) {
        common::unavailable(test, &format!("cannot chown ({e}); needs root"));
        return;
    }
    fs::set_permissions(part, fs::Permissions::from_mode(0o600)).unwrap();
    zero_header(part);
    heal(&pool, &[(1, 1, "zeroed_header")]);
    let meta = fs::metadata(part).unwrap();
    let found = (meta.uid(), meta.gid(), format!("{:o}", meta.mode() & 0o7777));
    assert_eq!(found, (uid, gid, "600".to_owned()), "owner, group and mode of the rebuilt part");
}

/// A valid header (checksum and all) whose link names a uuid that the part the set file puts
/// there does not have: the headers contradict each other or the set file, and nothing says
/// which is right. PMDK refuses ("inconsistent part UUIDs ... cannot synchronize"), and so
/// does ckpt, changing nothing.
#[test]
fn a_valid_header_with_a_contradicting_link_is_refused() {
    let Some(pool) = make_pool("a_valid_header_with_a_contradicting_link_is_refused", 2, &[], 23)
    else {
        return;
    };
    let part = pool.part(1, 1);
    let mut header = ckpt_poolset::header::validate(&read_at(part, 0, 4096), None).unwrap();
    header.prev_part_uuid = ckpt_poolset::header::Uuid::generate().unwrap();
    write_at(part, 0, &header.encode());
    assert_refused(&pool, &[("misplaced", (1, Some(1)))]);
}
