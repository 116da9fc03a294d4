//! [`RemoteCheckpoint`]: one checkpoint object, its length, tail and index fetched once and
//! shared by every source read from it.

use crate::client::ObjectClient;
use crate::error::ObjectError;
use crate::source::{Access, DEFAULT_READ_AHEAD, ObjectSource, Shared};
use bytes::{Bytes, BytesMut};
use std::ops::Range;
use std::sync::Arc;

// Sizes from docs/format.md, section 5 (frame-core keeps its wire constants private).
/// The tail: the checkpoint's last 64 bytes (section 5.6).
const TAIL_LEN: u64 = 64;
/// The index header (section 5.4).
const INDEX_HEADER_LEN: u64 = 8;
/// One index entry (section 5.5).
const INDEX_ENTRY_LEN: u64 = 40;
/// The least frame: a 40-byte header and a 56-byte footer (section 8.3, rule 6).
const MIN_FRAME_LEN: u64 = 96;
/// The tail's magic, its last 8 bytes.
const TAIL_MAGIC: &[u8; 8] = b"CKPTEND1";

/// A checkpoint in object storage, opened once for many readers.
///
/// [`RemoteCheckpoint::open`] sends one `HEAD` for the length, then exactly two ranged
/// `GET`s: the 64-byte tail, then the index the tail names. Every [`ObjectSource`] it
/// hands out ([`RemoteCheckpoint::source`], [`RemoteCheckpoint::stream`]) shares that
/// length and those bytes, so a frame-core [`Reader::open`](ckpt_frame_core::Reader::open)
/// on one of them sends no request at all; a parallel restore whose workers each open a
/// reader pays for the tail and index once, not once per worker.
///
/// # Why a handle of its own rather than a cache inside `ObjectSource`
/// The tail and index belong to the object, not to a reader: a handle that owns them (in
/// an `Arc`) can give every worker its own independent source (own window, own position)
/// without any locking on the read path, and the cost of opening is paid visibly, once.
/// [`ObjectSource::open`] stays the plain one-`HEAD` source for a single sequential reader.
///
/// # Trusting the tail
/// The tail is not believed blindly. The index is fetched only when the tail ends with
/// the format's magic and its index offset and frame count fit the object exactly
/// (`index_offset + 8 + 40 × frame_count + 64 = length`, computed without overflow, and
/// at least 96 bytes of frames per frame counted), so the index fetched is never longer
/// than the object and at most 40/136 of it. Otherwise no index is fetched and
/// [`RemoteCheckpoint::index_problem`] says why; a reader opened on a source then refuses
/// the checkpoint with frame-core's own error (truncated, corrupt tail: exit status 1 in
/// the CLI, as for a local file), from the cached tail, without another request, while a
/// streaming [`verify`](ckpt_frame_core::scan::scan) or restore can still read the frames
/// before the damage.
///
/// # Memory
/// The handle holds the tail, the index (40 bytes per frame) and frame 0 once fetched
/// whole (a tree checkpoint's manifest, read more than once by restore and verify). Each
/// source adds at most two windows of about `read_ahead` bytes (4 MiB by default, see
/// [`ObjectSource`]), so a restore with N workers holds about N × 2.5 × `read_ahead`.
///
/// # Examples
/// ```
/// # use std::sync::Arc;
/// use ckpt_frame_core::{CheckpointId, Reader, Style, VecSink, Writer};
/// use ckpt_object::{ObjectClient, RemoteCheckpoint};
/// use object_store::{ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
///
/// let mut writer = Writer::new(VecSink::new(), CheckpointId::from_bytes([7; 16]));
/// for n in 0..3u8 {
///     let data = [n; 1000];
///     let mut frame = writer.open_frame(Style::Raw)?;
///     frame.add(&data)?;
///     frame.close()?;
/// }
/// writer.finish()?;
/// let bytes = writer.into_sink().into_inner();
///
/// let store = Arc::new(InMemory::new());
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(store.put(&Path::from("c.ckpt"), PutPayload::from(bytes))).unwrap();
/// let client = ObjectClient::with_store(store, "memory", "bucket")?;
/// let checkpoint = RemoteCheckpoint::open(&client, "c.ckpt")?;
/// assert_eq!(client.requests_sent(), 3); // HEAD, tail, index
/// assert_eq!(checkpoint.frame_count(), Some(3));
///
/// // Readers open without a request; frame 2 costs one ranged GET of its own bytes.
/// let mut reader = Reader::open(checkpoint.source())?;
/// assert_eq!(client.requests_sent(), 3);
/// let mut frame = reader.open_frame(2)?;
/// assert_eq!(frame.read_to_vec()?, Some(vec![2; 1000]));
/// frame.close()?;
/// assert_eq!(client.requests_sent(), 4);
/// let frame_2 = checkpoint.frame_range(2).unwrap();
/// let fetched = 64 + checkpoint.index_len() + (frame_2.end - frame_2.start);
/// assert_eq!(client.bytes_fetched(), fetched);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RemoteCheckpoint {
    shared: Arc<Shared>,
    read_ahead: usize,
    frame_count: Option<u64>,
    index_problem: Option<&'static str>,
}

