//! `std::io` over frames: [`FrameStreamWriter`] writes a byte stream into an open frame with
//! [`std::io::Write`], and [`FrameReader`] reads a frame back as one byte stream with
//! [`std::io::Read`].
//!
//! # Why writing goes through [`FrameStreamWriter`] and not `FrameWriter` itself
//!
//! [`FrameWriter::add`] borrows each buffer until the frame closes, because a linked LZ4
//! chunk may reference the 64 KiB before it, in place. [`std::io::Write::write`] lends its
//! bytes for one call only, so the adapter must copy what it keeps. It must also cut the
//! stream into buffers, and how it does that is stored in the frame (each buffer's length
//! is in a chunk's length table): if every `write` call became a buffer, the same content
//! would give different checkpoints depending on how a reader upstream happened to split
//! it (an 8 KiB `io::copy` loop, a pipe returning short reads, a `BufWriter`'s flushes).
//!
//! So the adapter coalesces the stream into buffers of exactly [`STREAM_PIECE`] bytes
//! (64 KiB, one full chunk each; the last one shorter, none for an empty stream), and the
//! frame's bytes depend only on the stream's content. Carrying a partly filled piece from
//! one `write` to the next takes 64 KiB of state that a plain [`FrameWriter`] has no place
//! for (and that every frame would otherwise pay for), hence a wrapper that owns the frame:
//! [`FrameWriter::into_stream`] or [`FrameStreamWriter::new`]. Pieces go through the
//! writer's own staging memory, never referenced after the call: RAW stores exactly what
//! [`FrameWriter::add`] would for the same pieces; LZ4 compresses each piece from a staging
//! half, so the LZ4 history never points into the caller's memory. A `write` of at least
//! 64 KiB while no piece is pending is cut straight from the caller's slice, without the
//! extra copy into the pending piece.
//!
//! [`std::io::Write::flush`] writes nothing: cutting a short piece there would make the
//! frame depend on when flushes happen. The bytes pending reach the frame at
//! [`FrameStreamWriter::close`] (or [`FrameStreamWriter::finish`]); durability is the
//! sink's business after [`Writer::finish`](crate::Writer::finish).
//!
//! Reading needs no wrapper: [`FrameReader`] keeps its place inside a buffer, so its
//! `io::Read` hands out the concatenation of the frame's buffers, whoever wrote them, at
//! most one chunk per call, each chunk checked before any of its bytes are copied out.
#![cfg(feature = "std")]

use crate::error::Error;
use crate::io::{Sink, Source};
use crate::reader::FrameReader;
use crate::wire::CHUNK_MAX;
use crate::writer::FrameWriter;
use alloc::boxed::Box;
use alloc::vec;
use std::io;

/// Bytes per buffer in a frame written by a [`FrameStreamWriter`] (the last may be shorter).
pub const STREAM_PIECE: usize = CHUNK_MAX;

