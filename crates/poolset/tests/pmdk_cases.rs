//! PMDK 1.12's own `pmempool sync` and `pmempool transform` test cases
//! (`src/test/pmempool_sync/TESTn`, `src/test/pmempool_transform/TESTn`), ported: each test
//! builds the pool exactly as the PMDK script does (same set files, sizes, options and part
//! layout, `pmempool create obj`), writes data through libpmemobj where the script writes
//! with `pmemobjcli` (a seeded root object instead of strings), applies the same damage,
//! then makes two identical copies of the pool directory. On one copy the real
//! `pmempool sync` / `pmempool transform` runs with the script's flags; on the other,
//! ckpt's library `sync` / `transform` with the same options.
//!
//! After every run that succeeds (either tool): `pmempool check` calls the set consistent
//! and libpmemobj reads the root object back from every replica (a dry run must also leave
//! every file as it was). After every refusal by ckpt: no file changed, no journal or
//! temporary part is left, and where the pool is whole it still reads back with its own
//! set file. Then the outcomes are compared: where PMDK refuses, ckpt refuses too or
//! succeeds with the data intact; where PMDK succeeds, ckpt must succeed too, unless the
//! case is in [`KNOWN_DIFFERENCES`] with its reason. PMDK itself must do what its script
//! expects (`expect_normal_exit` / `expect_abnormal_exit`), or the port is wrong. A run that
//! succeeds but leaves the data unreadable (or overwrites another pool's part) fails the
//! test, with a message naming the case, the tool and the step.
//!
//! Each test prints one line
//! `PMDK-CASE <tool>/TEST<n> pmdk=<ok|refused> ckpt=<ok|refused> verdict=<...>`; run with
//! `cargo test -p ckpt-poolset --test pmdk_cases -- --nocapture | grep PMDK-CASE`.
//! The table of all 81 PMDK cases, ported or not, is in `docs/poolset-pmdk-cases.md`.

mod common;

use ckpt_poolset::header::{PoolHeader, Uuid};
use ckpt_poolset::sync::{SyncOptions, sync};
use ckpt_poolset::transform::{TransformOptions, transform};
use common::{
    create_obj_pool, file_hashes, libpmemobj_or_skip, pmempool_check, pmempool_or_skip, read_at,
    root_pattern, run_pmempool, verify_root, verify_root_in_every_replica, write_at, write_root,
    write_set_named,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The layout PMDK's scripts use (`OBJ_LAYOUT$SUFFIX`, without the unicode suffix).
const LAYOUT: &str = "OBJ_LAYOUT";
/// The seed of the root object's pattern.
const SEED: u64 = 0x0d0c_1a55;
/// One MiB, as `M` in the scripts' sizes (`pr 55M` is a root object of 55 MiB).
const M: usize = 1 << 20;
/// The root object of the cases whose PMDK script writes no data (only `pmempool`): small,
/// so that it fits every pool, and enough to prove the pool's data survives.
const SMALL_ROOT: usize = 2 * M;

/// Cases where ckpt refuses a run that PMDK completes, on purpose, each with the reason.
/// A case that refuses where PMDK works and is not listed here fails its test.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

/// A part line of a set file: (size, file name in the case's directory).
type Part = (&'static str, &'static str);

// ---------------------------------------------------------------------------------------
// Outcomes and verdicts
// ---------------------------------------------------------------------------------------

/// What one run of one tool did.
#[derive(Debug, Clone)]
enum Outcome {
    Ok,
    /// Refused, with the tool's message (pmempool's output, or ckpt's error's Display).
    Refused(String),
}

impl Outcome {
    fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }

    fn word(&self) -> &'static str {
        if self.is_ok() { "ok" } else { "refused" }
    }
}

/// What the PMDK script expects of a step (`expect_normal_exit` / `expect_abnormal_exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pmdk {
    Ok,
    Refuses,
}

/// Which tool a copy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Pmdk,
    Ckpt,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Self::Pmdk => "pmempool",
            Self::Ckpt => "ckpt",
        }
    }
}

// ---------------------------------------------------------------------------------------
// A case: the pool as the script builds it, then one copy per tool
// ---------------------------------------------------------------------------------------

