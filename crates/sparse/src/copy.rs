//! Sparse copy: only the source's data extents are read, all-zero blocks inside them
//! become holes, and the copy appears under its name only once complete and durable.

use crate::{Interval, SparseError, data_layout, is_all_zero};
use ckpt_io_backends::AlignedBuf;
use ckpt_io_backends::durable::{self, ReplaceStep};
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
    /// Find all-zero blocks inside data extents and leave them as holes (on by default).
    /// Off, data extents are copied whole with `copy_file_range`, so the bytes never pass
    /// through this process and a file system that can share extents (XFS, Btrfs) may
    /// reflink them; the copy then keeps written zeros as data.
    pub detect_zeros: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self { block_size: 4096, durable: true, detect_zeros: true }
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
    /// Bytes copied inside the kernel by `copy_file_range` (included in `data_read` and
    /// `data_written`).
    pub kernel_copied: u64,
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
    sparse_copy_with_progress(src, dst, opts, &mut |_, _| {})
}

/// [`sparse_copy`], calling `progress(done, total)` as data is copied: `total` is the
/// bytes of the source's data extents, `done` those copied so far (called after every
/// piece of at most 1 MiB, and once at the end with `done == total`).
///
/// # Errors
/// As [`sparse_copy`].
///
/// # Examples
/// ```
/// use ckpt_sparse::{CopyOptions, sparse_copy_with_progress};
/// use std::os::unix::fs::FileExt;
/// let dir = tempfile::tempdir()?;
/// let (src, dst) = (dir.path().join("a"), dir.path().join("b"));
/// std::fs::File::create(&src)?.write_all_at(&[7; 3 << 20], 1 << 30)?;
/// let mut seen = Vec::new();
/// sparse_copy_with_progress(&src, &dst, &CopyOptions::default(), &mut |done, total| {
///     seen.push((done, total));
/// })?;
/// assert_eq!(seen.last(), Some(&(3 << 20, 3 << 20)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sparse_copy_with_progress(
    src: &Path,
    dst: &Path,
    opts: &CopyOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CopyStats, SparseError> {
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
    let dir = durable::parent_dir(dst);
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
    let mut buf = AlignedBuf::new(READ_PIECE, AlignedBuf::CACHE_LINE);
    let total = layout.data.total_len();
    let mut kernel_copy = !opts.detect_zeros;
    for extent in layout.data.iter() {
        stats.extents += 1;
        let ends = Ends { source: &source, src, out: &out, out_path: &temp.path };
        if kernel_copy {
            kernel_copy = kernel_copy_extent(&ends, extent, &mut stats, total, progress)?;
            if kernel_copy {
                continue;
            }
        }
        copy_extent(&ends, extent, block, &mut buf, &mut stats, total, progress)?;
    }
    progress(total, total);
    out.set_permissions(meta.permissions()).map_err(SparseError::io(
        &temp.path,
        "set the mode of",
        None,
    ))?;
    let renamed = if opts.durable {
        durable::replace(&out, &temp.path, dst).map_err(|e| {
            temp.done = e.renamed();
            match e.step {
                ReplaceStep::SyncFile => SparseError::io(&temp.path, "fsync", None)(e.source),
                ReplaceStep::Rename => {
                    SparseError::io(dst, "rename the finished copy to", None)(e.source)
                }
                ReplaceStep::SyncDir => SparseError::io(dir, "fsync the directory", None)(e.source),
            }
        })
    } else {
        fs::rename(&temp.path, dst).map_err(SparseError::io(
            dst,
            "rename the finished copy to",
            None,
        ))
    };
    renamed?;
    temp.done = true;
    Ok(stats)
}

/// The two files of a copy and their names for errors.
struct Ends<'a> {
    source: &'a File,
    src: &'a Path,
    out: &'a File,
    out_path: &'a Path,
}

/// Copies what is left of `extent` (from `stats`' progress on) with `copy_file_range`.
/// Returns `false`, having copied nothing of what is left, where the kernel cannot do it
/// for these files (old kernels, some file systems, files on two of them), so the caller
/// goes on with reads and writes.
fn kernel_copy_extent(
    ends: &Ends<'_>,
    extent: Interval,
    stats: &mut CopyStats,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<bool, SparseError> {
    let mut at = extent.start;
    while at < extent.end {
        let want = usize::try_from(extent.end - at).unwrap_or(usize::MAX).min(READ_PIECE);
        let (mut from, mut to) = (at, at);
        match rustix::fs::copy_file_range(
            ends.source,
            Some(&mut from),
            ends.out,
            Some(&mut to),
            want,
        ) {
            Ok(0) => {
                return Err(SparseError::io(ends.src, "copy", Some(at))(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(n) => {
                let n = n as u64;
                stats.data_read += n;
                stats.data_written += n;
                stats.kernel_copied += n;
                at += n;
                progress(stats.data_read, total);
            }
            Err(e)
                if at == extent.start
                    && [
                        rustix::io::Errno::XDEV,
                        rustix::io::Errno::NOSYS,
                        rustix::io::Errno::OPNOTSUPP,
                        rustix::io::Errno::INVAL,
                    ]
                    .contains(&e) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(SparseError::io(ends.out_path, "copy into", Some(at))(e.into())),
        }
    }
    Ok(true)
}

/// Copies one data extent, piece by piece, skipping all-zero blocks.
fn copy_extent(
    ends: &Ends<'_>,
    extent: Interval,
    block: u64,
    buf: &mut AlignedBuf,
    stats: &mut CopyStats,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), SparseError> {
    let Ends { source, src, out, out_path } = *ends;
    let mut at = extent.start;
    while at < extent.end {
        let n = usize::try_from(extent.end - at).unwrap_or(usize::MAX).min(READ_PIECE);
        let piece = buf.prefix_mut(n);
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
        progress(stats.data_read, total);
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
