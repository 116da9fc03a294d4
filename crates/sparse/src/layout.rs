//! Where a file's data lies: `SEEK_DATA`/`SEEK_HOLE` as the default truth, FIEMAP for the
//! detailed view.

use crate::fiemap_sys::{
    self, FIEMAP_EXTENT_LAST, FIEMAP_EXTENT_SHARED, FIEMAP_EXTENT_UNWRITTEN, FIEMAP_FLAG_SYNC,
};
use crate::{Interval, IntervalSet, SparseError};
use rustix::fs::SeekFrom;
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

/// A file's size and the byte ranges that hold data; everything else in `[0, size)` is a
/// hole (reads as zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The file's size in bytes.
    pub size: u64,
    /// The data extents, clipped to `[0, size)`.
    pub data: IntervalSet,
}

impl Layout {
    /// The holes: the bytes of `[0, size)` that are not data.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_sparse::{Interval, IntervalSet, Layout};
    ///
    /// let layout = Layout { size: 100, data: IntervalSet::from(Interval::new(10, 20).unwrap()) };
    /// let holes: Vec<_> = layout.holes().iter().collect();
    /// assert_eq!(holes, [Interval::new(0, 10).unwrap(), Interval::new(20, 100).unwrap()]);
    /// ```
    pub fn holes(&self) -> IntervalSet {
        self.data.complement(Interval { start: 0, end: self.size })
    }
}

/// The data/hole layout of `file` by `SEEK_DATA`/`SEEK_HOLE`.
///
/// Preallocated (unwritten) extents count as holes, as ext4 reports them; dirty data not yet
/// written back counts as data. The granularity is the file system's (4 KiB blocks on
/// ext4), so a data interval may include zeros next to the bytes actually written. On ext4
/// (and other iomap file systems) unwritten extents whose pages sit in the page cache, for
/// example because they were just read, show as data until the pages are evicted: the
/// answer may overstate the data, never understate it.
///
/// Fallback: where the file system does not support `SEEK_DATA` (`EINVAL`), the whole file
/// is reported as data. The file may be opened read-only; `path` only names it in errors.
/// The file position is saved and restored (a concurrent user of the same descriptor could
/// still see it move). A file that changes size during the scan gives a layout clipped to
/// the size found at the start.
///
/// # Errors
///
/// [`SparseError::Io`] naming `path` and the operation if `fstat` or `lseek` fails (a
/// directory fails with `EISDIR`); [`SparseError::Unsupported`] for other files that are not
/// regular files (pipes, devices, sockets).
///
/// # Examples
///
/// ```
/// use ckpt_sparse::{Interval, data_layout};
/// use std::os::unix::fs::FileExt;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("img");
/// let file = std::fs::File::create_new(&path)?;
/// file.set_len(1 << 20)?; // all hole
/// file.write_all_at(&[1; 4096], 8192)?;
/// let layout = data_layout(&file, &path)?;
/// assert_eq!(layout.size, 1 << 20);
/// assert!(layout.data.contains(8192));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn data_layout(file: &File, path: &Path) -> Result<Layout, SparseError> {
    let meta = file.metadata().map_err(SparseError::io(path, "stat", None))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(SparseError::Io {
            path: path.to_path_buf(),
            op: "map the data of",
            offset: None,
            source: std::io::Error::from_raw_os_error(libc::EISDIR),
        });
    }
    if !kind.is_file() {
        return Err(SparseError::Unsupported {
            path: path.to_path_buf(),
            op: "map the data of",
            reason: format!("not a regular file ({kind:?})"),
        });
    }
    let size = meta.len();
    if size == 0 {
        return Ok(Layout { size, data: IntervalSet::new() });
    }
    let saved = rustix::fs::seek(file, SeekFrom::Current(0))
        .map_err(|e| SparseError::io(path, "read the file position of", None)(e.into()))?;
    let scanned = scan(|whence| rustix::fs::seek(file, whence), path, size);
    let restored = rustix::fs::seek(file, SeekFrom::Start(saved))
        .map_err(|e| SparseError::io(path, "restore the file position of", Some(saved))(e.into()));
    let data = scanned?;
    restored?;
    Ok(Layout { size, data })
}

