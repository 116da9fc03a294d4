//! Byte layout of every structure in a checkpoint (see `docs/format.md`).
//!
//! All integers are little-endian. Encoders write into fixed-size arrays; decoders take
//! fixed-size arrays, so no slice indexing can go out of bounds. Decoders only check what a
//! structure says about itself (magic, reserved fields, its own check value); callers check
//! what the structure says against its surroundings.
#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use crate::checksum::{checksum, checksum_seeded};

/// Format version of a checkpoint written without a parent.
pub const FORMAT_VERSION: u16 = 1;
/// Format version of a checkpoint written with a parent: the frame index carries a parent
/// record and chunks may refer to the parent's chunks (`docs/format.md`, section 12).
pub const FORMAT_VERSION_INHERITING: u16 = 2;
/// Length of the parent record that follows a version-2 index header.
pub const PARENT_RECORD_LEN: usize = 24;
/// Index header flag: a parent record follows the header.
pub const INDEX_FLAG_PARENT: u32 = 1;

fn known_version(version: u16) -> Result<u16, WireError> {
    if version == FORMAT_VERSION || version == FORMAT_VERSION_INHERITING {
        Ok(version)
    } else {
        Err(WireError::BadVersion(version))
    }
}
/// Largest number of logical bytes in one chunk.
pub const CHUNK_MAX: usize = 64 * 1024;

pub const FRAME_MAGIC: [u8; 4] = *b"CKFR";
pub const FOOTER_MAGIC: [u8; 4] = *b"CKFE";
pub const INDEX_MAGIC: [u8; 4] = *b"CKIX";
pub const TAIL_MAGIC: [u8; 8] = *b"CKPTEND1";

pub const FRAME_HEADER_LEN: usize = 40;
pub const CHUNK_HEADER_LEN: usize = 32;
pub const FRAME_FOOTER_LEN: usize = 56;
pub const INDEX_HEADER_LEN: usize = 8;
pub const INDEX_ENTRY_LEN: usize = 40;
pub const TAIL_LEN: usize = 64;

/// What went wrong decoding one structure; the caller adds frame and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    BadMagic,
    BadVersion(u16),
    NonZeroReserved,
    BadCheck { expected: u64, found: u64 },
    BadChunkLength,
}

/// A little cursor over a fixed array: reads never exceed the array because every
/// structure's field offsets are constants that sum to its length (checked in tests).
struct Fields<'a> {
    bytes: &'a [u8],
}

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some((head, rest)) = self.bytes.split_at_checked(N) {
            out.copy_from_slice(head);
            self.bytes = rest;
        }
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

struct Out<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl Out<'_> {
    fn put(&mut self, src: &[u8]) {
        if let Some(dst) = self.bytes.get_mut(self.at..self.at + src.len()) {
            dst.copy_from_slice(src);
        }
        self.at += src.len();
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
}

/// Frame header: opens every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub style: u8,
    pub index: u64,
    pub checkpoint_id: [u8; 16],
}

impl FrameHeader {
    /// The check value: XXH3-64 of the first 32 bytes.
    pub fn encode(&self) -> ([u8; FRAME_HEADER_LEN], u64) {
        let mut b = [0u8; FRAME_HEADER_LEN];
        let mut o = Out { bytes: &mut b, at: 0 };
        o.put(&FRAME_MAGIC);
        o.u16(self.version);
        o.put(&[self.style, 0]);
        o.u64(self.index);
        o.put(&self.checkpoint_id);
        let check = checksum(b.get(..32).unwrap_or_default());
        if let Some(dst) = b.get_mut(32..) {
            dst.copy_from_slice(&check.to_le_bytes());
        }
        (b, check)
    }

    /// Returns the header and its check value.
    pub fn decode(b: &[u8; FRAME_HEADER_LEN]) -> Result<(Self, u64), WireError> {
        let mut f = Fields { bytes: b };
        if f.take::<4>() != FRAME_MAGIC {
            return Err(WireError::BadMagic);
        }
        // The version decides how the rest is laid out and checked, so it comes first.
        let version = known_version(f.u16())?;
        let [style, flags] = f.take::<2>();
        let index = f.u64();
        let checkpoint_id = f.take::<16>();
        let stored_check = f.u64();
        let check = checksum(b.get(..32).unwrap_or_default());
        if stored_check != check {
            return Err(WireError::BadCheck { expected: stored_check, found: check });
        }
        if flags != 0 {
            return Err(WireError::NonZeroReserved);
        }
        Ok((Self { version, style, index, checkpoint_id }, check))
    }
}