/// The pool directory of one case, before any tool runs.
struct Case {
    /// `sync/TESTn` or `transform/TESTn`.
    id: &'static str,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Case {
    /// A fresh directory for case `id`; `None` (after a loud SKIPPED line) without PMDK.
    fn new(test: &str, id: &'static str) -> Option<Self> {
        pmempool_or_skip(test)?;
        if !libpmemobj_or_skip(test) {
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(tmp.path()).expect("canonicalize");
        Some(Self { id, _tmp: tmp, dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes the set file `name` as the script's `create_poolset` does.
    fn set(&self, name: &str, replicas: &[&[Part]], options: &[&str]) -> PathBuf {
        write_set_named(&self.dir, name, replicas, options)
    }

    fn rm(&self, names: &[&str]) {
        for name in names {
            fs::remove_file(self.path(name)).unwrap_or_else(|e| panic!("rm {name}: {e}"));
        }
    }

    /// Runs `steps` on a copy for each tool, compares the outcomes step by step with each
    /// other and with what the PMDK script expects, prints the `PMDK-CASE` line and fails
    /// the test where ckpt refuses what PMDK does (unless the case is a known difference).
    fn run(&self, expected: &[Pmdk], steps: impl Fn(&Copy)) {
        let pmdk = self.copy(Tool::Pmdk);
        let ckpt = self.copy(Tool::Ckpt);
        steps(&pmdk);
        steps(&ckpt);
        let pmdk_log = pmdk.log.into_inner();
        let ckpt_log = ckpt.log.into_inner();
        assert_eq!(pmdk_log.len(), expected.len(), "{}: steps run by pmempool", self.id);
        assert_eq!(ckpt_log.len(), expected.len(), "{}: steps run by ckpt", self.id);
        // The port reproduces the case only if PMDK does what its own script expects.
        for (i, ((what, p), want)) in pmdk_log.iter().zip(expected).enumerate() {
            assert_eq!(
                if p.is_ok() { Pmdk::Ok } else { Pmdk::Refuses },
                *want,
                "{} step {} ({what}): pmempool did not do what PMDK's script expects: {p:?}",
                self.id,
                i + 1
            );
        }
        let differing =
            pmdk_log.iter().zip(&ckpt_log).position(|((_, p), (_, c))| p.is_ok() != c.is_ok());
        // The step the line reports: the first that differs, else the first PMDK refuses
        // (the one the case is about), else the last.
        let shown = differing
            .or_else(|| pmdk_log.iter().position(|(_, p)| !p.is_ok()))
            .unwrap_or(pmdk_log.len() - 1);
        let (p, c) = (&pmdk_log[shown].1, &ckpt_log[shown].1);
        let verdict = match (p.is_ok(), c.is_ok()) {
            (true, true) | (false, false) => "agree",
            (false, true) => "ckpt-better",
            (true, false) => "ckpt-refuses-where-pmdk-works",
        };
        println!("PMDK-CASE {} pmdk={} ckpt={} verdict={verdict}", self.id, p.word(), c.word());
        if verdict == "ckpt-refuses-where-pmdk-works" {
            let known = KNOWN_DIFFERENCES.iter().find(|(id, _)| *id == self.id);
            if let Some((_, reason)) = known {
                println!("  {}: a known difference: {reason}", self.id);
            }
            assert!(
                known.is_some(),
                "{}: ckpt refuses step {} ({}) that pmempool completes; ckpt said: {}",
                self.id,
                shown + 1,
                ckpt_log[shown].0,
                match c {
                    Outcome::Refused(m) => m.as_str(),
                    Outcome::Ok => "",
                }
            );
        }
    }

    /// Copies the whole directory (parts, part directories, set files) into a fresh one,
    /// rewriting the paths inside the set files.
    fn copy(&self, tool: Tool) -> Copy {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(tmp.path()).expect("canonicalize");
        copy_tree(&self.dir, &dir);
        let from = format!("{}/", self.dir.display());
        let to = format!("{}/", dir.display());
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if !path.is_file() {
                continue;
            }
            let bytes = fs::read(&path).expect("read");
            if bytes.starts_with(b"PMEMPOOLSET") {
                let text = String::from_utf8(bytes).expect("a set file is text");
                fs::write(&path, text.replace(&from, &to)).expect("write set");
            }
        }
        Copy { id: self.id, tool, _tmp: tmp, dir, log: RefCell::new(Vec::new()) }
    }
}

/// One tool's copy of a case's pool directory.
struct Copy {
    id: &'static str,
    tool: Tool,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// Every step run, with its outcome.
    log: RefCell<Vec<(String, Outcome)>>,
}

impl Copy {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn rm(&self, names: &[&str]) {
        for name in names {
            fs::remove_file(self.path(name)).unwrap_or_else(|e| panic!("rm {name}: {e}"));
        }
    }

    /// `pmempool sync ARGS SET` on the PMDK copy; ckpt's `sync` with the same options
    /// (`-d`: dry run; `-v` only makes pmempool talk) on the other.
    fn sync(&self, set: &str, args: &[&str]) -> Outcome {
        let set_path = self.path(set);
        let dry_run = args.contains(&"-d");
        let what = format!("sync {}{set}", flags(args));
        self.step(what, dry_run, || match self.tool {
            Tool::Pmdk => {
                let mut command: Vec<&std::ffi::OsStr> = vec!["sync".as_ref()];
                command.extend(args.iter().map(|flag| -> &std::ffi::OsStr { flag.as_ref() }));
                command.push(set_path.as_ref());
                pmempool_outcome(&command)
            }
            Tool::Ckpt => match sync(&set_path, &SyncOptions { dry_run }, &mut |_, _| {}) {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Refused(e.to_string()),
            },
        })
    }

    /// `pmempool transform ARGS SRC DST`, or ckpt's `transform` with the same options.
    fn transform(&self, src: &str, dst: &str, args: &[&str]) -> Outcome {
        let (src_path, dst_path) = (self.path(src), self.path(dst));
        let dry_run = args.contains(&"-d");
        let what = format!("transform {}{src} {dst}", flags(args));
        self.step(what, dry_run, || match self.tool {
            Tool::Pmdk => {
                let mut command: Vec<&std::ffi::OsStr> = vec!["transform".as_ref()];
                command.extend(args.iter().map(|flag| -> &std::ffi::OsStr { flag.as_ref() }));
                command.push(src_path.as_ref());
                command.push(dst_path.as_ref());
                pmempool_outcome(&command)
            }
            Tool::Ckpt => {
                let opts = TransformOptions { dry_run };
                match transform(&src_path, &dst_path, &opts, &mut |_, _| {}) {
                    Ok(_) => Outcome::Ok,
                    Err(e) => Outcome::Refused(e.to_string()),
                }
            }
        })
    }

    /// Runs one step: a dry run that succeeds must change nothing; a refusal by ckpt must
    /// change nothing and leave no journal or temporary part.
    fn step(&self, what: String, dry_run: bool, run: impl FnOnce() -> Outcome) -> Outcome {
        let before = tree_hashes(&self.dir);
        let outcome = run();
        let after = tree_hashes(&self.dir);
        if outcome.is_ok() && dry_run {
            assert_eq!(
                after,
                before,
                "{}: {}'s dry run `{what}` changed files",
                self.id,
                self.tool.name()
            );
        }
        if let (Tool::Ckpt, Outcome::Refused(msg)) = (self.tool, &outcome) {
            assert_eq!(
                after, before,
                "{}: ckpt refused `{what}` ({msg}) but changed files",
                self.id
            );
        }
        if self.tool == Tool::Ckpt {
            let left = leftovers(&self.dir);
            assert!(
                left.is_empty(),
                "{}: ckpt's `{what}` ({}) left {left:?}",
                self.id,
                outcome.word()
            );
        }
        let mut log = self.log.borrow_mut();
        let text = match &outcome {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Refused(msg) => format!("refused: {}", msg.trim().replace('\n', "\n      ")),
        };
        println!("  {} [{}] step {}: {what}: {text}", self.id, self.tool.name(), log.len() + 1);
        log.push((what, outcome.clone()));
        outcome
    }

    /// The pool of set file `set` is whole: `pmempool check` calls it consistent and the
    /// root object of `len` bytes reads back through libpmemobj from every replica.
    fn assert_whole(&self, set: &str, len: usize) {
        let set_path = self.path(set);
        self.assert_consistent(set);
        verify_root_in_every_replica(&set_path, SEED, len).unwrap_or_else(|e| {
            panic!(
                "{}: after {}'s {}, the data of {set} does not read back through libpmemobj: {e}",
                self.id,
                self.tool.name(),
                self.last_step()
            )
        });
    }

    /// The last step run and its outcome, for messages.
    fn last_step(&self) -> String {
        self.log.borrow().last().map_or_else(
            || "preparation".to_owned(),
            |(what, out)| format!("`{what}` (step {}, {})", self.log.borrow().len(), out.word()),
        )
    }

    /// `pmempool check` calls the set consistent.
    fn assert_consistent(&self, set: &str) {
        let check = pmempool_check(&self.path(set));
        assert!(
            check.consistent,
            "{}: after {}'s {}, pmempool check {set} fails:\n{}",
            self.id,
            self.tool.name(),
            self.last_step(),
            check.output
        );
    }

    /// For the step that just ran: if it succeeded, the pool of `set` is whole.
    fn whole_if_ok(&self, out: &Outcome, set: &str, len: usize) {
        if out.is_ok() {
            self.assert_whole(set, len);
        }
    }

    /// For the step that just ran: if ckpt refused it, the pool (which was whole before)
    /// still reads back with its own set file `set`.
    fn whole_if_ckpt_refused(&self, out: &Outcome, set: &str, len: usize) {
        if self.tool == Tool::Ckpt && !out.is_ok() {
            self.assert_whole(set, len);
        }
    }

    fn assert_absent(&self, names: &[&str]) {
        for name in names {
            assert!(
                !self.path(name).exists(),
                "{}: {name} exists after {}'s run",
                self.id,
                self.tool.name()
            );
        }
    }
}

fn flags(args: &[&str]) -> String {
    args.iter().fold(String::new(), |mut out, flag| {
        out.push_str(flag);
        out.push(' ');
        out
    })
}

fn pmempool_outcome(command: &[&std::ffi::OsStr]) -> Outcome {
    let out = run_pmempool(command);
    if out.status.success() {
        Outcome::Ok
    } else {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Outcome::Refused(text)
    }
}

/// Copies a directory tree (files keep their permissions).
fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.expect("dir entry").path();
        let dst = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            fs::create_dir(&dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
            copy_tree(&path, &dst);
        } else {
            fs::copy(&path, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        }
    }
}

/// [`file_hashes`] of `dir` and of every directory under it, by relative path (lock
/// files aside); directories themselves are listed too, so a new one shows.
fn tree_hashes(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    tree_hashes_into(dir, "", &mut out);
    out
}

fn tree_hashes_into(dir: &Path, prefix: &str, out: &mut BTreeMap<String, (u64, u64)>) {
    for (name, hash) in file_hashes(dir) {
        out.insert(format!("{prefix}{name}"), hash);
    }
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            let name =
                format!("{prefix}{}/", path.file_name().unwrap_or_default().to_string_lossy());
            out.insert(name.clone(), (0, 0));
            tree_hashes_into(&path, &name, out);
        }
    }
}

