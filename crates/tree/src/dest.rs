//! The destination of a restore, handled through directory handles.
//!
//! A destination may hold anything someone placed there before or during the restore:
//! symlinks at the names restore will use, FIFOs, files named like its temporary files. So
//! nothing here resolves a path inside the destination by name from the top: each directory
//! is opened relative to its opened parent with `O_NOFOLLOW | O_DIRECTORY`, files are
//! created exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`) under short temporary names in the
//! opened directory and renamed into place within it, symlinks are made with `symlinkat`.
//! Nothing can then redirect a write outside the destination, make restore open a FIFO, or
//! make a temporary name longer than `NAME_MAX` when the final name fits.
//!
//! Opened directories are kept in a bounded cache keyed by their relative path, so restoring
//! N entries costs O(N · path length), not a walk from the top per entry.

use crate::TreeError;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Opened directories kept at once: well under the usual 1024 open files.
const CACHE_MAX: usize = 256;
/// The prefix of restore's temporary names: `.ckpt-r.{pid}.{16 hex digits}` (at most 42
/// bytes, so a temporary name fits `NAME_MAX` whatever the final name's length).
const TEMP_PREFIX: &[u8] = b".ckpt-r.";

fn io_error(path: &Path, op: &'static str, e: Errno) -> TreeError {
    TreeError::Io { path: path.to_path_buf(), op, source: e.into() }
}

/// An opened directory of the destination and its path (for messages).
#[derive(Clone)]
pub(crate) struct DirHandle {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    /// Whether the directory has a default ACL (asked once).
    default_acl: Arc<std::sync::OnceLock<bool>>,
}

impl DirHandle {
    /// The directory's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether inodes created in the directory inherit ACLs (it has a default ACL).
    pub(crate) fn passes_on_acls(&self) -> bool {
        *self.default_acl.get_or_init(|| {
            // One byte is enough to learn the attribute exists (ERANGE if it is longer).
            match rustix::fs::fgetxattr(&*self.fd, "system.posix_acl_default", &mut [0u8; 1][..]) {
                Ok(_) | Err(Errno::RANGE) => true,
                Err(_) => false,
            }
        })
    }

    /// The directory's descriptor.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// The destination directory of a restore.
pub(crate) struct Dest {
    root: DirHandle,
    cache: HashMap<Vec<u8>, DirHandle>,
    /// Directories kept open at most (each is a descriptor).
    cache_max: usize,
    /// Directories that existed before and were cleaned of stale temporary files; `None`
    /// for a worker's view, which leaves cleaning to the restore's own.
    cleaned: Option<HashSet<Vec<u8>>>,
}

impl Dest {
    /// Creates `path` if missing (the caller named it: it may be a symlink) and opens it.
    pub(crate) fn open(path: &Path) -> Result<Self, TreeError> {
        std::fs::create_dir_all(path).map_err(|source| TreeError::Io {
            path: path.to_path_buf(),
            op: "cannot create destination",
            source,
        })?;
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(path, "cannot open destination", e))?;
        let root =
            DirHandle { fd: Arc::new(fd), path: path.to_path_buf(), default_acl: Arc::default() };
        remove_stale_temps(&root)?;
        Ok(Self {
            root,
            cache: HashMap::new(),
            cache_max: CACHE_MAX,
            cleaned: Some(HashSet::new()),
        })
    }

    /// Another view of the same destination for a worker thread, with its own few open
    /// directories; it creates nothing the restore's own view has not (directories are
    /// made before workers start) and cleans nothing.
    pub(crate) fn worker(&self) -> Self {
        Self { root: self.root.clone(), cache: HashMap::new(), cache_max: 16, cleaned: None }
    }

