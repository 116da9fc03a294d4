//! `heal --from` with one copy in object storage (issue 17).
//!
//! - **A local file healed from an object** ([`heal_file_from_object`]): the plan comes from
//!   [`plan_heal_ranged`], which reads the object only at its tail, its frame index and the
//!   frames that hold damage of the local copy, each by one exact ranged `GET`
//!   ([`RangedObject`] counts them), and uses a donor byte only where the local copy's own
//!   surviving check values record it, by the same rules as a local heal. The bytes to
//!   write come with the plan, so nothing is fetched twice; they are written with
//!   `ckpt_io_backends::rewrite_ranges` (durable).
//! - **An object healed from a local file** ([`heal_object_from_file`]): objects are
//!   immutable, so a damaged object is replaced whole by a multipart upload of the local
//!   copy ([`ObjectSink`], published only when complete), after checks that say the local
//!   copy is the right one (see that function for the guarantee).
//!
//! # Why here
//! The orchestration needs both the S3 client (this crate) and local durable rewrites
//! (`ckpt-io-backends`). Putting it in `ckpt-tree`, next to the local heal, would make every
//! user of `ckpt-tree` build `object_store`'s async HTTP stack, which this crate exists to
//! keep out of their way; `ckpt-io-backends` is small and synchronous, so this crate takes
//! it instead. The planning (which bytes, and the proof rules) stays in `ckpt-frame-core`,
//! free of I/O backends.

use crate::client::ObjectClient;
use crate::error::ObjectError;
use crate::sink::{ObjectSink, UploadOptions, UploadSummary};
use crate::source::{ObjectSource, Shared};
use ckpt_frame_core::scan::{Depth, RangedHealPlan, Region, ScanReport, plan_heal_ranged, scan};
use ckpt_frame_core::{CheckpointId, Error as FormatError, ErrorKind, IoError, IoErrorKind};
use ckpt_frame_core::{Sink, Source};
use ckpt_io_backends::{BackendError, IoMode, open_input, rewrite_ranges};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An object read by exact ranged `GET`s, one per read, with no read-ahead: a [`Source`]
/// for planners that choose their ranges themselves, such as [`plan_heal_ranged`]. Counts
/// the bytes and requests it sends, so a caller can report what a heal cost.
///
/// # Examples
/// ```no_run
/// use ckpt_frame_core::Source;
/// use ckpt_object::{ObjectClient, RangedObject, S3Settings};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ObjectClient::s3(&S3Settings::from_env(), "backups")?;
/// let mut object = RangedObject::open(&client, "state.ckpt")?; // one HEAD
/// let mut tail = [0u8; 64];
/// object.seek(object.len() - 64)?;
/// object.read_exact(&mut tail)?; // one GET of 64 bytes
/// assert_eq!((object.bytes_fetched(), object.requests()), (64, 2));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RangedObject {
    client: ObjectClient,
    key: String,
    path: ObjectPath,
    len: u64,
    position: u64,
    bytes_fetched: u64,
    requests: u64,
}

impl RangedObject {
    /// Opens `key` in the client's bucket: one `HEAD` for its length.
    ///
    /// # Errors
    /// [`ObjectError::NoSuchKey`], [`ObjectError::NoSuchBucket`],
    /// [`ObjectError::AccessDenied`] or [`ObjectError::Request`], naming the endpoint,
    /// bucket and key.
    pub fn open(client: &ObjectClient, key: &str) -> Result<Self, ObjectError> {
        let head = Shared::head(client, key)?;
        Ok(Self {
            client: client.clone(),
            key: key.to_owned(),
            path: head.path.clone(),
            len: head.len,
            position: 0,
            bytes_fetched: 0,
            requests: 1,
        })
    }

    /// The object's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes received by ranged `GET`s so far.
    pub fn bytes_fetched(&self) -> u64 {
        self.bytes_fetched
    }

