//! Checkpoints that build on a parent (format version 2, `docs/format.md` section 12): what
//! a writer needs to know about the parent ([`ParentChunks`]), how a checkpoint names its
//! parent ([`ParentRef`]), and where a reader gets inherited chunks from
//! ([`InheritedChunks`], implemented by [`ParentReader`]).

use crate::checksum::checksum_seeded;
use crate::error::{Error, Misuse};
use crate::id::CheckpointId;
use crate::io::Source;
use crate::reader::{ChunkCursor, Reader};
use crate::wire::ParentRecord;
use alloc::vec::Vec;

/// One chunk of a parent: its logical length and the XXH3-64 of its logical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkSum {
    pub len: u32,
    pub checksum: u64,
}

/// The lineage digest of a checkpoint: its frames' chunk digests (one per frame, from the
/// footers, each covering every chunk checksum of the frame), seeded with its tail check
/// (which covers the index, and so every frame's place and length and the parent record).
pub(crate) fn lineage_digest(tail_check: u64, frame_digests: &[u64]) -> u64 {
    let mut bytes = Vec::with_capacity(frame_digests.len() * 8);
    for d in frame_digests {
        bytes.extend_from_slice(&d.to_le_bytes());
    }
    checksum_seeded(&bytes, tail_check)
}

/// How a checkpoint names the checkpoint it builds on: its id and its lineage digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentRef {
    /// The parent's checkpoint id.
    pub id: CheckpointId,
    /// The parent's lineage digest ([`Reader::lineage_digest`]).
    pub digest: u64,
}

impl ParentRef {
    pub(crate) fn from_record(r: ParentRecord) -> Self {
        Self { id: CheckpointId::from_bytes(r.checkpoint_id), digest: r.digest }
    }

    /// The error for a checkpoint that names `self` but was given `found`.
    pub(crate) fn mismatch(self, found: ParentRef) -> Error {
        Error::ParentMismatch {
            expected_id: self.id,
            expected_digest: self.digest,
            found_id: found.id,
            found_digest: found.digest,
        }
    }
}

/// What a [`Writer`](crate::Writer) needs to build on a parent checkpoint: the parent's id
/// and lineage digest, and the length and checksum of each of its chunks, frame by frame
/// (12 bytes per chunk of up to 64 KiB, about 200 KiB per GiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentChunks {
    id: CheckpointId,
    digest: u64,
    /// Where each frame's chunks start in `sums`.
    frame_starts: Vec<usize>,
    sums: Vec<ChunkSum>,
}

impl ParentChunks {
    /// Reads the chunk checksums of the checkpoint `parent` reads (an indexed reader,
    /// [`Reader::open`]): every frame's header, chunk headers and footer, not the chunks'
    /// data. Each frame's checksums are checked against its footer's digest.
    ///
    /// # Errors
    /// [`Error::InvalidUse`] for a streaming reader or with a frame open; corruption,
    /// truncation or I/O errors in the structures read.
    ///
    /// # Examples
    /// See [`Writer::set_parent`](crate::Writer::set_parent).
    pub fn read<S: Source>(parent: &mut Reader<S>) -> Result<Self, Error> {
        let id = parent.id().ok_or(Error::InvalidUse(Misuse::NotSeekable))?;
        let (frame_starts, sums, digest) = parent.chunk_sums()?;
        Ok(Self { id, digest, frame_starts, sums })
    }

    /// The parent's checkpoint id.
    pub fn id(&self) -> CheckpointId {
        self.id
    }

    /// The parent's lineage digest.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Number of frames in the parent.
    pub fn frame_count(&self) -> u64 {
        self.frame_starts.len() as u64
    }

    /// Number of chunks in the parent, all frames together.
    pub fn chunk_count(&self) -> u64 {
        self.sums.len() as u64
    }

    /// The chunks of frame `index` (none when the parent has no such frame).
    pub(crate) fn frame(&self, index: u64) -> &[ChunkSum] {
        let Ok(i) = usize::try_from(index) else { return &[] };
        let Some(&start) = self.frame_starts.get(i) else { return &[] };
        let end = self.frame_starts.get(i + 1).copied().unwrap_or(self.sums.len());
        self.sums.get(start..end).unwrap_or_default()
    }
}

/// Where a reader gets the chunks a checkpoint inherits from its parent. [`ParentReader`]
/// implements it over a parent checkpoint (which may itself have a parent).
pub trait InheritedChunks {
    /// The id and lineage digest of the checkpoint the chunks come from.
    fn identity(&self) -> ParentRef;

