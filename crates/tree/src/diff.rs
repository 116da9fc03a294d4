//! Comparing a tree checkpoint with a directory, as `tar --compare` (`tar -d`) compares an
//! archive with the file system.
//!
//! Each entry `P` of the checkpoint is compared with `DIR/P`, in manifest order, and every
//! difference is returned (see [`What`]). As with tar:
//!
//! - an entry missing from the directory is a difference ([`What::Missing`], tar's
//!   "Warning: Cannot stat: No such file or directory"); files in the directory that the
//!   checkpoint does not hold are **not** reported (tar ignores them too);
//! - a different file type is reported alone ([`What::Kind`], "File type differs"): nothing
//!   else of that entry is compared;
//! - contents are compared only when the sizes agree ("Size differs" otherwise), and a file
//!   gets at most one [`What::Contents`] ("Contents differ"); a sparse file's holes must read
//!   as zeros;
//! - a hard link must be the same inode as the entry it names ("Not linked to ...");
//!   symlinks compare their targets ("Symlink differs"), devices their numbers ("Device
//!   number differs");
//! - directories compare their mode but not their modification time (restoring into a
//!   directory changes its time; tar does not compare it either);
//! - a directory that cannot be read, or a file that cannot be opened, is a difference,
//!   not an error, as tar reports it and goes on.
//!
//! Beyond tar: owners are compared for every kind (tar: regular files only), modification
//! times also for symlinks, FIFOs and devices (tar: regular files only), with nanoseconds,
//! and extended attributes (tar's `--compare` does not compare them). Both owners and
//! attributes can be left out ([`DiffOptions`]). A symlink's mode is not compared (Linux
//! gives every symlink `0777`).
//!
//! Nothing is followed: `DIR/P` is examined with `lstat`, and the directories leading to it
//! are opened one component at a time without following symlinks, so a symlink standing
//! where the checkpoint has a directory is a [`What::Kind`] difference for that directory,
//! and every entry under it is [`What::Missing`].
//!
//! The checkpoint is read once, in order, and every data frame is verified (checksums,
//! layout against the manifest) whether or not its file is compared: damage is an error,
//! never reported as a difference. Memory stays at one 64 KiB chunk of data at a time
//! whatever sizes the manifest claims.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::TreeError;
use crate::manifest::{Entry, Kind, Manifest, Piece, Xattr};
use crate::restore::check_layout;
use crate::xattrs::read_xattrs;
use ckpt_frame_core::{FrameReader, Reader, Source};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, SeekFrom, Stat};
use rustix::io::Errno;
use std::cmp::Ordering;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What differs between a checkpoint entry and the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum What {
    /// The path cannot be examined: it does not exist, a directory leading to it is missing
    /// or is not a directory (a symlink is not followed), or `lstat` failed.
    Missing,
    /// The path is another type of file (a directory where a file was, ...).
    Kind,
    /// Permission bits (`st_mode & 0o7777`).
    Mode,
    /// Numeric owner or group.
    Owner,
    /// A regular file's length.
    Size,
    /// Modification time (seconds and nanoseconds).
    Mtime,
    /// A regular file's bytes (or the file could not be opened or read).
    Contents,
    /// A symlink's target.
    SymlinkTarget,
    /// A hard link that is not the same inode as the entry it names.
    LinkTarget,
    /// A character or block device's major and minor numbers.
    Device,
    /// The set of extended attributes (names and values).
    Xattrs,
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "Cannot stat",
            Self::Kind => "File type differs",
            Self::Mode => "Mode differs",
            Self::Owner => "Owner differs",
            Self::Size => "Size differs",
            Self::Mtime => "Mod time differs",
            Self::Contents => "Contents differ",
            Self::SymlinkTarget => "Symlink differs",
            Self::LinkTarget => "Hard link differs",
            Self::Device => "Device number differs",
            Self::Xattrs => "Extended attributes differ",
        })
    }
}

