//! Aligned block reads with `O_DIRECT`, or buffered where the file system refuses it.
//!
//! Reading a whole disk image to hash it fills the page cache with pages nobody reads again
//! and evicts the ones that matter; `O_DIRECT` reads go from the disk to this process'
//! buffer. The kernel then asks for aligned offsets, lengths and memory: the reader widens
//! every request to the alignment and hands back the bytes asked for.

use crate::SparseError;
use ckpt_io_backends::AlignedBuf;
use rustix::fs::OFlags;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
    file: File,
    path: PathBuf,
    /// Offset and memory alignment of direct reads; 1 when buffered.
    align: u64,
    buf: AlignedBuf,
}

impl BlockReader {
    /// Opens `path` for reading in `mode`. [`ReadMode::Direct`] falls back to buffered
    /// reads where the file system refuses `O_DIRECT` (at open or at the first read); see
    /// [`is_direct`](Self::is_direct).
    ///
    /// # Errors
    /// [`SparseError::Io`] naming `path` if it cannot be opened.
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
        if mode == ReadMode::Direct {
            match OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path) {
                Ok(file) => {
                    let mut reader = Self { file, path: path.to_path_buf(), align: 1, buf: buf(1) };
                    match direct_alignment(&reader.file) {
                        Some(align) => {
                            reader.align = align;
                            reader.buf = buf(align);
                        }
                        None => reader.go_buffered()?,
                    }
                    return Ok(reader);
                }
                // EINVAL: this file system has no O_DIRECT; read through the cache.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(SparseError::io(path, "open (O_DIRECT)", None)(e)),
            }
        }
        let file = File::open(path).map_err(SparseError::io(path, "open", None))?;
        Ok(Self { file, path: path.to_path_buf(), align: 1, buf: buf(1) })
    }

    /// A buffered reader of an open file (a duplicate of its descriptor).
    ///
    /// # Errors
    /// [`SparseError::Io`] if the descriptor cannot be duplicated.
    pub fn buffered(file: &File, path: &Path) -> Result<Self, SparseError> {
        let file =
            file.try_clone().map_err(SparseError::io(path, "duplicate the descriptor of", None))?;
        Ok(Self { file, path: path.to_path_buf(), align: 1, buf: buf(1) })
    }

    /// Whether reads bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.align > 1
    }

    /// The open file (for its metadata and layout).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The `len` bytes at `offset`. Direct reads cover the aligned blocks around them.
    ///
    /// # Errors
    /// [`SparseError::Io`] naming the file and offset if the read fails or the range runs
    /// past the end of the file (`UnexpectedEof`).
    pub fn read_at(&mut self, offset: u64, len: usize) -> Result<&[u8], SparseError> {
        let eof = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| SparseError::io(&self.path, "read", Some(offset))(eof()))?;
        if !self.is_direct() {
            let bytes = self.buf.prefix_mut(len);
            self.file.read_exact_at(bytes, offset).map_err(SparseError::io(
                &self.path,
                "read",
                Some(offset),
            ))?;
            return Ok(self.buf.prefix_mut(len));
        }
        let start = offset - offset % self.align;
        let span_end = end.next_multiple_of(self.align);
        let span = usize::try_from(span_end - start).unwrap_or(usize::MAX);
        let mut filled = 0usize;
        while filled < span {
            let at = start + filled as u64;
            let bytes = self.buf.prefix_mut(span).get_mut(filled..).unwrap_or_default();
            match self.file.read_at(bytes, at) {
                // End of file inside the last block: a direct read returns the bytes up
                // to it.
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && filled == 0 => {
                    // Opened with O_DIRECT but refused at read time: go buffered for good.
                    self.go_buffered()?;
                    return self.read_at(offset, len);
                }
                Err(e) => return Err(SparseError::io(&self.path, "read (O_DIRECT)", Some(at))(e)),
            }
        }
        let skip = usize::try_from(offset - start).unwrap_or(usize::MAX);
        if filled < skip.saturating_add(len) {
            return Err(SparseError::io(&self.path, "read", Some(offset))(eof()));
        }
        Ok(self.buf.prefix_mut(span).get(skip..skip + len).unwrap_or_default())
    }

    fn go_buffered(&mut self) -> Result<(), SparseError> {
        let flags = rustix::fs::fcntl_getfl(&self.file)
            .map_err(|e| SparseError::io(&self.path, "read the flags of", None)(e.into()))?;
        rustix::fs::fcntl_setfl(&self.file, flags - OFlags::DIRECT)
            .map_err(|e| SparseError::io(&self.path, "clear O_DIRECT on", None)(e.into()))?;
        self.align = 1;
        self.buf = buf(1);
        Ok(())
    }
}

fn buf(align: u64) -> AlignedBuf {
    AlignedBuf::new(1 << 20, usize::try_from(align).unwrap_or(4096))
}

/// The alignment of direct reads of `file` ([`ckpt_io_backends::direct_alignment_of`]),
/// `None` where the file has no direct I/O.
fn direct_alignment(file: &File) -> Option<u64> {
    ckpt_io_backends::direct_alignment_of(file).map(|a| a.buffer() as u64)
}
