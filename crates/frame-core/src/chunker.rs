//! How a frame's buffers are cut into chunks.
//!
//! One policy serves the writer and the size bounds, so the bounds are exact for RAW by
//! construction. Buffers under [`DIRECT_MIN`] bytes are gathered into a 64 KiB staging
//! chunk; a larger buffer ends the staging chunk and is cut into chunks of up to 64 KiB taken
//! straight from the caller's memory, except a tail under [`DIRECT_MIN`], which is gathered
//! again. Each buffer's length goes into the table of the chunk holding its first byte (for
//! an empty buffer, the chunk being gathered); a staging chunk is also ended when its table
//! holds [`STARTS_MAX`](crate::table::STARTS_MAX) lengths.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::codec::Style;
use crate::table::TableBuilder;
use crate::wire::{
    CHUNK_HEADER_LEN, CHUNK_MAX, FRAME_FOOTER_LEN, FRAME_HEADER_LEN, INDEX_ENTRY_LEN,
    INDEX_HEADER_LEN, TAIL_LEN,
};
use alloc::vec::Vec;

/// Buffers (and tails) at least this long are compressed in place, not gathered.
pub const DIRECT_MIN: usize = 16 * 1024;

/// A chunk's length table as handed to the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table<'t> {
    /// The encoded table (empty when the chunker only counts).
    pub bytes: &'t [u8],
    /// Its encoded length.
    pub len: usize,
    /// Buffers starting in the chunk.
    pub starts: u32,
}

