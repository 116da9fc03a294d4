//! Restoring a tree checkpoint.

use super::{TreeError, io_err};
use crate::manifest::{Entry, Kind, Manifest, Piece};
use ckpt_frame_core::{Reader, Source};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
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
