//! Checking every region of a checkpoint on its own, so that damage is named region by
//! region (not just "the first error") and can be healed from another copy.
//!
//! A region is a frame header, a chunk (its header and stored bytes), a frame footer, the
//! frame index or the tail. Each can be checked without the others: a chunk's stored bytes
//! against its checksum (RAW) or stored check (LZ4), so one bad chunk does not hide the state
//! of the chunks after it, even in a linked LZ4 frame.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::checksum::Digest;
use crate::checksum::checksum;
use crate::codec::{ChunkDecompressor, Style, default_decompressor, lz4_bound};
use crate::error::{Error, IoErrorKind, Misuse};
use crate::id::CheckpointId;
use crate::io::Source;
use crate::wire::{
    CHUNK_HEADER_LEN, ChunkHeader, FOOTER_MAGIC, FORMAT_VERSION, FRAME_FOOTER_LEN,
    FRAME_HEADER_LEN, FRAME_MAGIC, FrameFooter, FrameHeader, INDEX_ENTRY_LEN, INDEX_HEADER_LEN,
    IndexEntry, TAIL_LEN, Tail, decode_index_header,
};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

/// What a region of a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegionKind {
    /// A 40-byte frame header.
    FrameHeader,
    /// A chunk: its 32-byte header, its stored data and its length table.
    Chunk,
    /// A 56-byte frame footer.
    FrameFooter,
    /// The frame index (index header and entries).
    Index,
    /// The 64-byte tail.
    Tail,
    /// Bytes whose structure could not be followed (after a damaged length).
    Unknown,
}

impl RegionKind {
    /// A short lowercase name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::FrameHeader => "frame header",
            Self::Chunk => "chunk",
            Self::FrameFooter => "frame footer",
            Self::Index => "frame index",
            Self::Tail => "tail",
            Self::Unknown => "unreadable bytes",
        }
    }
}

/// One region and whether it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// What the region is.
    pub kind: RegionKind,
    /// The frame it belongs to, when known.
    pub frame: Option<u64>,
    /// Checkpoint offset of its first byte.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Why it does not verify; `None` when it does.
    pub problem: Option<&'static str>,
}

impl Region {
    /// Whether the region verifies.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
    /// One past its last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Every region of a checkpoint, in offset order, with its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// The checkpoint's identity, from the tail or the first intact frame header.
    pub id: Option<CheckpointId>,
    /// The checkpoint's length.
    pub len: u64,
    /// The regions, in offset order, covering the whole checkpoint.
    pub regions: Vec<Region>,
}

impl ScanReport {
    /// Whether every region verifies.
    pub fn is_ok(&self) -> bool {
        self.regions.iter().all(Region::is_ok)
    }
    /// The regions that do not verify.
    pub fn bad_regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().filter(|r| !r.is_ok())
    }
}

/// How deep [`scan`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Depth {
    /// Check every region's bytes against its own check value (stored bytes for chunks).
    #[default]
    Stored,
    /// Also decode every LZ4 chunk whose frame is intact so far and check the checksum of
    /// its logical bytes.
    Decoded,
}

fn io_err(offset: u64) -> impl Fn(crate::error::IoError) -> Error {
    move |error| Error::Io { offset, error }
}

/// Reads `buf.len()` bytes at `offset`; `Ok(false)` if the checkpoint ends first.
fn read_at<S: Source + ?Sized>(src: &mut S, offset: u64, buf: &mut [u8]) -> Result<bool, Error> {
    src.seek(offset).map_err(io_err(offset))?;
    match src.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == IoErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io_err(offset)(e)),
    }
}

struct Scanner<'s, S: Source + ?Sized> {
    src: &'s mut S,
    len: u64,
    depth: Depth,
    regions: Vec<Region>,
    id: Option<CheckpointId>,
    stored: Vec<u8>,
    decompressor: Option<Box<dyn ChunkDecompressor>>,
}

/// The frames the index describes, if the index and tail verify.
struct Index {
    entries: Vec<IndexEntry>,
}

/// Checks every region of the checkpoint in `src` (which must be seekable and know its
/// length) and returns their states. Damage is reported in the report, not as an error.
///
/// # Errors
/// [`Error::InvalidUse`] with [`Misuse::NotSeekable`] if `src` cannot seek or does not know
/// its length; [`Error::Io`] if reading fails.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer, SliceSource};
/// use ckpt_frame_core::scan::{scan, Depth, RegionKind};
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([3; 16]));
/// let data = vec![9u8; 200_000];
/// let mut f = w.open_frame(Style::Raw)?;
/// f.add(&data)?;
/// f.close()?;
/// w.finish()?;
/// let mut bytes = w.into_sink().into_inner();
/// bytes[100_000] ^= 1;
/// let report = scan(&mut SliceSource::new(&bytes), Depth::Stored)?;
/// let bad: Vec<_> = report.bad_regions().collect();
/// assert_eq!(bad.len(), 1);
/// assert_eq!((bad[0].kind, bad[0].frame), (RegionKind::Chunk, Some(0)));
/// assert!(bad[0].offset <= 100_000 && 100_000 < bad[0].end());
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
pub fn scan<S: Source + ?Sized>(src: &mut S, depth: Depth) -> Result<ScanReport, Error> {
    let len = src.total_len().map_err(io_err(0))?.ok_or(Error::InvalidUse(Misuse::NotSeekable))?;
    let decompressor = if depth == Depth::Decoded { default_decompressor() } else { None };
    let mut s = Scanner {
        src,
        len,
        depth,
        regions: Vec::new(),
        id: None,
        stored: vec![0u8; lz4_bound(crate::wire::CHUNK_MAX) + crate::table::TABLE_MAX],
        decompressor,
    };
    let (index, tail_regions) = s.check_index()?;
    match &index {
        Some(ix) => {
            let entries = ix.entries.clone();
            for (i, e) in (0u64..).zip(&entries) {
                s.walk_frame(e.offset, Some(e.offset + e.frame_len), i, Style::from_byte(e.style))?;
            }
        }
        None => s.walk_without_index()?,
    }
    s.regions.extend(tail_regions);
    s.regions.sort_by_key(|r| r.offset);
    s.fill_gaps();
    Ok(ScanReport { id: s.id, len, regions: s.regions })
}

