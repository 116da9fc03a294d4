//! Snapshot chains: [`fold`] a child's data into its parent, [`prune`] the parent where the
//! child has data. Both are idempotent, so a run interrupted by a crash is finished by
//! running it again; while one runs, a durable marker (`PARENT.ckpt-fold` or
//! `PARENT.ckpt-prune`) says the parent is mid-change, and it is removed only after the
//! parent is fsynced.

use crate::{Interval, SparseError, data_layout, is_all_zero, punch_hole};
use ckpt_io_backends::AlignedBuf;
use ckpt_io_backends::durable;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What a fold or prune changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldStats {
    /// Bytes of data written into the parent (fold).
    pub bytes_written: u64,
    /// Bytes turned into holes in the parent (zero blocks of the child, or pruned data).
    pub bytes_punched: u64,
    /// The parent's size afterwards.
    pub parent_size: u64,
}

/// The marker a fold or prune of `parent` keeps while it runs.
pub fn marker_path(parent: &Path, what: &str) -> PathBuf {
    let mut name = parent.as_os_str().to_owned();
    name.push(format!(".ckpt-{what}"));
    PathBuf::from(name)
}

fn fsync_dir_of(path: &Path) -> Result<(), SparseError> {
    let dir = durable::parent_dir(path);
    durable::sync_dir(dir).map_err(SparseError::io(dir, "fsync the directory", None))
}

/// Runs `change` on `parent` (opened for writing) between a durable marker and an fsync.
fn under_marker(
    parent: &Path,
    what: &str,
    change: impl FnOnce(&File) -> Result<FoldStats, SparseError>,
) -> Result<FoldStats, SparseError> {
    // Opened first: a parent that cannot be opened leaves no marker behind.
    let file = OpenOptions::new()
        .write(true)
        .open(parent)
        .map_err(SparseError::io(parent, "open", None))?;
    let marker = marker_path(parent, what);
    let created = File::create(&marker).and_then(|m| m.sync_all());
    created.map_err(SparseError::io(&marker, "create the marker", None))?;
    fsync_dir_of(&marker)?;
    let stats = change(&file)?;
    file.sync_all().map_err(SparseError::io(parent, "fsync", None))?;
    fs::remove_file(&marker).map_err(SparseError::io(&marker, "remove the marker", None))?;
    fsync_dir_of(&marker)?;
    Ok(stats)
}

/// Copies `child`'s data extents into `parent` at the same offsets (growing the parent to
/// the child's size if it is shorter); all-zero 4 KiB blocks of the child become holes in
/// the parent. Running it again changes nothing more.
///
/// # Errors
/// [`SparseError::Io`] naming the file and operation. The marker then stays, and running
/// the fold again finishes it.
///
/// # Examples
/// ```
/// use ckpt_sparse::fold::fold;
/// use std::os::unix::fs::FileExt;
/// let dir = tempfile::tempdir()?;
/// let (parent, child) = (dir.path().join("base.img"), dir.path().join("delta.img"));
/// std::fs::write(&parent, vec![1u8; 8192])?;
/// let c = std::fs::File::create(&child)?;
/// c.set_len(12288)?;
/// c.write_all_at(&[2u8; 4096], 4096)?;
/// fold(&child, &parent)?;
/// let bytes = std::fs::read(&parent)?;
/// assert_eq!((bytes.len(), bytes[0], bytes[4096], bytes[8192]), (12288, 1, 2, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn fold(child: &Path, parent: &Path) -> Result<FoldStats, SparseError> {
    let source = File::open(child).map_err(SparseError::io(child, "open", None))?;
    let layout = data_layout(&source, child)?;
    under_marker(parent, "fold", |target| {
        let size = target.metadata().map_err(SparseError::io(parent, "stat", None))?.len();
        if layout.size > size {
            target.set_len(layout.size).map_err(SparseError::io(parent, "grow", None))?;
        }
        let mut stats = FoldStats { parent_size: size.max(layout.size), ..FoldStats::default() };
        let mut buf = AlignedBuf::new(1 << 20, AlignedBuf::CACHE_LINE);
        for extent in layout.data.iter() {
            let mut at = extent.start;
            while at < extent.end {
                let n = usize::try_from(extent.end - at).unwrap_or(usize::MAX).min(1 << 20);
                let bytes = buf.prefix_mut(n);
                source.read_exact_at(bytes, at).map_err(SparseError::io(
                    child,
                    "read",
                    Some(at),
                ))?;
                for (k, block) in bytes.chunks(4096).enumerate() {
                    let off = at + (k * 4096) as u64;
                    if is_all_zero(block) && off.is_multiple_of(4096) && block.len() == 4096 {
                        punch_hole(target, parent, Interval { start: off, end: off + 4096 })?;
                        stats.bytes_punched += 4096;
                    } else {
                        target.write_all_at(block, off).map_err(SparseError::io(
                            parent,
                            "write",
                            Some(off),
                        ))?;
                        stats.bytes_written += block.len() as u64;
                    }
                }
                at += n as u64;
            }
        }
        Ok(stats)
    })
}

/// Punches holes in `parent` wherever `child` has data (the parent's copy of those ranges
/// is superseded by the child's). Running it again changes nothing more.
///
/// # Errors
/// [`SparseError::Io`] naming the file and operation; the marker then stays.
pub fn prune(parent: &Path, child: &Path) -> Result<FoldStats, SparseError> {
    let source = File::open(child).map_err(SparseError::io(child, "open", None))?;
    let child_data = data_layout(&source, child)?.data;
    under_marker(parent, "prune", |target| {
        let layout = data_layout(target, parent)?;
        let mut stats = FoldStats { parent_size: layout.size, ..FoldStats::default() };
        for range in layout.data.intersect(&child_data).iter() {
            punch_hole(target, parent, range)?;
            stats.bytes_punched += range.len();
        }
        Ok(stats)
    })
}