/// ckpt's journals and temporary parts anywhere under `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if path.is_dir() {
            out.extend(leftovers(&path));
        } else if name.ends_with(".ckpt-journal")
            || name.ends_with(".ckpt-journal.tmp")
            || name.ends_with(".ckpt-build")
        {
            out.push(path);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The scripts' tools: pmemspoil, ddmap, zero_blocks, and reading a replica's bytes
// ---------------------------------------------------------------------------------------

/// `pmemspoil F pool_hdr.uuid=0000000000000000`: 16 ASCII '0' bytes over the part's uuid
/// (bytes 40..56), checksum left stale.
fn spoil_uuid(part: &Path) {
    write_at(part, 40, &[b'0'; 16]);
}

/// The same with `pool_hdr.f:checksum_gen`: the header checksum is recomputed, so the
/// header is valid and names a uuid no other part links to.
fn spoil_uuid_checksum_gen(part: &Path) {
    let mut bytes = read_at(part, 0, 4096);
    bytes[40..56].fill(b'0');
    let mut header = PoolHeader::decode(&bytes).expect("decode the header");
    assert_eq!(header.uuid, Uuid([b'0'; 16]));
    header.seal();
    write_at(part, 0, &header.encode());
    assert!(PoolHeader::decode(&read_at(part, 0, 4096)).unwrap().verify_checksum().is_ok());
}

/// Where pool byte `offset` of a replica lies: (part index, file offset). Parts of
/// `sizes` bytes (4 KiB multiples); each part but the first starts with a 4 KiB header
/// (no `SINGLEHDR`).
fn locate(sizes: &[u64], offset: u64) -> (usize, u64) {
    let mut start = 0;
    for (p, &size) in sizes.iter().enumerate() {
        let header = if p == 0 { 0 } else { 4096 };
        let data = size - header;
        if offset < start + data {
            return (p, header + offset - start);
        }
        start += data;
    }
    panic!("pool offset {offset:#x} is past the replica ({sizes:?})");
}

/// `len` bytes of a replica's pool address space from `offset`, read across its parts.
fn read_pool(parts: &[PathBuf], sizes: &[u64], offset: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut at = offset;
    while out.len() < len {
        let (p, file_offset) = locate(sizes, at);
        let left_in_part = sizes[p] - file_offset;
        let n = usize::try_from(left_in_part).unwrap().min(len - out.len());
        out.extend(read_at(&parts[p], file_offset, n));
        at += n as u64;
    }
    out
}

/// Reads the root object through libpmemobj from every replica of a set whose parts are
/// directories (`OPTION SINGLEHDR`, one directory per replica), as
/// [`verify_root_in_every_replica`] does for part files: each replica's directory is
/// copied and listed first in a set of its own.
fn verify_root_in_every_directory_replica(set: &Path, len: usize) -> Result<(), String> {
    let text = fs::read_to_string(set).map_err(|e| e.to_string())?;
    let lines: Vec<(String, PathBuf)> = text
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(size, _)| size.as_bytes().first().is_some_and(u8::is_ascii_digit))
        .map(|(size, path)| (size.to_owned(), PathBuf::from(path.trim())))
        .collect();
    for first in 0..lines.len() {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut out = String::from("PMEMPOOLSET\nOPTION SINGLEHDR\n");
        for k in 0..lines.len() {
            let r = (first + k) % lines.len();
            let copy = scratch.path().join(format!("r{r}"));
            fs::create_dir(&copy).map_err(|e| e.to_string())?;
            copy_tree(&lines[r].1, &copy);
            if k > 0 {
                out.push_str("REPLICA\n");
            }
            writeln!(out, "{} {}", lines[r].0, copy.display()).unwrap();
        }
        let rotated = scratch.path().join("rotated.set");
        fs::write(&rotated, out).map_err(|e| e.to_string())?;
        verify_root(&rotated, SEED, len).map_err(|e| format!("replica {first}: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// pmempool_sync
// ---------------------------------------------------------------------------------------

/// sync/TEST0..1, 12, 26's `pool0.set`: `20M testfile1 20M testfile2 21M testfile3 R 40M
/// testfile4 20M testfile5`.
const POOL0: [&[Part]; 2] = [
    &[("20M", "testfile1"), ("20M", "testfile2"), ("21M", "testfile3")],
    &[("40M", "testfile4"), ("20M", "testfile5")],
];

/// sync/TEST2, 3, 5's `pool0.set`: `20M testfile00 30M testfile01 R 30M testfile10 20M
/// testfile11`.
const POOL_2X2_UNEVEN: [&[Part]; 2] = [
    &[("20M", "testfile00"), ("30M", "testfile01")],
    &[("30M", "testfile10"), ("20M", "testfile11")],
];

/// Ports sync/TEST0: part 0 of the master has a stale header checksum (its uuid spoiled),
/// and 9 wrong bytes were written into the data of every master part (at root+0, +20M and
/// +40M). Both tools rebuild part 0 from replica 1 (the root's bytes in it are right
/// again) and leave the healthy parts 1 and 2 alone: their wrong bytes stay, as PMDK's
/// script expects (data in healthy parts is not compared).
#[test]
fn sync_test00_bad_header_checksum_in_master_part0() {
    let Some(case) = Case::new("sync_test00_bad_header_checksum_in_master_part0", "sync/TEST0")
    else {
        return;
    };
    let set = case.set("pool0.set", &POOL0, &[]);
    create_obj_pool(&set, LAYOUT);
    let len = 55 * M;
    let root = write_root(&set, SEED, len).offset;
    let sizes = [20 << 20, 20 << 20, 21 << 20];
    let wrong: [(u64, &[u8; 9]); 3] =
        [(0, b"Wrong1234"), (20 << 20, b"Wrong5678"), (40 << 20, b"Wrong9ABC")];
    for (at, bytes) in wrong {
        let (p, offset) = locate(&sizes, root + at);
        assert_eq!(p, usize::try_from(at >> 20).unwrap() / 20, "the script's part for root+{at}");
        write_at(&case.path(["testfile1", "testfile2", "testfile3"][p]), offset, bytes);
    }
    spoil_uuid(&case.path("testfile1"));
    case.run(&[Pmdk::Ok], |c| {
        let out = c.sync("pool0.set", &[]);
        if !out.is_ok() {
            return;
        }
        c.assert_consistent("pool0.set");
        let master: Vec<PathBuf> =
            ["testfile1", "testfile2", "testfile3"].iter().map(|n| c.path(n)).collect();
        let mut expected = root_pattern(SEED, len);
        for (at, bytes) in &wrong[1..] {
            let at = usize::try_from(*at).unwrap();
            expected[at..at + 9].copy_from_slice(*bytes);
        }
        let got = read_pool(&master, &sizes, root, len);
        let part0 = usize::try_from((20 << 20) - root).unwrap();
        assert!(
            got[..part0] == expected[..part0],
            "{}: part 0 was not rebuilt from replica 1",
            c.id
        );
        assert_eq!(&got[20 << 20..(20 << 20) + 9], b"Wrong5678", "{}: part 1 was changed", c.id);
        assert_eq!(&got[40 << 20..(40 << 20) + 9], b"Wrong9ABC", "{}: part 2 was changed", c.id);
        assert!(got == expected, "{}: the master's root bytes differ elsewhere", c.id);
        let replica: Vec<PathBuf> = ["testfile4", "testfile5"].iter().map(|n| c.path(n)).collect();
        let got = read_pool(&replica, &[40 << 20, 20 << 20], root, len);
        assert!(got == root_pattern(SEED, len), "{}: replica 1's root bytes changed", c.id);
    });
}

/// Ports sync/TEST1: the middle part of the master is deleted; both tools rebuild it and
/// the data reads back from every replica.
#[test]
fn sync_test01_missing_middle_part() {
    let Some(case) = Case::new("sync_test01_missing_middle_part", "sync/TEST1") else {
        return;
    };
    let set = case.set("pool0.set", &POOL0, &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 55 * M);
    case.rm(&["testfile2"]);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", 55 * M);
    });
}

/// Ports sync/TEST2 (pmem/issues#254): 12 bytes appended to part 0 of replica 1, so the file
/// is longer than the set file says. Both tools sync without harm.
#[test]
fn sync_test02_part_longer_than_declared() {
    let Some(case) = Case::new("sync_test02_part_longer_than_declared", "sync/TEST2") else {
        return;
    };
    let set = case.set("pool0.set", &POOL_2X2_UNEVEN, &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    let part = case.path("testfile10");
    let size = fs::metadata(&part).unwrap().len();
    write_at(&part, size, b"some string\n");
    case.run(&[Pmdk::Ok], |c| {
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", 45 * M);
    });
}

/// Ports sync/TEST3 (pmem/issues#257): a dry run with a part missing succeeds, changes no
/// file and does not recreate the part.
#[test]
fn sync_test03_dry_run_missing_part() {
    let Some(case) = Case::new("sync_test03_dry_run_missing_part", "sync/TEST3") else {
        return;
    };
    let set = case.set("pool0.set", &POOL_2X2_UNEVEN, &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    case.rm(&["testfile01"]);
    case.run(&[Pmdk::Ok], |c| {
        c.sync("pool0.set", &["-d"]);
        c.assert_absent(&["testfile01"]);
    });
}

/// Ports sync/TEST4 (pmem/issues#269): the first part of the master, the one holding the
/// pool header and descriptor, is deleted; both tools rebuild it.
#[test]
fn sync_test04_missing_first_part_of_master() {
    let Some(case) = Case::new("sync_test04_missing_first_part_of_master", "sync/TEST4") else {
        return;
    };
    let replicas: [&[Part]; 2] = [
        &[("20M", "testfile00"), ("20M", "testfile01")],
        &[("20M", "testfile10"), ("20M", "testfile11")],
    ];
    let set = case.set("pool0.set", &replicas, &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 30 * M);
    case.rm(&["testfile00"]);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", 30 * M);
    });
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode()
        & 0o777
}

/// Ports sync/TEST5 (pmem/issues#275): a rebuilt part gets the mode of the parts around it:
/// first pmempool's default, then 0600 after `chmod 600` of every part. (The script writes
/// no data; a small root object is written to check the data too.)
#[test]
fn sync_test05_rebuilt_part_keeps_file_mode() {
    let Some(case) = Case::new("sync_test05_rebuilt_part_keeps_file_mode", "sync/TEST5") else {
        return;
    };
    let set = case.set("pool0.set", &POOL_2X2_UNEVEN, &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.run(&[Pmdk::Ok, Pmdk::Ok], |c| {
        let created = mode(&c.path("testfile00"));
        c.rm(&["testfile01"]);
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", SMALL_ROOT);
        if out.is_ok() {
            assert_eq!(mode(&c.path("testfile01")), created, "{}: {:?}", c.id, c.tool);
        }
        c.rm(&["testfile10"]);
        for name in ["testfile00", "testfile01", "testfile11"] {
            fs::set_permissions(c.path(name), fs::Permissions::from_mode(0o600)).unwrap();
        }
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", SMALL_ROOT);
        if out.is_ok() {
            assert_eq!(mode(&c.path("testfile10")), 0o600, "{}: {:?}", c.id, c.tool);
            assert_eq!(mode(&c.path("testfile11")), 0o600, "{}: {:?}", c.id, c.tool);
        }
    });
}

/// sync/TEST8..10's `poolset1`: `20M part00 20M part01 R 20M part10 20M part11`.
const POOLSET1_2X2: [&[Part]; 2] =
    [&[("20M", "part00"), ("20M", "part01")], &[("20M", "part10"), ("20M", "part11")]];

/// Ports sync/TEST8 (pmem/issues#302): replica 1 is deleted and the set file used for the
/// sync declares its part 1 as 1M, below libpmemobj's minimum part size. Both refuse.
#[test]
fn sync_test08_part_below_minimum() {
    let Some(case) = Case::new("sync_test08_part_below_minimum", "sync/TEST8") else {
        return;
    };
    let set = case.set("poolset1", &POOLSET1_2X2, &[]);
    case.set("poolset2", &[POOLSET1_2X2[0], &[("20M", "part10"), ("1M", "part11")]], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.rm(&["part10", "part11"]);
    case.run(&[Pmdk::Refuses], |c| {
        let out = c.sync("poolset2", &[]);
        c.whole_if_ok(&out, "poolset2", SMALL_ROOT);
    });
}

/// Ports sync/TEST9 (pmem/issues#304): the set file shrinks replica 1 below the pool's
/// size (part 1 declared 10M); then, with the master deleted too, there is no healthy
/// replica. Both refuse both times. (The script writes no data; a small root object is
/// written to check that the first refusal left the pool whole.)
#[test]
fn sync_test09_replica_too_small_then_no_healthy_replica() {
    let Some(case) =
        Case::new("sync_test09_replica_too_small_then_no_healthy_replica", "sync/TEST9")
    else {
        return;
    };
    let set = case.set("poolset1", &POOLSET1_2X2, &[]);
    case.set("poolset2", &[POOLSET1_2X2[0], &[("20M", "part10"), ("10M", "part11")]], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.run(&[Pmdk::Refuses, Pmdk::Refuses], |c| {
        let out = c.sync("poolset2", &[]);
        c.whole_if_ok(&out, "poolset2", SMALL_ROOT);
        c.whole_if_ckpt_refused(&out, "poolset1", SMALL_ROOT);
        c.rm(&["part00", "part01"]);
        let out = c.sync("poolset2", &[]);
        c.whole_if_ok(&out, "poolset2", SMALL_ROOT);
    });
}

/// Ports sync/TEST10: the set file adds a replica the pool never had (an "alien replica";
/// adding one is transform's job). Both refuse, and the pool is still whole with its own
/// set file. (A small root object is written to check that.)
#[test]
fn sync_test10_alien_replica() {
    let Some(case) = Case::new("sync_test10_alien_replica", "sync/TEST10") else {
        return;
    };
    let set = case.set("poolset1", &POOLSET1_2X2[..1], &[]);
    case.set("poolset2", &POOLSET1_2X2, &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.run(&[Pmdk::Refuses], |c| {
        let out = c.sync("poolset2", &[]);
        c.whole_if_ok(&out, "poolset2", SMALL_ROOT);
        c.whole_if_ckpt_refused(&out, "poolset1", SMALL_ROOT);
    });
}

/// Ports sync/TEST11 (pmem/issues#344): replicas of two different pools in one set file,
/// with the first 10 bytes of pool A's master and of pool B's only part zeroed (`ddmap -n
/// 10`: the signature). PMDK refuses ("gathering uuids failed"). A run that succeeds must
/// leave pool A whole and must not have overwritten pool B's part, which still holds pool
/// B's data. (The script writes no data; small root objects are written into both pools.)
#[test]
fn sync_test11_replicas_of_two_pools() {
    let Some(case) = Case::new("sync_test11_replicas_of_two_pools", "sync/TEST11") else {
        return;
    };
    let pool_a = case.set("poolset1", &[&[("10M", "part00")], &[("10M", "part10")]], &[]);
    let pool_b = case.set("poolset2", &[&[("10M", "part20")]], &[]);
    case.set("poolset3", &[&[("10M", "part00")], &[("10M", "part10")], &[("10M", "part20")]], &[]);
    create_obj_pool(&pool_a, LAYOUT);
    create_obj_pool(&pool_b, LAYOUT);
    write_root(&pool_a, SEED, SMALL_ROOT);
    write_root(&pool_b, SEED ^ 0xb, SMALL_ROOT);
    for part in ["part00", "part20"] {
        write_at(&case.path(part), 0, &[0; 10]);
    }
    let pool_b_data = fs::read(case.path("part20")).unwrap();
    case.run(&[Pmdk::Refuses], |c| {
        let out = c.sync("poolset3", &[]);
        if out.is_ok() {
            c.assert_consistent("poolset3");
            verify_root_in_every_replica(&c.path("poolset3"), SEED, SMALL_ROOT)
                .unwrap_or_else(|e| panic!("{}: {:?}: pool A's data: {e}", c.id, c.tool));
            let now = fs::read(c.path("part20")).unwrap();
            assert!(
                now[4096..] == pool_b_data[4096..],
                "{}: {} synced the set and overwrote part20, pool B's only part: pool B's \
                 header (its pool set uuid intact, only the first 10 bytes zeroed) and its \
                 data are gone; PMDK refuses this set",
                c.id,
                c.tool.name()
            );
        }
    });
}

/// Ports sync/TEST12: the uuid of master part 0 is changed and its checksum recomputed
/// (`pmemspoil ... pool_hdr.f:checksum_gen`), so a valid header no other part links to.
/// PMDK refuses ("two consecutive unbroken parts are not linked"); so does ckpt.
#[test]
fn sync_test12_part_uuid_changed_with_valid_checksum() {
    let Some(case) = Case::new("sync_test12_part_uuid_changed_with_valid_checksum", "sync/TEST12")
    else {
        return;
    };
    let set = case.set("pool0.set", &POOL0, &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    spoil_uuid_checksum_gen(&case.path("testfile1"));
    case.run(&[Pmdk::Refuses], |c| {
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", SMALL_ROOT);
    });
}

/// Ports sync/TEST16: `OPTION SINGLEHDR`, every part of the master deleted; both tools
/// rebuild the master from the replica.
#[test]
fn sync_test16_singlehdr_whole_master_removed() {
    let Some(case) = Case::new("sync_test16_singlehdr_whole_master_removed", "sync/TEST16") else {
        return;
    };
    let set = case.set("pool0.set", &POOL0, &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 55 * M);
    case.rm(&["testfile1", "testfile2", "testfile3"]);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", 55 * M);
    });
}

/// Ports sync/TEST17: `OPTION SINGLEHDR`, a one-part master (70M) and a three-part replica;
/// the master is deleted and rebuilt from the replica's three parts.
#[test]
fn sync_test17_singlehdr_one_part_master() {
    let Some(case) = Case::new("sync_test17_singlehdr_one_part_master", "sync/TEST17") else {
        return;
    };
    let replicas: [&[Part]; 2] = [
        &[("70M", "testfile1")],
        &[("20M", "testfile2"), ("20M", "testfile3"), ("20M", "testfile4")],
    ];
    let set = case.set("pool0.set", &replicas, &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 55 * M);
    case.rm(&["testfile1"]);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", 55 * M);
    });
}

/// Ports sync/TEST22: `OPTION SINGLEHDR` with directory parts (`200M testdir1`, replica
/// `200M testdir2`); the master directory is emptied and both tools refill it.
#[test]
fn sync_test22_singlehdr_directory_parts() {
    let Some(case) = Case::new("sync_test22_singlehdr_directory_parts", "sync/TEST22") else {
        return;
    };
    for d in ["testdir1", "testdir2"] {
        fs::create_dir(case.path(d)).unwrap();
    }
    let set =
        case.set("pool0.set", &[&[("200M", "testdir1")], &[("200M", "testdir2")]], &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 3 * M);
    for entry in fs::read_dir(case.path("testdir1")).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    case.run(&[Pmdk::Ok], |c| {
        let out = c.sync("pool0.set", &[]);
        if out.is_ok() {
            c.assert_consistent("pool0.set");
            verify_root_in_every_directory_replica(&c.path("pool0.set"), 3 * M)
                .unwrap_or_else(|e| panic!("{}: {:?}: {e}", c.id, c.tool));
        }
    });
}

/// Ports sync/TEST23 (pmem/issues#730): the master is deleted and the set file lists the
/// replica's parts in swapped order. PMDK refuses ("no healthy replica found"); a tool that
/// syncs it instead must leave the data readable. Then the right set file heals the pool.
#[test]
fn sync_test23_replica_parts_swapped() {
    let Some(case) = Case::new("sync_test23_replica_parts_swapped", "sync/TEST23") else {
        return;
    };
    let replicas: [&[Part]; 2] =
        [&[("8M", "part00"), ("8M", "part01")], &[("8M", "part10"), ("8M", "part11")]];
    let set = case.set("poolset1", &replicas, &[]);
    case.set("poolset2", &[replicas[0], &[("8M", "part11"), ("8M", "part10")]], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.rm(&["part00", "part01"]);
    case.run(&[Pmdk::Refuses, Pmdk::Ok], |c| {
        let out = c.sync("poolset2", &[]);
        c.whole_if_ok(&out, "poolset2", SMALL_ROOT);
        let out = c.sync("poolset1", &[]);
        c.whole_if_ok(&out, "poolset1", SMALL_ROOT);
    });
}

/// Ports sync/TEST24 (pmem/issues#731): part 0 of a three-replica pool is deleted and the
/// set file leaves replica 2 out, so the replica uuid ring does not close: both refuse;
/// then the right set file heals the pool with both tools.
#[test]
fn sync_test24_set_missing_a_replica() {
    let Some(case) = Case::new("sync_test24_set_missing_a_replica", "sync/TEST24") else {
        return;
    };
    let replicas: [&[Part]; 3] = [&[("8M", "part00")], &[("8M", "part10")], &[("8M", "part20")]];
    let set = case.set("poolset1", &replicas, &[]);
    case.set("poolset2", &replicas[..2], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.rm(&["part00"]);
    case.run(&[Pmdk::Refuses, Pmdk::Ok], |c| {
        let out = c.sync("poolset2", &[]);
        c.whole_if_ok(&out, "poolset2", SMALL_ROOT);
        let out = c.sync("poolset1", &[]);
        c.whole_if_ok(&out, "poolset1", SMALL_ROOT);
    });
}

/// Ports sync/TEST26 (pmem/issues#817): a set of one replica. PMDK refuses to sync it ("no
/// replica(s) found"), healthy or with part 0's uuid spoiled (stale checksum). ckpt finds
/// nothing to do in the healthy set; with the header broken and no other replica, it has
/// no copy to rebuild from. (The script writes no data; a small root object is written.)
#[test]
fn sync_test26_single_replica_set() {
    let Some(case) = Case::new("sync_test26_single_replica_set", "sync/TEST26") else {
        return;
    };
    let set = case.set("pool0.set", &[&[("20M", "testfile1"), ("20M", "testfile2")]], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.run(&[Pmdk::Refuses, Pmdk::Refuses], |c| {
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", SMALL_ROOT);
        c.whole_if_ckpt_refused(&out, "pool0.set", SMALL_ROOT);
        spoil_uuid(&c.path("testfile1"));
        let out = c.sync("pool0.set", &[]);
        c.whole_if_ok(&out, "pool0.set", SMALL_ROOT);
    });
}

/// Ports sync/TEST29: the first 100 pages of master part 1 (its header and data) are
/// zeroed; `pmempool check` calls the set not consistent; `sync -v` rebuilds the part from
/// the replica, whose parts are laid out differently (3 × 8M against 2 × 12M). The script
/// fills the pool with `obj_verify`; here a 16 MiB root object spans all three parts.
#[test]
fn sync_test29_zeroed_middle_part_start() {
    let Some(case) = Case::new("sync_test29_zeroed_middle_part_start", "sync/TEST29") else {
        return;
    };
    let replicas: [&[Part]; 2] = [
        &[("8M", "testfile0"), ("8M", "testfile1"), ("8M", "testfile2")],
        &[("12M", "testfile3"), ("12M", "testfile4")],
    ];
    let set = case.set("testset1", &replicas, &[]);
    create_obj_pool(&set, LAYOUT);
    let len = 16 * M;
    let root = write_root(&set, SEED, len);
    assert!(root.offset < 8 << 20 && root.offset + len as u64 > 16 << 20, "{root:?}");
    write_at(&case.path("testfile1"), 0, &vec![0; 100 * 4096]);
    assert!(!pmempool_check(&set).consistent, "pmempool check should find the zeroed header");
    assert!(verify_root(&set, SEED, len).is_err(), "libpmemobj should not open the pool");
    case.run(&[Pmdk::Ok], |c| {
        let out = c.sync("testset1", &["-v"]);
        c.whole_if_ok(&out, "testset1", len);
    });
}

// ---------------------------------------------------------------------------------------
// pmempool_transform
// ---------------------------------------------------------------------------------------

/// transform/TEST0..1's first two replicas: `20M testfile0 10M testfile1 R 10M testfile2
/// 10M testfile3 10M testfile4`, and the third, `10M testfile5 20M testfile6`.
const TRANSFORM_3R: [&[Part]; 3] = [
    &[("20M", "testfile0"), ("10M", "testfile1")],
    &[("10M", "testfile2"), ("10M", "testfile3"), ("10M", "testfile4")],
    &[("10M", "testfile5"), ("20M", "testfile6")],
];

/// Ports transform/TEST0: the last of three replicas is removed; the data reads back from
/// the two left.
#[test]
fn transform_test00_remove_replica() {
    let Some(case) = Case::new("transform_test00_remove_replica", "transform/TEST0") else {
        return;
    };
    let set = case.set("poolset.in", &TRANSFORM_3R, &[]);
    case.set("poolset.out", &TRANSFORM_3R[..2], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 22 * M);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 22 * M);
    });
}

/// Ports transform/TEST1: a third replica is added (the script's stray third argument
/// `0` is dropped).
#[test]
fn transform_test01_add_replica() {
    let Some(case) = Case::new("transform_test01_add_replica", "transform/TEST1") else {
        return;
    };
    let set = case.set("poolset.in", &TRANSFORM_3R[..2], &[]);
    case.set("poolset.out", &TRANSFORM_3R, &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 22 * M);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 22 * M);
    });
}

