//! [`ObjectSink`]: checkpoint bytes uploaded as a multipart upload, published on
//! [`ObjectSink::complete`] only.

use crate::client::ObjectClient;
use crate::error::ObjectError;
use crate::journal::{JournalEntry, UploadJournal};
use crate::raw::{ListedPart, Precondition, RawError};
use ckpt_frame_core::{CheckpointId, IoError, Sink};
use md5::{Digest, Md5};
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload, UpdateVersion};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
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
    no_clobber: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self { part_size: 8 * 1024 * 1024, max_in_flight: 4, no_clobber: false }
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

    /// Publishes only if no object exists under the key when the upload completes
    /// (`If-None-Match: *` on the single `PUT` or on `CompleteMultipartUpload`): of two
    /// writers racing for one key exactly one wins, and an existing checkpoint is never
    /// replaced. The loser gets [`ObjectError::AlreadyExists`] and its upload is aborted.
    #[must_use]
    pub fn with_no_clobber(mut self, no_clobber: bool) -> Self {
        self.no_clobber = no_clobber;
        self
    }

    /// Whether publishing refuses to replace an existing object.
    pub fn no_clobber(&self) -> bool {
        self.no_clobber
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
    /// Parts in the object (0 when it was small enough for one `PUT`).
    pub parts: u64,
    /// Parts of a resumed upload the server already held, and that were therefore not
    /// sent again.
    pub parts_reused: u64,
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
/// lifecycle rules reclaim, or [`ObjectSink::resume`] continues).
///
/// A checkpoint smaller than one part is sent with a single `PUT` at `complete`.
///
/// With a journal ([`ObjectSink::with_journal`]) the upload is recorded locally when it
/// starts, so that a killed write can be resumed; a journaled upload that fails on a
/// request is then kept (not aborted) for the same reason.
pub struct ObjectSink {
    client: ObjectClient,
    key: String,
    path: Path,
    options: UploadOptions,
    upload: Option<String>,
    journal: Option<(UploadJournal, CheckpointId)>,
    /// Publish only over the object with this entity tag (`If-Match`).
    if_match: Option<String>,
    /// Parts the server holds for a resumed upload, by part number.
    held: HashMap<u32, ListedPart>,
    part: Vec<u8>,
    in_flight: VecDeque<(u64, usize, JoinHandle<object_store::Result<PartId>>)>,
    done_parts: Vec<Option<PartId>>,
    bytes: u64,
    parts: u64,
    parts_reused: u64,
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
            .field("parts_reused", &self.parts_reused)
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
    /// [`ObjectError::InvalidLocation`] when `key` is not a valid object path;
    /// [`ObjectError::InvalidSettings`] for no-clobber on a store that is not an S3
    /// endpoint with credentials.
    pub fn create(
        client: &ObjectClient,
        key: &str,
        options: UploadOptions,
    ) -> Result<Self, ObjectError> {
        let path = client.path(key)?;
        if options.no_clobber && client.raw().is_none() {
            return Err(ObjectError::InvalidSettings {
                reason: format!(
                    "no-clobber needs an S3 endpoint with credentials; {} has none",
                    client.endpoint()
                ),
            });
        }
        Ok(Self {
            client: client.clone(),
            key: key.to_owned(),
            path,
            options,
            upload: None,
            journal: None,
            if_match: None,
            held: HashMap::new(),
            part: Vec::with_capacity(options.part_size),
            in_flight: VecDeque::new(),
            done_parts: Vec::new(),
            bytes: 0,
            parts: 0,
            parts_reused: 0,
            failed: false,
            done: false,
        })
    }

    /// Publishes only over the object whose entity tag is `e_tag` (`If-Match` on the single
    /// `PUT` or on `CompleteMultipartUpload`), so that replacing an object read earlier
    /// (heal) never overwrites another writer's newer object: that case gives
    /// [`ObjectError::Changed`] and publishes nothing.
    ///
    /// # Errors
    /// [`ObjectError::InvalidSettings`] when the store is not an S3 endpoint with
    /// credentials, or together with no-clobber (the two conditions exclude each other).
    pub fn replacing(mut self, e_tag: &str) -> Result<Self, ObjectError> {
        if self.client.raw().is_none() || self.options.no_clobber {
            return Err(ObjectError::InvalidSettings {
                reason: format!(
                    "a conditional replacement needs an S3 endpoint with credentials and \
                     excludes no-clobber ({})",
                    self.client.endpoint()
                ),
            });
        }
        self.if_match = Some(e_tag.to_owned());
        Ok(self)
    }

    /// Records the upload of checkpoint `checkpoint_id` in `journal` when it starts, so a
    /// killed write can be continued by [`ObjectSink::resume`]. An upload the journal
    /// already names (an earlier write to the key that was interrupted) is aborted first.
    ///
    /// # Errors
    /// [`ObjectError::Journal`] when the journal cannot be read.
    pub fn with_journal(
        mut self,
        journal: UploadJournal,
        checkpoint_id: CheckpointId,
    ) -> Result<Self, ObjectError> {
        if let Some(stale) = journal.load()? {
            tracing::info!(key = %self.key, upload = %stale.upload_id, "aborting the interrupted upload a new write replaces");
            self.abort_upload(&stale.upload_id);
            journal.remove()?;
        }
        self.journal = Some((journal, checkpoint_id));
        Ok(self)
    }

    /// Continues the interrupted upload `journal` records. Returns the sink and the
    /// checkpoint identity to write again: the caller writes the same checkpoint from the
    /// start, and each part whose length and MD5 match a part the server lists for the
    /// upload is not sent again. Parts that differ (the input changed) are sent, so the
    /// result is always exactly the bytes written. When the server no longer knows the
    /// upload (aborted or expired), a new upload starts with the same identity.
    ///
    /// The part size recorded in the journal replaces `options`' part size.
    ///
    /// # Errors
    /// [`ObjectError::NothingToResume`] without a journal entry;
    /// [`ObjectError::InvalidSettings`] when the store is not an S3 endpoint with
    /// credentials; [`ObjectError::Request`] or [`ObjectError::AccessDenied`] when the
    /// listing fails.
    pub fn resume(
        client: &ObjectClient,
        key: &str,
        options: UploadOptions,
        journal: UploadJournal,
    ) -> Result<(Self, CheckpointId), ObjectError> {
        let Some(entry) = journal.load()? else {
            return Err(ObjectError::NothingToResume {
                bucket: client.bucket().to_owned(),
                key: key.to_owned(),
                journal: journal.path().to_path_buf(),
            });
        };
        let Some(raw) = client.raw().map(Arc::clone) else {
            return Err(ObjectError::InvalidSettings {
                reason: format!(
                    "resuming needs an S3 endpoint with credentials; {} has none",
                    client.endpoint()
                ),
            });
        };
        let options = UploadOptions { part_size: entry.part_size.max(MIN_PART_SIZE), ..options };
        let mut sink = Self::create(client, key, options)?;
        let (listed_key, upload_id) = (key.to_owned(), entry.upload_id.clone());
        let listed =
            client.block_on(async move { raw.list_parts(&listed_key, &upload_id).await })?;
        match listed {
            Ok(parts) => {
                sink.held = parts.into_iter().map(|p| (p.number, p)).collect();
                sink.upload = Some(entry.upload_id.clone());
                tracing::info!(key, upload = %entry.upload_id, held = sink.held.len(), "resuming the upload");
            }
            Err(RawError::Status { status: 404, body }) => {
                tracing::warn!(key, upload = %entry.upload_id, %body, "the server no longer knows the interrupted upload; starting it again");
                journal.remove()?;
            }
            Err(e) => return Err(sink.raw_failure("list parts", e)),
        }
        sink.journal = Some((journal, entry.checkpoint_id));
        Ok((sink, entry.checkpoint_id))
    }

    /// Bytes accepted so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Parts handed to the upload so far (reused ones included).
    pub fn parts_sent(&self) -> u64 {
        self.parts
    }

    /// Parts of a resumed upload not sent again so far.
    pub fn parts_reused(&self) -> u64 {
        self.parts_reused
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
    /// [`ObjectError::Request`], ...); the upload is then aborted (kept, when journaled and
    /// a request failed) and nothing is published. [`ObjectError::AlreadyExists`] under
    /// no-clobber when the key is taken. [`ObjectError::UploadFailed`] when an earlier
    /// call already failed.
    pub fn complete(mut self) -> Result<UploadSummary, ObjectError> {
        let result = self.try_complete();
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    fn try_complete(&mut self) -> Result<UploadSummary, ObjectError> {
        self.check_usable()?;
        if self.upload.is_none() && self.parts == 0 {
            return self.put_whole();
        }
        if !self.part.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        let Some(upload_id) = self.upload.clone() else {
            return Err(self.upload_failed());
        };
        let parts: Option<Vec<PartId>> = self.done_parts.iter().cloned().collect();
        let Some(parts) = parts else {
            return Err(self.upload_failed());
        };
        let condition = match (&self.if_match, self.options.no_clobber) {
            (Some(e_tag), _) => Some(Precondition::Matches(e_tag)),
            (None, true) => Some(Precondition::Absent),
            (None, false) => None,
        };
        let e_tag = if let Some(condition) = condition {
            let Some(raw) = self.client.raw().map(Arc::clone) else {
                return Err(self.upload_failed());
            };
            let key = self.key.clone();
            let e_tags: Vec<String> = parts.into_iter().map(|p| p.content_id).collect();
            let result =
                self.client.block_on(raw.complete_if(&key, &upload_id, &e_tags, condition))?;
            result.map_err(|e| self.raw_failure("complete multipart upload", e))?
        } else {
            let store = Arc::clone(self.client.multipart());
            let path = self.path.clone();
            let result = self.client.block_on(async move {
                store.complete_multipart(&path, &upload_id, parts).await
            })?;
            result
                .map_err(|e| self.client.classify(&self.key, "complete multipart upload", None, e))?
                .e_tag
        };
        self.upload = None;
        self.done = true;
        self.forget_journal();
        Ok(UploadSummary {
            bytes: self.bytes,
            parts: self.parts,
            parts_reused: self.parts_reused,
            e_tag,
        })
    }

    /// Small enough for one `PUT`, atomic by nature (conditional under no-clobber).
    fn put_whole(&mut self) -> Result<UploadSummary, ObjectError> {
        let payload = PutPayload::from(std::mem::take(&mut self.part));
        let store = Arc::clone(self.client.store());
        let path = self.path.clone();
        let mode = match (&self.if_match, self.options.no_clobber) {
            (Some(e_tag), _) => {
                PutMode::Update(UpdateVersion { e_tag: Some(e_tag.clone()), version: None })
            }
            (None, true) => PutMode::Create,
            (None, false) => PutMode::Overwrite,
        };
        let opts = PutOptions { mode, ..PutOptions::default() };
        let result =
            self.client.block_on(async move { store.put_opts(&path, payload, opts).await })?;
        let put = result.map_err(|e| match e {
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => self.precondition_failed(),
            e => self.client.classify(&self.key, "PUT", Some(0), e),
        })?;
        self.done = true;
        self.forget_journal();
        Ok(UploadSummary { bytes: self.bytes, parts: 0, parts_reused: 0, e_tag: put.e_tag })
    }

    /// Abandons the write: stops the parts in flight and aborts the upload, so nothing
    /// appears under the key. Dropping the sink without [`ObjectSink::complete`] does the
    /// same.
    pub fn abort(&mut self) {
        self.failed = true;
        for (_, _, handle) in self.in_flight.drain(..) {
            handle.abort();
        }
        self.part = Vec::new();
        if let Some(upload_id) = self.upload.take() {
            if self.abort_upload(&upload_id) {
                self.forget_journal();
            } else if let Some((journal, _)) = &self.journal {
                tracing::warn!(key = %self.key, journal = %journal.path().display(), "the upload could not be aborted; it is kept for a resume");
            }
        }
    }

    /// After an error: a journaled upload whose request failed is kept for a resume;
    /// anything else is aborted.
    fn fail(&mut self, error: &ObjectError) {
        let resumable = self.journal.is_some()
            && self.upload.is_some()
            && matches!(error, ObjectError::Request { .. });
        if resumable {
            self.failed = true;
            for (_, _, handle) in self.in_flight.drain(..) {
                handle.abort();
            }
            self.part = Vec::new();
            // Neither aborted nor forgotten: `resume` continues it.
            self.upload = None;
            tracing::warn!(key = %self.key, "the upload failed and is kept: resume it with the same input");
        } else {
            self.abort();
        }
    }

    /// Whether the server confirmed the abort.
    fn abort_upload(&self, upload_id: &str) -> bool {
        let store = Arc::clone(self.client.multipart());
        let (path, id) = (self.path.clone(), upload_id.to_owned());
        match self.client.block_on(async move { store.abort_multipart(&path, &id).await }) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(key = %self.key, error = %e, "aborting the multipart upload failed; the server's lifecycle rules must reclaim its parts");
                false
            }
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "could not abort the multipart upload");
                false
            }
        }
    }

    fn forget_journal(&mut self) {
        if let Some((journal, _)) = self.journal.take()
            && let Err(e) = journal.remove()
        {
            tracing::warn!(error = %e, "could not remove the upload journal");
        }
    }

    fn check_usable(&self) -> Result<(), ObjectError> {
        if self.failed || self.done { Err(self.upload_failed()) } else { Ok(()) }
    }

    fn upload_failed(&self) -> ObjectError {
        ObjectError::UploadFailed { bucket: self.client.bucket().to_owned(), key: self.key.clone() }
    }

    fn precondition_failed(&self) -> ObjectError {
        if let Some(expected_e_tag) = &self.if_match {
            return ObjectError::Changed {
                endpoint: self.client.endpoint().to_owned(),
                bucket: self.client.bucket().to_owned(),
                key: self.key.clone(),
                expected_e_tag: expected_e_tag.clone(),
            };
        }
        ObjectError::AlreadyExists {
            endpoint: self.client.endpoint().to_owned(),
            bucket: self.client.bucket().to_owned(),
            key: self.key.clone(),
        }
    }

    fn raw_failure(&self, operation: &'static str, e: RawError) -> ObjectError {
        match e {
            RawError::PreconditionFailed => self.precondition_failed(),
            RawError::Status { status: 403, .. } => ObjectError::AccessDenied {
                endpoint: self.client.endpoint().to_owned(),
                bucket: self.client.bucket().to_owned(),
                key: self.key.clone(),
                cause: Box::new(e),
            },
            e => ObjectError::Request {
                endpoint: self.client.endpoint().to_owned(),
                bucket: self.client.bucket().to_owned(),
                key: self.key.clone(),
                operation,
                offset: None,
                cause: Box::new(e),
            },
        }
    }

    /// Starts the upload (recording it in the journal first, if any).
    fn start_upload(&mut self) -> Result<String, ObjectError> {
        if let Some(id) = &self.upload {
            return Ok(id.clone());
        }
        let store = Arc::clone(self.client.multipart());
        let path = self.path.clone();
        let result = self.client.block_on(async move { store.create_multipart(&path).await })?;
        let upload_id = result
            .map_err(|e| self.client.classify(&self.key, "create multipart upload", Some(0), e))?;
        if let Some((journal, checkpoint_id)) = &self.journal {
            let entry = JournalEntry {
                checkpoint_id: *checkpoint_id,
                upload_id: upload_id.clone(),
                part_size: self.options.part_size,
            };
            if let Err(e) = journal.record(&entry) {
                self.abort_upload(&upload_id);
                return Err(e);
            }
        }
        self.upload = Some(upload_id.clone());
        Ok(upload_id)
    }

    /// Hands the filled part to the upload, first waiting while the bound is reached. A
    /// part a resumed upload already holds (same length, same MD5) is not sent.
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
        let index = usize::try_from(self.parts).map_err(|_| self.upload_failed())?;
        let number = u32::try_from(self.parts + 1).map_err(|_| self.upload_failed())?;
        if let Some(held) = self.held.get(&number)
            && held.size == self.part.len() as u64
            && held.e_tag == md5_hex(&self.part)
        {
            self.done_parts.push(Some(PartId { content_id: format!("\"{}\"", held.e_tag) }));
            self.part.clear();
            self.parts += 1;
            self.parts_reused += 1;
            return Ok(());
        }
        while self.in_flight.len() >= self.options.max_in_flight {
            self.wait_oldest()?;
        }
        let upload_id = self.start_upload()?;
        let part_offset = self.bytes - self.part.len() as u64;
        let data = std::mem::replace(&mut self.part, Vec::with_capacity(self.options.part_size));
        let store = Arc::clone(self.client.multipart());
        let path = self.path.clone();
        let request =
            async move { store.put_part(&path, &upload_id, index, PutPayload::from(data)).await };
        self.in_flight.push_back((part_offset, index, self.client.spawn(request)));
        self.done_parts.push(None);
        self.parts += 1;
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), ObjectError> {
        let Some((offset, index, handle)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.client.block_on(handle)? {
            Ok(Ok(part)) => {
                if let Some(slot) = self.done_parts.get_mut(index) {
                    *slot = Some(part);
                }
                Ok(())
            }
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

/// The MD5 of a part as S3 reports it in a part's entity tag (lower-case hex).
fn md5_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(32);
    for b in Md5::digest(bytes) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Sink for ObjectSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.write_bytes(bytes).map_err(|e| {
            self.fail(&e);
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
