//! The LZ4 style in pure Rust through `lz4_flex` (feature `lz4-pure`): no C compiler, and no
//! unsafe code here or in the decoder it calls (`lz4_flex`'s `safe-decode`).
//!
//! Both halves keep their own copy of the frame's last 64 KiB of logical bytes and hand it to
//! `lz4_flex`'s block functions as an external dictionary, which is one of the equivalent
//! ways to code linked blocks in `docs/format.md` section 6.3. The compressor therefore does
//! not rely on earlier chunks staying in place (the [`ChunkCompressor`] contract allows it to,
//! but a copy of at most 64 KiB per chunk is cheap next to compressing it, and keeps this
//! module free of raw pointers).
//!
//! `lz4_flex` decodes some blocks that the format forbids (offset 0, a match in the last five
//! bytes, a block that ends with a match): [`check_block`] walks each block first and rejects
//! exactly what liblz4's `LZ4_decompress_safe*` reject, so that both codecs accept the same
//! checkpoints.

use crate::codec::{ChunkCompressor, ChunkDecompressor, LZ4_HISTORY, lz4_bound};
use crate::error::CodecError;
use crate::wire::CHUNK_MAX;
use alloc::boxed::Box;
use alloc::vec;
use core::ops::Range;

/// What `lz4_flex` asks of the output buffer for one chunk: more than LZ4's true worst case
/// ([`lz4_bound`]), which is all the writer gives, so blocks are compressed aside first.
const SCRATCH_LEN: usize = lz4_flex::block::get_maximum_output_size(CHUNK_MAX);

/// The history buffers: 64 KiB of history and room to append two maximum chunks before the
/// last 64 KiB slides back to the front.
const WINDOW_LEN: usize = LZ4_HISTORY + 2 * CHUNK_MAX;

/// A frame's recent logical bytes: `buf[..len]`, of which the last 64 KiB are the history
/// later chunks may refer to.
#[derive(Debug)]
struct Window {
    buf: Box<[u8]>,
    len: usize,
}

impl Window {
    fn new() -> Self {
        Self { buf: vec![0u8; WINDOW_LEN].into_boxed_slice(), len: 0 }
    }

    /// Makes room for `more` bytes after the history, moving the last 64 KiB to the front
    /// when the buffer is full. Returns the history and the free space after it.
    fn split(&mut self, more: usize) -> (&[u8], &mut [u8]) {
        if self.len.saturating_add(more) > self.buf.len() {
            let keep = self.len.min(LZ4_HISTORY);
            self.buf.copy_within(self.len - keep..self.len, 0);
            self.len = keep;
        }
        let (history, free) = self.buf.split_at_mut(self.len);
        (history.get(history.len().saturating_sub(LZ4_HISTORY)..).unwrap_or_default(), free)
    }

    /// Replaces the history with the last 64 KiB of `bytes`.
    fn set(&mut self, bytes: &[u8]) {
        let keep = bytes.get(bytes.len().saturating_sub(LZ4_HISTORY)..).unwrap_or_default();
        if let Some(dst) = self.buf.get_mut(..keep.len()) {
            dst.copy_from_slice(keep);
            self.len = keep.len();
        }
    }
}

/// LZ4 compressor for linked chunks in pure Rust (`lz4_flex`), for builds without a C
/// compiler (feature `lz4-pure`).
///
/// Each chunk is compressed as one LZ4 block with the frame's preceding (up to) 64 KiB of
/// logical bytes as external dictionary. The blocks follow the LZ4 Block Format's
/// end-of-block rules, so liblz4 (and [`PureLz4Decompressor`]) decode them; they are not
/// byte-identical to what liblz4's compressor chooses. When both the `lz4` and `lz4-pure`
/// features are on, [`Writer::new`](crate::Writer::new) uses liblz4 and this compressor is
/// used only when passed to [`Writer::with_codecs`](crate::Writer::with_codecs).
///
/// # Examples
/// ```
/// use ckpt_frame_core::{
///     CheckpointId, PureLz4Compressor, PureLz4Decompressor, Reader, SliceSource, Style,
///     VecSink, Writer,
/// };
///
/// let id = CheckpointId::from_bytes(*b"pure-lz4-example");
/// let data = b"abcabcabc ".repeat(10_000);
/// let mut w = Writer::with_codecs(VecSink::new(), id, Some(Box::new(PureLz4Compressor::new())));
/// let mut frame = w.open_frame(Style::Lz4)?;
/// frame.add(&data)?;
/// frame.close()?;
/// w.finish()?;
/// let bytes = w.into_sink().into_inner();
/// assert!(bytes.len() < data.len() / 10);
///
/// let dec = PureLz4Decompressor::new();
/// let mut r = Reader::with_codecs(SliceSource::new(&bytes), Some(Box::new(dec)));
/// let mut f = r.next_frame()?.expect("one frame");
/// assert_eq!(f.read_to_vec()?.expect("one buffer"), data);
/// f.close()?;
/// r.finish()?;
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
#[derive(Debug)]
pub struct PureLz4Compressor {
    window: Window,
    scratch: Box<[u8]>,
}