impl<S: Source + ?Sized> Scanner<'_, S> {
    fn push(
        &mut self,
        kind: RegionKind,
        frame: Option<u64>,
        offset: u64,
        len: u64,
        problem: Option<&'static str>,
    ) {
        if len > 0 {
            self.regions.push(Region { kind, frame, offset, len, problem });
        }
    }

    /// Checks the tail and the index; returns the index if both verify, and the regions.
    fn check_index(&mut self) -> Result<(Option<Index>, Vec<Region>), Error> {
        let mut regions = Vec::new();
        let min = (INDEX_HEADER_LEN + TAIL_LEN) as u64;
        if self.len < min {
            return Ok((None, regions));
        }
        let tail_at = self.len - TAIL_LEN as u64;
        let mut tb = [0u8; TAIL_LEN];
        read_at(self.src, tail_at, &mut tb)?;
        let region = |problem| Region {
            kind: RegionKind::Tail,
            frame: None,
            offset: tail_at,
            len: TAIL_LEN as u64,
            problem,
        };
        let Ok(tail) = Tail::decode(&tb) else {
            regions.push(region(Some("tail does not verify")));
            return Ok((None, regions));
        };
        if tail.version != FORMAT_VERSION {
            // Its chunks may refer to a parent, which a region scan cannot follow.
            return Err(Error::VersionMismatch {
                offset: tail_at,
                found: tail.version,
                supported: FORMAT_VERSION,
            });
        }
        let fits = tail
            .frame_count
            .checked_mul(INDEX_ENTRY_LEN as u64)
            .and_then(|n| n.checked_add(tail.index_offset))
            .and_then(|n| n.checked_add(min));
        if fits != Some(self.len) {
            regions.push(region(Some("tail does not fit the checkpoint length")));
            return Ok((None, regions));
        }
        regions.push(region(None));
        self.id = Some(CheckpointId::from_bytes(tail.checkpoint_id));
        let index_len = tail_at - tail.index_offset;
        let index_region = |problem| Region {
            kind: RegionKind::Index,
            frame: None,
            offset: tail.index_offset,
            len: index_len,
            problem,
        };
        let mut digest = Digest::new();
        let mut hb = [0u8; INDEX_HEADER_LEN];
        read_at(self.src, tail.index_offset, &mut hb)?;
        digest.update(&hb);
        let mut entries = Vec::new();
        let mut eb = [0u8; INDEX_ENTRY_LEN];
        for _ in 0..tail.frame_count {
            self.src.read_exact(&mut eb).map_err(io_err(tail.index_offset))?;
            digest.update(&eb);
            entries.push(eb);
        }
        let sane = decode_index_header(hb) == Ok(0) && digest.digest() == tail.index_digest;
        let decoded: Option<Vec<IndexEntry>> =
            if sane { entries.iter().map(|e| IndexEntry::decode(e).ok()).collect() } else { None };
        let Some(decoded) = decoded else {
            regions.push(index_region(Some("frame index does not verify")));
            return Ok((None, regions));
        };
        let mut expected = 0u64;
        for e in &decoded {
            if e.offset != expected || e.frame_len < (FRAME_HEADER_LEN + FRAME_FOOTER_LEN) as u64 {
                regions.push(index_region(Some("frame index describes an impossible layout")));
                return Ok((None, regions));
            }
            expected = expected.saturating_add(e.frame_len);
        }
        if expected != tail.index_offset {
            regions.push(index_region(Some("frames in the index do not end where it starts")));
            return Ok((None, regions));
        }
        regions.push(index_region(None));
        Ok((Some(Index { entries: decoded }), regions))
    }

    /// Without a usable index: follow frames from offset 0; after damage, look for the next
    /// frame header that verifies.
    fn walk_without_index(&mut self) -> Result<(), Error> {
        let limit = self.len.saturating_sub((INDEX_HEADER_LEN + TAIL_LEN) as u64);
        let mut offset = 0;
        let mut index = 0;
        while offset < limit {
            match self.walk_frame(offset, None, index, None)? {
                Some(end) => {
                    offset = end;
                    index += 1;
                }
                None => match self.find_frame_header(offset + 1, limit)? {
                    Some((at, found_index)) => {
                        // The unreadable rest of the damaged frame ends where the next
                        // frame starts.
                        for r in self.regions.iter_mut().rev().take_while(|r| r.offset >= offset) {
                            if r.kind == RegionKind::Unknown && r.end() > at {
                                r.len = at.saturating_sub(r.offset);
                            }
                        }
                        self.regions.retain(|r| r.len > 0);
                        offset = at;
                        index = found_index;
                    }
                    None => break,
                },
            }
        }
        Ok(())
    }

    fn find_frame_header(&mut self, from: u64, limit: u64) -> Result<Option<(u64, u64)>, Error> {
        let mut window = vec![0u8; 64 * 1024 + FRAME_HEADER_LEN];
        let mut at = from;
        while at < limit {
            let n = usize::try_from((limit - at).min(window.len() as u64)).unwrap_or(0);
            let buf = window.get_mut(..n).unwrap_or_default();
            read_at(self.src, at, buf)?;
            for (i, w) in buf.windows(FRAME_HEADER_LEN).enumerate() {
                if !w.starts_with(&FRAME_MAGIC) {
                    continue;
                }
                let mut hb = [0u8; FRAME_HEADER_LEN];
                hb.copy_from_slice(w);
                if let Ok((h, _)) = FrameHeader::decode_v1(&hb) {
                    return Ok(Some((at + i as u64, h.index)));
                }
            }
            if n <= FRAME_HEADER_LEN {
                break;
            }
            at += (n - FRAME_HEADER_LEN + 1) as u64;
        }
        Ok(None)
    }

    /// Walks one frame; returns its end when the walk reached a footer, `None` when damage
    /// made the rest of the frame unreadable and its end is not known.
    fn walk_frame(
        &mut self,
        offset: u64,
        end: Option<u64>,
        index: u64,
        index_style: Option<Style>,
    ) -> Result<Option<u64>, Error> {
        let frame = Some(index);
        let mut hb = [0u8; FRAME_HEADER_LEN];
        let whole = read_at(self.src, offset, &mut hb)?;
        let header = if whole { FrameHeader::decode_v1(&hb).ok() } else { None };
        let header_problem = match header {
            None => Some("frame header does not verify"),
            Some((h, _)) if h.index != index => Some("frame header has another frame index"),
            Some((h, _)) if self.id.is_some_and(|id| id.to_bytes() != h.checkpoint_id) => {
                Some("frame header belongs to another checkpoint")
            }
            Some((h, _)) if index_style.is_some_and(|s| s.to_byte() != h.style) => {
                Some("frame header style differs from the index")
            }
            Some(_) => None,
        };
        self.push(RegionKind::FrameHeader, frame, offset, FRAME_HEADER_LEN as u64, header_problem);
        if let (Some((h, _)), None) = (header, self.id) {
            self.id = Some(CheckpointId::from_bytes(h.checkpoint_id));
        }
        let style = index_style.or_else(|| header.and_then(|(h, _)| Style::from_byte(h.style)));
        let header_check = header.filter(|_| header_problem.is_none()).map(|(_, c)| c);
        let Some(style) = style else {
            if let Some(end) = end {
                self.push(
                    RegionKind::Unknown,
                    frame,
                    offset + FRAME_HEADER_LEN as u64,
                    end - offset - FRAME_HEADER_LEN as u64,
                    Some("frame style unknown"),
                );
            }
            return Ok(end);
        };
        if style == Style::Lz4
            && let Some(d) = self.decompressor.as_mut()
        {
            d.reset();
        }
        let mut counted = FrameFooter::default();
        let mut decodable = self.depth == Depth::Decoded && header_check.is_some();
        let limit =
            end.unwrap_or_else(|| self.len.saturating_sub((INDEX_HEADER_LEN + TAIL_LEN) as u64));
        let mut pos = offset + FRAME_HEADER_LEN as u64;
        loop {
            let mut head = [0u8; CHUNK_HEADER_LEN];
            if pos + CHUNK_HEADER_LEN as u64 > limit || !read_at(self.src, pos, &mut head)? {
                self.push(
                    RegionKind::Unknown,
                    frame,
                    pos,
                    limit.saturating_sub(pos),
                    Some("frame ends without a footer"),
                );
                return Ok(end);
            }
            if head.starts_with(&FOOTER_MAGIC) {
                return self.check_footer(pos, end, frame, header_check, &counted);
            }
            let Some(h) = self.check_chunk(pos, limit, frame, style, &head, &mut decodable)? else {
                return Ok(end);
            };
            let chunk_len =
                (CHUNK_HEADER_LEN + h.stored_len as usize + h.table_len as usize) as u64;
            counted.chunk_count += 1;
            counted.chunk_bytes += chunk_len;
            counted.chunks_digest =
                crate::checksum::chain_digest(counted.chunks_digest, h.checksum);
            pos += chunk_len;
        }
    }

    /// Checks a frame footer at `pos` against the frame's header and chunks.
    fn check_footer(
        &mut self,
        pos: u64,
        end: Option<u64>,
        frame: Option<u64>,
        header_check: Option<u64>,
        counted: &FrameFooter,
    ) -> Result<Option<u64>, Error> {
        let mut fb = [0u8; FRAME_FOOTER_LEN];
        let whole = read_at(self.src, pos, &mut fb)?;
        let problem = match header_check {
            _ if !whole => Some("frame footer is cut short"),
            None => Some("frame footer cannot be checked without its header"),
            Some(check) => match FrameFooter::decode(&fb, check) {
                Err(_) => Some("frame footer does not verify"),
                Ok(f)
                    if (f.chunk_count, f.chunk_bytes, f.chunks_digest)
                        != (counted.chunk_count, counted.chunk_bytes, counted.chunks_digest) =>
                {
                    Some("frame footer disagrees with the frame's chunks")
                }
                Ok(_) => None,
            },
        };
        let footer_end = pos + FRAME_FOOTER_LEN as u64;
        let misplaced = end.is_some_and(|e| e != footer_end);
        let problem = problem
            .or(misplaced.then_some("frame footer is not where the index says the frame ends"));
        self.push(RegionKind::FrameFooter, frame, pos, FRAME_FOOTER_LEN as u64, problem);
        Ok(Some(end.unwrap_or(footer_end)))
    }

    /// Checks the chunk whose header `head` was read at `pos` and records its region.
    /// Returns `None` when the header is damaged, which ends the walk of the frame.
    fn check_chunk(
        &mut self,
        pos: u64,
        limit: u64,
        frame: Option<u64>,
        style: Style,
        head: &[u8; CHUNK_HEADER_LEN],
        decodable: &mut bool,
    ) -> Result<Option<ChunkHeader>, Error> {
        let chunk = ChunkHeader::decode(head).ok().filter(|h| {
            let (logical, stored) = (h.logical_len as usize, h.stored_len as usize);
            let body = stored + h.table_len as usize;
            let fits = pos + (CHUNK_HEADER_LEN + body + FRAME_FOOTER_LEN) as u64 <= limit;
            fits && match style {
                Style::Raw => stored == logical,
                Style::Lz4 if logical == 0 => stored == 0,
                Style::Lz4 => stored > 0 && stored <= lz4_bound(logical),
            }
        });
        let Some(h) = chunk else {
            let what = "chunk header is damaged; the rest of the frame cannot be followed";
            self.push(RegionKind::Unknown, frame, pos, limit - pos, Some(what));
            return Ok(None);
        };
        let (stored_len, table_len) = (h.stored_len as usize, h.table_len as usize);
        let body = self.stored.get_mut(..stored_len + table_len).unwrap_or_default();
        read_at(self.src, pos + CHUNK_HEADER_LEN as u64, body)?;
        let (stored, table) = body.split_at(stored_len.min(body.len()));
        let mut problem = match style {
            Style::Raw => {
                let data_ok = checksum(stored) == h.checksum;
                let rest_ok = h.stored_check_of(&[], table) == h.stored_check;
                (!(data_ok && rest_ok)).then_some("chunk checksum does not match")
            }
            Style::Lz4 => (h.stored_check_of(stored, table) != h.stored_check)
                .then_some("chunk stored check does not match"),
        };
        if style == Style::Lz4
            && *decodable
            && h.logical_len > 0
            && let Some(d) = self.decompressor.as_mut()
        {
            let logical_ok = problem.is_none()
                && d.decompress_linked(stored, h.logical_len as usize).is_ok()
                && checksum(d.output()) == h.checksum;
            if !logical_ok && problem.is_none() {
                problem = Some("chunk does not decode to bytes matching its checksum");
            }
            *decodable = problem.is_none();
        }
        let len = (CHUNK_HEADER_LEN + stored_len + table_len) as u64;
        self.push(RegionKind::Chunk, frame, pos, len, problem);
        Ok(Some(h))
    }

    /// As [`Self::fill_gaps`], but only within the byte ranges `within` (sorted, disjoint):
    /// a partial scan says nothing about the bytes it did not read.
    fn fill_gaps_within(&mut self, within: &[(u64, u64)]) {
        let mut gaps = Vec::new();
        for &(start, end) in within {
            let mut at = start;
            for r in self.regions.iter().filter(|r| r.offset < end && start < r.end()) {
                if r.offset > at {
                    gaps.push((at, r.offset));
                }
                at = at.max(r.end());
            }
            if at < end {
                gaps.push((at, end));
            }
        }
        for (offset, end) in gaps {
            self.regions.push(Region {
                kind: RegionKind::Unknown,
                frame: None,
                offset,
                len: end - offset,
                problem: Some("bytes outside any readable structure"),
            });
        }
        self.regions.sort_by_key(|r| r.offset);
    }

    /// Marks bytes no region covers (between a damaged frame and the next one found).
    fn fill_gaps(&mut self) {
        let mut gaps = Vec::new();
        let mut at = 0;
        for r in &self.regions {
            if r.offset > at {
                gaps.push(Region {
                    kind: RegionKind::Unknown,
                    frame: None,
                    offset: at,
                    len: r.offset - at,
                    problem: Some("bytes outside any readable structure"),
                });
            }
            at = at.max(r.end());
        }
        if at < self.len {
            gaps.push(Region {
                kind: RegionKind::Unknown,
                frame: None,
                offset: at,
                len: self.len - at,
                problem: Some("bytes outside any readable structure"),
            });
        }
        self.regions.extend(gaps);
        self.regions.sort_by_key(|r| r.offset);
    }
}