    /// Copies the logical bytes of chunk `chunk` of frame `frame` into `out`, whose length
    /// is the chunk's length as the child recorded it, after checking them against the
    /// parent's own checks, and returns their XXH3-64 as checked. The reader compares that
    /// value with the child's checksum instead of hashing the bytes a second time, so an
    /// implementation must return the hash of exactly the bytes it wrote.
    ///
    /// # Errors
    /// When the chunk does not exist, has another length, or fails its checks.
    fn read_chunk(&mut self, frame: u64, chunk: u64, out: &mut [u8]) -> Result<u64, Error>;
}

/// A parent checkpoint opened for the chunks its children inherit: an indexed [`Reader`],
/// plus the grandparent when the parent builds on one. Chunks of a frame asked for in
/// order are read in one pass over the frame.
///
/// # Examples
/// See [`Writer::set_parent`](crate::Writer::set_parent); a chain of three:
/// ```
/// # use ckpt_frame_core::{CheckpointId, ParentChunks, ParentReader, Reader, SliceSource};
/// # use ckpt_frame_core::{Style, VecSink, Writer};
/// # fn write(id: u8, state: &[u8], parent: Option<&[u8]>) -> Vec<u8> {
/// #     let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([id; 16]));
/// #     if let Some(p) = parent {
/// #         let mut r = Reader::open(SliceSource::new(p)).unwrap();
/// #         w.set_parent(ParentChunks::read(&mut r).unwrap()).unwrap();
/// #     }
/// #     let mut f = w.open_frame(Style::Lz4).unwrap();
/// #     f.add(state).unwrap();
/// #     f.close().unwrap();
/// #     w.finish().unwrap();
/// #     w.into_sink().into_inner()
/// # }
/// let mut state: Vec<u8> = (0..1u32 << 18).flat_map(|i| i.to_le_bytes()).collect();
/// let base = write(1, &state, None);
/// state[10] ^= 1;
/// let second = write(2, &state, Some(&base));
/// state[900_000] ^= 1;
/// let third = write(3, &state, Some(&second));
///
/// let mut grandparent = ParentReader::new(Reader::open(SliceSource::new(&base))?, None)?;
/// let mut parent =
///     ParentReader::new(Reader::open(SliceSource::new(&second))?, Some(&mut grandparent))?;
/// let mut r = Reader::open(SliceSource::new(&third))?;
/// let mut f = r.open_frame_inheriting(0, &mut parent)?;
/// assert_eq!(f.read_to_vec()?, Some(state));
/// f.close()?;
/// # Ok::<(), ckpt_frame_core::Error>(())
/// ```
pub struct ParentReader<'p, S: Source> {
    reader: Reader<S>,
    identity: ParentRef,
    parent: Option<&'p mut (dyn InheritedChunks + 'p)>,
    cursor: Option<ChunkCursor>,
}

impl<S: Source> core::fmt::Debug for ParentReader<'_, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParentReader").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl<'p, S: Source> ParentReader<'p, S> {
    /// Opens `reader` (an indexed reader) as a parent; `parent` supplies what it inherits
    /// in turn, and must be given exactly when it names a parent. Computes its lineage
    /// digest (reads every frame's header and footer).
    ///
    /// # Errors
    /// [`Error::ParentMismatch`] if `parent` is not the checkpoint `reader` names;
    /// [`Error::InvalidUse`] with [`Misuse::ParentPlacement`] if a parent is given for a
    /// checkpoint that names none or the other way round, [`Misuse::NotSeekable`] for a
    /// streaming reader; corruption or I/O errors.
    pub fn new(
        mut reader: Reader<S>,
        parent: Option<&'p mut (dyn InheritedChunks + 'p)>,
    ) -> Result<Self, Error> {
        match (reader.parent(), parent.as_deref()) {
            (Some(named), Some(given)) if named != given.identity() => {
                return Err(named.mismatch(given.identity()));
            }
            (Some(_), Some(_)) | (None, None) => {}
            _ => return Err(Error::InvalidUse(Misuse::ParentPlacement)),
        }
        let id = reader.id().ok_or(Error::InvalidUse(Misuse::NotSeekable))?;
        let digest = reader.lineage_digest()?;
        Ok(Self { reader, identity: ParentRef { id, digest }, parent, cursor: None })
    }

    /// Gives back the reader.
    pub fn into_reader(self) -> Reader<S> {
        self.reader
    }
}

impl<S: Source> InheritedChunks for ParentReader<'_, S> {
    fn identity(&self) -> ParentRef {
        self.identity
    }

    fn read_chunk(&mut self, frame: u64, chunk: u64, out: &mut [u8]) -> Result<u64, Error> {
        let supply = self.parent.as_deref_mut().map(|p| p as &mut dyn InheritedChunks);
        self.reader.copy_chunk(&mut self.cursor, supply, (frame, chunk), out)
    }
}
