//! Where checkpoint bytes go and come from: the [`Sink`] and [`Source`] traits, and the
//! in-memory ("mmio") implementations over byte slices.

use crate::error::{IoError, IoErrorKind};
use alloc::vec::Vec;

/// A destination for checkpoint bytes, written strictly in order.
///
/// `ckpt-io-backends` implements this for files, pipes, `O_DIRECT` and `mmap`. A sink that
/// can hand out its own memory implements [`Sink::reserve`] and [`Sink::commit`], which lets
/// the LZ4 style compress straight into it.
pub trait Sink {
    /// Appends all of `bytes`.
    ///
    /// # Errors
    /// Whatever the underlying storage reports; a sink that is full returns
    /// [`IoErrorKind::StorageFull`].
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError>;

    /// Offers exactly `len` writable bytes at the current end, not yet part of the output.
    /// Returns `None` when the sink cannot lend memory (the writer then uses
    /// [`Sink::write_all`]).
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        let _ = len;
        None
    }

    /// Makes the first `len` bytes of the last [`Sink::reserve`] part of the output.
    ///
    /// # Errors
    /// [`IoErrorKind::Unsupported`] when the sink does not implement `reserve`, or `len`
    /// exceeds what was reserved.
    fn commit(&mut self, len: usize) -> Result<(), IoError> {
        let _ = len;
        Err(IoError::new(IoErrorKind::Unsupported, "this sink does not lend memory"))
    }

    /// Pushes buffered bytes to the storage below (not necessarily durably).
    ///
    /// # Errors
    /// Whatever the underlying storage reports.
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

/// An origin of checkpoint bytes, read in order, optionally seekable.
///
/// Offsets are relative to the start of the checkpoint.
pub trait Source {
    /// Fills `buf` completely from the current position and advances.
    ///
    /// # Errors
    /// [`IoErrorKind::UnexpectedEof`] when fewer bytes remain; otherwise what the storage
    /// reports.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError>;

    /// Lends the next `len` bytes without copying and advances, when the source is memory.
    /// Returns `None` when it cannot (the reader then uses [`Source::read_exact`]).
    fn read_borrowed(&mut self, len: usize) -> Option<Result<&[u8], IoError>> {
        let _ = len;
        None
    }

    /// The checkpoint's total length, when the source knows it.
    ///
    /// # Errors
    /// Whatever the underlying storage reports.
    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        Ok(None)
    }

    /// Moves to `offset`.
    ///
    /// # Errors
    /// [`IoErrorKind::Unsupported`] for streams; otherwise what the storage reports.
    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        let _ = offset;
        Err(IoError::new(IoErrorKind::Unsupported, "this source cannot seek"))
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        (**self).write_all(bytes)
    }
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        (**self).reserve(len)
    }
    fn commit(&mut self, len: usize) -> Result<(), IoError> {
        (**self).commit(len)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        (**self).flush()
    }
}

impl<S: Source + ?Sized> Source for &mut S {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read_exact(buf)
    }
    fn read_borrowed(&mut self, len: usize) -> Option<Result<&[u8], IoError>> {
        (**self).read_borrowed(len)
    }
    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        (**self).total_len()
    }
    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        (**self).seek(offset)
    }
}

impl<S: Sink + ?Sized> Sink for alloc::boxed::Box<S> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        (**self).write_all(bytes)
    }
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        (**self).reserve(len)
    }
    fn commit(&mut self, len: usize) -> Result<(), IoError> {
        (**self).commit(len)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        (**self).flush()
    }
}

impl<S: Source + ?Sized> Source for alloc::boxed::Box<S> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read_exact(buf)
    }
    fn read_borrowed(&mut self, len: usize) -> Option<Result<&[u8], IoError>> {
        (**self).read_borrowed(len)
    }
    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        (**self).total_len()
    }
    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        (**self).seek(offset)
    }
}

const SLICE_FULL: IoError = IoError::new(IoErrorKind::StorageFull, "memory sink is full");