    /// Requests sent so far: the `HEAD` and every ranged `GET`.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    fn get(&mut self, buf: &mut [u8]) -> Result<(), ObjectError> {
        let (start, end) = (self.position, self.position + buf.len() as u64);
        let store = Arc::clone(self.client.store());
        let path = self.path.clone();
        self.requests += 1;
        let bytes = self
            .client
            .block_on(async move { store.get_range(&path, start..end).await })?
            .map_err(|e| self.client.classify(&self.key, "ranged GET", Some(start), e))?;
        self.bytes_fetched += bytes.len() as u64;
        if bytes.len() != buf.len() {
            return Err(ObjectError::Request {
                endpoint: self.client.endpoint().to_owned(),
                bucket: self.client.bucket().to_owned(),
                key: self.key.clone(),
                operation: "ranged GET",
                offset: Some(start),
                cause: format!(
                    "asked for bytes {start}..{end}, got {} bytes (the object changed?)",
                    bytes.len()
                )
                .into(),
            });
        }
        buf.copy_from_slice(&bytes);
        self.position = end;
        Ok(())
    }
}

impl Source for RangedObject {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        if self.position.saturating_add(buf.len() as u64) > self.len {
            return Err(IoError::new(
                IoErrorKind::UnexpectedEof,
                "the object ends before the bytes asked for",
            ));
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.get(buf).map_err(IoError::from)
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

/// What [`heal_file_from_object`] did.
#[derive(Debug, Clone)]
pub struct FileHealOutcome {
    /// The plan and the ranges of the object it read.
    pub ranged: RangedHealPlan,
    /// Whether the regions of the plan's `rewrite` list were written (not a dry run, and
    /// any).
    pub rewritten: bool,
    /// Damaged regions left in the local copy, by a fresh scan after the rewrite (by the
    /// plan's scan for a dry run).
    pub still_bad: usize,
    /// The object's length.
    pub object_len: u64,
    /// Bytes received from the object, by [`RangedObject::bytes_fetched`].
    pub bytes_fetched: u64,
    /// Requests sent to the server (the `HEAD` and the ranged `GET`s).
    pub requests: u64,
}

impl FileHealOutcome {
    /// Whether the local copy now verifies (never after a dry run).
    pub fn healed(&self, dry_run: bool) -> bool {
        !dry_run && self.still_bad == 0
    }
}

/// What [`heal_object_from_file`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ObjectHealOutcome {
    /// The object verifies: nothing was uploaded.
    Verifies {
        /// The object's scan.
        scan: ScanReport,
    },
    /// The object was damaged and the local copy passed every check: it was uploaded whole
    /// over the object, or, for a dry run, would have been.
    Replaced {
        /// The object's scan before the upload.
        scan: ScanReport,
        /// The upload; `None` for a dry run.
        upload: Option<UploadSummary>,
    },
}

impl ObjectHealOutcome {
    /// The object's scan (before any upload).
    pub fn scan(&self) -> &ScanReport {
        match self {
            Self::Verifies { scan } | Self::Replaced { scan, .. } => scan,
        }
    }
}

/// Why [`heal_object_from_file`] refused to replace an object. Nothing was uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The object's identity cannot be read (its tail and every frame header are
    /// damaged), so nothing says the local copy is the same checkpoint.
    ObjectIdentityUnknown,
    /// The copies are different checkpoints.
    OtherCheckpoint {
        /// The object's checkpoint id.
        object: CheckpointId,
        /// The local copy's (`None` when it cannot be read).
        local: Option<CheckpointId>,
    },
    /// The copies have different lengths.
    OtherLength {
        /// The object's length.
        object: u64,
        /// The local copy's.
        local: u64,
    },
    /// The local copy does not verify (at `Depth::Decoded`).
    LocalDamaged {
        /// How many of its regions do not verify.
        bad_regions: usize,
        /// The first of them.
        first: Region,
    },
    /// A region that verifies in the object holds other bytes in the local copy.
    Disagrees {
        /// The object's region.
        region: Region,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ObjectIdentityUnknown => f.write_str(
                "the object's identity cannot be read (its tail and every frame header are \
                 damaged), so the local copy cannot be shown to be the same checkpoint",
            ),
            Self::OtherCheckpoint { object, local: Some(local) } => {
                write!(f, "the copies are different checkpoints (object {object}, local {local})")
            }
            Self::OtherCheckpoint { object, local: None } => write!(
                f,
                "the local copy's identity cannot be read (the object is checkpoint {object})"
            ),
            Self::OtherLength { object, local } => write!(
                f,
                "the copies have different lengths (object {object} bytes, local {local} bytes)"
            ),
            Self::LocalDamaged { bad_regions, first } => write!(
                f,
                "the local copy is damaged too: {bad_regions} regions do not verify, the first \
                 a {} at offset {} ({})",
                first.kind.name(),
                first.offset,
                first.problem.unwrap_or("does not verify")
            ),
            Self::Disagrees { region } => write!(
                f,
                "the local copy differs from the object in its {} at offset {} ({} bytes), \
                 which verifies in the object",
                region.kind.name(),
                region.offset,
                region.len
            ),
        }
    }
}