/// What healing a damaged copy from a donor copy would do.
///
/// Every region of the donor's scan whose bytes differ between the copies lands in exactly
/// one of the five lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealPlan {
    /// The checkpoint both copies hold.
    pub id: CheckpointId,
    /// Regions whose donor bytes replace the damaged copy's: they fail their checks in the
    /// damaged copy, verify in the donor, and the damaged copy's own surviving check values
    /// record exactly the donor's bytes.
    pub rewrite: Vec<Region>,
    /// Damaged regions the donor cannot heal: its own bytes there are damaged too (damaged
    /// in both copies). `problem` is the donor's.
    pub unhealable: Vec<Region>,
    /// Damaged regions whose donor bytes verify in the donor but are not the bytes the
    /// damaged copy's surviving check values record (a donor that is not a true copy: same
    /// identity and length, other contents). Never rewritten; `problem` names the check of
    /// the damaged copy that disagrees.
    pub donor_mismatch: Vec<Region>,
    /// Damaged regions whose donor bytes verify in the donor but that nothing surviving in
    /// the damaged copy records, so the donor's bytes cannot be checked against the damaged
    /// copy. Never rewritten; `problem` says which records are damaged too.
    pub unvouched: Vec<Region>,
    /// Regions whose bytes differ between the copies although the damaged copy's verify
    /// (or, for a frame footer, verify on their own against the frame header, when a damaged
    /// chunk header makes the damaged copy's scan call the footer bad); never rewritten.
    pub differ_but_verify: Vec<Region>,
    /// The damaged copy's scan.
    pub damaged: ScanReport,
}

impl HealPlan {
    /// Whether the plan refuses any damaged region: damaged in both copies, a donor that
    /// disagrees with the damaged copy's records, or nothing left to check the donor with.
    pub fn refuses_any(&self) -> bool {
        !(self.unhealable.is_empty() && self.donor_mismatch.is_empty() && self.unvouched.is_empty())
    }
}

/// Plans a corrective heal: which regions of `damaged` fail their checks and can be
/// replaced by the bytes of the same region in `good`, a copy of the same checkpoint.
///
/// Regions of `damaged` that verify are never in the plan. A region is rewritten only when
/// the donor's bytes verify in the donor **and** the damaged copy's own surviving check
/// values record exactly those bytes: the chunk's own header when it survives, or else the
/// frame footer's counts and digest of chunk checksums; for a frame header, the footer bound
/// to it or the index entry; for a footer, the frame's chunks and the index entry; for the
/// index, the tail or the frames; for the tail, the index (`docs/format.md` section 8.5).
/// A donor with the same identity and length but other contents therefore heals nothing it
/// cannot prove: such regions are listed in [`HealPlan::donor_mismatch`] or
/// [`HealPlan::unvouched`], not rewritten.
///
/// # Errors
/// [`Error::NotACopy`] when the copies are not the same checkpoint (different identity or
/// length) or the damaged copy's identity cannot be read; [`Error::InvalidUse`] or
/// [`Error::Io`] as for [`scan`].
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink, Writer};
/// use ckpt_frame_core::scan::plan_heal;
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([4; 16]));
/// let data = vec![1u8; 300_000];
/// let mut f = w.open_frame(Style::Lz4)?;
/// f.add(&data)?;
/// f.close()?;
/// w.finish()?;
/// let good = w.into_sink().into_inner();
/// let mut damaged = good.clone();
/// damaged[200] ^= 0xFF;
/// let plan = plan_heal(&mut SliceSource::new(&damaged), &mut SliceSource::new(&good))?;
/// assert_eq!(plan.rewrite.len(), 1);
/// assert!(plan.rewrite[0].offset <= 200 && 200 < plan.rewrite[0].end());
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
pub fn plan_heal<D: Source + ?Sized, G: Source + ?Sized>(
    damaged: &mut D,
    good: &mut G,
) -> Result<HealPlan, Error> {
    let good_report = scan(good, Depth::Decoded)?;
    let damaged_report = scan(damaged, Depth::Stored)?;
    let id = same_checkpoint(&damaged_report, good_report.id, good_report.len)?;
    let donor: Vec<DonorRegion> =
        good_report.regions.iter().map(|r| DonorRegion { region: *r, read: true }).collect();
    plan_regions(damaged, good, id, damaged_report, &donor)
}

/// The checkpoint both copies hold, or why they are not copies of one checkpoint: the
/// refusal that comes before any region is looked at.
fn same_checkpoint(
    damaged: &ScanReport,
    good_id: Option<CheckpointId>,
    good_len: u64,
) -> Result<CheckpointId, Error> {
    let Some(id) = good_id else {
        return Err(Error::NotACopy { reason: "the good copy's identity cannot be read" });
    };
    match damaged.id {
        None => {
            return Err(Error::NotACopy { reason: "the damaged copy's identity cannot be read" });
        }
        Some(other) if other != id => {
            return Err(Error::NotACopy { reason: "the copies are different checkpoints" });
        }
        Some(_) => {}
    }
    if damaged.len != good_len {
        return Err(Error::NotACopy { reason: "the copies have different lengths" });
    }
    Ok(id)
}

