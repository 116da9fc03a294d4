//! The error type of the crate.

use std::fmt;

/// The boxed cause of an [`ObjectError`] (an `object_store` or runtime error).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to object storage.
///
/// Every variant that involves the server names the endpoint, the bucket and (when there is
/// one) the key, so that a message alone says where to look.
#[derive(Debug)]
#[non_exhaustive]
pub enum ObjectError {
    /// The text is not an `s3://BUCKET/KEY` location.
    InvalidLocation {
        /// The text given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The settings are unusable (for example a part size below the S3 minimum), or the
    /// store could not be built from them.
    InvalidSettings {
        /// What is wrong.
        reason: String,
    },
    /// The bucket does not exist on the endpoint.
    NoSuchBucket {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What the server said.
        cause: Cause,
    },
    /// The bucket exists but holds no object under the key.
    NoSuchKey {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What the server said.
        cause: Cause,
    },
    /// The server refused the credentials or the permission.
    AccessDenied {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What the server said.
        cause: Cause,
    },
    /// A request failed (network, timeout, server error after the retries).
    Request {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The operation (`HEAD`, ranged `GET`, `upload part`, ...).
        operation: &'static str,
        /// The byte offset in the object the operation was about, when there is one.
        offset: Option<u64>,
        /// What failed.
        cause: Cause,
    },
    /// The blocking API was called from inside an async (tokio) runtime, where it would
    /// deadlock or panic; call it from a plain thread (for example `spawn_blocking`).
    InsideAsyncRuntime,
    /// The runtime that drives the requests could not be started.
    Runtime {
        /// What the operating system said.
        cause: std::io::Error,
    },
    /// An earlier error left this upload unusable (it was aborted then).
    UploadFailed {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// A no-clobber write found an object under the key when it came to publish; the
    /// existing object is untouched and the upload was aborted.
    AlreadyExists {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// A replacement conditional on the object's entity tag found another object under the
    /// key (someone replaced it meanwhile); nothing was published and the upload was
    /// aborted.
    Changed {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The entity tag the object had when it was read.
        expected_e_tag: String,
    },
    /// No interrupted upload is recorded for the key, so there is nothing to resume.
    NothingToResume {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The journal file looked for.
        journal: std::path::PathBuf,
    },
    /// The local record of an interrupted upload could not be read or written.
    Journal {
        /// The journal file.
        path: std::path::PathBuf,
        /// What failed.
        cause: std::io::Error,
    },
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidLocation { url, reason } => {
                write!(f, "invalid object location {url:?}: {reason} (expected s3://BUCKET/KEY)")
            }
            Self::InvalidSettings { reason } => {
                write!(f, "invalid object storage settings: {reason}")
            }
            Self::NoSuchBucket { endpoint, bucket, cause } => {
                write!(f, "bucket {bucket:?} does not exist at endpoint {endpoint}: {cause}")
            }
            Self::NoSuchKey { endpoint, bucket, key, cause } => {
                write!(f, "no object s3://{bucket}/{key} at endpoint {endpoint}: {cause}")
            }
            Self::AccessDenied { endpoint, bucket, key, cause } => write!(
                f,
                "access denied to s3://{bucket}/{key} at endpoint {endpoint} \
                 (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): {cause}"
            ),
            Self::Request { endpoint, bucket, key, operation, offset, cause } => {
                write!(f, "{operation} of s3://{bucket}/{key}")?;
                if let Some(offset) = offset {
                    write!(f, " at offset {offset}")?;
                }
                write!(f, " failed at endpoint {endpoint}: {cause}")
            }
            Self::InsideAsyncRuntime => f.write_str(
                "the blocking object storage API was called from inside an async runtime; \
                 call it from a plain thread (e.g. tokio::task::spawn_blocking)",
            ),
            Self::Runtime { cause } => write!(f, "could not start the I/O runtime: {cause}"),
            Self::UploadFailed { bucket, key } => write!(
                f,
                "the upload to s3://{bucket}/{key} failed earlier and was aborted; \
                 nothing was published"
            ),
            Self::AlreadyExists { endpoint, bucket, key } => write!(
                f,
                "s3://{bucket}/{key} already exists at endpoint {endpoint}; not replaced \
                 (no-clobber), the upload was aborted"
            ),
            Self::Changed { endpoint, bucket, key, expected_e_tag } => write!(
                f,
                "s3://{bucket}/{key} at endpoint {endpoint} changed since it was read (its \
                 entity tag is no longer {expected_e_tag}); not replaced, the upload was aborted"
            ),
            Self::NothingToResume { bucket, key, journal } => write!(
                f,
                "no interrupted upload of s3://{bucket}/{key} to resume ({} does not exist)",
                journal.display()
            ),
            Self::Journal { path, cause } => {
                write!(f, "upload journal {}: {cause}", path.display())
            }
        }
    }
}

impl std::error::Error for ObjectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NoSuchBucket { cause, .. }
            | Self::NoSuchKey { cause, .. }
            | Self::AccessDenied { cause, .. }
            | Self::Request { cause, .. } => Some(cause.as_ref()),
            Self::Runtime { cause } | Self::Journal { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

impl From<ObjectError> for std::io::Error {
    fn from(e: ObjectError) -> Self {
        let kind = match &e {
            ObjectError::NoSuchBucket { .. } | ObjectError::NoSuchKey { .. } => {
                std::io::ErrorKind::NotFound
            }
            ObjectError::AccessDenied { .. } => std::io::ErrorKind::PermissionDenied,
            ObjectError::AlreadyExists { .. } => std::io::ErrorKind::AlreadyExists,
            ObjectError::InvalidLocation { .. } | ObjectError::InvalidSettings { .. } => {
                std::io::ErrorKind::InvalidInput
            }
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

impl From<ObjectError> for ckpt_frame_core::IoError {
    fn from(e: ObjectError) -> Self {
        ckpt_frame_core::IoError::from(std::io::Error::from(e))
    }
}
