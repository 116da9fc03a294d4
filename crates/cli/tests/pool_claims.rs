//! The `ckpt` binary against set files that misstate a real pool (made by `pmempool create
//! obj`, root object written through libpmemobj): `ckpt pool check` exits 1 and names each
//! disagreement (with `--json`, by kind, replica and part); `ckpt pool sync` and `ckpt pool
//! transform` exit 1, name the part, what the set says and what the pool says, and change
//! no file; `OPTION NOHDRS` is a usage error (exit 2). With the pool's own set file the same
//! commands succeed.

#[path = "../../poolset/tests/common/mod.rs"]
mod common;

use common::{
    create_obj_pool, file_hashes, libpmemobj_or_skip_anywhere, pmempool_or_skip,
    verify_root_in_every_replica, write_root, write_set_named,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const ROOT_LEN: usize = 20_000_000;
const SEED: u64 = 0xc1a1;

fn ckpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt")).args(args).output().expect("run ckpt")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_sync_and_transform_name_every_disagreement_and_change_nothing() {
    let test = "check_sync_and_transform_name_every_disagreement_and_change_nothing";
    if pmempool_or_skip(test).is_none() || !libpmemobj_or_skip_anywhere(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let replicas = [&[("16M", "a0"), ("16M", "a1")][..], &[("16M", "b0"), ("16M", "b1")]];
    let set = write_set_named(&dir, "pool.set", &replicas, &[]);
    create_obj_pool(&set, "cli");
    write_root(&set, SEED, ROOT_LEN);
    // The master's parts swapped, and replica 1's first part declared 10M (it is 16M).
    let wrong = write_set_named(
        &dir,
        "wrong.set",
        &[&[("16M", "a1"), ("16M", "a0")], &[("10M", "b0"), ("16M", "b1")]],
        &[],
    );
    let before = file_hashes(&dir);

    let out = ckpt(&["pool", "check", s(&wrong), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("check JSON");
    assert_eq!(report["healthy"], false);
    let kinds: Vec<(String, u64, Option<u64>)> = report["disagreements"]
        .as_array()
        .expect("disagreements")
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["replica"].as_u64().unwrap(),
                d["part"].as_u64(),
            )
        })
        .collect();
    for want in
        [("misplaced", 1, Some(0)), ("part_size", 1, Some(0)), ("replica_too_small", 1, None)]
    {
        assert!(kinds.contains(&(want.0.to_owned(), want.1, want.2)), "{want:?} in {kinds:?}");
    }
    let human = ckpt(&["pool", "check", s(&wrong)]);
    assert_eq!(human.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&human.stdout);
    assert!(printed.contains("disagrees with the pool's own records"), "{printed}");
    assert!(
        printed.contains("the set file says 10485760 bytes, the part is 16777216 bytes"),
        "{printed}"
    );

    for args in [
        vec!["pool", "sync", s(&wrong)],
        vec!["pool", "sync", s(&wrong), "--dry-run"],
        vec!["pool", "sync", s(&wrong), "--json"],
    ] {
        let out = ckpt(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(message.contains("nothing was changed"), "{message}");
        assert!(message.contains("b0") && message.contains("a1"), "names the parts: {message}");
        if args.contains(&"--json") {
            let v: Value = serde_json::from_slice(&out.stdout).expect("refusal JSON");
            assert_eq!(v["refused"], true);
            assert!(!v["disagreements"].as_array().unwrap().is_empty());
        }
        assert_eq!(file_hashes(&dir), before, "{args:?} changed files");
    }

    // transform from the wrong set, and to a set with a 1 MiB part.
    let add = write_set_named(
        &dir,
        "add.set",
        &[replicas[0], replicas[1], &[("31M", "c0"), ("1M", "c1")]],
        &[],
    );
    for (src, what) in [(&wrong, "misplaced"), (&set, "minimum part size")] {
        let out = ckpt(&["pool", "transform", s(src), s(&add)]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let message = stderr(&out);
        assert!(message.contains("nothing was changed"), "{message}");
        assert!(
            message.contains(what) || (what == "misplaced" && message.contains("a1")),
            "{message}"
        );
        assert!(!dir.join("c0").exists() && !dir.join("c1").exists());
    }
    assert_eq!(
        file_hashes(&dir).into_iter().filter(|(n, _)| n != "add.set").collect::<Vec<_>>(),
        before.into_iter().collect::<Vec<_>>()
    );

    // NOHDRS: a usage error on every command.
    let nohdrs = write_set_named(&dir, "nohdrs.set", &replicas, &["NOHDRS"]);
    for args in [["pool", "check", s(&nohdrs)], ["pool", "sync", s(&nohdrs)]] {
        let out = ckpt(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("NOHDRS"), "{}", stderr(&out));
    }

    // The pool's own set file: healthy, nothing to do, data intact in every replica.
    let out = ckpt(&["pool", "check", s(&set)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let out = ckpt(&["pool", "sync", s(&set)]);
    assert!(out.status.success(), "{}", stderr(&out));
    verify_root_in_every_replica(&set, SEED, ROOT_LEN).unwrap();
}
