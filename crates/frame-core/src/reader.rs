//! Restoring a checkpoint: [`Reader`] (streaming or indexed) and [`FrameReader`].

use crate::aligned::AlignedBytes;
use crate::checksum::Digest;
use crate::checksum::{chain_digest, checksum};
use crate::codec::{ChunkDecompressor, LZ4_HISTORY, Style, default_decompressor, lz4_bound};
use crate::error::{Error, ErrorKind, IoErrorKind, Misuse, PlanMismatch};
use crate::id::CheckpointId;
use crate::inherit::{ChunkSum, InheritedChunks, ParentRef, lineage_digest};
use crate::io::Source;
use crate::table::{TABLE_MAX, TableCursor};
use crate::wire::{
    CHUNK_HEADER_LEN, CHUNK_MAX, ChunkHeader, FOOTER_MAGIC, FORMAT_VERSION,
    FORMAT_VERSION_INHERITING, FRAME_FOOTER_LEN, FRAME_HEADER_LEN, FRAME_MAGIC, FrameFooter,
    FrameHeader, INDEX_ENTRY_LEN, INDEX_FLAG_PARENT, INDEX_HEADER_LEN, INDEX_MAGIC, IndexEntry,
    PARENT_RECORD_LEN, ParentRecord, TAIL_LEN, Tail, WireError, decode_index_header,
};
use crate::writer::CheckpointSummary;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// What the index says about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Position in the checkpoint (0-based).
    pub index: u64,
    /// Offset of the frame header from the start of the checkpoint.
    pub offset: u64,
    /// Stored length, header to footer inclusive.
    pub len: u64,
    /// How the frame stores its bytes.
    pub style: Style,
    /// Number of buffers.
    pub buffer_count: u64,
    /// Sum of the buffers' lengths.
    pub user_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    InFrame,
    Done,
    Failed(ErrorKind),
}

struct Decoder {
    decompressor: Option<Box<dyn ChunkDecompressor>>,
    raw: AlignedBytes,
    stored: AlignedBytes,
    /// The current chunk's length table.
    table: Vec<u8>,
    /// Bytes copied through internal memory: out of it into callers' buffers, and from
    /// callers' buffers into the LZ4 history (see [`Reader::internal_copy_bytes`]).
    copied: u64,
    /// The current chunk was inherited from the parent into `raw`, whatever the style.
    inherited: bool,
}

impl Decoder {
    /// The current chunk's bytes when it was loaded into internal memory.
    fn staged(&self, style: Style) -> &[u8] {
        if self.inherited {
            return self.raw.as_slice();
        }
        match style {
            Style::Raw => self.raw.as_slice(),
            Style::Lz4 => self.decompressor.as_ref().map_or(&[][..], |d| d.output()),
        }
    }
}

/// The decoder while chunks are loaded, with the caller's buffer when
/// [`FrameReader::read_into`] is filling one (an empty one otherwise).
///
/// A chunk holding only bytes of that buffer is read or decoded straight into it. An LZ4
/// chunk decoded there is missing from the decompressor's own history; the guard then
/// re-homes the history (hands the decompressor the buffer's last 64 KiB) before any
/// decode through the decompressor's memory and when it is dropped, so no path out of
/// `read_into`, error or not, leaves the decompressor behind the frame. Nothing stateful
/// ever points into the caller's buffer: [`ChunkDecompressor::decompress_into`] borrows it
/// for one call, and [`ChunkDecompressor::set_history`] copies from it.
struct Fill<'d, 'b> {
    dec: &'d mut Decoder,
    buf: &'b mut [u8],
    /// Bytes of `buf` restored so far.
    done: usize,
    /// End of LZ4 output decoded straight into `buf` that the decompressor has not seen,
    /// and how many bytes before that end are the frame's history: its last 64 KiB, or
    /// all of it since the start or since the last inherited chunk (the condition for
    /// decoding into `buf` at all).
    stale: Option<(usize, usize)>,
}

impl<'d, 'b> Fill<'d, 'b> {
    fn new(dec: &'d mut Decoder, buf: &'b mut [u8]) -> Self {
        Self { dec, buf, done: 0, stale: None }
    }

    /// Brings the decompressor's history up to date after decodes into `buf`.
    fn rehome(&mut self) {
        let Some((end, len)) = self.stale.take() else { return };
        let from = end.saturating_sub(len.min(LZ4_HISTORY));
        let history = self.buf.get(from..end).unwrap_or_default();
        if let Some(d) = self.dec.decompressor.as_mut() {
            d.set_history(history);
            self.dec.copied += history.len() as u64;
        }
    }
}

impl Drop for Fill<'_, '_> {
    fn drop(&mut self) {
        self.rehome();
    }
}

/// What [`load_chunk`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loaded {
    /// The frame footer: the frame has no more chunks.
    Footer,
    /// A chunk, in internal memory ([`Decoder::staged`]).
    Staged,
    /// A chunk read or decoded straight into the caller's buffer, which it fills further.
    Direct,
}

/// Reads a checkpoint, either as a stream from its start ([`Reader::new`]) or by random
/// access through the index at its end ([`Reader::open`]).
///
/// Every chunk is checked against its checksum before a restore that includes any of its
/// bytes succeeds; headers, footers, the index and the tail are checked too, so damaged or
/// truncated input is an error naming the frame and offset, never wrong data.
///
/// # Examples
/// Random access to the last frame:
/// ```
/// use ckpt_frame_core::{CheckpointId, Reader, SliceSource, Style, VecSink, Writer};
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([2; 16]));
/// for i in 0..3u8 {
///     let data = [i; 10];
///     let mut f = w.open_frame(Style::Raw)?;
///     f.add(&data)?;
///     f.close()?;
/// }
/// w.finish()?;
/// let bytes = w.into_sink().into_inner();
///
/// let mut r = Reader::open(SliceSource::new(&bytes))?;
/// assert_eq!(r.frame_count(), Some(3));
/// let mut f = r.open_frame(2)?;
/// assert_eq!(f.read_to_vec()?, Some(vec![2u8; 10]));
/// f.close()?;
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
pub struct Reader<S: Source> {
    source: S,
    pos: u64,
    state: State,
    id: Option<CheckpointId>,
    /// Streaming: frames seen so far. Indexed: the index.
    entries: Vec<IndexEntry>,
    indexed: bool,
    next: u64,
    dec: Decoder,
    /// The format version: from the tail (indexed) or the first frame or tail (streaming).
    version: Option<u16>,
    /// The checkpoint this one builds on, as its index names it.
    parent: Option<ParentRef>,
    /// The tail's check value, which the lineage digest starts from (indexed readers).
    tail_check: Option<u64>,
    /// The parent a streaming reader was given, checked against the index at its end.
    given_parent: Option<ParentRef>,
}

impl<S: Source> core::fmt::Debug for Reader<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reader")
            .field("pos", &self.pos)
            .field("state", &self.state)
            .field("indexed", &self.indexed)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

fn read<S: Source>(
    source: &mut S,
    pos: &mut u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), Error> {
    match source.read_exact(buf) {
        Ok(()) => {
            *pos += buf.len() as u64;
            Ok(())
        }
        Err(e) => Err(read_error(e, *pos, what)),
    }
}

fn read_error(e: crate::error::IoError, offset: u64, what: &'static str) -> Error {
    if e.kind() == IoErrorKind::UnexpectedEof {
        Error::Truncated { offset, what }
    } else {
        Error::Io { offset, error: e }
    }
}

/// Reads `buf.len()` bytes like [`read`]; from a source that lends its memory, the bytes
/// are hashed while they are copied and their XXH3-64 is returned, so the caller need not
/// read them again to check them.
fn read_checksummed<S: Source>(
    source: &mut S,
    pos: &mut u64,
    buf: &mut [u8],
    what: &'static str,
) -> Result<Option<u64>, Error> {
    match source.read_borrowed(buf.len()) {
        Some(Ok(lent)) if lent.len() == buf.len() => {
            let sum = crate::checksum::copy_checksummed(buf, lent);
            *pos += buf.len() as u64;
            Ok(Some(sum))
        }
        Some(Ok(_)) => Err(Error::Io {
            offset: *pos,
            error: crate::error::IoError::new(
                IoErrorKind::Other,
                "source lent another length than asked",
            ),
        }),
        Some(Err(e)) => Err(read_error(e, *pos, what)),
        None => read(source, pos, buf, what).map(|()| None),
    }
}

