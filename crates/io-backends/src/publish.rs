//! [`PublishSink`]: a checkpoint file written under a temporary name and published by an
//! atomic, durable rename.

use crate::align::{self, DirectAlignment};
use crate::block::BlockWriter;
use crate::durable::{self, ReplaceStep};
use crate::error::FailureLatch;
use crate::{BackendError, IoMode, OutputOptions};
use ckpt_frame_core::{IoError, Sink};
use memmap2::MmapMut;
use rustix::fs::{AtFlags, FallocateFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// What every temporary file name contains: `.{file_name}.ckpt-tmp.{pid}.{random}`.
pub const TEMP_MARKER: &str = ".ckpt-tmp.";

/// Longest part of the final file name kept in a temporary name, so that the temporary
/// name (dot, marker, pid, random) stays under `NAME_MAX` (255 bytes).
const NAME_KEEP: usize = 200;

/// The prefix of the temporary names of `file_name`: `.{file_name}.ckpt-tmp.` (with a
/// very long `file_name` cut to its first 200 bytes).
///
/// # Examples
/// ```
/// use ckpt_io_backends::temp_prefix;
/// assert_eq!(temp_prefix("state.ckpt".as_ref()), ".state.ckpt.ckpt-tmp.");
/// ```
pub fn temp_prefix(file_name: &OsStr) -> OsString {
    let bytes = file_name.as_bytes();
    let kept = bytes.get(..NAME_KEEP.min(bytes.len())).unwrap_or(bytes);
    let mut out = Vec::with_capacity(kept.len() + 1 + TEMP_MARKER.len());
    out.push(b'.');
    out.extend_from_slice(kept);
    out.extend_from_slice(TEMP_MARKER.as_bytes());
    OsString::from_vec(out)
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per thread and bumped per instance; mixing in
    // a counter and the clock makes names unique even across forks.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(now.map(|d| d.as_nanos()).unwrap_or_default());
    h.finish()
}

enum Backend {
    Block(BlockWriter),
    Mmap(MmapWriter),
    None,
}

/// A checkpoint being written under a temporary name next to its final path (same
/// directory, named `.{file_name}.ckpt-tmp.{pid}.{random}`), published atomically by
/// [`commit`](Self::commit).
///
/// Until `commit` returns, the final path keeps whatever it held before (or stays absent):
/// a crash leaves at most a temporary file behind (see [`remove_stale_temps`]), and dropping
/// an uncommitted sink removes its temporary file. The final path is never written in place.
/// If the final path is a symbolic link, the link itself is replaced.
///
/// Implements [`Sink`]: give it to a [`Writer`](ckpt_frame_core::Writer), call
/// [`Writer::finish`](ckpt_frame_core::Writer::finish), then
/// [`into_sink`](ckpt_frame_core::Writer::into_sink)`().commit()`. A write error poisons
/// the sink: `commit` then refuses to publish.
///
/// # Examples
/// ```
/// use ckpt_frame_core::Sink;
/// use ckpt_io_backends::{IoMode, OutputOptions, PublishSink};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("c");
/// std::fs::write(&path, b"old")?;
/// let mut sink = PublishSink::create(&path, &OutputOptions::new(IoMode::Auto))?;
/// sink.write_all(b"new bytes")?;
/// assert_eq!(std::fs::read(&path)?, b"old", "not visible before commit");
/// assert_eq!(sink.commit()?, 9);
/// assert_eq!(std::fs::read(&path)?, b"new bytes");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PublishSink {
    path: PathBuf,
    dir: OwnedFd,
    file_name: OsString,
    tmp_name: OsString,
    tmp_path: PathBuf,
    backend: Backend,
    requested: IoMode,
    alignment: Option<DirectAlignment>,
    fallback: Option<String>,
    written: u64,
    latch: FailureLatch,
    published: bool,
}

impl std::fmt::Debug for PublishSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishSink")
            .field("path", &self.path)
            .field("tmp_path", &self.tmp_path)
            .field("mode", &self.mode())
            .field("written", &self.written)
            .field("failed", &self.latch.has_failed())
            .finish_non_exhaustive()
    }
}

