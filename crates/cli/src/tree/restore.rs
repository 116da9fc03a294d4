//! Restoring a tree checkpoint.

use super::{TreeError, io_err};
use crate::manifest::{Entry, Kind, Manifest, Piece};
use ckpt_frame_core::{Error as FormatError, FrameReader, Reader, Source};
use ckpt_parallel::{ParallelError, Parallelism, restore_with};
use std::cell::RefCell;
use std::fs::OpenOptions;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// What a restore produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreSummary {
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks restored.
    pub symlinks: u64,
    /// File bytes restored.
    pub data_bytes: u64,
}

/// A file being restored under a temporary name; removed unless published.
struct PendingFile {
    tmp: PathBuf,
    published: bool,
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Joins a checked relative path to `dest`, creating missing parent directories and
/// refusing to go through anything that is not a real directory (a symlink above all).
fn safe_join(dest: &Path, rel: &[u8]) -> Result<PathBuf, TreeError> {
    let mut path = dest.to_path_buf();
    let components: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    let (last, parents) =
        components.split_last().ok_or(TreeError::Layout { what: "empty path" })?;
    for c in parents {
        path.push(std::ffi::OsStr::from_bytes(c));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(TreeError::Refused {
                    path,
                    reason: "the path goes through a symbolic link",
                });
            }
            Ok(_) => {
                return Err(TreeError::Refused { path, reason: "a parent is not a directory" });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(io_err(&path, "cannot create directory"))?;
            }
            Err(e) => return Err(TreeError::Io { path, op: "cannot inspect", source: e }),
        }
    }
    path.push(std::ffi::OsStr::from_bytes(last));
    Ok(path)
}

fn system_time(e: &Entry) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(e.mtime_nsec));
    if e.mtime_sec >= 0 {
        UNIX_EPOCH + Duration::from_secs(e.mtime_sec.unsigned_abs()) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(e.mtime_sec.unsigned_abs()) + nanos
    }
}

/// Creates a directory of the checkpoint, or accepts one already there.
fn make_dir(path: &Path) -> Result<(), TreeError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(_) => Err(TreeError::Refused {
            path: path.to_path_buf(),
            reason: "something that is not a directory is in the way",
        }),
        Err(_) => fs::create_dir(path).map_err(io_err(path, "cannot create directory")),
    }
}

/// Creates the symlinks, after every file and directory, so no restored path goes through
/// one.
fn create_links(links: &[(PathBuf, &Entry)]) -> Result<u64, TreeError> {
    for (path, e) in links {
        if fs::symlink_metadata(path).is_ok() {
            return Err(TreeError::Refused {
                path: path.clone(),
                reason: "a symlink would replace an existing path",
            });
        }
        symlink(std::ffi::OsStr::from_bytes(&e.target), path)
            .map_err(io_err(path, "cannot create symlink"))?;
    }
    Ok(links.len() as u64)
}

/// Sets directories' modes and times last, deepest first, since restoring their contents
/// changed their times and a read-only mode would have blocked it.
fn set_dir_attributes(dirs: &[(PathBuf, &Entry)]) -> Result<(), TreeError> {
    for (path, e) in dirs.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(e.mode))
            .map_err(io_err(path, "cannot set mode of"))?;
        File::open(path)
            .and_then(|d| d.set_modified(system_time(e)))
            .map_err(io_err(path, "cannot set time of"))?;
    }
    Ok(())
}

/// `len` bytes of `buf` starting on a cache line: the kernel copies out of memory 16 bytes
/// past one (where large `malloc` blocks start) about four times slower.
fn aligned(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    const LINE: usize = 64;
    if buf.len() < len.saturating_add(LINE) {
        *buf = vec![0u8; len.saturating_add(LINE)];
    }
    let start = buf.as_ptr().align_offset(LINE);
    let start = if start < LINE { start } else { 0 };
    buf.get_mut(start..start + len).unwrap_or_default()
}

/// Writes `bytes` at `offset` in 128 KiB pieces: on this project's Linux 6.18 / ext4
/// machines, larger writes into the page cache are up to five times slower (the write size
/// sets the folio size; see `ckpt-io-backends`' block writer).
fn write_in_pieces(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    const PIECE: usize = 128 * 1024;
    let mut at = offset;
    for piece in bytes.chunks(PIECE) {
        file.write_all_at(piece, at)?;
        at += piece.len() as u64;
    }
    Ok(())
}

/// Creates a file to restore into at its final size: the ranges no data piece fills stay
/// holes, which is how a sparse file's holes come back.
fn create_sized(tmp: &Path, size: u64) -> Result<File, TreeError> {
    let file = File::create(tmp).map_err(io_err(tmp, "cannot create"))?;
    file.set_len(size).map_err(io_err(tmp, "cannot size"))?;
    Ok(file)
}