/// Decodes the index entries (already covered by the index digest) and checks that they
/// describe frames that follow each other from offset 0 up to the index.
fn decode_entries(
    raw: &[[u8; INDEX_ENTRY_LEN]],
    first_entry: u64,
    index_offset: u64,
) -> Result<Vec<IndexEntry>, Error> {
    let mut entries = Vec::with_capacity(raw.len());
    let mut expected_offset = 0u64;
    for (i, eb) in (0u64..).zip(raw) {
        let at = first_entry + i * INDEX_ENTRY_LEN as u64;
        let e = IndexEntry::decode(eb).map_err(|e| wire_error(e, Some(i), at, "index entry"))?;
        if Style::from_byte(e.style).is_none() {
            return Err(Error::UnsupportedStyle { style: e.style, frame: Some(i) });
        }
        let sane = e.offset == expected_offset
            && e.frame_len >= (FRAME_HEADER_LEN + FRAME_FOOTER_LEN) as u64;
        if !sane {
            return Err(Error::Corrupt {
                frame: Some(i),
                offset: at,
                what: "index entry is inconsistent",
            });
        }
        expected_offset = expected_offset.saturating_add(e.frame_len);
        entries.push(e);
    }
    if expected_offset != index_offset {
        return Err(Error::Corrupt {
            frame: None,
            offset: index_offset,
            what: "frames in the index do not end where the index starts",
        });
    }
    Ok(entries)
}

fn wire_error(e: WireError, frame: Option<u64>, offset: u64, what: &'static str) -> Error {
    match e {
        WireError::BadCheck { expected, found } => {
            Error::ChecksumMismatch { frame, offset, what, expected, found }
        }
        WireError::BadVersion(found) => Error::VersionMismatch {
            offset,
            found,
            supported: crate::wire::FORMAT_VERSION_INHERITING,
        },
        WireError::BadMagic => Error::Corrupt { frame, offset, what: "wrong magic number" },
        WireError::NonZeroReserved => {
            Error::Corrupt { frame, offset, what: "reserved field is not zero" }
        }
        WireError::BadChunkLength => {
            Error::Corrupt { frame, offset, what: "chunk header lengths are impossible" }
        }
    }
}

impl<S: Source> Reader<S> {
    /// A streaming reader: frames in order from the source's current position, then the
    /// index and tail, which [`Reader::finish`] (or the last [`Reader::next_frame`]) checks.
    /// Works on pipes.
    pub fn new(source: S) -> Self {
        Self::with_codecs(source, default_decompressor())
    }

    /// A streaming reader whose [`Style::Lz4`] frames use `decompressor`.
    pub fn with_codecs(source: S, decompressor: Option<Box<dyn ChunkDecompressor>>) -> Self {
        Self {
            source,
            pos: 0,
            state: State::Ready,
            id: None,
            entries: Vec::new(),
            indexed: false,
            next: 0,
            dec: Decoder {
                decompressor,
                raw: AlignedBytes::zeroed(CHUNK_MAX),
                stored: AlignedBytes::zeroed(lz4_bound(CHUNK_MAX)),
                table: Vec::with_capacity(TABLE_MAX),
                copied: 0,
                inherited: false,
            },
            version: None,
            parent: None,
            tail_check: None,
            given_parent: None,
        }
    }

    /// An indexed reader: reads and checks the tail and the frame index from the end of a
    /// seekable source, so any frame can be opened with [`Reader::open_frame`].
    ///
    /// # Errors
    /// [`Error::InvalidUse`] with [`Misuse::NotSeekable`] if the source cannot seek or does
    /// not know its length; [`Error::Truncated`], [`Error::Corrupt`],
    /// [`Error::ChecksumMismatch`] or [`Error::VersionMismatch`] if the tail or index is
    /// damaged; [`Error::Io`] from the source.
    pub fn open(source: S) -> Result<Self, Error> {
        Self::open_with_codecs(source, default_decompressor())
    }

    /// As [`Reader::open`], with a caller-provided LZ4 decompressor.
    ///
    /// # Errors
    /// As [`Reader::open`].
    pub fn open_with_codecs(
        source: S,
        decompressor: Option<Box<dyn ChunkDecompressor>>,
    ) -> Result<Self, Error> {
        let mut r = Self::with_codecs(source, decompressor);
        r.indexed = true;
        r.load_index()?;
        Ok(r)
    }

    fn load_index(&mut self) -> Result<(), Error> {
        let io = |offset, error| Error::Io { offset, error };
        let len = self
            .source
            .total_len()
            .map_err(|e| io(0, e))?
            .ok_or(Error::InvalidUse(Misuse::NotSeekable))?;
        let min = (INDEX_HEADER_LEN + TAIL_LEN) as u64;
        if len < min {
            return Err(Error::Truncated {
                offset: len,
                what: "checkpoint tail (shorter than an empty checkpoint: truncated, or not a ckpt checkpoint)",
            });
        }
        let tail_at = len - TAIL_LEN as u64;
        self.seek(tail_at)?;
        let mut tb = [0u8; TAIL_LEN];
        read(&mut self.source, &mut self.pos, &mut tb, "checkpoint tail")?;
        let tail = Tail::decode(&tb).map_err(|e| match e {
            WireError::BadMagic => Error::Corrupt {
                frame: None,
                offset: tail_at,
                what: "no checkpoint tail at the end: truncated, or not a ckpt checkpoint",
            },
            other => wire_error(other, None, tail_at, "checkpoint tail"),
        })?;
        let inheriting = tail.version == FORMAT_VERSION_INHERITING;
        let record_len = if inheriting { PARENT_RECORD_LEN as u64 } else { 0 };
        let fits = tail
            .frame_count
            .checked_mul(INDEX_ENTRY_LEN as u64)
            .and_then(|n| n.checked_add(tail.index_offset))
            .and_then(|n| n.checked_add(min + record_len));
        if fits != Some(len) {
            return Err(Error::Corrupt {
                frame: None,
                offset: tail_at,
                what: "tail's index offset and frame count do not match the checkpoint length",
            });
        }
        self.seek(tail.index_offset)?;
        let mut digest = Digest::new();
        let mut hb = [0u8; INDEX_HEADER_LEN];
        read(&mut self.source, &mut self.pos, &mut hb, "frame index")?;
        let flags = decode_index_header(hb)
            .map_err(|e| wire_error(e, None, tail.index_offset, "frame index"))?;
        digest.update(&hb);
        if (flags == INDEX_FLAG_PARENT) != inheriting {
            return Err(Error::Corrupt {
                frame: None,
                offset: tail.index_offset,
                what: "frame index names a parent exactly when the format version is not 2",
            });
        }
        if inheriting {
            self.read_parent_record(&mut digest)?;
        }
        // The length check above bounds this allocation by the source's real size.
        let count = usize::try_from(tail.frame_count).map_err(|_| Error::Corrupt {
            frame: None,
            offset: tail_at,
            what: "frame count too large for this machine",
        })?;
        let mut raw = Vec::with_capacity(count);
        for _ in 0..tail.frame_count {
            let mut eb = [0u8; INDEX_ENTRY_LEN];
            read(&mut self.source, &mut self.pos, &mut eb, "frame index entry")?;
            digest.update(&eb);
            raw.push(eb);
        }
        let found = digest.digest();
        if found != tail.index_digest {
            return Err(Error::ChecksumMismatch {
                frame: None,
                offset: tail.index_offset,
                what: "frame index",
                expected: tail.index_digest,
                found,
            });
        }
        // The index is what the writer wrote; now check that it describes a sane layout.
        if self.parent.is_some_and(|p| p.id.to_bytes() == tail.checkpoint_id) {
            return Err(Error::Corrupt {
                frame: None,
                offset: tail.index_offset,
                what: "checkpoint names itself as its parent",
            });
        }
        let first_entry = tail.index_offset + INDEX_HEADER_LEN as u64 + record_len;
        let entries = decode_entries(&raw, first_entry, tail.index_offset)?;
        self.entries = entries;
        self.id = Some(CheckpointId::from_bytes(tail.checkpoint_id));
        self.version = Some(tail.version);
        self.tail_check = Some(checksum(tb.get(..48).unwrap_or_default()));
        Ok(())
    }

