//! [`ObjectSink`]: checkpoint bytes uploaded as a multipart upload, published on
//! [`ObjectSink::complete`] only.

use crate::client::ObjectClient;
use crate::error::ObjectError;
use ckpt_frame_core::{IoError, Sink};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use std::collections::VecDeque;
use tokio::task::JoinHandle;

/// S3's smallest part (all parts but the last must be at least this long).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// S3's largest number of parts in one upload: a checkpoint can hold at most
/// `MAX_PARTS * part_size` bytes (78 GiB with the default 8 MiB parts).
pub const MAX_PARTS: u64 = 10_000;

/// How an [`ObjectSink`] cuts and sends parts.
///
/// Memory held by one sink is at most `(max_in_flight + 1) * part_size`: one part being
/// filled plus the parts on the wire (a full part moves to its request without a copy).
/// The defaults, 8 MiB parts and 4 in flight, hold at most 40 MiB. The largest object is
/// [`MAX_PARTS`] parts: raise the part size for checkpoints over 78 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    part_size: usize,
    max_in_flight: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self { part_size: 8 * 1024 * 1024, max_in_flight: 4 }
    }
}

impl UploadOptions {
    /// Parts of `part_size` bytes (the last may be shorter).
    ///
    /// # Errors
    /// [`ObjectError::InvalidSettings`] below [`MIN_PART_SIZE`].
    pub fn with_part_size(mut self, part_size: usize) -> Result<Self, ObjectError> {
        if part_size < MIN_PART_SIZE {
            return Err(ObjectError::InvalidSettings {
                reason: format!(
                    "part size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes"
                ),
            });
        }
        self.part_size = part_size;
        Ok(self)
    }

    /// At most `max_in_flight` parts uploading at once.
    ///
    /// # Errors
    /// [`ObjectError::InvalidSettings`] for 0.
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Result<Self, ObjectError> {
        if max_in_flight == 0 {
            return Err(ObjectError::InvalidSettings {
                reason: "at least one part must be allowed in flight".to_owned(),
            });
        }
        self.max_in_flight = max_in_flight;
        Ok(self)
    }

    /// The part size.
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// The bound on parts in flight.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The most bytes of checkpoint one sink holds in memory.
    pub fn memory_bound(&self) -> usize {
        self.part_size.saturating_mul(self.max_in_flight.saturating_add(1))
    }
}

/// What [`ObjectSink::complete`] published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    /// Bytes in the object.
    pub bytes: u64,
    /// Parts uploaded (0 when the object was small enough for one `PUT`).
    pub parts: u64,
    /// The object's entity tag, when the server gave one.
    pub e_tag: Option<String>,
}

/// A [`Sink`] that uploads to `s3://BUCKET/KEY` as a multipart upload.
///
/// Bytes are cut into parts of [`UploadOptions::part_size`]; a full part is sent at once
/// while the writer goes on, with at most [`UploadOptions::max_in_flight`] parts on the
/// wire (the memory bound is [`UploadOptions::memory_bound`]). Nothing is readable under
/// the key until [`ObjectSink::complete`] succeeds. On any upload error the upload is
/// aborted; a sink dropped without `complete` aborts too, so a failed write never leaves a
/// partial object (a killed process leaves only an uncompleted upload, which the server's
/// lifecycle rules reclaim).
///
/// A checkpoint smaller than one part is sent with a single `PUT` at `complete`.
pub struct ObjectSink {
    client: ObjectClient,
    key: String,
    path: Path,
    options: UploadOptions,
    upload: Option<Box<dyn MultipartUpload>>,
    part: Vec<u8>,
    in_flight: VecDeque<(u64, JoinHandle<object_store::Result<()>>)>,
    bytes: u64,
    parts: u64,
    failed: bool,
    done: bool,
}

