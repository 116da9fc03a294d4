//! [`ObjectSource`]: checkpoint bytes read from an object by ranged `GET`s.

use crate::client::ObjectClient;
use crate::error::ObjectError;
use bytes::Bytes;
use ckpt_frame_core::{IoError, IoErrorKind, Source};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Bytes fetched per ranged `GET` unless told otherwise.
pub const DEFAULT_READ_AHEAD: usize = 4 * 1024 * 1024;

type Fetch = JoinHandle<object_store::Result<Bytes>>;

/// A seekable [`Source`] over one object.
///
/// Opening sends one `HEAD` for the length. Reads are served from a window filled by one
/// ranged `GET` of [`read_ahead`](ObjectSource::with_read_ahead) bytes (more when the
/// caller asks for more at once); while the caller consumes a window, the next one is
/// already being fetched, so a sequential restore streams. A seek outside the window
/// drops the prefetch, so an indexed open (tail, then index, then the frames asked for)
/// costs one `GET` per place visited. Memory: at most two windows.
pub struct ObjectSource {
    client: ObjectClient,
    key: String,
    path: Path,
    len: u64,
    position: u64,
    window: Bytes,
    window_start: u64,
    prefetch: Option<(u64, u64, Fetch)>,
    read_ahead: usize,
    requests: u64,
}

impl std::fmt::Debug for ObjectSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSource")
            .field("client", &self.client)
            .field("key", &self.key)
            .field("len", &self.len)
            .field("position", &self.position)
            .field("read_ahead", &self.read_ahead)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl ObjectSource {
    /// Opens `key` in the client's bucket: one `HEAD` request for its length.
    ///
    /// # Errors
    /// [`ObjectError::NoSuchKey`], [`ObjectError::NoSuchBucket`],
    /// [`ObjectError::AccessDenied`] or [`ObjectError::Request`], each naming the endpoint,
    /// bucket and key.
    pub fn open(client: &ObjectClient, key: &str) -> Result<Self, ObjectError> {
        let path = client.path(key)?;
        let store = Arc::clone(client.store());
        let head_path = path.clone();
        let meta = client
            .block_on(async move { store.head(&head_path).await })?
            .map_err(|e| client.classify(key, "HEAD", None, e))?;
        Ok(Self {
            client: client.clone(),
            key: key.to_owned(),
            path,
            len: meta.size,
            position: 0,
            window: Bytes::new(),
            window_start: 0,
            prefetch: None,
            read_ahead: DEFAULT_READ_AHEAD,
            requests: 1,
        })
    }

    /// Fetches `read_ahead` bytes per `GET` (at least 64 KiB).
    #[must_use]
    pub fn with_read_ahead(mut self, read_ahead: usize) -> Self {
        self.read_ahead = read_ahead.max(64 * 1024);
        self
    }

    /// The object's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Requests sent so far (the `HEAD` and every ranged `GET`, prefetches included).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// The key read.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn spawn_fetch(&mut self, start: u64, end: u64) -> Fetch {
        self.requests += 1;
        let store: Arc<dyn ObjectStore> = Arc::clone(self.client.store());
        let path = self.path.clone();
        self.client.spawn(async move { store.get_range(&path, start..end).await })
    }

    fn await_fetch(&self, start: u64, end: u64, fetch: Fetch) -> Result<Bytes, ObjectError> {
        let request_error = |cause| ObjectError::Request {
            endpoint: self.client.endpoint().to_owned(),
            bucket: self.client.bucket().to_owned(),
            key: self.key.clone(),
            operation: "ranged GET",
            offset: Some(start),
            cause,
        };
        let bytes = match self.client.block_on(fetch)? {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                return Err(self.client.classify(&self.key, "ranged GET", Some(start), e));
            }
            Err(join) => return Err(request_error(Box::new(join))),
        };
        if bytes.len() as u64 != end - start {
            return Err(request_error(
                format!(
                    "asked for bytes {start}..{end}, got {} bytes (the object changed?)",
                    bytes.len()
                )
                .into(),
            ));
        }
        Ok(bytes)
    }

    /// Makes the window hold `position` and at least `want` bytes after it (`want` bytes
    /// are known to exist).
    fn fill(&mut self, want: usize) -> Result<(), ObjectError> {
        let start = self.position;
        let end = (start + want.max(self.read_ahead) as u64).min(self.len);
        let bytes = match self.prefetch.take() {
            Some((s, e, fetch)) if s == start && e >= start + want as u64 => {
                self.await_fetch(s, e, fetch)?
            }
            Some((_, _, fetch)) => {
                fetch.abort();
                let fetch = self.spawn_fetch(start, end);
                self.await_fetch(start, end, fetch)?
            }
            None => {
                let fetch = self.spawn_fetch(start, end);
                self.await_fetch(start, end, fetch)?
            }
        };
        self.window_start = start;
        let window_end = start + bytes.len() as u64;
        self.window = bytes;
        if window_end < self.len {
            let next_end = (window_end + self.read_ahead as u64).min(self.len);
            let fetch = self.spawn_fetch(window_end, next_end);
            self.prefetch = Some((window_end, next_end, fetch));
        }
        Ok(())
    }

    fn read_into(&mut self, mut buf: &mut [u8]) -> Result<(), ObjectError> {
        while !buf.is_empty() {
            let window_end = self.window_start + self.window.len() as u64;
            if self.position < self.window_start || self.position >= window_end {
                self.fill(buf.len())?;
                continue;
            }
            let Ok(from) = usize::try_from(self.position - self.window_start) else {
                self.fill(buf.len())?;
                continue;
            };
            let available = self.window.get(from..).unwrap_or_default();
            let n = available.len().min(buf.len());
            let (head, tail) = std::mem::take(&mut buf).split_at_mut(n);
            head.copy_from_slice(available.get(..n).unwrap_or_default());
            buf = tail;
            self.position += n as u64;
        }
        Ok(())
    }
}

impl Source for ObjectSource {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        if self.position.saturating_add(buf.len() as u64) > self.len {
            return Err(IoError::new(
                IoErrorKind::UnexpectedEof,
                "the object ends before the bytes asked for",
            ));
        }
        self.read_into(buf).map_err(IoError::from)
    }

    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        Ok(Some(self.len))
    }

    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        if offset > self.len {
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