    /// Reads the parent record that follows a version-2 index header; the index digest
    /// covers it.
    fn read_parent_record(&mut self, digest: &mut Digest) -> Result<(), Error> {
        let mut pb = [0u8; PARENT_RECORD_LEN];
        read(&mut self.source, &mut self.pos, &mut pb, "parent record")?;
        digest.update(&pb);
        self.parent = Some(ParentRef::from_record(ParentRecord::decode(&pb)));
        Ok(())
    }

    fn seek(&mut self, offset: u64) -> Result<(), Error> {
        self.source.seek(offset).map_err(|error| match error.kind() {
            IoErrorKind::Unsupported => Error::InvalidUse(Misuse::NotSeekable),
            _ => Error::Io { offset, error },
        })?;
        self.pos = offset;
        Ok(())
    }

    fn usable(&self) -> Result<(), Error> {
        match self.state {
            State::Ready | State::Done => Ok(()),
            State::InFrame => Err(Error::InvalidUse(Misuse::FrameAlreadyOpen)),
            State::Failed(first) => Err(Error::Failed { first }),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        if !matches!(e, Error::InvalidUse(_) | Error::Failed { .. }) {
            self.state = State::Failed(e.kind());
        }
        e
    }

    /// The checkpoint's identity: from the tail (indexed) or the first frame (streaming).
    pub fn id(&self) -> Option<CheckpointId> {
        self.id
    }

    /// Number of frames, when known (indexed, or streaming after the index was read).
    pub fn frame_count(&self) -> Option<u64> {
        (self.indexed || self.state == State::Done).then_some(self.entries.len() as u64)
    }

    /// What the index says about frame `index` (indexed readers, or streaming ones for
    /// frames already read).
    pub fn frame_info(&self, index: u64) -> Option<FrameInfo> {
        let e = self.entries.get(usize::try_from(index).ok()?)?;
        Some(FrameInfo {
            index,
            offset: e.offset,
            len: e.frame_len,
            style: Style::from_byte(e.style)?,
            buffer_count: e.buffer_count,
            user_bytes: e.user_bytes,
        })
    }

    /// Bytes this reader copied through its internal memory so far: out of it into
    /// callers' buffers, and from callers' buffers into the LZ4 history. Chunks that
    /// [`FrameReader::read_into`] reads or decodes straight into the caller's buffer do not
    /// count. A statistic for tests, not part of the stable API.
    #[doc(hidden)]
    pub fn internal_copy_bytes(&self) -> u64 {
        self.dec.copied
    }

    /// Gives back the source.
    pub fn into_source(self) -> S {
        self.source
    }

    /// Opens the next frame in order, or returns `None` once every frame was read (a
    /// streaming reader has then also checked the index and the tail).
    ///
    /// # Errors
    /// [`Error::InvalidUse`] if a frame is open (its reader was dropped unclosed); any
    /// corruption, truncation or I/O error met on the way.
    pub fn next_frame(&mut self) -> Result<Option<FrameReader<'_, S>>, Error> {
        self.usable()?;
        if self.state == State::Done {
            return Ok(None);
        }
        if self.indexed {
            if self.next >= self.entries.len() as u64 {
                self.state = State::Done;
                return Ok(None);
            }
            return self.open_frame(self.next).map(Some);
        }
        match self.streaming_step() {
            Ok(Some(frame)) => Ok(Some(self.start_frame(frame, None))),
            Ok(None) => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Opens frame `index` through the index (indexed readers only).
    ///
    /// # Errors
    /// [`Error::InvalidUse`] for streaming readers ([`Misuse::NotSeekable`]), a missing
    /// frame ([`Misuse::NoSuchFrame`]) or an open frame; corruption or I/O errors in the
    /// frame header.
    pub fn open_frame(&mut self, index: u64) -> Result<FrameReader<'_, S>, Error> {
        if !self.indexed {
            return Err(Error::InvalidUse(Misuse::NotSeekable));
        }
        if self.state == State::InFrame {
            return Err(Error::InvalidUse(Misuse::FrameAlreadyOpen));
        }
        if let State::Failed(first) = self.state {
            return Err(Error::Failed { first });
        }
        let entry = usize::try_from(index).ok().and_then(|i| self.entries.get(i)).copied().ok_or(
            Error::InvalidUse(Misuse::NoSuchFrame {
                index,
                frame_count: self.entries.len() as u64,
            }),
        )?;
        let result = self.seek(entry.offset).and_then(|()| {
            let mut hb = [0u8; FRAME_HEADER_LEN];
            read(&mut self.source, &mut self.pos, &mut hb, "frame header")?;
            self.check_header(&hb, entry.offset, index)
        });
        match result {
            Ok(frame) if frame.style.to_byte() == entry.style => {
                self.next = index;
                Ok(self.start_frame(frame, Some(entry)))
            }
            Ok(_) => Err(self.fail(Error::Corrupt {
                frame: Some(index),
                offset: entry.offset,
                what: "frame style differs from its index entry",
            })),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reads what follows the last frame: the next frame's header, or the index and tail.
    fn streaming_step(&mut self) -> Result<Option<FrameCursor>, Error> {
        let at = self.pos;
        let mut hb = [0u8; FRAME_HEADER_LEN];
        let (magic, rest) = hb.split_at_mut(INDEX_HEADER_LEN);
        read(&mut self.source, &mut self.pos, magic, "frame header or frame index")?;
        if magic.starts_with(&INDEX_MAGIC) {
            self.check_streamed_index(at, magic)?;
            self.state = State::Done;
            return Ok(None);
        }
        if !magic.starts_with(&FRAME_MAGIC) {
            return Err(Error::Corrupt {
                frame: Some(self.next),
                offset: at,
                what: "expected a frame header or the frame index",
            });
        }
        read(&mut self.source, &mut self.pos, rest, "frame header")?;
        self.check_header(&hb, at, self.next).map(Some)
    }

    fn check_header(
        &mut self,
        hb: &[u8; FRAME_HEADER_LEN],
        at: u64,
        index: u64,
    ) -> Result<FrameCursor, Error> {
        let frame = Some(index);
        let (h, header_check) =
            FrameHeader::decode(hb).map_err(|e| wire_error(e, frame, at, "frame header"))?;
        if h.index != index {
            return Err(Error::Corrupt {
                frame,
                offset: at,
                what: "frame index in the header is out of sequence",
            });
        }
        let id = CheckpointId::from_bytes(h.checkpoint_id);
        if *self.id.get_or_insert(id) != id {
            return Err(Error::Corrupt {
                frame,
                offset: at,
                what: "frame belongs to a different checkpoint",
            });
        }
        if *self.version.get_or_insert(h.version) != h.version {
            return Err(Error::Corrupt {
                frame,
                offset: at,
                what: "frame's format version differs from the checkpoint's",
            });
        }
        let style =
            Style::from_byte(h.style).ok_or(Error::UnsupportedStyle { style: h.style, frame })?;
        if style == Style::Lz4 {
            self.dec
                .decompressor
                .as_mut()
                .ok_or(Error::UnsupportedStyle { style: h.style, frame })?
                .reset();
        }
        Ok(FrameCursor {
            index,
            offset: at,
            style,
            header_check,
            counted: FrameFooter::default(),
            footer: None,
            footer_offset: 0,
            chunk_offset: at,
            chunk_len: 0,
            chunk_at: 0,
            table: TableCursor::new(0),
            pending_len: None,
            produced: 0,
            inherits: h.version == FORMAT_VERSION_INHERITING,
            history_from: 0,
            chunk_checksum: 0,
        })
    }

    fn check_streamed_index(&mut self, at: u64, header: &[u8]) -> Result<(), Error> {
        let mut hb = [0u8; INDEX_HEADER_LEN];
        hb.copy_from_slice(header.get(..INDEX_HEADER_LEN).unwrap_or(&[0; INDEX_HEADER_LEN]));
        let flags = decode_index_header(hb).map_err(|e| wire_error(e, None, at, "frame index"))?;
        let mut digest = Digest::new();
        digest.update(&hb);
        if flags == INDEX_FLAG_PARENT {
            self.read_parent_record(&mut digest)?;
        }
        for (i, seen) in self.entries.iter().enumerate() {
            let entry_at = self.pos;
            let mut eb = [0u8; INDEX_ENTRY_LEN];
            read(&mut self.source, &mut self.pos, &mut eb, "frame index entry")?;
            digest.update(&eb);
            if eb != seen.encode() {
                return Err(Error::Corrupt {
                    frame: Some(i as u64),
                    offset: entry_at,
                    what: "index entry does not match the frame that was read",
                });
            }
        }
        let tail_at = self.pos;
        let mut tb = [0u8; TAIL_LEN];
        read(&mut self.source, &mut self.pos, &mut tb, "checkpoint tail")?;
        let tail =
            Tail::decode(&tb).map_err(|e| wire_error(e, None, tail_at, "checkpoint tail"))?;
        let id = CheckpointId::from_bytes(tail.checkpoint_id);
        let version =
            if flags == INDEX_FLAG_PARENT { FORMAT_VERSION_INHERITING } else { FORMAT_VERSION };
        let consistent = tail.index_offset == at
            && tail.frame_count == self.entries.len() as u64
            && *self.id.get_or_insert(id) == id
            && tail.version == version
            && *self.version.get_or_insert(version) == version
            && self.parent.is_none_or(|p| p.id != id);
        if !consistent {
            return Err(Error::Corrupt {
                frame: None,
                offset: tail_at,
                what: "tail disagrees with the frames and index read",
            });
        }
        let found = digest.digest();
        if found != tail.index_digest {
            return Err(Error::ChecksumMismatch {
                frame: None,
                offset: at,
                what: "frame index",
                expected: tail.index_digest,
                found,
            });
        }
        if let (Some(named), Some(given)) = (self.parent, self.given_parent)
            && named != given
        {
            return Err(named.mismatch(given));
        }
        let len = self.source.total_len().map_err(|error| Error::Io { offset: self.pos, error })?;
        if len.is_some_and(|len| len != self.pos) {
            return Err(Error::Corrupt {
                frame: None,
                offset: self.pos,
                what: "bytes follow the checkpoint tail",
            });
        }
        Ok(())
    }

    fn start_frame(
        &mut self,
        frame: FrameCursor,
        expected: Option<IndexEntry>,
    ) -> FrameReader<'_, S> {
        self.dec.table.clear();
        self.dec.inherited = false;
        self.state = State::InFrame;
        FrameReader { reader: self, frame, expected, supply: None }
    }

    /// Ends the restore. A streaming reader checks that no frame is left unread and that
    /// the index and tail agree with the frames read.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] with [`PlanMismatch::FramesLeft`] if frames remain (streaming);
    /// [`Error::InvalidUse`] if a frame is open; corruption, truncation or I/O errors.
    pub fn finish(&mut self) -> Result<CheckpointSummary, Error> {
        if self.state == State::InFrame {
            return Err(Error::InvalidUse(Misuse::FinishInsideFrame));
        }
        self.usable()?;
        if !self.indexed && self.state != State::Done {
            match self.streaming_step() {
                Ok(None) => {}
                Ok(Some(_)) => {
                    let e = Error::PlanMismatch {
                        frame: self.next,
                        mismatch: PlanMismatch::FramesLeft { read: self.next },
                    };
                    return Err(self.fail(e));
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        let frames = self.entries.len() as u64;
        let len = self.entries.last().map_or(0, |e| e.offset + e.frame_len)
            + (INDEX_HEADER_LEN + TAIL_LEN) as u64
            + frames * INDEX_ENTRY_LEN as u64;
        Ok(CheckpointSummary { id: self.id.unwrap_or_default(), frames, len })
    }
}

/// The position inside an open frame.
#[derive(Debug, Clone, Copy)]
struct FrameCursor {
    index: u64,
    offset: u64,
    style: Style,
    header_check: u64,
    counted: FrameFooter,
    footer: Option<FrameFooter>,
    footer_offset: u64,
    /// Offset of the current chunk's header.
    chunk_offset: u64,
    chunk_len: usize,
    chunk_at: usize,
    /// Where the current chunk's table has been read to.
    table: TableCursor,
    /// A length already read whose buffer has not been restored yet.
    pending_len: Option<u64>,
    /// Logical bytes in the chunks loaded so far.
    produced: u64,
    /// A version-2 frame, whose chunks may be inherited from the parent.
    inherits: bool,
    /// Where the LZ4 history starts: 0, or the end of the last inherited chunk.
    history_from: u64,
    /// The current chunk's checksum, checked.
    chunk_checksum: u64,
}

impl FrameCursor {
    fn corrupt(&self, what: &'static str) -> Error {
        Error::Corrupt { frame: Some(self.index), offset: self.chunk_offset, what }
    }
}

/// An open frame of a [`Reader`]: restore its buffers in the order they were written, then
/// [`close`](Self::close) it.
pub struct FrameReader<'r, S: Source> {
    reader: &'r mut Reader<S>,
    frame: FrameCursor,
    expected: Option<IndexEntry>,
    /// Where inherited chunks come from.
    supply: Option<&'r mut (dyn InheritedChunks + 'r)>,
}

impl<S: Source> core::fmt::Debug for FrameReader<'_, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameReader").field("frame", &self.frame).finish_non_exhaustive()
    }
}

impl<S: Source> FrameReader<'_, S> {
    /// The frame's index.
    pub fn index(&self) -> u64 {
        self.frame.index
    }
    /// The frame's offset from the start of the checkpoint.
    pub fn offset(&self) -> u64 {
        self.frame.offset
    }
    /// The frame's style.
    pub fn style(&self) -> Style {
        self.frame.style
    }

