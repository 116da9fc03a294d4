//! [`rewrite_ranges`]: in-place, durable repair of byte ranges.

use crate::BackendError;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Rewrites byte ranges of the existing file at `path` in place, then `fdatasync`s it.
///
/// Each range is `(offset, bytes)`. The file is opened read-write without truncation and
/// never grows: every range must end at or before the file's end, which is checked for all
/// ranges before anything is written. Used by heal, to replace damaged chunks with the
/// bytes of a verified copy.
///
/// # Errors
/// [`BackendError::Open`] when the file cannot be opened for writing;
/// [`BackendError::OutOfRange`] when a range extends past the end (nothing is written);
/// [`BackendError::Io`] when a write or the `fdatasync` fails (a failed `fdatasync` is
/// final: the data may not be on disk, and retrying cannot tell).
///
/// # Examples
/// ```
/// use ckpt_io_backends::{rewrite_ranges, BackendError};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("f");
/// std::fs::write(&path, b"hello world")?;
/// rewrite_ranges(&path, &[(0, b"J"), (6, b"W")])?;
/// assert_eq!(std::fs::read(&path)?, b"Jello World");
/// let err = rewrite_ranges(&path, &[(10, b"!!")]).unwrap_err();
/// assert!(matches!(err, BackendError::OutOfRange { offset: 10, len: 2, file_len: 11, .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn rewrite_ranges(path: &Path, ranges: &[(u64, &[u8])]) -> Result<(), BackendError> {
    let io_err = |op, source| BackendError::Io { path: path.to_owned(), op, source };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| BackendError::Open { path: path.to_owned(), source })?;
    // Seeking to the end also gives the size of block devices, where the metadata says 0.
    let file_len = file.seek(SeekFrom::End(0)).map_err(|e| io_err("find the length of", e))?;
    for &(offset, bytes) in ranges {
        let len = bytes.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(BackendError::OutOfRange { path: path.to_owned(), offset, len, file_len });
        }
    }
    for &(offset, bytes) in ranges {
        file.write_all_at(bytes, offset).map_err(|e| io_err("write", e))?;
    }
    rustix::fs::fdatasync(&file).map_err(|e| io_err("fdatasync", e.into()))?;
    Ok(())
}
