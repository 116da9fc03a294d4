//! The error type of the crate.

use core::fmt;

/// Everything that can go wrong writing or restoring a checkpoint.
///
/// Offsets are byte offsets relative to the start of the checkpoint (not of the file that
/// holds it). `frame` is the frame's index in the checkpoint when one is known.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The API was used out of order; nothing was written or read.
    InvalidUse(Misuse),
    /// A style byte this build cannot handle (unknown, or its codec was not compiled in).
    UnsupportedStyle {
        /// The style byte.
        style: u8,
        /// Frame index, when the style came from a checkpoint.
        frame: Option<u64>,
    },
    /// The sink or source failed.
    Io {
        /// Checkpoint offset of the failed operation.
        offset: u64,
        /// What the sink or source reported.
        error: IoError,
    },
    /// The caller's fill callback of
    /// [`FrameWriter::add_streamed`](crate::FrameWriter::add_streamed) failed.
    Input {
        /// Frame index.
        frame: u64,
        /// Index of the buffer within the frame.
        buffer: u64,
        /// What the callback reported.
        error: IoError,
    },
    /// A codec refused to compress or decompress a chunk.
    Codec {
        /// Frame index.
        frame: u64,
        /// Checkpoint offset of the chunk header.
        offset: u64,
        /// The codec's explanation.
        error: CodecError,
    },
    /// Structural damage: a magic number, reserved field, length or count is wrong.
    Corrupt {
        /// Frame index, when the damage is inside a frame.
        frame: Option<u64>,
        /// Checkpoint offset of the damaged structure.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A checksum over stored data does not match.
    ChecksumMismatch {
        /// Frame index, when the checksum belongs to a frame.
        frame: Option<u64>,
        /// Checkpoint offset of the structure the checksum protects.
        offset: u64,
        /// Which checksum failed.
        what: &'static str,
        /// The value stored in the checkpoint.
        expected: u64,
        /// The value computed from the bytes that were read.
        found: u64,
    },
    /// The checkpoint ends before a structure that must be there.
    Truncated {
        /// Checkpoint offset where more bytes were needed.
        offset: u64,
        /// What was being read.
        what: &'static str,
    },
    /// The checkpoint was written in a format version this crate does not read.
    VersionMismatch {
        /// Checkpoint offset of the versioned structure.
        offset: u64,
        /// The version found.
        found: u16,
        /// The version this crate reads.
        supported: u16,
    },
    /// The restore plan differs from what was written.
    PlanMismatch {
        /// Frame index.
        frame: u64,
        /// The difference.
        mismatch: PlanMismatch,
    },
    /// Two checkpoints that must be copies of each other (for healing) are not.
    NotACopy {
        /// Why not.
        reason: &'static str,
    },
    /// A checkpoint that builds on a parent was given a parent that is not the one it
    /// names: another checkpoint (`found_id` differs) or the same one changed since
    /// (`found_digest` differs).
    ParentMismatch {
        /// The parent's id the checkpoint names.
        expected_id: crate::CheckpointId,
        /// The parent's lineage digest the checkpoint names.
        expected_digest: u64,
        /// The id of the checkpoint given as parent.
        found_id: crate::CheckpointId,
        /// Its lineage digest.
        found_digest: u64,
    },
    /// Reading a chunk this checkpoint inherits from its parent failed in the parent (or
    /// further up the chain): the parent is damaged, truncated or unreadable.
    Parent {
        /// Frame index (the same in the checkpoint and its parent).
        frame: u64,
        /// Chunk index within the frame.
        chunk: u64,
        /// What went wrong in the parent; its offsets are the parent's.
        error: alloc::boxed::Box<Error>,
    },
    /// An earlier error left this handle unusable; the first error was returned then.
    Failed {
        /// A summary of the first error.
        first: ErrorKind,
    },
}

/// Ways to use the API out of order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// A frame was opened while another was still open (its writer was dropped unclosed).
    FrameAlreadyOpen,
    /// The checkpoint was finished while a frame was open.
    FinishInsideFrame,
    /// The checkpoint was already finished.
    AlreadyFinished,
    /// An encoded frame does not fit this writer (not the next index, another checkpoint's,
    /// or bytes that do not match its description).
    ForeignFrame,
    /// Random access needs a source that knows its length and can seek.
    NotSeekable,
    /// [`FrameWriter::add_streamed`](crate::FrameWriter::add_streamed) on an LZ4 frame.
    StreamedLz4,
    /// A frame index past the end of the index.
    NoSuchFrame {
        /// The index asked for.
        index: u64,
        /// How many frames the checkpoint holds.
        frame_count: u64,
    },
    /// A frame of a checkpoint with a parent holds a chunk inherited from the parent, but it
    /// was opened without one (see `Reader::open_frame_inheriting`).
    ParentNeeded {
        /// Frame index.
        frame: u64,
    },
    /// A parent can be given only before the first frame is written, or a parent was given
    /// for a checkpoint that names none (or none for one that names one).
    ParentPlacement,
    /// A checkpoint cannot build on a checkpoint with its own id.
    OwnParent,
}

