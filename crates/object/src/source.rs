//! [`ObjectSource`]: checkpoint bytes read from an object by ranged `GET`s.

use crate::client::ObjectClient;
use crate::error::{Cause, ObjectError};
use bytes::Bytes;
use ckpt_frame_core::{IoError, IoErrorKind, Source};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use tokio::task::JoinHandle;

/// Bytes fetched per ranged `GET` unless told otherwise.
pub const DEFAULT_READ_AHEAD: usize = 4 * 1024 * 1024;

/// The least read-ahead [`ObjectSource::with_read_ahead`] accepts.
const MIN_READ_AHEAD: usize = 64 * 1024;

type Fetch = JoinHandle<object_store::Result<Bytes>>;

/// What every source over one object shares: its identity and length from the one
/// `HEAD`, and the bytes kept in memory so that no source asks for them again.
pub(crate) struct Shared {
    pub(crate) client: ObjectClient,
    pub(crate) key: String,
    pub(crate) path: Path,
    pub(crate) len: u64,
    /// The `ETag` the `HEAD` saw: every ranged `GET` carries it as `If-Match`, so that a
    /// key overwritten while it is read fails the read instead of mixing two objects'
    /// bytes (and the bytes cached here stay the object's).
    pub(crate) etag: Option<String>,
    /// The object's last bytes, from `end_start` to `len`: the tail, and the index before
    /// it when the tail names a plausible one. Empty for a plain [`ObjectSource::open`].
    pub(crate) end: Bytes,
    pub(crate) end_start: u64,
    /// Where each frame starts, ascending, then where the index starts: hints from the
    /// cached index that bound a frame's fetches to the frame (never trusted for data:
    /// the reader checks every byte; bad hints only cost requests). Empty when unknown.
    pub(crate) frame_starts: Vec<u64>,
    /// Frame 0 (a tree checkpoint's manifest, which restore and verify read more than
    /// once), kept once a fetch has brought it whole.
    pub(crate) first_frame: OnceLock<Bytes>,
}

impl Shared {
    /// Shared state after a `HEAD`, with nothing cached yet.
    pub(crate) fn head(client: &ObjectClient, key: &str) -> Result<Self, ObjectError> {
        let path = client.path(key)?;
        let store = Arc::clone(client.store());
        let head_path = path.clone();
        client.count_request();
        let meta = client
            .block_on(async move { store.head(&head_path).await })?
            .map_err(|e| client.classify(key, "HEAD", None, e))?;
        Ok(Self {
            client: client.clone(),
            key: key.to_owned(),
            path,
            len: meta.size,
            etag: meta.e_tag,
            end: Bytes::new(),
            end_start: meta.size,
            frame_starts: Vec::new(),
            first_frame: OnceLock::new(),
        })
    }

    /// Starts a ranged `GET` of `start..end` on the client's runtime, counted on the
    /// client.
    pub(crate) fn spawn_fetch(&self, start: u64, end: u64) -> Fetch {
        self.client.count_request();
        let counter = self.client.byte_counter();
        let store: Arc<dyn ObjectStore> = Arc::clone(self.client.store());
        let path = self.path.clone();
        let options =
            GetOptions::new().with_range(Some(start..end)).with_if_match(self.etag.clone());
        self.client.spawn(async move {
            let bytes = store.get_opts(&path, options).await?.bytes().await?;
            counter.add(bytes.len());
            Ok(bytes)
        })
    }

