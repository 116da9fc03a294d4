//! The LZ4 style through liblz4 (lz4-sys), with the streaming declarations lz4-sys lacks.
//!
//! All unsafe code for LZ4 lives in this module.

use crate::codec::{ChunkCompressor, ChunkDecompressor, LZ4_HISTORY, lz4_bound};
use crate::error::CodecError;
use crate::wire::CHUNK_MAX;
use alloc::boxed::Box;
use alloc::vec;
use core::ffi::{c_char, c_int};

mod ffi {
    use core::ffi::{c_char, c_int};

    pub use lz4_sys::{
        LZ4_createStreamDecode, LZ4_decompress_safe_continue, LZ4_freeStreamDecode,
        LZ4_setStreamDecode, LZ4StreamDecode, LZ4StreamEncode,
    };

    // liblz4 (bundled by lz4-sys) exports these since 1.9.0; lz4-sys does not declare them.
    unsafe extern "C" {
        pub fn LZ4_initStream(buffer: *mut core::ffi::c_void, size: usize) -> *mut LZ4StreamEncode;
        pub fn LZ4_compress_fast_continue(
            stream: *mut LZ4StreamEncode,
            src: *const c_char,
            dst: *mut c_char,
            src_size: c_int,
            dst_capacity: c_int,
            acceleration: c_int,
        ) -> c_int;
        pub fn LZ4_decompress_safe_usingDict(
            src: *const c_char,
            dst: *mut c_char,
            src_size: c_int,
            dst_capacity: c_int,
            dict_start: *const c_char,
            dict_size: c_int,
        ) -> c_int;
    }
}

/// Room for liblz4's `LZ4_stream_t` (16,416 bytes in 1.10) with a margin; `LZ4_initStream`
/// refuses (returns null) if it were ever too small.
const STREAM_WORDS: usize = 4096;

/// LZ4 streaming compressor (`LZ4_compress_fast_continue`, acceleration 1). Each frame
/// starts from a fully initialised stream (`LZ4_initStream`), not `LZ4_resetStream_fast`:
/// the fast reset does not give output identical to a fresh stream, and a frame must come
/// out the same whether a long-lived writer or a fresh per-thread encoder wrote it.
#[derive(Debug)]
pub struct Lz4Compressor {
    /// Memory the stream lives in, 8-byte aligned, owned; the heap block never moves.
    state: Box<[u64]>,
    stream: *mut ffi::LZ4StreamEncode,
}

// SAFETY: the stream state is plain memory owned by this value; moving it to another thread
// is fine because it is only touched through `&mut self`.
unsafe impl Send for Lz4Compressor {}

impl Lz4Compressor {
    /// A fresh compressor, or `None` if liblz4 refuses the state memory.
    pub fn new() -> Option<Self> {
        let state = vec![0u64; STREAM_WORDS].into_boxed_slice();
        let mut c = Self { state, stream: core::ptr::null_mut() };
        c.init();
        (!c.stream.is_null()).then_some(c)
    }

    fn init(&mut self) {
        let size = self.state.len() * core::mem::size_of::<u64>();
        // SAFETY: `state` is writable for `size` bytes and 8-byte aligned, as LZ4_initStream
        // requires; it returns a pointer into that memory or null, and the memory lives as
        // long as `self`, which owns it.
        self.stream = unsafe { ffi::LZ4_initStream(self.state.as_mut_ptr().cast(), size) };
    }
}

impl ChunkCompressor for Lz4Compressor {
    fn reset(&mut self) {
        // Re-initialising also drops every pointer the stream held to earlier chunks.
        self.init();
    }

    unsafe fn compress_linked(
        &mut self,
        chunk: &[u8],
        out: &mut [u8],
    ) -> Result<usize, CodecError> {
        if chunk.len() > CHUNK_MAX || out.len() < lz4_bound(chunk.len()) {
            return Err(CodecError { message: "chunk larger than 64 KiB or output too small" });
        }
        // Both lengths fit in c_int: chunk <= 64 KiB and out is capped to its bound.
        let src_len = c_int::try_from(chunk.len()).unwrap_or(0);
        let dst_len = c_int::try_from(lz4_bound(chunk.len())).unwrap_or(0);
        // SAFETY: `chunk` and `out` are valid for the given lengths for this call; the caller
        // guarantees (trait contract) that earlier chunks of this frame, which the stream may
        // read as history, are still in place and unmodified.
        let n = unsafe {
            ffi::LZ4_compress_fast_continue(
                self.stream,
                chunk.as_ptr().cast::<c_char>(),
                out.as_mut_ptr().cast::<c_char>(),
                src_len,
                dst_len,
                1,
            )
        };
        usize::try_from(n)
            .ok()
            .filter(|&n| n > 0 || chunk.is_empty())
            .ok_or(CodecError { message: "LZ4_compress_fast_continue failed" })
    }
}

