//! [`InputSource`]: checkpoint bytes from files (buffered, `O_DIRECT`, mapped) and streams.

use crate::align::DirectAlignment;
use crate::{BackendError, DirectReader, IoMode};
use ckpt_frame_core::{IoError, Source};
use memmap2::Mmap;
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Where a checkpoint is read from: a file opened with [`open_input`] (seekable, knows its
/// length, so [`Reader::open`](ckpt_frame_core::Reader::open) can jump to any frame) or a
/// stream ([`stdin_source`], [`stream_source`], or [`open_input`] on a named pipe), read in
/// order with [`Reader::new`](ckpt_frame_core::Reader::new).
///
/// A mapped file lends its bytes to the reader without copying
/// ([`Source::read_borrowed`]); so does an `O_DIRECT` file, from its aligned buffer.
pub struct InputSource {
    name: PathBuf,
    mode: IoMode,
    alignment: Option<DirectAlignment>,
    fallback: Option<String>,
    inner: Inner,
}

enum Inner {
    File(FileSource),
    Direct(DirectSource),
    Mapped(MappedSource),
    Stream(BufReader<Box<dyn Read + Send>>),
}

impl std::fmt::Debug for InputSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputSource")
            .field("path", &self.name)
            .field("mode", &self.mode)
            .field("seekable", &self.is_seekable())
            .finish_non_exhaustive()
    }
}

impl InputSource {
    /// The mode in use ([`IoMode::Auto`] shows as what it resolved to; streams are
    /// [`IoMode::Buffered`]).
    pub fn mode(&self) -> IoMode {
        self.mode
    }

    /// The path (or `<stdin>`, or the name given to [`stream_source`]).
    pub fn path(&self) -> &Path {
        &self.name
    }

    /// Whether frames can be opened by number (files yes, streams no).
    pub fn is_seekable(&self) -> bool {
        !matches!(self.inner, Inner::Stream(_))
    }

    /// The length of the file, for seekable sources.
    pub fn len(&self) -> Option<u64> {
        match &self.inner {
            Inner::File(f) => Some(f.len),
            Inner::Direct(d) => Some(d.len),
            Inner::Mapped(m) => Some(m.map.len() as u64),
            Inner::Stream(_) => None,
        }
    }

    /// Whether the source is a file of length 0.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The `O_DIRECT` alignment in use (direct mode only).
    pub fn direct_alignment(&self) -> Option<DirectAlignment> {
        self.alignment
    }

    /// Why [`IoMode::Auto`] fell back to buffered I/O, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    fn io(&self, op: &'static str, source: io::Error) -> IoError {
        io_error(&self.name, op, source)
    }

    fn eof(&self) -> IoError {
        eof_error(&self.name)
    }
}

fn io_error(name: &Path, op: &'static str, source: io::Error) -> IoError {
    BackendError::Io { path: name.to_owned(), op, source }.into_format()
}

fn eof_error(name: &Path) -> IoError {
    let source = io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file");
    io_error(name, "read", source)
}

