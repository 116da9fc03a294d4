//! Writing a checkpoint: [`Writer`] and the per-frame [`FrameWriter`].

use crate::aligned::AlignedBytes;
use crate::checksum::{chain_digest, checksum, copy_checksummed};
use crate::chunker::{Chunker, Step, Table};
use crate::codec::{ChunkCompressor, Style, default_compressor, lz4_bound};
use crate::error::{Error, ErrorKind, IoError, Misuse};
use crate::id::CheckpointId;
use crate::inherit::{ChunkSum, ParentChunks};
use crate::io::{Sink, SliceSink, VecSink};
use crate::table::TABLE_MAX;
use crate::wire::{
    CHUNK_HEADER_LEN, CHUNK_MAX, ChunkHeader, FORMAT_VERSION, FORMAT_VERSION_INHERITING,
    FrameFooter, FrameHeader, INDEX_ENTRY_LEN, INDEX_FLAG_PARENT, IndexEntry, ParentRecord, Tail,
    encode_index_header,
};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;

/// What a finished checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// The checkpoint's identity.
    pub id: CheckpointId,
    /// Number of frames.
    pub frames: u64,
    /// Total length in bytes, index and tail included.
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    InFrame,
    Finished,
    Failed(ErrorKind),
}

/// Two 64 KiB halves, each followed by a gap byte so that they are never contiguous with
/// each other (liblz4 would otherwise treat them as one prefix; see `ChunkCompressor`).
struct Staging {
    mem: AlignedBytes,
    half: usize,
    len: usize,
}

/// A half and its gap; the gap is a cache line so that both halves stay 64-byte aligned.
const HALF_STRIDE: usize = CHUNK_MAX + 64;

impl Staging {
    fn new() -> Self {
        Self { mem: AlignedBytes::zeroed(2 * HALF_STRIDE), half: 0, len: 0 }
    }
    fn current(&self) -> &[u8] {
        let start = self.half * HALF_STRIDE;
        self.mem.as_slice().get(start..start + self.len).unwrap_or_default()
    }
    /// Lengthens the current half by `len` bytes and lends them to be filled.
    fn extend(&mut self, len: usize) -> Option<&mut [u8]> {
        let start = self.half * HALF_STRIDE + self.len;
        let dst = self.mem.as_mut_slice().get_mut(start..start + len)?;
        self.len += len;
        Some(dst)
    }
    fn push(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.extend(bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    fn flip(&mut self) {
        self.half ^= 1;
        self.len = 0;
    }
}

/// Everything a frame's encoding needs besides the sink, reused from frame to frame so
/// the hot path does not allocate.
struct Encoder {
    staging: Staging,
    chunker: Chunker,
    scratch: AlignedBytes,
    codec: Codec,
}

/// What turns a chunk into stored bytes: the compressor, and the parent's chunks of the
/// open frame, which a chunk equal to one of them refers to instead of storing its bytes.
struct Codec {
    compressor: Option<Box<dyn ChunkCompressor>>,
    /// The parent's chunks of the open frame, by chunk index (empty without a parent).
    inherit: Vec<ChunkSum>,
    /// Logical bytes written as references to the parent so far.
    inherited: u64,
    /// Whether the last chunk compared with the parent's differed. Changes come in runs, so
    /// the next RAW chunk is then copied and hashed in one pass before it is compared (a
    /// full write's cost), instead of hashed first and copied after.
    last_differed: bool,
}

impl Encoder {
    fn new(compressor: Option<Box<dyn ChunkCompressor>>) -> Self {
        Self {
            staging: Staging::new(),
            chunker: Chunker::new(true),
            scratch: AlignedBytes::zeroed(CHUNK_HEADER_LEN + lz4_bound(CHUNK_MAX) + TABLE_MAX),
            codec: Codec { compressor, inherit: Vec::new(), inherited: 0, last_differed: false },
        }
    }

    /// Holds a [`FrameEncoder`]'s place while its encoder is lent to a writer; allocates
    /// nothing and is never used to encode.
    fn placeholder() -> Self {
        Self {
            staging: Staging { mem: AlignedBytes::default(), half: 0, len: 0 },
            chunker: Chunker::new(true),
            scratch: AlignedBytes::default(),
            codec: Codec {
                compressor: None,
                inherit: Vec::new(),
                inherited: 0,
                last_differed: false,
            },
        }
    }
}

/// Counters of the open frame, which become its footer and index entry.
#[derive(Debug, Clone, Copy)]
struct OpenFrame {
    style: Style,
    index: u64,
    offset: u64,
    header_check: u64,
    footer: FrameFooter,
}

/// Writes a checkpoint: a sequence of frames, then the frame index and the tail.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Reader, SliceSource, Style, VecSink, Writer};
///
/// let weights = vec![7u8; 100_000];
/// let names = b"layer0".to_vec();
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([1; 16]));
/// let mut frame = w.open_frame(Style::Lz4)?;
/// assert_eq!(frame.offset(), 0);
/// frame.add(&names)?;
/// frame.add(&weights)?;
/// let end = frame.close()?;
/// let summary = w.finish()?;
/// assert_eq!(summary.frames, 1);
/// let bytes = w.into_sink().into_inner();
/// assert!(end < 1000, "100 kB of one byte compresses well");
///
/// let mut r = Reader::new(SliceSource::new(&bytes));
/// let mut f = r.next_frame()?.expect("one frame");
/// let mut names_back = vec![0u8; names.len()];
/// let mut weights_back = vec![0u8; weights.len()];
/// f.read_into(&mut names_back)?;
/// f.read_into(&mut weights_back)?;
/// f.close()?;
/// r.finish()?;
/// assert_eq!((names_back, weights_back), (names, weights));
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
///
/// A buffer stays borrowed until its frame closes, so it cannot change under the
/// compressor:
/// ```compile_fail,E0506
/// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer};
/// let mut data = vec![1u8; 10];
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([0; 16]));
/// let mut frame = w.open_frame(Style::Lz4).unwrap();
/// frame.add(&data).unwrap();
/// data[0] = 2; // error: `data` is borrowed by the open frame
/// frame.close().unwrap();
/// ```
pub struct Writer<S: Sink> {
    sink: S,
    id: CheckpointId,
    /// Index of the first frame this writer writes (non-zero only inside `FrameEncoder`).
    first_index: u64,
    pos: u64,
    index: Vec<IndexEntry>,
    state: State,
    enc: Encoder,
    /// The checkpoint this one builds on, if any.
    parent: Option<ParentChunks>,
}