/// What [`check_offsets`] and liblz4 report for a block that does not parse or decode.
const INVALID_BLOCK: CodecError =
    CodecError { message: "LZ4 block is invalid or has the wrong length" };

/// Walks an LZ4 block's sequences without decoding them, and rejects a match offset of 0.
///
/// The format forbids offset 0 (`docs/format.md` section 6.3), but liblz4's safe decoders
/// accept it and write zeros (or whatever the output held) for the match, so it has to be
/// caught before the block reaches them. The walk also rejects a block whose sequences run
/// past its end or that ends inside a sequence; liblz4 rejects those too. It reads each byte
/// of the block at most once and allocates nothing.
fn check_offsets(block: &[u8]) -> Result<(), CodecError> {
    // Reads a length continued in 255-steps after a 15 in the token: at most one step per
    // byte of the block, so the sum stays below 255 * block.len().
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
    let mut at = 0usize;
    loop {
        let token = *block.get(at).ok_or(INVALID_BLOCK)?;
        at += 1;
        let mut literals = usize::from(token >> 4);
        if literals == 15 {
            literals = extended(block, &mut at, literals)?;
        }
        at = at.saturating_add(literals);
        if at == block.len() {
            // The last sequence: literals only.
            return Ok(());
        }
        let offset = block.get(at..at.saturating_add(2)).ok_or(INVALID_BLOCK)?;
        if offset == [0, 0] {
            return Err(CodecError { message: "LZ4 match offset is 0, which the format forbids" });
        }
        at += 2;
        if token & 0x0F == 15 {
            extended(block, &mut at, 15)?;
        }
    }
}

/// Decoder ring: two 64 KiB windows plus room for the largest chunk. liblz4 documents
/// 64 KiB + 14 + the block size as the minimum (`LZ4_DECODER_RING_BUFFER_SIZE`), but then a
/// block decoded after the wrap can sit under the previous block's 64 KiB history window,
/// and a match that starts in that history is copied with an overlapping `memcpy`
/// (undefined behaviour, caught by `AddressSanitizer` in the `roundtrip_plans` fuzz target). With this
/// size a wrap happens only past 64 KiB + one block, so the history window never reaches
/// the bytes the next block is decoded into.
const RING_LEN: usize = 2 * HISTORY + CHUNK_MAX;
/// LZ4's match window.
const HISTORY: usize = 65536;

/// LZ4 streaming decompressor decoding into a ring that keeps the last 64 KiB.
///
/// [`decompress_into`](ChunkDecompressor::decompress_into) decodes straight into the
/// caller's memory with `LZ4_decompress_safe_usingDict`, which keeps no state: the stream
/// only ever points into the ring, and [`set_history`](ChunkDecompressor::set_history)
/// copies the caller's latest bytes into the ring and points the stream there.
#[derive(Debug)]
pub struct Lz4Decompressor {
    stream: *mut ffi::LZ4StreamDecode,
    ring: Box<[u8]>,
    pos: usize,
    last: core::ops::Range<usize>,
}

// SAFETY: as for Lz4Compressor; the ring is owned and the stream only points into it.
unsafe impl Send for Lz4Decompressor {}

impl Lz4Decompressor {
    /// A fresh decompressor, or `None` if liblz4 could not allocate its state.
    pub fn new() -> Option<Self> {
        // SAFETY: no preconditions; returns an initialised state or null.
        let stream = unsafe { ffi::LZ4_createStreamDecode() };
        (!stream.is_null()).then(|| Self {
            stream,
            ring: vec![0u8; RING_LEN].into_boxed_slice(),
            pos: 0,
            last: 0..0,
        })
    }
}

impl Drop for Lz4Decompressor {
    fn drop(&mut self) {
        // SAFETY: `stream` came from LZ4_createStreamDecode and is freed exactly once.
        unsafe { ffi::LZ4_freeStreamDecode(self.stream) };
    }
}

impl ChunkDecompressor for Lz4Decompressor {
    fn reset(&mut self) {
        // SAFETY: valid stream; a null dictionary of size 0 is the documented reset.
        unsafe { ffi::LZ4_setStreamDecode(self.stream, core::ptr::null(), 0) };
        self.pos = 0;
        self.last = 0..0;
    }

