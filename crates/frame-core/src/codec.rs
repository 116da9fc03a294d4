//! Frame styles and the codec traits behind the compressed style.

use crate::error::CodecError;
use alloc::boxed::Box;

/// How a frame stores its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Style {
    /// Bytes stored verbatim (with chunk headers and checksums).
    Raw,
    /// Linked LZ4 blocks: each chunk may reference the 64 KiB of the frame before it.
    Lz4,
}

impl Style {
    /// The style byte stored in frame headers and the index.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Raw => 0,
            Self::Lz4 => 1,
        }
    }

    /// The style for a stored byte, if it names one.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Raw),
            1 => Some(Self::Lz4),
            _ => None,
        }
    }

    /// Worst-case stored bytes for a chunk of `logical_len` bytes in this style.
    pub const fn max_stored_len(self, logical_len: usize) -> usize {
        match self {
            Self::Raw => logical_len,
            // A chunk holding only lengths has no block at all.
            Self::Lz4 if logical_len == 0 => 0,
            Self::Lz4 => lz4_bound(logical_len),
        }
    }
}

/// How far back an LZ4 match can reach: a linked chunk depends on at most this many bytes
/// of the frame before it.
pub(crate) const LZ4_HISTORY: usize = 64 * 1024;

/// LZ4's worst case for one block of `n` bytes (the same as `LZ4_compressBound`).
pub const fn lz4_bound(n: usize) -> usize {
    n + n / 255 + 16
}

/// Compresses the chunks of one frame as a linked sequence of LZ4 blocks.
///
/// The writer calls [`reset`](Self::reset) when a frame opens, then
/// [`compress_linked`](Self::compress_linked) once per chunk, in order. A block may
/// reference up to 64 KiB of the chunks before it in the same frame (and nothing else), so
/// that a decoder holding the frame's last 64 KiB of logical bytes can decode it.
///
/// Implement this to bring your own LZ4 encoder (for example a pure-Rust one in a `no_std`
/// build) and pass it to [`Writer::with_codecs`](crate::Writer::with_codecs).
pub trait ChunkCompressor: Send {
    /// Starts a new frame: forget every earlier chunk.
    fn reset(&mut self);

    /// Compresses `chunk` into `out` (at least `lz4_bound(chunk.len())` bytes) and returns
    /// the compressed length.
    ///
    /// # Errors
    /// When the compressor fails; the writer then fails the checkpoint.
    ///
    /// # Safety
    /// Every chunk passed since the last [`reset`](Self::reset) stays at the same address,
    /// readable and unmodified, until the next `reset` or until `self` is dropped. The
    /// writer guarantees this: chunks are either caller buffers borrowed until the frame
    /// closes, or halves of its double-buffered staging area, which are rewritten only
    /// after a later chunk has moved the compressor's history past them.
    unsafe fn compress_linked(&mut self, chunk: &[u8], out: &mut [u8])
    -> Result<usize, CodecError>;
}

/// Decompresses the chunks of one frame, keeping the history linked blocks refer to.
pub trait ChunkDecompressor: Send {
    /// Starts a new frame: forget every earlier chunk.
    fn reset(&mut self);

    /// Decodes one stored chunk that must expand to exactly `logical_len` bytes (at most
    /// 64 KiB); [`output`](Self::output) then returns the decoded bytes.
    ///
    /// # Errors
    /// When the stored bytes are not a valid block for this history, or decode to a
    /// different length.
    fn decompress_linked(&mut self, stored: &[u8], logical_len: usize) -> Result<(), CodecError>;

    /// The bytes the last successful [`decompress_linked`](Self::decompress_linked) produced.
    fn output(&self) -> &[u8];