    /// Waits for a fetch of `start..end` and checks it brought exactly those bytes.
    ///
    /// # Errors
    /// The failure classified as [`ObjectClient::classify`] does, its cause wrapped in a
    /// [`FetchFailure`] naming the byte range and the frame it belongs to.
    pub(crate) fn await_fetch(
        &self,
        start: u64,
        end: u64,
        fetch: Fetch,
    ) -> Result<Bytes, ObjectError> {
        let context =
            |cause| FetchFailure { frame: self.frame_of(start), range: start..end, cause };
        let request_error = |cause| ObjectError::Request {
            endpoint: self.client.endpoint().to_owned(),
            bucket: self.client.bucket().to_owned(),
            key: self.key.clone(),
            operation: "ranged GET",
            offset: Some(start),
            cause: Box::new(context(cause)),
        };
        let bytes = match self.client.block_on(fetch)? {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                let classified = self.client.classify(&self.key, "ranged GET", Some(start), e);
                return Err(with_cause(classified, context));
            }
            Err(join) => return Err(request_error(Box::new(join))),
        };
        if bytes.len() as u64 != end - start {
            return Err(request_error(
                format!("got {} bytes (the object changed?)", bytes.len()).into(),
            ));
        }
        Ok(bytes)
    }

    /// The frame holding `offset`, when the index is known and `offset` is in a frame.
    fn frame_of(&self, offset: u64) -> Option<u64> {
        let (&index_start, starts) = self.frame_starts.split_last()?;
        if offset >= index_start {
            return None;
        }
        let after = starts.partition_point(|&s| s <= offset);
        after.checked_sub(1).map(|i| i as u64)
    }

    /// Where the stretch of the object holding `offset` ends: the next frame start, or
    /// the start of the cached end, or the object's end.
    fn region_end(&self, offset: u64) -> u64 {
        let next = self.frame_starts.partition_point(|&s| s <= offset);
        self.frame_starts.get(next).copied().unwrap_or(self.end_start).min(self.end_start)
    }

    /// Cached bytes from `offset` to the end of the cached stretch holding it.
    fn cached_at(&self, offset: u64) -> Option<&[u8]> {
        if offset >= self.end_start {
            let from = usize::try_from(offset - self.end_start).ok()?;
            return self.end.get(from..).filter(|b| !b.is_empty());
        }
        let first = self.first_frame.get()?;
        let from = usize::try_from(offset).ok()?;
        first.get(from..).filter(|b| !b.is_empty())
    }

    /// Keeps frame 0 when `bytes` (fetched from `start`) hold it whole.
    fn keep_first_frame(&self, start: u64, bytes: &Bytes) {
        if start != 0 || self.first_frame.get().is_some() {
            return;
        }
        let Some(&end) = self.frame_starts.get(1) else { return };
        if let Some(frame) = usize::try_from(end).ok().and_then(|end| bytes.get(..end)) {
            // A copy, so that the window it came from is not pinned in memory.
            let _ = self.first_frame.set(Bytes::copy_from_slice(frame));
        }
    }
}

/// Rebuilds `error` with its cause passed through `wrap` (which adds what was being
/// fetched); errors without a server cause are returned as they are.
fn with_cause(error: ObjectError, wrap: impl FnOnce(Cause) -> FetchFailure) -> ObjectError {
    match error {
        ObjectError::Request { endpoint, bucket, key, operation, offset, cause } => {
            let cause = Box::new(wrap(cause));
            ObjectError::Request { endpoint, bucket, key, operation, offset, cause }
        }
        ObjectError::NoSuchKey { endpoint, bucket, key, cause } => {
            ObjectError::NoSuchKey { endpoint, bucket, key, cause: Box::new(wrap(cause)) }
        }
        ObjectError::AccessDenied { endpoint, bucket, key, cause } => {
            ObjectError::AccessDenied { endpoint, bucket, key, cause: Box::new(wrap(cause)) }
        }
        other => other,
    }
}

/// The cause of a failed ranged `GET`, with what it was fetching: the bytes of the object
/// and, when the index is known, the frame they belong to. Found as the
/// [`source`](std::error::Error::source) of the [`ObjectError`] it is in; its text is
/// part of that error's message.
#[derive(Debug)]
pub struct FetchFailure {
    frame: Option<u64>,
    range: Range<u64>,
    cause: Cause,
}

impl FetchFailure {
    /// The frame the bytes belong to (counted from 0), when the index is known.
    pub fn frame(&self) -> Option<u64> {
        self.frame
    }

    /// The bytes of the object asked for.
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Range { start, end } = self.range;
        match self.frame {
            Some(frame) => write!(f, "fetching frame {frame} (bytes {start}..{end})")?,
            None => write!(f, "fetching bytes {start}..{end}")?,
        }
        write!(f, ": {}", self.cause)
    }
}

impl std::error::Error for FetchFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause.as_ref())
    }
}

