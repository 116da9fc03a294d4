//! Crash-state explorer (test support, not published): runs a real program under `strace`,
//! records every change it makes to the files of a work directory, rebuilds each state a
//! power cut could have left, runs the real recovery on it and checks an invariant.
//!
//! The program is not modified or linked: [`record`] traces the real binary (threads and
//! children followed), so what is checked is exactly the order of system calls that ships.
//!
//! # The crash model
//! The model keeps, for every inode of the work directory, its durable and its current
//! contents, and for the namespace, the durable and the current directory entries.
//! - A file's bytes and size (writes, truncations, `fallocate` extensions and punched
//!   holes) become durable at `fsync` or `fdatasync` of that file, or `sync`/`syncfs`.
//! - A directory entry (create, `mkdir`, link, unlink, `rmdir`, rename) becomes durable at
//!   `fsync` of the directory that holds it (for a rename across directories, once both
//!   have been synced), or `sync`/`syncfs`. An `fsync` of a file does not make its name
//!   durable: POSIX does not promise it. That is [`NamespaceModel::Independent`], the
//!   default; [`NamespaceModel::Journaled`] is ext4's behaviour instead (ordered metadata,
//!   committed whole by any `fsync`).
//! - `sync_file_range`, `close`, `msync` make nothing durable.
//!
//! A crash point is every prefix of the recorded ops (before the first, after each). At a
//! crash point, what is pending may or may not have reached the disk:
//! - file data, per file: none of its pending ops, all of them, every ordered prefix, a
//!   prefix ending in a torn write (at 512-byte sector granularity: its first sector, half
//!   its sectors, all but the last, all but the first, only the last), and all but one
//!   lost (writeback out of order);
//! - the namespace: every subset of the pending entry changes, each applied on its own
//!   (up to [`Bounds::max_subset_ops`] pending; beyond that prefixes, all-but-one and
//!   only-one), or only ordered prefixes with [`NamespaceModel::Journaled`].
//!
//! The states combine one namespace choice with, for the files, all dropped, all kept, or
//! one file's variant with the others all dropped or all kept. Identical states (same tree,
//! same output so far) are checked once: [`Report::explored`] counts the states generated,
//! [`Report::distinct`] those checked.
//!
//! Each distinct state is written into the same work directory (paths in journals are
//! absolute), the optional [`ExploreSpec::before_recovery`] check runs, then the recovery,
//! then the invariant. The invariant also sees what the operation had written to its
//! standard output and error before the crash ([`Crash::said`]): data it had acknowledged.
//!
//! # Recording and its limits
//! `strace` options: see [`STRACE_OPTIONS`] (plus `-e trace=` with the file system
//! calls). Data written by `write`, `writev`, `pwrite64`, `pwritev` and `pwritev2` comes
//! from `strace`'s hex dumps; `copy_file_range` and `sendfile` from the model's copy of the
//! source (which must be in the work directory). Refused with [`Error::Unsupported`]:
//! shared writable `mmap` of a file in the work directory (its stores are invisible to
//! `strace`), `O_TMPFILE`, symbolic links, devices, `RENAME_EXCHANGE`, `splice` into a file,
//! files over 1 GiB. `io_uring` is not seen at all; after recording, the model's tree is
//! compared with the disk and any difference is an error ([`Error::ModelDiffers`]), so a
//! change the trace missed cannot go unnoticed. `strace` needs `ptrace`: it works for a
//! normal user on its own children (Yama `ptrace_scope` 0 or 1), not in containers that
//! forbid `ptrace`.
//!
//! # Examples
//! ```no_run
//! use ckpt_crashsim::{Cmd, ExploreSpec, explore};
//! let dir = tempfile::tempdir()?;
//! let work = dir.path().join("w");
//! let spec = ExploreSpec::new(&work, Cmd::new("my-tool").arg("commit").arg(&work))
//!     .setup(|d| Ok(std::fs::write(d.join("state"), b"old")?))
//!     .invariant(|d, _crash| {
//!         let s = std::fs::read(d.join("state")).map_err(|e| e.to_string())?;
//!         if s == b"old" || s == b"new" { Ok(()) } else { Err(format!("mixed: {s:?}")) }
//!     });
//! let report = explore(&spec)?;
//! assert!(report.violations.is_empty(), "{report}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Linux only: it replays `strace` traces of Linux system calls.

