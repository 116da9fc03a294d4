//! Checkpoints of files and directories: a manifest frame, then the files' bytes in data
//! frames of a fixed size, in manifest order.

use crate::manifest::{Entry, Kind, Manifest, ManifestError, Piece};
use ckpt_frame_core::{CheckpointId, Error as FormatError, Reader, Sink, Source, Style, Writer};
use ckpt_parallel::{FramePlan, ParallelError, Parallelism, write_frames};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Everything that can stop a tree checkpoint or restore.
#[derive(Debug)]
#[non_exhaustive]
pub enum TreeError {
    /// The checkpoint format reported an error (corruption, truncation, I/O under it, ...).
    Format(FormatError),
    /// The manifest in frame 0 is not valid.
    Manifest(ManifestError),
    /// A file system operation failed.
    Io {
        /// The path involved.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file changed size while it was being checkpointed.
    Changed {
        /// The file.
        path: PathBuf,
        /// How.
        how: &'static str,
    },
    /// An input or restore path that must be refused.
    Refused {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The checkpoint's frames do not match what its manifest describes.
    Layout {
        /// What is wrong.
        what: &'static str,
    },
}

impl TreeError {
    /// The exit status the CLI uses: 1 when the checkpoint's data is bad, 2 for usage or
    /// environment errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Format(e) => format_exit_code(e),
            Self::Manifest(_) | Self::Layout { .. } => 1,
            Self::Refused { .. } | Self::Io { .. } | Self::Changed { .. } => 2,
        }
    }
}

/// 1 for damaged or foreign data, 2 for I/O and misuse.
pub fn format_exit_code(e: &FormatError) -> u8 {
    use ckpt_frame_core::ErrorKind as K;
    match e.kind() {
        K::Io | K::InvalidUse => 2,
        _ => 1,
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(e) => write!(f, "{e}"),
            Self::Manifest(e) => write!(f, "{e}"),
            Self::Io { path, op, source } => write!(f, "{op} {}: {source}", path.display()),
            Self::Changed { path, how } => {
                write!(f, "{} {how} while it was being checkpointed", path.display())
            }
            Self::Refused { path, reason } => write!(f, "refusing {}: {reason}", path.display()),
            Self::Layout { what } => {
                write!(f, "checkpoint layout differs from its manifest: {what}")
            }
        }
    }
}

impl std::error::Error for TreeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Format(e) => Some(e),
            Self::Manifest(e) => Some(e),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<FormatError> for TreeError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

fn io_err<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> TreeError + 'p {
    move |source| TreeError::Io { path: path.to_path_buf(), op, source }
}

/// The inputs of a checkpoint: its manifest and, for each file entry, where to read it.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The manifest to write.
    pub manifest: Manifest,
    /// For each entry, the file to read its bytes from (files only).
    pub sources: Vec<Option<PathBuf>>,
}

fn mtime(meta: &fs::Metadata) -> (i64, u32) {
    (meta.mtime(), u32::try_from(meta.mtime_nsec()).unwrap_or(0))
}

/// Walks `inputs` (files, directories, symlinks; directories recursively, in name order)
/// into a manifest. Each input is stored under its own name; a directory's contents under
/// `name/...`.
///
/// # Errors
/// [`TreeError::Io`] for unreadable inputs, [`TreeError::Refused`] for two inputs with the
/// same name, an input without a name (`/`, `..`), or a special file (device, socket, FIFO).
pub fn collect(inputs: &[PathBuf], frame_size: u64) -> Result<Collected, TreeError> {
    let mut c =
        Collected { manifest: Manifest { frame_size, entries: Vec::new() }, sources: Vec::new() };
    let mut names = std::collections::HashSet::new();
    for input in inputs {
        let name = input.file_name().ok_or_else(|| TreeError::Refused {
            path: input.clone(),
            reason: "an input must have a file name (not `/`, `.` or `..`)",
        })?;
        if !names.insert(name.to_owned()) {
            return Err(TreeError::Refused {
                path: input.clone(),
                reason: "two inputs have the same name",
            });
        }
        add(&mut c, input, name.as_bytes())?;
    }
    Ok(c)
}