/// Why a heal with one copy in object storage stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum HealError {
    /// The object could not be opened, read or written.
    Object(ObjectError),
    /// The local copy could not be opened or rewritten.
    Local(BackendError),
    /// The copies cannot be compared (not checkpoints, different checkpoints) or reading
    /// failed while planning.
    Plan {
        /// The damaged copy.
        damaged: String,
        /// The donor.
        good: String,
        /// What the planner found.
        error: FormatError,
    },
    /// Scanning a copy failed.
    Read {
        /// The copy being read.
        what: String,
        /// What failed.
        error: FormatError,
    },
    /// [`heal_object_from_file`] refused to replace the object; nothing was uploaded.
    Refused {
        /// The object, as `s3://BUCKET/KEY`.
        object: String,
        /// The local copy.
        local: PathBuf,
        /// Why.
        refusal: Refusal,
    },
}

impl HealError {
    /// 1 when the data says no (different or damaged copies), 2 for I/O and usage errors,
    /// as for a local heal.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Object(_) | Self::Local(_) => 2,
            Self::Plan { error, .. } | Self::Read { error, .. } => match error.kind() {
                ErrorKind::Io | ErrorKind::InvalidUse => 2,
                _ => 1,
            },
            Self::Refused { .. } => 1,
        }
    }
}

impl fmt::Display for HealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Object(e) => write!(f, "{e}"),
            Self::Local(e) => write!(f, "{e}"),
            Self::Plan { damaged, good, error } => {
                write!(f, "cannot heal {damaged} from {good}: {error}")
            }
            Self::Read { what, error } => write!(f, "{what}: {error}"),
            Self::Refused { object, local, refusal } => write!(
                f,
                "refusing to replace {object} with {}: {refusal}; nothing uploaded",
                local.display()
            ),
        }
    }
}

impl std::error::Error for HealError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Object(e) => Some(e),
            Self::Local(e) => Some(e),
            Self::Plan { error, .. } | Self::Read { error, .. } => Some(error),
            Self::Refused { .. } => None,
        }
    }
}

impl From<ObjectError> for HealError {
    fn from(e: ObjectError) -> Self {
        Self::Object(e)
    }
}

fn url(client: &ObjectClient, key: &str) -> String {
    format!("s3://{}/{key}", client.bucket())
}

/// Heals the local checkpoint file `damaged` in place from the object `key`, a copy of the
/// same checkpoint, fetching only the object's tail, index and the frames that hold
/// damage (see [`plan_heal_ranged`]). Writes each damaged region whose object bytes verify
/// and are the bytes the local copy's own surviving check values record, nothing else,
/// then scans the result. With `dry_run`, plans only (the ranges are still fetched, to
/// check them).
///
/// # Errors
/// [`HealError::Object`] when the object cannot be opened, [`HealError::Local`] when the
/// file cannot be opened or rewritten, [`HealError::Plan`] when the copies are not copies
/// of one checkpoint or a read fails while planning, [`HealError::Read`] when the result
/// cannot be scanned.
///
/// # Examples
/// ```no_run
/// use ckpt_object::{ObjectClient, S3Settings, heal_file_from_object};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ObjectClient::s3(&S3Settings::from_env(), "backups")?;
/// let outcome = heal_file_from_object("state.ckpt".as_ref(), &client, "state.ckpt", false)?;
/// println!("fetched {} of {} bytes", outcome.bytes_fetched, outcome.object_len);
/// assert!(outcome.healed(false));
/// # Ok(())
/// # }
/// ```
pub fn heal_file_from_object(
    damaged: &Path,
    client: &ObjectClient,
    key: &str,
    dry_run: bool,
) -> Result<FileHealOutcome, HealError> {
    let mut donor = RangedObject::open(client, key)?;
    let mut d = open_input(damaged, IoMode::Buffered).map_err(HealError::Local)?;
    let ranged = plan_heal_ranged(&mut d, &mut donor).map_err(|error| HealError::Plan {
        damaged: damaged.display().to_string(),
        good: url(client, key),
        error,
    })?;
    drop(d);
    let rewritten = !dry_run && !ranged.plan.rewrite.is_empty();
    if rewritten {
        let writes: Vec<(u64, &[u8])> = ranged
            .plan
            .rewrite
            .iter()
            .zip(&ranged.rewrite_bytes)
            .map(|(r, b)| (r.offset, b.as_slice()))
            .collect();
        rewrite_ranges(damaged, &writes).map_err(HealError::Local)?;
    }
    let still_bad = if dry_run {
        ranged.plan.damaged.bad_regions().count()
    } else {
        let mut d = open_input(damaged, IoMode::Buffered).map_err(HealError::Local)?;
        scan(&mut d, Depth::Decoded)
            .map_err(|error| HealError::Read { what: damaged.display().to_string(), error })?
            .bad_regions()
            .count()
    };
    Ok(FileHealOutcome {
        ranged,
        rewritten,
        still_bad,
        object_len: donor.len(),
        bytes_fetched: donor.bytes_fetched(),
        requests: donor.requests(),
    })
}