fn kind_of(ft: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        Some("it is a directory")
    } else if ft.is_fifo() {
        Some("it is a FIFO (named pipe); write to it as a stream instead")
    } else if ft.is_char_device() {
        Some("it is a character device; write to it as a stream instead")
    } else if ft.is_block_device() {
        Some("it is a block device, which publishing by rename would replace")
    } else if ft.is_socket() {
        Some("it is a socket")
    } else {
        None
    }
}

impl PublishSink {
    /// Creates the temporary file next to `path` and prepares it for `opts.mode`.
    ///
    /// [`IoMode::Auto`] resolves to [`IoMode::Direct`], or to [`IoMode::Buffered`] with a
    /// `tracing` warning when the filesystem refuses `O_DIRECT` (see
    /// [`fallback_reason`](Self::fallback_reason)). [`IoMode::Mmap`] reserves
    /// `opts.size_bound` bytes on disk (`fallocate`) and maps them.
    ///
    /// # Errors
    /// - [`BackendError::MissingSizeBound`]: `Mmap` without a size bound;
    /// - [`BackendError::Unsupported`]: `path` has no file name, or names a directory, FIFO,
    ///   device or socket;
    /// - [`BackendError::Publish`]: the directory cannot be opened or the temporary file
    ///   cannot be created there (missing directory, permissions, read-only filesystem);
    /// - [`BackendError::DirectUnsupported`]: `Direct` on a filesystem that refuses it;
    /// - [`BackendError::Io`]: reserving or mapping the space for `Mmap` failed.
    ///
    /// On error nothing is left behind.
    pub fn create(path: &Path, opts: &OutputOptions) -> Result<Self, BackendError> {
        let unsupported = |reason: &str| BackendError::Unsupported {
            path: path.to_owned(),
            op: "publish a checkpoint at",
            reason: reason.to_owned(),
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| unsupported("the path does not end in a file name"))?
            .to_owned();
        if opts.mode == IoMode::Mmap && opts.size_bound.is_none() {
            return Err(BackendError::MissingSizeBound { path: path.to_owned() });
        }
        match std::fs::metadata(path) {
            Ok(meta) => {
                if let Some(reason) = kind_of(meta.file_type()) {
                    return Err(unsupported(reason));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(BackendError::Publish {
                    path: path.to_owned(),
                    op: "inspect the existing file",
                    source,
                });
            }
        }
        let dir_path = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let publish_err =
            |op, e: Errno| BackendError::Publish { path: path.to_owned(), op, source: e.into() };
        let dir = rustix::fs::open(
            &dir_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| publish_err("open its directory", e))?;
        let prefix = temp_prefix(&file_name);
        let pid = rustix::process::getpid().as_raw_nonzero();
        let (tmp_name, fd) = {
            let mut attempt = 0;
            loop {
                let mut name = prefix.clone();
                name.push(format!("{pid}.{:016x}", random_u64()));
                let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC;
                match rustix::fs::openat(&dir, &name, flags, Mode::from_bits_truncate(0o666)) {
                    Ok(fd) => break (name, fd),
                    Err(Errno::EXIST) if attempt < 16 => attempt += 1,
                    Err(e) => return Err(publish_err("create the temporary file", e)),
                }
            }
        };
        let file = File::from(fd);
        let mut sink = PublishSink {
            path: path.to_owned(),
            tmp_path: dir_path.join(&tmp_name),
            dir,
            file_name,
            tmp_name,
            backend: Backend::None,
            requested: opts.mode,
            alignment: None,
            fallback: None,
            written: 0,
            latch: FailureLatch::default(),
            published: false,
        };
        // From here on, an error drops `sink`, which removes the temporary file.
        sink.backend = match opts.mode {
            IoMode::Buffered => sink.block(file, 1, false),
            IoMode::Direct | IoMode::Auto => sink.direct(file, opts.mode == IoMode::Auto)?,
            IoMode::Mmap => {
                let bound = opts.size_bound.unwrap_or_default();
                Backend::Mmap(MmapWriter::new(
                    file,
                    sink.tmp_path.clone(),
                    sink.path.clone(),
                    bound,
                )?)
            }
        };
        Ok(sink)
    }

    fn block(&self, file: File, align: usize, direct: bool) -> Backend {
        let auto = self.requested == IoMode::Auto;
        Backend::Block(BlockWriter::new(
            file,
            self.tmp_path.clone(),
            self.path.clone(),
            align,
            direct,
            auto,
        ))
    }

    fn direct(&mut self, file: File, auto: bool) -> Result<Backend, BackendError> {
        let enabled = rustix::fs::fcntl_getfl(&file)
            .and_then(|fl| rustix::fs::fcntl_setfl(&file, fl | OFlags::DIRECT));
        match enabled {
            Ok(()) => {
                let a = align::probe(&file);
                self.alignment = Some(a);
                // Auto says what it chose; an explicit Direct only when debugging.
                if auto {
                    tracing::info!(
                        path = %self.path.display(),
                        alignment = %a,
                        "writing with direct I/O (O_DIRECT)"
                    );
                } else {
                    tracing::debug!(
                        path = %self.path.display(),
                        alignment = %a,
                        "writing with direct I/O (O_DIRECT)"
                    );
                }
                Ok(self.block(file, a.buffer(), true))
            }
            Err(Errno::INVAL) => {
                let reason = format!(
                    "the filesystem of {} refused O_DIRECT (EINVAL when enabling it on a new file)",
                    self.tmp_path.parent().unwrap_or(Path::new(".")).display()
                );
                if !auto {
                    return Err(BackendError::DirectUnsupported {
                        path: self.path.clone(),
                        reason,
                    });
                }
                tracing::warn!(
                    path = %self.path.display(),
                    "{reason}; falling back to buffered I/O"
                );
                self.fallback = Some(reason);
                Ok(self.block(file, 1, false))
            }
            Err(e) => Err(BackendError::Io {
                path: self.tmp_path.clone(),
                op: "enable O_DIRECT on",
                source: e.into(),
            }),
        }
    }

    /// The mode actually in use: [`IoMode::Auto`] shows as [`IoMode::Direct`] or, after a
    /// fallback, [`IoMode::Buffered`].
    pub fn mode(&self) -> IoMode {
        match &self.backend {
            Backend::Block(b) if b.is_direct() => IoMode::Direct,
            Backend::Block(_) => IoMode::Buffered,
            Backend::Mmap(_) => IoMode::Mmap,
            Backend::None => self.requested,
        }
    }

    /// Why [`IoMode::Auto`] fell back to buffered I/O, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        match &self.backend {
            Backend::Block(b) if b.fallback().is_some() => b.fallback(),
            _ => self.fallback.as_deref(),
        }
    }

    /// The `O_DIRECT` alignment in use (direct mode only).
    pub fn direct_alignment(&self) -> Option<DirectAlignment> {
        self.alignment.filter(|_| self.mode() == IoMode::Direct)
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Publishes the checkpoint: writes out what is buffered, truncates the file to the
    /// bytes written (dropping `O_DIRECT` padding or the unused part of an `mmap` bound),
    /// `fsync`s it, renames it over the final path and `fsync`s the directory. Returns the
    /// number of bytes published.
    ///
    /// A failed `fsync` is final: the error is returned and the checkpoint is not
    /// published (the temporary file is removed); it is never retried.
    ///
    /// The sink does not parse what it was given: commit after
    /// [`Writer::finish`](ckpt_frame_core::Writer::finish) succeeded (a checkpoint without
    /// its tail would be published, and every reader would reject it as incomplete).
    ///
    /// # Errors
    /// - [`BackendError::Aborted`]: an earlier write failed;
    /// - [`BackendError::Io`]: writing out, unmapping or truncating failed;
    /// - [`BackendError::Publish`]: `fsync` of the file or the rename failed (the final
    ///   path is untouched), or the `fsync` of the directory failed (the rename has
    ///   happened but may not survive a crash).
    pub fn commit(mut self) -> Result<u64, BackendError> {
        if let Some(first) = self.latch.take_first() {
            return Err(BackendError::Aborted { path: self.path.clone(), first });
        }
        let file = match std::mem::replace(&mut self.backend, Backend::None) {
            Backend::Block(b) => b.finish(self.written)?,
            Backend::Mmap(m) => m.finish()?,
            Backend::None => {
                let first = "the sink was already used up".to_owned();
                return Err(BackendError::Aborted { path: self.path.clone(), first });
            }
        };
        let replaced = durable::replace_at(file, &self.dir, &self.tmp_name, &self.file_name);
        if let Err(e) = replaced {
            self.published = e.renamed();
            let op = match e.step {
                ReplaceStep::SyncFile => "fsync the temporary file",
                ReplaceStep::Rename => "rename the temporary file over it",
                ReplaceStep::SyncDir => "fsync the directory",
            };
            return Err(BackendError::Publish { path: self.path.clone(), op, source: e.source });
        }
        self.published = true;
        Ok(self.written)
    }

    fn fail(&mut self, e: BackendError) -> IoError {
        self.latch.fail(e)
    }

    fn check(&mut self) -> Result<(), IoError> {
        self.latch.check(&self.path)
    }
}