impl<S: Sink> core::fmt::Debug for Writer<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Writer")
            .field("id", &self.id)
            .field("pos", &self.pos)
            .field("frames", &self.index.len())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<S: Sink> Writer<S> {
    /// A writer over `sink` using this build's LZ4 codec (if the `lz4` feature is on).
    pub fn new(sink: S, id: CheckpointId) -> Self {
        Self::with_codecs(sink, id, default_compressor())
    }

    /// A writer whose [`Style::Lz4`] frames use `compressor` (`None`: LZ4 unsupported).
    pub fn with_codecs(
        sink: S,
        id: CheckpointId,
        compressor: Option<Box<dyn ChunkCompressor>>,
    ) -> Self {
        Self {
            sink,
            id,
            first_index: 0,
            pos: 0,
            index: Vec::new(),
            state: State::Ready,
            enc: Encoder::new(compressor),
            parent: None,
        }
    }

    /// Makes this checkpoint build on `parent`: a chunk whose logical bytes equal those of
    /// the parent's chunk at the same place (same frame index, same chunk index, same
    /// length and checksum) is written as a reference to it, its header and length table
    /// only. The checkpoint is then written in format version 2 and names the parent by id
    /// and lineage digest; reading it needs the parent
    /// ([`Reader::open_frame_inheriting`](crate::Reader::open_frame_inheriting)).
    ///
    /// The chunk grid of a frame follows its buffers' lengths, so a frame written with the
    /// same buffer lengths as the parent's frame lines up chunk for chunk and stores only
    /// the chunks that changed. LZ4 history restarts after a reference.
    ///
    /// # Errors
    /// [`Error::InvalidUse`] with [`Misuse::ParentPlacement`] once a frame was written or
    /// a parent was set, [`Misuse::OwnParent`] if `parent` has this checkpoint's id.
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::{CheckpointId, ParentChunks, ParentReader, Reader, SliceSource};
    /// use ckpt_frame_core::{Style, VecSink, Writer};
    ///
    /// fn write(id: u8, state: &[u8], parent: Option<ParentChunks>) -> Vec<u8> {
    ///     let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([id; 16]));
    ///     if let Some(p) = parent {
    ///         w.set_parent(p).unwrap();
    ///     }
    ///     let mut f = w.open_frame(Style::Raw).unwrap();
    ///     f.add(state).unwrap();
    ///     f.close().unwrap();
    ///     w.finish().unwrap();
    ///     w.into_sink().into_inner()
    /// }
    /// let mut state = vec![1u8; 1 << 20];
    /// let base = write(1, &state, None);
    /// state[300_000] = 2; // one 64 KiB chunk of sixteen changes
    /// let mut base_reader = Reader::open(SliceSource::new(&base))?;
    /// let parent = ParentChunks::read(&mut base_reader)?;
    /// let delta = write(2, &state, Some(parent));
    /// assert!(delta.len() < 70_000, "one chunk stored, fifteen referred to");
    ///
    /// let mut parent = ParentReader::new(Reader::open(SliceSource::new(&base))?, None)?;
    /// let mut r = Reader::open(SliceSource::new(&delta))?;
    /// let mut f = r.open_frame_inheriting(0, &mut parent)?;
    /// assert_eq!(f.read_to_vec()?, Some(state));
    /// f.close()?;
    /// # Ok::<(), ckpt_frame_core::Error>(())
    /// ```
    pub fn set_parent(&mut self, parent: ParentChunks) -> Result<(), Error> {
        self.usable()?;
        if self.parent.is_some() || !self.index.is_empty() || self.pos != 0 {
            return Err(Error::InvalidUse(Misuse::ParentPlacement));
        }
        if parent.id() == self.id {
            return Err(Error::InvalidUse(Misuse::OwnParent));
        }
        self.parent = Some(parent);
        Ok(())
    }

    /// Logical bytes written so far as references to the parent's chunks (0 without one).
    pub fn inherited_bytes(&self) -> u64 {
        self.enc.codec.inherited
    }

    fn version(&self) -> u16 {
        if self.parent.is_some() { FORMAT_VERSION_INHERITING } else { FORMAT_VERSION }
    }

    /// The checkpoint's identity.
    pub fn id(&self) -> CheckpointId {
        self.id
    }

    /// Bytes written so far: the offset the next frame will get.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.index.len() as u64
    }

    /// The sink, for inspection.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Gives back the sink (whatever state the checkpoint is in).
    pub fn into_sink(self) -> S {
        self.sink
    }

    fn usable(&self) -> Result<(), Error> {
        match self.state {
            State::Ready => Ok(()),
            State::InFrame => Err(Error::InvalidUse(Misuse::FrameAlreadyOpen)),
            State::Finished => Err(Error::InvalidUse(Misuse::AlreadyFinished)),
            State::Failed(first) => Err(Error::Failed { first }),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        if !matches!(e, Error::InvalidUse(_) | Error::Failed { .. }) {
            self.state = State::Failed(e.kind());
        }
        e
    }

    /// Opens the next frame. The frame's buffers stay borrowed until
    /// [`FrameWriter::close`].
    ///
    /// # Errors
    /// [`Error::InvalidUse`] if a frame is still open (an earlier [`FrameWriter`] was dropped
    /// without closing) or the checkpoint is finished; [`Error::UnsupportedStyle`] if this
    /// writer has no codec for `style`; [`Error::Io`] if the header cannot be written.
    pub fn open_frame<'buf>(&mut self, style: Style) -> Result<FrameWriter<'_, 'buf, S>, Error> {
        self.usable()?;
        if style == Style::Lz4 {
            match self.enc.codec.compressor.as_mut() {
                // A reset at every frame start also drops any history left by a frame that
                // was abandoned, so stale pointers into its buffers are never followed.
                Some(c) => c.reset(),
                None => {
                    return Err(Error::UnsupportedStyle { style: style.to_byte(), frame: None });
                }
            }
        }
        let index = self.first_index + self.index.len() as u64;
        let (header, header_check) = FrameHeader {
            version: self.version(),
            style: style.to_byte(),
            index,
            checkpoint_id: self.id.to_bytes(),
        }
        .encode();
        let offset = self.pos;
        if let Err(e) = write(&mut self.sink, &mut self.pos, &header) {
            return Err(self.fail(e));
        }
        self.enc.chunker.reset();
        // Every frame starts from the same state, so its bytes do not depend on what the
        // writer encoded before (parallel encoders must produce the same frame).
        self.enc.staging.len = 0;
        self.enc.staging.half = 0;
        self.enc.codec.inherit.clear();
        self.enc.codec.last_differed = false;
        if let Some(p) = &self.parent {
            self.enc.codec.inherit.extend_from_slice(p.frame(index));
        }
        self.state = State::InFrame;
        Ok(FrameWriter {
            writer: self,
            frame: OpenFrame { style, index, offset, header_check, footer: FrameFooter::default() },
            _buffers: PhantomData,
        })
    }

    /// Appends a frame encoded elsewhere by a [`FrameEncoder`] with this writer's identity
    /// (for example on another thread) and returns its offset. The bytes are exactly those the
    /// writer would have produced itself for the same frame.
    ///
    /// # Errors
    /// [`Error::InvalidUse`] with [`Misuse::ForeignFrame`] if the frame does not come next
    /// (index), belongs to another checkpoint, or its bytes do not match its description;
    /// the other [`Error::InvalidUse`] cases of [`open_frame`](Self::open_frame);
    /// [`Error::Io`] from the sink.
    pub fn append_encoded(&mut self, bytes: &[u8], frame: &EncodedFrame) -> Result<u64, Error> {
        self.usable()?;
        let next = self.first_index + self.index.len() as u64;
        let mut hb = [0u8; crate::wire::FRAME_HEADER_LEN];
        hb.copy_from_slice(bytes.get(..crate::wire::FRAME_HEADER_LEN).unwrap_or(&[0; 40]));
        let header_fits = FrameHeader::decode(&hb).is_ok_and(|(h, _)| {
            h.index == next
                && h.version == self.version()
                && h.checkpoint_id == self.id.to_bytes()
                && h.style == frame.style.to_byte()
        });
        if !header_fits || frame.index != next || bytes.len() as u64 != frame.len {
            return Err(Error::InvalidUse(Misuse::ForeignFrame));
        }
        let offset = self.pos;
        if let Err(e) = write(&mut self.sink, &mut self.pos, bytes) {
            return Err(self.fail(e));
        }
        self.index.push(IndexEntry {
            offset,
            frame_len: frame.len,
            buffer_count: frame.buffer_count,
            user_bytes: frame.user_bytes,
            style: frame.style.to_byte(),
        });
        Ok(offset)
    }

    /// Appends the next `room.len()` frames encoded straight into the sink's memory, for
    /// sinks that lend it ([`Sink::reserve`]): frame `i` (numbered from
    /// [`frames_written`](Self::frames_written)) gets a [`FrameSlot`] of `room[i]` bytes,
    /// `encode` fills the slots (on as many threads as it likes, with
    /// [`FrameSlot::encode`]) and returns each slot's result in order. Frames shorter than
    /// their room (LZ4) are then moved down so that they follow each other; RAW frames given
    /// their exact [`frame_size_bound`](crate::frame_size_bound) are not moved at all.
    ///
    /// Returns `Ok(None)`, without calling `encode`, when the sink does not lend memory
    /// (use [`append_encoded`](Self::append_encoded) then), and otherwise how many frames
    /// were appended: all of them.
    ///
    /// # Errors
    /// The first failed slot's error, in frame order; the frames before it are appended,
    /// none after it, and the writer stays usable. [`Error::InvalidUse`] with
    /// [`Misuse::ForeignFrame`] when a result does not describe the frame in its slot; the
    /// other [`Error::InvalidUse`] cases of [`open_frame`](Self::open_frame); [`Error::Io`]
    /// from the sink's commit.
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::{CheckpointId, FrameEncoder, SliceSink, Style, Writer, frame_size_bound};
    /// let id = CheckpointId::from_bytes([6; 16]);
    /// let data: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100_000]).collect();
    /// let room: Vec<usize> = data
    ///     .iter()
    ///     .map(|d| frame_size_bound(Style::Lz4, [d.len()]).unwrap() as usize)
    ///     .collect();
    /// let mut mem = vec![0u8; 1 << 20];
    /// let mut w = Writer::new(SliceSink::new(&mut mem), id);
    /// let appended = w.append_in_place(&room, |slots| {
    ///     // Each slot could go to another thread.
    ///     let mut enc = FrameEncoder::new(id);
    ///     slots.into_iter().zip(&data).map(|(slot, d)| slot.encode(&mut enc, Style::Lz4, &[d])).collect()
    /// })?;
    /// assert_eq!(appended, Some(4));
    /// w.finish()?;
    /// # Ok::<(), ckpt_frame_core::Error>(())
    /// ```
    pub fn append_in_place<F>(&mut self, room: &[usize], encode: F) -> Result<Option<u64>, Error>
    where
        F: for<'m> FnOnce(Vec<FrameSlot<'m>>) -> Vec<Result<EncodedFrame, Error>>,
    {
        self.usable()?;
        let total = room.iter().try_fold(0usize, |t, &r| t.checked_add(r));
        let version = self.version();
        let Writer { sink, id, first_index, pos, index, .. } = self;
        let Some(mem) = total.and_then(|total| sink.reserve(total)) else {
            return Ok(None);
        };
        let next = *first_index + index.len() as u64;
        let mut slots = Vec::with_capacity(room.len());
        let mut rest: &mut [u8] = &mut *mem;
        for (i, &r) in room.iter().enumerate() {
            let n = r.min(rest.len());
            let (slot, after) = core::mem::take(&mut rest).split_at_mut(n);
            slots.push(FrameSlot { index: next + i as u64, mem: slot });
            rest = after;
        }
        let mut results = encode(slots).into_iter();
        // Check each result against its slot and close the gaps, in frame order.
        let (mut from, mut to) = (0usize, 0usize);
        let mut outcome = Ok(());
        for (i, &r) in room.iter().enumerate() {
            let expected = next + i as u64;
            let frame = match results.next() {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    outcome = Err(e);
                    break;
                }
                None => {
                    outcome = Err(Error::InvalidUse(Misuse::ForeignFrame));
                    break;
                }
            };
            let len = usize::try_from(frame.len).unwrap_or(usize::MAX);
            let header = mem.get(from..).and_then(|m| m.get(..crate::wire::FRAME_HEADER_LEN));
            let fits = len <= r
                && frame.index == expected
                && header.is_some_and(|h| {
                    let mut hb = [0u8; crate::wire::FRAME_HEADER_LEN];
                    hb.copy_from_slice(h);
                    FrameHeader::decode(&hb).is_ok_and(|(h, _)| {
                        h.index == expected
                            && h.version == version
                            && h.checkpoint_id == id.to_bytes()
                            && h.style == frame.style.to_byte()
                    })
                });
            if !fits {
                outcome = Err(Error::InvalidUse(Misuse::ForeignFrame));
                break;
            }
            if from != to {
                mem.copy_within(from..from + len, to);
            }
            index.push(IndexEntry {
                offset: *pos + to as u64,
                frame_len: frame.len,
                buffer_count: frame.buffer_count,
                user_bytes: frame.user_bytes,
                style: frame.style.to_byte(),
            });
            from += r;
            to += len;
        }
        let appended = index.len() as u64 - (next - *first_index);
        if let Err(error) = sink.commit(to) {
            index.truncate(index.len() - usize::try_from(appended).unwrap_or(0));
            let error = Error::Io { offset: *pos, error };
            return Err(self.fail(error));
        }
        *pos += to as u64;
        outcome.map(|()| Some(appended))
    }

    /// Writes the frame index and the tail, then flushes the sink. The checkpoint is
    /// complete (and readable from its end) only after this.
    ///
    /// # Errors
    /// [`Error::InvalidUse`] if a frame is open or the checkpoint is already finished;
    /// [`Error::Io`] from the sink.
    pub fn finish(&mut self) -> Result<CheckpointSummary, Error> {
        if self.state == State::InFrame {
            return Err(Error::InvalidUse(Misuse::FinishInsideFrame));
        }
        self.usable()?;
        let result = self.write_index();
        match result {
            Ok(summary) => {
                self.state = State::Finished;
                Ok(summary)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn write_index(&mut self) -> Result<CheckpointSummary, Error> {
        let index_offset = self.pos;
        let mut index = Vec::with_capacity(32 + self.index.len() * INDEX_ENTRY_LEN);
        match &self.parent {
            Some(p) => {
                index.extend_from_slice(&encode_index_header(INDEX_FLAG_PARENT));
                let record = ParentRecord { checkpoint_id: p.id().to_bytes(), digest: p.digest() };
                index.extend_from_slice(&record.encode());
            }
            None => index.extend_from_slice(&encode_index_header(0)),
        }
        for e in &self.index {
            index.extend_from_slice(&e.encode());
        }
        let tail = Tail {
            version: self.version(),
            index_offset,
            frame_count: self.index.len() as u64,
            checkpoint_id: self.id.to_bytes(),
            index_digest: checksum(&index),
        };
        write(&mut self.sink, &mut self.pos, &index)?;
        write(&mut self.sink, &mut self.pos, &tail.encode())?;
        self.sink.flush().map_err(|error| Error::Io { offset: self.pos, error })?;
        Ok(CheckpointSummary { id: self.id, frames: tail.frame_count, len: self.pos })
    }
}

fn write<S: Sink>(sink: &mut S, pos: &mut u64, bytes: &[u8]) -> Result<(), Error> {
    sink.write_all(bytes).map_err(|error| Error::Io { offset: *pos, error })?;
    *pos += bytes.len() as u64;
    Ok(())
}

/// An open frame of a [`Writer`]. Buffers added live at least as long as this value.
///
/// Dropping it without [`close`](Self::close) abandons the frame: the writer then refuses
/// further frames and `finish` with [`Error::InvalidUse`].
///
/// The other misuses of the C original cannot be written. A buffer cannot be added outside
/// a frame, because `close` consumes the frame:
/// ```compile_fail,E0382
/// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer};
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([0; 16]));
/// let mut frame = w.open_frame(Style::Raw).unwrap();
/// frame.close().unwrap();
/// frame.add(b"late").unwrap(); // error: use of moved value `frame`
/// ```
/// A second frame cannot be opened, nor the checkpoint finished, while a frame is open,
/// because the open frame borrows the writer:
/// ```compile_fail,E0499
/// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer};
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([0; 16]));
/// let first = w.open_frame(Style::Raw).unwrap();
/// let second = w.open_frame(Style::Raw).unwrap(); // error: `w` is already borrowed
/// first.close().unwrap();
/// ```
pub struct FrameWriter<'w, 'buf, S: Sink> {
    writer: &'w mut Writer<S>,
    frame: OpenFrame,
    _buffers: PhantomData<&'buf [u8]>,
}