#[cfg(not(target_os = "linux"))]
compile_error!("ckpt-crashsim supports Linux only: it replays strace traces of Linux system calls");

mod crash;
mod fs;
mod record;
mod trace;

pub use fs::{Ino, Kind, MAX_FILE, Op, ROOT, Recorded, Stream};
pub use trace::STRACE_OPTIONS;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A failure of the explorer itself (not a violation of an invariant).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `strace` is not installed or does not run; the text says why.
    StraceMissing(String),
    /// A file operation of the explorer failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A line of the trace could not be understood.
    Parse {
        /// Its line number.
        line: usize,
        /// The call.
        text: String,
        /// What was wrong.
        detail: String,
    },
    /// The trace contradicts the model (a change the model did not see).
    Mismatch {
        /// The line of the trace.
        line: usize,
        /// The call.
        call: String,
        /// The contradiction.
        detail: String,
    },
    /// The operation did something the model cannot follow.
    Unsupported {
        /// The call or file.
        what: String,
        /// Why.
        detail: String,
    },
    /// After recording, the model's tree differs from what is on disk.
    ModelDiffers(String),
    /// The setup failed.
    Setup(String),
    /// The operation failed (and the spec expected success).
    OperationFailed(Outcome),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StraceMissing(why) => write!(
                f,
                "strace is needed to record the operation ({why}); install it (apt-get install -y strace)"
            ),
            Self::Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Self::Parse { line, text, detail } => {
                write!(f, "trace line {line}: {detail}: {text}")
            }
            Self::Mismatch { line, call, detail } => {
                write!(f, "trace line {line}: the model lost track ({detail}) at {call}")
            }
            Self::Unsupported { what, detail } => write!(f, "unsupported: {detail}: {what}"),
            Self::ModelDiffers(d) => {
                write!(f, "after the operation the model differs from the disk: {d}")
            }
            Self::Setup(e) => write!(f, "setup failed: {e}"),
            Self::OperationFailed(o) => write!(f, "the recorded operation failed: {o}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    pub(crate) fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io { path, op, source }
    }
}

/// A command line: program, arguments, extra environment, working directory.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
}

impl Cmd {
    /// A command running `program`.
    ///
    /// # Examples
    /// ```
    /// let out = ckpt_crashsim::Cmd::new("echo").arg("hi").run_in(std::path::Path::new("/"))?;
    /// assert!(out.success());
    /// assert_eq!(out.stdout, b"hi\n");
    /// # Ok::<(), ckpt_crashsim::Error>(())
    /// ```
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Cmd { program: program.into(), args: Vec::new(), env: Vec::new(), cwd: None }
    }

    /// Adds an argument.
    #[must_use]
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Runs in `dir` (default: the work directory).
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Runs the command to completion, in its working directory or else `dir`, with
    /// standard input empty and its output captured.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be started.
    pub fn run_in(&self, dir: &Path) -> Result<Outcome, Error> {
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args).current_dir(self.cwd.as_deref().unwrap_or(dir));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let out = c
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(Error::io(&self.program, "run"))?;
        Ok(Outcome { code: out.status.code(), stdout: out.stdout, stderr: out.stderr })
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.display())?;
        for a in &self.args {
            write!(f, " {}", a.to_string_lossy())?;
        }
        Ok(())
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl Outcome {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard output and error as text.
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&self.stderr));
        s
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "exit {c}")?,
            None => write!(f, "killed by a signal")?,
        }
        let text = self.text();
        let text = text.trim();
        if !text.is_empty() {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

/// When directory entries become durable and how pending ones may reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamespaceModel {
    /// POSIX: an entry change is durable once the directory holding it is synced; pending
    /// ones reach the disk in any subset, each on its own.
    #[default]
    Independent,
    /// A journalling file system with ordered metadata (ext4, XFS): any `fsync` or
    /// `fdatasync`, of a file or a directory, commits every entry change made before it;
    /// pending ones reach the disk in order (prefixes only).
    Journaled,
}

