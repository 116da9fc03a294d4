//! The file system model: inodes with their durable and current contents, the namespace as
//! it is and as it is durable, and the operations that change them.
//!
//! What is durable when (the crash model):
//! - a file's bytes and size: after `fsync` or `fdatasync` of that file (any descriptor of
//!   it), or `sync`/`syncfs`. Until then every write, truncation, extension or hole punched
//!   since the last sync is *pending*;
//! - a directory entry (create, `mkdir`, link, unlink, `rmdir`, rename): after `fsync` of
//!   the directory holding it (both directories for a rename across directories), or
//!   `sync`/`syncfs`. Until then it is pending. An `fsync` of a file does not make its name
//!   durable (POSIX; ext4 happens to do more, which the model does not rely on);
//! - `sync_file_range`, `close` and `msync` make nothing durable.

use crate::Error;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// An inode number of the model (0 is the work directory).
pub type Ino = usize;

/// The work directory's inode.
pub const ROOT: Ino = 0;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// Which output stream an [`Op::Output`] went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One change the recorded operation made, as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// A new file (`open` with `O_CREAT`) or directory (`mkdir`) named `name` in `dir`.
    Create {
        /// The directory.
        dir: Ino,
        /// The name.
        name: OsString,
        /// The new inode.
        ino: Ino,
        /// File or directory.
        kind: Kind,
    },
    /// Another name for an existing file.
    Link {
        /// The directory.
        dir: Ino,
        /// The new name.
        name: OsString,
        /// The file.
        ino: Ino,
    },
    /// A name removed (`unlink`, `rmdir`).
    Unlink {
        /// The directory.
        dir: Ino,
        /// The name.
        name: OsString,
        /// What it named.
        ino: Ino,
    },
    /// A rename, replacing whatever `to_name` named.
    Rename {
        /// The source directory.
        from_dir: Ino,
        /// The source name.
        from_name: OsString,
        /// The target directory.
        to_dir: Ino,
        /// The target name.
        to_name: OsString,
        /// What was renamed.
        ino: Ino,
    },
    /// Bytes written at an offset (growing the file if needed).
    Write {
        /// The file.
        ino: Ino,
        /// Where.
        offset: u64,
        /// What.
        data: Vec<u8>,
    },
    /// The size set (truncation or extension with zeros).
    SetLen {
        /// The file.
        ino: Ino,
        /// The new size.
        len: u64,
    },
    /// A range made to read as zeros without changing the size (punch hole, zero range).
    Zero {
        /// The file.
        ino: Ino,
        /// Where.
        offset: u64,
        /// How much.
        len: u64,
    },
    /// `fsync` or `fdatasync` of a file or directory.
    Sync {
        /// What was synced.
        ino: Ino,
    },
    /// `sync` or `syncfs`: everything durable.
    SyncAll,
    /// Bytes the operation wrote to its standard output or error (what it told its caller).
    Output {
        /// Which stream.
        stream: Stream,
        /// What.
        data: Vec<u8>,
    },
}

impl Op {
    /// Whether this op changes the namespace.
    pub fn is_namespace(&self) -> bool {
        matches!(self, Op::Create { .. } | Op::Link { .. } | Op::Unlink { .. } | Op::Rename { .. })
    }

    /// The file whose bytes this op changes.
    pub fn data_ino(&self) -> Option<Ino> {
        match self {
            Op::Write { ino, .. } | Op::SetLen { ino, .. } | Op::Zero { ino, .. } => Some(*ino),
            _ => None,
        }
    }
}

/// An [`Op`] with the call it came from, for reports (`pwrite64(.x, 4096 B at 0)`).
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The change.
    pub op: Op,
    /// The system call, paths relative to the work directory.
    pub call: String,
}

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.call)
    }
}

/// The largest file the model holds (workloads are meant to be small).
pub const MAX_FILE: u64 = 1 << 30;