fn add(c: &mut Collected, path: &Path, rel: &[u8]) -> Result<(), TreeError> {
    let info = fs::symlink_metadata(path).map_err(io_err(path, "cannot read"))?;
    let (secs, nanos) = mtime(&info);
    let mode = info.mode() & 0o7777;
    let ft = info.file_type();
    let (kind, size, target, source) = if ft.is_dir() {
        (Kind::Dir, 0, Vec::new(), None)
    } else if ft.is_file() {
        (Kind::File, info.len(), Vec::new(), Some(path.to_path_buf()))
    } else if ft.is_symlink() {
        let t = fs::read_link(path).map_err(io_err(path, "cannot read link"))?;
        (Kind::Symlink, 0, t.into_os_string().into_vec(), None)
    } else {
        return Err(TreeError::Refused {
            path: path.to_path_buf(),
            reason: "not a file, directory or symlink",
        });
    };
    c.manifest.entries.push(Entry {
        kind,
        path: rel.to_vec(),
        mode,
        mtime_sec: secs,
        mtime_nsec: nanos,
        size,
        target,
    });
    c.sources.push(source);
    if kind == Kind::Dir {
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(io_err(path, "cannot list"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(path, "cannot list"))?;
        children.sort();
        for child in children {
            let mut child_rel = rel.to_vec();
            child_rel.push(b'/');
            child_rel.extend_from_slice(child.as_bytes());
            add(c, &path.join(&child), &child_rel)?;
        }
    }
    Ok(())
}

/// Buffer lengths of every frame (manifest frame first), for size bounds.
pub fn frame_plan(manifest: &Manifest, style: Style) -> Vec<(Style, Vec<usize>)> {
    let mut plan = vec![(style, vec![manifest.encode().len()])];
    for frame in manifest.data_frames() {
        plan.push((
            style,
            frame.iter().map(|p| usize::try_from(p.len).unwrap_or(usize::MAX)).collect(),
        ));
    }
    plan
}

/// What a write produced.
#[derive(Debug, Clone, Copy)]
pub struct WriteSummary {
    /// The checkpoint's identity.
    pub id: CheckpointId,
    /// Stored length.
    pub stored_bytes: u64,
    /// File bytes checkpointed.
    pub data_bytes: u64,
    /// Frames, manifest included.
    pub frames: u64,
}

/// Writes the checkpoint of `c` into `sink`. With `threads` > 1, that many data frames are
/// read and then encoded at once (memory: `threads` frames of input and their encoded
/// bytes); otherwise one frame at a time. The bytes are the same either way. `progress`
/// gets the file bytes done so far.
///
/// # Errors
/// [`TreeError::Io`] reading inputs, [`TreeError::Changed`] if a file changed size,
/// [`TreeError::Format`] from the sink.
pub fn write_checkpoint<S: Sink>(
    sink: S,
    c: &Collected,
    style: Style,
    id: CheckpointId,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<(S, WriteSummary), TreeError> {
    let mut w = Writer::new(sink, id);
    let manifest = c.manifest.encode();
    let mut f = w.open_frame(style)?;
    f.add(&manifest)?;
    f.close()?;
    let frames = c.manifest.data_frames();
    let mut reader = PieceReader::default();
    let mut done = 0u64;
    let window = threads.max(1);
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); window];
    for batch in frames.chunks(window) {
        for (pieces, buf) in batch.iter().zip(bufs.iter_mut()) {
            reader.fill(c, pieces, buf)?;
        }
        if window == 1 {
            let (Some(pieces), Some(buf)) = (batch.first(), bufs.first()) else { continue };
            let mut f = w.open_frame(style)?;
            f.add_all(split(pieces, buf))?;
            f.close()?;
        } else {
            let plan = batch
                .iter()
                .zip(&bufs)
                .map(|(pieces, buf)| FramePlan { style, buffers: split(pieces, buf).collect() });
            write_frames(&mut w, plan, Parallelism { threads: window, window }).map_err(
                |e| match e {
                    ParallelError::Frame { error, .. } | ParallelError::Open(error) => {
                        TreeError::Format(error)
                    }
                    _ => TreeError::Layout { what: "the worker threads could not be started" },
                },
            )?;
        }
        done += batch.iter().flatten().map(|p| p.len).sum::<u64>();
        progress(done);
    }
    let summary = w.finish()?;
    Ok((
        w.into_sink(),
        WriteSummary { id, stored_bytes: summary.len, data_bytes: done, frames: summary.frames },
    ))
}

/// Reads the files' bytes, piece by piece, keeping the current file open.
#[derive(Default)]
struct PieceReader {
    open: Option<(usize, File)>,
}