/// Bounds that keep the number of states tractable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The unit of atomic writes (torn writes are cut at these boundaries).
    pub sector: u64,
    /// How pending directory entries may reach the disk.
    pub namespace: NamespaceModel,
    /// Up to this many pending namespace ops, every subset is tried; beyond it, prefixes,
    /// all-but-one and only-one.
    pub max_subset_ops: usize,
    /// At most this many prefixes (and torn or lost ops) per file and crash point.
    pub max_prefixes: usize,
    /// Stop after checking this many distinct states ([`Report::truncated`] tells).
    pub max_distinct: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            sector: 512,
            namespace: NamespaceModel::Independent,
            max_subset_ops: 4,
            max_prefixes: 16,
            max_distinct: 2000,
        }
    }
}

/// A crash state being checked, as the checks see it.
#[derive(Debug, Clone, Copy)]
pub struct Crash<'a> {
    /// Ops applied before the crash (0: none; [`ops`](Self::ops): the whole operation).
    pub point: usize,
    /// Ops recorded.
    pub ops: usize,
    /// Which crash point and which pending changes reached the disk.
    pub state: &'a str,
    /// What the operation had written to its standard output before the crash.
    pub stdout: &'a [u8],
    /// What the operation had written to its standard error before the crash.
    pub stderr: &'a [u8],
    /// How the recovery ended (`None` before recovery, or without one).
    pub recovery: Option<&'a Outcome>,
}

impl Crash<'_> {
    /// The crash came after the last op.
    pub fn completed(&self) -> bool {
        self.point == self.ops
    }

    /// The operation had written `needle` to its standard output or error before the crash
    /// (it had acknowledged something).
    pub fn said(&self, needle: &str) -> bool {
        let n = needle.as_bytes();
        let has = |h: &[u8]| n.is_empty() || h.windows(n.len()).any(|w| w == n);
        has(self.stdout) || has(self.stderr)
    }
}

/// A check of a crash state: `Err` describes the violation.
pub type Check<'a> = Box<dyn Fn(&Path, &Crash<'_>) -> Result<(), String> + 'a>;

/// The setup of the work directory.
pub type Setup<'a> = Box<dyn Fn(&Path) -> Result<(), Box<dyn std::error::Error>> + 'a>;

/// What runs on a crash state before the invariant.
#[non_exhaustive]
pub enum Recovery<'a> {
    /// Nothing: the invariant sees the crash state itself.
    None,
    /// A command (run in the work directory unless it says otherwise).
    Command(Cmd),
    /// Rust code.
    Closure(Box<dyn Fn(&Path) -> Outcome + 'a>),
}

/// What to explore: the work directory, its setup, the operation, the recovery, the checks.
pub struct ExploreSpec<'a> {
    workdir: PathBuf,
    operation: Cmd,
    setup: Option<Setup<'a>>,
    recovery: Recovery<'a>,
    before_recovery: Option<Check<'a>>,
    invariant: Option<Check<'a>>,
    bounds: Bounds,
    expect_success: bool,
}

impl<'a> ExploreSpec<'a> {
    /// Explores `operation` on `workdir` (created if missing, emptied first). Without a
    /// recovery and an invariant, only the recording is checked.
    pub fn new(workdir: impl Into<PathBuf>, operation: Cmd) -> Self {
        ExploreSpec {
            workdir: workdir.into(),
            operation,
            setup: None,
            recovery: Recovery::None,
            before_recovery: None,
            invariant: None,
            bounds: Bounds::default(),
            expect_success: true,
        }
    }

    /// Fills the (empty) work directory before the operation; everything it leaves is
    /// taken as durable.
    #[must_use]
    pub fn setup(
        mut self,
        f: impl Fn(&Path) -> Result<(), Box<dyn std::error::Error>> + 'a,
    ) -> Self {
        self.setup = Some(Box::new(f));
        self
    }

    /// What runs on each crash state before the invariant.
    #[must_use]
    pub fn recovery(mut self, r: Recovery<'a>) -> Self {
        self.recovery = r;
        self
    }

    /// A recovery command.
    #[must_use]
    pub fn recover_with(self, cmd: Cmd) -> Self {
        self.recovery(Recovery::Command(cmd))
    }