/// An open frame that takes its content as a byte stream through [`io::Write`].
///
/// The stream is stored as buffers of [`STREAM_PIECE`] bytes, so the frame's bytes depend
/// only on the stream, not on how it was split into `write` calls (see the
/// [module documentation](self) for why this is a wrapper rather than an `io::Write` impl
/// on [`FrameWriter`]). Each `write` either stores all of its bytes or fails; a failure
/// from the sink or the codec fails the whole checkpoint, as with [`FrameWriter::add`].
///
/// Dropping it without [`close`](Self::close) or [`finish`](Self::finish) loses the
/// pending bytes and abandons the frame, like dropping an unclosed [`FrameWriter`].
///
/// # Examples
/// `io::copy` into a frame, and the frame read back with [`io::Read`]:
/// ```
/// use ckpt_frame_core::{CheckpointId, Reader, SliceSource, Style, VecSink, Writer};
/// use std::io::{self, Read};
///
/// let text = b"any stream of bytes, however it is split into writes\n".repeat(5000);
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([3; 16]));
/// let mut frame = w.open_frame(Style::Lz4)?.into_stream();
/// let copied = io::copy(&mut &text[..], &mut frame)?;
/// assert_eq!(copied, text.len() as u64);
/// frame.close()?;
/// w.finish()?;
/// let bytes = w.into_sink().into_inner();
/// assert!(bytes.len() < text.len() / 10, "LZ4 links the pieces");
///
/// let mut r = Reader::new(SliceSource::new(&bytes));
/// let mut f = r.next_frame()?.expect("one frame");
/// let mut back = Vec::new();
/// f.read_to_end(&mut back)?;
/// f.close()?;
/// r.finish()?;
/// assert_eq!(back, text);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The same stream split differently gives the same checkpoint:
/// ```
/// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer};
/// use std::io::Write;
///
/// let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
/// let write = |split: usize| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
///     let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([4; 16]));
///     let mut frame = w.open_frame(Style::Raw)?.into_stream();
///     for piece in data.chunks(split) {
///         frame.write_all(piece)?;
///     }
///     frame.close()?;
///     w.finish()?;
///     Ok(w.into_sink().into_inner())
/// };
/// assert_eq!(write(1000)?, write(data.len())?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FrameStreamWriter<'w, 'buf, S: Sink> {
    frame: FrameWriter<'w, 'buf, S>,
    /// The piece being filled: `pending` bytes of [`STREAM_PIECE`].
    piece: Box<[u8]>,
    pending: usize,
    /// Stream bytes taken so far.
    taken: u64,
}

impl<S: Sink> core::fmt::Debug for FrameStreamWriter<'_, '_, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameStreamWriter")
            .field("frame", &self.frame)
            .field("pending", &self.pending)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl<'w, 'buf, S: Sink> FrameWriter<'w, 'buf, S> {
    /// Turns this open frame into a [`FrameStreamWriter`], which takes the rest of the
    /// frame's content as a byte stream through [`io::Write`]. Buffers already added stay
    /// in the frame, before the stream.
    pub fn into_stream(self) -> FrameStreamWriter<'w, 'buf, S> {
        FrameStreamWriter::new(self)
    }
}

impl<'w, 'buf, S: Sink> FrameStreamWriter<'w, 'buf, S> {
    /// Wraps an open frame (allocates the 64 KiB pending piece).
    pub fn new(frame: FrameWriter<'w, 'buf, S>) -> Self {
        Self { frame, piece: vec![0u8; STREAM_PIECE].into_boxed_slice(), pending: 0, taken: 0 }
    }

    /// Stream bytes taken so far (stored or pending).
    pub fn stream_len(&self) -> u64 {
        self.taken
    }

    /// The frame's offset from the start of the checkpoint.
    pub fn offset(&self) -> u64 {
        self.frame.offset()
    }

    /// Stores the pending piece, if any, as the stream's last buffer and gives back the
    /// frame, for more buffers or [`FrameWriter::close`].
    ///
    /// # Errors
    /// As [`FrameWriter::add`].
    pub fn finish(mut self) -> Result<FrameWriter<'w, 'buf, S>, Error> {
        if self.pending > 0 {
            let piece = self.piece.get(..self.pending).unwrap_or_default();
            self.frame.add_copied(piece)?;
            self.pending = 0;
        }
        Ok(self.frame)
    }

    /// Stores the pending piece and closes the frame; returns its end offset, as
    /// [`FrameWriter::close`].
    ///
    /// # Errors
    /// As [`FrameWriter::add`] and [`FrameWriter::close`].
    pub fn close(self) -> Result<u64, Error> {
        self.finish()?.close()
    }

    /// Takes all of `bytes`: tops up the pending piece, stores every full piece.
    fn take(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        self.taken += bytes.len() as u64;
        if self.pending > 0 {
            let n = (STREAM_PIECE - self.pending).min(bytes.len());
            let (now, later) = bytes.split_at(n);
            if let Some(dst) = self.piece.get_mut(self.pending..self.pending + n) {
                dst.copy_from_slice(now);
            }
            self.pending += n;
            bytes = later;
            if self.pending < STREAM_PIECE {
                return Ok(());
            }
            self.frame.add_copied(&self.piece)?;
            self.pending = 0;
        }
        // Nothing is pending: whole pieces go straight from the caller's slice, the rest
        // starts the next piece.
        while let Some((piece, later)) = bytes.split_at_checked(STREAM_PIECE) {
            self.frame.add_copied(piece)?;
            bytes = later;
        }
        if let Some(dst) = self.piece.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            self.pending = bytes.len();
        }
        Ok(())
    }
}