impl Drop for PublishSink {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        // Close (and unmap) first, then remove the temporary name; the final name is
        // never touched.
        self.backend = Backend::None;
        match rustix::fs::unlinkat(&self.dir, &self.tmp_name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => tracing::warn!(
                path = %self.tmp_path.display(),
                error = %io::Error::from(e),
                "could not remove the temporary file of an unpublished checkpoint"
            ),
        }
    }
}

impl Sink for PublishSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.check()?;
        let result = match &mut self.backend {
            Backend::Block(b) => b.write_all(bytes),
            Backend::Mmap(m) => m.write_all(bytes),
            Backend::None => Ok(()),
        };
        match result {
            Ok(()) => {
                self.written += bytes.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.latch.is_set() {
            return None;
        }
        let result = match &mut self.backend {
            Backend::Block(b) => b.reserve(len),
            Backend::Mmap(m) => Ok(m.reserve(len)),
            Backend::None => Ok(None),
        };
        match result {
            Ok(Some(mem)) => Some(mem),
            Ok(None) => None,
            Err(e) => {
                // Reported by the `write_all` that the writer falls back to.
                self.latch.defer(e);
                None
            }
        }
    }

    fn commit(&mut self, len: usize) -> Result<(), IoError> {
        self.check()?;
        let result = match &mut self.backend {
            Backend::Block(b) => b.commit(len),
            Backend::Mmap(m) => m.commit(len),
            Backend::None => Ok(()),
        };
        match result {
            Ok(()) => {
                self.written += len as u64;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.check()?;
        let result = match &mut self.backend {
            Backend::Block(b) => b.flush(),
            Backend::Mmap(_) | Backend::None => Ok(()),
        };
        result.map_err(|e| self.fail(e))
    }
}

/// Output into a shared map of the temporary file, sized at the bound.
struct MmapWriter {
    file: File,
    /// The temporary file, for I/O errors.
    path: PathBuf,
    /// The final path, for the size-bound error (a property of the checkpoint).
    final_path: PathBuf,
    map: MmapMut,
    bound: u64,
    pos: usize,
    reserved: usize,
}

impl MmapWriter {
    fn new(
        file: File,
        path: PathBuf,
        final_path: PathBuf,
        bound: u64,
    ) -> Result<Self, BackendError> {
        let io_err = |op, e: io::Error| BackendError::Io { path: path.clone(), op, source: e };
        let len = usize::try_from(bound).map_err(|_| {
            io_err(
                "map",
                io::Error::new(io::ErrorKind::InvalidInput, "size bound exceeds the address space"),
            )
        })?;
        if bound > 0 {
            // Allocate the blocks now: a full disk is then an error here, not a SIGBUS when
            // the map is first touched.
            match rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, bound) {
                Ok(()) => {}
                Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
                    tracing::warn!(
                        path = %path.display(),
                        "fallocate is not supported here; the map is sparse and a full disk would raise SIGBUS"
                    );
                    rustix::fs::ftruncate(&file, bound)
                        .map_err(|e| io_err("size the file for the map of", e.into()))?;
                }
                Err(e) => return Err(io_err("reserve disk space (fallocate) for", e.into())),
            }
        }
        let map = crate::map::map_output(&file, len).map_err(|e| io_err("map", e))?;
        Ok(Self { file, path, final_path, map, bound, pos: 0, reserved: 0 })
    }

    fn exceeded(&self, needed: usize) -> BackendError {
        BackendError::SizeBoundExceeded {
            path: self.final_path.clone(),
            bound: self.bound,
            needed: needed as u64,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        self.reserved = 0;
        let end = self.pos.saturating_add(bytes.len());
        if end > self.map.len() {
            return Err(self.exceeded(end));
        }
        if let Some(dst) = self.map.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
        Ok(())
    }

    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        let end = self.pos.checked_add(len)?;
        let mem = self.map.get_mut(self.pos..end)?;
        self.reserved = len;
        Some(mem)
    }

    fn commit(&mut self, len: usize) -> Result<(), BackendError> {
        if len > self.reserved {
            return Err(self.exceeded(self.pos.saturating_add(len)));
        }
        self.reserved = 0;
        self.pos += len;
        Ok(())
    }

    fn finish(self) -> Result<File, BackendError> {
        let Self { file, path, map, pos, .. } = self;
        let io_err = |op, e: io::Error| BackendError::Io { path: path.clone(), op, source: e };
        if pos > 0 {
            // msync; the fsync at commit would also write these pages on Linux, but msync
            // is what makes mapped writes durable everywhere.
            map.flush_range(0, pos).map_err(|e| io_err("msync", e))?;
        }
        drop(map);
        rustix::fs::ftruncate(&file, pos as u64)
            .map_err(|e| io_err("truncate to its real length", e.into()))?;
        Ok(file)
    }
}