    /// The opened directory `rel` (a relative path of directories, empty for the top),
    /// creating missing ones; refuses to go through anything that is not a directory.
    pub(crate) fn dir(&mut self, rel: &[u8]) -> Result<DirHandle, TreeError> {
        if rel.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some(d) = self.cache.get(rel) {
            return Ok(d.clone());
        }
        // Start from the deepest cached ancestor.
        let mut start = self.root.clone();
        let mut done = 0;
        let mut at = rel.len();
        while let Some(slash) = rel.get(..at).and_then(|r| r.iter().rposition(|&b| b == b'/')) {
            if let Some(d) = rel.get(..slash).and_then(|p| self.cache.get(p)) {
                start = d.clone();
                done = slash + 1;
                break;
            }
            at = slash;
        }
        let mut dir = start;
        let rest = rel.get(done..).unwrap_or_default();
        let mut walked = done;
        for component in rest.split(|&b| b == b'/') {
            let (next, created) = open_or_make_dir(&dir, component)?;
            dir = next;
            walked += component.len();
            if let (Some(prefix), Some(cleaned)) = (rel.get(..walked), self.cleaned.as_mut())
                && !created
                && cleaned.insert(prefix.to_vec())
            {
                remove_stale_temps(&dir)?;
            }
            if self.cache.len() >= self.cache_max {
                self.cache.clear();
            }
            if let Some(prefix) = rel.get(..walked) {
                self.cache.insert(prefix.to_vec(), dir.clone());
            }
            walked += 1;
        }
        Ok(dir)
    }

    /// The opened parent directory of `rel` and `rel`'s last component.
    pub(crate) fn parent<'r>(&mut self, rel: &'r [u8]) -> Result<(DirHandle, &'r [u8]), TreeError> {
        match rel.iter().rposition(|&b| b == b'/') {
            Some(slash) => {
                let parent = rel.get(..slash).unwrap_or_default();
                let name = rel.get(slash + 1..).unwrap_or_default();
                Ok((self.dir(parent)?, name))
            }
            None => Ok((self.root.clone(), rel)),
        }
    }
}

/// Opens directory `name` in `parent` without following a symlink.
fn open_dir_fd(parent: &DirHandle, name: &[u8]) -> Result<OwnedFd, Errno> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    rustix::fs::openat(&*parent.fd, name, flags, Mode::empty())
}

/// The error for directory `name` of `parent` that [`open_dir_fd`] could not open.
fn open_dir_error(parent: &DirHandle, name: &[u8], e: Errno) -> TreeError {
    let path = parent.path.join(OsStr::from_bytes(name));
    match e {
        // O_NOFOLLOW | O_DIRECTORY on a symlink fails with ENOTDIR (or ELOOP): say which.
        Errno::LOOP | Errno::NOTDIR => {
            let link = rustix::fs::statat(&*parent.fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
            let reason = if link {
                "the path goes through a symbolic link"
            } else {
                "something that is not a directory is in the way"
            };
            TreeError::Refused { path, reason }
        }
        e => io_error(&path, "cannot open directory", e),
    }
}

/// Opens directory `name` in `parent` without following a symlink, creating it if missing;
/// says whether it was created.
fn open_or_make_dir(parent: &DirHandle, name: &[u8]) -> Result<(DirHandle, bool), TreeError> {
    let mut created = false;
    let opened = match open_dir_fd(parent, name) {
        Err(Errno::NOENT) => {
            match rustix::fs::mkdirat(&*parent.fd, name, Mode::from_raw_mode(0o777)) {
                Ok(()) => created = true,
                Err(Errno::EXIST) => {}
                Err(e) => {
                    let path = parent.path.join(OsStr::from_bytes(name));
                    return Err(io_error(&path, "cannot create directory", e));
                }
            }
            open_dir_fd(parent, name)
        }
        other => other,
    };
    let fd = opened.map_err(|e| open_dir_error(parent, name, e))?;
    let path = parent.path.join(OsStr::from_bytes(name));
    Ok((DirHandle { fd: Arc::new(fd), path, default_acl: Arc::default() }, created))
}

/// What is at `name` in `dir`, without following a symlink (`None`: nothing).
pub(crate) fn kind_at(dir: &DirHandle, name: &[u8]) -> Result<Option<FileType>, TreeError> {
    match rustix::fs::statat(&*dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io_error(&dir.path.join(OsStr::from_bytes(name)), "cannot inspect", e)),
    }
}