/// The `SEEK_DATA`/`SEEK_HOLE` loop over `[0, size)`, through `seek` (`lseek` on the file;
/// a stand-in in the tests of answers this machine's file systems never give).
fn scan(
    mut seek: impl FnMut(SeekFrom) -> Result<u64, Errno>,
    path: &Path,
    size: u64,
) -> Result<IntervalSet, SparseError> {
    let whole = Interval { start: 0, end: size };
    let mut data = IntervalSet::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match seek(SeekFrom::Data(pos)) {
            Ok(start) => start,
            // No data at or after `pos` (or the file shrank under us).
            Err(Errno::NXIO) => break,
            // No SEEK_DATA here: everything is data (documented fallback).
            Err(Errno::INVAL) => return Ok(IntervalSet::from(whole)),
            Err(e) => return Err(SparseError::io(path, "seek to data in", Some(pos))(e.into())),
        };
        if start >= size {
            break;
        }
        let end = match seek(SeekFrom::Hole(start)) {
            Ok(end) => end.min(size),
            // The file shrank between the two calls: the data ran to the (new) end.
            Err(Errno::NXIO) => size,
            Err(Errno::INVAL) => return Ok(IntervalSet::from(whole)),
            Err(e) => {
                return Err(SparseError::io(path, "seek to a hole in", Some(start))(e.into()));
            }
        };
        if end <= start {
            return Err(SparseError::BadReply {
                path: path.to_path_buf(),
                op: "seek to a hole in",
                offset: start,
                detail: format!("SEEK_HOLE from data at {start} returned {end}"),
            });
        }
        data.insert(Interval { start, end });
        pos = end;
    }
    Ok(data)
}

/// One extent reported by FIEMAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiemapExtent {
    /// Byte offset of the extent in the file.
    pub logical: u64,
    /// Byte offset on the device (0 where the file system does not say).
    pub physical: u64,
    /// Length in bytes (may run past the end of the file, to the end of the block).
    pub len: u64,
    /// Allocated but never written: reads as zeros (`FIEMAP_EXTENT_UNWRITTEN`).
    pub unwritten: bool,
    /// Space shared with another file (`FIEMAP_EXTENT_SHARED`).
    pub shared: bool,
    /// The file's last extent (`FIEMAP_EXTENT_LAST`).
    pub last: bool,
    /// All `FIEMAP_EXTENT_*` flags as the kernel reported them.
    pub flags: u32,
}

impl FiemapExtent {
    /// `[logical, logical + len)`, saturating at `u64::MAX`.
    pub fn logical_range(&self) -> Interval {
        Interval { start: self.logical, end: self.logical.saturating_add(self.len) }
    }
}

