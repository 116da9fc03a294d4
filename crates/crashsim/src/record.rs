//! From `strace`'s calls to the model's ops: file descriptor tables (per thread group,
//! shared or copied at `clone`), file positions, working directories, and path resolution
//! against the model's current namespace.

use crate::Error;
use crate::fs::{Fs, Ino, Kind, MAX_FILE, Op, Recorded, Stream, show};
use crate::trace::{AT_FDCWD, FdArg, Syscall, bytes_path, fd_arg, parse_int, unquote};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// What an open file description refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// An inode of the model.
    Inode(Ino),
    /// Something outside the work directory.
    Outside,
}

/// An open file description (shared by `dup` and `fork`).
#[derive(Debug, Clone)]
struct Desc {
    target: Target,
    pos: u64,
    append: bool,
}

#[derive(Debug, Clone, Copy)]
struct FdEntry {
    desc: usize,
    cloexec: bool,
}

/// Turns calls into ops, keeping the live model (current namespace and contents).
pub(crate) struct Recorder<'a> {
    root: &'a Path,
    /// The work directory as the caller spelled it (before canonicalisation).
    alias: PathBuf,
    pub fs: Fs,
    pub ops: Vec<Recorded>,
    descs: Vec<Desc>,
    tables: Vec<HashMap<i64, FdEntry>>,
    table_of: HashMap<u32, usize>,
    cwd: HashMap<u32, PathBuf>,
    default_cwd: PathBuf,
}

fn flag_set(flags: &str) -> Vec<&str> {
    flags.split('|').map(str::trim).collect()
}

fn has(flags: &[&str], f: &str) -> bool {
    flags.contains(&f)
}

/// Lexically normalises an absolute path (`.`, `..`, repeated separators).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

impl<'a> Recorder<'a> {
    pub fn new(root: &'a Path, alias: &Path, fs: Fs, cwd: PathBuf) -> Self {
        Recorder {
            root,
            alias: normalize(alias),
            fs,
            ops: Vec::new(),
            descs: Vec::new(),
            tables: vec![HashMap::new()],
            table_of: HashMap::new(),
            cwd: HashMap::new(),
            default_cwd: cwd,
        }
    }

    /// The components of `abs` below the root, or `None` when it lies outside.
    fn under_root(&self, abs: &Path) -> Option<Vec<OsString>> {
        let abs = normalize(abs);
        let rest = abs.strip_prefix(self.root).or_else(|_| abs.strip_prefix(&self.alias)).ok()?;
        Some(rest.components().map(|c| c.as_os_str().to_owned()).collect())
    }

    fn rel(comps: &[OsString]) -> PathBuf {
        comps.iter().collect()
    }

    fn table(&mut self, tid: u32) -> usize {
        *self.table_of.entry(tid).or_insert(0)
    }

    fn entry(&mut self, tid: u32, fd: i64) -> Option<FdEntry> {
        let t = self.table(tid);
        self.tables.get(t)?.get(&fd).copied()
    }

    fn install(&mut self, tid: u32, fd: i64, desc: Desc, cloexec: bool) {
        let d = self.descs.len();
        self.descs.push(desc);
        let t = self.table(tid);
        if let Some(table) = self.tables.get_mut(t) {
            table.insert(fd, FdEntry { desc: d, cloexec });
        }
    }

    fn cwd_of(&self, tid: u32) -> PathBuf {
        self.cwd.get(&tid).cloned().unwrap_or_else(|| self.default_cwd.clone())
    }

    /// The absolute path of `path` relative to the directory descriptor `dirfd` (`None`:
    /// the working directory).
    fn resolve(&self, sc: &Syscall, dirfd: Option<&str>, path: &str) -> Result<PathBuf, Error> {
        let p = bytes_path(unquote(path).ok_or_else(|| sc.error("a path argument"))?);
        if p.is_absolute() {
            return Ok(normalize(&p));
        }
        let base = match dirfd.map(fd_arg) {
            Some(Some(FdArg { path: Some(dir), .. })) => dir,
            None | Some(Some(FdArg { fd: AT_FDCWD, .. })) => self.cwd_of(sc.tid),
            Some(_) => return Err(sc.error("a directory descriptor without its path (-y)")),
        };
        Ok(normalize(&base.join(p)))
    }