/// One difference between a checkpoint entry and the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The entry's path in the checkpoint (relative, `/`-separated).
    pub path: Vec<u8>,
    /// What differs.
    pub what: What,
    /// Both sides, for people: `checkpoint 0644, directory 0600`.
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", String::from_utf8_lossy(&self.path), self.what, self.detail)
    }
}

/// What to compare besides types, modes, times, sizes, contents and links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffOptions {
    /// Compare numeric owners and groups (of entries that recorded one).
    pub owners: bool,
    /// Compare extended attributes (except a symlink's). Turn off for a checkpoint written
    /// without them, or for a directory on a file system without them.
    pub xattrs: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self { owners: true, xattrs: true }
    }
}

/// Bytes read from a file at a time to check a hole (the data is compared chunk by chunk,
/// at most 64 KiB each, as the frames hand it out).
const HOLE_READ: usize = 64 * 1024;

/// Compares the checkpoint read from `source` (a seekable [`Source`]: a file opened with
/// `ckpt_io_backends::open_input`, or [`ckpt_frame_core::SliceSource`]) with the tree
/// under `dir`: entry `P` is compared with `dir/P`. Returns every difference, in manifest
/// order (for one entry: kind or missing, then mode, owner, time, size, link or device,
/// attributes, contents). See the [module documentation](self) for what is compared.
///
/// # Errors
/// [`TreeError::Format`] for a damaged, truncated or unseekable checkpoint,
/// [`TreeError::Manifest`] for an invalid manifest, [`TreeError::Layout`] for frames that
/// do not match the manifest (or a checkpoint that holds no tree), [`TreeError::Io`] when
/// `dir` cannot be opened. What cannot be read inside `dir` is reported as a difference.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink};
/// use ckpt_tree::diff::{DiffOptions, What, diff};
/// use ckpt_tree::{CollectOptions, RestoreOptions, WriteOptions, collect, restore_checkpoint, write_checkpoint};
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("app"))?;
/// std::fs::write(dir.path().join("app/config"), b"x = 1")?;
/// let c = collect(&[dir.path().join("app")], &CollectOptions::new(1 << 20))?;
/// let options = WriteOptions { style: Style::Lz4, id: CheckpointId::from_bytes([3; 16]), threads: 1, strict: true };
/// let bytes = write_checkpoint(VecSink::new(), &c, &options, &mut |_| {})?.0.into_inner();
/// let out = dir.path().join("out");
/// restore_checkpoint(SliceSource::new(&bytes), &out, &RestoreOptions::default(), &|_, _| {})?;
/// assert!(diff(SliceSource::new(&bytes), &out, &DiffOptions::default())?.is_empty());
/// std::fs::remove_file(out.join("app/config"))?;
/// let found = diff(SliceSource::new(&bytes), &out, &DiffOptions::default())?;
/// assert_eq!(found.len(), 1);
/// assert_eq!((found[0].path.as_slice(), &found[0].what), (&b"app/config"[..], &What::Missing));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn diff<S: Source>(
    source: S,
    dir: &Path,
    options: &DiffOptions,
) -> Result<Vec<Difference>, TreeError> {
    let mut reader = Reader::open(source)?;
    let manifest = check_layout(&mut reader)?
        .ok_or(TreeError::Layout { what: "frame 0 holds no tree manifest" })?;
    let mut tree = Tree::open(dir)?;
    let mut out = Vec::new();
    compare_all(&mut reader, &manifest, &mut tree, *options, &mut out)?;
    Ok(out)
}