/// Creates symlink `name` in `dir` pointing at `target`. A file or symlink already there
/// is replaced atomically (the new link is made under a temporary name and renamed over
/// it, never written through); a directory there is refused.
pub(crate) fn make_symlink(dir: &DirHandle, name: &[u8], target: &[u8]) -> Result<(), TreeError> {
    let path = dir.path.join(OsStr::from_bytes(name));
    match rustix::fs::symlinkat(target, &*dir.fd, name) {
        Ok(()) => return Ok(()),
        Err(Errno::EXIST) => {}
        Err(e) => return Err(io_error(&path, "cannot create symlink", e)),
    }
    let make = |at: &[u8]| rustix::fs::symlinkat(target, &*dir.fd, at);
    let in_the_way = "a directory is in the way of a symlink";
    create_replacing(dir, name, in_the_way, &make, &mut |_| Ok(()))?
        .map_err(|e| io_error(&path, "cannot create symlink", e))
}

/// Why an entry that is not a directory cannot replace what is at its name.
pub(crate) const DIR_IN_THE_WAY: &str = "a directory is in the way";

/// Creates an object under a fresh temporary name in `dir` with `create`, lets `prepare` set
/// it up (reached by that name, never followed), then renames it onto `name`, replacing a
/// file, symlink or special file there (never a directory). Returns `Ok(Err(errno))` when
/// `create` itself is refused (e.g. a device node without root), having changed nothing;
/// a directory at `name` is refused with `in_the_way` as the reason.
pub(crate) fn create_replacing(
    dir: &DirHandle,
    name: &[u8],
    in_the_way: &'static str,
    create: &dyn Fn(&[u8]) -> Result<(), Errno>,
    prepare: &mut dyn FnMut(&[u8]) -> Result<(), TreeError>,
) -> Result<Result<(), Errno>, TreeError> {
    let path = dir.path.join(OsStr::from_bytes(name));
    if kind_at(dir, name)? == Some(FileType::Directory) {
        return Err(TreeError::Refused { path, reason: in_the_way });
    }
    for _ in 0..64 {
        let temp = temp_name();
        match create(&temp) {
            Ok(()) => {}
            Err(Errno::EXIST) => continue,
            Err(e) => return Ok(Err(e)),
        }
        let unlink = || rustix::fs::unlinkat(&*dir.fd, temp.as_slice(), AtFlags::empty());
        if let Err(e) = prepare(&temp) {
            let _ = unlink();
            return Err(e);
        }
        let renamed = rustix::fs::renameat(&*dir.fd, temp.as_slice(), &*dir.fd, name);
        // Renaming a hard link onto another name of the same inode does nothing and leaves
        // the temporary name: remove it.
        let _ = unlink();
        return renamed.map(Ok).map_err(|e| io_error(&path, "cannot publish", e));
    }
    Err(TreeError::Refused { path, reason: "every temporary name tried is taken" })
}