/// A region of the donor's scan, and whether the planner read the donor's bytes there.
///
/// A planner that fetches only part of the donor ([`plan_heal_ranged`]) stands the damaged
/// copy's own regions in for the donor's where it did not read the donor: only where every
/// one of them verifies, so that no such region could ever be rewritten.
#[derive(Debug, Clone, Copy)]
struct DonorRegion {
    region: Region,
    read: bool,
}

/// Classifies each donor region against the damaged copy (section 8.5's order) and decides
/// the candidates with [`Vouching`]: the one body of rules every heal planner shares.
fn plan_regions<D: Source + ?Sized, G: Source + ?Sized>(
    damaged: &mut D,
    good: &mut G,
    id: CheckpointId,
    damaged_report: ScanReport,
    donor: &[DonorRegion],
) -> Result<HealPlan, Error> {
    let mut plan = HealPlan {
        id,
        rewrite: Vec::new(),
        unhealable: Vec::new(),
        donor_mismatch: Vec::new(),
        unvouched: Vec::new(),
        differ_but_verify: Vec::new(),
        damaged: damaged_report,
    };
    let mut classes = Vec::with_capacity(donor.len());
    let mut candidates = Vec::new();
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for &DonorRegion { region: r, read } in donor {
        if !read {
            classes.push(Class::Unread);
            continue;
        }
        read_region(damaged, &r, &mut mine)?;
        read_region(good, &r, &mut theirs)?;
        let overlapping =
            plan.damaged.regions.iter().filter(|d| d.offset < r.end() && r.offset < d.end());
        let (mut any_ok, mut all_ok) = (false, true);
        for d in overlapping {
            any_ok |= d.is_ok();
            all_ok &= d.is_ok();
        }
        let class = if mine == theirs {
            Class::Same
        } else if all_ok {
            plan.differ_but_verify.push(r);
            Class::Verifies
        } else if !r.is_ok() {
            plan.unhealable.push(r);
            Class::Both
        } else if any_ok {
            plan.donor_mismatch.push(Region { problem: Some(PART_VERIFIES), ..r });
            Class::Refused
        } else {
            candidates.push(r);
            Class::Candidate(candidates.len() - 1)
        };
        classes.push(class);
    }
    let regions: Vec<Region> = donor.iter().map(|d| d.region).collect();
    let verdicts = Vouching {
        damaged,
        good,
        id: id.to_bytes(),
        donor: &regions,
        classes: &classes,
        mine: &plan.damaged,
        verdicts: vec![None; candidates.len()],
    }
    .run()?;
    for (r, verdict) in candidates.iter().zip(verdicts) {
        match verdict {
            Some(Verdict::Vouched) => plan.rewrite.push(*r),
            Some(Verdict::OwnVerifies) => plan.differ_but_verify.push(*r),
            Some(Verdict::Mismatch(why)) => {
                plan.donor_mismatch.push(Region { problem: Some(why), ..*r });
            }
            Some(Verdict::Unvouched(why)) => {
                plan.unvouched.push(Region { problem: Some(why), ..*r });
            }
            None => plan.unvouched.push(Region { problem: Some(NOT_IN_A_STRUCTURE), ..*r }),
        }
    }
    plan.donor_mismatch.sort_by_key(|r| r.offset);
    plan.differ_but_verify.sort_by_key(|r| r.offset);
    Ok(plan)
}

/// The index entries of the checkpoint in `src`, when its scan `report` says its index and
/// tail verify.
fn verified_entries<S: Source + ?Sized>(
    src: &mut S,
    report: &ScanReport,
) -> Result<Option<Vec<IndexEntry>>, Error> {
    let Some(r) = report.regions.iter().find(|r| r.kind == RegionKind::Index && r.is_ok()) else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    read_region(src, r, &mut bytes)?;
    let entries = bytes.get(INDEX_HEADER_LEN..).unwrap_or_default().chunks_exact(INDEX_ENTRY_LEN);
    Ok(entries
        .map(|e| {
            <&[u8; INDEX_ENTRY_LEN]>::try_from(e).ok().and_then(|e| IndexEntry::decode(e).ok())
        })
        .collect())
}

/// What [`plan_heal_ranged`] planned, and what it read of the donor to plan it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangedHealPlan {
    /// The plan, by the rules of [`plan_heal`]. Regions whose donor bytes were not read are
    /// in none of its lists: the damaged copy's regions there all verify, so they would never
    /// be rewritten, and whether the donor's bytes differ there is not known.
    pub plan: HealPlan,
    /// The donor's byte ranges read, as `(offset, len)` in offset order, adjacent reads
    /// joined; no donor byte was read twice.
    pub fetched: Vec<(u64, u64)>,
    /// The donor's bytes of each region of [`HealPlan::rewrite`], in the same order, so that
    /// applying the plan needs no second read of the donor.
    pub rewrite_bytes: Vec<Vec<u8>>,
    /// The number of reads of the donor (one per range read, before adjacent ranges are
    /// counted as one in [`RangedHealPlan::fetched`]).
    pub donor_reads: u64,
    /// Whether the planner had to read the whole donor, because neither copy's frame index
    /// and tail verify and so the damaged frames could not be located without it.
    pub whole_donor: bool,
}

impl RangedHealPlan {
    /// The number of donor bytes read.
    pub fn fetched_bytes(&self) -> u64 {
        self.fetched.iter().map(|(_, len)| len).sum()
    }
}