    /// Decodes one stored chunk straight into `out[at..]`, which must expand to exactly
    /// `out.len() - at` bytes (1 to 64 KiB), where `out[..at]` holds the frame's logical
    /// bytes just before the chunk: at least the frame's last 64 KiB, or the whole frame
    /// so far. The reader uses this to restore a large buffer without copying it out of
    /// internal memory.
    ///
    /// Afterwards the decompressor's own history may lack this chunk: before its next
    /// [`decompress_linked`](Self::decompress_linked) in the frame, the caller hands it the
    /// frame's latest bytes with [`set_history`](Self::set_history). The reader does this
    /// (once per restored buffer, not once per chunk) with a guard, so no path skips it.
    /// On error the contents of `out[at..]` are unspecified.
    ///
    /// The default decodes with [`decompress_linked`](Self::decompress_linked) and copies
    /// [`output`](Self::output) into place, which keeps the history current; an
    /// implementation that overrides this to decode in place must also override
    /// [`set_history`](Self::set_history).
    ///
    /// # Errors
    /// When `at` is past the end of `out`, the chunk length is outside 1..=64 KiB, or the
    /// stored bytes are not a valid block for this history or decode to another length.
    fn decompress_into(
        &mut self,
        stored: &[u8],
        out: &mut [u8],
        at: usize,
    ) -> Result<(), CodecError> {
        let dst = out.get_mut(at..).ok_or(CodecError { message: "chunk position out of range" })?;
        self.decompress_linked(stored, dst.len())?;
        let src = self.output();
        if src.len() != dst.len() {
            return Err(CodecError { message: "decoded chunk has the wrong length" });
        }
        dst.copy_from_slice(src);
        Ok(())
    }

    /// Makes `history` the frame's output so far, as far as later chunks can see: it is
    /// the frame's last 64 KiB of logical bytes, or all of them when the frame is shorter.
    /// Called after [`decompress_into`](Self::decompress_into) decoded chunks elsewhere;
    /// the decompressor must copy what it needs, as `history` is only borrowed.
    ///
    /// The default does nothing, which is right for the default
    /// [`decompress_into`](Self::decompress_into).
    fn set_history(&mut self, history: &[u8]) {
        let _ = history;
    }
}

/// The compressor the default writer uses for [`Style::Lz4`], if this build has one: liblz4
/// when the `lz4` feature is on, else the pure-Rust one when `lz4-pure` is.
#[allow(clippy::unnecessary_wraps, reason = "always Some in some feature sets, None in others")]
pub(crate) fn default_compressor() -> Option<Box<dyn ChunkCompressor>> {
    #[cfg(feature = "lz4")]
    {
        crate::lz4::Lz4Compressor::new().map(|c| Box::new(c) as Box<dyn ChunkCompressor>)
    }
    #[cfg(all(feature = "lz4-pure", not(feature = "lz4")))]
    {
        Some(Box::new(crate::lz4_pure::PureLz4Compressor::new()))
    }
    #[cfg(not(any(feature = "lz4", feature = "lz4-pure")))]
    {
        None
    }
}

/// The decompressor the default reader uses for [`Style::Lz4`], if this build has one (as
/// for [`default_compressor`]).
#[allow(clippy::unnecessary_wraps, reason = "always Some in some feature sets, None in others")]
pub(crate) fn default_decompressor() -> Option<Box<dyn ChunkDecompressor>> {
    #[cfg(feature = "lz4")]
    {
        crate::lz4::Lz4Decompressor::new().map(|d| Box::new(d) as Box<dyn ChunkDecompressor>)
    }
    #[cfg(all(feature = "lz4-pure", not(feature = "lz4")))]
    {
        Some(Box::new(crate::lz4_pure::PureLz4Decompressor::new()))
    }
    #[cfg(not(any(feature = "lz4", feature = "lz4-pure")))]
    {
        None
    }
}

/// The one length rule every decompressor applies before decoding: a chunk holds 1 to
/// 64 KiB of logical bytes.
#[cfg(any(feature = "lz4", feature = "lz4-pure"))]
pub(crate) fn check_chunk_len(logical_len: usize) -> Result<(), CodecError> {
    if logical_len == 0 || logical_len > crate::wire::CHUNK_MAX {
        return Err(CodecError { message: "chunk length outside 1..=64 KiB" });
    }
    Ok(())
}