/// Opens `name` in `dir` with `O_PATH`, never following it, and checks it is `kind`.
pub(crate) fn open_node(
    dir: &DirHandle,
    name: &[u8],
    kind: FileType,
) -> Result<OwnedFd, TreeError> {
    let path = || dir.path.join(OsStr::from_bytes(name));
    let fd = rustix::fs::openat(
        &*dir.fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(&path(), "cannot open", e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| io_error(&path(), "cannot inspect", e))?;
    if FileType::from_raw_mode(st.st_mode) != kind {
        return Err(TreeError::Refused {
            path: path(),
            reason: "the new node was replaced by someone else during the restore",
        });
    }
    Ok(fd)
}

/// Opens directory `name` of `dir` (never through a symlink) as a `File`, to set its mode
/// and time.
pub(crate) fn open_dir_file(dir: &DirHandle, name: &[u8]) -> Result<File, TreeError> {
    open_dir_fd(dir, name).map(File::from).map_err(|e| open_dir_error(dir, name, e))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary name: `.ckpt-r.{pid}.{16 hex digits}`.
fn temp_name() -> Vec<u8> {
    let mut name = TEMP_PREFIX.to_vec();
    name.extend_from_slice(format!("{}.{:016x}", std::process::id(), unguessable()).as_bytes());
    name
}

/// A number nobody outside this process can predict (std's hash keys come from the OS's
/// random source), so names cannot be taken in advance; `O_EXCL` makes them safe anyway.
fn unguessable() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A file being restored under a short temporary name in its directory; removed unless
/// published. It holds no open file between uses: a restore may have thousands pending.
pub(crate) struct TempFile {
    dir: DirHandle,
    name: Vec<u8>,
    dev: u64,
    ino: u64,
    published: bool,
}

impl TempFile {
    /// Creates a new empty file exclusively in `dir`, mode 0600, and returns it open for
    /// writing. Names already taken (by anyone) are skipped, never opened.
    pub(crate) fn create(dir: &DirHandle) -> Result<(Self, File), TreeError> {
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC;
        for _ in 0..64 {
            let name = temp_name();
            match rustix::fs::openat(&*dir.fd, name.as_slice(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    let st = rustix::fs::fstat(&fd)
                        .map_err(|e| io_error(&dir.path, "cannot inspect", e))?;
                    let temp = Self {
                        dir: dir.clone(),
                        name,
                        dev: st.st_dev,
                        ino: st.st_ino,
                        published: false,
                    };
                    return Ok((temp, File::from(fd)));
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(io_error(&dir.path, "cannot create a temporary file in", e)),
            }
        }
        Err(TreeError::Refused {
            path: dir.path.clone(),
            reason: "every temporary name tried is taken",
        })
    }

    /// The temporary file's path, for messages.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path.join(OsStr::from_bytes(&self.name))
    }

    /// Opens the temporary file again for writing, checking it is still the file created.
    pub(crate) fn reopen(&self) -> Result<File, TreeError> {
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*self.dir.fd, self.name.as_slice(), flags, Mode::empty())
            .map_err(|e| io_error(&self.path(), "cannot open", e))?;
        self.check_same(&fd)?;
        Ok(File::from(fd))
    }

    fn check_same(&self, fd: &OwnedFd) -> Result<(), TreeError> {
        let st = rustix::fs::fstat(fd).map_err(|e| io_error(&self.path(), "cannot inspect", e))?;
        if (st.st_dev, st.st_ino) == (self.dev, self.ino) {
            Ok(())
        } else {
            Err(TreeError::Refused {
                path: self.path(),
                reason: "the temporary file was replaced by someone else during the restore",
            })
        }
    }

    /// Renames the temporary file onto `name` in its directory (replacing a file or symlink
    /// there, never a directory), after checking it is still the file created.
    pub(crate) fn publish(mut self, file: &File, name: &[u8]) -> Result<(), TreeError> {
        let path = self.dir.path.join(OsStr::from_bytes(name));
        if kind_at(&self.dir, name)? == Some(FileType::Directory) {
            return Err(TreeError::Refused { path, reason: "a directory is in the way of a file" });
        }
        let st = rustix::fs::statat(&*self.dir.fd, self.name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_error(&self.path(), "cannot inspect", e))?;
        let fd_st =
            rustix::fs::fstat(file).map_err(|e| io_error(&self.path(), "cannot inspect", e))?;
        if (st.st_dev, st.st_ino) != (self.dev, self.ino)
            || (fd_st.st_dev, fd_st.st_ino) != (self.dev, self.ino)
        {
            return Err(TreeError::Refused {
                path: self.path(),
                reason: "the temporary file was replaced by someone else during the restore",
            });
        }
        rustix::fs::renameat(&*self.dir.fd, self.name.as_slice(), &*self.dir.fd, name)
            .map_err(|e| io_error(&path, "cannot publish", e))?;
        self.published = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = rustix::fs::unlinkat(&*self.dir.fd, self.name.as_slice(), AtFlags::empty());
        }
    }
}

/// A file being restored: an unnamed inode (`O_TMPFILE`), linked under its name once
/// complete, so no name exists that anyone could swap; or, where the file system has no
/// unnamed files, a [`TempFile`].
pub(crate) struct NewFile {
    dir: DirHandle,
    file: File,
    named: Option<TempFile>,
}