    fn decompress_linked(&mut self, stored: &[u8], logical_len: usize) -> Result<(), CodecError> {
        self.last = 0..0;
        crate::codec::check_chunk_len(logical_len)?;
        let src_len = c_int::try_from(stored.len())
            .map_err(|_| CodecError { message: "stored chunk too large" })?;
        check_offsets(stored)?;
        if self.pos + CHUNK_MAX > self.ring.len() {
            // The history window [pos - 64 KiB, pos) must lie past any block decoded at 0.
            debug_assert!(self.pos >= HISTORY + CHUNK_MAX, "ring wraps under its history");
            self.pos = 0;
        }
        let start = self.pos;
        let dst = self
            .ring
            .get_mut(start..start + logical_len)
            .ok_or(CodecError { message: "ring position out of range" })?;
        let want = c_int::try_from(logical_len).unwrap_or(0);
        // SAFETY: `stored` is readable for src_len bytes and `dst` writable for `want` bytes;
        // LZ4_decompress_safe_continue never writes past `want` nor reads past `src_len`,
        // whatever the input. Its history points only into `self.ring`, which lives as long
        // as the stream, and decoding positions wrap only when less than one maximum block
        // remains of a ring of two history windows plus a block (see RING_LEN), so the
        // history is never overwritten while live and never overlaps the destination.
        let n = unsafe {
            ffi::LZ4_decompress_safe_continue(
                self.stream,
                stored.as_ptr(),
                dst.as_mut_ptr(),
                src_len,
                want,
            )
        };
        if n != want {
            return Err(INVALID_BLOCK);
        }
        self.pos = start + logical_len;
        self.last = start..start + logical_len;
        Ok(())
    }

    fn output(&self) -> &[u8] {
        self.ring.get(self.last.clone()).unwrap_or_default()
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
        let src_len = c_int::try_from(stored.len())
            .map_err(|_| CodecError { message: "stored chunk too large" })?;
        check_offsets(stored)?;
        let dict_len = at.min(LZ4_HISTORY);
        // Both fit in c_int: each is at most 64 KiB.
        let want = c_int::try_from(logical_len).unwrap_or(0);
        let dict_size = c_int::try_from(dict_len).unwrap_or(0);
        // One pointer for the dictionary and the destination, so that both (and liblz4's
        // prefix mode, which reaches back from the destination) stay inside `out`.
        let base = out.as_mut_ptr();
        // SAFETY: `at < out.len()` (logical_len > 0), so `base + at` is inside `out`, and
        // `at - dict_len` is at most `at`.
        let (dst, dict) = unsafe { (base.add(at), base.add(at - dict_len)) };
        // SAFETY: `stored` is readable for src_len bytes; `dst` is writable for `want` bytes
        // (out[at..], exactly logical_len long); `dict` is readable for `dict_size` bytes
        // (out[at - dict_len..at]), all derived from the one exclusive borrow of `out`, which
        // nothing else touches during the call. LZ4_decompress_safe_usingDict never writes
        // past `want` bytes of `dst` nor reads past `src_len` bytes of `stored`, whatever the
        // input, and its matches read only the dictionary and the bytes of `dst` already
        // written: when the dictionary ends at `dst` and holds 64 KiB - 1 or more bytes it
        // uses prefix mode, whose matches reach back at most 65,535 bytes from `dst`, still
        // inside the dictionary. It keeps no pointer once it returns, and the stream is
        // not touched, so it still points only into `self.ring`.
        let n = unsafe {
            ffi::LZ4_decompress_safe_usingDict(
                stored.as_ptr().cast::<c_char>(),
                dst.cast::<c_char>(),
                src_len,
                want,
                dict.cast_const().cast::<c_char>(),
                dict_size,
            )
        };
        if n != want {
            return Err(INVALID_BLOCK);
        }
        Ok(())
    }

    fn set_history(&mut self, history: &[u8]) {
        let keep = history.get(history.len().saturating_sub(LZ4_HISTORY)..).unwrap_or_default();
        // The ring always has room for 64 KiB; should it not, the old history stays.
        let Some(dst) = self.ring.get_mut(..keep.len()) else { return };
        dst.copy_from_slice(keep);
        self.last = 0..0;
        // keep.len() <= 64 KiB fits in c_int.
        let len = c_int::try_from(keep.len()).unwrap_or(0);
        let dict = if keep.is_empty() { core::ptr::null() } else { dst.as_ptr() };
        // SAFETY: valid stream; `dict` is null with size 0 (the documented reset) or points
        // at the first `len` bytes of `self.ring`, which the stream may read as history for
        // as long as the ring lives, and the ring lives as long as the stream. The next
        // decode goes to ring[len..], right after this prefix, and the ring-buffer rule in
        // decompress_linked keeps the prefix intact while it is history.
        unsafe { ffi::LZ4_setStreamDecode(self.stream, dict, len) };
        self.pos = keep.len();
    }
}