/// transform/TEST2, 6, 10's `poolset.in` shape: `20M F0 20M F1`.
fn two_parts(a: &'static str, b: &'static str) -> [Part; 2] {
    [("20M", a), ("20M", b)]
}

/// Ports transform/TEST2 (pmem/issues#250): a dry run of adding a replica succeeds,
/// changes nothing and creates neither new part.
#[test]
fn transform_test02_dry_run_add_replica() {
    let Some(case) = Case::new("transform_test02_dry_run_add_replica", "transform/TEST2") else {
        return;
    };
    let master = two_parts("testfile0", "testfile1");
    let set = case.set("poolset.in", &[&master], &[]);
    case.set("poolset.out", &[&master, &two_parts("testfile2", "testfile3")], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 22 * M);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &["-d"]);
        c.assert_absent(&["testfile2", "testfile3"]);
        c.whole_if_ok(&out, "poolset.in", 22 * M);
    });
}

/// Ports transform/TEST3 (pmem/issues#252): the new replica has a 1M part, below the
/// minimum: both refuse, and no new part is left behind.
#[test]
fn transform_test03_target_part_below_minimum() {
    let Some(case) = Case::new("transform_test03_target_part_below_minimum", "transform/TEST3")
    else {
        return;
    };
    let set = case.set("poolset.in", &[&[("20M", "testfile00")]], &[]);
    case.set(
        "poolset.out",
        &[&[("20M", "testfile00")], &[("20M", "testfile10"), ("1M", "testfile11")]],
        &[],
    );
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 15 * M);
    case.run(&[Pmdk::Refuses], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 15 * M);
        if !out.is_ok() {
            c.assert_absent(&["testfile10", "testfile11"]);
        }
        c.whole_if_ckpt_refused(&out, "poolset.in", 15 * M);
    });
}

