//! How a frame's logical stream is cut into chunks.
//!
//! One policy serves the writer and the size bounds, so the bounds are exact for RAW by
//! construction: a buffer's 8-byte length prefix and any buffer under [`DIRECT_MIN`] bytes
//! are gathered into a 64 KiB staging chunk; a larger buffer ends the staging chunk and is
//! cut into chunks of up to 64 KiB taken straight from the caller's memory, except a tail
//! under [`DIRECT_MIN`], which is gathered again.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::codec::Style;
use crate::wire::{
    CHUNK_HEADER_LEN, CHUNK_MAX, FRAME_FOOTER_LEN, FRAME_HEADER_LEN, INDEX_ENTRY_LEN,
    INDEX_HEADER_LEN, LENGTH_PREFIX_LEN, TAIL_LEN,
};

/// Buffers (and tails) at least this long are compressed in place, not gathered.
pub const DIRECT_MIN: usize = 16 * 1024;

/// One move of bytes decided by the chunker, relative to the piece being pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Copy `len` bytes from `from` into the staging chunk.
    Gather { from: usize, len: usize },
    /// The staging chunk is complete (`len` bytes): emit it and start the other half.
    EmitStaged { len: usize },
    /// Bytes `from..from + len` of the piece are a chunk of their own.
    EmitDirect { from: usize, len: usize },
}

/// The chunking state of one frame.
#[derive(Debug, Default, Clone)]
pub struct Chunker {
    staged: usize,
}

impl Chunker {
    pub fn reset(&mut self) {
        self.staged = 0;
    }

    /// Routes `len` bytes through the staging chunk.
    pub fn gather<E>(
        &mut self,
        len: usize,
        mut step: impl FnMut(Step) -> Result<(), E>,
    ) -> Result<(), E> {
        self.gather_from(0, len, &mut step)
    }

    fn gather_from<E>(
        &mut self,
        mut from: usize,
        len: usize,
        step: &mut impl FnMut(Step) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = from + len;
        while from < end {
            let n = (CHUNK_MAX - self.staged).min(end - from);
            step(Step::Gather { from, len: n })?;
            self.staged += n;
            from += n;
            if self.staged == CHUNK_MAX {
                step(Step::EmitStaged { len: CHUNK_MAX })?;
                self.staged = 0;
            }
        }
        Ok(())
    }

    /// Routes one buffer's bytes (its prefix went through [`Chunker::gather`]).
    pub fn buffer<E>(
        &mut self,
        len: usize,
        mut step: impl FnMut(Step) -> Result<(), E>,
    ) -> Result<(), E> {
        if len < DIRECT_MIN {
            return self.gather_from(0, len, &mut step);
        }
        self.flush(&mut step)?;
        let mut from = 0;
        while len - from >= DIRECT_MIN {
            let n = (len - from).min(CHUNK_MAX);
            step(Step::EmitDirect { from, len: n })?;
            from += n;
        }
        self.gather_from(from, len - from, &mut step)
    }

    /// Emits whatever is staged (at frame close, or before a direct chunk).
    pub fn flush<E>(&mut self, mut step: impl FnMut(Step) -> Result<(), E>) -> Result<(), E> {
        if self.staged > 0 {
            step(Step::EmitStaged { len: self.staged })?;
            self.staged = 0;
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
/// // 40-byte header, one 24-byte chunk header, 8-byte length prefix + 3 bytes, 56-byte footer.
/// assert_eq!(frame_size_bound(Style::Raw, [3]), Some(40 + 24 + 8 + 3 + 56));
/// assert!(frame_size_bound(Style::Lz4, [3]).unwrap() > 131);
/// ```
pub fn frame_size_bound(style: Style, buffer_lens: impl IntoIterator<Item = usize>) -> Option<u64> {
    let mut chunker = Chunker::default();
    let mut total = (FRAME_HEADER_LEN + FRAME_FOOTER_LEN) as u64;
    let mut add_chunk = |len: usize| -> Result<(), ()> {
        let stored = (CHUNK_HEADER_LEN + style.max_stored_len(len)) as u64;
        total = total.checked_add(stored).ok_or(())?;
        Ok(())
    };
    let mut on_step = |s: Step| match s {
        Step::Gather { .. } => Ok(()),
        Step::EmitStaged { len } | Step::EmitDirect { len, .. } => add_chunk(len),
    };
    for len in buffer_lens {
        chunker.gather(LENGTH_PREFIX_LEN, &mut on_step).ok()?;
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
    use alloc::vec::Vec;

    fn chunks(lens: &[usize]) -> Vec<usize> {
        let mut c = Chunker::default();
        let mut out = Vec::new();
        let mut on = |s: Step| -> Result<(), ()> {
            if let Step::EmitStaged { len } | Step::EmitDirect { len, .. } = s {
                out.push(len);
            }
            Ok(())
        };
        for &l in lens {
            c.gather(LENGTH_PREFIX_LEN, &mut on).unwrap();
            c.buffer(l, &mut on).unwrap();
        }
        c.flush(&mut on).unwrap();
        out
    }

    #[test]
    fn small_buffers_share_chunks() {
        // 20,000 buffers of 50 bytes: 1.16 MB of logical bytes in full 64 KiB chunks.
        let c = chunks(&alloc::vec![50; 20_000]);
        assert_eq!(c.iter().sum::<usize>(), 20_000 * 58);
        assert!(c.iter().rev().skip(1).all(|&l| l == CHUNK_MAX));
    }

    #[test]
    fn large_buffers_go_direct_and_small_tails_are_gathered() {
        assert_eq!(chunks(&[CHUNK_MAX + 1]), [8, CHUNK_MAX, 1]);
        assert_eq!(chunks(&[100 * 1024]), [8, CHUNK_MAX, 100 * 1024 - CHUNK_MAX]);
        assert_eq!(chunks(&[DIRECT_MIN - 1]), [DIRECT_MIN + 7]);
        assert_eq!(chunks(&[0, 0]), [16]);
    }
}