/// How an [`ObjectSource`] reads ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Whole-object reads in order (verify, streaming restore): the next window is
    /// fetched while one is consumed, across frame boundaries.
    Sequential,
    /// Frames opened through the index (a parallel restore's worker): a fetch never
    /// goes past the end of the frame it starts in, so no byte of a frame the worker
    /// will not read is fetched.
    Frames,
}

/// A seekable [`Source`] over one object.
///
/// [`ObjectSource::open`] sends one `HEAD` for the length and caches nothing; reads are
/// served from a window filled by one ranged `GET` of
/// [`read_ahead`](ObjectSource::with_read_ahead) bytes (more when the caller asks for more
/// at once); while the caller consumes a window, the next one is already being fetched, so
/// a sequential read streams. A seek outside the window drops the prefetch.
///
/// Sources made by a [`RemoteCheckpoint`](crate::RemoteCheckpoint) share its `HEAD`, its
/// cached tail and index and, once fetched, frame 0, so that opening a frame-core
/// [`Reader`](ckpt_frame_core::Reader) on one sends no request; its
/// [`source`](crate::RemoteCheckpoint::source) also never fetches past the end of the frame
/// being read.
///
/// Memory: at most two windows of about `read_ahead` bytes each (a frame's last stretch,
/// when under a quarter of `read_ahead`, joins the window before it rather than costing a
/// request of its own, so a window is at most 1.25 × `read_ahead`).
pub struct ObjectSource {
    shared: Arc<Shared>,
    access: Access,
    position: u64,
    window: Bytes,
    window_start: u64,
    prefetch: Option<(u64, u64, Fetch)>,
    read_ahead: usize,
    requests: u64,
}