impl PureLz4Compressor {
    /// A fresh compressor (about 260 KiB of buffers).
    #[must_use]
    pub fn new() -> Self {
        Self { window: Window::new(), scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice() }
    }
}

impl Default for PureLz4Compressor {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkCompressor for PureLz4Compressor {
    fn reset(&mut self) {
        self.window.len = 0;
    }

    /// Compresses `chunk` against this compressor's own copy of the history.
    ///
    /// # Safety
    /// None beyond the trait's: this implementation copies what it needs and never reads an
    /// earlier chunk through its address, so it is sound whatever the caller does with them.
    unsafe fn compress_linked(
        &mut self,
        chunk: &[u8],
        out: &mut [u8],
    ) -> Result<usize, CodecError> {
        if chunk.len() > CHUNK_MAX || out.len() < lz4_bound(chunk.len()) {
            return Err(CodecError { message: "chunk larger than 64 KiB or output too small" });
        }
        let (history, free) = self.window.split(chunk.len());
        let n = lz4_flex::block::compress_into_with_dict(chunk, &mut self.scratch, history)
            .map_err(|_| CodecError { message: "lz4_flex could not compress the chunk" })?;
        // An LZ4 block never exceeds lz4_bound; should lz4_flex's ever do, fail rather than
        // write a block the format does not allow.
        let block = self.scratch.get(..n).filter(|_| n <= lz4_bound(chunk.len()));
        let dst = out.get_mut(..n);
        let (Some(block), Some(dst)) = (block, dst) else {
            return Err(CodecError { message: "lz4_flex block larger than lz4_bound" });
        };
        dst.copy_from_slice(block);
        let room = free.get_mut(..chunk.len()).ok_or(CodecError { message: "history full" })?;
        room.copy_from_slice(chunk);
        self.window.len += chunk.len();
        Ok(n)
    }
}

/// What [`check_block`] and the decoder report for a block that does not parse or decode.
const INVALID_BLOCK: CodecError =
    CodecError { message: "LZ4 block is invalid or has the wrong length" };

/// Checks, without decoding, that `block` is a valid LZ4 block that decodes to exactly
/// `out_len` bytes after `dict_len` bytes of history: the rules of `docs/format.md`
/// section 6.3, as liblz4's safe decoders apply them.
///
/// - A sequence whose literals end less than 12 bytes before the end of the output
///   (`MFLIMIT`), or less than 8 bytes before the end of the block, is the last one: it
///   must end exactly at the end of the block and of the output.
/// - A match offset is 1 to `op + dict_len` (offset 0 is rejected, which liblz4 does not).
/// - A match ends at least 5 bytes before the end of the output (`LASTLITERALS`), and the
///   bytes of its extended length end at least 4 bytes before the end of the block.
///
/// Reads each byte of the block at most once and allocates nothing; sums saturate.
pub(crate) fn check_block(block: &[u8], out_len: usize, dict_len: usize) -> Result<(), CodecError> {
    // Reads a length continued in 255-steps after a 15 in the token.
    fn extended(block: &[u8], at: &mut usize, mut n: usize) -> Result<usize, CodecError> {
        loop {
            let b = *block.get(*at).ok_or(INVALID_BLOCK)?;
            *at += 1;
            n = n.saturating_add(usize::from(b));
            if b != 255 {
                return Ok(n);
            }
        }
    }
    let end = block.len();
    let mut ip = 0usize;
    let mut op = 0usize;
    loop {
        let token = *block.get(ip).ok_or(INVALID_BLOCK)?;
        ip += 1;
        let mut literals = usize::from(token >> 4);
        if literals == 15 {
            literals = extended(block, &mut ip, literals)?;
        }
        let ip_end = ip.saturating_add(literals);
        let op_end = op.saturating_add(literals);
        if op_end.saturating_add(12) > out_len || ip_end.saturating_add(8) > end {
            // Must be the last sequence: literals only, up to the end of block and output.
            return if ip_end == end && op_end == out_len { Ok(()) } else { Err(INVALID_BLOCK) };
        }
        ip = ip_end;
        op = op_end;
        // ip_end + 8 <= end: the offset is there.
        let offset = block.get(ip..ip + 2).and_then(|b| <[u8; 2]>::try_from(b).ok());
        let offset = usize::from(u16::from_le_bytes(offset.ok_or(INVALID_BLOCK)?));
        ip += 2;
        if offset == 0 {
            return Err(CodecError { message: "LZ4 match offset is 0, which the format forbids" });
        }
        let mut len = 4 + usize::from(token & 0x0F);
        if token & 0x0F == 15 {
            len = extended(block, &mut ip, len)?;
            if ip.saturating_add(4) > end {
                return Err(INVALID_BLOCK);
            }
        }
        if offset > op.saturating_add(dict_len) {
            return Err(CodecError {
                message: "LZ4 match reaches before the frame's first byte or past 64 KiB",
            });
        }
        op = op.saturating_add(len);
        if op.saturating_add(5) > out_len {
            return Err(CodecError { message: "LZ4 block breaks the end-of-block rules" });
        }
    }
}

/// Decodes one block into all of `dst` with `dict` (at most 64 KiB, the bytes just before
/// `dst` in the frame) as history.
fn decode(stored: &[u8], dst: &mut [u8], dict: &[u8]) -> Result<(), CodecError> {
    check_block(stored, dst.len(), dict.len())?;
    let n =
        lz4_flex::block::decompress_into_with_dict(stored, dst, dict).map_err(|_| INVALID_BLOCK)?;
    if n == dst.len() { Ok(()) } else { Err(INVALID_BLOCK) }
}

/// LZ4 decompressor for linked chunks in pure Rust (`lz4_flex` with its safe decoder), for
/// builds without a C compiler (feature `lz4-pure`).
///
/// It accepts the same blocks as liblz4's safe decoders with the reference reader's extra
/// check (no match offset 0), and never reads history before the frame's first byte or
/// more than 64 KiB back. When both the `lz4` and `lz4-pure` features are on,
/// [`Reader::new`](crate::Reader::new) uses liblz4 and this decompressor is used only when
/// passed to [`Reader::with_codecs`](crate::Reader::with_codecs). See
/// [`PureLz4Compressor`] for an example.
#[derive(Debug)]
pub struct PureLz4Decompressor {
    window: Window,
    last: Range<usize>,
}

impl PureLz4Decompressor {
    /// A fresh decompressor (about 190 KiB of history buffer).
    #[must_use]
    pub fn new() -> Self {
        Self { window: Window::new(), last: 0..0 }
    }
}

impl Default for PureLz4Decompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkDecompressor for PureLz4Decompressor {
    fn reset(&mut self) {
        self.window.len = 0;
        self.last = 0..0;
    }

    fn decompress_linked(&mut self, stored: &[u8], logical_len: usize) -> Result<(), CodecError> {
        self.last = 0..0;
        crate::codec::check_chunk_len(logical_len)?;
        let (history, free) = self.window.split(logical_len);
        let dst = free.get_mut(..logical_len).ok_or(INVALID_BLOCK)?;
        decode(stored, dst, history)?;
        let start = self.window.len;
        self.window.len += logical_len;
        self.last = start..self.window.len;
        Ok(())
    }

    fn output(&self) -> &[u8] {
        self.window.buf.get(self.last.clone()).unwrap_or_default()
    }

    fn decompress_into(
        &mut self,
        stored: &[u8],
        out: &mut [u8],
        at: usize,
    ) -> Result<(), CodecError> {
        self.last = 0..0;
        let logical_len = out.len().saturating_sub(at);
        crate::codec::check_chunk_len(logical_len)?;
        // at < out.len() since logical_len > 0.
        let (before, dst) = out.split_at_mut(at);
        let dict = before.get(at.saturating_sub(LZ4_HISTORY)..).unwrap_or_default();
        decode(stored, dst, dict)
    }

    fn set_history(&mut self, history: &[u8]) {
        self.window.set(history);
        self.last = 0..0;
    }
}