/// The comparison loop: entries in order, their data pieces read from the frames as they
/// come (the frames hold the files' bytes in manifest order).
fn compare_all<S: Source>(
    reader: &mut Reader<S>,
    manifest: &Manifest,
    tree: &mut Tree,
    options: DiffOptions,
    out: &mut Vec<Difference>,
) -> Result<(), TreeError> {
    let layout = |what| TreeError::Layout { what };
    // Lazily: the frame count was checked, but the plan is never built whole.
    let mut planned = manifest.data_frames_iter();
    let mut pieces: std::vec::IntoIter<Piece> = Vec::new().into_iter();
    let mut frame: Option<FrameReader<'_, S>> = None;
    let mut next_frame = 1u64;
    let mut buf = Vec::new();
    for (i, e) in manifest.entries.iter().enumerate() {
        let file = compare_entry(tree, e, options, out);
        if e.kind != Kind::File {
            continue;
        }
        let mut mismatch: Option<String> = None;
        let mut compared = 0u64;
        while compared < e.data_len() {
            let Some(piece) = pieces.next() else {
                if let Some(f) = frame.take() {
                    f.close()?;
                }
                pieces =
                    planned.next().ok_or(layout("fewer data frames than files need"))?.into_iter();
                frame = Some(reader.open_frame(next_frame)?);
                next_frame += 1;
                continue;
            };
            if piece.entry != i {
                return Err(layout("a data piece of another file"));
            }
            let f = frame.as_mut().ok_or(layout("data piece outside a frame"))?;
            let against = if mismatch.is_none() { file.as_ref() } else { None };
            if let Some(found) = compare_piece(f, &piece, against, &mut buf)? {
                mismatch = Some(found);
            }
            compared += piece.len;
        }
        if let (Some(file), None, Some(extents)) = (&file, &mismatch, &e.extents) {
            mismatch = check_holes(file, extents, e.size, &mut buf);
        }
        if let Some(detail) = mismatch {
            out.push(Difference { path: e.path.clone(), what: What::Contents, detail });
        }
    }
    if let Some(f) = frame.take() {
        f.close()?;
    }
    if planned.next().is_some() || pieces.next().is_some() {
        return Err(layout("more data frames than the files need"));
    }
    Ok(())
}

/// Reads and verifies the frame's next buffer, which must be `piece`, comparing it with
/// `file` at the piece's offset when given. Returns the first mismatch found.
fn compare_piece<S: Source>(
    frame: &mut FrameReader<'_, S>,
    piece: &Piece,
    file: Option<&File>,
    buf: &mut Vec<u8>,
) -> Result<Option<String>, TreeError> {
    let wrong_len =
        TreeError::Layout { what: "a data buffer's length differs from the manifest's" };
    if frame.next_len()? != Some(piece.len) {
        return Err(wrong_len);
    }
    let mut mismatch = None;
    let read = frame.read_each(|at, bytes: &[u8]| -> Result<(), TreeError> {
        let Some(file) = file.filter(|_| mismatch.is_none()) else { return Ok(()) };
        let offset = piece.offset.saturating_add(at);
        mismatch = compare_bytes(file, offset, bytes, buf);
        Ok(())
    })?;
    if read == Some(piece.len) { Ok(mismatch) } else { Err(wrong_len) }
}

/// Compares `expected` with the file's bytes at `offset`, read into `buf` (grown to the
/// chunk's length, which the frame reader bounds).
fn compare_bytes(file: &File, offset: u64, expected: &[u8], buf: &mut Vec<u8>) -> Option<String> {
    if buf.len() < expected.len() {
        buf.resize(expected.len(), 0);
    }
    let mine = buf.get_mut(..expected.len()).unwrap_or_default();
    match file.read_exact_at(mine, offset) {
        Ok(()) => mine
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .map(|at| format!("first difference at byte {}", offset + at as u64)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Some(format!("the file ends before byte {}", offset + expected.len() as u64))
        }
        Err(e) => Some(format!("cannot read at byte {offset}: {e}")),
    }
}

/// Checks that a sparse file's holes in the checkpoint (the gaps between `extents`, and
/// after the last one up to `size`) read as zeros, skipping the file's own holes.
fn check_holes(
    file: &File,
    extents: &[(u64, u64)],
    size: u64,
    buf: &mut Vec<u8>,
) -> Option<String> {
    let mut from = 0u64;
    let ends = extents.iter().map(|&(o, l)| (o, o.saturating_add(l))).chain([(size, size)]);
    for (start, end) in ends {
        if start > from
            && let Some(found) = check_zeros(file, from, start, buf)
        {
            return Some(found);
        }
        from = end;
    }
    None
}