impl FrameHeader {
    /// As [`decode`](Self::decode), for code that understands version 1 only (the scan,
    /// which knows nothing of chunks that refer to a parent).
    pub fn decode_v1(b: &[u8; FRAME_HEADER_LEN]) -> Result<(Self, u64), WireError> {
        Self::decode(b).and_then(|(h, c)| {
            if h.version == FORMAT_VERSION {
                Ok((h, c))
            } else {
                Err(WireError::BadVersion(h.version))
            }
        })
    }
}

/// Chunk header: precedes every chunk's stored data and length table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Bytes of buffer data in the chunk (0..=64 KiB; 0 only if buffers start in it).
    pub logical_len: u32,
    /// Bytes of stored data (RAW: `logical_len`; LZ4: one block, 0 if `logical_len` is 0).
    pub stored_len: u32,
    /// Buffers whose lengths the chunk's table holds (those starting in the chunk).
    pub starts: u32,
    /// Bytes of the length table, after the stored data.
    pub table_len: u32,
    /// XXH3-64 of the chunk's logical (decoded) data.
    pub checksum: u64,
    /// XXH3-64 of this header's first 24 bytes, (LZ4 only) the stored data, and the table:
    /// every chunk is checkable on its own, without decoding it or the chunks before it.
    /// (An LZ4 block can change without changing what it decodes to, so `checksum` alone
    /// cannot see all damage; RAW stored data is covered by `checksum`.)
    pub stored_check: u64,
}

impl ChunkHeader {
    pub fn encode(&self) -> [u8; CHUNK_HEADER_LEN] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        let mut o = Out { bytes: &mut b, at: 0 };
        o.u32(self.logical_len);
        o.u32(self.stored_len);
        o.u32(self.starts);
        o.u32(self.table_len);
        o.u64(self.checksum);
        o.u64(self.stored_check);
        b
    }

    /// The stored check of this header with `covered` (the stored data for LZ4, nothing
    /// for RAW) and `table`, hashed in file order.
    pub fn stored_check_of(&self, covered: &[u8], table: &[u8]) -> u64 {
        let mut h = self.stored_check_start();
        h.update(covered);
        h.update(table);
        h.digest()
    }

    /// A hasher fed with the header's first 24 bytes, for checking as bytes arrive.
    pub fn stored_check_start(&self) -> crate::checksum::Digest {
        let mut h = crate::checksum::Digest::new();
        h.update(self.encode().get(..24).unwrap_or_default());
        h
    }

    /// Checks the rules shared by all styles: at most 64 KiB of data, a bounded table, and
    /// never an empty chunk. The style decides what stored length is acceptable.
    pub fn decode(b: &[u8; CHUNK_HEADER_LEN]) -> Result<Self, WireError> {
        let mut f = Fields { bytes: b };
        let h = Self {
            logical_len: f.u32(),
            stored_len: f.u32(),
            starts: f.u32(),
            table_len: f.u32(),
            checksum: f.u64(),
            stored_check: f.u64(),
        };
        let sane = h.logical_len as usize <= CHUNK_MAX
            && h.starts <= crate::table::STARTS_MAX
            && h.table_len as usize <= crate::table::TABLE_MAX
            && (h.logical_len > 0 || h.starts > 0)
            && (h.starts > 0) == (h.table_len > 0);
        if !sane {
            return Err(WireError::BadChunkLength);
        }
        Ok(h)
    }
}

/// Frame footer: closes every frame and sums it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameFooter {
    pub buffer_count: u64,
    pub user_bytes: u64,
    pub chunk_count: u64,
    pub chunk_bytes: u64,
    pub chunks_digest: u64,
}