impl NewFile {
    /// Creates a new empty file in `dir`, mode 0600, open for writing.
    pub(crate) fn create(dir: &DirHandle) -> Result<Self, TreeError> {
        let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
        match rustix::fs::openat(&*dir.fd, c".", flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Ok(Self { dir: dir.clone(), file: File::from(fd), named: None }),
            // No O_TMPFILE in this kernel (EISDIR) or file system (EOPNOTSUPP).
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => {
                let (temp, file) = TempFile::create(dir)?;
                Ok(Self { dir: dir.clone(), file, named: Some(temp) })
            }
            Err(e) => Err(io_error(&dir.path, "cannot create a new file in", e)),
        }
    }

    /// A named temporary file, open as `file`, as a new file to publish.
    pub(crate) fn named(temp: TempFile, file: File) -> Self {
        Self { dir: temp.dir.clone(), file, named: Some(temp) }
    }

    /// The open file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// A path for messages: the temporary name, or the directory for an unnamed file.
    pub(crate) fn shown(&self) -> PathBuf {
        self.named.as_ref().map_or_else(|| self.dir.path.clone(), TempFile::path)
    }

    /// Gives the complete file its name `name` in its directory, replacing a file, symlink
    /// or special file there (never a directory).
    pub(crate) fn publish(self, name: &[u8]) -> Result<(), TreeError> {
        if let Some(temp) = self.named {
            return temp.publish(&self.file, name);
        }
        let path = self.dir.path.join(OsStr::from_bytes(name));
        match link_open_file(&self.file, &self.dir, name) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let link = |temp: &[u8]| link_open_file(&self.file, &self.dir, temp);
                create_replacing(&self.dir, name, DIR_IN_THE_WAY, &link, &mut |_| Ok(()))?
                    .map_err(|e| io_error(&path, "cannot publish", e))
            }
            Err(e) => Err(io_error(&path, "cannot publish", e)),
        }
    }
}

/// Links the open (unnamed) `file` as `name` in `dir`: through `/proc/self/fd` (any user),
/// or with `AT_EMPTY_PATH` where `/proc` is not mounted (which needs privilege).
fn link_open_file(file: &File, dir: &DirHandle, name: &[u8]) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    match rustix::fs::linkat(
        rustix::fs::CWD,
        proc.as_str(),
        &*dir.fd,
        name,
        AtFlags::SYMLINK_FOLLOW,
    ) {
        Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
            rustix::fs::linkat(file, c"", &*dir.fd, name, AtFlags::EMPTY_PATH)
        }
        other => other,
    }
}

/// Removes the temporary files that restores no longer running left in `dir` (killed, or
/// stopped by a power cut), and returns how many. A name is only taken as ours if it has
/// restore's prefix, a pid that is not alive, and is a regular file.
pub(crate) fn remove_stale_temps(dir: &DirHandle) -> Result<usize, TreeError> {
    // `Dir::read_from` reads through its own descriptor of the directory.
    let entries =
        rustix::fs::Dir::read_from(&*dir.fd).map_err(|e| io_error(&dir.path, "cannot list", e))?;
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(&dir.path, "cannot list", e))?;
        let name = entry.file_name().to_bytes();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else { continue };
        let pid = rest
            .iter()
            .position(|&b| b == b'.')
            .and_then(|dot| std::str::from_utf8(rest.get(..dot)?).ok())
            .and_then(|digits| digits.parse::<i32>().ok());
        let Some(pid) = pid else { continue };
        let alive = ckpt_io_backends::process_alive(pid);
        if !alive && kind_at(dir, name)? == Some(FileType::RegularFile) {
            stale.push(name.to_vec());
        }
    }
    for name in &stale {
        match rustix::fs::unlinkat(&*dir.fd, name.as_slice(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {
                tracing::info!(dir = %dir.path.display(), "removed a stale temporary file of an interrupted restore");
            }
            Err(e) => {
                return Err(io_error(&dir.path.join(OsStr::from_bytes(name)), "cannot remove", e));
            }
        }
    }
    Ok(stale.len())
}
