//! [`StreamSink`]: checkpoints to stdout, pipes and any writer.

use crate::BackendError;
use crate::error::FailureLatch;
use ckpt_frame_core::{IoError, Sink};
use std::io::{self, Write};
use std::path::PathBuf;

/// A buffered sink over stdout, a pipe or any [`Write`]; needs no seeking.
///
/// Bytes are collected in a large buffer (the LZ4 style compresses straight into it) and
/// written in big pieces. [`Writer::finish`](ckpt_frame_core::Writer::finish) flushes the
/// sink, so after a successful `finish` every byte has reached `W`; dropping a sink does not
/// flush. Durability is the reader's business on a stream.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Reader, SliceSource, Style, Writer};
/// use ckpt_io_backends::StreamSink;
///
/// let mut w = Writer::new(StreamSink::new(Vec::new()), CheckpointId::from_bytes([3; 16]));
/// let mut f = w.open_frame(Style::Raw)?;
/// f.add(b"hello")?;
/// f.close()?;
/// w.finish()?;
/// let bytes = w.into_sink().finish()?;
/// let mut r = Reader::new(SliceSource::new(&bytes));
/// let mut f = r.next_frame()?.unwrap();
/// assert_eq!(f.read_to_vec()?.unwrap(), b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamSink<W: Write> {
    inner: W,
    name: PathBuf,
    buf: Vec<u8>,
    len: usize,
    reserved: usize,
    written: u64,
    latch: FailureLatch,
}

impl<W: Write> std::fmt::Debug for StreamSink<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink")
            .field("name", &self.name)
            .field("written", &self.written)
            .field("buffered", &self.len)
            .finish_non_exhaustive()
    }
}

impl<W: Write> StreamSink<W> {
    /// A sink over `w`, named `<stream>` in error messages.
    pub fn new(w: W) -> Self {
        Self::with_name(w, "<stream>")
    }

    /// A sink over `w`, named `name` in error messages.
    pub fn with_name(w: W, name: impl Into<PathBuf>) -> Self {
        Self {
            inner: w,
            name: name.into(),
            buf: vec![0u8; crate::IO_BUF_LEN],
            len: 0,
            reserved: 0,
            written: 0,
            latch: FailureLatch::default(),
        }
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The writer underneath.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Flushes the buffer and the writer, and gives the writer back.
    ///
    /// # Errors
    /// [`BackendError::Io`] when writing or flushing fails, or [`BackendError::Aborted`]
    /// when an earlier write had failed (the stream then holds an incomplete checkpoint,
    /// which readers reject).
    pub fn finish(mut self) -> Result<W, BackendError> {
        if let Some(first) = self.latch.take_first() {
            return Err(BackendError::Aborted { path: self.name, first });
        }
        self.push_buffer()?;
        self.inner.flush().map_err(|source| self.io("flush", source))?;
        Ok(self.inner)
    }

    fn io(&self, op: &'static str, source: io::Error) -> BackendError {
        BackendError::Io { path: self.name.clone(), op, source }
    }

    fn push_buffer(&mut self) -> Result<(), BackendError> {
        if self.len > 0 {
            let data = self.buf.get(..self.len).unwrap_or_default();
            self.inner.write_all(data).map_err(|source| self.io("write", source))?;
            self.len = 0;
        }
        Ok(())
    }

    fn fail(&mut self, e: BackendError) -> IoError {
        self.latch.fail(e)
    }

    fn check(&mut self) -> Result<(), IoError> {
        self.latch.check(&self.name)
    }
}

/// A [`StreamSink`] over standard output, named `<stdout>` in error messages.
///
/// # Examples
/// ```no_run
/// use ckpt_frame_core::{CheckpointId, Style, Writer};
/// let mut w = Writer::new(ckpt_io_backends::stdout_sink(), CheckpointId::generate());
/// let mut f = w.open_frame(Style::Lz4)?;
/// f.add(b"state")?;
/// f.close()?;
/// w.finish()?;
/// w.into_sink().finish()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stdout_sink() -> StreamSink<io::Stdout> {
    StreamSink::with_name(io::stdout(), "<stdout>")
}

impl<W: Write> Sink for StreamSink<W> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.check()?;
        self.reserved = 0;
        if self.len + bytes.len() > self.buf.len()
            && let Err(e) = self.push_buffer()
        {
            return Err(self.fail(e));
        }
        if bytes.len() >= self.buf.len() {
            if let Err(source) = self.inner.write_all(bytes) {
                let e = self.io("write", source);
                return Err(self.fail(e));
            }
        } else if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        self.reserved = 0;
        if self.latch.is_set() || len > self.buf.len() {
            return None;
        }
        if self.len + len > self.buf.len()
            && let Err(e) = self.push_buffer()
        {
            // The writer falls back to `write_all`, which reports it.
            self.latch.defer(e);
            return None;
        }
        self.reserved = len;
        self.buf.get_mut(self.len..self.len + len)
    }

    fn commit(&mut self, len: usize) -> Result<(), IoError> {
        self.check()?;
        if len > self.reserved {
            let source =
                io::Error::new(io::ErrorKind::InvalidInput, "commit beyond the reservation");
            let e = self.io("write", source);
            return Err(self.fail(e));
        }
        self.reserved = 0;
        self.len += len;
        self.written += len as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.check()?;
        let result = self
            .push_buffer()
            .and_then(|()| self.inner.flush().map_err(|source| self.io("flush", source)));
        result.map_err(|e| self.fail(e))
    }
}
