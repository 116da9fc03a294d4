//! [`DirectReader`]: positional reads of one file with `O_DIRECT`, or through the page
//! cache. The one `O_DIRECT` reader of the std crates: [`open_input`](crate::open_input)
//! reads checkpoints with it in order, and `ckpt-sparse` reads disk images with it by range.

use crate::align::{AlignedBuf, DirectAlignment, direct_alignment_of};
use crate::{BackendError, IoMode};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Reads byte ranges of one file, with `O_DIRECT` where asked for and possible.
///
/// Reading a whole disk image or checkpoint once fills the page cache with pages nobody
/// reads again and evicts the ones that matter; `O_DIRECT` reads go from the device to
/// this process' buffer. The kernel then wants aligned offsets, lengths and memory
/// ([`DirectAlignment`], from `statx(STATX_DIOALIGN)`): the reader widens every request to
/// whole aligned blocks, reads them into its own aligned buffer (retrying `EINTR`, stopping
/// at the end of the file) and hands back the bytes asked for.
///
/// Opened with [`IoMode::Auto`], a file whose filesystem refuses `O_DIRECT` (at open, or
/// with `EINVAL` at the first read) is read through the page cache instead; a `tracing`
/// warning and [`fallback_reason`](Self::fallback_reason) say why. With
/// [`IoMode::Direct`] the refusal is an error.
///
/// Every read goes to the file: nothing is served from what an earlier read left in the
/// buffer.
///
/// # Examples
/// ```
/// use ckpt_io_backends::{DirectReader, IoMode};
/// use std::os::unix::fs::FileExt;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("img");
/// std::fs::File::create(&path)?.write_all_at(b"hello, blocks", 5000)?;
/// let mut reader = DirectReader::open(&path, IoMode::Auto)?;
/// assert_eq!(reader.read_at(5007, 6)?, b"blocks");
/// // At the end of the file a read may come back short; `read_at` would fail.
/// assert_eq!(reader.read_up_to(5007, 100)?, b"blocks");
/// assert!(reader.read_at(5007, 100).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DirectReader {
    file: File,
    path: PathBuf,
    /// The alignment of direct reads; `None` when reading buffered.
    alignment: Option<DirectAlignment>,
    /// Offset, length and memory alignment of reads: `alignment`'s, or 1 when buffered.
    align: u64,
    buf: AlignedBuf,
    /// File offset of `buf[0]` and how many bytes of `buf` the last read filled.
    win_off: u64,
    win_len: usize,
    /// A direct read has returned data: a later `EINVAL` is an error, not a refusal.
    proven: bool,
    /// Fall back to buffered reads when the first direct read is refused.
    auto: bool,
    fallback: Option<String>,
}

impl DirectReader {
    /// Opens `path` for reading in `mode`:
    ///
    /// - [`IoMode::Buffered`]: through the page cache.
    /// - [`IoMode::Direct`]: `O_DIRECT`; the first block is read at open, so a filesystem
    ///   that accepts the flag but refuses the I/O is caught here.
    /// - [`IoMode::Auto`]: `Direct`, or `Buffered` where `O_DIRECT` is refused (see
    ///   [`fallback_reason`](Self::fallback_reason)).
    /// - [`IoMode::Mmap`]: refused; a mapped file is read with
    ///   [`open_input_mapped`](crate::open_input_mapped).
    ///
    /// # Errors
    /// [`BackendError::Open`] naming `path` when it cannot be opened;
    /// [`BackendError::Unsupported`] for a directory or [`IoMode::Mmap`];
    /// [`BackendError::DirectUnsupported`] for [`IoMode::Direct`] where `O_DIRECT` is
    /// refused (a pipe or socket, a filesystem without it); [`BackendError::Io`] when the
    /// first direct read fails otherwise.
    ///
    /// # Examples
    /// ```
    /// use ckpt_io_backends::{BackendError, DirectReader, IoMode};
    /// let err = DirectReader::open("/dev/null".as_ref(), IoMode::Direct).unwrap_err();
    /// assert!(matches!(err, BackendError::DirectUnsupported { .. }), "{err}");
    /// let null = DirectReader::open("/dev/null".as_ref(), IoMode::Auto)?;
    /// assert!(!null.is_direct() && null.fallback_reason().is_some());
    /// # Ok::<(), BackendError>(())
    /// ```
    pub fn open(path: &Path, mode: IoMode) -> Result<Self, BackendError> {
        let meta = std::fs::metadata(path)
            .map_err(|source| BackendError::Open { path: path.to_owned(), source })?;
        let unsupported = |op, reason: &str| BackendError::Unsupported {
            path: path.to_owned(),
            op,
            reason: reason.to_owned(),
        };
        if meta.is_dir() {
            return Err(unsupported("read", "it is a directory"));
        }
        let ft = meta.file_type();
        match mode {
            IoMode::Buffered => Self::open_buffered(path),
            IoMode::Mmap => Err(unsupported(
                "read with a positional reader",
                "a mapped file is read with open_input_mapped",
            )),
            IoMode::Direct => Self::open_direct(path, ft, false),
            IoMode::Auto => match Self::open_direct(path, ft, true) {
                Err(BackendError::DirectUnsupported { reason, .. }) => {
                    warn_fallback(path, &reason);
                    let mut reader = Self::open_buffered(path)?;
                    reader.fallback = Some(reason);
                    Ok(reader)
                }
                other => other,
            },
        }
    }