impl<S: Sink> core::fmt::Debug for FrameWriter<'_, '_, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameWriter").field("frame", &self.frame).finish_non_exhaustive()
    }
}

impl<'buf, S: Sink> FrameWriter<'_, 'buf, S> {
    /// The frame's offset from the start of the checkpoint.
    pub fn offset(&self) -> u64 {
        self.frame.offset
    }

    /// The frame's index in the checkpoint.
    pub fn index(&self) -> u64 {
        self.frame.index
    }

    /// Adds one buffer (any length, 0 included). Bytes may stay referenced by the
    /// compressor until the frame closes, which the `'buf` borrow enforces.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Codec`]; after either, the writer is failed. If the
    /// writer already failed, [`Error::Failed`].
    pub fn add(&mut self, buf: &'buf [u8]) -> Result<(), Error> {
        if let State::Failed(first) = self.writer.state {
            return Err(Error::Failed { first });
        }
        let result = self.add_inner(buf);
        result.map_err(|e| self.writer.fail(e))
    }

    fn add_inner(&mut self, buf: &'buf [u8]) -> Result<(), Error> {
        let Writer { sink, pos, enc, .. } = &mut *self.writer;
        let Encoder { staging, chunker, scratch, codec } = enc;
        let frame = &mut self.frame;
        chunker.buffer(buf.len(), |s| match s {
            Step::Gather { from, len } => {
                staging.push(buf.get(from..from + len).unwrap_or_default());
                Ok(())
            }
            Step::EmitStaged { table, .. } => {
                emit_staged(sink, pos, scratch, codec, frame, staging, table)
            }
            Step::EmitDirect { from, len, table } => {
                // (Compressor contract) `buf` is borrowed for 'buf, which outlives this
                // frame, and is immutable.
                let piece = buf.get(from..from + len).unwrap_or_default();
                emit_chunk(sink, pos, scratch.as_mut_slice(), codec, frame, piece, table)
            }
        })?;
        frame.footer.buffer_count += 1;
        frame.footer.user_bytes += buf.len() as u64;
        Ok(())
    }

    /// Adds one buffer of `len` bytes to a [`Style::Raw`] frame without the caller holding it
    /// in memory: `fill` is called with consecutive pieces of the writer's own memory (at
    /// most 64 KiB each, in order, covering exactly `len` bytes) and must fill each
    /// completely, for example with `read_exact` from a file. The stored bytes are exactly
    /// those [`add`](Self::add) would store for the same data, and each piece is checksummed
    /// and written while it is still in the CPU's cache.
    ///
    /// # Errors
    /// [`Error::InvalidUse`] with [`Misuse::StreamedLz4`] for an LZ4 frame (linked LZ4
    /// matches reach back into earlier pieces, so the whole buffer must stay in memory; use
    /// `add`); [`Error::Input`] with the error `fill` returned; [`Error::Io`] from the sink.
    /// After `Input` or `Io` the writer is failed.
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer};
    /// let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    /// let mut streamed = Writer::new(VecSink::new(), CheckpointId::from_bytes([2; 16]));
    /// let mut f = streamed.open_frame(Style::Raw)?;
    /// let mut rest = &data[..];
    /// f.add_streamed(data.len(), |piece| {
    ///     let (now, later) = rest.split_at(piece.len());
    ///     piece.copy_from_slice(now);
    ///     rest = later;
    ///     Ok(())
    /// })?;
    /// f.close()?;
    /// streamed.finish()?;
    ///
    /// let mut whole = Writer::new(VecSink::new(), CheckpointId::from_bytes([2; 16]));
    /// let mut f = whole.open_frame(Style::Raw)?;
    /// f.add(&data)?;
    /// f.close()?;
    /// whole.finish()?;
    /// assert_eq!(streamed.into_sink().into_inner(), whole.into_sink().into_inner());
    /// # Ok::<(), ckpt_frame_core::Error>(())
    /// ```
    pub fn add_streamed(
        &mut self,
        len: usize,
        fill: impl FnMut(&mut [u8]) -> Result<(), IoError>,
    ) -> Result<(), Error> {
        if let State::Failed(first) = self.writer.state {
            return Err(Error::Failed { first });
        }
        if self.frame.style != Style::Raw {
            return Err(Error::InvalidUse(Misuse::StreamedLz4));
        }
        let result = self.add_streamed_inner(len, fill);
        result.map_err(|e| self.writer.fail(e))
    }

    fn add_streamed_inner(
        &mut self,
        len: usize,
        mut fill: impl FnMut(&mut [u8]) -> Result<(), IoError>,
    ) -> Result<(), Error> {
        let Writer { sink, pos, enc, .. } = &mut *self.writer;
        let Encoder { staging, chunker, scratch, codec } = enc;
        let frame = &mut self.frame;
        let (index, buffer) = (frame.index, frame.footer.buffer_count);
        let mut fill = |dst: &mut [u8]| {
            fill(dst).map_err(|error| Error::Input { frame: index, buffer, error })
        };
        chunker.buffer(len, |s| match s {
            Step::Gather { len, .. } => fill(staging.extend(len).unwrap_or_default()),
            Step::EmitStaged { table, .. } => {
                emit_staged(sink, pos, scratch, codec, frame, staging, table)
            }
            Step::EmitDirect { len, table, .. } => {
                // The scratch area outlives the call and a RAW chunk is written at once,
                // so one piece at a time is enough.
                let mut piece = core::mem::take(scratch);
                let filled = fill(piece.as_mut_slice().get_mut(..len).unwrap_or_default());
                let emitted = filled.and_then(|()| {
                    let data = piece.as_slice().get(..len).unwrap_or_default();
                    emit_chunk(sink, pos, &mut [], codec, frame, data, table)
                });
                *scratch = piece;
                emitted
            }
        })?;
        frame.footer.buffer_count += 1;
        frame.footer.user_bytes += len as u64;
        Ok(())
    }

    /// Adds several buffers in order.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    pub fn add_all<I: IntoIterator<Item = &'buf [u8]>>(&mut self, bufs: I) -> Result<(), Error> {
        bufs.into_iter().try_for_each(|b| self.add(b))
    }

    /// Closes the frame and returns its end offset (one past its last byte), which is where
    /// the next frame will start.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Codec`]; after either, the writer is failed.
    pub fn close(mut self) -> Result<u64, Error> {
        if let State::Failed(first) = self.writer.state {
            return Err(Error::Failed { first });
        }
        let result = self.close_inner();
        result.map_err(|e| self.writer.fail(e))
    }

    fn close_inner(&mut self) -> Result<u64, Error> {
        let Writer { sink, pos, enc, index, state, .. } = &mut *self.writer;
        let Encoder { staging, chunker, scratch, codec } = enc;
        let frame = &mut self.frame;
        chunker.flush(|s| {
            if let Step::EmitStaged { table, .. } = s {
                emit_staged(sink, pos, scratch, codec, frame, staging, table)?;
            }
            Ok::<(), Error>(())
        })?;
        write(sink, pos, &frame.footer.encode(frame.header_check))?;
        index.push(IndexEntry {
            offset: frame.offset,
            frame_len: *pos - frame.offset,
            buffer_count: frame.footer.buffer_count,
            user_bytes: frame.footer.user_bytes,
            style: frame.style.to_byte(),
        });
        *state = State::Ready;
        Ok(*pos)
    }

    /// Adds one buffer holding the bytes of `buf` while borrowing `buf` for this call only
    /// (what `std::io::Write` needs; see `stream.rs`). Chunked as by [`add`](Self::add), so
    /// RAW frames store exactly the same bytes; an LZ4 chunk that `add` would compress
    /// straight from the caller's memory is first copied into the current staging half,
    /// which the chunker has just emptied, and compressed from there like a gathered chunk
    /// (same rule: a half is rewritten only after the other one was compressed after it).
    /// Nothing the compressor may reference later points into `buf`.
    ///
    /// # Errors
    /// As [`add`](Self::add).
    #[cfg(feature = "std")]
    pub(crate) fn add_copied(&mut self, buf: &[u8]) -> Result<(), Error> {
        if let State::Failed(first) = self.writer.state {
            return Err(Error::Failed { first });
        }
        let Writer { sink, pos, enc, .. } = &mut *self.writer;
        let Encoder { staging, chunker, scratch, codec } = enc;
        let frame = &mut self.frame;
        let result = chunker.buffer(buf.len(), |s| match s {
            Step::Gather { from, len } => {
                staging.push(buf.get(from..from + len).unwrap_or_default());
                Ok(())
            }
            Step::EmitStaged { table, .. } => {
                emit_staged(sink, pos, scratch, codec, frame, staging, table)
            }
            Step::EmitDirect { from, len, table } => {
                let piece = buf.get(from..from + len).unwrap_or_default();
                if frame.style == Style::Raw {
                    // A RAW chunk is written at once and never looked at again.
                    return emit_chunk(sink, pos, &mut [], codec, frame, piece, table);
                }
                debug_assert_eq!(
                    staging.len, 0,
                    "the chunker empties staging before a direct chunk"
                );
                staging.push(piece);
                emit_staged(sink, pos, scratch, codec, frame, staging, table)
            }
        });
        if let Err(e) = result {
            return Err(self.writer.fail(e));
        }
        self.frame.footer.buffer_count += 1;
        self.frame.footer.user_bytes += buf.len() as u64;
        Ok(())
    }
}

