//! The real `ckpt` binary under the crash explorer: `fold` and `prune` of an incremental
//! chain. Every crash state they could leave must still restore, through whatever links it
//! holds, to exactly the tree the chain held before; a checkpoint built on the rewritten one
//! must restore too. Every test prints the number of states explored and checked.
//!
//! The chain, in the work directory: `a.ckpt` (self-contained) <- `b.ckpt` <- `c.ckpt` <-
//! `d.ckpt`, each storing a few changed 4 KiB blocks of about 300 KiB of data in three
//! files. `fold c.ckpt` and `prune c.ckpt` rewrite `c.ckpt` in place; `d.ckpt` builds on it.

mod common;

use ckpt_crashsim::{Cmd, Crash, ExploreSpec, Outcome, Report, explore};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

fn ckpt(args: &[&OsStr], dir: &Path) -> Outcome {
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

/// Bytes that do not compress (xorshift), so that checkpoints span many sectors.
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

/// Blocks of the files (4 KiB each).
const BIG_BLOCKS: u64 = 64;
const SMALL_BLOCKS: u64 = 10;

/// Block `block` of a file at version 1: every fourth block noise, the others text that
/// LZ4 compresses well (each block distinct). A folded checkpoint of every version then
/// stays under 128 KiB: `ckpt` writes larger checkpoints with a `pwritev` whose first
/// buffer is empty, which strace 6.1 does not hex-dump (it stops at the first empty
/// buffer), so the explorer refuses to record them.
fn first_block(file: u64, block: u64) -> Vec<u8> {
    if block.is_multiple_of(4) {
        return noise(file * 1000 + block, 4096);
    }
    format!("file {file} block {block} version 1. ").bytes().cycle().take(4096).collect()
}

fn first_file(file: u64, blocks: u64) -> Vec<u8> {
    (0..blocks).flat_map(|b| first_block(file, b)).collect()
}

/// Overwrites 4 KiB block `block` of `path` with fresh noise.
fn change_block(path: &Path, block: u64, seed: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all_at(&noise(seed, 4096), block * 4096)
}

/// Version `v` (1 to 4) of the checkpointed directory (about 300 KiB), each changing a
/// few blocks of the previous one.
fn fill_data(data: &Path, v: u8) -> std::io::Result<()> {
    let (big, small) = (data.join("big.bin"), data.join("sub/small.bin"));
    match v {
        1 => {
            fs::create_dir_all(data.join("sub"))?;
            fs::write(&big, first_file(1, BIG_BLOCKS))?;
            fs::write(&small, first_file(2, SMALL_BLOCKS))?;
            fs::write(data.join("v.txt"), "version 1\n")
        }
        // b.ckpt stores these blocks: the ones c.ckpt takes from it, and prune must move.
        2 => {
            for b in [3, 4, 41] {
                change_block(&big, b, 200 + b)?;
            }
            change_block(&small, 1, 299)?;
            fs::write(data.join("v.txt"), "version 2\n")
        }
        3 => {
            for b in [10, 50] {
                change_block(&big, b, 300 + b)?;
            }
            fs::write(data.join("v.txt"), "version 3\n")
        }
        _ => {
            change_block(&big, 61, 461)?;
            change_block(&small, 5, 405)?;
            fs::write(data.join("v.txt"), "version 4\n")
        }
    }
}

/// A directory's tree: relative path to `None` (a directory) or the file's bytes.
type Tree = BTreeMap<PathBuf, Option<Vec<u8>>>;

fn read_tree(root: &Path) -> Result<Tree, String> {
    fn walk(root: &Path, rel: &Path, out: &mut Tree) -> Result<(), String> {
        let dir = root.join(rel);
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
            let rel = rel.join(e.file_name());
            let ty = e.file_type().map_err(|e| format!("{}: {e}", rel.display()))?;
            if ty.is_dir() {
                out.insert(rel.clone(), None);
                walk(root, &rel, out)?;
            } else {
                let bytes = fs::read(e.path()).map_err(|e| format!("{}: {e}", rel.display()))?;
                out.insert(rel, Some(bytes));
            }
        }
        Ok(())
    }
    let mut out = Tree::new();
    walk(root, Path::new(""), &mut out)?;
    Ok(out)
}

/// The first difference between two trees, if any.
fn tree_diff(want: &Tree, got: &Tree) -> Option<String> {
    for (p, w) in want {
        match got.get(p) {
            None => return Some(format!("{} is missing", p.display())),
            Some(g) if g != w => return Some(format!("{} differs", p.display())),
            Some(_) => {}
        }
    }
    got.keys().find(|p| !want.contains_key(*p)).map(|p| format!("{} is extra", p.display()))
}