/// A sink over a caller's fixed memory (for example a mapped region sized with
/// [`checkpoint_size_bound`](crate::checkpoint_size_bound)).
///
/// # Examples
/// ```
/// use ckpt_frame_core::{Sink, SliceSink};
/// let mut mem = [0u8; 8];
/// let mut sink = SliceSink::new(&mut mem);
/// sink.write_all(b"abc").unwrap();
/// assert_eq!(sink.written(), b"abc");
/// assert!(sink.write_all(b"too long").is_err());
/// ```
#[derive(Debug)]
pub struct SliceSink<'a> {
    mem: &'a mut [u8],
    len: usize,
}

impl<'a> SliceSink<'a> {
    /// A sink that fills `mem` from its start.
    pub fn new(mem: &'a mut [u8]) -> Self {
        Self { mem, len: 0 }
    }
    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.mem.get(..self.len).unwrap_or_default()
    }
    /// How many bytes were written.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Sink for SliceSink<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        let dst = self.reserve(bytes.len()).ok_or(SLICE_FULL)?;
        dst.copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        let end = self.len.checked_add(len)?;
        self.mem.get_mut(self.len..end)
    }
    fn commit(&mut self, len: usize) -> Result<(), IoError> {
        if self.len + len > self.mem.len() {
            return Err(SLICE_FULL);
        }
        self.len += len;
        Ok(())
    }
}

/// A growable in-memory sink.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{Sink, VecSink};
/// let mut sink = VecSink::new();
/// sink.write_all(b"abc").unwrap();
/// assert_eq!(sink.into_inner(), b"abc");
/// ```
#[derive(Debug, Default)]
pub struct VecSink {
    bytes: Vec<u8>,
    committed: usize,
    /// Length of the last `reserve`, not yet committed.
    lent: usize,
}

impl VecSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }
    /// An empty sink that writes into `bytes`' allocation (its contents are dropped).
    pub fn from_vec(mut bytes: Vec<u8>) -> Self {
        bytes.clear();
        Self { bytes, committed: 0, lent: 0 }
    }
    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.committed).unwrap_or_default()
    }
    /// Gives back the bytes written.
    pub fn into_inner(mut self) -> Vec<u8> {
        self.bytes.truncate(self.committed);
        self.bytes
    }
}

impl Sink for VecSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.bytes.truncate(self.committed);
        self.bytes.extend_from_slice(bytes);
        self.committed = self.bytes.len();
        self.lent = 0;
        Ok(())
    }
    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        // Lent room is initialised memory (zero-filled the first time, left as it was
        // after that), which keeps this free of unsafe; bytes past `committed` are kept
        // between calls so that room is zero-filled once, not on every chunk.
        let end = self.committed.checked_add(len)?;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.lent = len;
        self.bytes.get_mut(self.committed..end)
    }
    fn commit(&mut self, len: usize) -> Result<(), IoError> {
        if len > self.lent {
            return Err(IoError::new(IoErrorKind::Unsupported, "commit beyond reserve"));
        }
        self.committed += len;
        self.lent = 0;
        Ok(())
    }
}

/// A source over a checkpoint held in memory.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{Source, SliceSource};
/// let mut src = SliceSource::new(b"abcd");
/// let mut two = [0u8; 2];
/// src.read_exact(&mut two).unwrap();
/// assert_eq!(&two, b"ab");
/// assert_eq!(src.total_len().unwrap(), Some(4));
/// ```
#[derive(Debug, Clone)]
pub struct SliceSource<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> SliceSource<'a> {
    /// A source positioned at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }
}

const SLICE_EOF: IoError = IoError::new(IoErrorKind::UnexpectedEof, "end of checkpoint bytes");

