//! Block reads with `O_DIRECT`, or buffered where the file system refuses it: a thin
//! face of [`ckpt_io_backends::DirectReader`] (the one `O_DIRECT` reader) with this
//! crate's [`SparseError`]s.
//!
//! Reading a whole disk image to hash it fills the page cache with pages nobody reads again
//! and evicts the ones that matter; `O_DIRECT` reads go from the disk to this process'
//! buffer.

use crate::SparseError;
use ckpt_io_backends::{BackendError, DirectReader, IoMode};
use std::fs::File;
use std::path::Path;

/// How a [`BlockReader`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Through the page cache.
    #[default]
    Buffered,
    /// `O_DIRECT` where the file system supports it, buffered where it does not.
    Direct,
}

/// Reads byte ranges of one file, with `O_DIRECT` when asked for and possible.
#[derive(Debug)]
pub struct BlockReader {
    inner: DirectReader,
}

impl BlockReader {
    /// Opens `path` for reading in `mode`. [`ReadMode::Direct`] falls back to buffered
    /// reads where the file system refuses `O_DIRECT` (at open or at the first read); see
    /// [`is_direct`](Self::is_direct).
    ///
    /// # Errors
    /// [`SparseError::Io`] naming `path` if it cannot be opened or its first direct read
    /// fails; [`SparseError::Unsupported`] if it is a directory.
    ///
    /// # Examples
    /// ```
    /// use ckpt_sparse::{BlockReader, ReadMode};
    /// use std::os::unix::fs::FileExt;
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("img");
    /// std::fs::File::create(&path)?.write_all_at(b"hello, blocks", 5000)?;
    /// let mut reader = BlockReader::open(&path, ReadMode::Direct)?;
    /// assert_eq!(reader.read_at(5007, 6)?, b"blocks");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: &Path, mode: ReadMode) -> Result<Self, SparseError> {
        let mode = match mode {
            ReadMode::Buffered => IoMode::Buffered,
            ReadMode::Direct => IoMode::Auto,
        };
        let inner = DirectReader::open(path, mode).map_err(|e| sparse_error(e, None))?;
        Ok(Self { inner })
    }

    /// A buffered reader of an open file (a duplicate of its descriptor).
    ///
    /// # Errors
    /// [`SparseError::Io`] if the descriptor cannot be duplicated.
    ///
    /// # Examples
    /// ```
    /// use ckpt_sparse::BlockReader;
    /// use std::io::Write;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"abcdef")?;
    /// let mut reader = BlockReader::buffered(&file, "scratch".as_ref())?;
    /// assert_eq!(reader.read_at(1, 2)?, b"bc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn buffered(file: &File, path: &Path) -> Result<Self, SparseError> {
        let file =
            file.try_clone().map_err(SparseError::io(path, "duplicate the descriptor of", None))?;
        Ok(Self { inner: DirectReader::buffered(file, path) })
    }

    /// Whether reads bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.inner.is_direct()
    }

    /// The open file (for its metadata and layout).
    pub fn file(&self) -> &File {
        self.inner.file()
    }

    /// The `len` bytes at `offset`. Direct reads cover the aligned blocks around them.
    ///
    /// # Errors
    /// [`SparseError::Io`] naming the file and offset if the read fails or the range runs
    /// past the end of the file (`UnexpectedEof`).
    ///
    /// # Examples
    /// ```
    /// use ckpt_sparse::{BlockReader, ReadMode, SparseError};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("img");
    /// std::fs::write(&path, [1u8; 5000])?;
    /// let mut reader = BlockReader::open(&path, ReadMode::Direct)?;
    /// assert_eq!(reader.read_at(4095, 2)?, [1, 1]);
    /// let err = reader.read_at(4999, 2).unwrap_err();
    /// assert!(matches!(err, SparseError::Io { offset: Some(4999), .. }), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_at(&mut self, offset: u64, len: usize) -> Result<&[u8], SparseError> {
        self.inner.read_at(offset, len).map_err(|e| sparse_error(e, Some(offset)))
    }
}

/// The reader's error as this crate's, with the offset of the read.
fn sparse_error(e: BackendError, offset: Option<u64>) -> SparseError {
    let path = e.path().to_owned();
    match e {
        BackendError::Io { op, source, .. } => SparseError::Io { path, op, offset, source },
        BackendError::Open { source, .. } => {
            SparseError::Io { path, op: "open", offset: None, source }
        }
        BackendError::Unsupported { op, reason, .. } => {
            SparseError::Unsupported { path, op, reason }
        }
        BackendError::DirectUnsupported { reason, .. } => {
            SparseError::Unsupported { path, op: "read with O_DIRECT", reason }
        }
        other => SparseError::Io { path, op: "read", offset, source: other.into() },
    }
}
