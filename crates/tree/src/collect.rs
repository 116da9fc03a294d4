//! Walking the inputs into a manifest.

use crate::error::io_err;
use crate::manifest::{Entry, Kind, Manifest, Owner};
use crate::pattern::Excludes;
use crate::xattrs::read_xattrs;
use crate::{TreeError, Warning};
use ckpt_frame_core::Style;
use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What to collect.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Bytes of file data per data frame.
    pub frame_size: u64,
    /// Paths left out, with their contents (tar's `--exclude`).
    pub excludes: Excludes,
    /// Store directories on another file system than their input without their contents
    /// (tar's `--one-file-system`).
    pub one_file_system: bool,
    /// Store extended attributes, POSIX ACLs included (on by default: a restored tree
    /// without its ACLs or file capabilities is silently less secure or broken).
    pub xattrs: bool,
}

impl CollectOptions {
    /// Everything stored, `frame_size` bytes of data per frame.
    pub fn new(frame_size: u64) -> Self {
        Self { frame_size, excludes: Excludes::default(), one_file_system: false, xattrs: true }
    }
}

/// The inputs of a checkpoint: its manifest and, for each file entry, where to read it.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The manifest to write.
    pub manifest: Manifest,
    /// For each entry, the file to read its bytes from (files only).
    pub sources: Vec<Option<PathBuf>>,
    /// What was skipped while walking the inputs.
    pub warnings: Vec<Warning>,
}

fn mtime(meta: &fs::Metadata) -> (i64, u32) {
    (meta.mtime(), u32::try_from(meta.mtime_nsec()).unwrap_or(0))
}

/// Walks `inputs` (files, directories, symlinks, FIFOs, devices; directories recursively,
/// in name order) into a manifest with owners, modes, times and extended attributes.
/// Each input is stored under its own name; a directory's contents under `name/...`. A
/// second name of an inode already stored becomes a hard link entry; sockets are skipped
/// with a warning.
///
/// # Errors
/// [`TreeError::Io`] for unreadable inputs, [`TreeError::Refused`] for two inputs with the
/// same name or an input without a name (`/`, `..`).
///
/// # Examples
/// ```
/// use ckpt_tree::{CollectOptions, collect};
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("data"))?;
/// std::fs::write(dir.path().join("data/a.txt"), b"hello")?;
/// let c = collect(&[dir.path().join("data")], &CollectOptions::new(4 << 20))?;
/// let paths: Vec<&[u8]> = c.manifest.entries.iter().map(|e| e.path.as_slice()).collect();
/// assert_eq!(paths, [&b"data"[..], b"data/a.txt"]);
/// assert_eq!(c.manifest.data_bytes(), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn collect(inputs: &[PathBuf], options: &CollectOptions) -> Result<Collected, TreeError> {
    let mut walk = Walk {
        c: Collected {
            manifest: Manifest {
                frame_size: options.frame_size,
                entries: Vec::new(),
                parent: None,
            },
            sources: Vec::new(),
            warnings: Vec::new(),
        },
        options,
        inodes: HashMap::new(),
        root_dev: 0,
    };
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
        walk.root_dev = fs::symlink_metadata(input).map_err(io_err(input, "cannot read"))?.dev();
        walk.add(input, name.as_bytes())?;
    }
    Ok(walk.c)
}

struct Walk<'o> {
    c: Collected,
    options: &'o CollectOptions,
    /// Inodes with several names already stored, and the path they were stored under.
    inodes: HashMap<(u64, u64), Vec<u8>>,
    /// The device of the input being walked.
    root_dev: u64,
}

/// What one path is, read without knowing where it sits in the walk (so that the paths of
/// a directory can be inspected on several threads).
struct Inspected {
    entry: Entry,
    source: Option<PathBuf>,
    /// (device, inode) when the inode has other names: the second name becomes a link.
    shared_inode: Option<(u64, u64)>,
    dev: u64,
    /// Not stored (sockets), with what it is.
    skipped: Option<&'static str>,
}

