//! The block table of a tree checkpoint (manifest version 4): the XXH3-64 hash of every
//! 4 KiB block of every file's data, stored as the checkpoint's last frame. An incremental
//! checkpoint compares a file's blocks with its parent's table and stores only those that
//! differ; restore of a chain checks that each link holds the blocks its child relies on.
//!
//! Block `j` of a file is its bytes `j*4096 .. min((j+1)*4096, size)`, holes read as
//! zeros; a file's blocks are those that meet its content ranges
//! ([`Entry::content_ranges`]), in ascending order. Layout: `docs/manifest.md`, section 13.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::manifest::{BLOCK_SIZE, Entry, Kind, Manifest, ManifestError};
use ckpt_frame_core::{checksum, checksum_seeded};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The table's magic, `"CKBT"`.
pub const TABLE_MAGIC: [u8; 4] = *b"CKBT";
const TABLE_VERSION: u16 = 1;
const TABLE_HEADER_LEN: usize = 16;

/// The runs of consecutive block numbers of `e`, as (first block, count).
pub fn block_runs(e: &Entry) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (offset, len) in e.content_ranges() {
        if len == 0 {
            continue;
        }
        let first = offset / BLOCK_SIZE;
        let last = (offset + (len - 1)) / BLOCK_SIZE;
        match runs.last_mut() {
            Some((f, n)) if *f + *n > first => *n = (last + 1).saturating_sub(*f),
            Some((f, n)) if *f + *n == first => *n += last - first + 1,
            _ => runs.push((first, last - first + 1)),
        }
    }
    runs
}

/// The parts of `ranges` (ascending, not touching) inside `start..end`, as (offset,
/// length). A binary search finds the first, so asking this for every block of a file with
/// many extents costs a few steps per block, not a walk of them all.
pub(crate) fn clipped(
    ranges: &[(u64, u64)],
    start: u64,
    end: u64,
) -> impl Iterator<Item = (u64, u64)> + '_ {
    let first = ranges.partition_point(|&(o, l)| o + l <= start);
    ranges.get(first..).unwrap_or_default().iter().take_while(move |&&(o, _)| o < end).filter_map(
        move |&(o, l)| {
            let (s, t) = (o.max(start), (o + l).min(end));
            (s < t).then_some((s, t - s))
        },
    )
}

/// Appends [`clipped`]`(ranges, start, end)` to `out`, merging with its last range where
/// they meet. `start` must not be below the end of `out`'s last range.
pub(crate) fn append_clipped(
    out: &mut Vec<(u64, u64)>,
    ranges: &[(u64, u64)],
    start: u64,
    end: u64,
) {
    for (s, l) in clipped(ranges, start, end) {
        match out.last_mut() {
            Some((so, sl)) if *so + *sl == s => *sl += l,
            _ => out.push((s, l)),
        }
    }
}

/// How many blocks `e` has, `None` if the count overflows (a hostile manifest).
fn block_count(e: &Entry) -> Option<u64> {
    block_runs(e).iter().try_fold(0u64, |total, &(_, n)| total.checked_add(n))
}

/// The bytes of block `j` of a file of `size` bytes.
pub fn block_range(size: u64, j: u64) -> (u64, u64) {
    let start = j.saturating_mul(BLOCK_SIZE);
    (start, start.saturating_add(BLOCK_SIZE).min(size))
}

/// The hashes of every file's blocks, by entry (empty for entries without data).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockTable {
    /// For entry `i`, the hash of each of its blocks in order.
    pub hashes: Vec<Vec<u64>>,
    /// For entry `i`, its runs of block numbers ([`block_runs`]).
    runs: Vec<Vec<(u64, u64)>>,
}