/// Emits the staging half being gathered as a chunk and starts the other half.
fn emit_staged<S: Sink>(
    sink: &mut S,
    pos: &mut u64,
    scratch: &mut AlignedBytes,
    codec: &mut Codec,
    frame: &mut OpenFrame,
    staging: &mut Staging,
    table: Table<'_>,
) -> Result<(), Error> {
    // (Compressor contract) this half is not written again until the other half or a
    // direct chunk has been compressed after it.
    emit_chunk(sink, pos, scratch.as_mut_slice(), codec, frame, staging.current(), table)?;
    staging.flip();
    Ok(())
}

fn emit_chunk<S: Sink>(
    sink: &mut S,
    pos: &mut u64,
    scratch: &mut [u8],
    codec: &mut Codec,
    frame: &mut OpenFrame,
    chunk: &[u8],
    table: Table<'_>,
) -> Result<(), Error> {
    let theirs = codec.parent_checksum(frame, chunk.len());
    // A RAW chunk after a changed one is copied and hashed in one pass and compared after
    // (`speculated`); any other chunk with a parent is hashed and compared first. Either
    // way it is hashed once.
    let speculated = theirs.is_some() && frame.style == Style::Raw && codec.last_differed;
    let known_sum = match theirs {
        Some(expected) if !speculated => {
            let sum = checksum(chunk);
            codec.last_differed = sum != expected;
            if sum == expected {
                return emit_reference(sink, pos, codec, frame, chunk.len(), sum, table);
            }
            Some(sum)
        }
        _ => None,
    };
    let compressor = &mut codec.compressor;
    let chunk_offset = *pos;
    let mut header = ChunkHeader {
        logical_len: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
        stored_len: 0,
        starts: table.starts,
        table_len: u32::try_from(table.len).unwrap_or(u32::MAX),
        checksum: 0,
        stored_check: 0,
    };
    let stored_len = match frame.style {
        Style::Raw => {
            header.stored_len = header.logical_len;
            let total = CHUNK_HEADER_LEN + chunk.len() + table.bytes.len();
            // Into the sink's own memory when it lends some: the data is read once, hashed
            // and copied piece by piece while in the cache.
            let lent = sink.reserve(total).and_then(|out| {
                let (head, rest) = out.split_at_mut_checked(CHUNK_HEADER_LEN)?;
                let (body, tail) = rest.split_at_mut_checked(chunk.len())?;
                header.checksum = match known_sum {
                    Some(sum) => {
                        body.copy_from_slice(chunk);
                        sum
                    }
                    None => copy_checksummed(body, chunk),
                };
                tail.copy_from_slice(table.bytes);
                header.stored_check = header.stored_check_of(&[], table.bytes);
                head.copy_from_slice(&header.encode());
                Some(())
            });
            if lent.is_none() {
                header.checksum = known_sum.unwrap_or_else(|| checksum(chunk));
            }
            if speculated {
                codec.last_differed = theirs != Some(header.checksum);
                if !codec.last_differed {
                    // The lent bytes were never committed, so they are not output.
                    let sum = header.checksum;
                    return emit_reference(sink, pos, codec, frame, chunk.len(), sum, table);
                }
            }
            if lent.is_some() {
                sink.commit(total).map_err(|error| Error::Io { offset: *pos, error })?;
                *pos += total as u64;
            } else {
                header.stored_check = header.stored_check_of(&[], table.bytes);
                write(sink, pos, &header.encode())?;
                write(sink, pos, chunk)?;
                write(sink, pos, table.bytes)?;
            }
            chunk.len()
        }
        Style::Lz4 => {
            header.checksum = known_sum.unwrap_or_else(|| checksum(chunk));
            let max = CHUNK_HEADER_LEN + lz4_bound(chunk.len()) + table.len;
            // Compress straight into the sink's memory when it lends some.
            let lent = sink.reserve(max);
            let lent_used = lent.is_some();
            let out: &mut [u8] = match lent {
                Some(mem) => mem,
                None => scratch.get_mut(..max).unwrap_or_default(),
            };
            let (head, body) = out.split_at_mut(CHUNK_HEADER_LEN.min(out.len()));
            let n = compress_chunk(compressor, frame, chunk_offset, chunk, body)?;
            if let Some(dst) = body.get_mut(n..n + table.len) {
                dst.copy_from_slice(table.bytes);
            }
            header.stored_len = u32::try_from(n).unwrap_or(u32::MAX);
            header.stored_check =
                header.stored_check_of(body.get(..n).unwrap_or_default(), table.bytes);
            head.copy_from_slice(&header.encode());
            let total = CHUNK_HEADER_LEN + n + table.len;
            if lent_used {
                sink.commit(total).map_err(|error| Error::Io { offset: *pos, error })?;
                *pos += total as u64;
            } else {
                write(sink, pos, scratch.get(..total).unwrap_or_default())?;
            }
            n
        }
    };
    let f = &mut frame.footer;
    f.chunk_count += 1;
    f.chunk_bytes += (CHUNK_HEADER_LEN + stored_len + table.len) as u64;
    f.chunks_digest = chain_digest(f.chunks_digest, header.checksum);
    Ok(())
}

