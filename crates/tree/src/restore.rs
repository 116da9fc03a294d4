//! Restoring a tree checkpoint.

use crate::dest::{Dest, DirHandle, TempFile, make_symlink, open_dir_file};
use crate::manifest::{Entry, Kind, Manifest, Piece};
use crate::{TreeError, error::io_err};
use ckpt_frame_core::{Error as FormatError, FrameReader, Reader, Source};
use ckpt_parallel::{ParallelError, Parallelism, restore_with};
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
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
    /// Files and directories whose setuid or setgid bit was not restored (ownership is not
    /// stored, so the bits would grant the restoring user's privileges).
    pub privileges_dropped: u64,
}

/// Permission bits restore never sets: ownership is not stored, so a setuid or setgid bit
/// would hand the restoring user's (often root's) privileges to whatever the checkpoint
/// holds, as tar's non-owner restore avoids.
const PRIVILEGE_BITS: u32 = 0o6000;

/// The mode an entry is restored with, and whether privilege bits were dropped from it.
fn restored_mode(e: &Entry) -> (u32, bool) {
    (e.mode & !PRIVILEGE_BITS, e.mode & PRIVILEGE_BITS != 0)
}

fn system_time(e: &Entry) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(e.mtime_nsec));
    if e.mtime_sec >= 0 {
        UNIX_EPOCH + Duration::from_secs(e.mtime_sec.unsigned_abs()) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(e.mtime_sec.unsigned_abs()) + nanos
    }
}

/// A directory entry of the checkpoint, opened (or created) in the destination.
struct DirEntry<'m> {
    parent: DirHandle,
    name: &'m [u8],
    entry: &'m Entry,
}

/// Creates the symlinks, after every file and directory, so no restored path goes through
/// one.
fn create_links(dest: &mut Dest, links: &[&Entry]) -> Result<u64, TreeError> {
    for e in links {
        let (parent, name) = dest.parent(&e.path)?;
        make_symlink(&parent, name, &e.target)?;
    }
    Ok(links.len() as u64)
}

/// Sets directories' modes and times last, deepest first, since restoring their contents
/// changed their times and a read-only mode would have blocked it. Returns how many lost
/// privilege bits.
fn set_dir_attributes(dirs: &[DirEntry<'_>]) -> Result<u64, TreeError> {
    let mut dropped = 0;
    for d in dirs.iter().rev() {
        let path = d.parent.path().join(std::ffi::OsStr::from_bytes(d.name));
        let file = open_dir_file(&d.parent, d.name)?;
        let (mode, stripped) = restored_mode(d.entry);
        dropped += u64::from(stripped);
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&path, "cannot set mode of"))?;
        file.set_modified(system_time(d.entry)).map_err(io_err(&path, "cannot set time of"))?;
    }
    Ok(dropped)
}

/// Pieces up to this length are decoded straight into one reused buffer and written in
/// 128 KiB writes (the fast path: LZ4 decodes into the buffer without a staging copy);
/// longer ones stream through the frame's own chunk buffer. Either way memory stays at
/// this bound per thread whatever length a manifest claims (the default frame is 4 MiB).
const DIRECT_PIECE_MAX: u64 = 8 << 20;

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
fn write_in_pieces(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    const PIECE: usize = 128 * 1024;
    let mut at = offset;
    for piece in bytes.chunks(PIECE) {
        file.write_all_at(piece, at)?;
        at += piece.len() as u64;
    }
    Ok(())
}

/// Restores the frame's next buffer, which must be `piece`, into `file` at the piece's
/// offset. Memory follows the bytes stored, never a length the manifest or the frame
/// claims beyond [`DIRECT_PIECE_MAX`].
fn restore_piece<S: Source>(
    frame: &mut FrameReader<'_, S>,
    piece: &Piece,
    file: &File,
    path: &Path,
    buf: &mut Vec<u8>,
) -> Result<(), TreeError> {
    if frame.next_len()? != Some(piece.len) {
        return Err(TreeError::Layout {
            what: "a data buffer's length differs from the manifest's",
        });
    }
    if piece.len <= DIRECT_PIECE_MAX {
        let bytes = aligned(buf, usize::try_from(piece.len).unwrap_or(0));
        frame.read_into(bytes)?;
        return write_in_pieces(file, bytes, piece.offset).map_err(io_err(path, "cannot write"));
    }
    let read = frame.read_each(|at, bytes: &[u8]| -> Result<(), TreeError> {
        file.write_all_at(bytes, piece.offset + at).map_err(io_err(path, "cannot write"))
    })?;
    if read == Some(piece.len) {
        Ok(())
    } else {
        Err(TreeError::Layout { what: "a data buffer's length differs from the manifest's" })
    }
}