/// Stores each `write` completely (a short count is never returned) or fails with the
/// crate's [`Error`] converted by `From<Error> for io::Error`. `flush` does nothing; see
/// [`FrameStreamWriter`].
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Reader, SliceSource, Style, VecSink, Writer};
/// use std::io::{Read, Write};
///
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([5; 16]));
/// let mut frame = w.open_frame(Style::Raw)?.into_stream();
/// write!(frame, "{} bottles", 99)?;
/// frame.write_all(b" of beer")?;
/// frame.flush()?;
/// assert_eq!(frame.stream_len(), 18);
/// frame.close()?;
/// w.finish()?;
/// let bytes = w.into_sink().into_inner();
///
/// let mut r = Reader::open(SliceSource::new(&bytes))?;
/// assert_eq!(r.frame_info(0).map(|i| i.buffer_count), Some(1));
/// let mut back = String::new();
/// r.open_frame(0)?.read_to_string(&mut back)?;
/// assert_eq!(back, "99 bottles of beer");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<S: Sink> io::Write for FrameStreamWriter<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.take(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Ok(self.take(buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the frame's buffers, concatenated in order, from where the frame reader stands.
///
/// Each call copies out at most the rest of one chunk (64 KiB), so memory stays at one
/// chunk whatever the frame claims, and every byte comes from a chunk that passed its
/// checksums: a damaged chunk fails the call before any of its bytes are handed out, with
/// an [`io::Error`] of kind [`InvalidData`](io::ErrorKind::InvalidData) wrapping the crate's
/// [`Error`] (frame and offset; get it with [`io::Error::get_ref`] and `downcast_ref`).
/// Truncation is [`UnexpectedEof`](io::ErrorKind::UnexpectedEof). End of stream (`Ok(0)`)
/// comes only after the frame footer agrees with the chunks read, so a missing chunk is an
/// error too; [`FrameReader::close`] then checks the rest (index entry) as usual. After an
/// error the reader is failed, as after any restore error.
///
/// Reads may stop inside a buffer; [`FrameReader::next_len`] and
/// [`FrameReader::read_into`] then see the rest of that buffer as the next buffer.
///
/// # Examples
/// A frame of buffers read back as one stream, and a damaged chunk:
/// ```
/// use ckpt_frame_core::{CheckpointId, Error, Reader, SliceSource, Style, VecSink, Writer};
/// use std::io::{ErrorKind, Read};
///
/// let (a, b) = (vec![1u8; 100_000], b"tail".to_vec());
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([6; 16]));
/// let mut f = w.open_frame(Style::Raw)?;
/// f.add(&a)?;
/// f.add(&[])?;
/// f.add(&b)?;
/// f.close()?;
/// w.finish()?;
/// let mut bytes = w.into_sink().into_inner();
///
/// let mut r = Reader::new(SliceSource::new(&bytes));
/// let mut back = Vec::new();
/// r.next_frame()?.expect("a frame").read_to_end(&mut back)?;
/// assert_eq!(back, [&a[..], &b[..]].concat());
///
/// bytes[40 + 32 + 10] ^= 1; // a data byte of the first chunk
/// let mut r = Reader::new(SliceSource::new(&bytes));
/// let mut f = r.next_frame()?.expect("a frame");
/// let e = f.read(&mut [0u8; 4096]).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidData);
/// let inner = e.get_ref().and_then(|e| e.downcast_ref::<Error>());
/// assert!(matches!(inner, Some(Error::ChecksumMismatch { frame: Some(0), offset: 40, .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl<S: Source> io::Read for FrameReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_stream(buf)?)
    }
}