impl std::fmt::Debug for RemoteCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCheckpoint")
            .field("client", &self.shared.client)
            .field("key", &self.shared.key)
            .field("len", &self.shared.len)
            .field("frame_count", &self.frame_count)
            .field("index_problem", &self.index_problem)
            .finish_non_exhaustive()
    }
}

impl RemoteCheckpoint {
    /// Opens `key` in the client's bucket: a `HEAD`, a ranged `GET` of the tail and one of
    /// the index (only the `HEAD` when the object is shorter than an empty checkpoint; no
    /// index `GET` when the tail names no plausible index, see the type's documentation).
    ///
    /// # Errors
    /// [`ObjectError::NoSuchKey`], [`ObjectError::NoSuchBucket`],
    /// [`ObjectError::AccessDenied`] or [`ObjectError::Request`], each naming the endpoint,
    /// bucket and key (and, for a failed `GET`, the bytes asked for).
    pub fn open(client: &ObjectClient, key: &str) -> Result<Self, ObjectError> {
        let mut shared = Shared::head(client, key)?;
        let len = shared.len;
        let mut frame_count = None;
        let index_problem = if len < INDEX_HEADER_LEN + TAIL_LEN {
            Some("the object is shorter than an empty checkpoint (72 bytes)")
        } else {
            let tail_at = len - TAIL_LEN;
            let fetch = shared.spawn_fetch(tail_at, len);
            let tail = shared.await_fetch(tail_at, len, fetch)?;
            match index_named_by(&tail, len) {
                Ok((index_at, count)) => {
                    let fetch = shared.spawn_fetch(index_at, tail_at);
                    let index = shared.await_fetch(index_at, tail_at, fetch)?;
                    shared.frame_starts = frame_starts(&index, index_at);
                    let mut end = BytesMut::with_capacity(index.len() + tail.len());
                    end.extend_from_slice(&index);
                    end.extend_from_slice(&tail);
                    shared.end = end.freeze();
                    shared.end_start = index_at;
                    frame_count = Some(count);
                    None
                }
                Err(problem) => {
                    shared.end = tail;
                    shared.end_start = tail_at;
                    Some(problem)
                }
            }
        };
        if let Some(problem) = index_problem {
            tracing::info!("s3://{}/{key}: no index fetched: {problem}", client.bucket());
        }
        Ok(Self {
            shared: Arc::new(shared),
            read_ahead: DEFAULT_READ_AHEAD,
            frame_count,
            index_problem,
        })
    }

    /// Sources made from now on fetch `read_ahead` bytes per `GET` (at least 64 KiB).
    #[must_use]
    pub fn with_read_ahead(mut self, read_ahead: usize) -> Self {
        self.read_ahead = read_ahead;
        self
    }