/// `u64` to `usize`; every size in the model is below [`MAX_FILE`].
pub(crate) fn us(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

/// One inode: contents as durable and as current, and the ops not yet durable.
#[derive(Debug, Clone)]
pub(crate) struct Inode {
    pub kind: Kind,
    pub durable: Vec<u8>,
    pub current: Vec<u8>,
    /// Indices (into the op list) of the data ops since the last sync.
    pub pending: Vec<usize>,
    /// [`content_hash`] of `durable`.
    pub durable_hash: u128,
    /// Bumped at every sync, for caches.
    pub generation: u64,
}

impl Inode {
    fn new(kind: Kind, data: Vec<u8>) -> Self {
        let durable_hash = content_hash(&data);
        Inode {
            kind,
            durable: data.clone(),
            current: data,
            pending: Vec::new(),
            durable_hash,
            generation: 0,
        }
    }
}

/// Directory entries by directory inode.
pub(crate) type Ns = BTreeMap<Ino, BTreeMap<OsString, Ino>>;

/// A namespace op not yet durable, and the directories whose `fsync` it still waits for.
#[derive(Debug, Clone)]
pub(crate) struct PendingNs {
    pub op: usize,
    pub needs: Vec<Ino>,
}

/// The model of the work directory at one point of the operation.
#[derive(Debug, Clone)]
pub(crate) struct Fs {
    pub inodes: Vec<Inode>,
    /// The namespace as the program sees it.
    pub cur: Ns,
    /// The namespace as durable.
    pub dur: Ns,
    /// Namespace ops not yet durable, in order.
    pub pending_ns: Vec<PendingNs>,
    /// Output written so far.
    pub stdout: Vec<u8>,
    /// Output written so far.
    pub stderr: Vec<u8>,
    /// Any sync commits every pending namespace op ([`crate::NamespaceModel::Journaled`]).
    pub journaled: bool,
}

impl Fs {
    /// Reads the directory `root` (files and directories only), all of it durable.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Unsupported`] for symbolic links, devices, sockets, FIFOs and
    /// files over [`MAX_FILE`].
    pub fn snapshot(root: &Path) -> Result<Fs, Error> {
        let mut fs = Fs {
            inodes: vec![Inode::new(Kind::Dir, Vec::new())],
            cur: Ns::new(),
            dur: Ns::new(),
            pending_ns: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            journaled: false,
        };
        fs.cur.insert(ROOT, BTreeMap::new());
        let tree = read_tree(root)?;
        let mut inos: BTreeMap<PathBuf, Ino> = BTreeMap::new();
        inos.insert(PathBuf::new(), ROOT);
        for (rel, entry) in tree {
            let parent = rel.parent().and_then(|p| inos.get(p)).copied().unwrap_or(ROOT);
            let name = rel.file_name().unwrap_or_default().to_owned();
            let ino = fs.inodes.len();
            let (kind, data) = match entry {
                Entry::Dir => (Kind::Dir, Vec::new()),
                Entry::File(d) => (Kind::File, d),
            };
            fs.inodes.push(Inode::new(kind, data));
            fs.cur.entry(parent).or_default().insert(name, ino);
            if kind == Kind::Dir {
                fs.cur.entry(ino).or_default();
            }
            inos.insert(rel, ino);
        }
        fs.dur = fs.cur.clone();
        Ok(fs)
    }

    /// Applies op number `index` of `ops` (its data ops become pending, its syncs make
    /// things durable).
    pub fn step(&mut self, ops: &[Recorded], index: usize) {
        if let Some(r) = ops.get(index) {
            self.apply(index, &r.op);
            self.settle(ops);
        }
    }

    fn apply(&mut self, index: usize, op: &Op) {
        match op {
            Op::Create { dir, ino, kind, .. } => {
                if self.inodes.len() <= *ino {
                    self.inodes.resize_with(*ino + 1, || Inode::new(Kind::File, Vec::new()));
                }
                self.inodes[*ino] = Inode::new(*kind, Vec::new());
                apply_ns(&mut self.cur, op);
                self.pending_ns.push(PendingNs { op: index, needs: vec![*dir] });
            }
            Op::Link { dir, .. } | Op::Unlink { dir, .. } => {
                apply_ns(&mut self.cur, op);
                self.pending_ns.push(PendingNs { op: index, needs: vec![*dir] });
            }
            Op::Rename { from_dir, to_dir, .. } => {
                apply_ns(&mut self.cur, op);
                let mut needs = vec![*from_dir];
                if to_dir != from_dir {
                    needs.push(*to_dir);
                }
                self.pending_ns.push(PendingNs { op: index, needs });
            }
            Op::Write { ino, .. } | Op::SetLen { ino, .. } | Op::Zero { ino, .. } => {
                if let Some(inode) = self.inodes.get_mut(*ino) {
                    apply_data(&mut inode.current, op, None);
                    inode.pending.push(index);
                }
            }
            Op::Sync { ino } => self.sync(*ino),
            Op::SyncAll => {
                for i in 0..self.inodes.len() {
                    self.sync_file(i);
                }
                self.dur = self.cur.clone();
                self.pending_ns.clear();
            }
            Op::Output { stream: Stream::Stdout, data } => self.stdout.extend_from_slice(data),
            Op::Output { stream: Stream::Stderr, data } => self.stderr.extend_from_slice(data),
        }
    }

    /// A file's contents become durable; a directory's pending ops stop waiting for it
    /// (every pending op, when journaled).
    fn sync(&mut self, ino: Ino) {
        if self.journaled {
            for p in &mut self.pending_ns {
                p.needs.clear();
            }
        }
        match self.inodes.get(ino).map(|i| i.kind) {
            Some(Kind::File) => self.sync_file(ino),
            Some(Kind::Dir) => {
                for p in &mut self.pending_ns {
                    p.needs.retain(|&d| d != ino);
                }
            }
            None => {}
        }
    }

    fn sync_file(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(ino)
            && inode.kind == Kind::File
            && (!inode.pending.is_empty() || inode.durable != inode.current)
        {
            inode.durable.clone_from(&inode.current);
            inode.durable_hash = content_hash(&inode.durable);
            inode.pending.clear();
            inode.generation += 1;
        }
    }

    /// Moves the namespace ops that no longer wait for any directory into the durable
    /// namespace, in order.
    fn settle(&mut self, ops: &[Recorded]) {
        if self.pending_ns.iter().all(|p| !p.needs.is_empty()) {
            return;
        }
        let mut keep = Vec::with_capacity(self.pending_ns.len());
        for p in std::mem::take(&mut self.pending_ns) {
            if p.needs.is_empty() {
                if let Some(r) = ops.get(p.op) {
                    apply_ns(&mut self.dur, &r.op);
                }
            } else {
                keep.push(p);
            }
        }
        self.pending_ns = keep;
    }

    /// The inode at `comps` (relative to the root) in the current namespace.
    pub fn lookup(&self, comps: &[OsString]) -> Option<Ino> {
        let mut at = ROOT;
        for c in comps {
            at = *self.cur.get(&at)?.get(c)?;
        }
        Some(at)
    }

    /// The current path of `ino` relative to the root, if it has one.
    pub fn path_of(&self, ino: Ino) -> Option<PathBuf> {
        if ino == ROOT {
            return Some(PathBuf::new());
        }
        let mut found = None;
        walk(&self.cur, &mut |path, i| {
            if i == ino && found.is_none() {
                found = Some(path.to_path_buf());
            }
        });
        found
    }

    /// The current tree (what the program left), for comparison with the disk.
    pub fn current_tree(&self) -> BTreeMap<PathBuf, Entry> {
        let mut out = BTreeMap::new();
        walk(&self.cur, &mut |path, ino| {
            let e = match self.inodes[ino].kind {
                Kind::Dir => Entry::Dir,
                Kind::File => Entry::File(self.inodes[ino].current.clone()),
            };
            out.insert(path.to_path_buf(), e);
        });
        out
    }
}

/// Applies a namespace op to a namespace. A rename moves its inode only if the source name
/// still names it there; an unlink removes the name only if it names the unlinked inode
/// (so that each op acts on its own inode whatever subset of pending ops was kept).
pub(crate) fn apply_ns(ns: &mut Ns, op: &Op) {
    match op {
        Op::Create { dir, name, ino, kind } => {
            ns.entry(*dir).or_default().insert(name.clone(), *ino);
            if *kind == Kind::Dir {
                ns.entry(*ino).or_default();
            }
        }
        Op::Link { dir, name, ino } => {
            ns.entry(*dir).or_default().insert(name.clone(), *ino);
        }
        Op::Unlink { dir, name, ino } => {
            if let Some(d) = ns.get_mut(dir)
                && d.get(name) == Some(ino)
            {
                d.remove(name);
            }
        }
        Op::Rename { from_dir, from_name, to_dir, to_name, ino } => {
            if let Some(d) = ns.get_mut(from_dir)
                && d.get(from_name) == Some(ino)
            {
                d.remove(from_name);
            }
            ns.entry(*to_dir).or_default().insert(to_name.clone(), *ino);
        }
        _ => {}
    }
}

/// Applies a data op to `content`. `keep`, for a write, restricts it to byte ranges (file
/// offsets): a torn write. The size grows only as far as the bytes kept.
pub(crate) fn apply_data(content: &mut Vec<u8>, op: &Op, keep: Option<&[(u64, u64)]>) {
    match op {
        Op::Write { offset, data, .. } => {
            let end = offset + data.len() as u64;
            let whole = [(*offset, end)];
            for &(s, e) in keep.unwrap_or(&whole) {
                let (s, e) = (s.max(*offset), e.min(end));
                if s >= e {
                    continue;
                }
                if content.len() < us(e) {
                    content.resize(us(e), 0);
                }
                let src = data.get(us(s - offset)..us(e - offset)).unwrap_or_default();
                if let Some(dst) = content.get_mut(us(s)..us(e)) {
                    dst.copy_from_slice(src);
                }
            }
        }
        Op::SetLen { len, .. } => content.resize(us(*len), 0),
        Op::Zero { offset, len, .. } => {
            let s = us(*offset).min(content.len());
            let e = us(offset.saturating_add(*len)).min(content.len());
            if let Some(r) = content.get_mut(s..e) {
                r.fill(0);
            }
        }
        _ => {}
    }
}

/// Calls `f(path, ino)` for every inode reachable from the root (not the root itself),
/// parents before children, names in byte order; cycles and orphans are skipped.
pub(crate) fn walk(ns: &Ns, f: &mut dyn FnMut(&Path, Ino)) {
    let mut seen = BTreeSet::new();
    seen.insert(ROOT);
    walk_dir(ns, ROOT, &PathBuf::new(), &mut seen, f);
}

fn walk_dir(ns: &Ns, dir: Ino, at: &Path, seen: &mut BTreeSet<Ino>, f: &mut dyn FnMut(&Path, Ino)) {
    let Some(entries) = ns.get(&dir) else { return };
    for (name, &ino) in entries {
        let path = at.join(name);
        f(&path, ino);
        if ns.contains_key(&ino) && seen.insert(ino) {
            walk_dir(ns, ino, &path, seen, f);
        }
    }
}

/// The 128-bit hash of a file's bytes (length included).
pub(crate) fn content_hash(data: &[u8]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(data.len() as u64).to_le_bytes());
    h.update(data);
    h.digest128()
}