/// Opens the checkpoint file at `path` for reading in `mode`.
///
/// - [`IoMode::Buffered`]: a large `BufReader` over the file, seekable. A named pipe or
///   character device gives a streaming source instead.
/// - [`IoMode::Direct`]: `O_DIRECT` reads into an aligned buffer (alignment from
///   `statx(STATX_DIOALIGN)`); the first block is read at open, so a filesystem that
///   accepts the flag but refuses the I/O is caught here.
/// - [`IoMode::Mmap`]: refused here. A map hands out the file's bytes without a copy, so
///   another process truncating or rewriting the file would break the reader's guarantees
///   (a `SIGBUS`, or bytes that change after their checksum was verified); as with
///   memmap2, only the caller can promise that does not happen: use the `unsafe`
///   [`open_input_mapped`].
/// - [`IoMode::Auto`]: `Direct`, or `Buffered` when `O_DIRECT` is refused (a `tracing`
///   warning says so and why; see [`InputSource::fallback_reason`]).
///
/// # Errors
/// [`BackendError::Open`] when the file cannot be opened (the message names the path);
/// [`BackendError::DirectUnsupported`] for `Direct` where `O_DIRECT` is refused;
/// [`BackendError::Unsupported`] for a directory, or for `Mmap` (see
/// [`open_input_mapped`]); [`BackendError::Io`] when the first read or the length query
/// fails.
///
/// # Examples
/// ```
/// use ckpt_io_backends::{open_input, IoMode};
/// let e = open_input("/no/such/dir/state.ckpt".as_ref(), IoMode::Auto).unwrap_err();
/// assert!(e.to_string().contains("/no/such/dir/state.ckpt"), "{e}");
/// ```
pub fn open_input(path: &Path, mode: IoMode) -> Result<InputSource, BackendError> {
    let open_err = |source| BackendError::Open { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.is_dir() {
        return Err(BackendError::Unsupported {
            path: path.to_owned(),
            op: "read a checkpoint from",
            reason: "it is a directory".to_owned(),
        });
    }
    let ft = meta.file_type();
    match mode {
        IoMode::Buffered => open_buffered(path, ft),
        IoMode::Direct => open_direct(path),
        IoMode::Mmap => Err(BackendError::Unsupported {
            path: path.to_owned(),
            op: "map",
            reason: "a mapped read is opened with the unsafe open_input_mapped, whose caller \
                     promises the file does not change while it is mapped"
                .to_owned(),
        }),
        IoMode::Auto => match open_direct(path) {
            Ok(s) => {
                if let Some(a) = s.alignment {
                    tracing::info!(
                        path = %path.display(),
                        alignment = %a,
                        "reading with direct I/O (O_DIRECT)"
                    );
                }
                Ok(s)
            }
            Err(BackendError::DirectUnsupported { reason, .. }) => {
                tracing::warn!(
                    path = %path.display(),
                    "direct I/O unavailable ({reason}); falling back to buffered I/O"
                );
                let mut s = open_buffered(path, ft)?;
                s.fallback = Some(reason);
                Ok(s)
            }
            Err(e) => Err(e),
        },
    }
}

fn is_stream(ft: std::fs::FileType) -> bool {
    ft.is_fifo() || ft.is_char_device() || ft.is_socket()
}

fn cannot_seek(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(Errno::INVAL.raw_os_error()) || code == Some(Errno::SPIPE.raw_os_error())
}

fn seekable_len(mut file: &File, path: &Path) -> Result<u64, BackendError> {
    let io_err =
        |source| BackendError::Io { path: path.to_owned(), op: "find the length of", source };
    let len = file.seek(SeekFrom::End(0)).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    Ok(len)
}

fn open_buffered(path: &Path, ft: std::fs::FileType) -> Result<InputSource, BackendError> {
    let file =
        File::open(path).map_err(|source| BackendError::Open { path: path.to_owned(), source })?;
    let stream =
        |file: File| Inner::Stream(BufReader::with_capacity(crate::IO_BUF_LEN, Box::new(file)));
    let inner = if is_stream(ft) {
        stream(file)
    } else {
        match seekable_len(&file, path) {
            Ok(len) => {
                let file = BufReader::with_capacity(256 * 1024, file);
                Inner::File(FileSource { file, pos: 0, len })
            }
            // Files that cannot seek to their end (procfs, some character devices) are
            // still readable in order.
            Err(BackendError::Io { source, .. }) if cannot_seek(&source) => stream(file),
            Err(e) => return Err(e),
        }
    };
    Ok(InputSource {
        name: path.to_owned(),
        mode: IoMode::Buffered,
        alignment: None,
        fallback: None,
        inner,
    })
}

/// `O_DIRECT` input: a [`DirectReader`] in [`IoMode::Direct`], which refuses pipes and
/// filesystems without direct I/O and reads the first block at open.
fn open_direct(path: &Path) -> Result<InputSource, BackendError> {
    let reader = DirectReader::open(path, IoMode::Direct)?;
    let len = seekable_len(reader.file(), path)?;
    let align = reader.alignment().map_or(1, |a| a.buffer());
    Ok(InputSource {
        name: path.to_owned(),
        mode: IoMode::Direct,
        alignment: reader.alignment(),
        fallback: None,
        inner: Inner::Direct(DirectSource { reader, align, pos: 0, len }),
    })
}

/// Opens the checkpoint file at `path` as a read-only map of the whole file
/// ([`IoMode::Mmap`]): the reader borrows chunks from it without copying.
///
/// # Safety
/// While the returned source, or any reader over it, exists, no process may truncate the
/// file or change its bytes in place. The reader verifies a chunk's checksum on the mapped
/// bytes and then decodes or copies them from the same place, so a change in between would
/// hand out bytes that were never verified; a truncation makes the next access raise
/// `SIGBUS`. Files that ckpt's own writers publish are never changed in place (they are
/// replaced by rename, which leaves an open file alone).
///
/// # Errors
/// [`BackendError::Open`] when the file cannot be opened, [`BackendError::Unsupported`] when
/// it is not a regular file, [`BackendError::Io`] when the map fails.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Reader, Style, VecSink, Writer};
/// use ckpt_io_backends::{IoMode, open_input_mapped};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.ckpt");
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([5; 16]));
/// let mut f = w.open_frame(Style::Raw)?;
/// f.add(b"hello")?;
/// f.close()?;
/// w.finish()?;
/// std::fs::write(&path, w.into_sink().into_inner())?;
/// // SAFETY: the file is private to this example's temporary directory and nothing
/// // changes it while it is mapped.
/// let src = unsafe { open_input_mapped(&path)? };
/// assert_eq!(src.mode(), IoMode::Mmap);
/// let mut r = Reader::open(src)?;
/// let mut f = r.open_frame(0)?;
/// assert_eq!(f.read_to_vec()?.as_deref(), Some(&b"hello"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[allow(unsafe_code)] // an unsafe constructor, as memmap2's: the caller promises.
pub unsafe fn open_input_mapped(path: &Path) -> Result<InputSource, BackendError> {
    let meta = std::fs::metadata(path)
        .map_err(|source| BackendError::Open { path: path.to_owned(), source })?;
    // SAFETY: the caller's promise is this function's.
    unsafe { open_mapped(path, meta.file_type()) }
}

