//! Two MUSTs of `docs/format.md` that only crafted input can break, since the writer never
//! does: an LZ4 match offset of 0 (section 6.3) and a non-empty buffer whose length is in
//! the table of a chunk before the one holding its first byte (section 6.2). Each input is
//! the crate's writer output, taken apart, patched and put back together with every check
//! value recomputed (so only the broken rule can catch it); the reader must refuse it with
//! an error naming the frame and the chunk, without panicking and without allocating from
//! a claimed length.
// Offsets and lengths of these in-memory test checkpoints are far below u32::MAX.
#![allow(clippy::cast_possible_truncation)]

use ckpt_frame_core::scan::{Depth, RegionKind, scan};
use ckpt_frame_core::{CheckpointId, Error, Reader, SliceSource, Style, VecSink, Writer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

// ---------------------------------------------------------------------------------------------
// The largest single allocation of the current thread, to show that a claimed length is
// refused before memory of that size is asked for.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, which upholds
// the `GlobalAlloc` contract; the bookkeeping only touches a const-initialised thread-local
// `Cell`, which never allocates.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by its contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

/// More than a reader needs (its buffers for one chunk and the LZ4 ring), far less than the
/// lengths the crafted tables claim.
const MEMORY_BOUND: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Taking a checkpoint apart and putting it back together with fresh check values.

const ID: CheckpointId = CheckpointId::from_bytes(*b"spec-musts-test!");

#[derive(Debug, Clone)]
struct Chunk {
    logical_len: u32,
    stored: Vec<u8>,
    starts: u32,
    table: Vec<u8>,
    /// XXH3 of the logical data: kept from the writer, or set by the test.
    checksum: u64,
}

#[derive(Debug, Clone)]
struct Frame {
    style: u8,
    chunks: Vec<Chunk>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The frames of a checkpoint the writer wrote (checked by a streaming read first).
fn take_apart(bytes: &[u8]) -> Vec<Frame> {
    let mut r = Reader::new(SliceSource::new(bytes));
    while let Some(mut f) = r.next_frame().unwrap() {
        while f.read_to_vec().unwrap().is_some() {}
        f.close().unwrap();
    }
    r.finish().unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while bytes[at..].starts_with(b"CKFR") {
        let style = bytes[at + 6];
        at += 40;
        let mut chunks = Vec::new();
        while !bytes[at..].starts_with(b"CKFE") {
            let (logical_len, stored_len) = (u32_at(bytes, at), u32_at(bytes, at + 4) as usize);
            let (starts, table_len) = (u32_at(bytes, at + 8), u32_at(bytes, at + 12) as usize);
            let checksum = u64_at(bytes, at + 16);
            let stored = bytes[at + 32..at + 32 + stored_len].to_vec();
            let table = bytes[at + 32 + stored_len..at + 32 + stored_len + table_len].to_vec();
            chunks.push(Chunk { logical_len, stored, starts, table, checksum });
            at += 32 + stored_len + table_len;
        }
        at += 56;
        frames.push(Frame { style, chunks });
    }
    frames
}

/// The checkpoint of `frames`, every check value computed afresh from the bytes it covers:
/// each chunk's stored check, each footer's counts, digest and check, the index and the tail.
/// A chunk's `checksum` is taken as given (for RAW the caller keeps it equal to XXH3 of the
/// data; for LZ4 it is XXH3 of what the block decodes to).
fn put_together(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for (index, f) in (0u64..).zip(frames) {
        let offset = out.len() as u64;
        let mut header = Vec::new();
        header.extend_from_slice(b"CKFR");
        header.extend_from_slice(&1u16.to_le_bytes());
        header.extend_from_slice(&[f.style, 0]);
        header.extend_from_slice(&index.to_le_bytes());
        header.extend_from_slice(&ID.to_bytes());
        let header_check = xxh3_64(&header);
        header.extend_from_slice(&header_check.to_le_bytes());
        out.extend_from_slice(&header);
        let (mut buffers, mut user, mut chunk_bytes, mut digest) = (0u64, 0u64, 0u64, 0u64);
        for c in &f.chunks {
            let mut h = Vec::new();
            for v in [c.logical_len, c.stored.len() as u32, c.starts, c.table.len() as u32] {
                h.extend_from_slice(&v.to_le_bytes());
            }
            h.extend_from_slice(&c.checksum.to_le_bytes());
            let mut covered = h.clone();
            if f.style == Style::Lz4.to_byte() {
                covered.extend_from_slice(&c.stored);
            }
            covered.extend_from_slice(&c.table);
            h.extend_from_slice(&xxh3_64(&covered).to_le_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(&c.stored);
            out.extend_from_slice(&c.table);
            buffers += u64::from(c.starts);
            user += u64::from(c.logical_len);
            chunk_bytes += (32 + c.stored.len() + c.table.len()) as u64;
            digest = xxh3_64_with_seed(&c.checksum.to_le_bytes(), digest);
        }
        let mut footer = Vec::new();
        footer.extend_from_slice(b"CKFE");
        footer.extend_from_slice(&0u32.to_le_bytes());
        for v in [buffers, user, f.chunks.len() as u64, chunk_bytes, digest] {
            footer.extend_from_slice(&v.to_le_bytes());
        }
        let footer_check = xxh3_64_with_seed(&footer, header_check);
        footer.extend_from_slice(&footer_check.to_le_bytes());
        out.extend_from_slice(&footer);
        let frame_len = out.len() as u64 - offset;
        let mut e = Vec::new();
        for v in [offset, frame_len, buffers, user] {
            e.extend_from_slice(&v.to_le_bytes());
        }
        e.extend_from_slice(&[f.style, 0, 0, 0, 0, 0, 0, 0]);
        entries.extend_from_slice(&e);
    }
    let index_offset = out.len() as u64;
    let mut index = b"CKIX\0\0\0\0".to_vec();
    index.extend_from_slice(&entries);
    out.extend_from_slice(&index);
    let mut tail = Vec::new();
    tail.extend_from_slice(&index_offset.to_le_bytes());
    tail.extend_from_slice(&(frames.len() as u64).to_le_bytes());
    tail.extend_from_slice(&ID.to_bytes());
    tail.extend_from_slice(&xxh3_64(&index).to_le_bytes());
    tail.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    let tail_check = xxh3_64(&tail);
    tail.extend_from_slice(&tail_check.to_le_bytes());
    tail.extend_from_slice(b"CKPTEND1");
    out.extend_from_slice(&tail);
    out
}

fn write(style: Style, buffers: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), ID);
    let mut f = w.open_frame(style).unwrap();
    for b in buffers {
        f.add(b).unwrap();
    }
    f.close().unwrap();
    w.finish().unwrap();
    w.into_sink().into_inner()
}

/// Reads every buffer of every frame, streaming and indexed, with `read_to_vec` and with
/// `read_into` (buffers of the lengths in `expect`); returns each way's first error.
fn read_all(bytes: &[u8], expect: &[usize]) -> Vec<(&'static str, Result<(), Error>)> {
    let to_vec = |r: &mut Reader<SliceSource<'_>>, indexed: bool| -> Result<(), Error> {
        let mut f = if indexed { r.open_frame(0)? } else { r.next_frame()?.expect("a frame") };
        while f.read_to_vec()?.is_some() {}
        f.close()?;
        r.finish().map(drop)
    };
    let into = |r: &mut Reader<SliceSource<'_>>, indexed: bool| -> Result<(), Error> {
        let mut f = if indexed { r.open_frame(0)? } else { r.next_frame()?.expect("a frame") };
        for &len in expect {
            f.read_into(&mut vec![0u8; len])?;
        }
        if let Some(len) = f.next_len()? {
            panic!("a buffer of {len} bytes the test does not expect");
        }
        f.close()?;
        r.finish().map(drop)
    };
    let streaming = || Reader::new(SliceSource::new(bytes));
    let indexed = || Reader::open(SliceSource::new(bytes));
    vec![
        ("streaming read_to_vec", to_vec(&mut streaming(), false)),
        ("indexed read_to_vec", indexed().and_then(|mut r| to_vec(&mut r, true))),
        ("streaming read_into", into(&mut streaming(), false)),
        ("indexed read_into", indexed().and_then(|mut r| into(&mut r, true))),
    ]
}