    fn guard<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        if let State::Failed(first) = self.reader.state {
            return Err(Error::Failed { first });
        }
        op(self).map_err(|e| self.reader.fail(e))
    }

    /// The length of the next buffer, or `None` at the end of the frame.
    ///
    /// # Errors
    /// Corruption, truncation or I/O errors met while reading the length.
    pub fn next_len(&mut self) -> Result<Option<u64>, Error> {
        self.guard(Self::next_len_inner)
    }

    /// Restores the next buffer into `buf`, whose length must be the written length (see
    /// [`next_len`](Self::next_len) when the caller does not know it).
    ///
    /// Chunks holding only bytes of `buf` are read (RAW) or decoded (LZ4) straight into it,
    /// so a large buffer is not copied through internal memory; every chunk's checks still
    /// pass before this returns `Ok`.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] if `buf` has another length (nothing is written to it) or the
    /// frame has no more buffers (nothing is written either); corruption, truncation or I/O
    /// errors, after which the contents of `buf` are unspecified (they may hold decoded
    /// bytes of a chunk that then failed its checksum). Like every error, these leave the
    /// reader failed: a restore that departs from the written plan is not resumed.
    pub fn read_into(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.guard(|s| {
            let Some(len) = s.next_len_inner()? else {
                let f = &s.frame;
                let written = f.footer.map_or(f.counted.buffer_count, |ft| ft.buffer_count);
                return Err(s.plan(PlanMismatch::TooManyBuffers { written }));
            };
            if len != buf.len() as u64 {
                let buffer = s.frame.counted.buffer_count;
                return Err(s.plan(PlanMismatch::BufferLength {
                    buffer,
                    written: len,
                    requested: buf.len() as u64,
                }));
            }
            s.fill(buf)?;
            s.buffer_done(len);
            Ok(())
        })
    }

    /// Fills `buf` with the pending buffer's bytes: the rest of the current chunk, then the
    /// following chunks, straight into `buf` when they hold only its bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        let frame_end = self.frame_end();
        let Reader { source, pos, dec, .. } = &mut *self.reader;
        let f = &mut self.frame;
        let mut supply = self.supply.as_deref_mut();
        let mut fill = Fill::new(dec, buf);
        while fill.done < fill.buf.len() {
            if f.chunk_at == f.chunk_len {
                if f.table.starts_left() > 0 {
                    return Err(f.corrupt("a buffer starts in a chunk whose data ran out"));
                }
                match load_chunk(source, pos, f, frame_end, &mut fill, supply.as_deref_mut())? {
                    Loaded::Footer => {
                        return Err(Error::Corrupt {
                            frame: Some(f.index),
                            offset: f.footer_offset,
                            what: "frame ends inside a buffer",
                        });
                    }
                    Loaded::Direct => continue,
                    Loaded::Staged => {}
                }
            }
            let src = fill.dec.staged(f.style).get(f.chunk_at..f.chunk_len).unwrap_or_default();
            let n = src.len().min(fill.buf.len() - fill.done);
            if let (Some(dst), Some(src)) =
                (fill.buf.get_mut(fill.done..fill.done + n), src.get(..n))
            {
                dst.copy_from_slice(src);
            }
            fill.dec.copied += n as u64;
            f.chunk_at += n;
            fill.done += n;
        }
        Ok(())
    }

    /// Hands the next buffer to `sink` piece by piece, in order, each piece with its offset
    /// in the buffer and at most one chunk (64 KiB) long, and returns the buffer's length,
    /// or `None` at the end of the frame. Every piece has passed its chunk's checks before
    /// `sink` sees it. Memory stays at one chunk whatever length the frame claims: a length
    /// that the stored bytes do not back fails (truncation or corruption) after the pieces
    /// that are there, so a caller that writes pieces out must treat what it wrote as
    /// unverified until this returns `Ok`.
    ///
    /// # Errors
    /// Corruption, truncation or I/O errors, converted with `E: From<Error>`; or the first
    /// error of `sink`, after which the frame is left inside the buffer and the reader is
    /// failed like after any error ([`Error::Failed`] from then on).
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::{CheckpointId, Error, Reader, SliceSource, Style, VecSink, Writer};
    /// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([7; 16]));
    /// let data = vec![5u8; 200_000];
    /// let mut f = w.open_frame(Style::Raw)?;
    /// f.add(&data)?;
    /// f.close()?;
    /// w.finish()?;
    /// let bytes = w.into_sink().into_inner();
    /// let mut r = Reader::new(SliceSource::new(&bytes));
    /// let mut f = r.next_frame()?.expect("a frame");
    /// let mut seen = 0;
    /// let len = f.read_each(|at, piece: &[u8]| -> Result<(), Error> {
    ///     assert_eq!(at, seen);
    ///     assert!(piece.len() <= 64 * 1024);
    ///     seen += piece.len() as u64;
    ///     Ok(())
    /// })?;
    /// assert_eq!((len, seen), (Some(200_000), 200_000));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn read_each<E: From<Error>>(
        &mut self,
        mut sink: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<Option<u64>, E> {
        if let State::Failed(first) = self.reader.state {
            return Err(Error::Failed { first }.into());
        }
        let len = match self.next_len_inner() {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.reader.fail(e).into()),
        };
        let mut done = 0u64;
        while done < len {
            let chunk = match self.chunk_rest("frame ends inside a buffer") {
                Ok(chunk) => chunk,
                Err(e) => return Err(self.reader.fail(e).into()),
            };
            let n = chunk.len().min(usize::try_from(len - done).unwrap_or(usize::MAX));
            let passed = sink(done, chunk.get(..n).unwrap_or_default());
            if let Err(e) = passed {
                self.reader.state = State::Failed(ErrorKind::Io);
                return Err(e);
            }
            self.reader.dec.copied += n as u64;
            self.frame.chunk_at += n;
            done += n as u64;
        }
        self.buffer_done(len);
        Ok(Some(len))
    }

    /// Restores the next buffer into a new vector, or returns `None` at the end of the
    /// frame. Memory grows with the bytes actually decoded, never with a length claimed by
    /// damaged input.
    ///
    /// # Errors
    /// Corruption, truncation or I/O errors.
    pub fn read_to_vec(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.guard(|s| {
            let Some(len) = s.next_len_inner()? else { return Ok(None) };
            let mut out = Vec::new();
            let mut left = len;
            while left > 0 {
                let chunk = s.chunk_rest("frame ends inside a buffer")?;
                let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(chunk.get(..n).unwrap_or_default());
                s.reader.dec.copied += n as u64;
                s.frame.chunk_at += n;
                left -= n as u64;
            }
            s.buffer_done(len);
            Ok(Some(out))
        })
    }

    /// Checks the frame footer (and the index entry, for indexed readers) and returns the
    /// frame's end offset.
    ///
    /// # Errors
    /// [`Error::PlanMismatch`] if buffers remain unread; corruption, truncation or I/O
    /// errors.
    pub fn close(mut self) -> Result<u64, Error> {
        self.guard(Self::close_inner)
    }

    fn close_inner(&mut self) -> Result<u64, Error> {
        let restored = self.frame.counted.buffer_count;
        let left = PlanMismatch::BuffersLeft { restored };
        let f = &self.frame;
        if f.pending_len.is_some() || f.chunk_at < f.chunk_len || f.table.starts_left() > 0 {
            return Err(self.plan(left));
        }
        if self.frame.footer.is_none() && self.load_chunk()? {
            return Err(self.plan(left));
        }
        let f = self.frame;
        let footer = f.footer.unwrap_or_default();
        let frame = Some(f.index);
        if footer.chunks_digest != f.counted.chunks_digest {
            return Err(Error::ChecksumMismatch {
                frame,
                offset: f.footer_offset,
                what: "digest of chunk checksums",
                expected: footer.chunks_digest,
                found: f.counted.chunks_digest,
            });
        }
        if footer != f.counted {
            return Err(Error::Corrupt {
                frame,
                offset: f.footer_offset,
                what: "frame footer disagrees with the frame's chunks",
            });
        }
        let end = self.reader.pos;
        let entry = IndexEntry {
            offset: f.offset,
            frame_len: end - f.offset,
            buffer_count: footer.buffer_count,
            user_bytes: footer.user_bytes,
            style: f.style.to_byte(),
        };
        match self.expected {
            Some(expected) if expected != entry => {
                return Err(Error::Corrupt {
                    frame,
                    offset: f.footer_offset,
                    what: "frame disagrees with its index entry",
                });
            }
            Some(_) => {}
            None => self.reader.entries.push(entry),
        }
        self.reader.next = f.index + 1;
        self.reader.state = State::Ready;
        Ok(end)
    }

    fn plan(&self, mismatch: PlanMismatch) -> Error {
        Error::PlanMismatch { frame: self.frame.index, mismatch }
    }

    fn buffer_done(&mut self, len: u64) {
        self.frame.pending_len = None;
        self.frame.counted.buffer_count += 1;
        self.frame.counted.user_bytes += len;
    }

    fn next_len_inner(&mut self) -> Result<Option<u64>, Error> {
        if let Some(len) = self.frame.pending_len {
            return Ok(Some(len));
        }
        loop {
            if self.frame.footer.is_some() {
                return Ok(None);
            }
            if self.frame.table.starts_left() > 0 {
                let table = &self.reader.dec.table;
                let len = self
                    .frame
                    .table
                    .next(table)
                    .map_err(|_| self.corrupt("length table does not decode"))?;
                // A buffer starts at the current position of the chunk whose table holds
                // its length; a non-empty one needs a byte there (section 6.2), or its
                // length is in the table of a chunk before the one holding its first byte.
                if len.is_some_and(|l| l > 0) && self.frame.chunk_at == self.frame.chunk_len {
                    return Err(self.corrupt(
                        "a non-empty buffer's length is in the table of a chunk whose data ran out",
                    ));
                }
                self.frame.pending_len = len;
                return Ok(len);
            }
            if self.frame.chunk_at < self.frame.chunk_len {
                return Err(self.corrupt("chunk holds data that no buffer starts"));
            }
            self.load_chunk()?;
        }
    }

    fn corrupt(&self, what: &'static str) -> Error {
        self.frame.corrupt(what)
    }

    /// Where the frame ends, for indexed readers.
    fn frame_end(&self) -> Option<u64> {
        self.expected.map(|e| e.offset.saturating_add(e.frame_len))
    }

    /// The unread bytes of the current chunk, loading the next chunk if it is used up.
    fn chunk_rest(&mut self, at_footer: &'static str) -> Result<&[u8], Error> {
        if self.frame.chunk_at == self.frame.chunk_len {
            if self.frame.table.starts_left() > 0 {
                return Err(self.corrupt("a buffer starts in a chunk whose data ran out"));
            }
            if !self.load_chunk()? {
                return Err(Error::Corrupt {
                    frame: Some(self.frame.index),
                    offset: self.frame.footer_offset,
                    what: at_footer,
                });
            }
        }
        let data = self.reader.dec.staged(self.frame.style);
        Ok(data.get(self.frame.chunk_at..self.frame.chunk_len).unwrap_or_default())
    }

    /// Reads the next chunk (checked against its checks) into internal memory, or the
    /// footer. Returns `false` when the footer was reached. The chunk being left must be
    /// used up, table included.
    fn load_chunk(&mut self) -> Result<bool, Error> {
        Ok(self.load_chunk_into(&mut [])? != Loaded::Footer)
    }

    /// Steps over the next chunk by its header, without reading its data or table (nothing
    /// of it is used, so nothing of it is checked but its lengths). Returns `false` at the
    /// footer.
    fn skip_chunk(&mut self) -> Result<bool, Error> {
        let frame_end = self.frame_end();
        let at = self.reader.pos;
        let mut hb = [0u8; CHUNK_HEADER_LEN];
        read(
            &mut self.reader.source,
            &mut self.reader.pos,
            &mut hb,
            "chunk header or frame footer",
        )?;
        if hb.starts_with(&FOOTER_MAGIC) {
            return Ok(false);
        }
        let h = chunk_header(&hb, &self.frame, at, frame_end)?;
        let next =
            at + (CHUNK_HEADER_LEN as u64) + u64::from(h.stored_len) + u64::from(h.table_len);
        self.reader.seek(next)?;
        let f = &mut self.frame;
        f.counted.chunk_count += 1;
        f.produced += u64::from(h.logical_len);
        f.chunk_offset = at;
        f.chunk_len = 0;
        f.chunk_at = 0;
        f.table = TableCursor::new(0);
        Ok(true)
    }

    /// As [`load_chunk`](Self::load_chunk), straight into `buf` when the chunk fits it.
    fn load_chunk_into(&mut self, buf: &mut [u8]) -> Result<Loaded, Error> {
        let frame_end = self.frame_end();
        let Reader { source, pos, dec, .. } = &mut *self.reader;
        let mut fill = Fill::new(dec, buf);
        let supply = self.supply.as_deref_mut();
        load_chunk(source, pos, &mut self.frame, frame_end, &mut fill, supply)
    }

    /// Reads the frame's next bytes as one stream, the concatenation of its buffers (what
    /// `std::io::Read` needs; see `stream.rs`): copies into `out` at most the rest of the
    /// current chunk, every byte from a chunk that passed its checks, and returns how many.
    /// Memory stays at one chunk. Returns 0 for an empty `out`, and at the end of the frame
    /// only once the footer agrees with the chunks read (a missing chunk is an error, not
    /// a short stream). A buffer left part-way stays pending with its remaining length,
    /// which [`next_len`](Self::next_len) and [`read_into`](Self::read_into) then see.
    ///
    /// # Errors
    /// Corruption, truncation or I/O errors, after which the reader is failed.
    #[cfg(feature = "std")]
    pub(crate) fn read_stream(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        self.guard(|s| {
            while !out.is_empty() {
                let Some(left) = s.next_len_inner()? else {
                    let f = &s.frame;
                    let footer = f.footer.unwrap_or_default();
                    let (frame, offset) = (Some(f.index), f.footer_offset);
                    if footer.chunks_digest != f.counted.chunks_digest {
                        return Err(Error::ChecksumMismatch {
                            frame,
                            offset,
                            what: "digest of chunk checksums",
                            expected: footer.chunks_digest,
                            found: f.counted.chunks_digest,
                        });
                    }
                    if footer != f.counted {
                        let what = "frame footer disagrees with the frame's chunks";
                        return Err(Error::Corrupt { frame, offset, what });
                    }
                    return Ok(0);
                };
                if left == 0 {
                    s.buffer_done(0);
                    continue;
                }
                let chunk = s.chunk_rest("frame ends inside a buffer")?;
                let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX)).min(out.len());
                if let (Some(dst), Some(src)) = (out.get_mut(..n), chunk.get(..n)) {
                    dst.copy_from_slice(src);
                }
                s.reader.dec.copied += n as u64;
                s.frame.chunk_at += n;
                s.frame.counted.user_bytes += n as u64;
                let rest = left - n as u64;
                if rest == 0 {
                    s.frame.pending_len = None;
                    s.frame.counted.buffer_count += 1;
                } else {
                    s.frame.pending_len = Some(rest);
                }
                if n > 0 {
                    return Ok(n);
                }
                // An empty chunk inside a buffer (damaged or hostile input): load the next.
            }
            Ok(0)
        })
    }
}