impl PieceReader {
    /// Fills `buf` with a data frame's pieces, checking each file still has its size.
    fn fill(
        &mut self,
        c: &Collected,
        pieces: &[Piece],
        buf: &mut Vec<u8>,
    ) -> Result<(), TreeError> {
        let total: u64 = pieces.iter().map(|p| p.len).sum();
        buf.resize(usize::try_from(total).unwrap_or(usize::MAX), 0);
        let mut at = 0;
        for p in pieces {
            let path =
                c.sources.get(p.entry).and_then(Option::as_ref).ok_or(TreeError::Layout {
                    what: "a data piece belongs to an entry that is not a file",
                })?;
            if self.open.as_ref().is_none_or(|(i, _)| *i != p.entry) {
                let file = File::open(path).map_err(io_err(path, "cannot open"))?;
                self.open = Some((p.entry, file));
            }
            let Some((_, file)) = self.open.as_mut() else { continue };
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let dst = buf.get_mut(at..at + len).unwrap_or_default();
            file.read_exact(dst).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    TreeError::Changed { path: path.clone(), how: "shrank" }
                }
                _ => TreeError::Io { path: path.clone(), op: "cannot read", source: e },
            })?;
            let size = c.manifest.entries.get(p.entry).map_or(0, |e| e.size);
            if p.offset + p.len == size
                && file.read(&mut [0u8; 1]).map_err(io_err(path, "cannot read"))? > 0
            {
                return Err(TreeError::Changed { path: path.clone(), how: "grew" });
            }
            at += len;
        }
        Ok(())
    }
}

/// A data frame's buffers: `buf` cut at its pieces' lengths.
fn split<'b>(pieces: &[Piece], buf: &'b [u8]) -> impl Iterator<Item = &'b [u8]> {
    let mut at = 0;
    pieces.iter().map(move |p| {
        let len = usize::try_from(p.len).unwrap_or(usize::MAX);
        let piece = buf.get(at..at + len).unwrap_or_default();
        at += len;
        piece
    })
}

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
    file: File,
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

/// Restores a tree checkpoint from `source` into `dest` (created if missing). Paths are
/// checked (relative, no `..`, never through a symlink); each file is written under a
/// temporary name and appears under its own only once all its bytes are restored and
/// verified; symlinks are created last. `progress` gets the file bytes done so far.
///
/// # Errors
/// [`TreeError::Format`] for damaged or truncated input, [`TreeError::Manifest`] for an
/// invalid manifest, [`TreeError::Refused`] for paths that would leave `dest`,
/// [`TreeError::Io`] for the destination.
pub fn restore_checkpoint<S: Source>(
    source: S,
    dest: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<RestoreSummary, TreeError> {
    let mut reader = Reader::new(source);
    let manifest = {
        let mut f = reader.next_frame()?.ok_or(TreeError::Layout { what: "no manifest frame" })?;
        let bytes = f.read_to_vec()?.ok_or(TreeError::Layout { what: "empty manifest frame" })?;
        if f.next_len()?.is_some() {
            return Err(TreeError::Layout { what: "manifest frame holds more than the manifest" });
        }
        f.close()?;
        Manifest::decode(&bytes).map_err(TreeError::Manifest)?
    };
    fs::create_dir_all(dest).map_err(io_err(dest, "cannot create destination"))?;
    let mut planned = manifest.data_frames().into_iter();
    let mut pieces: std::vec::IntoIter<Piece> = Vec::new().into_iter();
    let mut frame = None;
    let mut buf = Vec::new();
    let mut summary = RestoreSummary::default();
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    for e in &manifest.entries {
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
                let name = path.file_name().unwrap_or_default().to_owned();
                let mut tmp_name = std::ffi::OsString::from(".");
                tmp_name.push(&name);
                tmp_name.push(format!(".ckpt-restore.{}", std::process::id()));
                let tmp = path.with_file_name(tmp_name);
                let file = File::create(&tmp).map_err(io_err(&tmp, "cannot create"))?;
                let mut pending = PendingFile { tmp, file, published: false };
                let mut offset = 0;
                while offset < e.size {
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
                    buf.resize(len, 0);
                    let f = frame
                        .as_mut()
                        .ok_or(TreeError::Layout { what: "data piece outside a frame" })?;
                    f.read_into(&mut buf)?;
                    pending.file.write_all(&buf).map_err(io_err(&pending.tmp, "cannot write"))?;
                    offset += piece.len;
                    summary.data_bytes += piece.len;
                    progress(summary.data_bytes);
                }
                pending
                    .file
                    .set_permissions(fs::Permissions::from_mode(e.mode))
                    .map_err(io_err(&pending.tmp, "cannot set mode of"))?;
                pending
                    .file
                    .set_modified(system_time(e))
                    .map_err(io_err(&pending.tmp, "cannot set time of"))?;
                if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir()) {
                    return Err(TreeError::Refused {
                        path,
                        reason: "a directory is in the way of a file",
                    });
                }
                fs::rename(&pending.tmp, &path).map_err(io_err(&path, "cannot publish"))?;
                pending.published = true;
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
