//! The one error type of tree checkpoints.

use crate::manifest::ManifestError;
use ckpt_frame_core::Error as FormatError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can stop a tree checkpoint or restore.
#[derive(Debug)]
#[non_exhaustive]
pub enum TreeError {
    /// The checkpoint format reported an error (corruption, truncation, I/O under it, ...).
    Format(FormatError),
    /// The manifest in frame 0 is not valid.
    Manifest(ManifestError),
    /// A file system operation failed.
    Io {
        /// The path involved.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file changed size while it was being checkpointed.
    Changed {
        /// The file.
        path: PathBuf,
        /// How.
        how: &'static str,
    },
    /// An input or restore path that must be refused.
    Refused {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// Worker threads could not be started.
    Threads {
        /// What the system said.
        reason: String,
    },
    /// The checkpoint's frames do not match what its manifest describes.
    Layout {
        /// What is wrong.
        what: &'static str,
    },
}

impl TreeError {
    /// The exit status the CLI uses: 1 when the checkpoint's data is bad, 2 for usage or
    /// environment errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Format(e) => format_exit_code(e),
            Self::Manifest(_) | Self::Layout { .. } => 1,
            Self::Refused { .. }
            | Self::Io { .. }
            | Self::Changed { .. }
            | Self::Threads { .. } => 2,
        }
    }
}

/// 1 for damaged or foreign data, 2 for I/O and misuse.
pub fn format_exit_code(e: &FormatError) -> u8 {
    use ckpt_frame_core::ErrorKind as K;
    match e.kind() {
        K::Io | K::InvalidUse => 2,
        _ => 1,
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(e) => write!(f, "{e}"),
            Self::Manifest(e) => write!(f, "{e}"),
            Self::Io { path, op, source } => write!(f, "{op} {}: {source}", path.display()),
            Self::Changed { path, how } => {
                write!(f, "{} {how} while it was being checkpointed", path.display())
            }
            Self::Refused { path, reason } => write!(f, "refusing {}: {reason}", path.display()),
            Self::Threads { reason } => write!(f, "cannot start worker threads: {reason}"),
            Self::Layout { what } => {
                write!(f, "checkpoint layout differs from its manifest: {what}")
            }
        }
    }
}

impl std::error::Error for TreeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Format(e) => Some(e),
            Self::Manifest(e) => Some(e),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<FormatError> for TreeError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

pub(crate) fn io_err<'p>(
    path: &'p Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> TreeError + 'p {
    move |source| TreeError::Io { path: path.to_path_buf(), op, source }
}