/// # Safety
/// As [`open_input_mapped`].
#[allow(unsafe_code)]
unsafe fn open_mapped(path: &Path, ft: std::fs::FileType) -> Result<InputSource, BackendError> {
    if !ft.is_file() {
        return Err(BackendError::Unsupported {
            path: path.to_owned(),
            op: "map",
            reason: "mmap needs a regular file".to_owned(),
        });
    }
    let file =
        File::open(path).map_err(|source| BackendError::Open { path: path.to_owned(), source })?;
    // SAFETY: the caller's promise that the file does not change while it is mapped.
    let map = unsafe { crate::map::map_input(&file) }.map_err(|source| BackendError::Io {
        path: path.to_owned(),
        op: "map",
        source,
    })?;
    Ok(InputSource {
        name: path.to_owned(),
        mode: IoMode::Mmap,
        alignment: None,
        fallback: None,
        inner: Inner::Mapped(MappedSource { map, pos: 0 }),
    })
}

/// A streaming source over standard input (not seekable), read through a large buffer.
///
/// # Examples
/// ```no_run
/// use ckpt_frame_core::Reader;
/// let mut r = Reader::new(ckpt_io_backends::stdin_source());
/// while let Some(mut frame) = r.next_frame()? {
///     while let Some(buf) = frame.read_to_vec()? {
///         println!("{} bytes", buf.len());
///     }
///     frame.close()?;
/// }
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
pub fn stdin_source() -> InputSource {
    stream_source(io::stdin(), "<stdin>")
}

/// A streaming source over any reader (a pipe, a child's stdout, a socket), named `name`
/// in error messages.
///
/// # Examples
/// ```
/// use ckpt_frame_core::Source;
/// let mut src = ckpt_io_backends::stream_source(&b"abc"[..], "<memory>");
/// let mut two = [0u8; 2];
/// src.read_exact(&mut two)?;
/// assert_eq!(&two, b"ab");
/// assert!(src.seek(0).is_err(), "streams do not seek");
/// # Ok::<(), ckpt_frame_core::IoError>(())
/// ```
pub fn stream_source<R: Read + Send + 'static>(reader: R, name: impl Into<PathBuf>) -> InputSource {
    InputSource {
        name: name.into(),
        mode: IoMode::Buffered,
        alignment: None,
        fallback: None,
        inner: Inner::Stream(BufReader::with_capacity(crate::IO_BUF_LEN, Box::new(reader))),
    }
}

struct FileSource {
    file: BufReader<File>,
    pos: u64,
    len: u64,
}

struct MappedSource {
    map: Mmap,
    pos: usize,
}

/// Sequential `O_DIRECT` reads over a [`DirectReader`]: up to [`crate::IO_BUF_LEN`]
/// bytes of whole aligned blocks at a time, read on from the reader's buffer until `pos`
/// leaves it.
struct DirectSource {
    reader: DirectReader,
    align: usize,
    pos: u64,
    len: u64,
}

impl DirectSource {
    /// Where `pos` lies in the reader's last window, if it does.
    fn start(&self) -> Option<usize> {
        let (off, bytes) = self.reader.window();
        let start = usize::try_from(self.pos.checked_sub(off)?).ok()?;
        (start <= bytes.len()).then_some(start)
    }

    /// The bytes from `pos` on that the reader's buffer holds (empty if none).
    fn buffered(&self) -> &[u8] {
        let (_, bytes) = self.reader.window();
        self.start().and_then(|s| bytes.get(s..)).unwrap_or_default()
    }