/// Plans the same heal as [`plan_heal`] while reading only the parts of the donor it needs,
/// for a donor whose every byte is costly (an object in remote storage).
///
/// The damaged copy is scanned whole. The donor is read at: its tail, its frame index (when
/// its tail verifies and, if the damaged copy's own index verifies, places the index where
/// that one lies), and the frames (located by the donor's index, or the damaged copy's
/// when only that one verifies) that hold or touch a region of the damaged copy that does
/// not verify. Each range is read with one seek and one read, no byte twice, and kept in
/// memory while planning: memory is the bytes read. Those frames are
/// scanned at [`Depth::Decoded`] and every donor region read is classified and vouched for
/// by exactly the code [`plan_heal`] runs; elsewhere the damaged copy's own regions, which
/// all verify there, stand in for the donor's, so nothing outside the fetched ranges can be
/// rewritten. A donor's bytes are therefore used only when the damaged copy's own surviving
/// check values record them, as in [`plan_heal`] (`docs/format.md` section 8.5).
///
/// When neither copy's frame index and tail verify, the frames cannot be located without
/// reading them, and the whole donor is read ([`RangedHealPlan::whole_donor`]).
///
/// # Errors
/// [`Error::NotACopy`] as for [`plan_heal`]; a donor of another length is refused before
/// any of its bytes are read, and one whose tail names another checkpoint before any frame
/// is read. [`Error::InvalidUse`] with [`Misuse::NotSeekable`] when a copy cannot seek or
/// does not know its length; [`Error::Io`] when reading fails.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink, Writer};
/// use ckpt_frame_core::scan::plan_heal_ranged;
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([4; 16]));
/// let data: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 100_000]).collect();
/// for d in &data {
///     let mut f = w.open_frame(Style::Raw)?;
///     f.add(d)?;
///     f.close()?;
/// }
/// w.finish()?;
/// let good = w.into_sink().into_inner();
/// let mut damaged = good.clone();
/// damaged[250_000] ^= 0xFF; // in the third frame
/// let ranged = plan_heal_ranged(&mut SliceSource::new(&damaged), &mut SliceSource::new(&good))?;
/// assert_eq!(ranged.plan.rewrite.len(), 1);
/// // The third frame, the index and the tail: far less than the donor.
/// assert!(ranged.fetched_bytes() < 110_000);
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
pub fn plan_heal_ranged<D: Source + ?Sized, G: Source + ?Sized>(
    damaged: &mut D,
    donor: &mut G,
) -> Result<RangedHealPlan, Error> {
    let damaged_report = scan(damaged, Depth::Stored)?;
    let len =
        donor.total_len().map_err(io_err(0))?.ok_or(Error::InvalidUse(Misuse::NotSeekable))?;
    if len != damaged_report.len {
        return Err(Error::NotACopy { reason: "the copies have different lengths" });
    }
    let mut fetched = Fetched { len, pieces: Vec::new(), pos: 0, reads: 0 };
    let foreign_tail = fetch_tail_and_index(&damaged_report, donor, &mut fetched)?;
    let mut s = Scanner {
        src: &mut fetched,
        len,
        depth: Depth::Decoded,
        regions: Vec::new(),
        id: None,
        stored: vec![0u8; lz4_bound(crate::wire::CHUNK_MAX) + crate::table::TABLE_MAX],
        decompressor: default_decompressor(),
    };
    let (index, tail_regions) = match foreign_tail {
        // The tail verifies and fits; its index is left unread, so this copy's own index
        // (which verifies) stands in for it and gives the frames.
        Some(id) => {
            s.id = Some(id);
            let tail = Region {
                kind: RegionKind::Tail,
                frame: None,
                offset: len - TAIL_LEN as u64,
                len: TAIL_LEN as u64,
                problem: None,
            };
            (None, vec![tail])
        }
        None => s.check_index()?,
    };
    let layout = match index {
        Some(ix) => Some(ix.entries),
        None => verified_entries(damaged, &damaged_report)?,
    };
    let Some(entries) = layout else {
        return plan_whole_donor(damaged, donor, fetched);
    };
    // The frames that hold, or touch, a region of the damaged copy that does not verify.
    let needed: Vec<(u64, IndexEntry)> = (0u64..)
        .zip(entries)
        .filter(|(_, e)| {
            let end = e.offset.saturating_add(e.frame_len);
            damaged_report.regions.iter().any(|r| {
                r.offset < end
                    && e.offset < r.end()
                    && (!r.is_ok() || r.offset < e.offset || r.end() > end)
            })
        })
        .collect();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (_, e) in &needed {
        let end = e.offset.saturating_add(e.frame_len);
        match ranges.last_mut() {
            Some(last) if last.1 == e.offset => last.1 = end,
            _ => ranges.push((e.offset, end)),
        }
    }
    for &(start, end) in &ranges {
        s.src.fetch(donor, start, end - start)?;
    }
    for (i, e) in &needed {
        let end = e.offset.saturating_add(e.frame_len);
        s.walk_frame(e.offset, Some(end), *i, Style::from_byte(e.style))?;
    }
    s.regions.extend(tail_regions);
    s.regions.sort_by_key(|r| r.offset);
    let covered: Vec<(u64, u64)> =
        s.src.pieces.iter().map(|(o, b)| (*o, *o + b.len() as u64)).collect();
    s.fill_gaps_within(&covered);
    let id = s.id;
    let mut donor_regions: Vec<DonorRegion> =
        s.regions.iter().map(|r| DonorRegion { region: *r, read: true }).collect();
    // Elsewhere the damaged copy's regions stand in for the donor's, only where every one
    // verifies and lies wholly outside the fetched ranges; anything else means the layout
    // was not what the selection assumed, and the whole donor is read instead.
    let inside = |r: &Region| covered.iter().any(|&(a, b)| a < r.end() && r.offset < b);
    for r in damaged_report.regions.iter().filter(|r| !inside(r)) {
        donor_regions.push(DonorRegion { region: *r, read: false });
    }
    donor_regions.sort_by_key(|d| d.region.offset);
    let mut at = 0;
    for d in &donor_regions {
        if d.region.offset != at || (!d.read && !d.region.is_ok()) {
            return plan_whole_donor(damaged, donor, fetched);
        }
        at = d.region.end();
    }
    if at != len {
        return plan_whole_donor(damaged, donor, fetched);
    }
    let id = same_checkpoint(&damaged_report, id, len)?;
    let plan = plan_regions(damaged, &mut fetched, id, damaged_report, &donor_regions)?;
    finish_ranged(plan, fetched, false)
}

/// Reads the donor's tail and, when it verifies and fits (and lies where the damaged
/// copy's own verified index does, if that one does), its frame index. Returns the id of a
/// tail that verifies and fits but places the index elsewhere (its index is not read).
///
/// # Errors
/// [`Error::NotACopy`] when the donor's tail names another checkpoint; [`Error::Io`].
fn fetch_tail_and_index<G: Source + ?Sized>(
    damaged_report: &ScanReport,
    donor: &mut G,
    fetched: &mut Fetched,
) -> Result<Option<CheckpointId>, Error> {
    let len = fetched.len;
    let min = (INDEX_HEADER_LEN + TAIL_LEN) as u64;
    // Where this copy's own verified index lies, when it does.
    let own_index =
        damaged_report.regions.iter().find(|r| r.kind == RegionKind::Index && r.is_ok());
    // A donor tail that verifies but places the index elsewhere: not fetched.
    let mut foreign_tail = None;
    if len >= min {
        let tail_at = len - TAIL_LEN as u64;
        fetched.fetch(donor, tail_at, TAIL_LEN as u64)?;
        let mut tb = [0u8; TAIL_LEN];
        read_at(fetched, tail_at, &mut tb)?;
        // The index is fetched only when the tail that places it verifies and fits.
        if let Some(tail) = Tail::decode(&tb).ok().filter(|t| t.version == FORMAT_VERSION) {
            let fits = tail
                .frame_count
                .checked_mul(INDEX_ENTRY_LEN as u64)
                .and_then(|n| n.checked_add(tail.index_offset))
                .and_then(|n| n.checked_add(min));
            if fits == Some(len) {
                // An impostor whose tail names another checkpoint costs 64 bytes.
                same_checkpoint(
                    damaged_report,
                    Some(CheckpointId::from_bytes(tail.checkpoint_id)),
                    len,
                )?;
                let index_len = tail_at - tail.index_offset;
                // A tail whose checks pass can still be forged (section 11) to claim most of
                // the donor as its index; when this copy's own index verifies, only an index
                // in the same place is worth fetching.
                if own_index.is_some_and(|r| (r.offset, r.len) != (tail.index_offset, index_len)) {
                    foreign_tail = Some(CheckpointId::from_bytes(tail.checkpoint_id));
                } else {
                    fetched.fetch(donor, tail.index_offset, index_len)?;
                }
            }
        }
    }
    Ok(foreign_tail)
}

/// The fallback of [`plan_heal_ranged`]: reads the rest of the donor (each byte not read
/// yet, once) into one piece and plans with [`plan_heal`].
fn plan_whole_donor<D: Source + ?Sized, G: Source + ?Sized>(
    damaged: &mut D,
    donor: &mut G,
    mut fetched: Fetched,
) -> Result<RangedHealPlan, Error> {
    let mut whole = vec![0u8; usize::try_from(fetched.len).unwrap_or(usize::MAX)];
    // The pieces are disjoint and in offset order.
    let mut missing = Vec::new();
    let mut at = 0usize;
    for (o, b) in &fetched.pieces {
        let from = usize::try_from(*o).unwrap_or(usize::MAX);
        if let Some(dst) = whole.get_mut(from..from.saturating_add(b.len())) {
            dst.copy_from_slice(b);
        }
        if from > at {
            missing.push((at, from));
        }
        at = at.max(from.saturating_add(b.len()));
    }
    if at < whole.len() {
        missing.push((at, whole.len()));
    }
    for (start, end) in missing {
        if let Some(dst) = whole.get_mut(start..end) {
            donor.seek(start as u64).map_err(io_err(start as u64))?;
            donor.read_exact(dst).map_err(io_err(start as u64))?;
            fetched.reads += 1;
        }
    }
    fetched.pieces = vec![(0, whole)];
    let plan = plan_heal(damaged, &mut fetched)?;
    finish_ranged(plan, fetched, true)
}

fn finish_ranged(
    plan: HealPlan,
    mut fetched: Fetched,
    whole_donor: bool,
) -> Result<RangedHealPlan, Error> {
    let mut rewrite_bytes = Vec::with_capacity(plan.rewrite.len());
    for r in &plan.rewrite {
        let mut b = Vec::new();
        read_region(&mut fetched, r, &mut b)?;
        rewrite_bytes.push(b);
    }
    let donor_reads = fetched.reads;
    let fetched = fetched.pieces.iter().map(|(o, b)| (*o, b.len() as u64)).collect();
    Ok(RangedHealPlan { plan, fetched, rewrite_bytes, donor_reads, whole_donor })
}

/// The parts of the donor read so far, as a [`Source`] that serves only those: a read of
/// bytes that were not fetched is an error, never a silent fetch, so the planner's reads of
/// the donor are exactly the ranges it chose. The pieces never overlap.
struct Fetched {
    len: u64,
    /// Disjoint, in offset order.
    pieces: Vec<(u64, Vec<u8>)>,
    pos: u64,
    reads: u64,
}

const NOT_FETCHED: &str = "the heal planner read donor bytes it had not fetched";