/// Gives a fully restored temporary file its size (the holes after its last data), mode
/// and time, and renames it into place. Returns whether privilege bits were dropped.
fn publish_file(temp: TempFile, file: &File, name: &[u8], e: &Entry) -> Result<bool, TreeError> {
    let temp_path = temp.path();
    file.set_len(e.size).map_err(io_err(&temp_path, "cannot size"))?;
    let (mode, stripped) = restored_mode(e);
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(&temp_path, "cannot set mode of"))?;
    file.set_modified(system_time(e)).map_err(io_err(&temp_path, "cannot set time of"))?;
    temp.publish(file, name)?;
    Ok(stripped)
}

/// Reads and decodes the manifest: frame 0, holding exactly one buffer.
fn read_manifest<S: Source>(f: &mut FrameReader<'_, S>) -> Result<(Manifest, Vec<u8>), TreeError> {
    let bytes = f.read_to_vec()?.ok_or(TreeError::Layout { what: "empty manifest frame" })?;
    if f.next_len()?.is_some() {
        return Err(TreeError::Layout { what: "manifest frame holds more than the manifest" });
    }
    Ok((Manifest::decode(&bytes).map_err(TreeError::Manifest)?, bytes))
}

/// Checks a tree checkpoint's manifest against its frames without restoring anything:
/// decodes the manifest in frame 0 and compares every data frame the manifest plans (how
/// many, how many buffers, how many bytes) with what the checkpoint's index records. Returns
/// `None` when frame 0 holds no manifest (a checkpoint written by another program), and
/// the manifest otherwise. Reads the manifest and the index only.
///
/// # Errors
/// [`TreeError::Manifest`] for an invalid manifest, [`TreeError::Layout`] where the frames
/// differ from it, [`TreeError::Format`] for damage met reading frame 0.
pub fn check_layout<S: Source>(reader: &mut Reader<S>) -> Result<Option<Manifest>, TreeError> {
    if reader.frame_count().unwrap_or(0) == 0 {
        return Ok(None);
    }
    let bytes = {
        let mut f = reader.open_frame(0)?;
        let Some(bytes) = f.read_to_vec()? else { return Ok(None) };
        if !bytes.starts_with(b"CKMF") {
            return Ok(None);
        }
        if f.next_len()?.is_some() {
            return Err(TreeError::Layout { what: "manifest frame holds more than the manifest" });
        }
        f.close()?;
        bytes
    };
    let manifest = Manifest::decode(&bytes).map_err(TreeError::Manifest)?;
    check_frames(reader, &manifest)?;
    Ok(Some(manifest))
}