/// How a restore plan differs from the written one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanMismatch {
    /// The caller's buffer has a different length than the one written.
    BufferLength {
        /// Buffer index within the frame.
        buffer: u64,
        /// Length written.
        written: u64,
        /// Length the caller asked to restore.
        requested: u64,
    },
    /// The caller asked for more buffers than the frame holds.
    TooManyBuffers {
        /// Buffers the frame holds.
        written: u64,
    },
    /// The caller closed the frame before restoring all its buffers.
    BuffersLeft {
        /// Buffers restored.
        restored: u64,
    },
    /// The caller finished a streaming restore before reading every frame.
    FramesLeft {
        /// Frames read.
        read: u64,
    },
}

/// A copyable summary of an [`Error`], kept by a handle that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::InvalidUse`].
    InvalidUse,
    /// See [`Error::UnsupportedStyle`].
    UnsupportedStyle,
    /// See [`Error::Io`].
    Io,
    /// See [`Error::Input`].
    Input,
    /// See [`Error::Codec`].
    Codec,
    /// See [`Error::Corrupt`].
    Corrupt,
    /// See [`Error::ChecksumMismatch`].
    ChecksumMismatch,
    /// See [`Error::Truncated`].
    Truncated,
    /// See [`Error::VersionMismatch`].
    VersionMismatch,
    /// See [`Error::PlanMismatch`].
    PlanMismatch,
    /// See [`Error::NotACopy`].
    NotACopy,
    /// See [`Error::ParentMismatch`].
    ParentMismatch,
    /// See [`Error::Parent`].
    Parent,
}

impl Error {
    /// The summary kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidUse(_) => ErrorKind::InvalidUse,
            Self::UnsupportedStyle { .. } => ErrorKind::UnsupportedStyle,
            Self::Io { .. } => ErrorKind::Io,
            Self::Input { .. } => ErrorKind::Input,
            Self::Codec { .. } => ErrorKind::Codec,
            Self::Corrupt { .. } => ErrorKind::Corrupt,
            Self::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
            Self::Truncated { .. } => ErrorKind::Truncated,
            Self::VersionMismatch { .. } => ErrorKind::VersionMismatch,
            Self::PlanMismatch { .. } => ErrorKind::PlanMismatch,
            Self::NotACopy { .. } => ErrorKind::NotACopy,
            Self::ParentMismatch { .. } => ErrorKind::ParentMismatch,
            Self::Parent { .. } => ErrorKind::Parent,
            Self::Failed { first } => *first,
        }
    }

    /// The frame index the error is about, if any.
    pub fn frame(&self) -> Option<u64> {
        match self {
            Self::Codec { frame, .. }
            | Self::PlanMismatch { frame, .. }
            | Self::Input { frame, .. }
            | Self::Parent { frame, .. } => Some(*frame),
            Self::Corrupt { frame, .. }
            | Self::ChecksumMismatch { frame, .. }
            | Self::UnsupportedStyle { frame, .. } => *frame,
            _ => None,
        }
    }

    /// The checkpoint offset the error is about, if any.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Io { offset, .. }
            | Self::Codec { offset, .. }
            | Self::Corrupt { offset, .. }
            | Self::ChecksumMismatch { offset, .. }
            | Self::Truncated { offset, .. }
            | Self::VersionMismatch { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

fn frame_prefix(f: &mut fmt::Formatter<'_>, frame: Option<u64>) -> fmt::Result {
    match frame {
        Some(i) => write!(f, "frame {i}, "),
        None => Ok(()),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUse(m) => write!(f, "invalid use: {m}"),
            Self::UnsupportedStyle { style, frame } => {
                frame_prefix(f, *frame)?;
                write!(f, "unsupported frame style {style}")
            }
            Self::Io { offset, error } => {
                write!(f, "I/O error at checkpoint offset {offset}: {error}")
            }
            Self::Input { frame, buffer, error } => {
                write!(f, "frame {frame}, buffer {buffer}: reading the input failed: {error}")
            }
            Self::Codec { frame, offset, error } => {
                write!(f, "frame {frame}, chunk at offset {offset}: codec error: {error}")
            }
            Self::Corrupt { frame, offset, what } => {
                write!(f, "corrupt checkpoint: ")?;
                frame_prefix(f, *frame)?;
                write!(f, "offset {offset}: {what}")
            }
            Self::ChecksumMismatch { frame, offset, what, expected, found } => {
                write!(f, "checksum mismatch: ")?;
                frame_prefix(f, *frame)?;
                write!(
                    f,
                    "{what} at offset {offset}: stored {expected:#018x}, computed {found:#018x}"
                )
            }
            Self::Truncated { offset, what } => {
                write!(f, "truncated checkpoint: {what} missing at offset {offset}")
            }
            Self::VersionMismatch { offset, found, supported } => write!(
                f,
                "format version {found} at offset {offset} is not supported (this build reads versions 1 to {supported})"
            ),
            Self::ParentMismatch { expected_id, expected_digest, found_id, found_digest } => {
                if expected_id == found_id {
                    write!(
                        f,
                        "parent checkpoint {found_id} was replaced or changed: digest {found_digest:#018x}, the checkpoint names {expected_digest:#018x}"
                    )
                } else {
                    write!(
                        f,
                        "wrong parent: the checkpoint builds on {expected_id}, the parent given is {found_id}"
                    )
                }
            }
            Self::Parent { frame, chunk, error } => write!(
                f,
                "frame {frame}, chunk {chunk} is inherited from the parent checkpoint, which failed: {error}"
            ),
            Self::PlanMismatch { frame, mismatch } => {
                write!(f, "restore plan differs from the checkpoint in frame {frame}: {mismatch}")
            }
            Self::NotACopy { reason } => write!(f, "not a copy of the same checkpoint: {reason}"),
            Self::Failed { first } => {
                write!(f, "this handle is failed: an earlier {first:?} error left it unusable")
            }
        }
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameAlreadyOpen => {
                f.write_str("a frame is already open (the previous frame was never closed)")
            }
            Self::FinishInsideFrame => f.write_str("finish called while a frame is open"),
            Self::AlreadyFinished => f.write_str("the checkpoint is already finished"),
            Self::ForeignFrame => f.write_str(
                "the encoded frame does not fit this writer (index, checkpoint identity or length)",
            ),
            Self::NotSeekable => {
                f.write_str("random access needs a source that can seek and knows its length")
            }
            Self::StreamedLz4 => f.write_str(
                "streamed buffers need a RAW frame (linked LZ4 needs the whole buffer in memory)",
            ),
            Self::NoSuchFrame { index, frame_count } => {
                write!(f, "frame {index} does not exist (the checkpoint has {frame_count})")
            }
            Self::ParentNeeded { frame } => write!(
                f,
                "frame {frame} inherits chunks from the parent checkpoint: open it with its parent"
            ),
            Self::ParentPlacement => f.write_str(
                "a parent must be given before the first frame, and exactly when the checkpoint names one",
            ),
            Self::OwnParent => f.write_str("a checkpoint cannot build on itself (same id)"),
        }
    }
}