impl Fetched {
    /// Reads the bytes `offset..offset + len` of `donor` that are not read yet, each gap
    /// with one seek and one read, so that no donor byte is read twice.
    fn fetch<G: Source + ?Sized>(
        &mut self,
        donor: &mut G,
        offset: u64,
        len: u64,
    ) -> Result<(), Error> {
        let end = offset.saturating_add(len);
        let mut gaps = Vec::new();
        let mut at = offset;
        for (o, b) in &self.pieces {
            let piece_end = *o + b.len() as u64;
            if piece_end <= at || *o >= end {
                continue;
            }
            if *o > at {
                gaps.push((at, *o));
            }
            at = at.max(piece_end);
        }
        if at < end {
            gaps.push((at, end));
        }
        for (start, stop) in gaps {
            let mut buf = vec![0u8; usize::try_from(stop - start).unwrap_or(usize::MAX)];
            donor.seek(start).map_err(io_err(start))?;
            donor.read_exact(&mut buf).map_err(io_err(start))?;
            self.reads += 1;
            self.pieces.push((start, buf));
        }
        self.pieces.sort_by_key(|(o, _)| *o);
        // Adjacent pieces become one, so that a read across their seam is served.
        let mut merged: Vec<(u64, Vec<u8>)> = Vec::with_capacity(self.pieces.len());
        for (o, b) in core::mem::take(&mut self.pieces) {
            match merged.last_mut() {
                Some((lo, lb)) if *lo + lb.len() as u64 == o => lb.extend_from_slice(&b),
                _ => merged.push((o, b)),
            }
        }
        self.pieces = merged;
        Ok(())
    }
}

impl Source for Fetched {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), crate::error::IoError> {
        let end = self.pos.saturating_add(buf.len() as u64);
        if end > self.len {
            return Err(crate::error::IoError::new(
                IoErrorKind::UnexpectedEof,
                "the donor ends before the bytes asked for",
            ));
        }
        let piece = self
            .pieces
            .iter()
            .find(|(o, b)| *o <= self.pos && end <= *o + b.len() as u64)
            .and_then(|(o, b)| {
                let from = usize::try_from(self.pos - o).ok()?;
                b.get(from..from + buf.len())
            });
        let Some(piece) = piece else {
            return Err(crate::error::IoError::new(IoErrorKind::Unsupported, NOT_FETCHED));
        };
        buf.copy_from_slice(piece);
        self.pos = end;
        Ok(())
    }

    fn total_len(&mut self) -> Result<Option<u64>, crate::error::IoError> {
        Ok(Some(self.len))
    }

    fn seek(&mut self, offset: u64) -> Result<(), crate::error::IoError> {
        self.pos = offset;
        Ok(())
    }
}

// Why a region is in `donor_mismatch`: the check of the damaged copy that disagrees.
const PART_VERIFIES: &str = "part of these bytes verify in this copy, as other structures";
const HEADER_VS_INDEX: &str = "this copy's frame index records another frame header here";
const HEADER_FOREIGN: &str = "the donor's frame header names another frame or checkpoint";
const FOOTER_VS_HEADER: &str = "the donor's frame footer is bound to another frame header";
const FOOTER_VS_INDEX: &str = "this copy's frame index records other counts for this frame";
const FOOTER_VS_CHUNKS: &str =
    "this copy's chunks do not add up to the donor footer's counts and digest";
const CHUNK_VS_FOOTER: &str = "this copy's frame footer records other chunk checksums";
const INDEX_VS_TAIL: &str = "this copy's tail records another frame index digest";
const INDEX_VS_FRAMES: &str = "this copy's frames describe another frame index";
const TAIL_FOREIGN: &str = "the donor's tail names another checkpoint";
const TAIL_VS_INDEX: &str = "this copy's frame index does not hash to the donor tail's digest";
// Why a region is in `unvouched`: which records of the damaged copy are damaged too.
const NOT_IN_A_STRUCTURE: &str = "the donor's region is not part of a frame, index or tail";
const HEADER_UNRECORDED: &str =
    "this copy's frame footer and frame index, which record the frame header, are damaged too";
const FOOTER_NO_HEADER: &str =
    "this copy's frame header, which the footer is checked with, is damaged too";
const FOOTER_NO_CHUNKS: &str =
    "other chunks of this frame are damaged in this copy too, so they cannot vouch for the footer";
const CHUNK_UNRECORDED: &str =
    "this copy's chunk header and frame footer, which record the chunk, are damaged too";
const CHUNK_NO_FOOTER: &str = "the donor's frame cannot be followed to its footer, so this copy's footer cannot vouch for the chunk";
const CHUNK_UNCHECKABLE: &str = "other chunks of this frame are damaged in both copies, so the frame footer cannot vouch for this one";
const INDEX_UNRECORDED: &str =
    "this copy's tail and some of its frames, which record the frame index, are damaged too";
const TAIL_INDEX_REFUSED: &str = "this copy's frame index, which the tail records, is not healed";
const TAIL_UNCHECKABLE: &str = "this copy's frame index does not hash to the donor tail's digest and cannot be checked without a tail";

/// Reads region `r` of `src` into `buf`.
fn read_region<S: Source + ?Sized>(
    src: &mut S,
    r: &Region,
    buf: &mut Vec<u8>,
) -> Result<(), Error> {
    buf.resize(usize::try_from(r.len).unwrap_or(usize::MAX), 0);
    read_at(src, r.offset, buf)?;
    Ok(())
}

/// Reads `N` bytes at `offset`, or `None` when the checkpoint ends first.
fn read_fixed<const N: usize, S: Source + ?Sized>(
    src: &mut S,
    offset: u64,
) -> Result<Option<[u8; N]>, Error> {
    let mut b = [0u8; N];
    Ok(read_at(src, offset, &mut b)?.then_some(b))
}

/// Where a region of the donor's scan stands between the two copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The same bytes in both copies.
    Same,
    /// The bytes differ, and the damaged copy's regions there all verify.
    Verifies,
    /// The bytes differ, and the region is damaged in both copies.
    Both,
    /// The bytes differ, and part of them verify in the damaged copy: refused.
    Refused,
    /// The donor's bytes were not read; the damaged copy's regions here all verify (the
    /// region is the damaged copy's own), so it is never rewritten.
    Unread,
    /// The bytes differ, the damaged copy's do not verify and the donor's do; the index is
    /// the candidate's, whose verdict [`Vouching`] decides.
    Candidate(usize),
}

/// Whether the damaged copy's surviving check values record a candidate's donor bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// They do: the region is rewritten.
    Vouched,
    /// They record other bytes.
    Mismatch(&'static str),
    /// Nothing surviving records the region.
    Unvouched(&'static str),
    /// The damaged copy's own bytes verify on their own after all (a frame footer that its
    /// scan calls bad only because a damaged chunk header disagrees with it): not damaged.
    OwnVerifies,
}

/// A frame of the donor's scan: indexes into its regions.
#[derive(Debug)]
struct FrameLayout {
    index: u64,
    header: usize,
    chunks: Vec<usize>,
    footer: Option<usize>,
    /// Header, chunks and footer follow each other with nothing else in the frame.
    complete: bool,
}

/// What the damaged copy, healed as far as vouched, says about a frame.
#[derive(Debug, Clone, Copy)]
struct FrameRecord {
    offset: u64,
    end: u64,
    style: u8,
    footer: FrameFooter,
}

/// How a chunk of a frame links into the frame footer's digest chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// The damaged copy's chunk verifies: its header's values are its own, checked.
    Trusted,
    /// A candidate whose chunk header in the damaged copy is byte for byte the donor's:
    /// that header records the donor's stored data and table.
    OwnHeader(usize),
    /// A RAW candidate whose chunk header alone differs from the donor's: this copy's own
    /// stored data and table are the donor's, and they determine the header.
    OwnBody(usize),
    /// A candidate whose chunk header in the damaged copy differs from the donor's, and
    /// whose body does too (or whose frame is LZ4).
    Candidate(usize),
    /// Damaged in both copies (or not comparable): its values are a guess.
    Unverified,
}

struct Vouching<'a, D: Source + ?Sized, G: Source + ?Sized> {
    damaged: &'a mut D,
    good: &'a mut G,
    id: [u8; 16],
    donor: &'a [Region],
    classes: &'a [Class],
    mine: &'a ScanReport,
    verdicts: Vec<Option<Verdict>>,
}

