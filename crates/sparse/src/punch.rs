//! Primitives that change a file's allocation without changing its size: punch hole, zero
//! range, preallocate; and a fast all-zero test for buffers.

use crate::{Interval, SparseError};
use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use std::fs::File;
use std::path::Path;

/// One `fallocate` call over `range`; an empty range is a no-op.
fn fallocate(file: &File, flags: FallocateFlags, range: Interval) -> Result<(), Errno> {
    if range.is_empty() {
        return Ok(());
    }
    rustix::fs::fallocate(file, flags, range.start, range.len())
}

fn to_error(path: &Path, op: &'static str, range: Interval) -> impl FnOnce(Errno) -> SparseError {
    let path = path.to_path_buf();
    move |errno| SparseError::Io { path, op, offset: Some(range.start), source: errno.into() }
}

/// Deallocate `range` (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`): it reads as zeros and
/// becomes a hole, the file's size stays. Partial blocks at the edges are zeroed in place
/// and stay data. An empty range does nothing.
///
/// # Errors
///
/// [`SparseError::Io`] naming `path`, the operation and the range's start, for example
/// `EOPNOTSUPP` where the file system cannot punch holes or `EBADF` if `file` is not open
/// for writing.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::{Interval, data_layout, punch_hole};
/// use std::os::unix::fs::FileExt;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("img");
/// let file = std::fs::File::create_new(&path)?;
/// file.write_all_at(&[1; 16384], 0)?;
/// punch_hole(&file, &path, Interval::new(4096, 8192).unwrap())?;
/// let layout = data_layout(&file, &path)?;
/// assert_eq!(layout.size, 16384);
/// assert!(!layout.data.contains(4096)); // a hole now (ext4, xfs, tmpfs, ...)
/// let mut buf = [9u8; 4096];
/// file.read_exact_at(&mut buf, 4096)?;
/// assert!(buf.iter().all(|&b| b == 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn punch_hole(file: &File, path: &Path, range: Interval) -> Result<(), SparseError> {
    const OP: &str = "punch a hole in";
    fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, range)
        .map_err(to_error(path, OP, range))
}

/// Make `range` read as zeros without changing the size (`FALLOC_FL_ZERO_RANGE |
/// FALLOC_FL_KEEP_SIZE`; on ext4 whole blocks become unwritten extents, which
/// [`data_layout`](crate::data_layout) reports as holes). Where the file system has no
/// `ZERO_RANGE` (`EOPNOTSUPP`; tmpfs, for one) it falls back to [`punch_hole`]. An empty
/// range does nothing.
///
/// # Errors
///
/// [`SparseError::Io`] naming `path`, the operation and the range's start.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::{Interval, zero_range};
/// use std::os::unix::fs::FileExt;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("img");
/// let file = std::fs::File::create_new(&path)?;
/// file.write_all_at(&[1; 8192], 0)?;
/// zero_range(&file, &path, Interval::new(100, 5000).unwrap())?;
/// let mut buf = [9u8; 8192];
/// file.read_exact_at(&mut buf, 0)?;
/// assert!(buf[100..5000].iter().all(|&b| b == 0) && buf[5000] == 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn zero_range(file: &File, path: &Path, range: Interval) -> Result<(), SparseError> {
    const OP: &str = "zero a range of";
    match fallocate(file, FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE, range) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP) => punch_hole(file, path, range),
        Err(e) => Err(to_error(path, OP, range)(e)),
    }
}

/// Allocate space for `range` without writing it (`fallocate` mode 0 with
/// `FALLOC_FL_KEEP_SIZE`): the size stays, the new extents are unwritten, read as zeros and
/// count as holes in [`data_layout`](crate::data_layout). Ranges already holding data are
/// left as they are. An empty range does nothing.
///
/// # Errors
///
/// [`SparseError::Io`] naming `path`, the operation and the range's start, for example
/// `ENOSPC`.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::{Interval, preallocate};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("img");
/// let file = std::fs::File::create_new(&path)?;
/// file.set_len(1 << 20)?;
/// preallocate(&file, &path, Interval::new(0, 1 << 20).unwrap())?;
/// assert_eq!(file.metadata()?.len(), 1 << 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn preallocate(file: &File, path: &Path, range: Interval) -> Result<(), SparseError> {
    const OP: &str = "preallocate space in";
    fallocate(file, FallocateFlags::KEEP_SIZE, range).map_err(to_error(path, OP, range))
}

/// Whether every byte of `bytes` is zero. Compares 64-byte chunks as `u128` words, so it runs
/// at memory speed.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::is_all_zero;
///
/// assert!(is_all_zero(&[]));
/// assert!(is_all_zero(&[0; 4099]));
/// let mut buf = vec![0u8; 4099];
/// buf[4098] = 1;
/// assert!(!is_all_zero(&buf));
/// ```
pub fn is_all_zero(bytes: &[u8]) -> bool {
    let (blocks, tail) = bytes.as_chunks::<64>();
    let blocks_zero = blocks.iter().all(|block| {
        let (words, _) = block.as_chunks::<16>();
        words.iter().fold(0u128, |acc, w| acc | u128::from_ne_bytes(*w)) == 0
    });
    blocks_zero && tail.iter().all(|&b| b == 0)
}