/// Checks that `start..end` of `file` reads as zeros, reading only its data regions.
fn check_zeros(file: &File, start: u64, end: u64, buf: &mut Vec<u8>) -> Option<String> {
    if buf.len() < HOLE_READ {
        buf.resize(HOLE_READ, 0);
    }
    let mut at = start;
    while at < end {
        let data = match rustix::fs::seek(file, SeekFrom::Data(at)) {
            Ok(data) => data.max(at),
            // No data from here to the end of the file.
            Err(Errno::NXIO) => return None,
            // A file system that cannot tell: read everything.
            Err(_) => at,
        };
        if data >= end {
            return None;
        }
        let hole = match rustix::fs::seek(file, SeekFrom::Hole(data)) {
            Ok(hole) if hole > data => hole.min(end),
            _ => end,
        };
        let mut pos = data;
        while pos < hole {
            let n = usize::try_from(hole - pos).unwrap_or(HOLE_READ).min(HOLE_READ);
            let chunk = buf.get_mut(..n).unwrap_or_default();
            match file.read_exact_at(chunk, pos) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Some(format!("the file ends before byte {}", pos + n as u64));
                }
                Err(e) => return Some(format!("cannot read at byte {pos}: {e}")),
            }
            if let Some(i) = chunk.iter().position(|&b| b != 0) {
                return Some(format!(
                    "first difference at byte {} (a hole in the checkpoint)",
                    pos + i as u64
                ));
            }
            pos += n as u64;
        }
        at = hole;
    }
    None
}

/// Compares everything of entry `e` but the file contents, pushing its differences. Returns
/// the file opened for reading when its contents are to be compared.
fn compare_entry(
    tree: &mut Tree,
    e: &Entry,
    options: DiffOptions,
    out: &mut Vec<Difference>,
) -> Option<File> {
    let mut push = |what, detail| out.push(Difference { path: e.path.clone(), what, detail });
    if e.kind == Kind::HardLink {
        if let Some((what, detail)) = compare_link(tree, e) {
            push(what, detail);
        }
        return None;
    }
    let name = file_name(&e.path);
    let parent = match tree.parent(&e.path) {
        Ok(fd) => fd,
        Err(why) => {
            push(What::Missing, why);
            return None;
        }
    };
    let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(err) => {
            push(What::Missing, format!("cannot stat: {}", io::Error::from(err)));
            return None;
        }
    };
    let found = FileType::from_raw_mode(st.st_mode);
    if Some(found) != file_type(e.kind) {
        let detail =
            format!("checkpoint {}, directory holds a {}", e.kind.name(), type_name(found));
        push(What::Kind, detail);
        return None;
    }
    let mode = st.st_mode & 0o7777;
    if e.kind != Kind::Symlink && mode != e.mode {
        push(What::Mode, format!("checkpoint {:04o}, directory {mode:04o}", e.mode));
    }
    if options.owners
        && let Some(owner) = e.owner
        && (st.st_uid, st.st_gid) != (owner.uid, owner.gid)
    {
        let detail = format!(
            "checkpoint {}:{}, directory {}:{}",
            owner.uid, owner.gid, st.st_uid, st.st_gid
        );
        push(What::Owner, detail);
    }
    let mtime = (i128::from(st.st_mtime), i128::from(st.st_mtime_nsec));
    if e.kind != Kind::Dir && mtime != (i128::from(e.mtime_sec), i128::from(e.mtime_nsec)) {
        let detail = format!(
            "checkpoint {}.{:09}, directory {}.{:09}",
            e.mtime_sec, e.mtime_nsec, mtime.0, mtime.1
        );
        push(What::Mtime, detail);
    }
    if let Some((what, detail)) = compare_kind(parent, name, e, &st) {
        push(what, detail);
    }
    if options.xattrs
        && e.kind != Kind::Symlink
        && let Some(detail) = compare_xattrs(parent, name, &e.xattrs)
    {
        push(What::Xattrs, detail);
    }
    if e.kind != Kind::File || i128::from(st.st_size) != i128::from(e.size) {
        return None;
    }
    match open_file(parent, name, &st) {
        Ok(file) => Some(file),
        Err(detail) => {
            push(What::Contents, detail);
            None
        }
    }
}