    /// A check of each crash state as it is, before recovery.
    #[must_use]
    pub fn before_recovery(
        mut self,
        f: impl Fn(&Path, &Crash<'_>) -> Result<(), String> + 'a,
    ) -> Self {
        self.before_recovery = Some(Box::new(f));
        self
    }

    /// The invariant, checked after recovery.
    #[must_use]
    pub fn invariant(mut self, f: impl Fn(&Path, &Crash<'_>) -> Result<(), String> + 'a) -> Self {
        self.invariant = Some(Box::new(f));
        self
    }

    /// Bounds on the states.
    #[must_use]
    pub fn bounds(mut self, b: Bounds) -> Self {
        self.bounds = b;
        self
    }

    /// Explores even if the operation fails (by default that is an error).
    #[must_use]
    pub fn allow_failure(mut self) -> Self {
        self.expect_success = false;
        self
    }
}

/// Which check a violation broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// [`ExploreSpec::before_recovery`].
    BeforeRecovery,
    /// [`ExploreSpec::invariant`].
    AfterRecovery,
}

/// A crash state that broke a check.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Ops applied before the crash.
    pub point: usize,
    /// The state: crash point and which pending changes reached the disk.
    pub state: String,
    /// Which check.
    pub phase: Phase,
    /// What the check said.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::BeforeRecovery => "before recovery",
            Phase::AfterRecovery => "after recovery",
        };
        write!(f, "{}\n    {phase}: {}", self.state, self.detail)
    }
}

/// What an exploration found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The ops recorded.
    pub ops: Vec<Recorded>,
    /// System calls in the trace.
    pub syscalls: usize,
    /// Crash points visited (ops + 1 unless truncated).
    pub crash_points: usize,
    /// Crash states generated, duplicates included.
    pub explored: usize,
    /// Distinct crash states, each checked.
    pub distinct: usize,
    /// The states that broke a check.
    pub violations: Vec<Violation>,
    /// [`Bounds::max_distinct`] was reached: later states were not checked.
    pub truncated: bool,
    /// How the recorded operation ended.
    pub operation: Outcome,
    /// Time to run the operation under `strace` and build the ops.
    pub record_time: Duration,
    /// Time to check every state.
    pub check_time: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops from {} system calls; {} crash points; {} states explored, {} distinct checked{}; {} violations; recorded in {:.2} s, checked in {:.2} s",
            self.ops.len(),
            self.syscalls,
            self.crash_points,
            self.explored,
            self.distinct,
            if self.truncated { " (TRUNCATED)" } else { "" },
            self.violations.len(),
            self.record_time.as_secs_f64(),
            self.check_time.as_secs_f64()
        )?;
        for v in self.violations.iter().take(10) {
            write!(f, "\n  - {v}")?;
        }
        if self.violations.len() > 10 {
            write!(f, "\n  ... and {} more", self.violations.len() - 10)?;
        }
        Ok(())
    }
}

impl Report {
    /// The recorded ops, one per line (for debugging a test).
    pub fn op_list(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (i, r) in self.ops.iter().enumerate() {
            let _ = writeln!(out, "{:4} {r}", i + 1);
        }
        out
    }
}

/// An operation recorded on a work directory.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The ops, in the order their calls returned.
    pub ops: Vec<Recorded>,
    /// System calls in the trace.
    pub syscalls: usize,
    /// How the operation ended.
    pub outcome: Outcome,
    initial: fs::Fs,
}

/// Records `cmd` running on the work directory `workdir` as it is now (taken as durable):
/// runs it under `strace`, turns the trace into ops, and checks that the model's final
/// tree equals the disk.
///
/// # Errors
/// [`Error::StraceMissing`], [`Error::Io`], [`Error::Parse`], [`Error::Mismatch`],
/// [`Error::Unsupported`], [`Error::ModelDiffers`].
pub fn record(workdir: &Path, cmd: &Cmd) -> Result<Recording, Error> {
    let root = workdir.canonicalize().map_err(Error::io(workdir, "resolve"))?;
    let initial = fs::Fs::snapshot(&root)?;
    let trace_file = tempfile::NamedTempFile::new()
        .map_err(Error::io(&std::env::temp_dir(), "create a trace file in"))?;
    let cwd = cmd.cwd.clone().unwrap_or_else(|| root.clone());
    let outcome = trace::run_traced(cmd, &cwd, trace_file.path())?;
    let text = std::fs::read(trace_file.path()).map_err(Error::io(trace_file.path(), "read"))?;
    let calls = trace::parse(&String::from_utf8_lossy(&text))?;
    let alias = std::path::absolute(workdir).map_err(Error::io(workdir, "resolve"))?;
    let mut rec = record::Recorder::new(&root, &alias, initial.clone(), cwd);
    for sc in &calls {
        rec.handle(sc)?;
    }
    let model = rec.fs.current_tree();
    let disk = fs::read_tree(&root)?;
    if model != disk {
        return Err(Error::ModelDiffers(tree_diff(&model, &disk)));
    }
    Ok(Recording { ops: rec.ops, syscalls: calls.len(), outcome, initial })
}