    /// A source for reading frames through the index, as a parallel restore's worker does:
    /// it shares the cached length, tail, index and frame 0, and never fetches past the end
    /// of the frame it is reading (a frame's bytes come in windows of `read_ahead`, the
    /// next one fetched while one is consumed, all inside the frame). Sends no request
    /// until read.
    pub fn source(&self) -> ObjectSource {
        ObjectSource::over(Arc::clone(&self.shared), Access::Frames)
            .with_read_ahead(self.read_ahead)
    }

    /// A source for reading the whole object in order (verify, or a streaming restore):
    /// windows are fetched ahead across frame boundaries, and the cached tail, index and
    /// frame 0 are not fetched again, so reading everything fetches each byte once.
    pub fn stream(&self) -> ObjectSource {
        ObjectSource::over(Arc::clone(&self.shared), Access::Sequential)
            .with_read_ahead(self.read_ahead)
    }

    /// The client the checkpoint is read with.
    pub fn client(&self) -> &ObjectClient {
        &self.shared.client
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// The object's length.
    pub fn len(&self) -> u64 {
        self.shared.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.shared.len == 0
    }

    /// The number of frames the tail claims, when it names a plausible index (checked by
    /// a reader, which verifies the index's digest).
    pub fn frame_count(&self) -> Option<u64> {
        self.frame_count
    }

    /// Why no index was fetched, when none was.
    pub fn index_problem(&self) -> Option<&'static str> {
        self.index_problem
    }

    /// Bytes of the index fetched (0 when none was).
    pub fn index_len(&self) -> u64 {
        if self.frame_count.is_some() {
            self.shared.len - self.shared.end_start - TAIL_LEN
        } else {
            0
        }
    }

    /// Where frame `index` lies in the object, as the cached index says (a claim until a
    /// reader has verified the index).
    pub fn frame_range(&self, index: u64) -> Option<Range<u64>> {
        let i = usize::try_from(index).ok()?;
        let start = *self.shared.frame_starts.get(i)?;
        let end = *self.shared.frame_starts.get(i.checked_add(1)?)?;
        Some(start..end)
    }
}

/// The index offset and frame count the tail names, when they fit an object of `len`
/// bytes (see [`RemoteCheckpoint`]'s documentation); otherwise why not.
fn index_named_by(tail: &Bytes, len: u64) -> Result<(u64, u64), &'static str> {
    let field =
        |at: usize| tail.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if tail.get(56..64) != Some(TAIL_MAGIC.as_slice()) {
        return Err(
            "no checkpoint tail at the end of the object (truncated, or not a ckpt checkpoint)",
        );
    }
    let (Some(index_at), Some(count)) = (field(0), field(8)) else {
        return Err("the tail is shorter than 64 bytes");
    };
    let fits = count
        .checked_mul(INDEX_ENTRY_LEN)
        .and_then(|n| n.checked_add(INDEX_HEADER_LEN + TAIL_LEN))
        .and_then(|n| n.checked_add(index_at));
    if fits != Some(len) {
        return Err("the tail's index offset and frame count do not fit the object's length");
    }
    if count.checked_mul(MIN_FRAME_LEN).is_none_or(|least| least > index_at) {
        return Err("the tail claims more frames than the bytes before its index can hold");
    }
    Ok((index_at, count))
}

/// Each frame's start from the index entries, then the index's start; empty when the
/// entries are not ascending inside `0..index_at` (a damaged index: the reader will say
/// so; the source then simply does not bound its fetches by frame).
fn frame_starts(index: &Bytes, index_at: u64) -> Vec<u64> {
    // INDEX_HEADER_LEN and INDEX_ENTRY_LEN as `usize`.
    const HEADER: usize = 8;
    const ENTRY: usize = 40;
    let entries = index.get(HEADER..).unwrap_or_default();
    let mut starts = Vec::with_capacity(entries.len() / ENTRY + 1);
    for entry in entries.chunks_exact(ENTRY) {
        let Some(offset) = entry.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
        else {
            return Vec::new();
        };
        if starts.last().is_some_and(|&last| offset <= last) || offset >= index_at {
            return Vec::new();
        }
        starts.push(offset);
    }
    starts.push(index_at);
    starts
}