/// Ports transform/TEST4 (pmem/issues#261): the smaller replica is removed, then a larger
/// one (three parts, reusing the removed part names) is added.
#[test]
fn transform_test04_remove_smaller_then_add_larger_replica() {
    let Some(case) =
        Case::new("transform_test04_remove_smaller_then_add_larger_replica", "transform/TEST4")
    else {
        return;
    };
    let master: [Part; 2] = [("20M", "part00"), ("20M", "part01")];
    let set = case.set("poolset.in", &[&master, &[("15M", "part10"), ("15M", "part11")]], &[]);
    case.set("poolset.out1", &[&master], &[]);
    case.set(
        "poolset.out2",
        &[&master, &[("15M", "part10"), ("15M", "part11"), ("20M", "part12")]],
        &[],
    );
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 25 * M);
    case.run(&[Pmdk::Ok, Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out1", &[]);
        c.whole_if_ok(&out, "poolset.out1", 25 * M);
        let out = c.transform("poolset.out1", "poolset.out2", &[]);
        c.whole_if_ok(&out, "poolset.out2", 25 * M);
    });
}

/// Ports transform/TEST5 (pmem/issues#262): the new replica's part is in a directory that
/// does not exist: both refuse.
#[test]
fn transform_test05_target_directory_missing() {
    let Some(case) = Case::new("transform_test05_target_directory_missing", "transform/TEST5")
    else {
        return;
    };
    let master: [Part; 3] = [("20M", "testfile00"), ("20M", "testfile01"), ("20M", "testfile02")];
    let set = case.set("poolset.in", &[&master, &[("60M", "testfile10")]], &[]);
    case.set("poolset.out", &[&master, &[("90M", "abc/testfile10")]], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 50 * M);
    case.run(&[Pmdk::Refuses], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 50 * M);
        c.whole_if_ckpt_refused(&out, "poolset.in", 50 * M);
    });
}