fn tree_diff(
    model: &std::collections::BTreeMap<PathBuf, fs::Entry>,
    disk: &std::collections::BTreeMap<PathBuf, fs::Entry>,
) -> String {
    let mut out = Vec::new();
    for (p, e) in model {
        match disk.get(p) {
            None => out.push(format!("{} only in the model", p.display())),
            Some(d) if d != e => {
                let size = |e: &fs::Entry| match e {
                    fs::Entry::Dir => "a directory".to_owned(),
                    fs::Entry::File(b) => format!("{} bytes", b.len()),
                };
                out.push(format!("{} differs (model {}, disk {})", p.display(), size(e), size(d)));
            }
            Some(_) => {}
        }
    }
    for p in disk.keys().filter(|p| !model.contains_key(*p)) {
        out.push(format!("{} only on disk", p.display()));
    }
    out.join("; ")
}

/// Records the operation of `spec`, then checks every distinct crash state.
///
/// # Errors
/// [`Error`] when the explorer itself fails (recording, setup, I/O); violations of the
/// checks are in the [`Report`].
pub fn explore(spec: &ExploreSpec<'_>) -> Result<Report, Error> {
    trace::check_strace()?;
    std::fs::create_dir_all(&spec.workdir).map_err(Error::io(&spec.workdir, "create"))?;
    let root = spec.workdir.canonicalize().map_err(Error::io(&spec.workdir, "resolve"))?;
    fs::wipe(&root)?;
    if let Some(setup) = &spec.setup {
        setup(&root).map_err(|e| Error::Setup(e.to_string()))?;
    }
    let started = Instant::now();
    let rec = record(&root, &spec.operation)?;
    let record_time = started.elapsed();
    if spec.expect_success && !rec.outcome.success() {
        return Err(Error::OperationFailed(rec.outcome));
    }
    let started = Instant::now();
    let mut violations = Vec::new();
    let total = rec.ops.len();
    let counts = crash::enumerate(&rec.initial, &rec.ops, &spec.bounds, &mut |state| {
        fs::wipe(&root)?;
        fs::write_tree(&root, state.tree.iter().map(|(p, d)| (p.as_path(), d.as_deref())))?;
        let mut crash = Crash {
            point: state.point,
            ops: total,
            state: &state.label,
            stdout: state.stdout,
            stderr: state.stderr,
            recovery: None,
        };
        let mut broke = |phase, detail| {
            violations.push(Violation {
                point: state.point,
                state: state.label.clone(),
                phase,
                detail,
            });
        };
        if let Some(check) = &spec.before_recovery
            && let Err(detail) = check(&root, &crash)
        {
            broke(Phase::BeforeRecovery, detail);
        }
        let outcome = match &spec.recovery {
            Recovery::None => None,
            Recovery::Command(cmd) => Some(cmd.run_in(&root)?),
            Recovery::Closure(f) => Some(f(&root)),
        };
        crash.recovery = outcome.as_ref();
        if let Some(check) = &spec.invariant
            && let Err(detail) = check(&root, &crash)
        {
            broke(Phase::AfterRecovery, detail);
        }
        Ok(())
    })?;
    Ok(Report {
        ops: rec.ops,
        syscalls: rec.syscalls,
        crash_points: counts.crash_points,
        explored: counts.explored,
        distinct: counts.distinct,
        violations,
        truncated: counts.truncated,
        operation: rec.outcome,
        record_time,
        check_time: started.elapsed(),
    })
}
