//! Sparse copy: only the source's data extents are read, all-zero blocks inside them
//! become holes, and the copy appears under its name only once complete and durable.

use crate::buf::AlignedBuf;
use crate::{Interval, SparseError, data_layout, is_all_zero};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How [`sparse_copy`] works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Granularity of zero detection: an all-zero block of this size (on a grid from offset
    /// 0) inside a data extent becomes a hole. 4096 matches ext4's block size.
    pub block_size: u64,
    /// `fsync` the copy and its directory before and after the rename (on by default; off
    /// only for scratch copies).
    pub durable: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self { block_size: 4096, durable: true }
    }
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// The file's size.
    pub size: u64,
    /// Bytes of data extents read from the source.
    pub data_read: u64,
    /// Bytes written to the copy (data minus all-zero blocks).
    pub data_written: u64,
    /// All-zero blocks inside data extents that became holes.
    pub zero_blocks: u64,
    /// Data extents of the source.
    pub extents: u64,
}

/// Bytes read per `pread`: large enough to amortise the call, small enough to stay in
/// cache while it is scanned for zeros and written.
const READ_PIECE: usize = 1 << 20;
/// Bytes per `pwrite`: larger page-cache writes are slower on Linux 6.18 / ext4 here (the
/// write size sets the folio size; see `ckpt-io-backends`' block writer).
const WRITE_PIECE: usize = 128 * 1024;

/// A temporary file next to the destination, removed unless renamed into place.
struct Temp {
    path: PathBuf,
    done: bool,
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Copies `src` to `dst` sparsely: the copy has the source's size, bytes and mode; only
/// the source's data extents are read ([`data_layout`]: preallocated extents count as
/// holes), all-zero blocks of `opts.block_size` inside them are left as holes, so the
/// copy's allocation matches the source's data. The copy is written under a temporary
/// name in `dst`'s directory and renamed over `dst` only when complete (and, with
/// `opts.durable`, fsynced, the directory too): an interrupted copy leaves `dst` as it was.
///
/// # Errors
/// [`SparseError::Io`] naming the path and the operation that failed (opening or reading
/// the source, creating, writing or publishing the copy); [`SparseError::Unsupported`] if
/// `src` is not a regular file or `dst` is a directory.
///
/// # Examples
/// ```
/// use ckpt_sparse::{CopyOptions, data_layout, sparse_copy};
/// use std::os::unix::fs::FileExt;
/// let dir = tempfile::tempdir()?;
/// let (src, dst) = (dir.path().join("disk.img"), dir.path().join("copy.img"));
/// let f = std::fs::File::create(&src)?;
/// f.set_len(1 << 20)?; // 1 MiB, all hole
/// f.write_all_at(b"boot sector", 0)?;
/// let stats = sparse_copy(&src, &dst, &CopyOptions::default())?;
/// assert_eq!((stats.size, stats.data_written), (1 << 20, 4096));
/// let copy = std::fs::File::open(&dst)?;
/// assert_eq!(data_layout(&copy, &dst)?.data.total_len(), 4096);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sparse_copy(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyStats, SparseError> {
    let source = File::open(src).map_err(SparseError::io(src, "open", None))?;
    let meta = source.metadata().map_err(SparseError::io(src, "stat", None))?;
    if !meta.is_file() {
        return Err(SparseError::Unsupported {
            path: src.to_path_buf(),
            op: "sparse copy",
            reason: "the source is not a regular file".to_owned(),
        });
    }
    if dst.is_dir() {
        return Err(SparseError::Unsupported {
            path: dst.to_path_buf(),
            op: "sparse copy",
            reason: "the destination is a directory; give the copy's file name".to_owned(),
        });
    }
    let layout = data_layout(&source, src)?;
    let dir = match dst.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut name = std::ffi::OsString::from(".");
    name.push(dst.file_name().unwrap_or_default());
    name.push(format!(".ckpt-sparse.{}", std::process::id()));
    let mut temp = Temp { path: dir.join(name), done: false };
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.permissions().mode() & 0o7777)
        .open(&temp.path)
        .map_err(SparseError::io(&temp.path, "create", None))?;
    out.set_len(layout.size).map_err(SparseError::io(&temp.path, "set the length of", None))?;

    let mut stats = CopyStats { size: layout.size, ..CopyStats::default() };
    let block = opts.block_size.max(1);
    let mut buf = AlignedBuf::new(READ_PIECE);
    for extent in layout.data.iter() {
        stats.extents += 1;
        copy_extent(&source, src, &out, &temp.path, extent, block, &mut buf, &mut stats)?;
    }
    out.set_permissions(meta.permissions()).map_err(SparseError::io(
        &temp.path,
        "set the mode of",
        None,
    ))?;
    if opts.durable {
        out.sync_all().map_err(SparseError::io(&temp.path, "fsync", None))?;
    }
    fs::rename(&temp.path, dst).map_err(SparseError::io(
        dst,
        "rename the finished copy to",
        None,
    ))?;
    temp.done = true;
    if opts.durable {
        File::open(dir).and_then(|d| d.sync_all()).map_err(SparseError::io(
            dir,
            "fsync the directory",
            None,
        ))?;
    }
    Ok(stats)
}

/// Copies one data extent, piece by piece, skipping all-zero blocks.
#[allow(clippy::too_many_arguments)]
fn copy_extent(
    source: &File,
    src: &Path,
    out: &File,
    out_path: &Path,
    extent: Interval,
    block: u64,
    buf: &mut AlignedBuf,
    stats: &mut CopyStats,
) -> Result<(), SparseError> {
    let mut at = extent.start;
    while at < extent.end {
        let n = usize::try_from(extent.end - at).unwrap_or(usize::MAX).min(READ_PIECE);
        let piece = buf.get_mut(n);
        source.read_exact_at(piece, at).map_err(SparseError::io(src, "read", Some(at)))?;
        stats.data_read += n as u64;
        // Walk the piece on the block grid of the file (from offset 0), writing runs of
        // blocks that hold any non-zero byte.
        let mut run: Option<(u64, usize)> = None; // (file offset, start in piece)
        let mut pos = 0usize;
        while pos < n {
            let file_off = at + pos as u64;
            let to_grid = usize::try_from(block - file_off % block).unwrap_or(usize::MAX);
            let len = to_grid.min(n - pos);
            let bytes = piece.get(pos..pos + len).unwrap_or_default();
            if is_all_zero(bytes) {
                if let Some((off, start)) = run.take() {
                    write_run(
                        out,
                        out_path,
                        off,
                        piece.get(start..pos).unwrap_or_default(),
                        stats,
                    )?;
                }
                stats.zero_blocks += 1;
            } else if run.is_none() {
                run = Some((file_off, pos));
            }
            pos += len;
        }
        if let Some((off, start)) = run {
            write_run(out, out_path, off, piece.get(start..n).unwrap_or_default(), stats)?;
        }
        at += n as u64;
    }
    Ok(())
}

fn write_run(
    out: &File,
    path: &Path,
    offset: u64,
    bytes: &[u8],
    stats: &mut CopyStats,
) -> Result<(), SparseError> {
    let mut at = offset;
    for piece in bytes.chunks(WRITE_PIECE) {
        out.write_all_at(piece, at).map_err(SparseError::io(path, "write", Some(at)))?;
        at += piece.len() as u64;
    }
    stats.data_written += bytes.len() as u64;
    Ok(())
}
