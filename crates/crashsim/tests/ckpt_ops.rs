//! The real `ckpt` binary under the crash explorer: checkpoint durable publish, pool set
//! sync and transform (their intent journals), sparse sync (its dirty marker). Every test
//! prints the number of states explored and checked.
//!
//! ckpt's native pool format (write + flush) does not exist yet; it gets its test with it.

mod common;

use ckpt_crashsim::{Bounds, Cmd, Crash, ExploreSpec, NamespaceModel, Report, explore};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

fn read(p: &Path) -> Result<Vec<u8>, String> {
    fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn ckpt(args: &[&std::ffi::OsStr], dir: &Path) -> ckpt_crashsim::Outcome {
    Cmd::new(common::ckpt()).args(args).run_in(dir).unwrap()
}

fn finish(name: &str, report: &Report) {
    eprintln!("crashsim {name}: {report}");
    if std::env::var_os("CRASHSIM_OPS").is_some() {
        eprintln!("{}", report.op_list());
    }
    assert!(!report.truncated, "{name}: the state bound was reached: {report}");
    assert!(report.violations.is_empty(), "{name}: {report}\nops:\n{}", report.op_list());
}

// ---------------------------------------------------------------------------------------
// Checkpoint durable publish.

/// Bytes that do not compress (xorshift), so that the checkpoint spans many sectors.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Writes the checkpointed directory: about 9 KiB in three files.
fn fill_data(data: &Path, version: u8) -> std::io::Result<()> {
    fs::create_dir_all(data.join("sub"))?;
    fs::write(data.join("a.bin"), noise(u64::from(version), 6000))?;
    fs::write(data.join("b.txt"), format!("version {version}\n"))?;
    fs::write(data.join("sub/c.bin"), noise(u64::from(version) + 100, 3000))
}

fn checkpoint_publish(io: &str) {
    let test = format!("checkpoint publish --io {io}");
    if !common::strace_or_skip(&test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let new_ref = tmp.path().join("new.ckpt");
    let (old_id, new_id) = ("11111111111111111111111111111111", "22222222222222222222222222222222");
    let out = work.join("out.ckpt");
    let data = work.join("data");
    let old = std::cell::RefCell::new(Vec::new());
    let write = |id: &str, to: &Path| {
        let o = ckpt(
            &[
                "write".as_ref(),
                "--id".as_ref(),
                id.as_ref(),
                "-o".as_ref(),
                to.as_os_str(),
                data.as_os_str(),
            ],
            tmp.path(),
        );
        assert!(o.success(), "ckpt write: {o}");
    };
    let op = Cmd::new(common::ckpt())
        .args(["write", "--io", io, "--id", new_id, "-o"])
        .arg(&out)
        .arg(&data);
    let spec = ExploreSpec::new(&work, op)
        .setup(|_| {
            // The old checkpoint in place, then the new data and the new checkpoint's
            // reference bytes (same id, same input: bit-identical output).
            fill_data(&data, 1)?;
            write(old_id, &out);
            *old.borrow_mut() = fs::read(&out)?;
            fill_data(&data, 2)?;
            write(new_id, &new_ref);
            Ok(())
        })
        .invariant(|d, crash: &Crash<'_>| {
            let got = fs::read(d.join("out.ckpt"))
                .map_err(|e| format!("the checkpoint is gone: out.ckpt: {e}"))?;
            let new = read(&new_ref)?;
            if got != *old.borrow() && got != new {
                let v = ckpt(&["verify".as_ref(), d.join("out.ckpt").as_os_str()], d);
                return Err(format!(
                    "out.ckpt is neither the old nor the new checkpoint ({} bytes; ckpt verify: {v})",
                    got.len()
                ));
            }
            if crash.said("ckpt: wrote") && got != new {
                return Err("ckpt acknowledged the write but out.ckpt is the old checkpoint".into());
            }
            Ok(())
        });
    let report = explore(&spec).unwrap_or_else(|e| panic!("{test}: {e}"));
    // The reference is a good checkpoint of the new data.
    let o = ckpt(&["verify".as_ref(), new_ref.as_os_str()], tmp.path());
    assert!(o.success(), "verify {}: {o}", new_ref.display());
    finish(&test, &report);
}

#[test]
fn checkpoint_publish_buffered() {
    checkpoint_publish("buffered");
}

/// `O_DIRECT` where the file system takes it (aligned writes, then a truncation of the
/// padding), buffered elsewhere.
#[test]
fn checkpoint_publish_auto() {
    checkpoint_publish("auto");
}

// ---------------------------------------------------------------------------------------
// Pool sets.

const MIB8: &str = "8M";

fn pmempool(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let o = Cmd::new("pmempool").args(args).run_in(Path::new("/")).map_err(|e| e.to_string())?;
    if o.success() { Ok(()) } else { Err(format!("pmempool {args:?}: {o}")) }
}

fn set_text(replicas: &[&Path]) -> String {
    let mut s = String::from("PMEMPOOLSET\n");
    for (i, p) in replicas.iter().enumerate() {
        if i > 0 {
            s.push_str("REPLICA\n");
        }
        let _ = writeln!(s, "{MIB8} {}", p.display());
    }
    s
}

/// Pool data (past the 4 KiB header) of a part.
fn pool_data(p: &Path) -> Result<Vec<u8>, String> {
    let mut b = read(p)?;
    if b.len() < 4096 {
        return Err(format!("{} is only {} bytes", p.display(), b.len()));
    }
    b.drain(..4096);
    Ok(b)
}

fn healthy(set: &Path, d: &Path) -> Result<(), String> {
    let o = ckpt(&["pool".as_ref(), "check".as_ref(), set.as_os_str()], d);
    if o.success() { Ok(()) } else { Err(format!("ckpt pool check {}: {o}", set.display())) }
}

fn pool_sync(parts_dir: &str, model: NamespaceModel) {
    let test = format!("pool sync (parts in {parts_dir:?}, {model:?})");
    if !common::strace_or_skip(&test) || !common::pmempool_or_skip(&test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let set = work.join("pool.set");
    let parts = work.join(parts_dir);
    let (r0, r1) = (parts.join("r0.part"), parts.join("r1.part"));
    let master = tmp.path().join("r0.data");
    let spec = ExploreSpec::new(&work, Cmd::new(common::ckpt()).arg("pool").arg("sync").arg(&set))
        .setup(|_| {
            fs::create_dir_all(&parts)?;
            fs::write(&set, set_text(&[&r0, &r1]))?;
            pmempool(&[
                "create".as_ref(),
                "obj".as_ref(),
                "--layout=crashsim".as_ref(),
                set.as_os_str(),
            ])?;
            fs::write(&master, pool_data(&r0)?)?;
            fs::remove_file(&r1)?;
            Ok(())
        })
        .before_recovery(|d, _| {
            // "A half-copied part never looks healthy."
            if healthy(&set, d).is_ok() && pool_data(&r1)? != read(&master)? {
                return Err(
                    "the set checks healthy but replica 1's data differs from the master's".into(),
                );
            }
            Ok(())
        })
        .recover_with(Cmd::new(common::ckpt()).arg("pool").arg("sync").arg(&set))
        .invariant(|d, crash| {
            let rec = crash.recovery.ok_or("no recovery ran")?;
            if !rec.success() {
                return Err(format!("the recovery sync failed: {rec}"));
            }
            healthy(&set, d)?;
            let want = read(&master)?;
            if pool_data(&r0)? != want {
                return Err("the master's data changed".into());
            }
            if pool_data(&r1)? != want {
                return Err("replica 1's data differs from the master's after recovery".into());
            }
            if d.join("pool.set.ckpt-journal").exists() {
                return Err("the journal is still there after recovery".into());
            }
            // PMDK agrees.
            pmempool(&["check".as_ref(), set.as_os_str()])
        });
    let spec = spec.bounds(Bounds { namespace: model, ..Bounds::default() });
    let report = explore(&spec).unwrap_or_else(|e| panic!("{test}: {e}"));
    finish(&test, &report);
}

// The pool tests run under ext4's model (any fsync commits every directory change made
// before it, in order) and under the POSIX model (a name is durable only once its directory
// is synced). Under POSIX they find a real bug: sync and transform build a part under
// `.NAME.ckpt-build` and fsync the file but never its directory before the committed journal
// names it, so a crash can keep the committed journal and lose the part's name. Applying the
// journal then finds no part to rename. Sync copes since `Journal::apply` skips a missing
// source (the part is rebuilt again), but transform also rewrites the kept replica's header
// to link to the new replica: SRC is no longer a valid set, DST misses a replica, and
// re-running the transform (the documented recovery) refuses because SRC is unhealthy; only
// `ckpt pool sync DST` repairs it. That contradicts "SRC stays valid until the new set is
// complete and durable". The fix: fsync the directory of every built part before storing
// the committed journal.

#[test]
fn pool_sync_rebuilds_a_missing_replica_ext4() {
    pool_sync(".", NamespaceModel::Journaled);
}

#[test]
fn pool_sync_with_parts_in_a_subdirectory_ext4() {
    pool_sync("parts", NamespaceModel::Journaled);
}

#[test]
fn pool_sync_rebuilds_a_missing_replica_posix() {
    pool_sync(".", NamespaceModel::Independent);
}

#[test]
fn pool_sync_with_parts_in_a_subdirectory_posix() {
    pool_sync("parts", NamespaceModel::Independent);
}

#[test]
fn pool_transform_adds_a_replica_ext4() {
    pool_transform(NamespaceModel::Journaled, false);
}

#[test]
fn pool_transform_adds_a_replica_posix() {
    pool_transform(NamespaceModel::Independent, false);
}

#[test]
fn pool_transform_adds_a_replica_posix_healed_by_sync_of_the_new_set() {
    pool_transform(NamespaceModel::Independent, true);
}

/// Recovery: re-run the transform, or (`sync_dst`) `ckpt pool sync DST`.
fn pool_transform(model: NamespaceModel, sync_dst: bool) {
    let how = if sync_dst { "sync DST" } else { "re-run" };
    let test = &format!("pool transform (add a replica, {model:?}, recovery: {how})");
    if !common::strace_or_skip(test) || !common::pmempool_or_skip(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let (src, dst) = (work.join("src.set"), work.join("dst.set"));
    let (r0, r1) = (work.join("r0.part"), work.join("r1.part"));
    let master = tmp.path().join("r0.data");
    let transform = Cmd::new(common::ckpt()).arg("pool").arg("transform").arg(&src).arg(&dst);
    let journals = |d: &Path| {
        ["src.set.ckpt-journal", "dst.set.ckpt-journal"].iter().any(|j| d.join(j).exists())
    };
    let spec = ExploreSpec::new(&work, transform.clone())
        .setup(|_| {
            fs::write(&src, set_text(&[&r0]))?;
            fs::write(&dst, set_text(&[&r0, &r1]))?;
            pmempool(&[
                "create".as_ref(),
                "obj".as_ref(),
                "--layout=crashsim".as_ref(),
                src.as_os_str(),
            ])?;
            fs::write(&master, pool_data(&r0)?)?;
            Ok(())
        })
        .before_recovery(|d, _| {
            // Without a journal to finish or undo, the old set or the new one is whole.
            if !journals(d) && healthy(&src, d).is_err() && healthy(&dst, d).is_err() {
                return Err(format!(
                    "no journal, and neither set is healthy: {}; {}",
                    healthy(&src, d).unwrap_err(),
                    healthy(&dst, d).unwrap_err()
                ));
            }
            Ok(())
        })
        // What an operator does after a crash: run the same transform again. It finishes
        // (a committed journal) or undoes (a prepared one) the interrupted run, then does
        // the transform if it was not finished. Or sync the new set, which applies a
        // committed journal; before the commit the pool has no second replica, so DST
        // misstates it and sync refuses, changing nothing, with the source whole.
        .recover_with(if sync_dst {
            Cmd::new(common::ckpt()).arg("pool").arg("sync").arg(&dst)
        } else {
            transform
        })
        .invariant(|d, crash| {
            let rec = crash.recovery.ok_or("no recovery ran")?;
            let refused = rec.text().contains("disagrees with the pool's own records");
            if sync_dst && !rec.success() && refused {
                healthy(&src, d)?;
                if pool_data(&r0)? != read(&master)? {
                    return Err("the master's data changed".into());
                }
                if journals(d) {
                    return Err("a journal is still there after recovery".into());
                }
                return Ok(());
            }
            if !rec.success() {
                return Err(format!("the recovery run failed: {rec}"));
            }
            healthy(&dst, d)?;
            let want = read(&master)?;
            if pool_data(&r0)? != want {
                return Err("the master's data changed".into());
            }
            if pool_data(&r1)? != want {
                return Err("the new replica's data differs from the master's".into());
            }
            if journals(d) {
                return Err("a journal is still there after recovery".into());
            }
            Ok(())
        });
    let spec = spec.bounds(Bounds { namespace: model, ..Bounds::default() });
    let report = explore(&spec).unwrap_or_else(|e| panic!("{test}: {e}"));
    finish(test, &report);
}

// ---------------------------------------------------------------------------------------
// Sparse sync.

/// A file of 4 KiB blocks: `Some(byte)` a block of that byte, `None` a hole; then `tail`
/// bytes of 0x7e.
fn sparse_file(path: &Path, blocks: &[Option<u8>], tail: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(path)?;
    let mut content = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        match b {
            Some(v) => {
                f.write_all_at(&[*v; 4096], i as u64 * 4096)?;
                content.extend_from_slice(&[*v; 4096]);
            }
            None => content.extend_from_slice(&[0; 4096]),
        }
    }
    content.extend(std::iter::repeat_n(0x7e, tail));
    f.set_len(content.len() as u64)?;
    if tail > 0 {
        f.write_all_at(&content[content.len() - tail..], (content.len() - tail) as u64)?;
    }
    Ok(content)
}

/// `cleanup`: also require that recovery leaves no temporary target behind.
fn sparse_sync(with_old_target: bool, cleanup: bool) {
    let test = format!(
        "sparse sync ({} target{})",
        if with_old_target { "older" } else { "new" },
        if cleanup { ", no leftovers" } else { "" }
    );
    if !common::strace_or_skip(&test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let (src, dst) = (work.join("src.img"), work.join("dst.img"));
    let marker = work.join("dst.img.ckpt-sync");
    let refs: std::cell::RefCell<(Vec<u8>, Option<Vec<u8>>)> = std::cell::RefCell::default();
    let sync = Cmd::new(common::ckpt()).arg("sparse").arg("sync").arg(&src).arg(&dst);
    let spec = ExploreSpec::new(&work, sync.clone())
        .setup(|_| {
            let new = sparse_file(&src, &[Some(1), None, Some(3), Some(4), None, Some(6)], 100)?;
            let old = if with_old_target {
                Some(sparse_file(&dst, &[Some(1), Some(2), Some(9), None, Some(5)], 0)?)
            } else {
                None
            };
            *refs.borrow_mut() = (new, old);
            Ok(())
        })
        .before_recovery(|_, _| {
            // The marker's promise: without it, the target is the old one or the new one,
            // whole.
            if marker.exists() {
                return Ok(());
            }
            let (new, old) = &*refs.borrow();
            let got = fs::read(&dst).ok();
            if got.as_ref() != Some(new) && got != *old {
                return Err(format!(
                    "no dirty marker, but the target is neither old nor new ({})",
                    got.map_or("missing".into(), |g| format!("{} bytes", g.len()))
                ));
            }
            Ok(())
        })
        .recover_with(sync)
        .invariant(|d, crash| {
            let rec = crash.recovery.ok_or("no recovery ran")?;
            if !rec.success() {
                return Err(format!("the re-run sync failed: {rec}"));
            }
            if read(&dst)? != refs.borrow().0 {
                return Err("after the re-run sync the target differs from the source".into());
            }
            if marker.exists() {
                return Err("the dirty marker is still there after a successful sync".into());
            }
            let leftovers: Vec<String> = fs::read_dir(d)
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.contains(".ckpt-sync-new."))
                .collect();
            if cleanup && !leftovers.is_empty() {
                return Err(format!("temporary targets left behind after recovery: {leftovers:?}"));
            }
            Ok(())
        });
    let report = explore(&spec).unwrap_or_else(|e| panic!("{test}: {e}"));
    finish(&test, &report);
}

#[test]
fn sparse_sync_onto_an_older_target() {
    sparse_sync(true, true);
}

#[test]
fn sparse_sync_to_a_new_target() {
    sparse_sync(false, false);
}

/// Finding: a first sync (no target yet) writes `.DST.ckpt-sync-new.PID`; interrupted, the
/// re-run writes its own temporary file under its own pid and never removes the old one,
/// so each interrupted first sync leaks a full-size copy of the image.
#[test]
fn sparse_sync_to_a_new_target_leaves_no_temporary_file() {
    sparse_sync(false, true);
}

// ---------------------------------------------------------------------------------------
// Native pool write + publish.

/// Which version of `fill_data` the restored tree `dir` holds, if it is one of them.
fn restored_version(dir: &Path) -> Option<u8> {
    (1..=2).find(|&v| {
        let a = fs::read(dir.join("a.bin")).ok();
        let b = fs::read(dir.join("b.txt")).ok();
        let c = fs::read(dir.join("sub/c.bin")).ok();
        a.as_deref() == Some(&noise(u64::from(v), 6000)[..])
            && b.as_deref() == Some(format!("version {v}\n").as_bytes())
            && c.as_deref() == Some(&noise(u64::from(v) + 100, 3000)[..])
    })
}

/// `ckpt write -o pool:SET` over a native pool that holds an older checkpoint: readers
/// (`ckpt restore pool:SET`) must find the old checkpoint or the new one, whole, in every
/// crash state, and the new one once `ckpt` has said it wrote it.
#[test]
fn native_pool_checkpoint_publish() {
    let test = "native pool checkpoint publish";
    if !common::strace_or_skip(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let set = work.join("native.set");
    let data = work.join("data");
    let target = format!("pool:{}", set.display());
    let op = Cmd::new(common::ckpt()).args(["write", "--style", "raw", "-o", &target]).arg(&data);
    let restores = std::cell::Cell::new(0u32);
    let spec = ExploreSpec::new(&work, op)
        .setup(|_| {
            fs::write(&set, set_text(&[&work.join("r0"), &work.join("r1")]))?;
            let o = ckpt(
                &[
                    "pool".as_ref(),
                    "create".as_ref(),
                    set.as_os_str(),
                    "--block-size".as_ref(),
                    "4KiB".as_ref(),
                ],
                tmp.path(),
            );
            assert!(o.success(), "ckpt pool create: {o}");
            fill_data(&data, 1)?;
            let o = ckpt(
                &[
                    "write".as_ref(),
                    "--style".as_ref(),
                    "raw".as_ref(),
                    "-o".as_ref(),
                    target.as_ref(),
                    data.as_os_str(),
                ],
                tmp.path(),
            );
            assert!(o.success(), "ckpt write (old): {o}");
            fill_data(&data, 2)?;
            Ok(())
        })
        .invariant(|_, crash: &Crash<'_>| {
            restores.set(restores.get() + 1);
            let out = tmp.path().join(format!("restore-{}", restores.get()));
            let o = ckpt(
                &["restore".as_ref(), target.as_ref(), "-C".as_ref(), out.as_os_str()],
                tmp.path(),
            );
            if !o.success() {
                return Err(format!("the pool does not restore: {o}"));
            }
            let version = restored_version(&out.join("data"))
                .ok_or("the restored tree is neither the old checkpoint nor the new one")?;
            if crash.said("ckpt: wrote") && version != 2 {
                return Err("ckpt acknowledged the write but readers get the old checkpoint".into());
            }
            let _ = fs::remove_dir_all(&out);
            Ok(())
        });
    let report = explore(&spec).unwrap_or_else(|e| panic!("{test}: {e}"));
    finish(test, &report);
}