    /// Reads a buffer's worth from `pos` on (less at the end of the file).
    fn refill(&mut self) -> Result<(), BackendError> {
        let slack = usize::try_from(self.pos % self.align as u64).unwrap_or(0);
        self.reader.read_up_to(self.pos, crate::IO_BUF_LEN - slack).map(drop)
    }
}

impl Source for InputSource {
    fn read_exact(&mut self, out: &mut [u8]) -> Result<(), IoError> {
        let end = match &self.inner {
            Inner::File(f) => f.pos.checked_add(out.len() as u64).filter(|&e| e <= f.len),
            Inner::Direct(d) => d.pos.checked_add(out.len() as u64).filter(|&e| e <= d.len),
            Inner::Mapped(m) => {
                m.pos.checked_add(out.len()).filter(|&e| e <= m.map.len()).map(|e| e as u64)
            }
            Inner::Stream(_) => Some(0),
        };
        if end.is_none() {
            return Err(self.eof());
        }
        let result = match &mut self.inner {
            Inner::File(f) => f.file.read_exact(out).map(|()| f.pos += out.len() as u64),
            Inner::Stream(s) => s.read_exact(out),
            Inner::Mapped(m) => {
                let src = m.map.get(m.pos..m.pos + out.len()).unwrap_or_default();
                out.copy_from_slice(src);
                m.pos += out.len();
                Ok(())
            }
            Inner::Direct(d) => {
                return direct_read(d, out).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        self.eof()
                    } else {
                        e.into_format()
                    }
                });
            }
        };
        result.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof { self.eof() } else { self.io("read", e) }
        })
    }

    fn read_borrowed(&mut self, len: usize) -> Option<Result<&[u8], IoError>> {
        let InputSource { inner, name, .. } = self;
        match inner {
            Inner::Mapped(m) => {
                let end = m.pos.checked_add(len).filter(|&e| e <= m.map.len());
                let Some(end) = end else { return Some(Err(eof_error(name))) };
                let start = std::mem::replace(&mut m.pos, end);
                m.map.get(start..end).map(Ok)
            }
            Inner::Direct(d) => {
                // Lend from the aligned buffer when the bytes fit in it with the slack of
                // one unaligned start; larger reads go through `read_exact`.
                if len + d.align > crate::IO_BUF_LEN {
                    return None;
                }
                if d.pos.checked_add(len as u64).is_none_or(|e| e > d.len) {
                    return Some(Err(eof_error(name)));
                }
                if len == 0 {
                    return Some(Ok(&[]));
                }
                if d.buffered().len() < len {
                    if let Err(e) = d.refill() {
                        return Some(Err(e.into_format()));
                    }
                    if d.buffered().len() < len {
                        return Some(Err(eof_error(name)));
                    }
                }
                let start = d.start()?;
                d.pos += len as u64;
                d.reader.window().1.get(start..start + len).map(Ok)
            }
            Inner::File(_) | Inner::Stream(_) => None,
        }
    }

    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        Ok(self.len())
    }

    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        let result = match &mut self.inner {
            Inner::File(f) => {
                let delta = i64::try_from(i128::from(offset) - i128::from(f.pos));
                match delta {
                    Ok(delta) => f.file.seek_relative(delta),
                    Err(_) => f.file.seek(SeekFrom::Start(offset)).map(drop),
                }
                .map(|()| f.pos = offset)
            }
            Inner::Direct(d) => {
                d.pos = offset;
                Ok(())
            }
            Inner::Mapped(m) => {
                m.pos = usize::try_from(offset).unwrap_or(usize::MAX);
                Ok(())
            }
            Inner::Stream(_) => {
                return Err(BackendError::Unsupported {
                    path: self.name.clone(),
                    op: "seek in",
                    reason: "it is a stream".to_owned(),
                }
                .into_format());
            }
        };
        result.map_err(|e| self.io("seek in", e))
    }
}

fn direct_read(d: &mut DirectSource, mut out: &mut [u8]) -> Result<(), BackendError> {
    while !out.is_empty() {
        if d.buffered().is_empty() {
            d.refill()?;
            if d.buffered().is_empty() {
                return Err(BackendError::Io {
                    path: d.reader.path().to_owned(),
                    op: "read",
                    source: io::ErrorKind::UnexpectedEof.into(),
                });
            }
        }
        let avail = d.buffered();
        let n = avail.len().min(out.len());
        let (now, later) = std::mem::take(&mut out).split_at_mut(n);
        now.copy_from_slice(avail.get(..n).unwrap_or_default());
        d.pos += n as u64;
        out = later;
    }
    Ok(())
}