/// Compresses `chunk` into the front of `body` as the frame's next linked block; returns
/// its stored length.
fn compress_chunk(
    compressor: &mut Option<Box<dyn ChunkCompressor>>,
    frame: &OpenFrame,
    chunk_offset: u64,
    chunk: &[u8],
    body: &mut [u8],
) -> Result<usize, Error> {
    if chunk.is_empty() {
        // A chunk holding only lengths: the compressor's history is untouched.
        return Ok(0);
    }
    let compressor = compressor.as_mut().ok_or(Error::UnsupportedStyle {
        style: frame.style.to_byte(),
        frame: Some(frame.index),
    })?;
    let block = body.get_mut(..lz4_bound(chunk.len())).unwrap_or_default();
    // SAFETY: `emit_chunk`'s callers pass chunks that satisfy `compress_linked`'s contract:
    // caller buffers borrowed until frame close, or staging halves rewritten only after the
    // compressor has moved past them; the compressor was reset at frame open and after every
    // inherited chunk.
    unsafe { compressor.compress_linked(chunk, block) }.map_err(|error| Error::Codec {
        frame: frame.index,
        offset: chunk_offset,
        error,
    })
}

impl Codec {
    /// The checksum of the parent's chunk at the place of the next chunk, when there is
    /// one of the same (non-zero) length for it to be compared with.
    fn parent_checksum(&self, frame: &OpenFrame, chunk_len: usize) -> Option<u64> {
        let at = usize::try_from(frame.footer.chunk_count).ok()?;
        let theirs = self.inherit.get(at)?;
        (chunk_len != 0 && theirs.len as usize == chunk_len).then_some(theirs.checksum)
    }
}