/// Removes temporary files of `name` in `dir` (`.{name}.ckpt-tmp.{pid}.*`) left by writers
/// that are no longer running, and returns how many were removed.
///
/// A crash (or `kill -9`) of a writer leaves its temporary file behind; the final file is
/// never affected. A later run may call this to clean up. A temporary file whose pid is
/// alive is kept (the pid may have been reused by an unrelated process: the file is then
/// merely kept longer). Writers in another pid namespace sharing the directory are not
/// visible: their temporary files could be removed, which makes their commit fail loudly
/// (the rename finds no file), never corrupts a checkpoint.
///
/// # Errors
/// [`BackendError::Io`] when the directory cannot be listed, a file cannot be removed, or
/// the directory cannot be `fsync`ed afterwards.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join(".c.ckpt-tmp.999999999.0123456789abcdef"), b"half")?;
/// assert_eq!(ckpt_io_backends::remove_stale_temps(dir.path(), "c")?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn remove_stale_temps<N: AsRef<OsStr>>(dir: &Path, name: N) -> Result<usize, BackendError> {
    let io_err = |op, source| BackendError::Io { path: dir.to_owned(), op, source };
    let prefix = temp_prefix(name.as_ref());
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("list the directory", e))? {
        let entry = entry.map_err(|e| io_err("list the directory", e))?;
        let file_name = entry.file_name();
        let Some(rest) = file_name.as_bytes().strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        let Some(pid) = parse_pid(rest) else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_file()) || process_alive(pid) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {
                tracing::info!(
                    path = %entry.path().display(),
                    pid,
                    "removed a stale temporary checkpoint file"
                );
                removed += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(BackendError::Io { path: entry.path(), op: "remove", source });
            }
        }
    }
    if removed > 0 {
        durable::sync_dir(dir).map_err(|e| io_err("fsync", e))?;
    }
    Ok(removed)
}

/// The pid in `{pid}.{random}`.
fn parse_pid(rest: &[u8]) -> Option<i32> {
    let dot = rest.iter().position(|&b| b == b'.')?;
    let digits = std::str::from_utf8(rest.get(..dot)?).ok()?;
    digits.parse::<i32>().ok().filter(|&p| p > 0)
}

/// Whether a process with id `pid` exists (`kill(pid, 0)`; one of another user counts): how
/// a cleaner of temporary files named by pid tells a dead writer's file from a live one's.
///
/// # Examples
/// ```
/// assert!(ckpt_io_backends::process_alive(std::process::id().try_into()?));
/// assert!(!ckpt_io_backends::process_alive(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn process_alive(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else { return false };
    // kill(pid, 0): ESRCH means no such process; EPERM means it exists (another user).
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}