impl FrameFooter {
    /// `header_check` binds the footer to its own frame's header.
    pub fn encode(&self, header_check: u64) -> [u8; FRAME_FOOTER_LEN] {
        let mut b = [0u8; FRAME_FOOTER_LEN];
        let mut o = Out { bytes: &mut b, at: 0 };
        o.put(&FOOTER_MAGIC);
        o.u32(0);
        o.u64(self.buffer_count);
        o.u64(self.user_bytes);
        o.u64(self.chunk_count);
        o.u64(self.chunk_bytes);
        o.u64(self.chunks_digest);
        let check = checksum_seeded(b.get(..48).unwrap_or_default(), header_check);
        if let Some(dst) = b.get_mut(48..) {
            dst.copy_from_slice(&check.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8; FRAME_FOOTER_LEN], header_check: u64) -> Result<Self, WireError> {
        let mut f = Fields { bytes: b };
        if f.take::<4>() != FOOTER_MAGIC {
            return Err(WireError::BadMagic);
        }
        let reserved = f.u32();
        let footer = Self {
            buffer_count: f.u64(),
            user_bytes: f.u64(),
            chunk_count: f.u64(),
            chunk_bytes: f.u64(),
            chunks_digest: f.u64(),
        };
        let stored_check = f.u64();
        let check = checksum_seeded(b.get(..48).unwrap_or_default(), header_check);
        if stored_check != check {
            return Err(WireError::BadCheck { expected: stored_check, found: check });
        }
        if reserved != 0 {
            return Err(WireError::NonZeroReserved);
        }
        Ok(footer)
    }
}

/// One entry of the frame index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: u64,
    pub frame_len: u64,
    pub buffer_count: u64,
    pub user_bytes: u64,
    pub style: u8,
}

impl IndexEntry {
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut b = [0u8; INDEX_ENTRY_LEN];
        let mut o = Out { bytes: &mut b, at: 0 };
        o.u64(self.offset);
        o.u64(self.frame_len);
        o.u64(self.buffer_count);
        o.u64(self.user_bytes);
        o.put(&[self.style, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    pub fn decode(b: &[u8; INDEX_ENTRY_LEN]) -> Result<Self, WireError> {
        let mut f = Fields { bytes: b };
        let offset = f.u64();
        let frame_len = f.u64();
        let buffer_count = f.u64();
        let user_bytes = f.u64();
        let [style, r0, r1, r2, r3, r4, r5, r6] = f.take::<8>();
        if [r0, r1, r2, r3, r4, r5, r6] != [0; 7] {
            return Err(WireError::NonZeroReserved);
        }
        Ok(Self { offset, frame_len, buffer_count, user_bytes, style })
    }
}

/// `flags` is 0 (version 1) or [`INDEX_FLAG_PARENT`] (version 2).
pub fn encode_index_header(flags: u32) -> [u8; INDEX_HEADER_LEN] {
    let mut b = [0u8; INDEX_HEADER_LEN];
    let mut o = Out { bytes: &mut b, at: 0 };
    o.put(&INDEX_MAGIC);
    o.u32(flags);
    b
}

/// Returns the header's flags, which are 0 or [`INDEX_FLAG_PARENT`]; whether they fit the
/// checkpoint's version is checked against the tail.
pub fn decode_index_header(b: [u8; INDEX_HEADER_LEN]) -> Result<u32, WireError> {
    let mut f = Fields { bytes: &b };
    if f.take::<4>() != INDEX_MAGIC {
        return Err(WireError::BadMagic);
    }
    let flags = f.u32();
    if flags & !INDEX_FLAG_PARENT != 0 {
        return Err(WireError::NonZeroReserved);
    }
    Ok(flags)
}

/// Names the checkpoint a version-2 checkpoint builds on; covered by the index digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentRecord {
    pub checkpoint_id: [u8; 16],
    /// The parent's lineage digest (`docs/format.md`, section 12.2).
    pub digest: u64,
}

impl ParentRecord {
    pub fn encode(&self) -> [u8; PARENT_RECORD_LEN] {
        let mut b = [0u8; PARENT_RECORD_LEN];
        let mut o = Out { bytes: &mut b, at: 0 };
        o.put(&self.checkpoint_id);
        o.u64(self.digest);
        b
    }

    pub fn decode(b: &[u8; PARENT_RECORD_LEN]) -> Self {
        let mut f = Fields { bytes: b };
        Self { checkpoint_id: f.take::<16>(), digest: f.u64() }
    }
}

/// The fixed-size tail that ends every checkpoint and is found from the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    pub version: u16,
    pub index_offset: u64,
    pub frame_count: u64,
    pub checkpoint_id: [u8; 16],
    pub index_digest: u64,
}

impl Tail {
    pub fn encode(&self) -> [u8; TAIL_LEN] {
        let mut b = [0u8; TAIL_LEN];
        let mut o = Out { bytes: &mut b, at: 0 };
        o.u64(self.index_offset);
        o.u64(self.frame_count);
        o.put(&self.checkpoint_id);
        o.u64(self.index_digest);
        o.u16(self.version);
        o.u16(0);
        o.u32(0);
        let check = checksum(b.get(..48).unwrap_or_default());
        let mut o = Out { bytes: &mut b, at: 48 };
        o.u64(check);
        o.put(&TAIL_MAGIC);
        b
    }