/// Reads `path` (stored as `rel`): its status, link target, holes and attributes.
fn inspect(path: &Path, rel: &[u8], options: &CollectOptions) -> Result<Inspected, TreeError> {
    let info = fs::symlink_metadata(path).map_err(io_err(path, "cannot read"))?;
    let (secs, nanos) = mtime(&info);
    let ft = info.file_type();
    let mut entry = Entry {
        path: rel.to_vec(),
        mode: info.mode() & 0o7777,
        mtime_sec: secs,
        mtime_nsec: nanos,
        owner: Some(Owner { uid: info.uid(), gid: info.gid() }),
        ..Entry::default()
    };
    let mut source = None;
    let mut skipped = None;
    if ft.is_dir() {
        entry.kind = Kind::Dir;
    } else if ft.is_file() {
        entry.kind = Kind::File;
        entry.size = info.len();
        entry.extents = sparse_extents(path, entry.size, &info)?;
        source = Some(path.to_path_buf());
    } else if ft.is_symlink() {
        entry.kind = Kind::Symlink;
        entry.target = fs::read_link(path)
            .map_err(io_err(path, "cannot read link"))?
            .into_os_string()
            .into_vec();
    } else if ft.is_fifo() {
        entry.kind = Kind::Fifo;
    } else if ft.is_char_device() || ft.is_block_device() {
        entry.kind = if ft.is_char_device() { Kind::CharDevice } else { Kind::BlockDevice };
        let rdev = info.rdev();
        entry.device = Some((rustix::fs::major(rdev), rustix::fs::minor(rdev)));
    } else {
        skipped = Some(if ft.is_socket() { "socket" } else { "file of unknown type" });
    }
    if options.xattrs && skipped.is_none() {
        entry.xattrs = read_xattrs(path).map_err(|e| TreeError::Io {
            path: path.to_path_buf(),
            op: "cannot read extended attributes of",
            source: e.into(),
        })?;
    }
    // Only a name of an inode that is stored (not a directory, not a socket) is linked to.
    let shared_inode =
        (!ft.is_dir() && skipped.is_none() && info.nlink() > 1).then(|| (info.dev(), info.ino()));
    Ok(Inspected { entry, source, shared_inode, dev: info.dev(), skipped })
}

/// Directories with at least this many paths have them inspected in parallel.
const PARALLEL_CHILDREN: usize = 16;

impl Walk<'_> {
    fn add(&mut self, path: &Path, rel: &[u8]) -> Result<(), TreeError> {
        if self.options.excludes.excludes(rel) {
            return Ok(());
        }
        let inspected = inspect(path, rel, self.options)?;
        self.place(path, inspected)
    }

    /// Stores an inspected path (a later name of an inode as a hard link) and walks into it
    /// if it is a directory.
    fn place(&mut self, path: &Path, mut inspected: Inspected) -> Result<(), TreeError> {
        if let Some(what) = inspected.skipped {
            self.c.warnings.push(Warning::Skipped { path: path.to_path_buf(), what });
            return Ok(());
        }
        if let Some(key) = inspected.shared_inode {
            if let Some(first) = self.inodes.get(&key) {
                let e = &mut inspected.entry;
                *e = Entry {
                    kind: Kind::HardLink,
                    target: first.clone(),
                    path: std::mem::take(&mut e.path),
                    mode: e.mode,
                    mtime_sec: e.mtime_sec,
                    mtime_nsec: e.mtime_nsec,
                    owner: e.owner,
                    ..Entry::default()
                };
                self.push(inspected.entry, None);
                return Ok(());
            }
            self.inodes.insert(key, inspected.entry.path.clone());
        }
        let is_dir = inspected.entry.kind == Kind::Dir;
        let rel = inspected.entry.path.clone();
        self.push(inspected.entry, inspected.source);
        if !is_dir {
            return Ok(());
        }
        if self.options.one_file_system && inspected.dev != self.root_dev {
            self.c.warnings.push(Warning::OtherFileSystem { path: path.to_path_buf() });
            return Ok(());
        }
        let mut children: Vec<_> = fs::read_dir(path)
            .map_err(io_err(path, "cannot list"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(path, "cannot list"))?;
        children.sort();
        let children: Vec<(PathBuf, Vec<u8>)> = children
            .into_iter()
            .map(|child| {
                let mut child_rel = rel.clone();
                child_rel.push(b'/');
                child_rel.extend_from_slice(child.as_bytes());
                (path.join(&child), child_rel)
            })
            .filter(|(_, child_rel)| !self.options.excludes.excludes(child_rel))
            .collect();
        if children.len() < PARALLEL_CHILDREN {
            for (child, child_rel) in &children {
                let inspected = inspect(child, child_rel, self.options)?;
                self.place(child, inspected)?;
            }
            return Ok(());
        }
        // Inspected on rayon's threads, stored in name order on this one (hard links and
        // the manifest's order do not depend on the threads).
        let options = self.options;
        let inspected: Vec<Result<Inspected, TreeError>> = {
            use rayon::prelude::*;
            children
                .par_iter()
                .map(|(child, child_rel)| inspect(child, child_rel, options))
                .collect()
        };
        for ((child, _), inspected) in children.iter().zip(inspected) {
            self.place(child, inspected?)?;
        }
        Ok(())
    }

    fn push(&mut self, entry: Entry, source: Option<PathBuf>) {
        self.c.manifest.entries.push(entry);
        self.c.sources.push(source);
    }
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