/// Ports transform/TEST6 (pmem/issues#274): after a replica is added, the old one-replica
/// set file no longer describes the pool; a second transform from it is refused by both.
/// (The script writes no data; a small root object is written.)
#[test]
fn transform_test06_stale_source_set() {
    let Some(case) = Case::new("transform_test06_stale_source_set", "transform/TEST6") else {
        return;
    };
    let master = two_parts("testfile00", "testfile01");
    let set = case.set("poolset.in", &[&master], &[]);
    case.set("poolset.out1", &[&master, &two_parts("testfile10", "testfile11")], &[]);
    case.set("poolset.out2", &[&master, &two_parts("testfile20", "testfile21")], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.run(&[Pmdk::Ok, Pmdk::Refuses], |c| {
        let out = c.transform("poolset.in", "poolset.out1", &[]);
        c.whole_if_ok(&out, "poolset.out1", SMALL_ROOT);
        let out = c.transform("poolset.in", "poolset.out2", &[]);
        c.whole_if_ok(&out, "poolset.out2", SMALL_ROOT);
        c.whole_if_ckpt_refused(&out, "poolset.out1", SMALL_ROOT);
    });
}

/// Ports transform/TEST10 (pmem/issues#285): the target set file names `testfile01` in two
/// replicas: both refuse. (The script writes no data; a small root object is written.)
#[test]
fn transform_test10_part_path_used_twice() {
    let Some(case) = Case::new("transform_test10_part_path_used_twice", "transform/TEST10") else {
        return;
    };
    let master = two_parts("testfile00", "testfile01");
    let set = case.set("poolset.in", &[&master], &[]);
    case.set("poolset.out", &[&master, &two_parts("testfile01", "testfile21")], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, SMALL_ROOT);
    case.run(&[Pmdk::Refuses], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", SMALL_ROOT);
        c.whole_if_ckpt_refused(&out, "poolset.in", SMALL_ROOT);
    });
}