/// Heals the object `key` from the local checkpoint file `good` by replacing it whole:
/// objects cannot be rewritten in place.
///
/// The object is scanned once, streamed (at `Depth::Decoded`), and every byte the scan
/// reads is compared with the local copy's byte at the same offset as it arrives. When the
/// object verifies, nothing is uploaded. Otherwise the local copy must be the same
/// checkpoint (the object's identity readable and equal to the local copy's, the same
/// length), verify fully at `Depth::Decoded`, and hold the same bytes as the object in
/// every region that verifies in the object; then it is uploaded whole with a multipart
/// upload that publishes the new object only when complete.
///
/// **The guarantee**: every byte that the object's own check values still vouch for is the
/// same after the upload, and every other byte is the local copy's, which its own check
/// values (equal to the object's wherever the object's survive) vouch for. A local copy
/// that is damaged, of another checkpoint or length, or that differs anywhere the object
/// verifies, is refused and nothing is uploaded. (A region damaged in the object is not
/// checked against the object's other surviving records byte by byte, as a local heal
/// does: the whole local copy verifying with the same surviving records is the check.)
/// The upload is not conditional on the object being unchanged since the scan.
///
/// The upload uses `options` (part size, parts in flight). With `dry_run`, checks and
/// uploads nothing.
///
/// # Errors
/// [`HealError::Refused`] with the [`Refusal`] (exit code 1); [`HealError::Object`] when the
/// object cannot be read or the upload fails (nothing is published then);
/// [`HealError::Local`] or [`HealError::Read`] when the local copy cannot be read.
///
/// # Examples
/// ```no_run
/// use ckpt_object::{
///     ObjectClient, ObjectHealOutcome, S3Settings, UploadOptions, heal_object_from_file,
/// };
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ObjectClient::s3(&S3Settings::from_env(), "backups")?;
/// match heal_object_from_file(
///     &client,
///     "state.ckpt",
///     "good.ckpt".as_ref(),
///     UploadOptions::default(),
///     false,
/// )? {
///     ObjectHealOutcome::Verifies { .. } => println!("nothing to do"),
///     ObjectHealOutcome::Replaced { upload, .. } => println!("replaced: {upload:?}"),
///     _ => {}
/// }
/// # Ok(())
/// # }
/// ```
pub fn heal_object_from_file(
    client: &ObjectClient,
    key: &str,
    good: &Path,
    options: UploadOptions,
    dry_run: bool,
) -> Result<ObjectHealOutcome, HealError> {
    let object = url(client, key);
    let local_err = |error: std::io::Error| {
        HealError::Local(BackendError::Open { path: good.to_path_buf(), source: error })
    };
    let file = File::open(good).map_err(local_err)?;
    let local_len = file.metadata().map_err(local_err)?.len();
    let source = ObjectSource::open(client, key)?;
    let mut tee = Compared {
        object: source,
        local: file,
        local_len,
        at: 0,
        differ: Vec::new(),
        mine: Vec::new(),
    };
    let report = scan(&mut tee, Depth::Decoded)
        .map_err(|error| HealError::Read { what: object.clone(), error })?;
    if report.is_ok() {
        return Ok(ObjectHealOutcome::Verifies { scan: report });
    }
    let refuse =
        |refusal| HealError::Refused { object: object.clone(), local: good.into(), refusal };
    let Some(object_id) = report.id else {
        return Err(refuse(Refusal::ObjectIdentityUnknown));
    };
    if local_len != report.len {
        return Err(refuse(Refusal::OtherLength { object: report.len, local: local_len }));
    }
    let mut local = open_input(good, IoMode::Buffered).map_err(HealError::Local)?;
    let local_report = scan(&mut local, Depth::Decoded)
        .map_err(|error| HealError::Read { what: good.display().to_string(), error })?;
    drop(local);
    if local_report.id != Some(object_id) {
        return Err(refuse(Refusal::OtherCheckpoint { object: object_id, local: local_report.id }));
    }
    if let Some(first) = local_report.bad_regions().next() {
        let bad_regions = local_report.bad_regions().count();
        return Err(refuse(Refusal::LocalDamaged { bad_regions, first: *first }));
    }
    // The scan read every byte of every region that verifies (a region is checked from its
    // own bytes), so the comparison made while streaming covers them all.
    let differs = |r: &Region| tee.differ.iter().any(|&(a, b)| a < r.end() && r.offset < b);
    if let Some(region) = report.regions.iter().find(|r| r.is_ok() && differs(r)) {
        return Err(refuse(Refusal::Disagrees { region: *region }));
    }
    if dry_run {
        return Ok(ObjectHealOutcome::Replaced { scan: report, upload: None });
    }
    // Replaced only if the object is still the one scanned: a writer that replaced it
    // meanwhile keeps its object (ObjectError::Changed).
    let scanned = tee.object.e_tag().map(str::to_owned);
    let upload = upload_file(client, key, good, options, scanned.as_deref())?;
    Ok(ObjectHealOutcome::Replaced { scan: report, upload: Some(upload) })
}