/// Restores checkpoints into fresh directories under `scratch` and compares them.
struct Restorer<'a> {
    scratch: &'a Path,
    count: Cell<u32>,
}

impl Restorer<'_> {
    fn fresh(&self, what: &str) -> PathBuf {
        self.count.set(self.count.get() + 1);
        self.scratch.join(format!("{what}-{}", self.count.get()))
    }

    /// Restores `ckpt` into a fresh directory and returns its tree.
    fn restore(&self, ckpt_file: &Path) -> Result<Tree, String> {
        let out = self.fresh("restore");
        let o = ckpt(
            &["restore".as_ref(), ckpt_file.as_os_str(), "-C".as_ref(), out.as_os_str()],
            self.scratch,
        );
        let tree = if o.success() {
            read_tree(&out)
        } else {
            Err(format!("ckpt restore {}: {o}", ckpt_file.display()))
        };
        let _ = fs::remove_dir_all(&out);
        tree
    }

    /// `ckpt_file` restores to exactly `want`.
    fn restores_to(&self, ckpt_file: &Path, want: &Tree) -> Result<(), String> {
        let name = ckpt_file.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let got = self.restore(ckpt_file)?;
        match tree_diff(want, &got) {
            None => Ok(()),
            Some(d) => Err(format!("{name} restores to another tree: {d}")),
        }
    }

    /// `ckpt_file` copied alone into an empty directory restores to exactly `want`.
    fn restores_alone_to(&self, ckpt_file: &Path, want: &Tree) -> Result<(), String> {
        let alone = self.fresh("alone");
        let name = ckpt_file.file_name().unwrap_or_default();
        let copy = alone.join(name);
        let r = fs::create_dir_all(&alone)
            .and_then(|()| fs::copy(ckpt_file, &copy))
            .map_err(|e| e.to_string())
            .and_then(|_| self.restores_to(&copy, want))
            .map_err(|e| format!("alone in a directory: {e}"));
        let _ = fs::remove_dir_all(&alone);
        r
    }
}