impl std::fmt::Debug for ObjectSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSink")
            .field("client", &self.client)
            .field("key", &self.key)
            .field("options", &self.options)
            .field("bytes", &self.bytes)
            .field("parts", &self.parts)
            .field("in_flight", &self.in_flight.len())
            .field("failed", &self.failed)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ObjectSink {
    /// A sink for `key` in the client's bucket. Sends no request yet: the multipart upload
    /// starts when the first part is full.
    ///
    /// # Errors
    /// [`ObjectError::InvalidLocation`] when `key` is not a valid object path.
    pub fn create(
        client: &ObjectClient,
        key: &str,
        options: UploadOptions,
    ) -> Result<Self, ObjectError> {
        let path = client.path(key)?;
        Ok(Self {
            client: client.clone(),
            key: key.to_owned(),
            path,
            options,
            upload: None,
            part: Vec::with_capacity(options.part_size),
            in_flight: VecDeque::new(),
            bytes: 0,
            parts: 0,
            failed: false,
            done: false,
        })
    }

    /// Bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Parts handed to the upload so far.
    pub fn parts_sent(&self) -> u64 {
        self.parts
    }

    /// The options in use.
    pub fn options(&self) -> UploadOptions {
        self.options
    }

    /// Sends the last part, waits for every part and completes the upload: only now does
    /// the object appear under the key, whole.
    ///
    /// # Errors
    /// Any upload error ([`ObjectError::AccessDenied`], [`ObjectError::NoSuchBucket`],
    /// [`ObjectError::Request`], ...); the upload is then aborted and nothing is
    /// published. [`ObjectError::UploadFailed`] when an earlier call already failed.
    pub fn complete(mut self) -> Result<UploadSummary, ObjectError> {
        let result = self.try_complete();
        if result.is_err() {
            self.abort();
        }
        result
    }

    fn try_complete(&mut self) -> Result<UploadSummary, ObjectError> {
        self.check_usable()?;
        if self.upload.is_none() {
            // Small enough for one PUT: atomic by nature.
            let payload = PutPayload::from(std::mem::take(&mut self.part));
            let store = std::sync::Arc::clone(self.client.store());
            let path = self.path.clone();
            let result = self.client.block_on(async move { store.put(&path, payload).await })?;
            let put = result.map_err(|e| self.client.classify(&self.key, "PUT", Some(0), e))?;
            self.done = true;
            return Ok(UploadSummary { bytes: self.bytes, parts: 0, e_tag: put.e_tag });
        }
        if !self.part.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.upload_failed());
        };
        let result = self.client.block_on(upload.complete())?;
        let put = result
            .map_err(|e| self.client.classify(&self.key, "complete multipart upload", None, e))?;
        self.upload = None;
        self.done = true;
        Ok(UploadSummary { bytes: self.bytes, parts: self.parts, e_tag: put.e_tag })
    }

    /// Abandons the write: stops the parts in flight and aborts the upload, so nothing
    /// appears under the key. Dropping the sink without [`ObjectSink::complete`] does the
    /// same.
    pub fn abort(&mut self) {
        self.failed = true;
        for (_, handle) in self.in_flight.drain(..) {
            handle.abort();
        }
        self.part = Vec::new();
        if let Some(mut upload) = self.upload.take() {
            match self.client.block_on(async move { upload.abort().await }) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(key = %self.key, error = %e, "aborting the multipart upload failed; the server's lifecycle rules must reclaim its parts");
                }
                Err(e) => {
                    tracing::warn!(key = %self.key, error = %e, "could not abort the multipart upload");
                }
            }
        }
    }

    fn check_usable(&self) -> Result<(), ObjectError> {
        if self.failed || self.done { Err(self.upload_failed()) } else { Ok(()) }
    }

    fn upload_failed(&self) -> ObjectError {
        ObjectError::UploadFailed { bucket: self.client.bucket().to_owned(), key: self.key.clone() }
    }

    /// Hands the filled part to the upload, first waiting while the bound is reached.
    fn send_part(&mut self) -> Result<(), ObjectError> {
        if self.parts >= MAX_PARTS {
            return Err(ObjectError::InvalidSettings {
                reason: format!(
                    "s3://{}/{} outgrew S3's {MAX_PARTS} parts of {} bytes; \
                     use a larger part size",
                    self.client.bucket(),
                    self.key,
                    self.options.part_size
                ),
            });
        }
        while self.in_flight.len() >= self.options.max_in_flight {
            self.wait_oldest()?;
        }
        if self.upload.is_none() {
            let store = std::sync::Arc::clone(self.client.store());
            let path = self.path.clone();
            let result = self.client.block_on(async move { store.put_multipart(&path).await })?;
            let upload = result.map_err(|e| {
                self.client.classify(&self.key, "create multipart upload", Some(0), e)
            })?;
            self.upload = Some(upload);
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.upload_failed());
        };
        let part_offset = self.bytes - self.part.len() as u64;
        let data = std::mem::replace(&mut self.part, Vec::with_capacity(self.options.part_size));
        let request = upload.put_part(PutPayload::from(data));
        self.in_flight.push_back((part_offset, self.client.spawn(request)));
        self.parts += 1;
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), ObjectError> {
        let Some((offset, handle)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.client.block_on(handle)? {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.client.classify(&self.key, "upload part", Some(offset), e)),
            Err(join) => Err(ObjectError::Request {
                endpoint: self.client.endpoint().to_owned(),
                bucket: self.client.bucket().to_owned(),
                key: self.key.clone(),
                operation: "upload part",
                offset: Some(offset),
                cause: Box::new(join),
            }),
        }
    }

    fn write_bytes(&mut self, mut bytes: &[u8]) -> Result<(), ObjectError> {
        self.check_usable()?;
        while !bytes.is_empty() {
            let room = self.options.part_size - self.part.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.part.extend_from_slice(now);
            self.bytes += now.len() as u64;
            bytes = later;
            if self.part.len() == self.options.part_size {
                self.send_part()?;
            }
        }
        Ok(())
    }
}

impl Sink for ObjectSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.write_bytes(bytes).map_err(|e| {
            self.abort();
            IoError::from(e)
        })
    }
}

impl Drop for ObjectSink {
    fn drop(&mut self) {
        if !self.done && (self.upload.is_some() || !self.in_flight.is_empty()) {
            tracing::debug!(key = %self.key, "object sink dropped before complete: aborting the upload");
            self.abort();
        }
    }
}