impl<D: Source + ?Sized, G: Source + ?Sized> Vouching<'_, D, G> {
    fn run(mut self) -> Result<Vec<Option<Verdict>>, Error> {
        let entries = self.damaged_index()?;
        let mut records = Vec::new();
        for layout in frame_layouts(self.donor) {
            let record = self.frame(&layout, entries.as_deref())?;
            records.push((layout.index, record));
        }
        let derived = derived_index(&records);
        let index_ok = self.index(derived.as_deref())?;
        self.tail(index_ok, derived.as_deref())?;
        Ok(self.verdicts)
    }

    fn region(&self, i: usize) -> Option<(Region, Class)> {
        Some((*self.donor.get(i)?, *self.classes.get(i)?))
    }

    fn decide(&mut self, candidate: usize, verdict: Verdict) {
        if let Some(v) = self.verdicts.get_mut(candidate) {
            *v = Some(verdict);
        }
    }

    /// The damaged copy's index entries, when its index and tail verify.
    fn damaged_index(&mut self) -> Result<Option<Vec<IndexEntry>>, Error> {
        verified_entries(self.damaged, self.mine)
    }

    /// Decides the frame's candidates (header, chunks, footer) and returns what the damaged
    /// copy, healed as far as vouched, records about the frame.
    fn frame(
        &mut self,
        l: &FrameLayout,
        entries: Option<&[IndexEntry]>,
    ) -> Result<Option<FrameRecord>, Error> {
        let Some((hr, h_class)) = self.region(l.header) else { return Ok(None) };
        let entry = entries.and_then(|e| e.get(usize::try_from(l.index).ok()?));
        let footer = l.footer.and_then(|i| self.region(i));
        let header = self.frame_header(l, hr, h_class, entry, footer.map(|(r, _)| r.offset))?;

        // The chunks, as the digest chain sees them.
        let raw = header.is_some_and(|(h, _)| Style::from_byte(h.style) == Some(Style::Raw));
        // Only a frame with a chunk or footer to decide needs its chunk headers read.
        let deciding = l
            .chunks
            .iter()
            .chain(&l.footer)
            .any(|&i| matches!(self.classes.get(i), Some(Class::Candidate(_))));
        let mut links = Vec::with_capacity(if deciding { l.chunks.len() } else { 0 });
        for &i in l.chunks.iter().filter(|_| deciding) {
            let Some((r, class)) = self.region(i) else { continue };
            links.push(self.chunk_link(r, class, raw)?);
        }
        let summary = summarise(links.iter().map(|(_, v)| *v));
        let circular = links.iter().any(|(l, _)| matches!(l, Link::Candidate(_)));
        let guessed = links.iter().any(|(l, _)| *l == Link::Unverified) || summary.is_none();

        // The footer: the damaged copy's own when it verifies, else the donor's if vouched.
        let hc = header.map(|(_, hc)| hc);
        let mut surviving = None;
        let mut vouched = None;
        if let Some((fr, f_class)) = footer {
            // The damaged copy's footer survives when it verifies on its own against the
            // frame header: its scan may still call it bad, because a damaged chunk header
            // makes the chunks disagree with it.
            if let Some(hc) = hc {
                surviving = read_fixed::<FRAME_FOOTER_LEN, _>(self.damaged, fr.offset)?
                    .and_then(|b| FrameFooter::decode(&b, hc).ok());
            }
            if let Class::Candidate(c) = f_class {
                let verdict = match hc {
                    _ if surviving.is_some() => Verdict::OwnVerifies,
                    None => Verdict::Unvouched(FOOTER_NO_HEADER),
                    Some(hc) => {
                        let theirs = read_fixed::<FRAME_FOOTER_LEN, _>(self.good, fr.offset)?
                            .and_then(|b| FrameFooter::decode(&b, hc).ok());
                        match theirs {
                            None => Verdict::Mismatch(FOOTER_VS_HEADER),
                            Some(f) if entry.is_some_and(|e| !entry_fits(e, &f, fr.end())) => {
                                Verdict::Mismatch(FOOTER_VS_INDEX)
                            }
                            Some(f) if l.complete && !circular && summary == Some(f) => {
                                vouched = Some(f);
                                Verdict::Vouched
                            }
                            Some(_) if l.complete && !circular && !guessed => {
                                Verdict::Mismatch(FOOTER_VS_CHUNKS)
                            }
                            Some(_) => Verdict::Unvouched(FOOTER_NO_CHUNKS),
                        }
                    }
                };
                self.decide(c, verdict);
            }
        }

        // Chunk candidates: their own header or body, or the surviving footer's chain. When
        // that chain, computed without guesses, disagrees, the candidates nothing else
        // vouches for are blamed; the others only when there are none of those.
        let chain = surviving.filter(|_| l.complete).map(|f| summary == Some(f));
        let disagrees = chain == Some(false) && !guessed;
        let blame_own_body = !circular;
        let blame_own_header =
            !links.iter().any(|(l, _)| matches!(l, Link::Candidate(_) | Link::OwnBody(_)));
        for (link, _) in &links {
            let verdict = match (*link, chain) {
                (Link::OwnHeader(_), _) if disagrees && blame_own_header => {
                    Verdict::Mismatch(CHUNK_VS_FOOTER)
                }
                (Link::OwnBody(_), _) if disagrees && blame_own_body => {
                    Verdict::Mismatch(CHUNK_VS_FOOTER)
                }
                (Link::OwnHeader(_) | Link::OwnBody(_), _) | (Link::Candidate(_), Some(true)) => {
                    Verdict::Vouched
                }
                (Link::Candidate(_), Some(false)) if guessed => {
                    Verdict::Unvouched(CHUNK_UNCHECKABLE)
                }
                (Link::Candidate(_), Some(false)) => Verdict::Mismatch(CHUNK_VS_FOOTER),
                (Link::Candidate(_), None) if footer.is_none() || !l.complete => {
                    Verdict::Unvouched(CHUNK_NO_FOOTER)
                }
                (Link::Candidate(_), None) => Verdict::Unvouched(CHUNK_UNRECORDED),
                (Link::Trusted | Link::Unverified, _) => continue,
            };
            if let Link::OwnHeader(c) | Link::OwnBody(c) | Link::Candidate(c) = *link {
                self.decide(c, verdict);
            }
        }

        let footer_record = surviving.or(vouched);
        Ok(match (header, footer, footer_record) {
            (Some((h, _)), Some((fr, _)), Some(f)) => {
                Some(FrameRecord { offset: hr.offset, end: fr.end(), style: h.style, footer: f })
            }
            _ => None,
        })
    }

    /// How chunk region `r` of class `class` links into its frame's digest chain, with the
    /// header values the chain uses for it. `raw` says the frame is RAW, as the damaged
    /// copy's frame header (its own, or the donor's if vouched) records.
    fn chunk_link(
        &mut self,
        r: Region,
        class: Class,
        raw: bool,
    ) -> Result<(Link, Option<ChunkHeader>), Error> {
        let mine = read_fixed::<CHUNK_HEADER_LEN, _>(self.damaged, r.offset)?;
        let decode =
            |b: Option<[u8; CHUNK_HEADER_LEN]>| b.and_then(|b| ChunkHeader::decode(&b).ok());
        if class == Class::Unread {
            // The damaged copy's chunk verifies; the donor's bytes were not fetched.
            return Ok((Link::Trusted, decode(mine)));
        }
        let theirs = read_fixed::<CHUNK_HEADER_LEN, _>(self.good, r.offset)?;
        let own_verifies = self.mine.regions.iter().any(|d| {
            d.kind == RegionKind::Chunk && d.offset == r.offset && d.len == r.len && d.is_ok()
        });
        Ok(match class {
            Class::Same if r.is_ok() => (Link::Trusted, decode(mine)),
            Class::Verifies if own_verifies => (Link::Trusted, decode(mine)),
            Class::Candidate(c) if mine.is_some() && mine == theirs => {
                (Link::OwnHeader(c), decode(theirs))
            }
            Class::Candidate(c) => {
                // Only the header differs: in a RAW chunk every header field is a function
                // of the stored data and table (the checksum is over the data itself), so
                // this copy's own body records the donor's header. Not so for LZ4, whose
                // logical data also depends on the chunks before.
                let body = Region {
                    offset: r.offset + CHUNK_HEADER_LEN as u64,
                    len: r.len.saturating_sub(CHUNK_HEADER_LEN as u64),
                    ..r
                };
                let (mut a, mut b) = (Vec::new(), Vec::new());
                if raw {
                    read_region(self.damaged, &body, &mut a)?;
                    read_region(self.good, &body, &mut b)?;
                }
                let link = if raw && a == b { Link::OwnBody(c) } else { Link::Candidate(c) };
                (link, decode(theirs))
            }
            _ => (Link::Unverified, decode(mine).or_else(|| decode(theirs))),
        })
    }

    /// Decides a frame header candidate; returns the frame header the damaged copy has
    /// (its own when it verifies, else the donor's if vouched), with its check value.
    fn frame_header(
        &mut self,
        l: &FrameLayout,
        hr: Region,
        class: Class,
        entry: Option<&IndexEntry>,
        footer_at: Option<u64>,
    ) -> Result<Option<(FrameHeader, u64)>, Error> {
        let fits = |(h, _): &(FrameHeader, u64)| h.index == l.index && h.checkpoint_id == self.id;
        let Class::Candidate(c) = class else {
            let mine = read_fixed::<FRAME_HEADER_LEN, _>(self.damaged, hr.offset)?;
            return Ok(mine.and_then(|b| FrameHeader::decode_v1(&b).ok()).filter(fits));
        };
        let theirs = read_fixed::<FRAME_HEADER_LEN, _>(self.good, hr.offset)?
            .and_then(|b| FrameHeader::decode_v1(&b).ok());
        let Some((h, hc)) = theirs else {
            self.decide(c, Verdict::Unvouched(NOT_IN_A_STRUCTURE));
            return Ok(None);
        };
        if !fits(&(h, hc)) {
            self.decide(c, Verdict::Mismatch(HEADER_FOREIGN));
            return Ok(None);
        }
        // The damaged copy's footer was bound to its header's check value when written.
        let bound = match footer_at {
            Some(at) => read_fixed::<FRAME_FOOTER_LEN, _>(self.damaged, at)?
                .is_some_and(|b| FrameFooter::decode(&b, hc).is_ok()),
            None => false,
        };
        let verdict = match entry {
            Some(e) if e.style != h.style || e.offset != hr.offset => {
                Verdict::Mismatch(HEADER_VS_INDEX)
            }
            Some(_) => Verdict::Vouched,
            None if bound => Verdict::Vouched,
            None => Verdict::Unvouched(HEADER_UNRECORDED),
        };
        self.decide(c, verdict);
        Ok((verdict == Verdict::Vouched).then_some((h, hc)))
    }

    /// Decides an index candidate; returns whether the index, after healing, is vouched
    /// for (`None` when it is refused).
    fn index(&mut self, derived: Option<&[u8]>) -> Result<Option<bool>, Error> {
        let found = self.donor.iter().zip(self.classes).find(|(r, _)| r.kind == RegionKind::Index);
        let Some((r, Class::Candidate(c))) = found.map(|(r, c)| (*r, *c)) else {
            return Ok(Some(false));
        };
        let mut theirs = Vec::new();
        read_region(self.good, &r, &mut theirs)?;
        let tail = match self.mine.regions.iter().find(|t| t.kind == RegionKind::Tail && t.is_ok())
        {
            Some(t) => read_fixed::<TAIL_LEN, _>(self.damaged, t.offset)?
                .and_then(|b| Tail::decode(&b).ok().filter(|t| t.version == FORMAT_VERSION)),
            None => None,
        };
        let verdict = match (tail, derived) {
            (Some(t), _) if t.index_offset == r.offset && t.index_digest == checksum(&theirs) => {
                Verdict::Vouched
            }
            (Some(_), _) => Verdict::Mismatch(INDEX_VS_TAIL),
            (None, Some(d)) if d == theirs.as_slice() => Verdict::Vouched,
            (None, Some(_)) => Verdict::Mismatch(INDEX_VS_FRAMES),
            (None, None) => Verdict::Unvouched(INDEX_UNRECORDED),
        };
        self.decide(c, verdict);
        Ok((verdict == Verdict::Vouched).then_some(true))
    }

    /// Decides a tail candidate: the index as it will be after healing must hash to the
    /// donor tail's digest. `index_vouched` is what [`Self::index`] returned.
    fn tail(&mut self, index_vouched: Option<bool>, derived: Option<&[u8]>) -> Result<(), Error> {
        let found = self.donor.iter().zip(self.classes).find(|(r, _)| r.kind == RegionKind::Tail);
        let Some((r, Class::Candidate(c))) = found.map(|(r, c)| (*r, *c)) else { return Ok(()) };
        let theirs = read_fixed::<TAIL_LEN, _>(self.good, r.offset)?
            .and_then(|b| Tail::decode(&b).ok().filter(|t| t.version == FORMAT_VERSION));
        let Some(t) = theirs else {
            self.decide(c, Verdict::Unvouched(NOT_IN_A_STRUCTURE));
            return Ok(());
        };
        if t.checkpoint_id != self.id {
            self.decide(c, Verdict::Mismatch(TAIL_FOREIGN));
            return Ok(());
        }
        let Some(index_vouched) = index_vouched else {
            self.decide(c, Verdict::Unvouched(TAIL_INDEX_REFUSED));
            return Ok(());
        };
        // The index region: the donor's bytes if it is rewritten, the damaged copy's if not.
        let index = Region {
            kind: RegionKind::Index,
            frame: None,
            offset: t.index_offset,
            len: r.offset.saturating_sub(t.index_offset),
            problem: None,
        };
        let mut bytes = Vec::new();
        if index_vouched {
            read_region(self.good, &index, &mut bytes)?;
        } else {
            read_region(self.damaged, &index, &mut bytes)?;
        }
        let verdict = if checksum(&bytes) == t.index_digest {
            Verdict::Vouched
        } else if derived == Some(bytes.as_slice()) {
            Verdict::Mismatch(TAIL_VS_INDEX)
        } else {
            Verdict::Unvouched(TAIL_UNCHECKABLE)
        };
        self.decide(c, verdict);
        Ok(())
    }
}