/// Writes a chunk that refers to the parent's chunk at the same place: its header, with
/// no stored data, and its length table (`docs/format.md`, section 12.3).
fn emit_reference<S: Sink>(
    sink: &mut S,
    pos: &mut u64,
    codec: &mut Codec,
    frame: &mut OpenFrame,
    logical_len: usize,
    sum: u64,
    table: Table<'_>,
) -> Result<(), Error> {
    let mut header = ChunkHeader {
        logical_len: u32::try_from(logical_len).unwrap_or(u32::MAX),
        stored_len: 0,
        starts: table.starts,
        table_len: u32::try_from(table.len).unwrap_or(u32::MAX),
        checksum: sum,
        stored_check: 0,
    };
    header.stored_check = header.stored_check_of(&[], table.bytes);
    write(sink, pos, &header.encode())?;
    write(sink, pos, table.bytes)?;
    if frame.style == Style::Lz4 {
        // The reader does not decode the parent's chunk into its history, so the next
        // block starts without one (and the compressor forgets the chunks before).
        if let Some(c) = codec.compressor.as_mut() {
            c.reset();
        }
    }
    codec.inherited += logical_len as u64;
    let f = &mut frame.footer;
    f.chunk_count += 1;
    f.chunk_bytes += (CHUNK_HEADER_LEN + table.len) as u64;
    f.chunks_digest = chain_digest(f.chunks_digest, sum);
    Ok(())
}