/// Every way of reading `bytes` fails with corruption of frame 0 at chunk offset `at`
/// whose description contains `says`, within [`MEMORY_BOUND`].
fn assert_refused(bytes: &[u8], expect: &[usize], at: u64, says: &str) {
    let (results, largest) = largest_allocation(|| read_all(bytes, expect));
    for (way, result) in results {
        match result {
            Err(Error::Corrupt { frame: Some(0), offset, what }) => {
                assert_eq!(offset, at, "{way}: {what}");
                assert!(what.contains(says), "{way}: {what}");
                let shown = Error::Corrupt { frame: Some(0), offset, what }.to_string();
                assert!(shown.contains(&at.to_string()), "{way}: {shown}");
            }
            other => panic!("{way}: expected corruption at {at} ({says}), got {other:?}"),
        }
    }
    assert!(largest < MEMORY_BOUND, "largest allocation {largest} bytes");
}

/// Checkpoint offset of chunk `k` of the only frame.
fn chunk_offset(frames: &[Frame], k: usize) -> u64 {
    40 + frames[0].chunks[..k].iter().map(|c| 32 + c.stored.len() + c.table.len()).sum::<usize>()
        as u64
}

#[test]
fn taking_apart_and_putting_together_gives_the_writer_s_bytes() {
    for style in [Style::Raw, Style::Lz4] {
        let bytes = write(style, &[vec![7; 3], vec![], vec![1; 100_000], vec![2; 5]]);
        assert_eq!(put_together(&take_apart(&bytes)), bytes, "{style:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 6.3: a match offset of 0 is invalid.

/// Where the first match offset of an LZ4 block is: after the first token's literals.
fn first_match_offset(block: &[u8]) -> usize {
    let mut at = 1;
    let mut literals = usize::from(block[0] >> 4);
    if literals == 15 {
        while block[at] == 255 {
            literals += 255;
            at += 1;
        }
        literals += usize::from(block[at]);
        at += 1;
    }
    at += literals;
    assert!(at + 2 < block.len(), "the block has no match");
    at
}

// Crafted from liblz4's exact output for the input; lz4_flex encodes it otherwise.
#[cfg(feature = "lz4")]
#[test]
fn lz4_match_offset_zero_is_refused() {
    // The example of section 10.3: 32 x "a" is `1f 61 01 00 07 50 61 61 61 61 61`, one
    // literal, a match of 26 at offset 1, five literals.
    let bytes = write(Style::Lz4, &[vec![b'a'; 32]]);
    let mut frames = take_apart(&bytes);
    let c = &mut frames[0].chunks[0];
    assert_eq!(c.stored, [0x1f, 0x61, 0x01, 0x00, 0x07, 0x50, 0x61, 0x61, 0x61, 0x61, 0x61]);
    c.stored[2] = 0;
    // liblz4 decodes a match at offset 0 as zeros: the checksum the damaged block would
    // match if the offset were not refused.
    let mut zeros = vec![b'a'];
    zeros.extend_from_slice(&[0; 26]);
    zeros.extend_from_slice(&[b'a'; 5]);
    c.checksum = xxh3_64(&zeros);
    let crafted = put_together(&frames);
    assert_refused(&crafted, &[32], 40, "offset is 0");
    // The scanner's deeper level decodes too, and reports the chunk.
    let report = scan(&mut SliceSource::new(&crafted), Depth::Decoded).unwrap();
    let bad: Vec<_> = report.bad_regions().map(|r| (r.kind, r.offset)).collect();
    assert_eq!(bad, [(RegionKind::Chunk, 40)]);
}

#[test]
fn lz4_match_offset_zero_in_a_linked_chunk_is_refused_on_every_path() {
    // A buffer of 150,000 bytes in three direct chunks, then one of 100 bytes in a gathered
    // chunk. Read with read_into, the direct chunks after the first are decoded straight
    // into the caller's buffer (with the buffer as history); with read_to_vec, every chunk
    // goes through the decoder's ring.
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8 ^ (i / 7000) as u8).collect();
    let bytes = write(Style::Lz4, &[data, vec![9; 100]]);
    let frames = take_apart(&bytes);
    assert!(frames[0].chunks.len() >= 3, "{} chunks", frames[0].chunks.len());
    for k in 1..frames[0].chunks.len() {
        // Every chunk after the first: two direct chunks and one gathered.
        let mut frames = frames.clone();
        let c = &mut frames[0].chunks[k];
        let at = first_match_offset(&c.stored);
        assert_ne!(c.stored[at..at + 2], [0, 0]);
        c.stored[at..at + 2].copy_from_slice(&[0, 0]);
        let crafted = put_together(&frames);
        assert_refused(&crafted, &[150_000, 100], chunk_offset(&frames, k), "offset is 0");
    }
}

// ---------------------------------------------------------------------------------------------
// 6.2: a non-empty buffer's length is in the table of the chunk holding its first byte.

#[test]
fn a_length_in_the_table_of_a_chunk_before_the_buffer_is_refused() {
    for style in [Style::Raw, Style::Lz4] {
        // Buffers of 3 and 20,000 bytes: chunk 0 holds the 3 bytes and the length 3, chunk
        // 1 (a direct chunk) the 20,000 bytes and their length. Move that length to the end
        // of chunk 0's table: the buffer would start where chunk 0's data ran out.
        let big = vec![5u8; 20_000];
        let bytes = write(style, &[vec![7; 3], big.clone()]);
        let mut frames = take_apart(&bytes);
        let chunks = &mut frames[0].chunks;
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            (chunks[0].table.as_slice(), chunks[1].table.as_slice()),
            (&[3, 1][..], &[0xa0, 0x9c, 0x01, 1][..])
        );
        chunks[0].table.extend_from_slice(&[0xa0, 0x9c, 0x01, 1]);
        chunks[0].starts = 2;
        chunks[1].table.clear();
        chunks[1].starts = 0;
        let crafted = put_together(&frames);
        assert_refused(&crafted, &[3, 20_000], 40, "non-empty buffer's length");

        // The same with a length no chunk could back, 2^40: refused before any memory
        // is sized by it.
        frames[0].chunks[0].table = vec![3, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1];
        let crafted = put_together(&frames);
        assert_refused(&crafted, &[3], 40, "non-empty buffer's length");

        // An empty buffer at that boundary may have its length in either table (6.2).
        let bytes = write(style, &[vec![7; 3], vec![], big.clone()]);
        let mut frames = take_apart(&bytes);
        let chunks = &mut frames[0].chunks;
        assert_eq!(chunks[0].table, [3, 1, 0, 1]);
        chunks[0].table.truncate(2);
        chunks[0].starts = 1;
        chunks[1].table.splice(0..0, [0, 1]);
        chunks[1].starts = 2;
        let moved = put_together(&frames);
        for (way, result) in read_all(&moved, &[3, 0, 20_000]) {
            result.unwrap_or_else(|e| panic!("{style:?}, {way}: {e}"));
        }
    }
}

#[test]
fn a_length_in_a_chunk_without_data_before_the_buffer_is_refused() {
    for style in [Style::Raw, Style::Lz4] {
        // One buffer of 5 bytes, its chunk split in two: chunk 0 with the length and no
        // data, chunk 1 with the data and no length.
        let bytes = write(style, &[vec![1, 2, 3, 4, 5]]);
        let mut frames = take_apart(&bytes);
        let whole = frames[0].chunks.remove(0);
        let lengths = Chunk {
            logical_len: 0,
            stored: Vec::new(),
            starts: whole.starts,
            table: whole.table.clone(),
            checksum: xxh3_64(b""),
        };
        let data = Chunk { starts: 0, table: Vec::new(), ..whole };
        frames[0].chunks = vec![lengths, data];
        let crafted = put_together(&frames);
        assert_refused(&crafted, &[5], 40, "non-empty buffer's length");
    }
}
