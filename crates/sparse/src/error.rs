//! The crate's error type.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What went wrong, with the evidence: the file, the operation and, where one applies, the
/// offset.
///
/// `op` is a short verb phrase that reads in the message `cannot {op} {path}`, for example
/// `"punch a hole in"`.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::SparseError;
/// use std::path::PathBuf;
///
/// let err = SparseError::Io {
///     path: PathBuf::from("/data/img"),
///     op: "punch a hole in",
///     offset: Some(4096),
///     source: std::io::Error::from_raw_os_error(9),
/// };
/// let text = err.to_string();
/// assert!(text.starts_with("cannot punch a hole in /data/img at offset 4096: "));
/// assert!(std::error::Error::source(&err).is_some());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SparseError {
    /// A system call failed.
    Io {
        /// The file it was made on.
        path: PathBuf,
        /// What was being done, as a verb phrase (`"seek to data in"`).
        op: &'static str,
        /// The byte offset the call was about, if any.
        offset: Option<u64>,
        /// The error the system reported.
        source: io::Error,
    },
    /// The file or its file system cannot do what was asked.
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What was being done, as a verb phrase.
        op: &'static str,
        /// Why not.
        reason: String,
    },
    /// The kernel answered with something this crate cannot make sense of (for example a
    /// FIEMAP reply that does not move forward).
    BadReply {
        /// The file.
        path: PathBuf,
        /// What was being done, as a verb phrase.
        op: &'static str,
        /// The byte offset the call was about.
        offset: u64,
        /// What was wrong with the answer.
        detail: String,
    },
}

impl SparseError {
    /// A closure turning an [`io::Error`] into [`SparseError::Io`], for `map_err`.
    pub(crate) fn io(
        path: &Path,
        op: &'static str,
        offset: Option<u64>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { path, op, offset, source }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Unsupported { path, .. }
            | Self::BadReply { path, .. } => path,
        }
    }

    /// The operation that failed, as a verb phrase.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Io { op, .. } | Self::Unsupported { op, .. } | Self::BadReply { op, .. } => op,
        }
    }

    /// The [`io::ErrorKind`] that best describes the error (`Unsupported` for
    /// [`SparseError::Unsupported`], `InvalidData` for [`SparseError::BadReply`]).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Io { source, .. } => source.kind(),
            Self::Unsupported { .. } => io::ErrorKind::Unsupported,
            Self::BadReply { .. } => io::ErrorKind::InvalidData,
        }
    }
}

impl fmt::Display for SparseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, op, offset, source } => {
                write!(f, "cannot {op} {}", path.display())?;
                if let Some(offset) = offset {
                    write!(f, " at offset {offset}")?;
                }
                write!(f, ": {source}")
            }
            Self::Unsupported { path, op, reason } => {
                write!(f, "cannot {op} {}: {reason}", path.display())
            }
            Self::BadReply { path, op, offset, detail } => {
                write!(
                    f,
                    "cannot {op} {} at offset {offset}: unexpected reply: {detail}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for SparseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Unsupported { .. } | Self::BadReply { .. } => None,
        }
    }
}

impl From<SparseError> for io::Error {
    /// Keeps the kind (see [`SparseError::kind`]) and the full message.
    fn from(err: SparseError) -> Self {
        io::Error::new(err.kind(), err)
    }
}