/// Uploads the file at `path` over `key`, published only when complete.
fn upload_file(
    client: &ObjectClient,
    key: &str,
    path: &Path,
    options: UploadOptions,
    if_match: Option<&str>,
) -> Result<UploadSummary, HealError> {
    let file = File::open(path).map_err(|source| {
        HealError::Local(BackendError::Open { path: path.to_path_buf(), source })
    })?;
    let read_err = |source| {
        HealError::Local(BackendError::Io { path: path.to_path_buf(), op: "read", source })
    };
    let mut sink = ObjectSink::create(client, key, options)?;
    match if_match {
        Some(e_tag) if client.raw().is_some() => sink = sink.replacing(e_tag)?,
        _ => tracing::warn!(
            key,
            "the object is replaced unconditionally: no entity tag or no S3 endpoint"
        ),
    }
    let mut buf = vec![0u8; options.part_size().max(1 << 20)];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at).map_err(read_err)?;
        if n == 0 {
            break;
        }
        let piece = buf.get(..n).unwrap_or_default();
        // On failure the sink is dropped without `complete`, which aborts the upload.
        sink.write_all(piece).map_err(|e| HealError::Read {
            what: url(client, key),
            error: FormatError::Io { offset: at, error: e },
        })?;
        at += n as u64;
    }
    Ok(sink.complete()?)
}

/// The object, read through a scan, with every byte read compared with the local copy's
/// byte at the same offset: `differ` lists the ranges read that differ (or that the local
/// copy does not have).
struct Compared {
    object: ObjectSource,
    local: File,
    local_len: u64,
    at: u64,
    differ: Vec<(u64, u64)>,
    /// The local copy's bytes of the last read, kept to spare an allocation per read.
    mine: Vec<u8>,
}

impl Source for Compared {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        self.object.read_exact(buf)?;
        let (start, end) = (self.at, self.at + buf.len() as u64);
        self.at = end;
        self.mine.resize(buf.len(), 0);
        // A local read that fails counts as a difference: the safe side, a refusal.
        let same = end <= self.local_len
            && self.local.read_exact_at(&mut self.mine, start).is_ok()
            && self.mine.as_slice() == &*buf;
        if !same {
            self.differ.push((start, end));
        }
        Ok(())
    }

    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        self.object.total_len()
    }

    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        self.object.seek(offset)?;
        self.at = offset;
        Ok(())
    }
}