/// An entry of a materialised tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir,
    File(Vec<u8>),
}

/// Reads the tree under `root` (relative paths, parents first).
///
/// # Errors
/// [`Error::Io`]; [`Error::Unsupported`] for anything but files and directories.
pub(crate) fn read_tree(root: &Path) -> Result<BTreeMap<PathBuf, Entry>, Error> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let rd = std::fs::read_dir(&dir).map_err(Error::io(&dir, "list"))?;
        for entry in rd {
            let entry = entry.map_err(Error::io(&dir, "list"))?;
            let path = entry.path();
            let child = rel.join(entry.file_name());
            let meta = std::fs::symlink_metadata(&path).map_err(Error::io(&path, "stat"))?;
            if meta.is_dir() {
                out.insert(child.clone(), Entry::Dir);
                stack.push(child);
            } else if meta.is_file() {
                if meta.len() > MAX_FILE {
                    return Err(Error::Unsupported {
                        what: format!("{} is {} bytes", path.display(), meta.len()),
                        detail: "the model holds files of up to 1 GiB; keep workloads small".into(),
                    });
                }
                let data = std::fs::read(&path).map_err(Error::io(&path, "read"))?;
                out.insert(child, Entry::File(data));
            } else {
                return Err(Error::Unsupported {
                    what: path.display().to_string(),
                    detail: "only regular files and directories are modelled".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Empties `root` (keeping the directory itself).
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn wipe(root: &Path) -> Result<(), Error> {
    for entry in std::fs::read_dir(root).map_err(Error::io(root, "list"))? {
        let path = entry.map_err(Error::io(root, "list"))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(Error::io(&path, "stat"))?;
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(Error::io(&path, "remove"))?;
    }
    Ok(())
}

/// Writes `tree` under the (empty) `root`. All-zero 4 KiB blocks are left as holes.
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn write_tree<'a>(
    root: &Path,
    tree: impl IntoIterator<Item = (&'a Path, Option<&'a [u8]>)>,
) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    for (rel, data) in tree {
        let path = root.join(rel);
        match data {
            None => std::fs::create_dir(&path).map_err(Error::io(&path, "create the directory"))?,
            Some(bytes) => {
                let f = std::fs::File::create(&path).map_err(Error::io(&path, "create"))?;
                for (i, block) in bytes.chunks(4096).enumerate() {
                    if block.iter().any(|&b| b != 0) {
                        f.write_all_at(block, i as u64 * 4096)
                            .map_err(Error::io(&path, "write"))?;
                    }
                }
                f.set_len(bytes.len() as u64).map_err(Error::io(&path, "set the length of"))?;
            }
        }
    }
    Ok(())
}

/// A short printable form of a relative path (`.` for the root).
pub(crate) fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() { ".".to_owned() } else { rel.display().to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn rec(op: Op) -> Recorded {
        Recorded { op, call: String::new() }
    }

    #[test]
    fn data_becomes_durable_on_fsync_names_on_directory_fsync() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"old").unwrap();
        let mut fs = Fs::snapshot(dir.path()).unwrap();
        let ops = vec![
            rec(Op::Create { dir: ROOT, name: "t".into(), ino: 2, kind: Kind::File }),
            rec(Op::Write { ino: 2, offset: 0, data: b"new!".to_vec() }),
            rec(Op::Sync { ino: 2 }),
            rec(Op::Rename {
                from_dir: ROOT,
                from_name: "t".into(),
                to_dir: ROOT,
                to_name: "a".into(),
                ino: 2,
            }),
            rec(Op::Sync { ino: ROOT }),
        ];
        for i in 0..4 {
            fs.step(&ops, i);
        }
        assert_eq!(fs.inodes[2].durable, b"new!");
        assert_eq!(fs.pending_ns.len(), 2);
        assert_eq!(fs.dur[&ROOT].get(OsStr::new("a")), Some(&1));
        fs.step(&ops, 4);
        assert!(fs.pending_ns.is_empty());
        assert_eq!(fs.dur[&ROOT].get(OsStr::new("a")), Some(&2));
        assert_eq!(fs.dur[&ROOT].get(OsStr::new("t")), None);
    }

    #[test]
    fn torn_writes_keep_only_the_ranges_given() {
        let mut c = b"abcdef".to_vec();
        let w = Op::Write { ino: 1, offset: 4, data: b"XYZW".to_vec() };
        apply_data(&mut c, &w, Some(&[(6, 7)]));
        assert_eq!(c, b"abcdefZ");
        apply_data(&mut c, &Op::Zero { ino: 1, offset: 1, len: 100 }, None);
        assert_eq!(c, b"a\0\0\0\0\0\0");
    }
}