/// Reads the next chunk of frame `f`, checked against its checks, or the footer. The chunk
/// being left must be used up, table included. A chunk that holds only bytes of the buffer
/// `fill` is filling goes straight into it (for LZ4 only when the frame's history is there
/// too: 64 KiB of the buffer before the chunk, or the whole frame so far), which the
/// cursor shows as a chunk read to its end; any other chunk goes to internal memory.
fn load_chunk<S: Source>(
    source: &mut S,
    pos: &mut u64,
    f: &mut FrameCursor,
    frame_end: Option<u64>,
    fill: &mut Fill<'_, '_>,
    supply: Option<&mut (dyn InheritedChunks + '_)>,
) -> Result<Loaded, Error> {
    if !f.table.is_exhausted(&fill.dec.table) {
        return Err(f.corrupt("length table holds more than the chunk's buffers"));
    }
    let frame = Some(f.index);
    let at = *pos;
    let mut fb = [0u8; FRAME_FOOTER_LEN];
    let (head, rest) = fb.split_at_mut(CHUNK_HEADER_LEN);
    read(source, pos, head, "chunk header or frame footer")?;
    if head.starts_with(&FOOTER_MAGIC) {
        read(source, pos, rest, "frame footer")?;
        let footer = FrameFooter::decode(&fb, f.header_check)
            .map_err(|e| wire_error(e, frame, at, "frame footer"))?;
        f.footer = Some(footer);
        f.footer_offset = at;
        f.chunk_len = 0;
        f.chunk_at = 0;
        return Ok(Loaded::Footer);
    }
    let mut hb = [0u8; CHUNK_HEADER_LEN];
    hb.copy_from_slice(head);
    let h = chunk_header(&hb, f, at, frame_end)?;
    let (logical, stored, table_len) =
        (h.logical_len as usize, h.stored_len as usize, h.table_len as usize);
    let inherited = f.inherits && stored == 0 && logical > 0;
    // Straight into the caller's buffer when the chunk holds only its bytes and, for LZ4,
    // the history the chunk may reference is in the buffer too.
    let done = fill.done;
    let since = usize::try_from(f.produced - f.history_from).unwrap_or(usize::MAX);
    let direct = logical > 0
        && logical <= fill.buf.len() - done
        && (inherited || f.style == Style::Raw || done >= since.min(LZ4_HISTORY));
    fill.dec.inherited = inherited && !direct;
    let mut check = h.stored_check_start();
    let decoded = match f.style {
        _ if inherited => Ok(None),
        Style::Raw => {
            let dst = if direct {
                fill.buf.get_mut(done..done + logical)
            } else {
                fill.dec.raw.as_mut_slice().get_mut(..logical)
            };
            Ok(read_checksummed(source, pos, dst.unwrap_or_default(), "chunk data")?)
        }
        Style::Lz4 => {
            decode_lz4(source, pos, fill, &h, frame, &mut check, direct.then_some(since))?
                .map(|()| None)
        }
    };
    let dec = &mut *fill.dec;
    dec.table.resize(table_len, 0);
    read(source, pos, &mut dec.table, "chunk length table")?;
    check.update(&dec.table);
    let found = check.digest();
    if found != h.stored_check {
        let what = "chunk header, stored data or length table";
        return Err(Error::ChecksumMismatch {
            frame,
            offset: at,
            what,
            expected: h.stored_check,
            found,
        });
    }
    let hashed =
        if inherited { Some(fetch_inherited(f, fill, supply, direct, logical)?) } else { decoded? };
    let data = if direct {
        fill.buf.get(done..done + logical).unwrap_or_default()
    } else if logical == 0 {
        &[]
    } else {
        fill.dec.staged(f.style).get(..logical).unwrap_or_default()
    };
    let found = hashed.unwrap_or_else(|| checksum(data));
    if found != h.checksum {
        return Err(Error::ChecksumMismatch {
            frame,
            offset: at,
            what: if inherited { "chunk inherited from the parent" } else { "chunk" },
            expected: h.checksum,
            found,
        });
    }
    f.counted.chunk_count += 1;
    f.counted.chunk_bytes += (CHUNK_HEADER_LEN + stored + table_len) as u64;
    f.counted.chunks_digest = chain_digest(f.counted.chunks_digest, h.checksum);
    f.produced += logical as u64;
    f.chunk_offset = at;
    f.chunk_checksum = h.checksum;
    f.chunk_len = logical;
    f.table = TableCursor::new(h.starts);
    if direct {
        f.chunk_at = logical;
        fill.done += logical;
        Ok(Loaded::Direct)
    } else {
        f.chunk_at = 0;
        Ok(Loaded::Staged)
    }
}

/// Copies the current chunk, inherited from the parent, from `supply`: into `fill`'s buffer
/// when `direct`, else into internal memory. Returns the XXH3-64 of the bytes as the
/// supply checked them, which the caller compares with the chunk's checksum.
fn fetch_inherited(
    f: &mut FrameCursor,
    fill: &mut Fill<'_, '_>,
    supply: Option<&mut (dyn InheritedChunks + '_)>,
    direct: bool,
    logical: usize,
) -> Result<u64, Error> {
    let chunk = f.counted.chunk_count;
    let done = fill.done;
    let dst = if direct {
        fill.buf.get_mut(done..done + logical)
    } else {
        fill.dec.raw.as_mut_slice().get_mut(..logical)
    };
    let supply = supply.ok_or(Error::InvalidUse(Misuse::ParentNeeded { frame: f.index }))?;
    let sum = supply
        .read_chunk(f.index, chunk, dst.unwrap_or_default())
        .map_err(|error| Error::Parent { frame: f.index, chunk, error: Box::new(error) })?;
    if f.style == Style::Lz4 {
        // LZ4 history restarts after an inherited chunk (docs/format.md, 12.3).
        if let Some(d) = fill.dec.decompressor.as_mut() {
            d.reset();
        }
        fill.stale = None;
    }
    f.history_from = f.produced + logical as u64;
    Ok(sum)
}

/// Decodes the header of the chunk at `at` in frame `f` and checks its lengths against the
/// frame's style and, for indexed readers, the frame's end.
fn chunk_header(
    hb: &[u8; CHUNK_HEADER_LEN],
    f: &FrameCursor,
    at: u64,
    frame_end: Option<u64>,
) -> Result<ChunkHeader, Error> {
    let frame = Some(f.index);
    let h = ChunkHeader::decode(hb).map_err(|e| wire_error(e, frame, at, "chunk header"))?;
    let (logical, stored, table_len) =
        (h.logical_len as usize, h.stored_len as usize, h.table_len as usize);
    let stored_ok = match f.style {
        // A chunk inherited from the parent stores nothing (version 2 only).
        _ if f.inherits && stored == 0 && logical > 0 => true,
        Style::Raw => stored == logical,
        Style::Lz4 if logical == 0 => stored == 0,
        Style::Lz4 => stored > 0 && stored <= lz4_bound(logical),
    };
    // An indexed reader knows where the frame ends: a damaged length is caught here
    // rather than after reading into the next frame.
    let chunk_end = (at + (CHUNK_HEADER_LEN + stored + table_len) as u64)
        .saturating_add(FRAME_FOOTER_LEN as u64);
    if frame_end.is_some_and(|end| chunk_end > end) {
        return Err(Error::Corrupt {
            frame,
            offset: at,
            what: "chunk runs past the frame end given by the index",
        });
    }
    if !stored_ok {
        return Err(Error::Corrupt {
            frame,
            offset: at,
            what: "stored length is impossible for the frame's style",
        });
    }
    Ok(h)
}

/// Reads an LZ4 chunk's stored bytes (borrowed when the source is memory), feeds them to
/// the stored check, and decodes them with the frame's history: into the decompressor's
/// memory, or when `direct` into `fill`'s buffer at its position, with the buffer's bytes
/// before it as history. The outer `Result` is for reading; the inner one says whether the
/// block decoded, which the caller reports only after the stored check, the more precise
/// verdict, has passed.
fn decode_lz4<S: Source>(
    source: &mut S,
    pos: &mut u64,
    fill: &mut Fill<'_, '_>,
    h: &ChunkHeader,
    frame: Option<u64>,
    check: &mut Digest,
    direct: Option<usize>,
) -> Result<Result<(), Error>, Error> {
    let stored = h.stored_len as usize;
    if stored == 0 {
        return Ok(Ok(()));
    }
    if direct.is_none() {
        // A decode through the decompressor's memory needs its history current.
        fill.rehome();
    }
    let Decoder { decompressor, stored: scratch, .. } = &mut *fill.dec;
    let d = decompressor
        .as_mut()
        .ok_or(Error::UnsupportedStyle { style: Style::Lz4.to_byte(), frame })?;
    let bytes = match source.read_borrowed(stored) {
        Some(Ok(b)) => {
            *pos += stored as u64;
            b
        }
        Some(Err(e)) if e.kind() == IoErrorKind::UnexpectedEof => {
            return Err(Error::Truncated { offset: *pos, what: "chunk data" });
        }
        Some(Err(error)) => return Err(Error::Io { offset: *pos, error }),
        None => {
            let buf = scratch.as_mut_slice().get_mut(..stored).unwrap_or_default();
            read(source, pos, buf, "chunk data")?;
            buf
        }
    };
    check.update(bytes);
    let at = *pos - (stored + CHUNK_HEADER_LEN) as u64;
    let logical = h.logical_len as usize;
    let result = if let Some(since) = direct {
        // The block sees the frame's bytes since the start or the last inherited chunk.
        let end = fill.done + logical;
        let history = fill.done.min(since);
        let out = fill.buf.get_mut(fill.done - history..end).unwrap_or_default();
        d.decompress_into(bytes, out, history).map(|()| fill.stale = Some((end, history + logical)))
    } else {
        d.decompress_linked(bytes, logical)
    };
    // The decoder's own words say what is wrong: a block that does not decode to the
    // chunk's logical length, or one with a match offset of 0 (section 6.3).
    Ok(result.map_err(|e| Error::Corrupt { frame, offset: at, what: e.message }))
}

/// Where a [`ParentReader`](crate::ParentReader) is in the frame it reads chunks from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkCursor {
    frame: FrameCursor,
    expected: Option<IndexEntry>,
}

impl<S: Source> Reader<S> {
    /// The checkpoint this one builds on, as its frame index names it: known after
    /// [`Reader::open`], and for a streaming reader once the index was read.
    pub fn parent(&self) -> Option<ParentRef> {
        self.parent
    }

    /// The format version, once known (1 without a parent, 2 with one).
    pub fn format_version(&self) -> Option<u16> {
        self.version
    }

    /// The checkpoint's lineage digest: what a checkpoint built on this one names it by
    /// (`docs/format.md`, section 12.2). Reads every frame's header and footer.
    ///
    /// # Errors
    /// [`Error::InvalidUse`] for streaming readers or with a frame open; corruption or I/O
    /// errors in a frame header or footer.
    pub fn lineage_digest(&mut self) -> Result<u64, Error> {
        let mut digests = Vec::with_capacity(self.entries.len());
        self.walk_frames(|_, _, footer| {
            digests.push(footer.chunks_digest);
            Ok(())
        })?;
        Ok(lineage_digest(self.tail_check.unwrap_or_default(), &digests))
    }

    /// The length and checksum of every chunk, frame by frame (the offsets of each frame's
    /// first chunk in the returned list), and the lineage digest: what a writer needs to
    /// build on this checkpoint. Reads chunk headers only, and checks each frame's chunk
    /// checksums against its footer's digest.
    pub(crate) fn chunk_sums(&mut self) -> Result<(Vec<usize>, Vec<ChunkSum>, u64), Error> {
        let mut starts = Vec::with_capacity(self.entries.len());
        let mut sums = Vec::new();
        let mut digests = Vec::with_capacity(self.entries.len());
        self.walk_frames(|source, entry, footer| {
            starts.push(sums.len());
            let frame = Some(starts.len() as u64 - 1);
            let footer_at = entry.offset + entry.frame_len - FRAME_FOOTER_LEN as u64;
            let mut at = entry.offset + FRAME_HEADER_LEN as u64;
            let mut chained = 0u64;
            while at < footer_at {
                let mut hb = [0u8; CHUNK_HEADER_LEN];
                let mut pos = at;
                source.seek(at).map_err(|error| Error::Io { offset: at, error })?;
                read(source, &mut pos, &mut hb, "chunk header")?;
                let h = ChunkHeader::decode(&hb)
                    .map_err(|e| wire_error(e, frame, at, "chunk header"))?;
                sums.push(ChunkSum { len: h.logical_len, checksum: h.checksum });
                chained = chain_digest(chained, h.checksum);
                at = at.saturating_add(
                    (CHUNK_HEADER_LEN as u64) + u64::from(h.stored_len) + u64::from(h.table_len),
                );
            }
            let count = (sums.len() - starts.last().copied().unwrap_or_default()) as u64;
            if at != footer_at || chained != footer.chunks_digest || count != footer.chunk_count {
                return Err(Error::Corrupt {
                    frame,
                    offset: entry.offset,
                    what: "frame's chunk headers disagree with its footer",
                });
            }
            digests.push(footer.chunks_digest);
            Ok(())
        })?;
        Ok((starts, sums, lineage_digest(self.tail_check.unwrap_or_default(), &digests)))
    }

    /// Reads every frame's header and footer (checked against each other and the index)
    /// and hands each footer to `each`.
    fn walk_frames(
        &mut self,
        mut each: impl FnMut(&mut S, &IndexEntry, &FrameFooter) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if !self.indexed {
            return Err(Error::InvalidUse(Misuse::NotSeekable));
        }
        if self.state == State::InFrame {
            return Err(Error::InvalidUse(Misuse::FrameAlreadyOpen));
        }
        self.usable()?;
        let entries = core::mem::take(&mut self.entries);
        let result = (|| {
            for (i, entry) in (0u64..).zip(&entries) {
                self.seek(entry.offset)?;
                let mut hb = [0u8; FRAME_HEADER_LEN];
                read(&mut self.source, &mut self.pos, &mut hb, "frame header")?;
                let frame = self.check_header(&hb, entry.offset, i)?;
                let footer_at = entry.offset + entry.frame_len - FRAME_FOOTER_LEN as u64;
                self.seek(footer_at)?;
                let mut fb = [0u8; FRAME_FOOTER_LEN];
                read(&mut self.source, &mut self.pos, &mut fb, "frame footer")?;
                let footer = FrameFooter::decode(&fb, frame.header_check)
                    .map_err(|e| wire_error(e, Some(i), footer_at, "frame footer"))?;
                each(&mut self.source, entry, &footer)?;
            }
            Ok(())
        })();
        self.entries = entries;
        result.map_err(|e| self.fail(e))
    }

    /// Opens frame `index` of a checkpoint that builds on a parent, reading the chunks it
    /// inherits from `parent` (indexed readers only). Every chunk, inherited or not, is
    /// checked against this checkpoint's own checksums.
    ///
    /// # Errors
    /// [`Error::ParentMismatch`] if `parent` is not the checkpoint this one names (another
    /// id, or the same id with another lineage digest); [`Error::InvalidUse`] with
    /// [`Misuse::ParentPlacement`] if this checkpoint names no parent; otherwise as
    /// [`open_frame`](Self::open_frame).
    pub fn open_frame_inheriting<'r>(
        &'r mut self,
        index: u64,
        parent: &'r mut (dyn InheritedChunks + 'r),
    ) -> Result<FrameReader<'r, S>, Error> {
        let named = self.parent.ok_or(Error::InvalidUse(Misuse::ParentPlacement))?;
        let given = parent.identity();
        if named != given {
            return Err(named.mismatch(given));
        }
        let mut frame = self.open_frame(index)?;
        frame.supply = Some(parent);
        Ok(frame)
    }

    /// As [`next_frame`](Self::next_frame), reading inherited chunks from `parent`. A
    /// streaming reader learns which parent the checkpoint names only from its index, at
    /// the end: it then fails with [`Error::ParentMismatch`] if `parent` is not that one
    /// (every chunk already handed out was checked against this checkpoint's checksums).
    ///
    /// # Errors
    /// As [`next_frame`](Self::next_frame) and [`open_frame_inheriting`](Self::open_frame_inheriting).
    pub fn next_frame_inheriting<'r>(
        &'r mut self,
        parent: &'r mut (dyn InheritedChunks + 'r),
    ) -> Result<Option<FrameReader<'r, S>>, Error> {
        let given = parent.identity();
        if let Some(named) = self.parent
            && named != given
        {
            return Err(named.mismatch(given));
        }
        self.given_parent = Some(given);
        let frame = self.next_frame()?;
        Ok(frame.map(|mut f| {
            f.supply = Some(parent);
            f
        }))
    }

    /// Copies the logical bytes of chunk `chunk` of frame `frame` into `out`, which must
    /// have the chunk's length, after the chunk's checks; `cursor` keeps the place in the
    /// frame so that the chunks of a frame asked for in order are read in one pass (an LZ4
    /// chunk needs the chunks before it decoded).
    pub(crate) fn copy_chunk(
        &mut self,
        cursor: &mut Option<ChunkCursor>,
        supply: Option<&mut (dyn InheritedChunks + '_)>,
        (frame, chunk): (u64, u64),
        out: &mut [u8],
    ) -> Result<u64, Error> {
        let reuse = cursor.as_ref().is_some_and(|c| {
            c.frame.index == frame
                && c.frame.counted.chunk_count <= chunk
                && c.frame.footer.is_none()
        });
        if !reuse {
            *cursor = None;
            if self.state == State::InFrame {
                self.state = State::Ready;
            }
            let opened = self.open_frame(frame)?;
            *cursor = Some(ChunkCursor { frame: opened.frame, expected: opened.expected });
        }
        let Some(at) = cursor.as_mut() else {
            return Err(Error::InvalidUse(Misuse::NoSuchFrame { index: frame, frame_count: 0 }));
        };
        // Shortens the supply's trait-object lifetime to this call's.
        let supply = supply.map(|p| -> &mut dyn InheritedChunks { p });
        let mut fr = FrameReader { reader: self, frame: at.frame, expected: at.expected, supply };
        let result = fr.guard(|s| {
            loop {
                // Skip what is left of the current chunk: its buffers are not asked for.
                s.frame.chunk_at = s.frame.chunk_len;
                s.frame.table = TableCursor::new(0);
                s.frame.pending_len = None;
                s.reader.dec.table.clear();
                let wanted = s.frame.counted.chunk_count == chunk;
                if !wanted && s.frame.style == Style::Raw {
                    // A RAW chunk before the wanted one is not needed, not even as history.
                    if !s.skip_chunk()? {
                        let what = "frame has fewer chunks than a checkpoint built on it refers to";
                        return Err(s.corrupt(what));
                    }
                    continue;
                }
                // The wanted chunk goes straight into `out` when it can; the ones before it
                // are checked (and LZ4 ones decoded, for their history) in internal memory.
                let loaded = s.load_chunk_into(if wanted { &mut *out } else { &mut [] })?;
                if loaded == Loaded::Footer {
                    let what = "frame has fewer chunks than a checkpoint built on it refers to";
                    return Err(s.corrupt(what));
                }
                if !wanted {
                    continue;
                }
                if s.frame.chunk_len != out.len() {
                    return Err(s.corrupt("chunk is not as long as a checkpoint built on it says"));
                }
                if loaded == Loaded::Staged {
                    let data = s.reader.dec.staged(s.frame.style);
                    out.copy_from_slice(data.get(..out.len()).unwrap_or_default());
                    s.reader.dec.copied += out.len() as u64;
                }
                return Ok(s.frame.chunk_checksum);
            }
        });
        at.frame = fr.frame;
        result
    }
}