impl BlockTable {
    /// The table's bytes: `"CKBT"`, version 1 (`u16le`), 2 reserved bytes, the block size
    /// (`u32le`), 4 reserved bytes, then every hash as `u64le`, entries in manifest order.
    pub fn encode(&self) -> Vec<u8> {
        let count: usize = self.hashes.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(TABLE_HEADER_LEN + 8 * count);
        out.extend_from_slice(&TABLE_MAGIC);
        out.extend_from_slice(&TABLE_VERSION.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&u32::try_from(BLOCK_SIZE).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for h in self.hashes.iter().flatten() {
            out.extend_from_slice(&h.to_le_bytes());
        }
        out
    }

    /// Decodes the table of `manifest`: the hash count must be exactly the manifest's block
    /// count, checked before anything is allocated by it.
    ///
    /// # Errors
    /// [`ManifestError::BadField`] (entry 0, field `"block table"`) for a table of another
    /// length, magic, version or block size.
    pub fn decode(bytes: &[u8], manifest: &Manifest) -> Result<Self, ManifestError> {
        let bad = |field| ManifestError::BadField { entry: 0, field };
        let header = bytes.get(..TABLE_HEADER_LEN).ok_or(bad("block table (too short)"))?;
        let expected_header = {
            let mut h = TABLE_MAGIC.to_vec();
            h.extend_from_slice(&TABLE_VERSION.to_le_bytes());
            h.extend_from_slice(&[0, 0]);
            h.extend_from_slice(&u32::try_from(BLOCK_SIZE).unwrap_or(0).to_le_bytes());
            h.extend_from_slice(&[0; 4]);
            h
        };
        if header != expected_header.as_slice() {
            return Err(bad("block table header (magic, version or block size)"));
        }
        let body = bytes.get(TABLE_HEADER_LEN..).unwrap_or_default();
        let mut total = 0u64;
        for e in &manifest.entries {
            total = block_count(e)
                .and_then(|n| total.checked_add(n))
                .ok_or(bad("block table (block count overflows)"))?;
        }
        if total.checked_mul(8) != Some(body.len() as u64) {
            return Err(bad("block table (length differs from the manifest's blocks)"));
        }
        let mut words = body.chunks_exact(8).map(|w| {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            u64::from_le_bytes(b)
        });
        let mut table = Self::default();
        for e in &manifest.entries {
            let runs = block_runs(e);
            let n: u64 = runs.iter().map(|r| r.1).sum();
            table.hashes.push(words.by_ref().take(usize::try_from(n).unwrap_or(0)).collect());
            table.runs.push(runs);
        }
        Ok(table)
    }

    /// Where block `j` of entry `i` sits in `hashes[i]`.
    pub fn position(&self, i: usize, j: u64) -> Option<usize> {
        position(self.runs.get(i)?, j)
    }

    /// The hash of block `j` of entry `i`, if the entry has that block.
    pub fn hash(&self, i: usize, j: u64) -> Option<u64> {
        let at = self.position(i, j)?;
        self.hashes.get(i)?.get(at).copied()
    }

    /// The block numbers of entry `i`, in order.
    pub fn blocks(&self, i: usize) -> impl Iterator<Item = u64> + '_ {
        self.runs.get(i).into_iter().flatten().flat_map(|&(first, n)| first..first + n)
    }
}

fn position(runs: &[(u64, u64)], j: u64) -> Option<usize> {
    let mut before = 0u64;
    for &(first, n) in runs {
        if j < first {
            return None;
        }
        if j < first + n {
            return usize::try_from(before + (j - first)).ok();
        }
        before += n;
    }
    None
}

/// What a checkpoint holds, whichever checkpoint stores it: XXH3-64 of its block table
/// seeded with XXH3-64 of its manifest without parent or stored ranges
/// ([`Manifest::encode_state`]). A child records its parent's; folding or rebasing keeps it.
pub fn state_digest(manifest: &Manifest, table: &[u8]) -> u64 {
    checksum_seeded(table, checksum(&manifest.encode_state()))
}

/// A block whose first bytes were fed but not yet the rest, carried from one fragment to
/// the next on one thread (see [`BlockHasher::feed`]).
#[derive(Debug, Default)]
pub struct Pending {
    /// Entry, block number, file offset of `bytes[0]`.
    at: Option<(usize, u64, u64)>,
    bytes: Vec<u8>,
}

/// Pieces of blocks met in parts, by (entry, block): (offset in the block, bytes).
type BlockParts = HashMap<(usize, u64), Vec<(u64, Vec<u8>)>>;

/// Computes a [`BlockTable`] from the file bytes as they are read, from any number of
/// threads, in any order: a block met whole is hashed at once; the pieces of a block cut
/// by a frame, a hole or a thread's share are kept (at most a block each) and joined at
/// [`BlockHasher::finish`].
#[derive(Debug)]
pub struct BlockHasher {
    sizes: Vec<u64>,
    runs: Vec<Vec<(u64, u64)>>,
    slots: Vec<Vec<AtomicU64>>,
    parts: Mutex<BlockParts>,
}

