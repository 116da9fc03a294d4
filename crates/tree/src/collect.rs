//! Walking the inputs into a manifest.

use crate::TreeError;
use crate::error::io_err;
use crate::manifest::{Entry, Kind, Manifest};
use ckpt_frame_core::Style;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
    let extents = if kind == Kind::File { sparse_extents(path, size, &info)? } else { None };
    c.manifest.entries.push(Entry {
        kind,
        path: rel.to_vec(),
        mode,
        mtime_sec: secs,
        mtime_nsec: nanos,
        size,
        target,
        extents,
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

/// A sparse file's data extents (`SEEK_DATA`/`SEEK_HOLE`), or `None` for a file whose
/// blocks are all allocated (the common case, told by `st_blocks` without opening it).
fn sparse_extents(
    path: &Path,
    size: u64,
    info: &fs::Metadata,
) -> Result<Option<Vec<(u64, u64)>>, TreeError> {
    if info.blocks() * 512 >= size {
        return Ok(None);
    }
    let file = fs::File::open(path).map_err(io_err(path, "cannot open"))?;
    let layout = ckpt_sparse::data_layout(&file, path).map_err(|e| TreeError::Io {
        path: path.to_path_buf(),
        op: "cannot map the holes of",
        source: e.into(),
    })?;
    if layout.data.total_len() >= size {
        return Ok(None);
    }
    Ok(Some(layout.data.iter().map(|i| (i.start, i.len())).collect()))
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