/// transform/TEST13, 17, 23, 24's parts: `20M part00 20M part01 20M part02`.
const THREE_PARTS: [Part; 3] = [("20M", "part00"), ("20M", "part01"), ("20M", "part02")];

/// Ports transform/TEST13: `OPTION SINGLEHDR` is added to a one-replica, three-part pool
/// (every part is laid out anew).
#[test]
fn transform_test13_add_singlehdr() {
    let Some(case) = Case::new("transform_test13_add_singlehdr", "transform/TEST13") else {
        return;
    };
    let set = case.set("poolset.in", &[&THREE_PARTS], &[]);
    case.set("poolset.out", &[&THREE_PARTS], &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 45 * M);
    });
}

/// Ports transform/TEST17: `OPTION SINGLEHDR` added, then removed again (headers are
/// recreated in every part).
#[test]
fn transform_test17_add_then_remove_singlehdr() {
    let Some(case) = Case::new("transform_test17_add_then_remove_singlehdr", "transform/TEST17")
    else {
        return;
    };
    let set = case.set("poolset.in", &[&THREE_PARTS], &[]);
    case.set("poolset.out", &[&THREE_PARTS], &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    case.run(&[Pmdk::Ok, Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 45 * M);
        let out = c.transform("poolset.out", "poolset.in", &[]);
        c.whole_if_ok(&out, "poolset.in", 45 * M);
    });
}