    pub fn decode(b: &[u8; TAIL_LEN]) -> Result<Self, WireError> {
        let mut f = Fields { bytes: b };
        let mut tail = Self {
            version: 0,
            index_offset: f.u64(),
            frame_count: f.u64(),
            checkpoint_id: f.take::<16>(),
            index_digest: f.u64(),
        };
        let version = f.u16();
        let flags = f.u16();
        let reserved = f.u32();
        let stored_check = f.u64();
        if f.take::<8>() != TAIL_MAGIC {
            return Err(WireError::BadMagic);
        }
        tail.version = known_version(version)?;
        let check = checksum(b.get(..48).unwrap_or_default());
        if stored_check != check {
            return Err(WireError::BadCheck { expected: stored_check, found: check });
        }
        if flags != 0 || reserved != 0 {
            return Err(WireError::NonZeroReserved);
        }
        Ok(tail)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_structure_round_trips() {
        let id = [7u8; 16];
        let h = FrameHeader { version: 1, style: 1, index: 9, checkpoint_id: id };
        let (hb, hc) = h.encode();
        assert_eq!(FrameHeader::decode(&hb), Ok((h, hc)));
        let h2 = FrameHeader { version: 2, ..h };
        let (hb2, hc2) = h2.encode();
        assert_eq!(FrameHeader::decode(&hb2), Ok((h2, hc2)));
        assert_eq!(FrameHeader::decode_v1(&hb2), Err(WireError::BadVersion(2)));
        let h3 = FrameHeader { version: 3, ..h };
        assert_eq!(FrameHeader::decode(&h3.encode().0), Err(WireError::BadVersion(3)));
        let c = ChunkHeader {
            logical_len: 65536,
            stored_len: 100,
            starts: 3,
            table_len: 4,
            checksum: 42,
            stored_check: 9,
        };
        assert_eq!(ChunkHeader::decode(&c.encode()), Ok(c));
        let ft = FrameFooter {
            buffer_count: 1,
            user_bytes: 2,
            chunk_count: 3,
            chunk_bytes: 4,
            chunks_digest: 5,
        };
        assert_eq!(FrameFooter::decode(&ft.encode(hc), hc), Ok(ft));
        assert!(FrameFooter::decode(&ft.encode(hc), hc ^ 1).is_err(), "footer bound to header");
        let e = IndexEntry { offset: 1, frame_len: 2, buffer_count: 3, user_bytes: 4, style: 1 };
        assert_eq!(IndexEntry::decode(&e.encode()), Ok(e));
        for version in [1, 2] {
            let t = Tail {
                version,
                index_offset: 1,
                frame_count: 2,
                checkpoint_id: id,
                index_digest: 3,
            };
            assert_eq!(Tail::decode(&t.encode()), Ok(t));
        }
        assert_eq!(decode_index_header(encode_index_header(0)), Ok(0));
        assert_eq!(decode_index_header(encode_index_header(1)), Ok(INDEX_FLAG_PARENT));
        assert_eq!(decode_index_header(encode_index_header(2)), Err(WireError::NonZeroReserved));
        let p = ParentRecord { checkpoint_id: id, digest: 0x0102_0304_0506_0708 };
        assert_eq!(ParentRecord::decode(&p.encode()), p);
    }

    #[test]
    fn impossible_chunk_headers_are_rejected() {
        let ok = ChunkHeader {
            logical_len: 1,
            stored_len: 1,
            starts: 0,
            table_len: 0,
            checksum: 0,
            stored_check: 0,
        };
        assert!(ChunkHeader::decode(&ok.encode()).is_ok());
        for bad in [
            ChunkHeader { logical_len: 65537, ..ok },
            ChunkHeader { logical_len: 0, ..ok },
            ChunkHeader { starts: 1, ..ok },
            ChunkHeader { table_len: 1, ..ok },
            ChunkHeader { starts: crate::table::STARTS_MAX + 1, table_len: 5, ..ok },
        ] {
            assert_eq!(
                ChunkHeader::decode(&bad.encode()),
                Err(WireError::BadChunkLength),
                "{bad:?}"
            );
        }
    }
}
