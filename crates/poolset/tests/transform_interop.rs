//! `transform` against real PMDK: pools made by `pmempool create obj` with a root object
//! written through libpmemobj; after each of our transforms `pmempool check` says
//! consistent, libpmemobj opens the new set and the root object reads back intact. Plus the
//! refusals, each leaving the files as they were.

mod common;
use ckpt_poolset::PoolError;
use ckpt_poolset::health::check;
use ckpt_poolset::transform::{TransformKind, TransformOptions, transform};
use common::{
    create_obj_pool, libpmemobj_or_skip, pmempool_check, pmempool_or_skip, verify_root, write_root,
    write_set_named,
};
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: usize = 20 << 20;

/// A part line: (size, file name).
type Part = (&'static str, &'static str);

/// A refused target: set file name, replicas, options, words the error must hold.
type Refusal = (&'static str, Vec<Vec<Part>>, Vec<&'static str>, &'static str);

fn ready(test: &str) -> bool {
    pmempool_or_skip(test).is_some() && libpmemobj_or_skip(test)
}

fn run(src: &Path, dst: &Path) -> Result<ckpt_poolset::transform::TransformReport, PoolError> {
    transform(src, dst, &TransformOptions::default(), &mut |_, _| {})
}

fn assert_good(set: &Path, seed: u64) {
    let outcome = pmempool_check(set);
    assert!(outcome.consistent, "pmempool check {}:\n{}", set.display(), outcome.output);
    assert!(check(set).unwrap().is_healthy(), "our check of {}", set.display());
    verify_root(set, seed, ROOT).unwrap_or_else(|e| panic!("root of {}: {e}", set.display()));
}

/// Every file in `dir` with its bytes, for "nothing changed" checks (lock files aside).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".ckpt-lock"))
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

fn two_by_two(dir: &Path) -> PathBuf {
    let set = write_set_named(
        dir,
        "src.set",
        &[&[("16M", "a0"), ("16M", "a1")], &[("16M", "b0"), ("16M", "b1")]],
        &[],
    );
    create_obj_pool(&set, "transform");
    write_root(&set, 7, ROOT);
    set
}

#[test]
fn add_a_replica_then_remove_the_master() {
    if !ready("add_a_replica_then_remove_the_master") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = two_by_two(d);
    let three = [
        &[("16M", "a0"), ("16M", "a1")][..],
        &[("16M", "b0"), ("16M", "b1")],
        &[("20M", "c0"), ("12M", "c1")],
    ];
    let add = write_set_named(d, "add.set", &three, &[]);
    let report = run(&src, &add).unwrap();
    assert_eq!(report.kind, TransformKind::AddReplicas(vec![2]));
    assert_eq!(report.built.len(), 2);
    assert!(report.removed.is_empty());
    assert_good(&add, 7);
    // The new replica holds the pool: it alone is enough to read the root back.
    let rm = write_set_named(
        d,
        "rm.set",
        &[&[("16M", "b0"), ("16M", "b1")], &[("20M", "c0"), ("12M", "c1")]],
        &[],
    );
    let report = run(&add, &rm).unwrap();
    assert_eq!(report.kind, TransformKind::RemoveReplicas(vec![0]));
    assert!(!d.join("a0").exists() && !d.join("a1").exists(), "the master's parts are gone");
    assert_good(&rm, 7);
    let only_new = write_set_named(d, "new.set", &[&[("20M", "c0"), ("12M", "c1")]], &[]);
    run(&rm, &only_new).unwrap();
    assert_good(&only_new, 7);
    assert!(!d.join("new.set.ckpt-journal").exists());
}

#[test]
fn add_and_remove_singlehdr() {
    if !ready("add_and_remove_singlehdr") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = two_by_two(d);
    let parts = [&[("16M", "a0"), ("16M", "a1")][..], &[("16M", "b0"), ("16M", "b1")]];
    let single = write_set_named(d, "single.set", &parts, &["SINGLEHDR"]);
    let report = run(&src, &single).unwrap();
    assert_eq!(report.kind, TransformKind::SingleHeader(true));
    assert_eq!(report.built.len(), 4);
    assert_good(&single, 7);
    // Back without SINGLEHDR at the same sizes: the pool shrinks by 4 KiB a replica, but the
    // heap was made for the first layout and still fits, as PMDK finds too.
    let report = run(&single, &src).unwrap();
    assert_eq!(report.kind, TransformKind::SingleHeader(false));
    assert_good(&src, 7);
}

/// A pool made with SINGLEHDR has a heap that fills the whole pool: removing the option at
/// the same part sizes would cut 4 KiB off its heap, and is refused, naming the replica and
/// the size the heap needs; 4 KiB more in the second parts make room.
#[test]
fn removing_singlehdr_is_refused_only_when_the_heap_does_not_fit() {
    if !ready("removing_singlehdr_is_refused_only_when_the_heap_does_not_fit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let parts = [&[("16M", "a0"), ("16M", "a1")][..], &[("16M", "b0"), ("16M", "b1")]];
    let single = write_set_named(d, "single.set", &parts, &["SINGLEHDR"]);
    create_obj_pool(&single, "transform");
    write_root(&single, 9, ROOT);
    let same = write_set_named(d, "same.set", &parts, &[]);
    let before = snapshot(d);
    for dry_run in [true, false] {
        let err =
            transform(&single, &same, &TransformOptions { dry_run }, &mut |_, _| {}).unwrap_err();
        let PoolError::SetDisagrees { disagreements, .. } = &err else { panic!("{err:?}") };
        assert!(
            disagreements.iter().all(|x| x.kind() == "replica_too_small")
                && disagreements.len() == 2,
            "{err}"
        );
        assert!(err.to_string().contains("pmemobj descriptor"), "{err}");
        assert_eq!(snapshot(d), before, "a refused transform changes nothing");
    }
    let grown = [&[("16M", "a0"), ("16388K", "a1")][..], &[("16M", "b0"), ("16388K", "b1")]];
    let multi = write_set_named(d, "multi.set", &grown, &[]);
    let report = run(&single, &multi).unwrap();
    assert_eq!(report.kind, TransformKind::SingleHeader(false));
    assert_good(&multi, 9);
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    if !ready("refusals_name_the_problem_and_change_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = two_by_two(d);
    let before = snapshot(d);
    let cases: Vec<Refusal> = vec![
        (
            "same.set",
            vec![vec![("16M", "a0"), ("16M", "a1")], vec![("16M", "b0"), ("16M", "b1")]],
            vec![],
            "same structure",
        ),
        (
            "mixed.set",
            vec![vec![("16M", "a0"), ("16M", "a1")], vec![("32M", "c0")]],
            vec![],
            "adds replicas",
        ),
        (
            "partly.set",
            vec![vec![("16M", "a0"), ("16M", "a1")], vec![("16M", "b0"), ("16M", "zz")]],
            vec![],
            "whole replicas",
        ),
        (
            "small.set",
            vec![
                vec![("16M", "a0"), ("16M", "a1")],
                vec![("16M", "b0"), ("16M", "b1")],
                vec![("8M", "c0")],
            ],
            vec![],
            "the pool's data needs",
        ),
        (
            "both.set",
            vec![vec![("16M", "a0"), ("16M", "a1")], vec![("32M", "c0")]],
            vec!["SINGLEHDR"],
            "one kind of change",
        ),
    ];
    for (name, replicas, options, words) in cases {
        let refs: Vec<&[(&str, &str)]> = replicas.iter().map(Vec::as_slice).collect();
        let dst = write_set_named(d, name, &refs, &options);
        let err = run(&src, &dst).unwrap_err();
        assert!(
            matches!(err, PoolError::Transform(_) | PoolError::SetDisagrees { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(words), "{name}: {err}");
        fs::remove_file(&dst).unwrap();
        let _ = fs::remove_file(d.join(format!("{name}.ckpt-lock")));
    }
    // A new replica's part file that already exists is never overwritten.
    fs::write(d.join("c0"), b"precious").unwrap();
    let dst = write_set_named(
        d,
        "exists.set",
        &[&[("16M", "a0"), ("16M", "a1")], &[("16M", "b0"), ("16M", "b1")], &[("32M", "c0")]],
        &[],
    );
    let err = run(&src, &dst).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(fs::read(d.join("c0")).unwrap(), b"precious");
    fs::remove_file(d.join("c0")).unwrap();
    fs::remove_file(&dst).unwrap();
    assert_eq!(snapshot(d), before);
    // An unhealthy source is refused until it is synced.
    fs::remove_file(d.join("b1")).unwrap();
    let add = write_set_named(
        d,
        "add.set",
        &[&[("16M", "a0"), ("16M", "a1")], &[("16M", "b0"), ("16M", "b1")], &[("32M", "c0")]],
        &[],
    );
    let err = run(&src, &add).unwrap_err();
    assert!(matches!(err, PoolError::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("not healthy") && err.to_string().contains("b1"), "{err}");
    assert!(!d.join("c0").exists());
}

#[test]
fn dry_run_plans_without_changing_anything() {
    if !ready("dry_run_plans_without_changing_anything") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = two_by_two(d);
    let add = write_set_named(
        d,
        "add.set",
        &[&[("16M", "a0"), ("16M", "a1")], &[("16M", "b0"), ("16M", "b1")], &[("32M", "c0")]],
        &[],
    );
    let before = snapshot(d);
    let report =
        transform(&src, &add, &TransformOptions { dry_run: true }, &mut |_, _| {}).unwrap();
    assert!(report.dry_run);
    assert_eq!(report.built, vec![d.canonicalize().unwrap().join("c0")]);
    assert_eq!(report.relinked.len(), 4, "every kept part gets new replica links");
    assert_eq!(snapshot(d), before);
}

/// Running a finished transform again finds the pool already in DST's structure (SRC no
/// longer describes it): nothing to do, nothing changed. A different DST from the same
/// stale SRC is refused, naming what SRC misstates, as PMDK refuses ("source poolset health
/// check failed").
#[test]
fn a_finished_transform_run_again_is_already_done_and_a_stale_source_is_refused() {
    if !ready("a_finished_transform_run_again_is_already_done_and_a_stale_source_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = write_set_named(d, "src.set", &[&[("20M", "a0"), ("20M", "a1")]], &[]);
    create_obj_pool(&src, "transform");
    write_root(&src, 5, ROOT);
    let add = |name: &str, part: &'static str| {
        write_set_named(d, name, &[&[("20M", "a0"), ("20M", "a1")], &[("40M", part)]], &[])
    };
    let out1 = add("out1.set", "b0");
    run(&src, &out1).unwrap();
    let before = snapshot(d);
    let again = run(&src, &out1).unwrap();
    assert!(again.already_done && again.built.is_empty(), "{again:?}");
    assert_eq!(snapshot(d), before);
    let out2 = add("out2.set", "c0");
    let err = run(&src, &out2).unwrap_err();
    assert!(matches!(err, PoolError::SetDisagrees { .. }), "{err:?}");
    assert!(!d.join("c0").exists());
    assert_eq!(
        snapshot(d).into_iter().filter(|(p, _)| !p.ends_with("out2.set")).collect::<Vec<_>>(),
        before
    );
    assert_good(&out1, 5);
}
