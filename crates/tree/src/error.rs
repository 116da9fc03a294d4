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
    /// A path asked for is not in the checkpoint.
    NotInCheckpoint {
        /// The path asked for.
        path: PathBuf,
    },
    /// The checkpoint's frames do not match what its manifest describes.
    Layout {
        /// What is wrong.
        what: &'static str,
    },
    /// A block the checkpoint stores does not hash to what its block table records.
    TableMismatch {
        /// The file's path.
        path: String,
        /// The block number (of 4 KiB).
        block: u64,
    },
    /// An incremental checkpoint was given where its chain is needed (restore it from a
    /// file, with [`crate::chain`]).
    NeedsParent,
    /// An incremental checkpoint's chain cannot be used: which link, and why.
    Chain {
        /// The checkpoint whose parent is at fault.
        child: PathBuf,
        /// Where its parent was looked for.
        parent: PathBuf,
        /// What is wrong.
        problem: crate::chain::ChainProblem,
    },
}

impl TreeError {
    /// The exit status the CLI uses: 1 when the checkpoint's data is bad, 2 for usage or
    /// environment errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Format(e) => format_exit_code(e),
            Self::Manifest(_) | Self::Layout { .. } | Self::TableMismatch { .. } => 1,
            Self::Chain { problem, .. } => problem.exit_code(),
            Self::NeedsParent
            | Self::Refused { .. }
            | Self::Io { .. }
            | Self::Changed { .. }
            | Self::NotInCheckpoint { .. }
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
            Self::NotInCheckpoint { path } => {
                write!(f, "{}: not found in the checkpoint", path.display())
            }
            Self::Threads { reason } => write!(f, "cannot start worker threads: {reason}"),
            Self::Layout { what } => {
                write!(f, "checkpoint layout differs from its manifest: {what}")
            }
            Self::TableMismatch { path, block } => write!(
                f,
                "block table: block {block} of {path:?} does not hash to the value recorded"
            ),
            Self::NeedsParent => f.write_str(
                "an incremental checkpoint: restoring it needs its parent, read from a file",
            ),
            Self::Chain { child, parent, problem } => {
                write!(f, "{} (parent of {}): {problem}", parent.display(), child.display())
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

/// Something a write or restore could not do exactly, which did not stop it (tar prints
/// these as warnings). [`Warning::incomplete`] says whether the result differs from what
/// was asked for, which the CLI reports with exit status 1, as tar does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Warning {
    /// A socket (or another type a checkpoint cannot hold) was not stored; tar skips them
    /// too. Not counted as incomplete: a socket is not data.
    Skipped {
        /// The path skipped.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// A directory on another file system was stored empty (`--one-file-system`).
    OtherFileSystem {
        /// The mount point stored without its contents.
        path: PathBuf,
    },
    /// A file changed while it was read: what was read is stored (a file that shrank is
    /// padded with zeros to the length listed in the manifest, as tar pads it).
    Changed {
        /// The file.
        path: PathBuf,
        /// How it changed.
        how: &'static str,
    },
    /// An attribute or entry a restore could not recreate (a device node or a `trusted.`
    /// attribute without root, an owner the file system refuses, ...).
    NotRestored {
        /// The path in the destination.
        path: PathBuf,
        /// What was not restored.
        what: String,
        /// Why.
        reason: String,
    },
}

impl Warning {
    /// Whether the checkpoint or restore differs from its input (tar's exit status 1).
    pub fn incomplete(&self) -> bool {
        matches!(self, Self::Changed { .. } | Self::NotRestored { .. })
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Skipped { path, what } => write!(f, "{}: {what} ignored", path.display()),
            Self::OtherFileSystem { path } => write!(
                f,
                "{}: on a different file system; stored without its contents",
                path.display()
            ),
            Self::Changed { path, how } => {
                write!(f, "{}: {how} while it was read; stored as read", path.display())
            }
            Self::NotRestored { path, what, reason } => {
                write!(f, "{}: {what} not restored: {reason}", path.display())
            }
        }
    }
}