/// The index the damaged copy's frames (healed as far as vouched) describe, when every
/// frame's header and footer are known.
fn derived_index(records: &[(u64, Option<FrameRecord>)]) -> Option<Vec<u8>> {
    let mut bytes = crate::wire::encode_index_header(0).to_vec();
    for (i, (index, record)) in (0u64..).zip(records) {
        let r = record.filter(|_| *index == i)?;
        let entry = IndexEntry {
            offset: r.offset,
            frame_len: r.end.checked_sub(r.offset)?,
            buffer_count: r.footer.buffer_count,
            user_bytes: r.footer.user_bytes,
            style: r.style,
        };
        bytes.extend_from_slice(&entry.encode());
    }
    Some(bytes)
}

/// Whether index entry `e` records the counts of footer `f` and a frame ending at `end`.
fn entry_fits(e: &IndexEntry, f: &FrameFooter, end: u64) -> bool {
    e.buffer_count == f.buffer_count
        && e.user_bytes == f.user_bytes
        && e.offset.checked_add(e.frame_len) == Some(end)
}

/// The footer a frame of these chunk headers has (`None` if one is unknown).
fn summarise(chunks: impl Iterator<Item = Option<ChunkHeader>>) -> Option<FrameFooter> {
    let mut f = FrameFooter::default();
    for h in chunks {
        let h = h?;
        f.buffer_count += u64::from(h.starts);
        f.user_bytes += u64::from(h.logical_len);
        f.chunk_count += 1;
        f.chunk_bytes += CHUNK_HEADER_LEN as u64 + u64::from(h.stored_len) + u64::from(h.table_len);
        f.chunks_digest = crate::checksum::chain_digest(f.chunks_digest, h.checksum);
    }
    Some(f)
}

/// The frames of a scan, with the regions of each.
fn frame_layouts(regions: &[Region]) -> Vec<FrameLayout> {
    let mut out: Vec<FrameLayout> = Vec::new();
    let mut open = false;
    for (i, r) in regions.iter().enumerate() {
        let current = out.last_mut().filter(|l| open && Some(l.index) == r.frame);
        match (r.kind, current) {
            (RegionKind::FrameHeader, _) => {
                if let Some(frame) = r.frame {
                    out.push(FrameLayout {
                        index: frame,
                        header: i,
                        chunks: Vec::new(),
                        footer: None,
                        complete: true,
                    });
                    open = true;
                    continue;
                }
            }
            (RegionKind::Chunk, Some(l)) => {
                l.chunks.push(i);
                continue;
            }
            (RegionKind::FrameFooter, Some(l)) => {
                l.footer = Some(i);
                open = false;
                continue;
            }
            _ => {}
        }
        // Anything else inside a frame leaves it not followed to its end.
        if open && let Some(l) = out.last_mut() {
            l.complete = false;
        }
        open = false;
    }
    if open && let Some(l) = out.last_mut() {
        l.complete = false;
    }
    for l in &mut out {
        let mut at = regions.get(l.header).map(Region::end);
        for &i in l.chunks.iter().chain(&l.footer) {
            let r = regions.get(i);
            if at != r.map(|r| r.offset) {
                l.complete = false;
            }
            at = r.map(Region::end);
        }
        l.complete &= l.footer.is_some();
    }
    out
}
