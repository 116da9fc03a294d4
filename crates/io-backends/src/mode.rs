//! [`IoMode`] and [`OutputOptions`].

use std::fmt;
use std::str::FromStr;

/// How a checkpoint file is read or written.
///
/// # Examples
/// ```
/// use ckpt_io_backends::IoMode;
/// assert_eq!("direct".parse::<IoMode>().unwrap(), IoMode::Direct);
/// assert_eq!(IoMode::Mmap.to_string(), "mmap");
/// let err = "fast".parse::<IoMode>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown I/O mode `fast`: expected one of buffered, direct, mmap, auto");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoMode {
    /// Through the page cache with large user-space buffers. Works for files, pipes,
    /// stdin and stdout.
    Buffered,
    /// `O_DIRECT`: around the page cache, with aligned buffers. Fails with
    /// [`BackendError::DirectUnsupported`](crate::BackendError::DirectUnsupported) where
    /// the filesystem refuses it.
    Direct,
    /// A shared memory map of the file. Output needs a size bound. Input carries the
    /// usual `mmap` caveat: another process truncating the file while it is mapped makes
    /// the reader die of `SIGBUS` (ckpt itself only ever replaces files by rename).
    Mmap,
    /// [`IoMode::Direct`] where the filesystem allows it, otherwise [`IoMode::Buffered`]
    /// (logged with `tracing`).
    Auto,
}

impl IoMode {
    /// Every mode, in the order of the command-line choices.
    pub const ALL: [IoMode; 4] = [IoMode::Buffered, IoMode::Direct, IoMode::Mmap, IoMode::Auto];

    /// The mode's name as parsed by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Buffered => "buffered",
            IoMode::Direct => "direct",
            IoMode::Mmap => "mmap",
            IoMode::Auto => "auto",
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`IoMode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIoModeError {
    /// What was given.
    pub input: String,
}

impl fmt::Display for ParseIoModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown I/O mode `{}`: expected one of buffered, direct, mmap, auto", self.input)
    }
}

impl std::error::Error for ParseIoModeError {}

impl FromStr for IoMode {
    type Err = ParseIoModeError;

    /// Parses `buffered`, `direct`, `mmap` or `auto` (ASCII case ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IoMode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseIoModeError { input: s.to_owned() })
    }
}

/// How a [`PublishSink`](crate::PublishSink) writes.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{checkpoint_size_bound, Style};
/// use ckpt_io_backends::{IoMode, OutputOptions};
/// let bound = checkpoint_size_bound([(Style::Lz4, [4096usize, 10])]).unwrap();
/// let opts = OutputOptions::new(IoMode::Mmap).with_size_bound(bound);
/// assert_eq!(opts.size_bound, Some(bound));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputOptions {
    /// The I/O mode.
    pub mode: IoMode,
    /// The most bytes the checkpoint can take (from
    /// [`checkpoint_size_bound`](ckpt_frame_core::checkpoint_size_bound)); required for
    /// [`IoMode::Mmap`], which maps the file at this size and truncates it at commit.
    pub size_bound: Option<u64>,
}

impl OutputOptions {
    /// Options for `mode` without a size bound.
    pub fn new(mode: IoMode) -> Self {
        Self { mode, size_bound: None }
    }

    /// Sets the size bound.
    #[must_use]
    pub fn with_size_bound(self, bound: u64) -> Self {
        Self { size_bound: Some(bound), ..self }
    }
}