impl fmt::Display for PlanMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferLength { buffer, written, requested } => write!(
                f,
                "buffer {buffer} was written with {written} bytes but {requested} were requested"
            ),
            Self::TooManyBuffers { written } => {
                write!(f, "more buffers requested than the {written} written")
            }
            Self::BuffersLeft { restored } => {
                write!(f, "frame closed after {restored} buffers but more were written")
            }
            Self::FramesLeft { read } => {
                write!(f, "restore finished after {read} frames but more were written")
            }
        }
    }
}

/// The error a [`Sink`](crate::Sink) or [`Source`](crate::Source) reports.
///
/// Without the `std` feature it carries a kind and a static message; with `std` it can also
/// carry the underlying [`std::io::Error`].
#[derive(Debug)]
pub struct IoError {
    kind: IoErrorKind,
    message: &'static str,
    #[cfg(feature = "std")]
    inner: Option<std::io::Error>,
}

/// Broad classes of I/O failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoErrorKind {
    /// The source ended early.
    UnexpectedEof,
    /// The sink has no room left.
    StorageFull,
    /// The operation is not supported by this sink or source (for example seeking a pipe).
    Unsupported,
    /// Anything else.
    Other,
}

impl IoError {
    /// An error of `kind` with a fixed explanation.
    pub const fn new(kind: IoErrorKind, message: &'static str) -> Self {
        Self {
            kind,
            message,
            #[cfg(feature = "std")]
            inner: None,
        }
    }

    /// The class of failure.
    pub fn kind(&self) -> IoErrorKind {
        self.kind
    }

    /// The underlying operating-system error, if there is one.
    #[cfg(feature = "std")]
    pub fn io_error(&self) -> Option<&std::io::Error> {
        self.inner.as_ref()
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(feature = "std")]
        if let Some(inner) = &self.inner {
            // An error converted from std::io already says what failed.
            return write!(f, "{inner}");
        }
        f.write_str(self.message)
    }
}

#[cfg(feature = "std")]
impl From<std::io::Error> for IoError {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::UnexpectedEof => IoErrorKind::UnexpectedEof,
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::WriteZero => {
                IoErrorKind::StorageFull
            }
            std::io::ErrorKind::Unsupported => IoErrorKind::Unsupported,
            _ => IoErrorKind::Other,
        };
        Self { kind, message: "I/O failed", inner: Some(e) }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.as_ref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A codec's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecError {
    /// What the codec said.
    pub message: &'static str,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { error, .. } | Self::Input { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Io { error, .. } => match error.kind() {
                IoErrorKind::UnexpectedEof => std::io::ErrorKind::UnexpectedEof,
                IoErrorKind::StorageFull => std::io::ErrorKind::StorageFull,
                IoErrorKind::Unsupported => std::io::ErrorKind::Unsupported,
                IoErrorKind::Other => std::io::ErrorKind::Other,
            },
            Error::Truncated { .. } => std::io::ErrorKind::UnexpectedEof,
            Error::InvalidUse(_) | Error::Failed { .. } => std::io::ErrorKind::InvalidInput,
            Error::UnsupportedStyle { .. } => std::io::ErrorKind::Unsupported,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}