impl BlockHasher {
    /// A hasher for the blocks of `manifest`'s files (a manifest this process built: the
    /// slots are allocated by its sizes).
    pub fn new(manifest: &Manifest) -> Self {
        let runs: Vec<Vec<(u64, u64)>> = manifest.entries.iter().map(block_runs).collect();
        let slots = runs
            .iter()
            .map(|r| {
                let n: u64 = r.iter().map(|x| x.1).sum();
                (0..n).map(|_| AtomicU64::new(0)).collect()
            })
            .collect();
        let sizes = manifest.entries.iter().map(|e| e.size).collect();
        Self { sizes, runs, slots, parts: Mutex::new(HashMap::new()) }
    }

    fn store(&self, entry: usize, j: u64, hash: u64) {
        let slot = self
            .runs
            .get(entry)
            .and_then(|r| position(r, j))
            .and_then(|at| self.slots.get(entry)?.get(at));
        if let Some(slot) = slot {
            slot.store(hash, Ordering::Relaxed);
        }
    }

    /// The hash of block `j` of `entry` computed so far (0 before it is whole; a block fed
    /// in pieces is joined only by [`BlockHasher::finish`]).
    pub fn hash(&self, entry: usize, j: u64) -> Option<u64> {
        let at = position(self.runs.get(entry)?, j)?;
        Some(self.slots.get(entry)?.get(at)?.load(Ordering::Relaxed))
    }

    /// Feeds `bytes`, the file bytes of `entry` at `offset`. `pending` carries a block cut
    /// at the end of `bytes` to the next call on this thread; [`BlockHasher::flush`] it
    /// when the thread is done.
    pub fn feed(&self, pending: &mut Pending, entry: usize, offset: u64, mut bytes: &[u8]) {
        let size = self.sizes.get(entry).copied().unwrap_or(0);
        let mut at = offset;
        if let Some((e, j, start)) = pending.at {
            let continues = e == entry && start + pending.bytes.len() as u64 == offset;
            if continues {
                let (_, end) = block_range(size, j);
                let take = usize::try_from(end - at).unwrap_or(usize::MAX).min(bytes.len());
                let (now, rest) = bytes.split_at(take);
                pending.bytes.extend_from_slice(now);
                bytes = rest;
                at += take as u64;
                if start == block_range(size, j).0 && at == end {
                    self.store(entry, j, checksum(&pending.bytes));
                    pending.at = None;
                    pending.bytes.clear();
                }
            }
            if pending.at.is_some() && (!continues || !bytes.is_empty()) {
                self.flush(pending);
            }
        }
        while !bytes.is_empty() {
            let j = at / BLOCK_SIZE;
            let (start, end) = block_range(size, j);
            let want = usize::try_from(end.saturating_sub(at)).unwrap_or(usize::MAX);
            if want == 0 {
                // Bytes past the file's end (cannot happen for a manifest's own ranges).
                return;
            }
            let take = want.min(bytes.len());
            let (now, rest) = bytes.split_at(take);
            if at == start && take == want {
                self.store(entry, j, checksum(now));
            } else {
                pending.at = Some((entry, j, at));
                pending.bytes.clear();
                pending.bytes.extend_from_slice(now);
                if !rest.is_empty() {
                    self.flush(pending);
                }
            }
            bytes = rest;
            at += take as u64;
        }
    }

    /// Sets aside the block `pending` holds, to be joined with its other pieces.
    pub fn flush(&self, pending: &mut Pending) {
        if let Some((entry, j, start)) = pending.at.take() {
            let offset_in_block = start - j * BLOCK_SIZE;
            self.parts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry((entry, j))
                .or_default()
                .push((offset_in_block, std::mem::take(&mut pending.bytes)));
        }
    }