/// A hard link's difference: `dir/P` must be the inode of `dir/TARGET`.
fn compare_link(tree: &mut Tree, e: &Entry) -> Option<(What, String)> {
    let target = lossy(&e.target);
    match tree.lstat(&e.path) {
        Err(why) => Some((What::Missing, why)),
        Ok(st) => match tree.lstat(&e.target) {
            Ok(t) if (t.st_dev, t.st_ino) == (st.st_dev, st.st_ino) => None,
            Ok(_) => Some((What::LinkTarget, format!("not linked to {target}"))),
            Err(why) => Some((What::LinkTarget, format!("not linked to {target} ({why})"))),
        },
    }
}

/// What only some kinds have: a file's size, a symlink's target, a device's numbers.
fn compare_kind(
    parent: BorrowedFd<'_>,
    name: &[u8],
    e: &Entry,
    st: &Stat,
) -> Option<(What, String)> {
    match e.kind {
        Kind::File => (i128::from(st.st_size) != i128::from(e.size)).then(|| {
            let detail = format!("checkpoint {} bytes, directory {} bytes", e.size, st.st_size);
            (What::Size, detail)
        }),
        Kind::Symlink => match rustix::fs::readlinkat(parent, name, Vec::new()) {
            Ok(target) if target.as_bytes() == e.target.as_slice() => None,
            Ok(target) => {
                let detail = format!(
                    "checkpoint -> {}, directory -> {}",
                    lossy(&e.target),
                    lossy(target.as_bytes())
                );
                Some((What::SymlinkTarget, detail))
            }
            Err(err) => {
                Some((What::SymlinkTarget, format!("cannot read link: {}", io::Error::from(err))))
            }
        },
        Kind::CharDevice | Kind::BlockDevice => {
            let found = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
            (e.device != Some(found)).then(|| {
                let (major, minor) = e.device.unwrap_or_default();
                let detail =
                    format!("checkpoint {major},{minor}, directory {},{}", found.0, found.1);
                (What::Device, detail)
            })
        }
        Kind::Dir | Kind::HardLink | Kind::Fifo => None,
    }
}

/// Opens `name` for reading without following a symlink or blocking, and checks it is
/// still the regular file `st` describes.
fn open_file(parent: BorrowedFd<'_>, name: &[u8], st: &Stat) -> Result<File, String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(parent, name, flags, Mode::empty())
        .map_err(|err| format!("cannot open: {}", io::Error::from(err)))?;
    match rustix::fs::fstat(&fd) {
        Ok(now) if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => Ok(File::from(fd)),
        Ok(_) => Err(String::from("the file was replaced while it was compared")),
        Err(err) => Err(format!("cannot stat: {}", io::Error::from(err))),
    }
}