    fn emit(&mut self, op: Op, call: String) {
        self.ops.push(Recorded { op, call });
        let i = self.ops.len() - 1;
        self.fs.step(&self.ops, i);
    }

    fn mismatch(sc: &Syscall, detail: impl Into<String>) -> Error {
        Error::Mismatch {
            line: sc.line,
            call: format!("{}({})", sc.name, sc.args.join(", ")),
            detail: detail.into(),
        }
    }

    fn unsupported(sc: &Syscall, detail: impl Into<String>) -> Error {
        Error::Unsupported {
            what: format!("{}({}) = {}", sc.name, sc.args.join(", "), sc.ret),
            detail: detail.into(),
        }
    }

    /// The model inode behind fd argument `i`, checking the trace's annotation against the
    /// model. `None` for descriptors outside the work directory.
    fn fd_ino(&mut self, sc: &Syscall, i: usize) -> Result<Option<(usize, Ino)>, Error> {
        let a = fd_arg(sc.arg(i)?).ok_or_else(|| sc.error("a file descriptor"))?;
        let entry = self.entry(sc.tid, a.fd);
        let under = a.path.as_deref().and_then(|p| self.under_root(p));
        match (entry, under) {
            (Some(e), under) => match self.descs[e.desc].target {
                Target::Inode(ino) => {
                    if let Some(comps) = under
                        && !a.deleted
                        && self.fs.lookup(&comps) != Some(ino)
                    {
                        return Err(Self::mismatch(
                            sc,
                            format!(
                                "the descriptor names {} but the model has it as {}",
                                show(&Self::rel(&comps)),
                                self.fs.path_of(ino).map_or("(no name)".into(), |p| show(&p))
                            ),
                        ));
                    }
                    Ok(Some((e.desc, ino)))
                }
                Target::Outside if under.is_some() && !a.deleted => Err(Self::mismatch(
                    sc,
                    "a descriptor opened outside the work directory now names a file inside it",
                )),
                Target::Outside => Ok(None),
            },
            (None, Some(_)) if !a.deleted => Err(Self::mismatch(
                sc,
                "a descriptor of the work directory whose opening the trace did not show",
            )),
            (None, _) => Ok(None),
        }
    }

    /// The (directory inode, name) of `abs` in the current namespace, or `None` outside.
    fn parent_of(&self, sc: &Syscall, abs: &Path) -> Result<Option<(Ino, OsString)>, Error> {
        let Some(comps) = self.under_root(abs) else { return Ok(None) };
        let Some((name, parent)) = comps.split_last() else {
            return Err(Self::unsupported(sc, "changing the work directory itself"));
        };
        let dir = self.fs.lookup(parent).ok_or_else(|| {
            Self::mismatch(sc, format!("no directory {} in the model", show(&Self::rel(parent))))
        })?;
        if self.fs.inodes.get(dir).map(|i| i.kind) != Some(Kind::Dir) {
            return Err(Self::mismatch(
                sc,
                format!("{} is not a directory", show(&Self::rel(parent))),
            ));
        }
        Ok(Some((dir, name.clone())))
    }

    fn label(&self, abs: &Path) -> String {
        self.under_root(abs).map_or_else(|| abs.display().to_string(), |c| show(&Self::rel(&c)))
    }

    fn ino_label(&self, ino: Ino) -> String {
        self.fs.path_of(ino).map_or_else(|| format!("(inode {ino}, unlinked)"), |p| show(&p))
    }