    /// The table: blocks fed in pieces are joined (holes are zeros) and hashed.
    pub fn finish(&self) -> BlockTable {
        let parts = std::mem::take(
            &mut *self.parts.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for ((entry, j), pieces) in parts {
            let size = self.sizes.get(entry).copied().unwrap_or(0);
            let (start, end) = block_range(size, j);
            let mut block = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
            for (at, bytes) in pieces {
                let at = usize::try_from(at).unwrap_or(usize::MAX);
                if let Some(dst) = block.get_mut(at..at.saturating_add(bytes.len())) {
                    dst.copy_from_slice(&bytes);
                }
            }
            let slot = self
                .runs
                .get(entry)
                .and_then(|r| position(r, j))
                .and_then(|at| self.slots.get(entry)?.get(at));
            if let Some(slot) = slot {
                slot.store(checksum(&block), Ordering::Relaxed);
            }
        }
        let hashes = self
            .slots
            .iter()
            .map(|s| s.iter().map(|h| h.load(Ordering::Relaxed)).collect())
            .collect();
        BlockTable { hashes, runs: self.runs.clone() }
    }
}

/// Checks a checkpoint's block table against the bytes it stores: reads every data frame
/// once from `source` (each chunk checked as usual) and hashes every block the checkpoint
/// stores. Blocks it inherits are its parent's to check.
///
/// # Errors
/// [`TableMismatch`](crate::TreeError::TableMismatch) naming the first block whose bytes
/// do not hash to the table's value; [`Format`](crate::TreeError::Format) or
/// [`Layout`](crate::TreeError::Layout) for damaged frames.
pub fn check_table<S: ckpt_frame_core::Source>(
    source: S,
    manifest: &Manifest,
    table: &BlockTable,
) -> Result<(), crate::TreeError> {
    use crate::TreeError;
    let hasher = BlockHasher::new(manifest);
    let mut reader = ckpt_frame_core::Reader::open(source)?;
    let mut pending = Pending::default();
    for (k, pieces) in (1u64..).zip(manifest.data_frames_iter()) {
        let mut frame = reader.open_frame(k)?;
        for p in &pieces {
            let read = frame.read_each(|at, bytes: &[u8]| -> Result<(), TreeError> {
                hasher.feed(&mut pending, p.entry, p.offset + at, bytes);
                Ok(())
            })?;
            if read != Some(p.len) {
                return Err(TreeError::Layout {
                    what: "a data buffer's length differs from the manifest's",
                });
            }
        }
        frame.close()?;
    }
    hasher.flush(&mut pending);
    let computed = hasher.finish();
    for (i, e) in manifest.entries.iter().enumerate() {
        for j in table.blocks(i) {
            if crate::chain::stores_block(e, j)? && computed.hash(i, j) != table.hash(i, j) {
                let path = String::from_utf8_lossy(&e.path).into_owned();
                return Err(TreeError::TableMismatch { path, block: j });
            }
        }
    }
    Ok(())
}

/// For each entry of `child`, the ranges to store when its parent holds `parent` with
/// `parent_table`: every block whose length or hash differs from the parent's file at the
/// same path (or that the parent lacks). `None` for an entry stored whole; files the
/// parent does not hold as regular files are stored whole.
pub fn stored_ranges(
    child: &Manifest,
    table: &BlockTable,
    parent: &Manifest,
    parent_table: &BlockTable,
) -> Vec<Option<Vec<(u64, u64)>>> {
    let by_path: HashMap<&[u8], usize> = parent
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == Kind::File)
        .map(|(i, e)| (e.path.as_slice(), i))
        .collect();
    child
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if e.kind != Kind::File {
                return None;
            }
            let p = *by_path.get(e.path.as_slice())?;
            let psize = parent.entries.get(p).map_or(0, |pe| pe.size);
            let content = e.content_ranges();
            let mut stored: Vec<(u64, u64)> = Vec::new();
            for j in table.blocks(i) {
                let same = block_range(e.size, j) == block_range(psize, j)
                    && table.hash(i, j).is_some()
                    && table.hash(i, j) == parent_table.hash(p, j);
                if same {
                    continue;
                }
                let (bs, be) = block_range(e.size, j);
                append_clipped(&mut stored, &content, bs, be);
            }
            Some(stored)
        })
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::many_single_char_names
)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, extents: Option<Vec<(u64, u64)>>) -> Entry {
        Entry { kind: Kind::File, path: path.into(), size, extents, ..Entry::default() }
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    /// The table computed directly: each block's bytes, holes as zeros.
    fn reference(m: &Manifest, data: &[Vec<u8>]) -> Vec<Vec<u64>> {
        m.entries
            .iter()
            .zip(data)
            .map(|(e, d)| {
                block_runs(e)
                    .iter()
                    .flat_map(|&(f, n)| f..f + n)
                    .map(|j| {
                        let (s, t) = block_range(e.size, j);
                        let mut block = vec![0u8; (t - s) as usize];
                        for (o, l) in e.content_ranges() {
                            let (a, b) = (o.max(s), (o + l).min(t));
                            if a < b {
                                block[(a - s) as usize..(b - s) as usize]
                                    .copy_from_slice(&d[a as usize..b as usize]);
                            }
                        }
                        checksum(&block)
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn fragments_in_any_cut_and_order_give_the_reference_table() {
        let m = Manifest {
            frame_size: 1000,
            entries: vec![
                file("a", 10_000, None),
                file("s", 40_000, Some(vec![(100, 5000), (9000, 100), (12_288, 8192)])),
                file("tiny", 7, None),
                Entry { kind: Kind::Dir, path: b"d".to_vec(), ..Entry::default() },
            ],
            parent: None,
        };
        let data: Vec<Vec<u8>> = m
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| noise(e.size as usize, i as u64 + 3))
            .collect();
        let expected = reference(&m, &data);
        for cut in [1usize, 7, 999, 4096, 5000, 1 << 20] {
            let h = BlockHasher::new(&m);
            // Frames of `cut` stream bytes fed on two "threads" taking turns.
            let mut pendings = [Pending::default(), Pending::default()];
            let mut k = 0;
            for (i, e) in m.entries.iter().enumerate() {
                for (o, l) in e.content_ranges() {
                    let mut at = o;
                    while at < o + l {
                        let n = (cut as u64).min(o + l - at);
                        h.feed(
                            &mut pendings[k % 2],
                            i,
                            at,
                            &data[i][at as usize..(at + n) as usize],
                        );
                        at += n;
                        k += usize::from(n % 3 == 0);
                    }
                }
            }
            for p in &mut pendings {
                h.flush(p);
            }
            let t = h.finish();
            assert_eq!(t.hashes, expected, "cut {cut}");
            let back = BlockTable::decode(&t.encode(), &m).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn a_table_of_another_length_or_header_is_refused() {
        let m = Manifest { frame_size: 10, entries: vec![file("a", 9000, None)], parent: None };
        let t = BlockTable { hashes: vec![vec![1, 2, 3]], runs: vec![block_runs(&m.entries[0])] };
        let bytes = t.encode();
        assert!(BlockTable::decode(&bytes, &m).is_ok());
        assert!(BlockTable::decode(&bytes[..bytes.len() - 8], &m).is_err());
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(BlockTable::decode(&longer, &m).is_err());
        for i in 0..16 {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(BlockTable::decode(&b, &m).is_err(), "header byte {i}");
        }
        // A manifest claiming 2^60 blocks against a small table: refused, nothing allocated.
        let huge =
            Manifest { frame_size: 10, entries: vec![file("a", 1 << 62, None)], parent: None };
        assert!(BlockTable::decode(&bytes, &huge).is_err());
    }

    #[test]
    fn only_changed_blocks_are_stored() {
        let mut m =
            Manifest { frame_size: 10, entries: vec![file("a", 20_000, None)], parent: None };
        let old = noise(20_000, 9);
        let mut new = old.clone();
        new[5000] ^= 1; // block 1
        new[19_999] ^= 1; // block 4, the short last one
        let table_of = |m: &Manifest, d: &[u8]| {
            let h = BlockHasher::new(m);
            let mut p = Pending::default();
            h.feed(&mut p, 0, 0, d);
            h.flush(&mut p);
            h.finish()
        };
        let (pt, ct) = (table_of(&m, &old), table_of(&m, &new));
        let stored = stored_ranges(&m, &ct, &m, &pt);
        assert_eq!(stored, vec![Some(vec![(4096, 4096), (16_384, 20_000 - 16_384)])]);
        // The file grew: its old short last block differs, the new ones are stored.
        m.entries[0].size = 30_000;
        let mut grown = old.clone();
        grown.resize(30_000, 5);
        let gt = table_of(&m, &grown);
        let parent =
            Manifest { frame_size: 10, entries: vec![file("a", 20_000, None)], parent: None };
        let stored = stored_ranges(&m, &gt, &parent, &pt);
        assert_eq!(stored, vec![Some(vec![(16_384, 30_000 - 16_384)])]);
    }
}