impl Source for SliceSource<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        let src = self.read_borrowed(buf.len()).unwrap_or(Err(SLICE_EOF))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn read_borrowed(&mut self, len: usize) -> Option<Result<&[u8], IoError>> {
        let end = self.pos.checked_add(len);
        Some(match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(s) => {
                self.pos += len;
                Ok(s)
            }
            None => Err(SLICE_EOF),
        })
    }
    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        Ok(Some(self.bytes.len() as u64))
    }
    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        self.pos = usize::try_from(offset).unwrap_or(usize::MAX).min(self.bytes.len());
        Ok(())
    }
}

#[cfg(feature = "std")]
mod std_adapters {
    use super::{IoError, IoErrorKind, Sink, Source};
    use std::io::{Read, Seek, SeekFrom, Write};

    /// A [`Sink`] over any [`std::io::Write`].
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::{Sink, WriteSink};
    /// let mut out = Vec::new();
    /// WriteSink::new(&mut out).write_all(b"xy").unwrap();
    /// assert_eq!(out, b"xy");
    /// ```
    #[derive(Debug)]
    pub struct WriteSink<W>(pub W);

    impl<W: Write> WriteSink<W> {
        /// Wraps `inner`.
        pub fn new(inner: W) -> Self {
            Self(inner)
        }
        /// Gives back the writer.
        pub fn into_inner(self) -> W {
            self.0
        }
    }

    impl<W: Write> Sink for WriteSink<W> {
        fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
            Ok(self.0.write_all(bytes)?)
        }
        fn flush(&mut self) -> Result<(), IoError> {
            Ok(self.0.flush()?)
        }
    }

    /// A [`Source`] over any [`std::io::Read`]; streaming only.
    #[derive(Debug)]
    pub struct ReadSource<R>(pub R);

    impl<R: Read> Source for ReadSource<R> {
        fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
            Ok(self.0.read_exact(buf)?)
        }
    }

    /// A [`Source`] over a [`Read`] + [`Seek`] whose checkpoint starts at the current
    /// position; supports random access to frames.
    #[derive(Debug)]
    pub struct SeekSource<R> {
        inner: R,
        base: u64,
        /// Position relative to `base`.
        pos: u64,
        len: Option<u64>,
    }

    impl<R: Read + Seek> SeekSource<R> {
        /// Wraps `inner`; the checkpoint starts at its current position and runs to the end.
        ///
        /// # Errors
        /// When the current position cannot be queried.
        pub fn new(mut inner: R) -> std::io::Result<Self> {
            let base = inner.stream_position()?;
            Ok(Self { inner, base, pos: 0, len: None })
        }

        /// Wraps `inner` for a checkpoint of `len` bytes starting at its current position,
        /// for checkpoints embedded in a larger file. Reads never go past `len`.
        ///
        /// # Errors
        /// When the current position cannot be queried.
        pub fn with_len(inner: R, len: u64) -> std::io::Result<Self> {
            Ok(Self { len: Some(len), ..Self::new(inner)? })
        }
    }

    impl<R: Read + Seek> Source for SeekSource<R> {
        fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
            let end = self.pos.saturating_add(buf.len() as u64);
            if self.len.is_some_and(|len| end > len) {
                return Err(IoError::new(IoErrorKind::UnexpectedEof, "end of the checkpoint"));
            }
            self.inner.read_exact(buf)?;
            self.pos = end;
            Ok(())
        }
        fn total_len(&mut self) -> Result<Option<u64>, IoError> {
            if self.len.is_some() {
                return Ok(self.len);
            }
            let end = self.inner.seek(SeekFrom::End(0))?;
            self.inner.seek(SeekFrom::Start(self.base.saturating_add(self.pos)))?;
            Ok(Some(end.saturating_sub(self.base)))
        }
        fn seek(&mut self, offset: u64) -> Result<(), IoError> {
            let to = self
                .base
                .checked_add(offset)
                .ok_or(IoError::new(IoErrorKind::Other, "seek offset overflows"))?;
            self.inner.seek(SeekFrom::Start(to))?;
            self.pos = offset;
            Ok(())
        }
    }
}

#[cfg(feature = "std")]
pub use std_adapters::{ReadSource, SeekSource, WriteSink};