    /// Handles one call.
    ///
    /// # Errors
    /// [`Error::Parse`], [`Error::Mismatch`] or [`Error::Unsupported`].
    #[allow(clippy::too_many_lines)]
    pub fn handle(&mut self, sc: &Syscall) -> Result<(), Error> {
        let Some(ret) = sc.ret_value() else { return Ok(()) };
        if ret < 0 {
            return Ok(());
        }
        match sc.name.as_str() {
            "open" | "openat" | "openat2" | "creat" => self.open(sc, ret),
            "close" => {
                let fd = fd_arg(sc.arg(0)?).ok_or_else(|| sc.error("fd"))?.fd;
                let t = self.table(sc.tid);
                self.tables[t].remove(&fd);
                Ok(())
            }
            "close_range" => {
                let lo = parse_int(sc.arg(0)?).unwrap_or(0);
                let hi = parse_int(sc.arg(1)?).unwrap_or(i64::MAX);
                let t = self.table(sc.tid);
                self.tables[t].retain(|&fd, _| fd < lo || fd > hi);
                Ok(())
            }
            "dup" | "dup2" | "dup3" => {
                let old = fd_arg(sc.arg(0)?).ok_or_else(|| sc.error("fd"))?.fd;
                let cloexec =
                    sc.name == "dup3" && sc.args.get(2).is_some_and(|f| f.contains("O_CLOEXEC"));
                self.dup(sc.tid, old, ret, cloexec);
                Ok(())
            }
            "fcntl" => {
                let fd = fd_arg(sc.arg(0)?).ok_or_else(|| sc.error("fd"))?.fd;
                let cmd = sc.arg(1)?;
                if cmd == "F_DUPFD" || cmd == "F_DUPFD_CLOEXEC" {
                    self.dup(sc.tid, fd, ret, cmd == "F_DUPFD_CLOEXEC");
                } else if cmd == "F_SETFD" {
                    let on = sc.args.get(2).is_some_and(|f| f.contains("FD_CLOEXEC"));
                    let t = self.table(sc.tid);
                    if let Some(e) = self.tables[t].get_mut(&fd) {
                        e.cloexec = on;
                    }
                } else if cmd == "F_SETFL"
                    && let Some(e) = self.entry(sc.tid, fd)
                {
                    self.descs[e.desc].append =
                        sc.args.get(2).is_some_and(|f| f.contains("O_APPEND"));
                }
                Ok(())
            }
            "read" | "readv" => {
                if let Some((d, _)) = self.fd_ino(sc, 0)? {
                    self.descs[d].pos += ret.unsigned_abs();
                }
                Ok(())
            }
            "lseek" => {
                if let Some((d, _)) = self.fd_ino(sc, 0)? {
                    self.descs[d].pos = ret.unsigned_abs();
                }
                Ok(())
            }
            "write" | "writev" | "pwrite64" | "pwritev" | "pwritev2" => self.write(sc, ret),
            "ftruncate" => {
                if let Some((_, ino)) = self.fd_ino(sc, 0)? {
                    let len = Self::length(sc, 1)?;
                    let call = format!("ftruncate({}, {len})", self.ino_label(ino));
                    self.emit(Op::SetLen { ino, len }, call);
                }
                Ok(())
            }
            "truncate" => {
                let abs = self.resolve(sc, None, sc.arg(0)?)?;
                if let Some(comps) = self.under_root(&abs) {
                    let ino = self
                        .fs
                        .lookup(&comps)
                        .ok_or_else(|| Self::mismatch(sc, "no such file in the model"))?;
                    let len = Self::length(sc, 1)?;
                    let call = format!("truncate({}, {len})", show(&Self::rel(&comps)));
                    self.emit(Op::SetLen { ino, len }, call);
                }
                Ok(())
            }
            "fallocate" => self.fallocate(sc),
            "fsync" | "fdatasync" => {
                if let Some((_, ino)) = self.fd_ino(sc, 0)? {
                    let call = format!("{}({})", sc.name, self.ino_label(ino));
                    self.emit(Op::Sync { ino }, call);
                }
                Ok(())
            }
            "sync" => {
                self.emit(Op::SyncAll, "sync()".into());
                Ok(())
            }
            "syncfs" => {
                self.emit(Op::SyncAll, "syncfs()".into());
                Ok(())
            }
            "rename" | "renameat" | "renameat2" => self.rename(sc),
            "unlink" | "unlinkat" | "rmdir" => {
                let abs = match sc.name.as_str() {
                    "unlinkat" => self.resolve(sc, Some(sc.arg(0)?), sc.arg(1)?)?,
                    _ => self.resolve(sc, None, sc.arg(0)?)?,
                };
                let Some((dir, name)) = self.parent_of(sc, &abs)? else { return Ok(()) };
                let ino = self.fs.cur.get(&dir).and_then(|d| d.get(&name)).copied();
                let ino = ino
                    .ok_or_else(|| Self::mismatch(sc, "removed a name the model does not have"))?;
                let call = format!("{}({})", sc.name, self.label(&abs));
                self.emit(Op::Unlink { dir, name, ino }, call);
                Ok(())
            }
            "mkdir" | "mkdirat" => {
                let abs = match sc.name.as_str() {
                    "mkdirat" => self.resolve(sc, Some(sc.arg(0)?), sc.arg(1)?)?,
                    _ => self.resolve(sc, None, sc.arg(0)?)?,
                };
                let Some((dir, name)) = self.parent_of(sc, &abs)? else { return Ok(()) };
                let ino = self.fs.inodes.len();
                let call = format!("mkdir({})", self.label(&abs));
                self.emit(Op::Create { dir, name, ino, kind: Kind::Dir }, call);
                Ok(())
            }
            "link" | "linkat" => {
                let (from, to) = if sc.name == "linkat" {
                    if sc.args.get(4).is_some_and(|f| f.contains("AT_EMPTY_PATH")) {
                        return Err(Self::unsupported(sc, "linkat with AT_EMPTY_PATH"));
                    }
                    (
                        self.resolve(sc, Some(sc.arg(0)?), sc.arg(1)?)?,
                        self.resolve(sc, Some(sc.arg(2)?), sc.arg(3)?)?,
                    )
                } else {
                    (self.resolve(sc, None, sc.arg(0)?)?, self.resolve(sc, None, sc.arg(1)?)?)
                };
                let Some((dir, name)) = self.parent_of(sc, &to)? else { return Ok(()) };
                let src = self.under_root(&from).and_then(|c| self.fs.lookup(&c));
                let ino = src.ok_or_else(|| {
                    Self::unsupported(sc, "a link into the work directory of a file outside it")
                })?;
                let call = format!("link({} -> {})", self.label(&from), self.label(&to));
                self.emit(Op::Link { dir, name, ino }, call);
                Ok(())
            }
            "symlink" | "symlinkat" | "mknod" | "mknodat" => {
                let (dirfd, path) = match sc.name.as_str() {
                    "symlinkat" => (Some(sc.arg(1)?), sc.arg(2)?),
                    "mknodat" => (Some(sc.arg(0)?), sc.arg(1)?),
                    "symlink" => (None, sc.arg(1)?),
                    _ => (None, sc.arg(0)?),
                };
                let abs = self.resolve(sc, dirfd, path)?;
                if self.under_root(&abs).is_some() {
                    return Err(Self::unsupported(
                        sc,
                        "only regular files and directories are modelled",
                    ));
                }
                Ok(())
            }
            "mmap" => {
                let shared_write = sc.args.get(2).is_some_and(|p| p.contains("PROT_WRITE"))
                    && sc.args.get(3).is_some_and(|f| f.contains("MAP_SHARED"));
                if shared_write && sc.args.len() > 4 && self.fd_ino(sc, 4)?.is_some() {
                    return Err(Self::unsupported(
                        sc,
                        "a shared writable mapping of a file in the work directory: its stores are invisible to strace",
                    ));
                }
                Ok(())
            }
            "copy_file_range" | "sendfile" => self.copy(sc, ret),
            "splice" => {
                if self.fd_ino(sc, 2)?.is_some() {
                    return Err(Self::unsupported(sc, "splice into a file of the work directory"));
                }
                Ok(())
            }
            "clone" | "clone3" | "fork" | "vfork" => {
                let share = sc.args.iter().any(|a| a.contains("CLONE_FILES"));
                let child = u32::try_from(ret).map_err(|_| sc.error("a thread id"))?;
                let t = self.table(sc.tid);
                let ct = if share {
                    t
                } else {
                    self.tables.push(self.tables[t].clone());
                    self.tables.len() - 1
                };
                self.table_of.insert(child, ct);
                let cwd = self.cwd_of(sc.tid);
                self.cwd.insert(child, cwd);
                Ok(())
            }
            "execve" => {
                let t = self.table(sc.tid);
                self.tables[t].retain(|_, e| !e.cloexec);
                Ok(())
            }
            "chdir" => {
                let abs = self.resolve(sc, None, sc.arg(0)?)?;
                self.cwd.insert(sc.tid, abs);
                Ok(())
            }
            "fchdir" => {
                let a = fd_arg(sc.arg(0)?).ok_or_else(|| sc.error("fd"))?;
                let p = a.path.ok_or_else(|| sc.error("fchdir to a descriptor without a path"))?;
                self.cwd.insert(sc.tid, p);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn length(sc: &Syscall, i: usize) -> Result<u64, Error> {
        let v = parse_int(sc.arg(i)?).ok_or_else(|| sc.error("a length"))?;
        let v = u64::try_from(v).map_err(|_| sc.error("a negative length"))?;
        if v > MAX_FILE {
            return Err(Self::unsupported(sc, "files over 1 GiB; keep workloads small"));
        }
        Ok(v)
    }

    fn dup(&mut self, tid: u32, old: i64, new: i64, cloexec: bool) {
        let t = self.table(tid);
        match self.tables[t].get(&old).copied() {
            Some(e) => {
                self.tables[t].insert(new, FdEntry { desc: e.desc, cloexec });
            }
            None => {
                self.tables[t].remove(&new);
            }
        }
    }

    fn open(&mut self, sc: &Syscall, fd: i64) -> Result<(), Error> {
        let flags_text = match sc.name.as_str() {
            "open" => sc.arg(1)?.to_owned(),
            "openat" => sc.arg(2)?.to_owned(),
            "openat2" => {
                let how = sc.arg(2)?;
                let at = how.find("flags=").ok_or_else(|| sc.error("openat2 flags"))? + 6;
                how[at..].split([',', '}']).next().unwrap_or_default().to_owned()
            }
            _ => "O_WRONLY|O_CREAT|O_TRUNC".to_owned(),
        };
        let flags = flag_set(&flags_text);
        let result = fd_arg(&sc.ret).ok_or_else(|| sc.error("the returned descriptor"))?;
        let Some(abs) = result.path.clone() else {
            return Err(sc.error("the returned descriptor has no path (-y)"));
        };
        let cloexec = has(&flags, "O_CLOEXEC");
        let append = has(&flags, "O_APPEND");
        let Some(comps) = self.under_root(&abs) else {
            self.install(sc.tid, fd, Desc { target: Target::Outside, pos: 0, append }, cloexec);
            return Ok(());
        };
        if has(&flags, "O_TMPFILE") || flags_text.contains("__O_TMPFILE") {
            return Err(Self::unsupported(sc, "O_TMPFILE files in the work directory"));
        }
        let writable = has(&flags, "O_WRONLY") || has(&flags, "O_RDWR");
        let ino = match self.fs.lookup(&comps) {
            Some(ino) => {
                if has(&flags, "O_CREAT") && has(&flags, "O_EXCL") {
                    return Err(Self::mismatch(sc, "O_EXCL succeeded on a name the model has"));
                }
                if has(&flags, "O_TRUNC")
                    && writable
                    && self
                        .fs
                        .inodes
                        .get(ino)
                        .is_some_and(|i| i.kind == Kind::File && !i.current.is_empty())
                {
                    let call = format!("open({}, O_TRUNC)", show(&Self::rel(&comps)));
                    self.emit(Op::SetLen { ino, len: 0 }, call);
                }
                ino
            }
            None if has(&flags, "O_CREAT") => {
                let Some((dir, name)) = self.parent_of(sc, &abs)? else { return Ok(()) };
                let ino = self.fs.inodes.len();
                let call = format!("open({}, O_CREAT)", show(&Self::rel(&comps)));
                self.emit(Op::Create { dir, name, ino, kind: Kind::File }, call);
                ino
            }
            None => {
                return Err(Self::mismatch(
                    sc,
                    format!("opened {}, which the model does not have", show(&Self::rel(&comps))),
                ));
            }
        };
        self.install(sc.tid, fd, Desc { target: Target::Inode(ino), pos: 0, append }, cloexec);
        Ok(())
    }

    fn write(&mut self, sc: &Syscall, ret: i64) -> Result<(), Error> {
        let n = ret.unsigned_abs();
        let tracked = self.fd_ino(sc, 0)?;
        let data = sc.data.get(..us(n));
        let Some((d, ino)) = tracked else {
            let fd = fd_arg(sc.arg(0)?).map_or(-1, |a| a.fd);
            let stream = match fd {
                1 => Stream::Stdout,
                2 => Stream::Stderr,
                _ => return Ok(()),
            };
            let Some(data) = data else { return Ok(()) };
            // Consecutive writes to one stream are one op: a crash between the pieces of
            // a message says nothing more than a crash before it.
            if let Some(Recorded { op: Op::Output { stream: s, data: prev }, call }) =
                self.ops.last_mut()
                && *s == stream
            {
                prev.extend_from_slice(data);
                let name = if fd == 1 { "stdout" } else { "stderr" };
                *call = format!("write({name}, {} B)", prev.len());
                match stream {
                    Stream::Stdout => self.fs.stdout.extend_from_slice(data),
                    Stream::Stderr => self.fs.stderr.extend_from_slice(data),
                }
                return Ok(());
            }
            let call = format!("write({}, {n} B)", if fd == 1 { "stdout" } else { "stderr" });
            self.emit(Op::Output { stream, data: data.to_vec() }, call);
            return Ok(());
        };
        let data = data
            .ok_or_else(|| {
                Self::unsupported(
                    sc,
                    format!(
                        "strace dumped {} of the {n} bytes written (-e write=all)",
                        sc.data.len()
                    ),
                )
            })?
            .to_vec();
        let explicit = match sc.name.as_str() {
            "pwrite64" | "pwritev" => {
                Some(parse_int(sc.arg(3)?).ok_or_else(|| sc.error("offset"))?)
            }
            "pwritev2" => {
                Some(parse_int(sc.arg(3)?).ok_or_else(|| sc.error("offset"))?).filter(|&o| o >= 0)
            }
            _ => None,
        };
        let desc = &self.descs[d];
        let offset = match explicit {
            Some(o) => o.unsigned_abs(),
            None if desc.append => self.fs.inodes[ino].current.len() as u64,
            None => desc.pos,
        };
        if explicit.is_none() {
            self.descs[d].pos = offset + n;
        }
        if offset + n > MAX_FILE {
            return Err(Self::unsupported(sc, "files over 1 GiB; keep workloads small"));
        }
        if n == 0 {
            return Ok(());
        }
        let call = format!("{}({}, {n} B at {offset})", sc.name, self.ino_label(ino));
        self.emit(Op::Write { ino, offset, data }, call);
        Ok(())
    }

    fn fallocate(&mut self, sc: &Syscall) -> Result<(), Error> {
        let Some((_, ino)) = self.fd_ino(sc, 0)? else { return Ok(()) };
        let mode_text = sc.arg(1)?.to_owned();
        let mode: Vec<&str> = flag_set(&mode_text).into_iter().filter(|m| *m != "0").collect();
        let offset = Self::length(sc, 2)?;
        let len = Self::length(sc, 3)?;
        let size = self.fs.inodes[ino].current.len() as u64;
        let keep = has(&mode, "FALLOC_FL_KEEP_SIZE");
        let punch = has(&mode, "FALLOC_FL_PUNCH_HOLE");
        let zero = has(&mode, "FALLOC_FL_ZERO_RANGE");
        let known = mode.iter().all(|m| {
            ["FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE", "FALLOC_FL_ZERO_RANGE"].contains(m)
        });
        if !known {
            return Err(Self::unsupported(sc, format!("fallocate mode {mode_text}")));
        }
        let name = self.ino_label(ino);
        if punch || zero {
            let call = format!("fallocate({name}, {mode_text}, {offset}, {len})");
            self.emit(Op::Zero { ino, offset, len }, call);
        }
        if !keep && !punch && offset + len > size {
            let call = format!("fallocate({name}, {mode_text}, {offset}, {len}) (grows it)");
            self.emit(Op::SetLen { ino, len: offset + len }, call);
        }
        Ok(())
    }

    fn rename(&mut self, sc: &Syscall) -> Result<(), Error> {
        let (from, to) = if sc.name == "rename" {
            (self.resolve(sc, None, sc.arg(0)?)?, self.resolve(sc, None, sc.arg(1)?)?)
        } else {
            if sc.name == "renameat2"
                && sc
                    .args
                    .get(4)
                    .is_some_and(|f| f.contains("RENAME_EXCHANGE") || f.contains("RENAME_WHITEOUT"))
            {
                return Err(Self::unsupported(sc, "RENAME_EXCHANGE and RENAME_WHITEOUT"));
            }
            (
                self.resolve(sc, Some(sc.arg(0)?), sc.arg(1)?)?,
                self.resolve(sc, Some(sc.arg(2)?), sc.arg(3)?)?,
            )
        };
        let src = self.parent_of(sc, &from)?;
        let dst = self.parent_of(sc, &to)?;
        match (src, dst) {
            (None, None) => Ok(()),
            (None, Some(_)) => {
                Err(Self::unsupported(sc, "a rename into the work directory from outside it"))
            }
            (Some((dir, name)), None) => {
                let ino = self.fs.cur.get(&dir).and_then(|d| d.get(&name)).copied();
                let ino = ino
                    .ok_or_else(|| Self::mismatch(sc, "renamed a name the model does not have"))?;
                let call = format!("rename({} -> outside)", self.label(&from));
                self.emit(Op::Unlink { dir, name, ino }, call);
                Ok(())
            }
            (Some((from_dir, from_name)), Some((to_dir, to_name))) => {
                let ino = self.fs.cur.get(&from_dir).and_then(|d| d.get(&from_name)).copied();
                let ino = ino
                    .ok_or_else(|| Self::mismatch(sc, "renamed a name the model does not have"))?;
                if self.fs.cur.get(&to_dir).and_then(|d| d.get(&to_name)) == Some(&ino) {
                    return Ok(());
                }
                let call = format!("{}({} -> {})", sc.name, self.label(&from), self.label(&to));
                self.emit(Op::Rename { from_dir, from_name, to_dir, to_name, ino }, call);
                Ok(())
            }
        }
    }

    /// `copy_file_range(in, off_in, out, off_out, len, flags)` and
    /// `sendfile(out, in, offset, count)`: the bytes come from the model's copy of the
    /// source, which must therefore be in the work directory.
    fn copy(&mut self, sc: &Syscall, ret: i64) -> Result<(), Error> {
        let (in_i, in_off_i, out_i, out_off_i) =
            if sc.name == "sendfile" { (1, Some(2), 0, None) } else { (0, Some(1), 2, Some(3)) };
        let out = self.fd_ino(sc, out_i)?;
        let input = self.fd_ino(sc, in_i)?;
        let n = ret.unsigned_abs();
        let ptr_off = |i: Option<usize>| -> Option<u64> {
            let a = sc.args.get(i?)?;
            let inner = a.strip_prefix('[')?;
            parse_int(inner.split([']', ' ']).next()?).map(i64::unsigned_abs)
        };
        let in_at = match input {
            Some((d, _)) => {
                let at = ptr_off(in_off_i).unwrap_or(self.descs[d].pos);
                if ptr_off(in_off_i).is_none() {
                    self.descs[d].pos += n;
                }
                Some(at)
            }
            None => None,
        };
        let Some((od, oino)) = out else { return Ok(()) };
        let (Some((_, iino)), Some(in_at)) = (input, in_at) else {
            return Err(Self::unsupported(sc, "a copy into the work directory from outside it"));
        };
        let out_at = ptr_off(out_off_i).unwrap_or(self.descs[od].pos);
        if ptr_off(out_off_i).is_none() {
            self.descs[od].pos = out_at + n;
        }
        let src = &self.fs.inodes[iino].current;
        let s = us(in_at).min(src.len());
        let e = us(in_at + n).min(src.len());
        let data = src.get(s..e).unwrap_or_default().to_vec();
        if data.is_empty() {
            return Ok(());
        }
        let call = format!(
            "{}({} -> {}, {n} B at {out_at})",
            sc.name,
            self.ino_label(iino),
            self.ino_label(oino)
        );
        self.emit(Op::Write { ino: oino, offset: out_at, data }, call);
        Ok(())
    }
}

fn us(x: u64) -> usize {
    crate::fs::us(x)
}