/// The paths of `ckpt info --json`'s chain, newest first (empty for a self-contained one).
fn chain_of(ckpt_file: &Path, dir: &Path) -> Result<Vec<String>, String> {
    let o = ckpt(&["info".as_ref(), "--json".as_ref(), ckpt_file.as_os_str()], dir);
    if !o.success() {
        return Err(format!("ckpt info --json {}: {o}", ckpt_file.display()));
    }
    let json: serde_json::Value = serde_json::from_slice(&o.stdout)
        .map_err(|e| format!("ckpt info --json {}: {e}", ckpt_file.display()))?;
    match &json["chain"] {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Array(links) => Ok(links
            .iter()
            .map(|l| {
                let p = Path::new(l["path"].as_str().unwrap_or(""));
                p.file_name().unwrap_or_default().to_string_lossy().into_owned()
            })
            .collect()),
        other => Err(format!("ckpt info --json {}: chain is {other}", ckpt_file.display())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ChainOp {
    Fold,
    Prune,
}

/// What the setup keeps for the checks: the files' bytes before the operation and the
/// trees c.ckpt and d.ckpt restore to.
#[derive(Default)]
struct Before {
    files: BTreeMap<&'static str, Vec<u8>>,
    tree_c: Tree,
    tree_d: Tree,
}

const NAMES: [&str; 4] = ["a.ckpt", "b.ckpt", "c.ckpt", "d.ckpt"];

/// Writes the chain into `work` (each link from the next version of `data`), checks that
/// each link restores to the data it was written from, and keeps what the checks need.
fn build_chain(
    work: &Path,
    data: &Path,
    restorer: &Restorer<'_>,
) -> Result<Before, Box<dyn std::error::Error>> {
    let mut before = Before::default();
    for (v, name) in (1u8..).zip(NAMES) {
        fill_data(data, v)?;
        let out = work.join(name);
        let mut args: Vec<&OsStr> = vec!["write".as_ref(), "-o".as_ref(), out.as_os_str()];
        let parent = (v > 1).then(|| work.join(NAMES[usize::from(v) - 2]));
        if let Some(p) = &parent {
            args.extend(["--parent".as_ref(), p.as_os_str()]);
        }
        args.push(data.as_os_str());
        let o = ckpt(&args, restorer.scratch);
        assert!(o.success(), "ckpt write {name}: {o}");
        let mut want: Tree =
            read_tree(data)?.into_iter().map(|(p, b)| (Path::new("data").join(p), b)).collect();
        want.insert("data".into(), None);
        let got = restorer.restore(&out)?;
        if let Some(d) = tree_diff(&want, &got) {
            return Err(
                format!("{name} does not restore to the data it was written from: {d}").into()
            );
        }
        match name {
            "c.ckpt" => before.tree_c = got,
            "d.ckpt" => before.tree_d = got,
            _ => {}
        }
    }
    for name in NAMES {
        before.files.insert(name, fs::read(work.join(name))?);
    }
    let chain = chain_of(&work.join("d.ckpt"), restorer.scratch)?;
    assert_eq!(chain, ["d.ckpt", "c.ckpt", "b.ckpt", "a.ckpt"], "the chain of d.ckpt");
    Ok(before)
}

/// The invariant of a crash state `d` of `op` on c.ckpt.
fn check_state(
    op: ChainOp,
    d: &Path,
    crash: &Crash<'_>,
    b: &Before,
    restorer: &Restorer<'_>,
) -> Result<(), String> {
    let file = |n: &str| fs::read(d.join(n)).ok();
    let c = file("c.ckpt").ok_or("c.ckpt is missing")?;
    let c_is_old = c == b.files["c.ckpt"];
    // The other files: a.ckpt and d.ckpt are never touched; b.ckpt is untouched (fold), or
    // untouched or gone (prune), and gone only once the new c.ckpt no longer needs it.
    for name in ["a.ckpt", "b.ckpt", "d.ckpt"] {
        match file(name) {
            Some(bytes) if bytes == b.files[name] => {}
            Some(_) => return Err(format!("{name} changed")),
            None if op == ChainOp::Prune && name == "b.ckpt" => {
                if c_is_old {
                    return Err(
                        "b.ckpt is gone but c.ckpt is still the old one, built on it".into()
                    );
                }
            }
            None => return Err(format!("{name} is missing")),
        }
    }
    let chain = chain_of(&d.join("c.ckpt"), d)?;
    if c_is_old {
        if chain != ["c.ckpt", "b.ckpt", "a.ckpt"] {
            return Err(format!("the old c.ckpt shows the chain {chain:?}"));
        }
        if crash.said("ckpt: folded") || crash.said("now builds on") {
            return Err(format!("ckpt acknowledged the {op:?} but c.ckpt is the old checkpoint"));
        }
    } else {
        match op {
            ChainOp::Fold => {
                if !chain.is_empty() {
                    return Err(format!("the new c.ckpt is not self-contained: chain {chain:?}"));
                }
                restorer.restores_alone_to(&d.join("c.ckpt"), &b.tree_c)?;
            }
            ChainOp::Prune => {
                if chain != ["c.ckpt", "a.ckpt"] {
                    return Err(format!("the new c.ckpt shows the chain {chain:?}"));
                }
            }
        }
    }
    // Through whatever links this state holds.
    restorer.restores_to(&d.join("c.ckpt"), &b.tree_c)?;
    if crash.said("ckpt: removed") && file("b.ckpt").is_some() {
        return Err("ckpt said it removed b.ckpt but it is still there".into());
    }
    // The checkpoint built on c.ckpt beforehand still restores.
    restorer.restores_to(&d.join("d.ckpt"), &b.tree_d).map_err(|e| format!("the grandchild: {e}"))
}

fn chain_op(op: ChainOp) {
    let verb = if op == ChainOp::Fold { "fold" } else { "prune" };
    let test = format!("{verb} of an incremental checkpoint");
    if !common::strace_or_skip(&test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let data = tmp.path().join("data");
    let scratch = tmp.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let restorer = Restorer { scratch: &scratch, count: Cell::new(0) };
    let before = RefCell::new(Before::default());
    let operation = Cmd::new(common::ckpt()).arg(verb).arg(work.join("c.ckpt"));
    let spec = ExploreSpec::new(&work, operation)
        .setup(|_| {
            *before.borrow_mut() = build_chain(&work, &data, &restorer)?;
            Ok(())
        })
        .invariant(|d, crash| check_state(op, d, crash, &before.borrow(), &restorer));
    let report = explore(&spec).unwrap_or_else(|e| panic!("{test}: {e}"));
    // The recorded run went all the way: folded, or rebased and the parent removed.
    let said = report.operation.text();
    let done: &[&str] = match op {
        ChainOp::Fold => &["ckpt: folded"],
        ChainOp::Prune => &["now builds on", "ckpt: removed"],
    };
    assert!(done.iter().all(|w| said.contains(w)), "{test}: ckpt said: {said}");
    finish(&test, &report);
}

#[test]
fn fold_of_an_incremental_checkpoint() {
    chain_op(ChainOp::Fold);
}

#[test]
fn prune_of_an_incremental_checkpoint() {
    chain_op(ChainOp::Prune);
}