/// One move of bytes decided by the chunker, relative to the buffer being pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'t> {
    /// Copy `len` bytes from `from` into the staging chunk.
    Gather { from: usize, len: usize },
    /// The staging chunk is complete (`len` data bytes): emit it and start the other half.
    EmitStaged { len: usize, table: Table<'t> },
    /// Bytes `from..from + len` of the buffer are a chunk of their own.
    EmitDirect { from: usize, len: usize, table: Table<'t> },
}

/// The chunking state of one frame.
#[derive(Debug, Default, Clone)]
pub struct Chunker {
    staged: usize,
    table: TableBuilder,
    /// Encoded tables, kept only when `record` is set (the writer); the bounds only count.
    record: bool,
    table_bytes: Vec<u8>,
    direct_bytes: Vec<u8>,
}

impl Chunker {
    /// A chunker that encodes tables (`record`) or only measures them.
    pub fn new(record: bool) -> Self {
        Self { record, ..Self::default() }
    }

    pub fn reset(&mut self) {
        self.staged = 0;
        self.table = TableBuilder::default();
        self.table_bytes.clear();
    }

    fn emit_staged<E>(
        &mut self,
        step: &mut impl FnMut(Step<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let out = self.record.then_some(&mut self.table_bytes);
        let (len, starts) = self.table.finish(out);
        let table = Table { bytes: &self.table_bytes, len, starts };
        let result = step(Step::EmitStaged { len: self.staged, table });
        self.staged = 0;
        self.table_bytes.clear();
        result
    }

    fn gather<E>(
        &mut self,
        mut from: usize,
        len: usize,
        step: &mut impl FnMut(Step<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = from + len;
        while from < end {
            let n = (CHUNK_MAX - self.staged).min(end - from);
            step(Step::Gather { from, len: n })?;
            self.staged += n;
            from += n;
            if self.staged == CHUNK_MAX {
                self.emit_staged(step)?;
            }
        }
        Ok(())
    }

    /// Routes one buffer of `len` bytes.
    pub fn buffer<E>(
        &mut self,
        len: usize,
        mut step: impl FnMut(Step<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if len < DIRECT_MIN {
            if self.table.is_full() {
                self.emit_staged(&mut step)?;
            }
            let out = self.record.then_some(&mut self.table_bytes);
            self.table.push(len as u64, out);
            return self.gather(0, len, &mut step);
        }
        self.flush(&mut step)?;
        let mut first = TableBuilder::default();
        self.direct_bytes.clear();
        first.push(len as u64, self.record.then_some(&mut self.direct_bytes));
        let (table_len, starts) = first.finish(self.record.then_some(&mut self.direct_bytes));
        let mut table = Table { bytes: &self.direct_bytes, len: table_len, starts };
        let mut from = 0;
        while len - from >= DIRECT_MIN {
            let n = (len - from).min(CHUNK_MAX);
            step(Step::EmitDirect { from, len: n, table })?;
            table = Table { bytes: &[], len: 0, starts: 0 };
            from += n;
        }
        self.gather(from, len - from, &mut step)
    }

    /// Emits whatever is staged: data or lengths (at frame close, or before a direct chunk).
    pub fn flush<E>(&mut self, mut step: impl FnMut(Step<'_>) -> Result<(), E>) -> Result<(), E> {
        if self.staged > 0 || self.table.starts() > 0 {
            self.emit_staged(&mut step)?;
        }
        Ok(())
    }
}

/// Stored size of one frame holding buffers of `buffer_lens`: exact for [`Style::Raw`],
/// the worst case for [`Style::Lz4`]. `None` if the size overflows `u64`.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{frame_size_bound, Style};
/// // 40-byte header; one chunk: 32-byte header, 3 data bytes, a 2-byte length table
/// // (length 3, count 1); 56-byte footer.
/// assert_eq!(frame_size_bound(Style::Raw, [3]), Some(40 + 32 + 3 + 2 + 56));
/// assert!(frame_size_bound(Style::Lz4, [3]).unwrap() > 133);
/// ```
pub fn frame_size_bound(style: Style, buffer_lens: impl IntoIterator<Item = usize>) -> Option<u64> {
    let mut chunker = Chunker::new(false);
    let mut total = (FRAME_HEADER_LEN + FRAME_FOOTER_LEN) as u64;
    let mut on_step = |s: Step<'_>| match s {
        Step::Gather { .. } => Ok::<(), ()>(()),
        Step::EmitStaged { len, table } | Step::EmitDirect { len, table, .. } => {
            let stored = (CHUNK_HEADER_LEN + style.max_stored_len(len) + table.len) as u64;
            total = total.checked_add(stored).ok_or(())?;
            Ok(())
        }
    };
    for len in buffer_lens {
        chunker.buffer(len, &mut on_step).ok()?;
    }
    chunker.flush(&mut on_step).ok()?;
    Some(total)
}

/// Stored size of a whole checkpoint whose frames are given as (style, buffer lengths):
/// exact when every frame is RAW, the worst case otherwise. `None` on overflow.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{checkpoint_size_bound, Style};
/// let empty: [(Style, [usize; 0]); 0] = [];
/// assert_eq!(checkpoint_size_bound(empty), Some(8 + 64));
/// ```
pub fn checkpoint_size_bound<I, B>(frames: I) -> Option<u64>
where
    I: IntoIterator<Item = (Style, B)>,
    B: IntoIterator<Item = usize>,
{
    let mut total = (INDEX_HEADER_LEN + TAIL_LEN) as u64;
    for (style, lens) in frames {
        let frame = frame_size_bound(style, lens)?;
        total = total.checked_add(frame)?.checked_add(INDEX_ENTRY_LEN as u64)?;
    }
    Some(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// (data bytes, starts) of each chunk.
    fn chunks(lens: &[usize]) -> Vec<(usize, u32)> {
        let mut c = Chunker::new(true);
        let mut out = Vec::new();
        let mut on = |s: Step<'_>| -> Result<(), ()> {
            if let Step::EmitStaged { len, table } | Step::EmitDirect { len, table, .. } = s {
                assert_eq!(table.bytes.len(), table.len);
                out.push((len, table.starts));
            }
            Ok(())
        };
        for &l in lens {
            c.buffer(l, &mut on).unwrap();
        }
        c.flush(&mut on).unwrap();
        out
    }

    #[test]
    fn small_buffers_share_chunks_and_only_data_fills_them() {
        // 20,000 buffers of 50 bytes: exactly the bytes of one 1,000,000-byte buffer.
        let c = chunks(&alloc::vec![50; 20_000]);
        assert_eq!(c.iter().map(|c| c.0).sum::<usize>(), 1_000_000);
        assert!(c.iter().rev().skip(1).all(|&(l, _)| l == CHUNK_MAX));
        assert_eq!(c.iter().map(|c| c.1).sum::<u32>(), 20_000);
    }

    #[test]
    fn large_buffers_go_direct_and_small_tails_are_gathered() {
        assert_eq!(chunks(&[CHUNK_MAX + 1]), [(CHUNK_MAX, 1), (1, 0)]);
        assert_eq!(chunks(&[100 * 1024]), [(CHUNK_MAX, 1), (100 * 1024 - CHUNK_MAX, 0)]);
        assert_eq!(chunks(&[DIRECT_MIN - 1]), [(DIRECT_MIN - 1, 1)]);
        assert_eq!(chunks(&[0, 0]), [(0, 2)]);
        assert_eq!(chunks(&[5, DIRECT_MIN, 0]), [(5, 1), (DIRECT_MIN, 1), (0, 1)]);
    }

    #[test]
    fn too_many_starts_end_a_chunk() {
        let c = chunks(&alloc::vec![0; 40_000]);
        assert_eq!(c, [(0, 16_384), (0, 16_384), (0, 40_000 - 2 * 16_384)]);
    }
}