/// Ports transform/TEST19: a chain on a `SINGLEHDR` pool: add a larger replica, remove the
/// first, add a larger one again (reusing the first's part names), then remove
/// `SINGLEHDR`. The script writes its data before the last step; here the root object is
/// written at creation, so that it must survive all four transforms.
#[test]
fn transform_test19_singlehdr_removal_chain() {
    let Some(case) = Case::new("transform_test19_singlehdr_removal_chain", "transform/TEST19")
    else {
        return;
    };
    let r0: [Part; 3] = THREE_PARTS;
    let r1: [Part; 4] =
        [("20M", "part10"), ("20M", "part11"), ("20M", "part12"), ("10M", "part13")];
    let r0_large: [Part; 4] =
        [("20M", "part00"), ("20M", "part01"), ("20M", "part02"), ("10M", "part03")];
    let set = case.set("poolset.1", &[&r0], &["SINGLEHDR"]);
    case.set("poolset.2", &[&r0, &r1], &["SINGLEHDR"]);
    case.set("poolset.3", &[&r1], &["SINGLEHDR"]);
    case.set("poolset.4", &[&r0_large, &r1], &["SINGLEHDR"]);
    case.set("poolset.5", &[&r0_large, &r1], &[]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    case.run(&[Pmdk::Ok; 4], |c| {
        for (src, dst) in [
            ("poolset.1", "poolset.2"),
            ("poolset.2", "poolset.3"),
            ("poolset.3", "poolset.4"),
            ("poolset.4", "poolset.5"),
        ] {
            let out = c.transform(src, dst, &[]);
            c.whole_if_ok(&out, dst, 45 * M);
        }
    });
}

/// Ports transform/TEST20: `OPTION SINGLEHDR`, a replica of another part layout is added
/// in front, so it becomes the master.
#[test]
fn transform_test20_singlehdr_new_master_replica() {
    let Some(case) = Case::new("transform_test20_singlehdr_new_master_replica", "transform/TEST20")
    else {
        return;
    };
    let new: [Part; 3] = [("40M", "part10"), ("11M", "part11"), ("10M", "part12")];
    let set = case.set("poolset.in", &[&THREE_PARTS], &["SINGLEHDR"]);
    case.set("poolset.out", &[&new, &THREE_PARTS], &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 45 * M);
    });
}

/// Ports transform/TEST21: `OPTION SINGLEHDR`, the master replica is removed and the other
/// (another part layout) becomes the master.
#[test]
fn transform_test21_singlehdr_remove_master() {
    let Some(case) = Case::new("transform_test21_singlehdr_remove_master", "transform/TEST21")
    else {
        return;
    };
    let other: [Part; 3] = [("40M", "part10"), ("11M", "part11"), ("10M", "part12")];
    let set = case.set("poolset.in", &[&THREE_PARTS, &other], &["SINGLEHDR"]);
    case.set("poolset.out", &[&other], &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 45 * M);
    });
}

/// Ports transform/TEST23: a dry run of adding `OPTION SINGLEHDR` succeeds and changes
/// nothing.
#[test]
fn transform_test23_dry_run_add_singlehdr() {
    let Some(case) = Case::new("transform_test23_dry_run_add_singlehdr", "transform/TEST23") else {
        return;
    };
    let set = case.set("poolset.in", &[&THREE_PARTS], &[]);
    case.set("poolset.out", &[&THREE_PARTS], &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    case.run(&[Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &["-d"]);
        c.whole_if_ok(&out, "poolset.in", 45 * M);
    });
}

/// Ports transform/TEST24: `OPTION SINGLEHDR` is added for real, then a dry run of removing
/// it succeeds and changes nothing. The script writes its data after the first transform;
/// here the root object is written at creation, so that the first transform must keep it.
#[test]
fn transform_test24_dry_run_remove_singlehdr() {
    let Some(case) = Case::new("transform_test24_dry_run_remove_singlehdr", "transform/TEST24")
    else {
        return;
    };
    let set = case.set("poolset.in", &[&THREE_PARTS], &[]);
    case.set("poolset.out", &[&THREE_PARTS], &["SINGLEHDR"]);
    create_obj_pool(&set, LAYOUT);
    write_root(&set, SEED, 45 * M);
    case.run(&[Pmdk::Ok, Pmdk::Ok], |c| {
        let out = c.transform("poolset.in", "poolset.out", &[]);
        c.whole_if_ok(&out, "poolset.out", 45 * M);
        let out = c.transform("poolset.out", "poolset.in", &["-d"]);
        c.whole_if_ok(&out, "poolset.out", 45 * M);
    });
}