/// The difference between `expected` (ascending names) and the attributes of `name` in
/// `parent`, if any.
fn compare_xattrs(parent: BorrowedFd<'_>, name: &[u8], expected: &[Xattr]) -> Option<String> {
    let found = match xattrs_at(parent, name) {
        Ok(found) => found,
        Err(err) => {
            return Some(format!("cannot read extended attributes: {}", io::Error::from(err)));
        }
    };
    let mut notes = Vec::new();
    let (mut a, mut b) = (expected.iter().peekable(), found.iter().peekable());
    loop {
        // Both lists ascend by name: walk them together.
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
        };
        let note = match (order, a.next_if(|_| order.is_le()), b.next_if(|_| order.is_ge())) {
            (Ordering::Equal, Some(x), Some(y)) if x.value != y.value => {
                format!("{} differs", lossy(&x.name))
            }
            (Ordering::Less, Some(x), _) => format!("{} only in the checkpoint", lossy(&x.name)),
            (Ordering::Greater, _, Some(y)) => format!("{} only in the directory", lossy(&y.name)),
            _ => continue,
        };
        notes.push(note);
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// The extended attributes of `name` in `parent` (not following a symlink), by ascending
/// name, reached through the directory's descriptor: no path another process could swap.
fn xattrs_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<Vec<Xattr>, Errno> {
    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    read_xattrs(Path::new(OsStr::from_bytes(&path)))
}

/// The directory compared, reached one component at a time without following symlinks.
/// The directories leading to the last entry stay open (manifest order visits a directory's
/// contents together).
struct Tree {
    root: OwnedFd,
    /// Open directories from the root down, each with its relative path.
    open: Vec<(Vec<u8>, OwnedFd)>,
}

impl Tree {
    fn open(dir: &Path) -> Result<Self, TreeError> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root =
            rustix::fs::openat(rustix::fs::CWD, dir, flags, Mode::empty()).map_err(|err| {
                TreeError::Io { path: dir.to_path_buf(), op: "cannot open", source: err.into() }
            })?;
        Ok(Self { root, open: Vec::new() })
    }

    /// The directory holding `path`, opened without following symlinks, or why it cannot
    /// be reached.
    fn parent(&mut self, path: &[u8]) -> Result<BorrowedFd<'_>, String> {
        let parent = path.get(..path.len() - file_name(path).len()).unwrap_or_default();
        let parent = parent.strip_suffix(b"/").unwrap_or(parent);
        while let Some((p, _)) = self.open.last() {
            let under = parent
                .strip_prefix(p.as_slice())
                .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'/'));
            if under {
                break;
            }
            self.open.pop();
        }
        let mut end = self.open.last().map_or(0, |(p, _)| p.len());
        while end < parent.len() {
            let start = if end == 0 { 0 } else { end + 1 };
            let rest = parent.get(start..).unwrap_or_default();
            let stop = rest.iter().position(|&b| b == b'/').map_or(parent.len(), |n| start + n);
            let name = parent.get(start..stop).unwrap_or_default();
            let here = parent.get(..stop).unwrap_or_default();
            let at = self.open.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(at, name, flags, Mode::empty()) {
                Ok(fd) => self.open.push((here.to_vec(), fd)),
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let what = match rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                            "is a symlink (not followed)"
                        }
                        _ => "is not a directory",
                    };
                    return Err(format!("cannot stat: {} {what}", lossy(here)));
                }
                Err(err) => return Err(format!("cannot stat: {}", io::Error::from(err))),
            }
            end = stop;
        }
        Ok(self.open.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd()))
    }

    /// `lstat` of `path`, or why it cannot be examined.
    fn lstat(&mut self, path: &[u8]) -> Result<Stat, String> {
        let name = file_name(path);
        let parent = self.parent(path)?;
        rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|err| format!("cannot stat: {}", io::Error::from(err)))
    }
}

/// The last component of a manifest path.
fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The file type an entry of `kind` has on disk (`None` for a hard link: any).
fn file_type(kind: Kind) -> Option<FileType> {
    match kind {
        Kind::Dir => Some(FileType::Directory),
        Kind::File => Some(FileType::RegularFile),
        Kind::Symlink => Some(FileType::Symlink),
        Kind::Fifo => Some(FileType::Fifo),
        Kind::CharDevice => Some(FileType::CharacterDevice),
        Kind::BlockDevice => Some(FileType::BlockDevice),
        Kind::HardLink => None,
    }
}

/// A file type's name, as [`Kind::name`] spells it.
fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "dir",
        FileType::RegularFile => "file",
        FileType::Symlink => "symlink",
        FileType::Fifo => "fifo",
        FileType::CharacterDevice => "chardev",
        FileType::BlockDevice => "blockdev",
        FileType::Socket => "socket",
        FileType::Unknown => "file of unknown type",
    }
}