impl fmt::Debug for ObjectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectSource")
            .field("client", &self.shared.client)
            .field("key", &self.shared.key)
            .field("len", &self.shared.len)
            .field("access", &self.access)
            .field("position", &self.position)
            .field("read_ahead", &self.read_ahead)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl ObjectSource {
    /// The object's entity tag as its `HEAD` gave it: every ranged `GET` is conditional on
    /// it, so all bytes read belong to this version of the object.
    pub fn e_tag(&self) -> Option<&str> {
        self.shared.etag.as_deref()
    }

    /// Opens `key` in the client's bucket: one `HEAD` request for its length. To read a
    /// checkpoint from several threads, open a [`RemoteCheckpoint`](crate::RemoteCheckpoint)
    /// once instead and take sources from it.
    ///
    /// # Errors
    /// [`ObjectError::NoSuchKey`], [`ObjectError::NoSuchBucket`],
    /// [`ObjectError::AccessDenied`] or [`ObjectError::Request`], each naming the endpoint,
    /// bucket and key.
    ///
    /// # Examples
    /// ```
    /// # use std::sync::Arc;
    /// use ckpt_frame_core::Source;
    /// use ckpt_object::{ObjectClient, ObjectSource};
    /// use object_store::{ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
    /// let store = Arc::new(InMemory::new());
    /// let client = ObjectClient::with_store(store.clone(), "memory", "bucket")?;
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(store.put(&Path::from("k"), PutPayload::from_static(b"bytes"))).unwrap();
    /// let mut source = ObjectSource::open(&client, "k")?;
    /// let mut buf = [0u8; 5];
    /// source.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"bytes");
    /// assert_eq!(client.requests_sent(), 2); // the HEAD, then one ranged GET
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(client: &ObjectClient, key: &str) -> Result<Self, ObjectError> {
        let mut source = Self::over(Arc::new(Shared::head(client, key)?), Access::Sequential);
        source.requests = 1;
        Ok(source)
    }

    /// A source over shared state, at offset 0, that has sent no request yet.
    pub(crate) fn over(shared: Arc<Shared>, access: Access) -> Self {
        Self {
            shared,
            access,
            position: 0,
            window: Bytes::new(),
            window_start: 0,
            prefetch: None,
            read_ahead: DEFAULT_READ_AHEAD,
            requests: 0,
        }
    }

    /// Fetches `read_ahead` bytes per `GET` (at least 64 KiB).
    #[must_use]
    pub fn with_read_ahead(mut self, read_ahead: usize) -> Self {
        self.read_ahead = read_ahead.max(MIN_READ_AHEAD);
        self
    }

    /// The object's length.
    pub fn len(&self) -> u64 {
        self.shared.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.shared.len == 0
    }

    /// Requests this source sent so far (its `HEAD` when it made one, and every ranged
    /// `GET`, prefetches included). [`ObjectClient::requests_sent`] adds up all sources.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The key read.
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    fn spawn_fetch(&mut self, start: u64, end: u64) -> Fetch {
        self.requests += 1;
        self.shared.spawn_fetch(start, end)
    }

    /// Where a window starting at `start`, which must hold `want` bytes, ends.
    fn window_end(&self, start: u64, want: u64) -> u64 {
        let read_ahead = self.read_ahead as u64;
        let len = self.shared.len;
        let wanted = start.saturating_add(want).min(len);
        let region_end = match self.access {
            Access::Sequential => self.shared.end_start.max(start),
            Access::Frames => self.shared.region_end(start),
        };
        let mut end = start.saturating_add(read_ahead).min(region_end);
        if self.access == Access::Frames && region_end.saturating_sub(end) < read_ahead / 4 {
            // A short last stretch of the frame comes along rather than costing a request.
            end = region_end;
        }
        end.max(wanted).min(len)
    }

    /// Makes the window hold `position` and at least `want` bytes after it (`want` bytes
    /// are known to exist).
    fn fill(&mut self, want: usize) -> Result<(), ObjectError> {
        let start = self.position;
        let end = self.window_end(start, want as u64);
        let bytes = match self.prefetch.take() {
            Some((s, e, fetch)) if s == start && e >= start + want as u64 => {
                self.shared.await_fetch(s, e, fetch)?
            }
            other => {
                if let Some((_, _, fetch)) = other {
                    fetch.abort();
                }
                let fetch = self.spawn_fetch(start, end);
                self.shared.await_fetch(start, end, fetch)?
            }
        };
        self.shared.keep_first_frame(start, &bytes);
        self.window_start = start;
        let window_end = start + bytes.len() as u64;
        self.window = bytes;
        let region_end = match self.access {
            Access::Sequential => self.shared.end_start,
            Access::Frames => self.shared.region_end(start),
        };
        if window_end < region_end {
            let next_end = self.window_end(window_end, 0);
            let fetch = self.spawn_fetch(window_end, next_end);
            self.prefetch = Some((window_end, next_end, fetch));
        }
        Ok(())
    }

    /// Copies bytes at the current position from the shared cache or the window into
    /// `buf`; returns how many (0 when neither holds the position).
    fn copy_held(&self, buf: &mut [u8]) -> usize {
        let held = self.shared.cached_at(self.position).or_else(|| {
            let from = self.position.checked_sub(self.window_start)?;
            self.window.get(usize::try_from(from).ok()?..).filter(|b| !b.is_empty())
        });
        let Some(held) = held else { return 0 };
        let n = held.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), held.get(..n)) {
            to.copy_from_slice(from);
        }
        n
    }

    fn read_into(&mut self, mut buf: &mut [u8]) -> Result<(), ObjectError> {
        while !buf.is_empty() {
            let n = self.copy_held(buf);
            if n == 0 {
                self.fill(buf.len())?;
                continue;
            }
            let (_, rest) = std::mem::take(&mut buf).split_at_mut(n);
            buf = rest;
            self.position += n as u64;
        }
        Ok(())
    }
}

impl Source for ObjectSource {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        if self.position.saturating_add(buf.len() as u64) > self.shared.len {
            return Err(IoError::new(
                IoErrorKind::UnexpectedEof,
                "the object ends before the bytes asked for",
            ));
        }
        self.read_into(buf).map_err(IoError::from)
    }

    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        Ok(Some(self.shared.len))
    }

    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        if offset > self.shared.len {
            return Err(IoError::new(
                IoErrorKind::UnexpectedEof,
                "seek past the end of the object",
            ));
        }
        self.position = offset;
        Ok(())
    }
}

impl Drop for ObjectSource {
    fn drop(&mut self) {
        if let Some((_, _, fetch)) = self.prefetch.take() {
            fetch.abort();
        }
    }
}