/// Reads and decodes the manifest: frame 0, holding exactly one buffer.
fn read_manifest<S: Source>(f: &mut FrameReader<'_, S>) -> Result<(Manifest, Vec<u8>), TreeError> {
    let bytes = f.read_to_vec()?.ok_or(TreeError::Layout { what: "empty manifest frame" })?;
    if f.next_len()?.is_some() {
        return Err(TreeError::Layout { what: "manifest frame holds more than the manifest" });
    }
    Ok((Manifest::decode(&bytes).map_err(TreeError::Manifest)?, bytes))
}

/// The temporary name a file is restored under, next to its final path.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".ckpt-restore.{}", std::process::id()));
    path.with_file_name(name)
}

/// Gives a fully restored temporary file its mode and time and renames it into place.
fn publish_file(pending: &mut PendingFile, path: &Path, e: &Entry) -> Result<(), TreeError> {
    let file = OpenOptions::new()
        .write(true)
        .open(&pending.tmp)
        .map_err(io_err(&pending.tmp, "cannot open"))?;
    file.set_permissions(fs::Permissions::from_mode(e.mode))
        .map_err(io_err(&pending.tmp, "cannot set mode of"))?;
    file.set_modified(system_time(e)).map_err(io_err(&pending.tmp, "cannot set time of"))?;
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir()) {
        return Err(TreeError::Refused {
            path: path.to_owned(),
            reason: "a directory is in the way of a file",
        });
    }
    fs::rename(&pending.tmp, path).map_err(io_err(path, "cannot publish"))?;
    pending.published = true;
    Ok(())
}