/// The index's frames against the manifest's plan (count first: a hostile manifest may
/// claim billions of frames).
fn check_frames<S: Source>(reader: &Reader<S>, manifest: &Manifest) -> Result<(), TreeError> {
    if reader.frame_count() != manifest.data_frame_count().checked_add(1) {
        return Err(TreeError::Layout { what: "frame count differs from the manifest's" });
    }
    for (i, pieces) in manifest.data_frames_iter().enumerate() {
        let info = reader
            .frame_info(i as u64 + 1)
            .ok_or(TreeError::Layout { what: "frame count differs from the manifest's" })?;
        let bytes: u64 = pieces.iter().map(|p| p.len).sum();
        if info.buffer_count != pieces.len() as u64 || info.user_bytes != bytes {
            return Err(TreeError::Layout {
                what: "a data frame's buffers differ from the manifest's plan",
            });
        }
    }
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
    let mut dest = Dest::open(dest)?;
    // Lazily: a manifest may claim more frames than the checkpoint holds.
    let mut planned = manifest.data_frames_iter();
    let mut pieces: std::vec::IntoIter<Piece> = Vec::new().into_iter();
    let mut frame = None;
    let mut buf = Vec::new();
    let mut summary = RestoreSummary::default();
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    for (i, e) in manifest.entries.iter().enumerate() {
        match e.kind {
            Kind::Dir => {
                dest.dir(&e.path)?;
                let (parent, name) = dest.parent(&e.path)?;
                dirs.push(DirEntry { parent, name, entry: e });
                summary.dirs += 1;
            }
            Kind::Symlink => {
                dest.parent(&e.path)?;
                links.push(e);
            }
            Kind::File => {
                let (parent, name) = dest.parent(&e.path)?;
                let (temp, file) = TempFile::create(&parent)?;
                let temp_path = temp.path();
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
                    if piece.entry != i {
                        return Err(TreeError::Layout { what: "a data piece of another file" });
                    }
                    let f = frame
                        .as_mut()
                        .ok_or(TreeError::Layout { what: "data piece outside a frame" })?;
                    restore_piece(f, &piece, &file, &temp_path, &mut buf)?;
                    restored += piece.len;
                    summary.data_bytes += piece.len;
                    progress(summary.data_bytes, manifest.data_bytes());
                }
                summary.privileges_dropped += u64::from(publish_file(temp, &file, name, e)?);
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
    summary.symlinks = create_links(&mut dest, &links)?;
    summary.privileges_dropped += set_dir_attributes(&dirs)?;
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
    // The same answer as the streaming path gives on stdin: not a tree checkpoint (exit 1).
    if reader.frame_count() == Some(0) {
        return Err(TreeError::Layout { what: "no manifest frame" });
    }
    let (manifest, manifest_bytes) = {
        let mut f = reader.open_frame(0)?;
        let read = read_manifest(&mut f)?;
        f.close()?;
        read
    };
    // Checked before the plan is built or anything is created: a hostile manifest may
    // claim billions of frames, or buffers the frames do not hold.
    check_frames(&reader, &manifest)?;
    let data_frames = manifest.data_frames();
    drop(reader);
    let total = manifest.data_bytes();
    progress(0, total);
    let mut dest = Dest::open(dest)?;
    let mut summary = RestoreSummary::default();
    let (mut dirs, mut links, mut files) = (Vec::new(), Vec::new(), Vec::new());
    let mut temps: Vec<Option<TempFile>> = Vec::with_capacity(manifest.entries.len());
    for e in &manifest.entries {
        let mut temp = None;
        match e.kind {
            Kind::Dir => {
                dest.dir(&e.path)?;
                let (parent, name) = dest.parent(&e.path)?;
                dirs.push(DirEntry { parent, name, entry: e });
            }
            Kind::Symlink => {
                dest.parent(&e.path)?;
                links.push(e);
            }
            Kind::File => {
                let (parent, name) = dest.parent(&e.path)?;
                // Closed at once: a restore may hold thousands of files pending.
                let (t, _) = TempFile::create(&parent)?;
                temp = Some(t);
                files.push((temps.len(), name, e));
            }
        }
        temps.push(temp);
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
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            for p in pieces {
                let temp =
                    temps.get(p.entry).and_then(Option::as_ref).ok_or(TreeError::Layout {
                        what: "a data piece belongs to an entry that is not a file",
                    })?;
                let file = temp.reopen()?;
                restore_piece(frame, p, &file, &temp.path(), buf)?;
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
    for (i, name, e) in files {
        let temp = temps
            .get_mut(i)
            .and_then(Option::take)
            .ok_or(TreeError::Layout { what: "a file restored twice" })?;
        let file = temp.reopen()?;
        summary.privileges_dropped += u64::from(publish_file(temp, &file, name, e)?);
        summary.files += 1;
    }
    summary.dirs = dirs.len() as u64;
    summary.symlinks = create_links(&mut dest, &links)?;
    summary.privileges_dropped += set_dir_attributes(&dirs)?;
    Ok(summary)
}