/// The file's extents by the FIEMAP ioctl, in file order; with `sync`, the file is synced
/// first (`FIEMAP_FLAG_SYNC`) so that delayed allocations show as real extents.
///
/// Returns `Ok(None)` where the file system has no FIEMAP (`EOPNOTSUPP` or `ENOTTY`; tmpfs,
/// for one). Any number of extents is handled, 256 per call.
///
/// # Errors
///
/// [`SparseError::Io`] naming `path` if the ioctl fails otherwise; [`SparseError::BadReply`]
/// if the kernel's answer does not move forward through the file.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::fiemap;
/// use std::os::unix::fs::FileExt;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("img");
/// let file = std::fs::File::create_new(&path)?;
/// file.write_all_at(&[7; 8192], 0)?;
/// if let Some(extents) = fiemap(&file, &path, true)? {
///     // ext4, xfs, btrfs...: the data is mapped.
///     assert_eq!(extents.iter().map(|e| e.len).sum::<u64>(), 8192);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fiemap(
    file: &File,
    path: &Path,
    sync: bool,
) -> Result<Option<Vec<FiemapExtent>>, SparseError> {
    const OP: &str = "map the extents (FIEMAP) of";
    let mut out: Vec<FiemapExtent> = Vec::new();
    let mut next = 0u64;
    let mut flags = if sync { FIEMAP_FLAG_SYNC } else { 0 };
    loop {
        let batch = match fiemap_sys::fiemap_once(file.as_fd(), next, u64::MAX - next, flags) {
            Ok(batch) => batch,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOTTY)) => {
                return Ok(None);
            }
            Err(e) => return Err(SparseError::io(path, OP, Some(next))(e)),
        };
        // Syncing once is enough.
        flags = 0;
        let full = batch.len() >= fiemap_sys::EXTENTS_PER_CALL;
        let mut done = batch.is_empty();
        let before = next;
        for raw in batch {
            let end = raw.logical.saturating_add(raw.len);
            if end <= next {
                // Already seen (an extent overlapping the previous call's end).
                continue;
            }
            next = end;
            let extent = FiemapExtent {
                logical: raw.logical,
                physical: raw.physical,
                len: raw.len,
                unwritten: raw.flags & FIEMAP_EXTENT_UNWRITTEN != 0,
                shared: raw.flags & FIEMAP_EXTENT_SHARED != 0,
                last: raw.flags & FIEMAP_EXTENT_LAST != 0,
                flags: raw.flags,
            };
            done |= extent.last;
            out.push(extent);
        }
        if done || !full || next == u64::MAX {
            return Ok(Some(out));
        }
        if next == before {
            return Err(SparseError::BadReply {
                path: path.to_path_buf(),
                op: OP,
                offset: next,
                detail: "a full batch of extents that ends where it started".to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    //! The answers of `lseek` that no file system on this machine gives: every local one
    //! (ext4, tmpfs, procfs, sysfs) supports `SEEK_DATA` or reports the whole file as data,
    //! so these branches are driven by a stand-in for the system call.
    use super::*;

    fn path() -> &'static Path {
        Path::new("/img")
    }

    #[test]
    fn no_seek_data_reports_the_whole_file_as_data() {
        let got = scan(|_| Err(Errno::INVAL), path(), 10_000).unwrap();
        assert_eq!(got, IntervalSet::from(Interval { start: 0, end: 10_000 }));
    }

    #[test]
    fn seek_hole_refused_after_seek_data_worked_is_whole_file_data() {
        let got = scan(
            |w| match w {
                SeekFrom::Data(p) => Ok(p),
                _ => Err(Errno::INVAL),
            },
            path(),
            8192,
        )
        .unwrap();
        assert_eq!(got, IntervalSet::from(Interval { start: 0, end: 8192 }));
    }

    #[test]
    fn a_shrinking_file_and_other_errors() {
        // SEEK_HOLE says ENXIO: the file shrank under us; the data runs to the old end.
        let got = scan(
            |w| match w {
                SeekFrom::Data(0) => Ok(4096),
                _ => Err(Errno::NXIO),
            },
            path(),
            8192,
        )
        .unwrap();
        assert_eq!(got, IntervalSet::from(Interval { start: 4096, end: 8192 }));
        // EIO is an error naming the file and the offset.
        let err = scan(|_| Err(Errno::IO), path(), 8192).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/img") && text.contains("seek to data"), "{text}");
        // A hole before the data it was asked from is a bad reply, not a loop.
        let err = scan(
            |w| match w {
                SeekFrom::Data(_) => Ok(4096),
                _ => Ok(0),
            },
            path(),
            8192,
        )
        .unwrap_err();
        assert!(matches!(err, SparseError::BadReply { offset: 4096, .. }), "{err:?}");
    }
}