/// Restores a tree checkpoint from `source` into `dest` (created if missing). Paths are
/// checked (relative, no `..`, never through a symlink); each file is written under a
/// temporary name and appears under its own only once all its bytes are restored and
/// verified; symlinks are created last. `progress` gets the file bytes done so far and
/// the total.
///
/// # Errors
/// [`TreeError::Format`] for damaged or truncated input, [`TreeError::Manifest`] for an
/// invalid manifest, [`TreeError::Refused`] for paths that would leave `dest`,
/// [`TreeError::Io`] for the destination.
pub fn restore_checkpoint<S: Source>(
    source: S,
    dest: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RestoreSummary, TreeError> {
    let mut reader = Reader::new(source);
    let manifest = {
        let mut f = reader.next_frame()?.ok_or(TreeError::Layout { what: "no manifest frame" })?;
        let (manifest, _) = read_manifest(&mut f)?;
        f.close()?;
        manifest
    };
    progress(0, manifest.data_bytes());
    fs::create_dir_all(dest).map_err(io_err(dest, "cannot create destination"))?;
    // Lazily: a manifest may claim more frames than the checkpoint holds.
    let mut planned = manifest.data_frames_iter();
    let mut pieces: std::vec::IntoIter<Piece> = Vec::new().into_iter();
    let mut frame = None;
    let mut buf = Vec::new();
    let mut summary = RestoreSummary::default();
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    for (i, e) in manifest.entries.iter().enumerate() {
        let path = safe_join(dest, &e.path)?;
        match e.kind {
            Kind::Dir => {
                make_dir(&path)?;
                dirs.push((path, e));
                summary.dirs += 1;
            }
            Kind::Symlink => {
                links.push((path, e));
            }
            Kind::File => {
                let tmp = temp_path(&path);
                let file = create_sized(&tmp, e.size)?;
                let mut pending = PendingFile { tmp, published: false };
                let mut restored = 0;
                while restored < e.data_len() {
                    let Some(piece) = pieces.next() else {
                        if let Some(f) = frame.take() {
                            ckpt_frame_core::FrameReader::close(f)?;
                        }
                        let next = planned.next();
                        pieces = next
                            .ok_or(TreeError::Layout { what: "fewer data frames than files need" })?
                            .into_iter();
                        let next = reader.next_frame()?;
                        frame = Some(next.ok_or(TreeError::Layout {
                            what: "checkpoint ends before the data does",
                        })?);
                        continue;
                    };
                    let len = usize::try_from(piece.len).unwrap_or(usize::MAX);
                    let piece_buf = aligned(&mut buf, len);
                    let f = frame
                        .as_mut()
                        .ok_or(TreeError::Layout { what: "data piece outside a frame" })?;
                    f.read_into(piece_buf)?;
                    if piece.entry != i {
                        return Err(TreeError::Layout { what: "a data piece of another file" });
                    }
                    write_in_pieces(&file, piece_buf, piece.offset)
                        .map_err(io_err(&pending.tmp, "cannot write"))?;
                    restored += piece.len;
                    summary.data_bytes += piece.len;
                    progress(summary.data_bytes, manifest.data_bytes());
                }
                drop(file);
                publish_file(&mut pending, &path, e)?;
                summary.files += 1;
            }
        }
    }
    if let Some(f) = frame.take() {
        ckpt_frame_core::FrameReader::close(f)?;
    }
    if planned.next().is_some() || pieces.next().is_some() {
        return Err(TreeError::Layout { what: "more data frames than the files need" });
    }
    reader.finish()?;
    summary.symlinks = create_links(&links)?;
    set_dir_attributes(&dirs)?;
    Ok(summary)
}

/// Restores a tree checkpoint held in a file (any source that can seek) with `threads`
/// workers, each opening its own source with `open` and decoding whole frames through the
/// index into its own buffer, then writing them into the files at their offsets. Files
/// appear under their names only after every frame is restored and checked, as with
/// [`restore_checkpoint`], whose guarantees this keeps; the result is the same. A
/// checkpoint whose index cannot be read (cut short, damaged end) is restored by
/// [`restore_checkpoint`] instead, which restores every whole file before the damage.
///
/// # Errors
/// As [`restore_checkpoint`]; with several failures, the one in the earliest frame.
pub fn restore_checkpoint_parallel<S, O>(
    open: O,
    dest: &Path,
    threads: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RestoreSummary, TreeError>
where
    S: Source,
    O: Fn() -> Result<S, FormatError> + Sync,
{
    let mut reader = match Reader::open(open()?) {
        Ok(r) => r,
        Err(e) if e.kind() != ckpt_frame_core::ErrorKind::Io => {
            // A cut or damaged end: the frames before the damage may still be whole, and
            // the streaming reader restores (and checks) each of them before reporting it.
            tracing::warn!("cannot use the checkpoint's index ({e}); restoring frame by frame");
            return restore_checkpoint(open()?, dest, progress);
        }
        Err(e) => return Err(e.into()),
    };
    let (manifest, manifest_bytes) = {
        let mut f = reader.open_frame(0)?;
        let read = read_manifest(&mut f)?;
        f.close()?;
        read
    };
    // Checked before the plan is built: a hostile manifest may claim billions of frames.
    if reader.frame_count() != manifest.data_frame_count().checked_add(1) {
        return Err(TreeError::Layout { what: "frame count differs from the manifest's" });
    }
    let data_frames = manifest.data_frames();
    drop(reader);
    let total = manifest.data_bytes();
    progress(0, total);
    fs::create_dir_all(dest).map_err(io_err(dest, "cannot create destination"))?;
    let mut summary = RestoreSummary::default();
    let (mut dirs, mut links, mut files) = (Vec::new(), Vec::new(), Vec::new());
    let mut temps: Vec<Option<PathBuf>> = vec![None; manifest.entries.len()];
    for (i, e) in manifest.entries.iter().enumerate() {
        let path = safe_join(dest, &e.path)?;
        match e.kind {
            Kind::Dir => {
                make_dir(&path)?;
                dirs.push((path, e));
            }
            Kind::Symlink => links.push((path, e)),
            Kind::File => {
                let tmp = temp_path(&path);
                drop(create_sized(&tmp, e.size)?);
                if let Some(slot) = temps.get_mut(i) {
                    *slot = Some(tmp.clone());
                }
                files.push((PendingFile { tmp, published: false }, path, e));
            }
        }
    }
    let done = AtomicU64::new(0);
    let visit = |frame: &mut FrameReader<'_, S>| -> Result<(), TreeError> {
        let Some(data) = frame.index().checked_sub(1) else {
            let (_, bytes) = read_manifest(frame)?;
            return if bytes == manifest_bytes {
                Ok(())
            } else {
                Err(TreeError::Layout { what: "the manifest frame changed while restoring" })
            };
        };
        let pieces = usize::try_from(data)
            .ok()
            .and_then(|i| data_frames.get(i))
            .ok_or(TreeError::Layout { what: "more data frames than the files need" })?;
        thread_local! {
            static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            for p in pieces {
                let buf = aligned(buf, usize::try_from(p.len).unwrap_or(usize::MAX));
                frame.read_into(buf)?;
                let tmp = temps.get(p.entry).and_then(Option::as_ref).ok_or(TreeError::Layout {
                    what: "a data piece belongs to an entry that is not a file",
                })?;
                OpenOptions::new()
                    .write(true)
                    .open(tmp)
                    .and_then(|f| write_in_pieces(&f, buf, p.offset))
                    .map_err(io_err(tmp, "cannot write"))?;
                progress(done.fetch_add(p.len, Ordering::Relaxed) + p.len, total);
            }
            Ok(())
        })
    };
    restore_with(open, Parallelism::threads(threads), visit).map_err(|e| match e {
        ParallelError::Callback { error, .. } => error,
        ParallelError::Frame { error, .. } | ParallelError::Open(error) => error.into(),
        ParallelError::Pool(reason) => TreeError::Threads { reason },
        _ => TreeError::Threads { reason: e.to_string() },
    })?;
    summary.data_bytes = done.into_inner();
    for (pending, path, e) in &mut files {
        publish_file(pending, path, e)?;
        summary.files += 1;
    }
    summary.dirs = dirs.len() as u64;
    summary.symlinks = create_links(&links)?;
    set_dir_attributes(&dirs)?;
    Ok(summary)
}