/// What [`FrameEncoder::encode`] produced: everything [`Writer::append_encoded`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The frame's index in its checkpoint.
    pub index: u64,
    /// Its style.
    pub style: Style,
    /// Its length in bytes.
    pub len: u64,
    /// Buffers it holds.
    pub buffer_count: u64,
    /// Sum of the buffers' lengths.
    pub user_bytes: u64,
}

/// Room in a sink's memory for one frame, lent by [`Writer::append_in_place`]; it can be
/// sent to another thread and filled there.
#[derive(Debug)]
pub struct FrameSlot<'m> {
    index: u64,
    mem: &'m mut [u8],
}

impl FrameSlot<'_> {
    /// The index of the frame this slot is for.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The room in bytes.
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// Whether the slot has no room at all.
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// Copies a frame already encoded elsewhere (by [`FrameEncoder::encode`], for this
    /// slot's index) into the slot, so that many threads can copy their frames into the
    /// sink at once; [`Writer::append_in_place`] checks it as it checks encoded frames.
    ///
    /// # Errors
    /// [`Error::InvalidUse`] with [`Misuse::ForeignFrame`] when `bytes` is longer than the
    /// slot, or is not `frame.len` long.
    pub fn copy_encoded(self, bytes: &[u8], frame: &EncodedFrame) -> Result<EncodedFrame, Error> {
        let fits = bytes.len() as u64 == frame.len;
        match self.mem.get_mut(..bytes.len()) {
            Some(dst) if fits => {
                crate::stream_copy::copy(dst, bytes);
                crate::stream_copy::finish();
                Ok(*frame)
            }
            _ => Err(Error::InvalidUse(Misuse::ForeignFrame)),
        }
    }

    /// Encodes this slot's frame holding `buffers` with `encoder` (which must belong to the
    /// same checkpoint) into the slot.
    ///
    /// # Errors
    /// As [`FrameEncoder::encode_into`]: the slot is too small, or the codec failed.
    pub fn encode(
        self,
        encoder: &mut FrameEncoder,
        style: Style,
        buffers: &[&[u8]],
    ) -> Result<EncodedFrame, Error> {
        encoder.encode_into(self.index, style, buffers, self.mem)
    }
}

