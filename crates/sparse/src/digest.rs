//! Block digests for sync: both sides cut their file on the same grid (from offset 0) and
//! digest each block, reading only data extents.
//!
//! A block that is all zeros on the sending side, and a block that is entirely a hole on
//! the receiving side, get [`HOLE`]; every other block gets its XXH3-64 (never [`HOLE`] or
//! [`ABSENT`]). So a source's zero block and a target's hole match, while a target block
//! that holds allocated zeros does not: the sender then tells the receiver to punch it, and
//! the target's layout follows the source's data. Blocks past the end of the receiver's
//! file are [`ABSENT`].

use crate::BlockReader;
use crate::{Interval, Layout, SparseError, is_all_zero};
use std::fs::File;
use std::path::Path;

/// The digest of a block that is all zeros (sender) or entirely a hole (receiver).
pub const HOLE: u64 = 0;
/// The digest of a block past the end of the receiver's file.
pub const ABSENT: u64 = u64::MAX;

/// Which side is digesting, which decides what counts as [`HOLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Zero bytes are a hole, allocated or not.
    Sender,
    /// Only unallocated blocks are holes.
    Receiver,
}

fn content_digest(bytes: &[u8]) -> u64 {
    match xxhash_rust::xxh3::xxh3_64(bytes) {
        HOLE | ABSENT => 1,
        d => d,
    }
}

/// Digests of every `block`-byte block of `file` (whose data layout is `layout`), the
/// last one possibly short. Reads only blocks that hold data, 1 MiB at a time.
///
/// # Errors
/// [`SparseError::Io`] if a read fails.
pub fn block_digests(
    file: &File,
    path: &Path,
    layout: &Layout,
    block: u64,
    side: Side,
) -> Result<Vec<u64>, SparseError> {
    let mut reader = BlockReader::buffered(file, path)?;
    block_digests_with_progress(&mut reader, layout, block, side, &mut |_| {})
}

/// [`block_digests`] through `reader` (buffered or `O_DIRECT`), calling `progress(done)`
/// with the bytes of `layout`'s data digested so far (out of `layout.data.total_len()`)
/// after every read.
///
/// # Errors
/// As [`block_digests`].
pub fn block_digests_with_progress(
    reader: &mut BlockReader,
    layout: &Layout,
    block: u64,
    side: Side,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<u64>, SparseError> {
    let mut done = 0u64;
    let block = block.max(1);
    let count = layout.size.div_ceil(block);
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let per_read = (READ_BYTES / block).max(1);
    let mut first = 0u64;
    while first < count {
        let n = per_read.min(count - first);
        let span = Interval { start: first * block, end: ((first + n) * block).min(layout.size) };
        let data = layout.data.clip(span);
        if data.is_empty() {
            out.extend((0..n).map(|_| HOLE));
            first += n;
            continue;
        }
        // Read the whole span once (holes read as zeros) and digest block by block.
        let bytes = reader.read_at(span.start, usize::try_from(span.len()).unwrap_or(0))?;
        for (i, chunk) in bytes.chunks(usize::try_from(block).unwrap_or(usize::MAX)).enumerate() {
            let start = span.start + i as u64 * block;
            let this = Interval { start, end: start + chunk.len() as u64 };
            let hole = match side {
                Side::Sender => is_all_zero(chunk),
                Side::Receiver => data.clip(this).is_empty(),
            };
            out.push(if hole { HOLE } else { content_digest(chunk) });
        }
        done += data.total_len();
        progress(done);
        first += n;
    }
    Ok(out)
}

/// Digests of coarse blocks made of `per` consecutive sub-block digests: equal coarse
/// digests mean equal sub-block digests (up to a 64-bit hash collision).
pub fn coarse_digests(sub: &[u64], per: usize) -> Vec<u64> {
    sub.chunks(per.max(1))
        .map(|c| {
            if c.iter().all(|&d| d == HOLE) {
                return HOLE;
            }
            let bytes: Vec<u8> = c.iter().flat_map(|d| d.to_le_bytes()).collect();
            content_digest(&bytes)
        })
        .collect()
}

const READ_BYTES: u64 = 1 << 20;