    /// A buffered reader of an open file, named `path` in errors. The file must not have
    /// `O_DIRECT` set.
    ///
    /// # Examples
    /// ```
    /// use ckpt_io_backends::DirectReader;
    /// use std::io::Write;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"abcdef")?;
    /// let mut reader = DirectReader::buffered(file, "scratch");
    /// assert_eq!(reader.read_at(2, 3)?, b"cde");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn buffered(file: File, path: impl Into<PathBuf>) -> Self {
        Self::new(file, path.into(), None, false)
    }

    fn new(file: File, path: PathBuf, alignment: Option<DirectAlignment>, auto: bool) -> Self {
        let align = alignment.map_or(1, |a| a.buffer());
        Self {
            file,
            path,
            alignment,
            align: align as u64,
            buf: AlignedBuf::new(crate::IO_BUF_LEN, align),
            win_off: 0,
            win_len: 0,
            proven: false,
            auto,
            fallback: None,
        }
    }

    fn open_buffered(path: &Path) -> Result<Self, BackendError> {
        let file = File::open(path)
            .map_err(|source| BackendError::Open { path: path.to_owned(), source })?;
        Ok(Self::buffered(file, path))
    }

    fn open_direct(path: &Path, ft: std::fs::FileType, auto: bool) -> Result<Self, BackendError> {
        let unsupported = |reason: &str| BackendError::DirectUnsupported {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        // Opening a FIFO blocks until a writer appears, and a second open (for the
        // fallback) could make the writer see a broken pipe: decide from the type instead.
        if ft.is_fifo() || ft.is_socket() {
            return Err(unsupported(
                "it is a pipe or socket; O_DIRECT needs a regular file or a block device",
            ));
        }
        let flags = OFlags::RDONLY | OFlags::DIRECT | OFlags::CLOEXEC;
        let file = match rustix::fs::open(path, flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::INVAL) => {
                return Err(unsupported(
                    "the kernel refused O_DIRECT when opening it (EINVAL): its filesystem or device does not support direct I/O",
                ));
            }
            Err(e) => return Err(BackendError::Open { path: path.to_owned(), source: e.into() }),
        };
        let Some(alignment) = direct_alignment_of(&file) else {
            return Err(unsupported(
                "statx reports no direct I/O for it (STATX_DIOALIGN alignments 0)",
            ));
        };
        let mut reader = Self::new(file, path.to_owned(), Some(alignment), auto);
        // Read the first block now: some filesystems accept the flag and refuse the I/O.
        reader.fill(0, alignment.buffer())?;
        Ok(reader)
    }

    /// Whether reads bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.alignment.is_some()
    }

    /// The `O_DIRECT` alignment in use (`None` when reading buffered).
    pub fn alignment(&self) -> Option<DirectAlignment> {
        self.alignment
    }

    /// Why an [`IoMode::Auto`] reader reads buffered, if it does.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The open file (for its metadata and layout).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path named in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `len` bytes at `offset`. A zero-length read is empty at any offset and does no
    /// I/O.
    ///
    /// # Errors
    /// [`BackendError::Io`] naming the file: the system's error when a read fails, or
    /// [`io::ErrorKind::UnexpectedEof`] when the range runs past the end of the file.
    /// [`BackendError::DirectUnsupported`] for an [`IoMode::Direct`] reader whose first
    /// read of data is refused. The reader stays usable after an error.
    ///
    /// # Examples
    /// ```
    /// use ckpt_io_backends::{DirectReader, IoMode};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("f");
    /// std::fs::write(&path, vec![7u8; 10_000])?;
    /// let mut reader = DirectReader::open(&path, IoMode::Auto)?;
    /// assert_eq!(reader.read_at(4095, 3)?, [7, 7, 7]);
    /// let err = reader.read_at(9_999, 2).unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_at(&mut self, offset: u64, len: usize) -> Result<&[u8], BackendError> {
        let range = self.read_range(offset, len)?;
        if range.len() < len {
            return Err(self.eof(offset, len));
        }
        Ok(self.buf.as_slice().get(range).unwrap_or_default())
    }

    /// Up to `len` bytes at `offset`: fewer only where the file ends first (none at or past
    /// its end). A zero-length read does no I/O.
    ///
    /// # Errors
    /// As [`read_at`](Self::read_at), except that reaching the end of the file is not one.
    ///
    /// # Examples
    /// ```
    /// use ckpt_io_backends::{DirectReader, IoMode};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("f");
    /// std::fs::write(&path, b"0123456789")?;
    /// let mut reader = DirectReader::open(&path, IoMode::Auto)?;
    /// assert_eq!(reader.read_up_to(7, 100)?, b"789");
    /// assert!(reader.read_up_to(10, 5)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_up_to(&mut self, offset: u64, len: usize) -> Result<&[u8], BackendError> {
        let range = self.read_range(offset, len)?;
        Ok(self.buf.as_slice().get(range).unwrap_or_default())
    }

    /// What the last read left in the buffer: its file offset (aligned for direct reads)
    /// and the bytes read from there, which may start before and end after the bytes that
    /// were asked for. For sequential readers in this crate.
    pub(crate) fn window(&self) -> (u64, &[u8]) {
        (self.win_off, self.buf.as_slice().get(..self.win_len).unwrap_or_default())
    }

    /// Reads the aligned blocks around `offset..offset + len`; the range of the buffer
    /// holding the bytes asked for that the file has.
    fn read_range(&mut self, offset: u64, len: usize) -> Result<Range<usize>, BackendError> {
        if len == 0 {
            return Ok(0..0);
        }
        self.fill(offset, len)?;
        let skip = usize::try_from(offset - self.win_off).unwrap_or(usize::MAX);
        let have = self.win_len.saturating_sub(skip).min(len);
        Ok(skip..skip + have)
    }

    /// Reads the aligned blocks around `offset..offset + len` into the buffer (fewer at
    /// the end of the file) and records them as the window.
    fn fill(&mut self, offset: u64, len: usize) -> Result<(), BackendError> {
        let align = self.align;
        let start = offset - offset % align;
        let span = offset
            .checked_add(len as u64)
            .and_then(|end| end.checked_next_multiple_of(align))
            .and_then(|end| usize::try_from(end - start).ok());
        let Some(mut span) = span else { return Err(self.eof(offset, len)) };
        self.win_off = start;
        self.win_len = 0;
        if span > self.buf.cap() {
            // Grow the buffer only for bytes the file has: a huge length is not a huge
            // allocation.
            let size = self.size()?;
            let in_file = size.saturating_sub(start).next_multiple_of(align);
            span = span.min(usize::try_from(in_file).unwrap_or(usize::MAX));
        }
        let direct = self.is_direct();
        let mut filled = 0;
        while filled < span {
            let at = start + filled as u64;
            let dst = self.buf.prefix_mut(span).get_mut(filled..).unwrap_or_default();
            match rustix::io::pread(&self.file, dst, at) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    if direct {
                        self.proven = true;
                        // A direct read stops short of a block only at the end of the file,
                        // and cannot go on from an unaligned offset.
                        if !(filled as u64).is_multiple_of(align) {
                            break;
                        }
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::INVAL) if direct && !self.proven && filled == 0 => {
                    self.refused("the filesystem refused the first O_DIRECT read (EINVAL)")?;
                    return self.fill(offset, len);
                }
                Err(e) => {
                    let op = if direct { "read (O_DIRECT)" } else { "read" };
                    return Err(BackendError::Io { path: self.path.clone(), op, source: e.into() });
                }
            }
        }
        self.win_len = filled;
        Ok(())
    }

    /// The file's length (a block device's too).
    fn size(&self) -> Result<u64, BackendError> {
        (&self.file).seek(SeekFrom::End(0)).map_err(|source| BackendError::Io {
            path: self.path.clone(),
            op: "find the length of",
            source,
        })
    }

    /// The first direct read was refused: an error, or buffered reads from now on for an
    /// [`IoMode::Auto`] reader.
    fn refused(&mut self, reason: &str) -> Result<(), BackendError> {
        if !self.auto {
            return Err(BackendError::DirectUnsupported {
                path: self.path.clone(),
                reason: reason.to_owned(),
            });
        }
        rustix::fs::fcntl_getfl(&self.file)
            .and_then(|fl| rustix::fs::fcntl_setfl(&self.file, fl - OFlags::DIRECT))
            .map_err(|e| BackendError::Io {
                path: self.path.clone(),
                op: "clear O_DIRECT on",
                source: e.into(),
            })?;
        warn_fallback(&self.path, reason);
        self.alignment = None;
        self.align = 1;
        self.fallback = Some(reason.to_owned());
        Ok(())
    }

    fn eof(&self, offset: u64, len: usize) -> BackendError {
        let source = io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("unexpected end of file: {len} bytes at offset {offset} run past it"),
        );
        BackendError::Io { path: self.path.clone(), op: "read", source }
    }
}

fn warn_fallback(path: &Path, reason: &str) {
    tracing::warn!(
        path = %path.display(),
        "direct I/O unavailable ({reason}); falling back to buffered I/O"
    );
}
