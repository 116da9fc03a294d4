//! The poolset file is a claim, the pool is the truth: for each way a set file can misstate a
//! real pool (made by `pmempool create obj`, a root object written through libpmemobj
//! across the parts), `ckpt pool check` names the disagreement, sync and transform (dry run
//! and real) refuse, naming the part, what the set says and what the pool says, and not a
//! byte of any file changes: the root object still reads back through libpmemobj from every
//! replica with the pool's own set file, and `pmempool check` still calls it consistent.
//! Where PMDK refuses the same set, that is checked too.

mod common;

use ckpt_poolset::PoolError;
use ckpt_poolset::health;
use ckpt_poolset::sync::{SyncOptions, sync};
use ckpt_poolset::transform::{TransformOptions, transform};
use common::{
    create_obj_pool, file_hashes, libpmemobj_or_skip, pmempool_check, pmempool_or_skip,
    run_pmempool, verify_root, verify_root_in_every_replica, write_root, write_set_named,
};
use std::fs;
use std::path::{Path, PathBuf};

const ROOT_LEN: usize = 20_000_000;
const SEED: u64 = 0x5e7;

/// A part line: (size, file name).
type Part = (&'static str, &'static str);
/// An expected disagreement: its kind and (replica, part).
type Expected = (&'static str, (usize, Option<usize>));

struct Pool {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// The pool's own, correct set file.
    set: PathBuf,
}

impl Pool {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_set(&self, name: &str, replicas: &[&[Part]], options: &[&str]) -> PathBuf {
        write_set_named(&self.dir, name, replicas, options)
    }
}

/// A pool made by `pmempool create obj` from `replicas` with `options`, root object written;
/// `None` (after a loud SKIPPED line) without PMDK.
fn make(test: &str, replicas: &[&[Part]], options: &[&str]) -> Option<Pool> {
    pmempool_or_skip(test)?;
    if !libpmemobj_or_skip(test) {
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = fs::canonicalize(tmp.path()).expect("canonicalize");
    let set = write_set_named(&dir, "pool.set", replicas, options);
    create_obj_pool(&set, "claims");
    write_root(&set, SEED, ROOT_LEN);
    Some(Pool { _tmp: tmp, dir, set })
}

const TWO_BY_TWO: [&[Part]; 2] = [&[("16M", "a0"), ("16M", "a1")], &[("16M", "b0"), ("16M", "b1")]];

fn kinds(err: &PoolError) -> Vec<Expected> {
    match err {
        PoolError::SetDisagrees { disagreements, .. } => {
            disagreements.iter().map(|d| (d.kind(), d.place())).collect()
        }
        other => panic!("expected a refusal naming disagreements, got {other:?}"),
    }
}

/// Check, sync (dry run and real) refuse `set` with `expected` (in any order, each at least
/// once), change no file, leave no journal; `pmempool sync` refuses it too when
/// `pmdk_refuses`. Then the pool is intact with its own set file.
fn assert_sync_refused(pool: &Pool, set: &Path, expected: &[Expected], pmdk_refuses: bool) {
    let before = file_hashes(&pool.dir);
    let health = health::check(set).expect("check reads the set");
    let found: Vec<Expected> = health.disagreements.iter().map(|d| (d.kind(), d.place())).collect();
    for e in expected {
        assert!(found.contains(e), "check should report {e:?}: {found:?}");
    }
    assert!(!health.is_healthy());
    for dry_run in [true, false] {
        let err = sync(set, &SyncOptions { dry_run }, &mut |_, _| {}).unwrap_err();
        let got = kinds(&err);
        assert_eq!(sorted(&got), sorted(&found), "sync and check agree: {err}");
        let text = err.to_string();
        assert!(text.contains("nothing was changed"), "{text}");
        assert_eq!(
            file_hashes(&pool.dir),
            before,
            "refused sync (dry run {dry_run}) changed files"
        );
    }
    assert!(!pool.dir.join(format!("{}.ckpt-journal", file_name(set))).exists());
    if pmdk_refuses {
        let copy_dir = tempfile::tempdir().unwrap();
        let copy = copy_with_set(pool, set, copy_dir.path());
        let out = run_pmempool(&["sync".as_ref(), copy.as_ref()]);
        assert!(!out.status.success(), "pmempool sync accepted {}", set.display());
    }
    assert_intact(pool);
}

fn sorted(v: &[Expected]) -> Vec<Expected> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Copies every file of the pool's directory (parts and set files) into `dir`, rewriting the
/// paths inside `set`; returns the copied `set`.
fn copy_with_set(pool: &Pool, set: &Path, dir: &Path) -> PathBuf {
    let dir = fs::canonicalize(dir).unwrap();
    for entry in fs::read_dir(&pool.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let text = fs::read_to_string(set).unwrap();
    let from = format!("{}/", pool.dir.display());
    let to = format!("{}/", dir.display());
    let copy = dir.join(set.file_name().unwrap());
    fs::write(&copy, text.replace(&from, &to)).unwrap();
    copy
}

fn assert_intact(pool: &Pool) {
    let outcome = pmempool_check(&pool.set);
    assert!(outcome.consistent, "pmempool check:\n{}", outcome.output);
    verify_root_in_every_replica(&pool.set, SEED, ROOT_LEN).unwrap();
}

#[test]
fn a_part_declared_smaller_than_its_file_is_not_truncated() {
    let Some(pool) =
        make("a_part_declared_smaller_than_its_file_is_not_truncated", &TWO_BY_TWO, &[])
    else {
        return;
    };
    let set = pool.write_set("short.set", &[TWO_BY_TWO[0], &[("10M", "b0"), ("16M", "b1")]], &[]);
    let expected = [("part_size", (1, Some(0))), ("replica_too_small", (1, None))];
    assert_sync_refused(&pool, &set, &expected, true);
    // With the master lost as well, the short replica must not become the source.
    let master = fs::read(pool.path("a0")).unwrap();
    fs::remove_file(pool.path("a0")).unwrap();
    let before = file_hashes(&pool.dir);
    let err = sync(&set, &SyncOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(kinds(&err).contains(&("part_size", (1, Some(0)))), "{err}");
    assert_eq!(file_hashes(&pool.dir), before);
    fs::write(pool.path("a0"), master).unwrap();
    assert_intact(&pool);
}

#[test]
fn a_part_declared_larger_than_a_healthy_file_is_refused() {
    // Replica 1 is larger than the pool, so a shorter b1 still holds the heap: only the set
    // file says b1 should be 20M, and nothing says which is right.
    let replicas: [&[Part]; 2] = [&[("16M", "a0"), ("16M", "a1")], &[("16M", "b0"), ("20M", "b1")]];
    let Some(pool) = make("a_part_declared_larger_than_a_healthy_file_is_refused", &replicas, &[])
    else {
        return;
    };
    let set = pool.write_set("long.set", &[replicas[0], &[("16M", "b0"), ("24M", "b1")]], &[]);
    assert_sync_refused(&pool, &set, &[("part_size", (1, Some(1)))], false);
}

#[test]
fn a_part_below_libpmemobjs_minimum_is_refused() {
    let Some(pool) = make("a_part_below_libpmemobjs_minimum_is_refused", &TWO_BY_TWO, &[]) else {
        return;
    };
    fs::remove_file(pool.path("b1")).unwrap();
    let set = pool.write_set("tiny.set", &[TWO_BY_TWO[0], &[("16M", "b0"), ("1M", "b1")]], &[]);
    let expected = [("part_below_minimum", (1, Some(1))), ("replica_too_small", (1, None))];
    assert_sync_refused_without_intact(&pool, &set, &expected);
}

/// [`assert_sync_refused`] for a pool with a part deleted on purpose: after the refusal,
/// the pool's own set file heals it.
fn assert_sync_refused_without_intact(pool: &Pool, set: &Path, expected: &[Expected]) {
    let before = file_hashes(&pool.dir);
    let err = sync(set, &SyncOptions::default(), &mut |_, _| {}).unwrap_err();
    let got = kinds(&err);
    for e in expected {
        assert!(got.contains(e), "{e:?} in {err}");
    }
    assert_eq!(file_hashes(&pool.dir), before);
    sync(&pool.set, &SyncOptions::default(), &mut |_, _| {}).expect("the right set heals it");
    assert_intact(pool);
}

#[test]
fn the_master_replicas_parts_listed_out_of_order_are_refused() {
    let Some(pool) =
        make("the_master_replicas_parts_listed_out_of_order_are_refused", &TWO_BY_TWO, &[])
    else {
        return;
    };
    let set = pool.write_set("swapped.set", &[&[("16M", "a1"), ("16M", "a0")], TWO_BY_TWO[1]], &[]);
    assert_sync_refused(&pool, &set, &[("misplaced", (1, Some(0)))], true);
}

#[test]
fn a_replicas_parts_listed_out_of_order_are_refused() {
    let Some(pool) = make("a_replicas_parts_listed_out_of_order_are_refused", &TWO_BY_TWO, &[])
    else {
        return;
    };
    let set = pool.write_set("swapped.set", &[TWO_BY_TWO[0], &[("16M", "b1"), ("16M", "b0")]], &[]);
    assert_sync_refused(&pool, &set, &[("misplaced", (0, Some(0)))], true);
    // Three parts: the part ring itself shows the order.
    let three: [&[Part]; 1] = [&[("12M", "c0"), ("12M", "c1"), ("12M", "c2")]];
    let other = write_set_named(&pool.dir, "three.set", &three, &[]);
    create_obj_pool(&other, "claims");
    let wrong = write_set_named(
        &pool.dir,
        "three-wrong.set",
        &[&[("12M", "c0"), ("12M", "c2"), ("12M", "c1")]],
        &[],
    );
    let before = file_hashes(&pool.dir);
    let err = sync(&wrong, &SyncOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(kinds(&err).iter().all(|(k, _)| *k == "misplaced"), "{err}");
    assert_eq!(file_hashes(&pool.dir), before);
}

#[test]
fn a_part_of_another_live_pool_listed_as_a_replica_is_never_overwritten() {
    let Some(pool) = make(
        "a_part_of_another_live_pool_listed_as_a_replica_is_never_overwritten",
        &TWO_BY_TWO,
        &[],
    ) else {
        return;
    };
    let other_parts: [&[Part]; 1] = [&[("32M", "x0")]];
    let other = write_set_named(&pool.dir, "other.set", &other_parts, &[]);
    create_obj_pool(&other, "other");
    write_root(&other, 77, 1 << 20);
    let set = pool.write_set("foreign.set", &[TWO_BY_TWO[0], TWO_BY_TWO[1], &[("32M", "x0")]], &[]);
    assert_sync_refused(&pool, &set, &[("foreign_part", (2, Some(0)))], true);
    verify_root(&other, 77, 1 << 20).expect("the other pool is untouched");
    // Nor may a transform "add" it.
    let before = file_hashes(&pool.dir);
    let err = transform(&pool.set, &set, &TransformOptions::default(), &mut |_, _| {});
    assert!(err.is_err());
    assert_eq!(file_hashes(&pool.dir), before);
}

#[test]
fn a_replica_the_pool_never_had_is_refused() {
    let one: [&[Part]; 1] = [&[("16M", "a0"), ("16M", "a1")]];
    let Some(pool) = make("a_replica_the_pool_never_had_is_refused", &one, &[]) else {
        return;
    };
    let set = pool.write_set("alien.set", &[one[0], &[("32M", "n0")]], &[]);
    assert_sync_refused(&pool, &set, &[("misplaced", (0, Some(0)))], true);
    assert!(!pool.path("n0").exists(), "no part was created");
}

#[test]
fn a_replica_or_a_part_left_out_of_the_set_is_refused() {
    let Some(pool) = make("a_replica_or_a_part_left_out_of_the_set_is_refused", &TWO_BY_TWO, &[])
    else {
        return;
    };
    let set = pool.write_set("one.set", &[TWO_BY_TWO[0]], &[]);
    assert_sync_refused(&pool, &set, &[("misplaced", (0, Some(0)))], true);
    let set = pool.write_set("short.set", &[&[("16M", "a0")], &[("16M", "b0")]], &[]);
    let health = health::check(&set).unwrap();
    assert!(health.disagreements.iter().any(|d| d.kind() == "misplaced"), "{health:?}");
    let before = file_hashes(&pool.dir);
    assert!(sync(&set, &SyncOptions::default(), &mut |_, _| {}).is_err());
    assert_eq!(file_hashes(&pool.dir), before);
    assert_intact(&pool);
}

#[test]
fn a_set_without_singlehdr_for_a_singlehdr_pool_is_refused_and_the_reverse() {
    let Some(pool) = make(
        "a_set_without_singlehdr_for_a_singlehdr_pool_is_refused_and_the_reverse",
        &TWO_BY_TWO,
        &["SINGLEHDR"],
    ) else {
        return;
    };
    let set = pool.write_set("multi.set", &TWO_BY_TWO, &[]);
    let before = file_hashes(&pool.dir);
    let err = sync(&set, &SyncOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(kinds(&err).contains(&("header_option", (0, Some(0)))), "{err}");
    assert_eq!(file_hashes(&pool.dir), before);
    assert_intact(&pool);

    let Some(plain) = make(
        "a_set_without_singlehdr_for_a_singlehdr_pool_is_refused_and_the_reverse",
        &TWO_BY_TWO,
        &[],
    ) else {
        return;
    };
    let set = plain.write_set("single.set", &TWO_BY_TWO, &["SINGLEHDR"]);
    assert_sync_refused(
        &plain,
        &set,
        &[("header_option", (0, Some(0))), ("header_option", (1, Some(0)))],
        true,
    );
}

#[test]
fn nohdrs_on_a_local_set_is_a_usage_error() {
    let Some(pool) = make("nohdrs_on_a_local_set_is_a_usage_error", &TWO_BY_TWO, &[]) else {
        return;
    };
    let set = pool.write_set("nohdrs.set", &TWO_BY_TWO, &["NOHDRS"]);
    fs::remove_file(pool.path("b1")).unwrap();
    let before = file_hashes(&pool.dir);
    for err in [
        health::check(&set).unwrap_err(),
        sync(&set, &SyncOptions::default(), &mut |_, _| {}).unwrap_err(),
        transform(&pool.set, &set, &TransformOptions::default(), &mut |_, _| {}).unwrap_err(),
    ] {
        assert!(matches!(err, PoolError::Grammar(_)), "{err:?}");
        assert!(err.to_string().contains("NOHDRS"), "{err}");
    }
    assert_eq!(file_hashes(&pool.dir), before);
    assert!(!pool.path("b1").exists());
}

#[test]
fn transform_refuses_a_new_replica_below_the_minimum_or_too_small_for_the_heap() {
    let Some(pool) = make(
        "transform_refuses_a_new_replica_below_the_minimum_or_too_small_for_the_heap",
        &TWO_BY_TWO,
        &[],
    ) else {
        return;
    };
    let cases: [(&str, &[Part], Expected); 2] = [
        ("tiny.set", &[("31M", "c0"), ("1M", "c1")], ("part_below_minimum", (2, Some(1)))),
        ("small.set", &[("16M", "c0"), ("8M", "c1")], ("replica_too_small", (2, None))),
    ];
    let before = file_hashes(&pool.dir);
    for (name, new, expected) in cases {
        let dst = pool.write_set(name, &[TWO_BY_TWO[0], TWO_BY_TWO[1], new], &[]);
        for dry_run in [true, false] {
            let err = transform(&pool.set, &dst, &TransformOptions { dry_run }, &mut |_, _| {})
                .unwrap_err();
            assert!(kinds(&err).contains(&expected), "{name}: {err}");
        }
        fs::remove_file(&dst).unwrap();
        let _ = fs::remove_file(pool.dir.join(format!("{name}.ckpt-lock")));
        assert_eq!(file_hashes(&pool.dir), before, "{name}");
        assert!(!pool.path("c0").exists() && !pool.path("c1").exists());
        // PMDK refuses these as well.
        let copy_dir = tempfile::tempdir().unwrap();
        let src = copy_with_set(&pool, &pool.set, copy_dir.path());
        let dst = write_set_named(copy_dir.path(), name, &[TWO_BY_TWO[0], TWO_BY_TWO[1], new], &[]);
        let out = run_pmempool(&["transform".as_ref(), src.as_ref(), dst.as_ref()]);
        assert!(!out.status.success(), "pmempool transform accepted {name}");
    }
    assert_intact(&pool);
}

/// With `SINGLEHDR` only a replica's first part has a header: a replica listed with its
/// parts swapped shows a data page where the header should be (damage, to the eye of a
/// header check) and the real first part in second place. Rebuilding the "damaged" first
/// part would overwrite a healthy part and leave the header part as data; the valid header
/// found where the set file expects data, and named by the other replica's links, is the
/// evidence that refuses it.
#[test]
fn singlehdr_parts_listed_out_of_order_are_refused() {
    let Some(pool) =
        make("singlehdr_parts_listed_out_of_order_are_refused", &TWO_BY_TWO, &["SINGLEHDR"])
    else {
        return;
    };
    let set = pool.write_set(
        "swapped.set",
        &[TWO_BY_TWO[0], &[("16M", "b1"), ("16M", "b0")]],
        &["SINGLEHDR"],
    );
    // PMDK sees only a broken first part here and rebuilds it over b1: not checked.
    assert_sync_refused(&pool, &set, &[("misplaced", (0, Some(0)))], false);
    let set = pool.write_set(
        "swapped-master.set",
        &[&[("16M", "a1"), ("16M", "a0")], TWO_BY_TWO[1]],
        &["SINGLEHDR"],
    );
    assert_sync_refused(&pool, &set, &[("misplaced", (1, Some(0)))], false);
}

/// pmemobj's `heap_size` lies outside the descriptor's checksum: a damaged smaller value in
/// one replica must not become the pool's record (it would let a transform cut the heap).
/// The largest verified record wins, and says which replica it came from.
#[test]
fn the_largest_heap_record_of_the_replicas_is_the_pools() {
    let Some(pool) = make("the_largest_heap_record_of_the_replicas_is_the_pools", &TWO_BY_TWO, &[])
    else {
        return;
    };
    let truth = health::check(&pool.set).unwrap().recorded_size.expect("a heap record");
    assert_eq!(truth.bytes, (32 << 20) - 4096, "the heap fills the 2 x 16 MiB pool");
    // heap_size is at descriptor offset 2080, the descriptor at 4096 of part 0.
    let at = 4096 + 2080;
    let small = (truth.bytes / 2).to_le_bytes();
    common::write_at(&pool.path("a0"), at, &small);
    let health = health::check(&pool.set).unwrap();
    let record = health.recorded_size.expect("a heap record");
    assert_eq!((record.bytes, record.replica), (truth.bytes, 1), "{record:?}");
    assert!(health.disagreements.is_empty(), "{:?}", health.disagreements);
}

/// A header overwritten with random bytes is damage, not another pool's part: it is not
/// well formed (its reserved area is not zero), so sync rebuilds the part as before.
#[test]
fn a_header_of_random_bytes_is_damage_and_is_rebuilt() {
    let Some(pool) = make("a_header_of_random_bytes_is_damage_and_is_rebuilt", &TWO_BY_TWO, &[])
    else {
        return;
    };
    let noise: Vec<u8> = common::root_pattern(99, 4096);
    common::write_at(&pool.path("b1"), 0, &noise);
    let health = health::check(&pool.set).unwrap();
    assert!(health.disagreements.is_empty(), "{:?}", health.disagreements);
    let report = sync(&pool.set, &SyncOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(report.rebuilt.len(), 1, "{report:?}");
    assert_intact(&pool);
}
