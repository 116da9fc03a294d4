//! Checking every region of a checkpoint on its own, so that damage is named region by
//! region (not just "the first error") and can be healed from another copy.
//!
//! A region is a frame header, a chunk (its header and stored bytes), a frame footer, the
//! frame index or the tail. Each can be checked without the others: a chunk's stored bytes
//! against its checksum (RAW) or stored check (LZ4), so one bad chunk does not hide the state
//! of the chunks after it, even in a linked LZ4 frame.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::checksum::checksum;
use crate::codec::{ChunkDecompressor, Style, default_decompressor, lz4_bound};
use crate::error::{Error, IoErrorKind, Misuse};
use crate::id::CheckpointId;
use crate::io::Source;
use crate::wire::{
    CHUNK_HEADER_LEN, ChunkHeader, FOOTER_MAGIC, FRAME_FOOTER_LEN, FRAME_HEADER_LEN, FRAME_MAGIC,
    FrameFooter, FrameHeader, INDEX_ENTRY_LEN, INDEX_HEADER_LEN, IndexEntry, TAIL_LEN, Tail,
    decode_index_header,
};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use xxhash_rust::xxh3::Xxh3;

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
        let mut digest = Xxh3::new();
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
        let sane = decode_index_header(hb).is_ok() && digest.digest() == tail.index_digest;
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
                if let Ok((h, _)) = FrameHeader::decode(&hb) {
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
        let header = if whole { FrameHeader::decode(&hb).ok() } else { None };
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

/// What healing a damaged copy from a good one would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealPlan {
    /// The checkpoint both copies hold.
    pub id: CheckpointId,
    /// Regions of the good copy whose bytes replace the damaged copy's (which fail their
    /// checks there).
    pub rewrite: Vec<Region>,
    /// Damaged regions the good copy cannot heal (its own bytes there are damaged too).
    pub unhealable: Vec<Region>,
    /// Regions whose bytes differ between the copies although the damaged copy's verify;
    /// never rewritten.
    pub differ_but_verify: Vec<Region>,
    /// The damaged copy's scan.
    pub damaged: ScanReport,
}

/// Plans a corrective heal: which regions of `damaged` fail their checks and can be
/// replaced by the bytes of the same region in `good`, a copy of the same checkpoint.
/// Regions of `damaged` that verify are never in the plan.
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
    let Some(id) = good_report.id else {
        return Err(Error::NotACopy { reason: "the good copy's identity cannot be read" });
    };
    match damaged_report.id {
        None => {
            return Err(Error::NotACopy { reason: "the damaged copy's identity cannot be read" });
        }
        Some(other) if other != id => {
            return Err(Error::NotACopy { reason: "the copies are different checkpoints" });
        }
        Some(_) => {}
    }
    if damaged_report.len != good_report.len {
        return Err(Error::NotACopy { reason: "the copies have different lengths" });
    }
    let mut plan = HealPlan {
        id,
        rewrite: Vec::new(),
        unhealable: Vec::new(),
        differ_but_verify: Vec::new(),
        damaged: damaged_report,
    };
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for r in &good_report.regions {
        let len = usize::try_from(r.len).unwrap_or(usize::MAX);
        mine.resize(len, 0);
        theirs.resize(len, 0);
        read_at(damaged, r.offset, &mut mine)?;
        read_at(good, r.offset, &mut theirs)?;
        if mine == theirs {
            continue;
        }
        let damaged_verifies = plan
            .damaged
            .regions
            .iter()
            .any(|d| d.is_ok() && d.offset == r.offset && d.len == r.len && d.kind == r.kind);
        if damaged_verifies {
            plan.differ_but_verify.push(*r);
        } else if r.is_ok() {
            plan.rewrite.push(*r);
        } else {
            plan.unhealable.push(*r);
        }
    }
    Ok(plan)
}
