//! [`BackendError`]: what can go wrong below the format.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong opening, writing, publishing or reading checkpoint storage.
///
/// Every variant names the path involved (`<stdin>`/`<stdout>`/`<stream>` for streams) and
/// what was being done. [`Display`](fmt::Display) is one line meant for people.
///
/// Errors met inside [`Sink`](ckpt_frame_core::Sink) / [`Source`](ckpt_frame_core::Source)
/// calls reach the caller wrapped in a [`ckpt_frame_core::Error::Io`]; get them back with
/// [`BackendError::in_format_error`].
#[derive(Debug)]
#[non_exhaustive]
pub enum BackendError {
    /// A file could not be opened.
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Direct I/O was asked for and the file or its filesystem refuses `O_DIRECT`.
    DirectUnsupported {
        /// The file (for output: the checkpoint's final path).
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// A read, write, sync, truncate or map failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operation, a verb phrase ("write", "fdatasync", ...).
        op: &'static str,
        /// What the system said.
        source: io::Error,
    },
    /// A step of the durable publish failed; the final path was not replaced (unless `op`
    /// is the directory `fsync`, which comes after the rename).
    Publish {
        /// The checkpoint's final path.
        path: PathBuf,
        /// The step that failed.
        op: &'static str,
        /// What the system said.
        source: io::Error,
    },
    /// [`IoMode::Mmap`](crate::IoMode::Mmap) output needs
    /// [`OutputOptions::size_bound`](crate::OutputOptions::size_bound).
    MissingSizeBound {
        /// The checkpoint's final path.
        path: PathBuf,
    },
    /// A mapped output would grow past its size bound.
    SizeBoundExceeded {
        /// The file being written.
        path: PathBuf,
        /// The bound the map was created with.
        bound: u64,
        /// The length the write needed.
        needed: u64,
    },
    /// A range to rewrite lies (partly) beyond the end of the file; nothing was written.
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The path is the wrong kind of thing for the operation (a directory as output, a
    /// FIFO to map, a path without a file name).
    Unsupported {
        /// The path.
        path: PathBuf,
        /// The operation.
        op: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// A commit after a failed write: the checkpoint is incomplete and is not published.
    Aborted {
        /// The checkpoint's final path.
        path: PathBuf,
        /// The first failure.
        first: String,
    },
}

impl BackendError {
    /// The path the error is about.
    ///
    /// # Examples
    /// ```
    /// use ckpt_io_backends::{open_input, IoMode};
    /// let e = open_input("/no/such/checkpoint".as_ref(), IoMode::Buffered).unwrap_err();
    /// assert_eq!(e.path(), std::path::Path::new("/no/such/checkpoint"));
    /// ```
    pub fn path(&self) -> &Path {
        match self {
            Self::Open { path, .. }
            | Self::DirectUnsupported { path, .. }
            | Self::Io { path, .. }
            | Self::Publish { path, .. }
            | Self::MissingSizeBound { path }
            | Self::SizeBoundExceeded { path, .. }
            | Self::OutOfRange { path, .. }
            | Self::Unsupported { path, .. }
            | Self::Aborted { path, .. } => path,
        }
    }

    /// The operating-system error underneath, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::Open { source, .. } | Self::Io { source, .. } | Self::Publish { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }

    /// The backend error inside a format error returned by a
    /// [`Writer`](ckpt_frame_core::Writer) or [`Reader`](ckpt_frame_core::Reader) that
    /// used one of this crate's sinks or sources.
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::{CheckpointId, Style, Writer};
    /// use ckpt_io_backends::{BackendError, IoMode, OutputOptions, PublishSink};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let opts = OutputOptions::new(IoMode::Mmap).with_size_bound(100);
    /// let sink = PublishSink::create(&dir.path().join("c"), &opts)?;
    /// let mut w = Writer::new(sink, CheckpointId::from_bytes([0; 16]));
    /// let big = vec![0u8; 1000];
    /// let mut f = w.open_frame(Style::Raw)?;
    /// f.add(&big)?;
    /// let err = f.close().unwrap_err(); // the chunk does not fit in 100 bytes
    /// assert!(matches!(
    ///     BackendError::in_format_error(&err),
    ///     Some(BackendError::SizeBoundExceeded { bound: 100, .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_format_error(e: &ckpt_frame_core::Error) -> Option<&BackendError> {
        match e {
            ckpt_frame_core::Error::Io { error, .. } => {
                error.io_error()?.get_ref()?.downcast_ref::<BackendError>()
            }
            _ => None,
        }
    }

    /// The [`io::ErrorKind`] this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Open { source, .. } | Self::Io { source, .. } | Self::Publish { source, .. } => {
                source.kind()
            }
            Self::DirectUnsupported { .. } | Self::Unsupported { .. } => io::ErrorKind::Unsupported,
            Self::MissingSizeBound { .. } | Self::OutOfRange { .. } => io::ErrorKind::InvalidInput,
            Self::SizeBoundExceeded { .. } => io::ErrorKind::StorageFull,
            Self::Aborted { .. } => io::ErrorKind::Other,
        }
    }

    /// Wraps this error for the format layer, keeping its kind (an end of file stays an end
    /// of file, so the reader reports truncation).
    pub(crate) fn into_format(self) -> ckpt_frame_core::IoError {
        let kind = self.kind();
        ckpt_frame_core::IoError::from(io::Error::new(kind, self))
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { path, source } => write!(f, "cannot open {}: {source}", path.display()),
            Self::DirectUnsupported { path, reason } => write!(
                f,
                "direct I/O (O_DIRECT) is not available for {}: {reason} (mode `auto` falls back to buffered I/O)",
                path.display()
            ),
            Self::Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Self::Publish { path, op, source } => {
                write!(f, "cannot publish {}: could not {op}: {source}", path.display())
            }
            Self::MissingSizeBound { path } => write!(
                f,
                "cannot write {} with mmap: mmap output needs a size bound (checkpoint_size_bound)",
                path.display()
            ),
            Self::SizeBoundExceeded { path, bound, needed } => write!(
                f,
                "cannot write {}: the checkpoint needs at least {needed} bytes but the mmap size bound is {bound}",
                path.display()
            ),
            Self::OutOfRange { path, offset, len, file_len } => write!(
                f,
                "cannot rewrite {}: bytes {offset}..{} lie beyond the end of the file ({file_len} bytes); nothing was written",
                path.display(),
                u128::from(*offset) + u128::from(*len),
            ),
            Self::Unsupported { path, op, reason } => {
                write!(f, "cannot {op} {}: {reason}", path.display())
            }
            Self::Aborted { path, first } => write!(
                f,
                "cannot finish {}: an earlier write failed and the checkpoint is incomplete ({first})",
                path.display()
            ),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io_error().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<BackendError> for io::Error {
    fn from(e: BackendError) -> Self {
        io::Error::new(e.kind(), e)
    }
}

/// A sink's first failure, kept so that every later call, and the final commit or finish,
/// refuses instead of producing a checkpoint with a hole in it.
#[derive(Debug, Default)]
pub(crate) struct FailureLatch {
    first: Option<String>,
    /// A failure met where the `Sink` API cannot return it (`reserve`); the next call
    /// returns it.
    pending: Option<BackendError>,
}

impl FailureLatch {
    /// Records `e` (if it is the first) and converts it for the format layer.
    pub(crate) fn fail(&mut self, e: BackendError) -> ckpt_frame_core::IoError {
        if self.first.is_none() {
            self.first = Some(e.to_string());
        }
        e.into_format()
    }

    /// Records `e` to be returned by the next call.
    pub(crate) fn defer(&mut self, e: BackendError) {
        self.first = Some(e.to_string());
        self.pending = Some(e);
    }

    /// Whether anything failed.
    pub(crate) fn is_set(&self) -> bool {
        self.first.is_some() || self.pending.is_some()
    }

    /// Whether a failure was recorded (for `Debug`).
    pub(crate) fn has_failed(&self) -> bool {
        self.first.is_some()
    }

    /// The first failure's message, taken for the final `Aborted` error.
    pub(crate) fn take_first(&mut self) -> Option<String> {
        self.first.take()
    }

    /// `Ok` if nothing failed; else the deferred error, or `Aborted` naming the first.
    pub(crate) fn check(&mut self, path: &std::path::Path) -> Result<(), ckpt_frame_core::IoError> {
        if let Some(e) = self.pending.take() {
            return Err(e.into_format());
        }
        match &self.first {
            Some(first) => {
                Err(BackendError::Aborted { path: path.to_path_buf(), first: first.clone() }
                    .into_format())
            }
            None => Ok(()),
        }
    }
}
