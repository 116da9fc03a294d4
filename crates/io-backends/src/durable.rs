//! Durable replace, the one copy every crate uses: `fsync` the new file, `rename` it over
//! the target, `fsync` the directory, so that after a crash the target's name holds either
//! the old file or the complete new one.
//!
//! A failed `fsync` is fatal: these functions return its error and never retry it (a
//! second `fsync` after a failed one can report success for pages the kernel dropped).
//!
//! Errors are plain [`io::Error`]s, and [`ReplaceError`] says which step failed, so each
//! caller maps them to its own error type with its own messages.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

/// The directory holding `path`: its parent, or `.` for a bare file name.
///
/// # Examples
/// ```
/// use ckpt_io_backends::durable::parent_dir;
/// use std::path::Path;
/// assert_eq!(parent_dir(Path::new("/srv/a.ckpt")), Path::new("/srv"));
/// assert_eq!(parent_dir(Path::new("a.ckpt")), Path::new("."));
/// ```
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// `fsync`s the directory `dir`, making the names created, renamed or removed in it
/// durable.
///
/// # Errors
/// The error of opening the directory or of its `fsync`.
///
/// # Examples
/// ```
/// use ckpt_io_backends::durable::{parent_dir, sync_dir};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("new");
/// std::fs::File::create(&path)?.sync_all()?;
/// sync_dir(parent_dir(&path))?;
/// assert!(sync_dir(&dir.path().join("missing")).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// The step of a durable replace that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceStep {
    /// The `fsync` of the new file; the target is untouched.
    SyncFile,
    /// The `rename` over the target; the target is untouched.
    Rename,
    /// The `fsync` of the directory, after the rename: the target has been replaced, but
    /// the new name may not survive a crash.
    SyncDir,
}

/// A failed durable replace: the step and what the system said.
#[derive(Debug)]
pub struct ReplaceError {
    /// The step that failed.
    pub step: ReplaceStep,
    /// What the system said.
    pub source: io::Error,
}

impl ReplaceError {
    /// Whether the rename happened (only the directory `fsync` failed), so the temporary
    /// name no longer exists.
    pub fn renamed(&self) -> bool {
        self.step == ReplaceStep::SyncDir
    }
}

impl fmt::Display for ReplaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.step {
            ReplaceStep::SyncFile => "fsync of the new file",
            ReplaceStep::Rename => "rename over the target",
            ReplaceStep::SyncDir => "fsync of the directory after the rename",
        };
        write!(f, "durable replace failed at the {step}: {}", self.source)
    }
}

impl std::error::Error for ReplaceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<ReplaceError> for io::Error {
    fn from(e: ReplaceError) -> Self {
        io::Error::new(e.source.kind(), e)
    }
}

fn at(step: ReplaceStep) -> impl FnOnce(io::Error) -> ReplaceError {
    move |source| ReplaceError { step, source }
}

/// Replaces `target` by the file `file` written at `temp`: `fsync` of `file`, `rename` of
/// `temp` to `target`, `fsync` of `target`'s directory, in that order.
///
/// # Errors
/// [`ReplaceError`] naming the step that failed; nothing is retried.
///
/// # Examples
/// ```
/// use ckpt_io_backends::durable::replace;
/// use std::io::Write;
/// let dir = tempfile::tempdir()?;
/// let (temp, target) = (dir.path().join("state.tmp"), dir.path().join("state"));
/// std::fs::write(&target, b"old")?;
/// let mut f = std::fs::File::create(&temp)?;
/// f.write_all(b"new")?;
/// replace(&f, &temp, &target)?;
/// assert_eq!(std::fs::read(&target)?, b"new");
/// assert!(!temp.exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn replace(file: &File, temp: &Path, target: &Path) -> Result<(), ReplaceError> {
    file.sync_all().map_err(at(ReplaceStep::SyncFile))?;
    std::fs::rename(temp, target).map_err(at(ReplaceStep::Rename))?;
    sync_dir(parent_dir(target)).map_err(at(ReplaceStep::SyncDir))
}

/// [`replace`] inside an opened directory: `fsync` of `file`, which is then closed,
/// `renameat` of `temp` to `target` (both names in `dir`), `fsync` of `dir`. Names are
/// resolved relative to the directory handle, so a directory renamed or replaced meanwhile
/// cannot redirect the rename.
///
/// # Errors
/// [`ReplaceError`] naming the step that failed; nothing is retried.
///
/// # Examples
/// ```
/// use ckpt_io_backends::durable::replace_at;
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.tmp"), b"new")?;
/// let f = std::fs::File::open(dir.path().join("a.tmp"))?;
/// let d = std::fs::File::open(dir.path())?;
/// replace_at(f, &d, "a.tmp".as_ref(), "a".as_ref())?;
/// assert_eq!(std::fs::read(dir.path().join("a"))?, b"new");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn replace_at<D: AsFd>(
    file: File,
    dir: &D,
    temp: &OsStr,
    target: &OsStr,
) -> Result<(), ReplaceError> {
    rustix::fs::fsync(&file).map_err(|e| at(ReplaceStep::SyncFile)(e.into()))?;
    drop(file);
    rustix::fs::renameat(dir, temp, dir, target).map_err(|e| at(ReplaceStep::Rename)(e.into()))?;
    rustix::fs::fsync(dir).map_err(|e| at(ReplaceStep::SyncDir)(e.into()))
}