/// Encodes single frames on their own, so that many can be encoded at once (one encoder per
/// thread) and appended in order with [`Writer::append_encoded`]. Reuses its buffers and
/// codec state from frame to frame.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, FrameEncoder, Style, VecSink, Writer};
/// let id = CheckpointId::from_bytes([5; 16]);
/// let data = vec![3u8; 1000];
/// let mut enc = FrameEncoder::new(id);
/// let mut bytes = Vec::new();
/// let frame = enc.encode(0, Style::Lz4, &[&data], &mut bytes)?;
/// let mut w = Writer::new(VecSink::new(), id);
/// w.append_encoded(&bytes, &frame)?;
/// w.finish()?;
///
/// let mut serial = Writer::new(VecSink::new(), id);
/// let mut f = serial.open_frame(Style::Lz4)?;
/// f.add(&data)?;
/// f.close()?;
/// serial.finish()?;
/// assert_eq!(w.into_sink().into_inner(), serial.into_sink().into_inner());
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
pub struct FrameEncoder {
    id: CheckpointId,
    enc: Encoder,
    /// The one index entry of the frame being encoded (kept to reuse its allocation).
    index: Vec<IndexEntry>,
}

impl core::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameEncoder").field("id", &self.id).finish_non_exhaustive()
    }
}

impl FrameEncoder {
    /// An encoder for frames of checkpoint `id`, with this build's LZ4 codec.
    pub fn new(id: CheckpointId) -> Self {
        Self::with_codecs(id, default_compressor())
    }

    /// An encoder whose LZ4 frames use `compressor`.
    pub fn with_codecs(id: CheckpointId, compressor: Option<Box<dyn ChunkCompressor>>) -> Self {
        Self { id, enc: Encoder::new(compressor), index: Vec::new() }
    }

    /// Encodes frame `index` holding `buffers` into `out` (replacing its contents, reusing its
    /// allocation).
    ///
    /// # Errors
    /// [`Error::UnsupportedStyle`] or [`Error::Codec`] as for [`Writer::open_frame`] and
    /// [`FrameWriter::add`].
    pub fn encode(
        &mut self,
        index: u64,
        style: Style,
        buffers: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<EncodedFrame, Error> {
        let sink = VecSink::from_vec(core::mem::take(out));
        let (sink, result) = self.encode_with(sink, index, style, buffers);
        *out = sink.into_inner();
        result
    }

    /// Encodes frame `index` holding `buffers` into the start of `out`, which must have room
    /// for it ([`frame_size_bound`](crate::frame_size_bound) of the buffers' lengths is
    /// always enough); the frame's length is in the result.
    ///
    /// # Errors
    /// [`Error::Io`] with [`IoErrorKind::StorageFull`](crate::IoErrorKind::StorageFull) when
    /// `out` is too small; otherwise as [`encode`](Self::encode).
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::{CheckpointId, FrameEncoder, Style, frame_size_bound};
    /// let data = vec![9u8; 70_000];
    /// let mut enc = FrameEncoder::new(CheckpointId::from_bytes([4; 16]));
    /// let bound = frame_size_bound(Style::Raw, [data.len()]).unwrap() as usize;
    /// let mut out = vec![0u8; bound];
    /// let frame = enc.encode_into(0, Style::Raw, &[&data], &mut out)?;
    /// assert_eq!(frame.len as usize, bound, "exact for RAW");
    /// let mut again = Vec::new();
    /// enc.encode(0, Style::Raw, &[&data], &mut again)?;
    /// assert_eq!(again, out);
    /// # Ok::<(), ckpt_frame_core::Error>(())
    /// ```
    pub fn encode_into(
        &mut self,
        index: u64,
        style: Style,
        buffers: &[&[u8]],
        out: &mut [u8],
    ) -> Result<EncodedFrame, Error> {
        self.encode_with(SliceSink::new(out), index, style, buffers).1
    }

    fn encode_with<T: Sink>(
        &mut self,
        sink: T,
        index: u64,
        style: Style,
        buffers: &[&[u8]],
    ) -> (T, Result<EncodedFrame, Error>) {
        self.index.clear();
        let mut w = Writer {
            sink,
            id: self.id,
            first_index: index,
            pos: 0,
            index: core::mem::take(&mut self.index),
            state: State::Ready,
            enc: core::mem::replace(&mut self.enc, Encoder::placeholder()),
            parent: None,
        };
        let result = (|| {
            let mut f = w.open_frame(style)?;
            f.add_all(buffers.iter().copied())?;
            f.close()
        })();
        let Writer { sink, enc, index: entries, .. } = w;
        self.enc = enc;
        self.index = entries;
        let result = result.map(|_| {
            let e = self.index.first().copied().unwrap_or(IndexEntry {
                offset: 0,
                frame_len: 0,
                buffer_count: 0,
                user_bytes: 0,
                style: style.to_byte(),
            });
            EncodedFrame {
                index,
                style,
                len: e.frame_len,
                buffer_count: e.buffer_count,
                user_bytes: e.user_bytes,
            }
        });
        (sink, result)
    }
}
