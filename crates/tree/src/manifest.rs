//! The manifest: what a tree checkpoint holds (frame 0, one buffer).
//!
//! The normative byte layout is in `docs/manifest.md`. In short (all integers
//! little-endian), version 3:
//!
//! ```text
//! header (24 bytes): magic "CKMF" | version u16 = 3 | reserved u16 = 0
//!                    | frame_size u64 | entry_count u64
//! entry (64 bytes + path + target + extents + xattrs):
//!     kind u8 | flags u8 (bit 0 sparse file, bit 1 owner recorded) | reserved [u8; 2] = 0
//!     | mode u32 | mtime_sec i64 | mtime_nsec u32 | path_len u32 | size u64 | target_len u32
//!     | extent_count u32 | uid u32 | gid u32 | device_major u32 | device_minor u32
//!     | xattr_count u32 | reserved u32 = 0
//!     | path | target | extent_count x (offset u64 | len u64)
//!     | xattr_count x (name_len u32 | value_len u32 | name | value)
//! ```
//! Kinds: 0 directory, 1 file, 2 symlink, 3 hard link (its target is the path of an earlier
//! entry that is neither a directory nor a hard link), 4 FIFO, 5 character device, 6 block
//! device. A sparse file stores only its data extents (ascending, non-empty, not touching,
//! inside `size`); other files store `0..size`. Paths are relative, `/`-separated, without
//! empty, `.` or `..` components or NUL bytes, at most 4096 bytes, each path once. Extended
//! attribute names are 1 to 255 bytes without NUL, strictly ascending in an entry; values
//! at most 65,536 bytes. The data of all files follows in later frames, in manifest order,
//! cut into frames of `frame_size` bytes. Versions 1 (no sparse files) and 2 (no owners,
//! hard links, special files or xattrs) are still read.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt;

const MAGIC: [u8; 4] = *b"CKMF";
const VERSION: u16 = 4;
/// The version before incremental checkpoints: the same entries, no parent, no block table.
const VERSION_OWNERS: u16 = 3;
/// The version before owners, hard links, special files and xattrs.
const VERSION_SPARSE: u16 = 2;
/// The first version: no sparse files either.
const VERSION_DENSE: u16 = 1;
const FLAG_SPARSE: u8 = 1;
const FLAG_OWNER: u8 = 2;
/// The file's bytes outside its stored ranges come from the parent checkpoint.
const FLAG_INHERITS: u8 = 4;
/// Header flag: the manifest names a parent checkpoint.
const HEADER_FLAG_PARENT: u16 = 1;
const HEADER_LEN: usize = 24;
/// An entry's fixed part in versions 1 and 2.
const ENTRY_FIXED_LEN_V2: usize = 40;
/// An entry's fixed part in versions 3 and 4.
const ENTRY_FIXED_LEN: usize = 64;
/// The grid of blocks on which an incremental checkpoint compares and stores a file's
/// bytes (see [`crate::blocks`]).
pub const BLOCK_SIZE: u64 = 4096;
/// Longest extended attribute name (Linux's `XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value (Linux's `XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = 65_536;
/// Longest path or symlink target accepted (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;
/// Largest frame size a writer uses and a reader accepts: restore holds a frame's worth of
/// pieces in its plan, and `write` a frame in memory.
pub const MAX_FRAME_SIZE: u64 = 1 << 30;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Kind {
    /// A directory (stored so that empty ones come back).
    Dir,
    /// A regular file.
    #[default]
    File,
    /// A symbolic link.
    Symlink,
    /// Another name of an earlier entry's inode (its `target` is that entry's path).
    HardLink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl Kind {
    /// The byte that encodes this kind.
    fn code(self) -> u8 {
        match self {
            Self::Dir => 0,
            Self::File => 1,
            Self::Symlink => 2,
            Self::HardLink => 3,
            Self::Fifo => 4,
            Self::CharDevice => 5,
            Self::BlockDevice => 6,
        }
    }

    fn from_code(code: u8, version: u16) -> Option<Self> {
        let kind = match code {
            0 => Self::Dir,
            1 => Self::File,
            2 => Self::Symlink,
            3 => Self::HardLink,
            4 => Self::Fifo,
            5 => Self::CharDevice,
            6 => Self::BlockDevice,
            _ => return None,
        };
        (version >= VERSION_OWNERS || code <= 2).then_some(kind)
    }

    /// A short name, as `ckpt list` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dir => "dir",
            Self::File => "file",
            Self::Symlink => "symlink",
            Self::HardLink => "hardlink",
            Self::Fifo => "fifo",
            Self::CharDevice => "chardev",
            Self::BlockDevice => "blockdev",
        }
    }

    /// The type letter of `ls -l` and `tar -tv` (`h` for a hard link, as tar prints it).
    pub fn letter(self) -> char {
        match self {
            Self::Dir => 'd',
            Self::File => '-',
            Self::Symlink => 'l',
            Self::HardLink => 'h',
            Self::Fifo => 'p',
            Self::CharDevice => 'c',
            Self::BlockDevice => 'b',
        }
    }
}

/// Numeric owner and group of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// One extended attribute (POSIX ACLs are the `system.posix_acl_*` ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Its name, with its namespace (`user.`, `trusted.`, `security.`, `system.`).
    pub name: Vec<u8>,
    /// Its value, verbatim.
    pub value: Vec<u8>,
}

/// One path in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// What it is.
    pub kind: Kind,
    /// Relative path, `/`-separated, as raw bytes.
    pub path: Vec<u8>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// A file's length in bytes; 0 otherwise.
    pub size: u64,
    /// A symlink's target, or the path of the entry a hard link shares an inode with;
    /// empty otherwise.
    pub target: Vec<u8>,
    /// A sparse file's data extents as (offset, length); `None` when all of `0..size` is
    /// stored.
    pub extents: Option<Vec<(u64, u64)>>,
    /// Numeric owner; `None` in checkpoints written before owners were stored.
    pub owner: Option<Owner>,
    /// A device's (major, minor) numbers; `None` for other kinds.
    pub device: Option<(u32, u32)>,
    /// Extended attributes, by ascending name.
    pub xattrs: Vec<Xattr>,
    /// In an incremental checkpoint, the ranges of the file's content this checkpoint
    /// stores (ascending, on the [`BLOCK_SIZE`] grid or at a content range's ends); the
    /// rest of its [`content_ranges`](Entry::content_ranges) is the parent's file at the
    /// same path. `None`: everything is stored here.
    pub stored: Option<Vec<(u64, u64)>>,
}

impl Entry {
    /// The ranges of the file that hold data, as (offset, length): a sparse file's
    /// extents, `0..size` for another file, none for other kinds. The rest of `0..size`
    /// is holes.
    pub fn content_ranges(&self) -> Vec<(u64, u64)> {
        self.content_ranges_borrowed().into_owned()
    }

    /// [`content_ranges`](Entry::content_ranges) without copying a sparse file's extents,
    /// for callers that ask for every block.
    pub(crate) fn content_ranges_borrowed(&self) -> std::borrow::Cow<'_, [(u64, u64)]> {
        match (&self.extents, self.kind) {
            (Some(x), _) => std::borrow::Cow::Borrowed(x.as_slice()),
            (None, Kind::File) if self.size > 0 => std::borrow::Cow::Owned(vec![(0, self.size)]),
            _ => std::borrow::Cow::Borrowed(&[]),
        }
    }

    /// Bytes of [`content_ranges`](Entry::content_ranges).
    pub fn content_len(&self) -> u64 {
        match &self.extents {
            Some(x) => x.iter().fold(0u64, |total, r| total.saturating_add(r.1)),
            None if self.kind == Kind::File => self.size,
            None => 0,
        }
    }

    /// The ranges of the file stored in the checkpoint, as (offset, length).
    pub fn data_ranges(&self) -> Vec<(u64, u64)> {
        if let Some(stored) = &self.stored {
            return stored.clone();
        }
        match (&self.extents, self.kind) {
            (Some(x), _) => x.clone(),
            (None, Kind::File) if self.size > 0 => vec![(0, self.size)],
            _ => Vec::new(),
        }
    }

    /// Range `i` of [`Entry::data_ranges`], without building the list.
    pub fn data_range(&self, i: usize) -> Option<(u64, u64)> {
        if let Some(stored) = &self.stored {
            return stored.get(i).copied();
        }
        match (&self.extents, self.kind) {
            (Some(x), _) => x.get(i).copied(),
            (None, Kind::File) if self.size > 0 && i == 0 => Some((0, self.size)),
            _ => None,
        }
    }

    /// Where the file's last stored range ends (`None` when nothing of it is stored): a
    /// piece ending there completes the file.
    pub fn data_end(&self) -> Option<u64> {
        if let Some(stored) = &self.stored {
            return stored.last().map(|&(o, l)| o.saturating_add(l));
        }
        match (&self.extents, self.kind) {
            (Some(x), _) => x.last().map(|&(o, l)| o.saturating_add(l)),
            (None, Kind::File) if self.size > 0 => Some(self.size),
            _ => None,
        }
    }

    /// Bytes of the file stored in the checkpoint.
    pub fn data_len(&self) -> u64 {
        match &self.stored {
            Some(stored) => stored.iter().fold(0u64, |total, r| total.saturating_add(r.1)),
            None => self.content_len(),
        }
    }
}

/// The checkpoint an incremental checkpoint builds on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLink {
    /// The parent's checkpoint id.
    pub id: [u8; 16],
    /// The parent's state digest ([`crate::blocks::state_digest`]): what it holds, however
    /// it stores it.
    pub digest: u64,
    /// Where the writer found the parent: a file name beside this checkpoint, or an
    /// absolute path. A hint for finding it; the id and digest decide.
    pub name: Vec<u8>,
}

/// A decoded manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Bytes of file data per data frame (the last frame may hold less).
    pub frame_size: u64,
    /// The entries, directories before what they contain.
    pub entries: Vec<Entry>,
    /// The parent of an incremental checkpoint; `None` for a self-contained one.
    pub parent: Option<ParentLink>,
}

/// Why a manifest does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// Fewer bytes than a structure needs.
    Truncated {
        /// Byte offset in the manifest.
        offset: usize,
    },
    /// Not a manifest.
    BadMagic,
    /// A manifest version this build does not read.
    Version(u16),
    /// A reserved field is not zero, or an unknown entry kind.
    BadField {
        /// Entry index.
        entry: u64,
        /// Which field.
        field: &'static str,
    },
    /// A path that restore must refuse.
    UnsafePath {
        /// Entry index.
        entry: u64,
        /// The path, lossily decoded for the message.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// Bytes left after the last entry.
    TrailingBytes {
        /// Byte offset where they start.
        offset: usize,
    },
    /// The frame size is 0.
    ZeroFrameSize,
    /// The frame size is over [`MAX_FRAME_SIZE`], which no writer uses.
    FrameSizeTooLarge {
        /// The frame size in the manifest.
        found: u64,
    },
    /// Two entries have the same path: which one a restore should keep is not defined.
    DuplicatePath {
        /// The later entry.
        entry: u64,
        /// The earlier entry with that path.
        first: u64,
        /// The path, lossily decoded for the message.
        path: String,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { offset } => write!(f, "manifest ends early at byte {offset}"),
            Self::BadMagic => f.write_str("frame 0 does not hold a ckpt manifest"),
            Self::Version(v) => {
                write!(f, "manifest version {v} is not supported (this build reads 1 to 4)")
            }
            Self::BadField { entry, field } => write!(f, "manifest entry {entry}: invalid {field}"),
            Self::UnsafePath { entry, path, reason } => {
                write!(f, "manifest entry {entry}: refusing path {path:?}: {reason}")
            }
            Self::TrailingBytes { offset } => {
                write!(f, "manifest has extra bytes from byte {offset}")
            }
            Self::ZeroFrameSize => f.write_str("manifest frame size is 0"),
            Self::FrameSizeTooLarge { found } => write!(
                f,
                "manifest frame size {found} is over the {MAX_FRAME_SIZE} bytes any writer uses"
            ),
            Self::DuplicatePath { entry, first, path } => {
                write!(f, "manifest entry {entry}: path {path:?} is also entry {first}")
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// Two entries with one path (which one a restore keeps would be an accident of its order),
/// and hard links that do not name an earlier entry they can share an inode with.
fn check_paths(entries: &[Entry]) -> Result<(), ManifestError> {
    let mut seen: std::collections::HashMap<&[u8], (u64, Kind)> =
        std::collections::HashMap::with_capacity(entries.len());
    for (i, e) in (0u64..).zip(entries) {
        if e.kind == Kind::HardLink {
            match seen.get(e.target.as_slice()) {
                Some((_, kind)) if !matches!(kind, Kind::Dir | Kind::HardLink) => {}
                _ => {
                    return Err(ManifestError::BadField {
                        entry: i,
                        field: "hard link target (not an earlier file, symlink or special file)",
                    });
                }
            }
        }
        if let Some(&(first, _)) = seen.get(e.path.as_slice()) {
            let path = String::from_utf8_lossy(&e.path).into_owned();
            return Err(ManifestError::DuplicatePath { entry: i, first, path });
        }
        seen.insert(&e.path, (i, e.kind));
    }
    Ok(())
}

/// Why `path` may not be restored, if it may not.
pub fn path_problem(path: &[u8]) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty path");
    }
    if path.len() > MAX_PATH {
        return Some("longer than 4096 bytes");
    }
    if path.contains(&0) {
        return Some("contains a NUL byte");
    }
    if path.first() == Some(&b'/') {
        return Some("absolute path");
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" => return Some("empty component (`//` or a trailing `/`)"),
            b"." => return Some("`.` component"),
            b".." => return Some("`..` component"),
            _ => {}
        }
    }
    None
}

impl Manifest {
    /// Encodes the manifest (always the current version, 4).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_as(true)
    }

    /// The bytes of the manifest without its parent and stored ranges: what it describes,
    /// whichever checkpoint stores it. Folding or rebasing a checkpoint keeps these bytes.
    pub fn encode_state(&self) -> Vec<u8> {
        self.encode_as(false)
    }

    fn encode_as(&self, with_chain: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.entries.len() * (ENTRY_FIXED_LEN + 32));
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let parent = self.parent.as_ref().filter(|_| with_chain);
        let header_flags = if parent.is_some() { HEADER_FLAG_PARENT } else { 0 };
        out.extend_from_slice(&header_flags.to_le_bytes());
        out.extend_from_slice(&self.frame_size.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        if let Some(p) = parent {
            out.extend_from_slice(&p.id);
            out.extend_from_slice(&p.digest.to_le_bytes());
            out.extend_from_slice(&len32(p.name.len()));
            out.extend_from_slice(&p.name);
        }
        for e in &self.entries {
            let mut flags = 0;
            if e.extents.is_some() {
                flags |= FLAG_SPARSE;
            }
            if e.owner.is_some() {
                flags |= FLAG_OWNER;
            }
            let stored = e.stored.as_deref().filter(|_| with_chain);
            if stored.is_some() {
                flags |= FLAG_INHERITS;
            }
            out.extend_from_slice(&[e.kind.code(), flags, 0, 0]);
            out.extend_from_slice(&e.mode.to_le_bytes());
            out.extend_from_slice(&e.mtime_sec.to_le_bytes());
            out.extend_from_slice(&e.mtime_nsec.to_le_bytes());
            out.extend_from_slice(&len32(e.path.len()));
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&len32(e.target.len()));
            let extents = e.extents.as_deref().unwrap_or_default();
            out.extend_from_slice(&len32(extents.len()));
            let owner = e.owner.unwrap_or(Owner { uid: 0, gid: 0 });
            let (major, minor) = e.device.unwrap_or((0, 0));
            for field in [owner.uid, owner.gid, major, minor] {
                out.extend_from_slice(&field.to_le_bytes());
            }
            out.extend_from_slice(&len32(e.xattrs.len()));
            out.extend_from_slice(&len32(stored.map_or(0, <[_]>::len)));
            out.extend_from_slice(&e.path);
            out.extend_from_slice(&e.target);
            for (offset, len) in extents {
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
            }
            for x in &e.xattrs {
                out.extend_from_slice(&len32(x.name.len()));
                out.extend_from_slice(&len32(x.value.len()));
                out.extend_from_slice(&x.name);
                out.extend_from_slice(&x.value);
            }
            for (offset, len) in stored.unwrap_or_default() {
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
            }
        }
        out
    }

    /// Decodes and validates a manifest: every path must be safe to restore, every size
    /// within its bound, every hard link must name an earlier entry.
    ///
    /// # Errors
    /// A [`ManifestError`] naming the entry and field.
    ///
    /// # Examples
    /// ```
    /// use ckpt_tree::manifest::{Entry, Kind, Manifest};
    /// let m = Manifest {
    ///     frame_size: 4096,
    ///     entries: vec![Entry { kind: Kind::File, path: b"a".to_vec(), size: 3, ..Entry::default() }],
    ///     parent: None,
    /// };
    /// assert_eq!(Manifest::decode(&m.encode())?, m);
    /// assert!(Manifest::decode(b"CKMF").is_err());
    /// # Ok::<(), ckpt_tree::manifest::ManifestError>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut r = Cursor { bytes, at: 0 };
        if r.take::<4>()? != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let version = u16::from_le_bytes(r.take()?);
        if ![VERSION, VERSION_OWNERS, VERSION_SPARSE, VERSION_DENSE].contains(&version) {
            return Err(ManifestError::Version(version));
        }
        let header_flags = u16::from_le_bytes(r.take()?);
        let known = if version == VERSION { HEADER_FLAG_PARENT } else { 0 };
        if header_flags & !known != 0 {
            return Err(ManifestError::BadField { entry: 0, field: "header reserved bytes" });
        }
        let frame_size = u64::from_le_bytes(r.take()?);
        if frame_size == 0 {
            return Err(ManifestError::ZeroFrameSize);
        }
        if frame_size > MAX_FRAME_SIZE {
            return Err(ManifestError::FrameSizeTooLarge { found: frame_size });
        }
        let count = u64::from_le_bytes(r.take()?);
        let parent = if header_flags & HEADER_FLAG_PARENT == 0 {
            None
        } else {
            let id = r.take::<16>()?;
            let digest = u64::from_le_bytes(r.take()?);
            let name_len = u32::from_le_bytes(r.take()?) as usize;
            if name_len == 0 || name_len > MAX_PATH {
                return Err(ManifestError::BadField { entry: 0, field: "parent name length" });
            }
            let name = r.slice(name_len)?.to_vec();
            if name.contains(&0) {
                return Err(ManifestError::BadField { entry: 0, field: "parent name (NUL)" });
            }
            Some(ParentLink { id, digest, name })
        };
        let fixed = if version >= VERSION_OWNERS { ENTRY_FIXED_LEN } else { ENTRY_FIXED_LEN_V2 };
        // Each entry takes at least its fixed part, which bounds the allocation.
        let room = (bytes.len().saturating_sub(HEADER_LEN) / fixed) as u64;
        if count > room {
            return Err(ManifestError::Truncated { offset: bytes.len() });
        }
        let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut total = 0u64;
        for i in 0..count {
            let entry = r.entry(i, version)?;
            if entry.stored.is_some() && parent.is_none() {
                return Err(ManifestError::BadField {
                    entry: i,
                    field: "flags (inherits without a parent)",
                });
            }
            total = total
                .checked_add(entry.data_len())
                .ok_or(ManifestError::BadField { entry: i, field: "size (the total overflows)" })?;
            entries.push(entry);
        }
        if r.at != bytes.len() {
            return Err(ManifestError::TrailingBytes { offset: r.at });
        }
        check_paths(&entries)?;
        Ok(Self { frame_size, entries, parent })
    }

    /// Total bytes of file data stored (sparse files count their data extents only).
    /// [`Manifest::decode`] refuses manifests whose total does not fit a `u64`.
    pub fn data_bytes(&self) -> u64 {
        self.entries.iter().fold(0u64, |total, e| total.saturating_add(e.data_len()))
    }

    /// How many data frames the files' bytes fill: they are packed across files, so every
    /// frame but the last is full.
    pub fn data_frame_count(&self) -> u64 {
        self.data_bytes().div_ceil(self.frame_size.max(1))
    }

    /// How the files' bytes are laid out over data frames: for each data frame, its pieces.
    /// Builds them all: for a manifest read from a checkpoint, check
    /// [`Manifest::data_frame_count`] against the checkpoint first, or walk
    /// [`Manifest::data_frames_iter`], so a hostile manifest cannot claim billions of frames.
    pub fn data_frames(&self) -> Vec<Vec<Piece>> {
        self.data_frames_iter().collect()
    }

    /// [`Manifest::data_frames`] one frame at a time.
    pub fn data_frames_iter(&self) -> DataFrames<'_> {
        DataFrames { manifest: self, entry: 0, range: 0, offset: None }
    }
}

/// The data frames of a manifest, one at a time ([`Manifest::data_frames_iter`]).
#[derive(Debug, Clone)]
pub struct DataFrames<'a> {
    manifest: &'a Manifest,
    /// The entry and the index of its data range where the next piece starts.
    entry: usize,
    range: usize,
    /// Offset reached inside that range, if it was cut by the previous frame.
    offset: Option<u64>,
}

impl Iterator for DataFrames<'_> {
    type Item = Vec<Piece>;

    fn next(&mut self) -> Option<Vec<Piece>> {
        let mut frame = Vec::new();
        let mut room = self.manifest.frame_size.max(1);
        while let Some(e) = self.manifest.entries.get(self.entry) {
            let Some((start, len)) = e.data_range(self.range) else {
                self.entry += 1;
                self.range = 0;
                continue;
            };
            let end = start + len;
            let offset = self.offset.unwrap_or(start);
            let take = (end - offset).min(room);
            if take > 0 {
                frame.push(Piece { entry: self.entry, offset, len: take });
            }
            room -= take;
            if offset + take < end {
                self.offset = Some(offset + take);
            } else {
                self.offset = None;
                self.range += 1;
            }
            if room == 0 {
                break;
            }
        }
        (!frame.is_empty()).then_some(frame)
    }
}

/// A run of one file's bytes inside a data frame (one buffer of that frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index of the file's entry.
    pub entry: usize,
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    /// Entry `i` of a manifest of `version`.
    fn entry(&mut self, i: u64, version: u16) -> Result<Entry, ManifestError> {
        let bad = |field| ManifestError::BadField { entry: i, field };
        let [kind, flags, r1, r2] = self.take()?;
        let kind = Kind::from_code(kind, version).ok_or(bad("kind"))?;
        let known_flags = match version {
            VERSION => FLAG_SPARSE | FLAG_OWNER | FLAG_INHERITS,
            VERSION_OWNERS => FLAG_SPARSE | FLAG_OWNER,
            VERSION_SPARSE => FLAG_SPARSE,
            _ => 0,
        };
        let sparse = flags & FLAG_SPARSE != 0;
        let inherits = flags & FLAG_INHERITS != 0;
        if [r1, r2] != [0; 2]
            || flags & !known_flags != 0
            || ((sparse || inherits) && kind != Kind::File)
        {
            return Err(bad("flags or reserved bytes"));
        }
        let mode = u32::from_le_bytes(self.take()?);
        let secs = i64::from_le_bytes(self.take()?);
        let nanos = u32::from_le_bytes(self.take()?);
        let path_len = u32::from_le_bytes(self.take()?) as usize;
        let size = u64::from_le_bytes(self.take()?);
        let target_len = u32::from_le_bytes(self.take()?) as usize;
        let extent_count = u32::from_le_bytes(self.take()?) as usize;
        let [uid, gid, major, minor, xattr_count, stored_count] = if version >= VERSION_OWNERS {
            [0; 6].map(|_| self.take().map(u32::from_le_bytes))
        } else {
            [0; 6].map(|_| Ok(0))
        };
        let (uid, gid, major, minor) = (uid?, gid?, major?, minor?);
        let xattr_count = xattr_count? as usize;
        let stored_count = stored_count? as usize;
        if stored_count != 0 && !inherits {
            return Err(bad("flags or reserved bytes"));
        }
        let owned = flags & FLAG_OWNER != 0;
        if !owned && (uid, gid) != (0, 0) {
            return Err(bad("owner (ids without the owner flag)"));
        }
        // u32::MAX is chown's "leave unchanged", never an id.
        if uid == u32::MAX || gid == u32::MAX {
            return Err(bad("owner (id 4294967295)"));
        }
        let device = matches!(kind, Kind::CharDevice | Kind::BlockDevice);
        if !device && (major, minor) != (0, 0) {
            return Err(bad("device numbers"));
        }
        if extent_count != 0 && !sparse {
            return Err(bad("extent count"));
        }
        if mode > 0o7777 || nanos >= 1_000_000_000 {
            return Err(bad("mode or mtime"));
        }
        if path_len > MAX_PATH || target_len > MAX_PATH {
            let path = String::from("(over 4096 bytes)");
            return Err(ManifestError::UnsafePath {
                entry: i,
                path,
                reason: "longer than 4096 bytes",
            });
        }
        let path = self.slice(path_len)?.to_vec();
        let target = self.slice(target_len)?.to_vec();
        let extents = if sparse { Some(self.extents(extent_count, size, i)?) } else { None };
        let xattrs = self.xattrs(xattr_count, i)?;
        let content = || extents.clone().unwrap_or_else(|| vec![(0, size)]);
        let stored = if inherits { Some(self.stored(stored_count, &content(), i)?) } else { None };
        if let Some(reason) = path_problem(&path) {
            let path = String::from_utf8_lossy(&path).into_owned();
            return Err(ManifestError::UnsafePath { entry: i, path, reason });
        }
        let consistent = match kind {
            Kind::File => target.is_empty(),
            Kind::Symlink => !target.is_empty() && !target.contains(&0) && size == 0,
            Kind::HardLink => path_problem(&target).is_none() && size == 0,
            Kind::Dir | Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                target.is_empty() && size == 0
            }
        };
        if !consistent {
            return Err(bad("size or target for its kind"));
        }
        Ok(Entry {
            kind,
            path,
            mode,
            mtime_sec: secs,
            mtime_nsec: nanos,
            size,
            target,
            extents,
            owner: owned.then_some(Owner { uid, gid }),
            device: device.then_some((major, minor)),
            xattrs,
            stored,
        })
    }

    /// An inheriting file's stored ranges: ascending, non-empty, not touching, each inside
    /// one of its content ranges, each end on the block grid or at that range's end.
    fn stored(
        &mut self,
        count: usize,
        content: &[(u64, u64)],
        entry: u64,
    ) -> Result<Vec<(u64, u64)>, ManifestError> {
        if count > self.bytes.len().saturating_sub(self.at) / 16 {
            return Err(ManifestError::Truncated { offset: self.bytes.len() });
        }
        let bad = ManifestError::BadField { entry, field: "stored ranges" };
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = u64::from_le_bytes(self.take()?);
            let len = u64::from_le_bytes(self.take()?);
            let end = offset.checked_add(len).ok_or_else(|| bad.clone())?;
            let after_previous = out.last().is_none_or(|&(o, l)| o + l < offset);
            let within = content.iter().find(|&&(o, l)| o <= offset && end <= o + l);
            let on_grid = within.is_some_and(|&(o, l)| {
                (offset % BLOCK_SIZE == 0 || offset == o) && (end % BLOCK_SIZE == 0 || end == o + l)
            });
            if len == 0 || !after_previous || !on_grid {
                return Err(bad);
            }
            out.push((offset, len));
        }
        Ok(out)
    }

    /// An entry's extended attributes: names 1 to 255 bytes without NUL, strictly
    /// ascending; values at most 64 KiB.
    fn xattrs(&mut self, count: usize, entry: u64) -> Result<Vec<Xattr>, ManifestError> {
        // Each attribute takes at least 9 bytes, which bounds the allocation.
        if count > self.bytes.len().saturating_sub(self.at) / 9 {
            return Err(ManifestError::Truncated { offset: self.bytes.len() });
        }
        let mut out: Vec<Xattr> = Vec::with_capacity(count);
        for _ in 0..count {
            let name_len = u32::from_le_bytes(self.take()?) as usize;
            let value_len = u32::from_le_bytes(self.take()?) as usize;
            if name_len == 0 || name_len > MAX_XATTR_NAME || value_len > MAX_XATTR_VALUE {
                return Err(ManifestError::BadField { entry, field: "xattr name or value length" });
            }
            let name = self.slice(name_len)?.to_vec();
            let value = self.slice(value_len)?.to_vec();
            if name.contains(&0) || out.last().is_some_and(|x| x.name >= name) {
                return Err(ManifestError::BadField {
                    entry,
                    field: "xattr names (NUL, or not strictly ascending)",
                });
            }
            out.push(Xattr { name, value });
        }
        Ok(out)
    }
}

impl<'a> Cursor<'a> {
    fn slice(&mut self, n: usize) -> Result<&'a [u8], ManifestError> {
        let end = self.at.checked_add(n).ok_or(ManifestError::Truncated { offset: self.at })?;
        let s = self.bytes.get(self.at..end).ok_or(ManifestError::Truncated { offset: self.at })?;
        self.at = end;
        Ok(s)
    }
    /// A sparse file's extents: ascending, non-empty, not touching, inside `size`.
    fn extents(
        &mut self,
        count: usize,
        size: u64,
        entry: u64,
    ) -> Result<Vec<(u64, u64)>, ManifestError> {
        // Each extent takes 16 bytes, which bounds the allocation.
        if count > self.bytes.len().saturating_sub(self.at) / 16 {
            return Err(ManifestError::Truncated { offset: self.bytes.len() });
        }
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = u64::from_le_bytes(self.take()?);
            let len = u64::from_le_bytes(self.take()?);
            let after_previous = out.last().is_none_or(|&(o, l)| o + l < offset);
            if len == 0 || offset.checked_add(len).is_none_or(|end| end > size) || !after_previous {
                return Err(ManifestError::BadField { entry, field: "data extents" });
            }
            out.push((offset, len));
        }
        Ok(out)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ManifestError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(N)?);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn entry(kind: Kind, path: &str, size: u64, target: &str) -> Entry {
        Entry {
            kind,
            path: path.into(),
            mode: 0o644,
            mtime_sec: -5,
            mtime_nsec: 7,
            size,
            target: target.into(),
            extents: None,
            ..Entry::default()
        }
    }

    /// The version 2 encoding (40-byte entries, no owners or xattrs), as older writers made it.
    fn encode_v2(m: &Manifest, version: u16) -> Vec<u8> {
        let mut out = b"CKMF".to_vec();
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&m.frame_size.to_le_bytes());
        out.extend_from_slice(&(m.entries.len() as u64).to_le_bytes());
        for e in &m.entries {
            let flags = u8::from(e.extents.is_some());
            out.extend_from_slice(&[e.kind.code(), flags, 0, 0]);
            out.extend_from_slice(&e.mode.to_le_bytes());
            out.extend_from_slice(&e.mtime_sec.to_le_bytes());
            out.extend_from_slice(&e.mtime_nsec.to_le_bytes());
            out.extend_from_slice(&u32::try_from(e.path.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&u32::try_from(e.target.len()).unwrap().to_le_bytes());
            let extents = e.extents.as_deref().unwrap_or_default();
            out.extend_from_slice(&u32::try_from(extents.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&e.path);
            out.extend_from_slice(&e.target);
            for (o, l) in extents {
                out.extend_from_slice(&o.to_le_bytes());
                out.extend_from_slice(&l.to_le_bytes());
            }
        }
        out
    }

    fn sample() -> Manifest {
        Manifest {
            frame_size: 10,
            entries: vec![
                entry(Kind::Dir, "d", 0, ""),
                entry(Kind::File, "d/a", 25, ""),
                entry(Kind::File, "d/empty", 0, ""),
                entry(Kind::Symlink, "d/link", 0, "../elsewhere"),
                entry(Kind::File, "b", 3, ""),
            ],
            parent: None,
        }
    }

    #[test]
    fn round_trips_and_lays_out_data() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        let frames = m.data_frames();
        let lens: Vec<Vec<(usize, u64, u64)>> =
            frames.iter().map(|f| f.iter().map(|p| (p.entry, p.offset, p.len)).collect()).collect();
        assert_eq!(lens, vec![vec![(1, 0, 10)], vec![(1, 10, 10)], vec![(1, 20, 5), (4, 0, 3)]]);
        assert_eq!(m.data_bytes(), 28);
    }

    #[test]
    fn every_truncation_and_every_bit_flip_is_an_error_or_a_safe_manifest() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                if let Ok(m) = Manifest::decode(&b) {
                    // Flips of lengths, times or modes can decode; paths stay safe.
                    assert!(m.entries.iter().all(|e| path_problem(&e.path).is_none()));
                }
            }
        }
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", "", "a\0b"] {
            let mut m = sample();
            m.entries[4].path = bad.into();
            let e = Manifest::decode(&m.encode()).unwrap_err();
            assert!(matches!(e, ManifestError::UnsafePath { entry: 4, .. }), "{bad:?}: {e}");
        }
        let mut m = sample();
        m.entries[4].path = vec![b'a'; MAX_PATH + 1];
        assert!(Manifest::decode(&m.encode()).is_err());
    }

    #[test]
    fn huge_claimed_counts_do_not_allocate() {
        let mut bytes = sample().encode();
        bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Manifest::decode(&bytes), Err(ManifestError::Truncated { .. })));
    }

    fn sparse_sample() -> Manifest {
        let mut m = sample();
        let mut e = entry(Kind::File, "disk.img", 1 << 30, "");
        e.extents = Some(vec![(4096, 8192), (1 << 20, 100), ((1 << 30) - 10, 10)]);
        m.entries.push(e);
        let mut empty = entry(Kind::File, "holes.img", 1 << 20, "");
        empty.extents = Some(Vec::new());
        m.entries.push(empty);
        m
    }

    #[test]
    fn sparse_files_round_trip_and_store_only_their_extents() {
        let m = sparse_sample();
        let back = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        let disk = back.entries.iter().find(|e| e.path == b"disk.img").unwrap();
        assert_eq!(disk.data_len(), 8192 + 100 + 10);
        let pieces: Vec<Piece> = back.data_frames().into_iter().flatten().collect();
        let disk_index = back.entries.iter().position(|e| e.path == b"disk.img").unwrap();
        let disk_pieces: Vec<(u64, u64)> =
            pieces.iter().filter(|p| p.entry == disk_index).map(|p| (p.offset, p.len)).collect();
        assert_eq!(disk_pieces.iter().map(|p| p.1).sum::<u64>(), 8302);
        assert!(disk_pieces.iter().all(|&(o, l)| {
            disk.extents.as_ref().unwrap().iter().any(|&(eo, el)| o >= eo && o + l <= eo + el)
        }));
    }

    #[test]
    fn version_1_and_2_manifests_still_decode() {
        let m = sample();
        assert_eq!(Manifest::decode(&encode_v2(&m, 1)).unwrap(), m);
        let sparse = sparse_sample();
        assert_eq!(Manifest::decode(&encode_v2(&sparse, 2)).unwrap(), sparse);
        // ... but a version 1 manifest has no sparse files, and neither has hard links.
        assert!(matches!(
            Manifest::decode(&encode_v2(&sparse, 1)),
            Err(ManifestError::BadField { .. })
        ));
        let mut linked = sample();
        linked.entries.push(Entry { target: b"b".to_vec(), ..entry(Kind::HardLink, "c", 0, "") });
        let err = Manifest::decode(&encode_v2(&linked, 2)).unwrap_err();
        assert!(matches!(err, ManifestError::BadField { field: "kind", .. }), "{err:?}");
    }

    fn full_sample() -> Manifest {
        let mut m = sparse_sample();
        for e in &mut m.entries {
            e.owner = Some(Owner { uid: 1000, gid: 100_000 });
        }
        m.entries[1].xattrs = vec![
            Xattr { name: b"system.posix_acl_access".to_vec(), value: vec![2, 0, 0, 0, 1, 0] },
            Xattr { name: b"user.a".to_vec(), value: Vec::new() },
            Xattr { name: b"user.b".to_vec(), value: vec![0xff; MAX_XATTR_VALUE] },
        ];
        m.entries.push(Entry { target: b"d/a".to_vec(), ..entry(Kind::HardLink, "d/a2", 0, "") });
        m.entries.push(entry(Kind::Fifo, "pipe", 0, ""));
        m.entries.push(Entry { device: Some((8, 1)), ..entry(Kind::BlockDevice, "sda1", 0, "") });
        m.entries.push(Entry { device: Some((1, 3)), ..entry(Kind::CharDevice, "null", 0, "") });
        m.entries.push(Entry { target: b"null".to_vec(), ..entry(Kind::HardLink, "null2", 0, "") });
        m
    }

    #[test]
    fn owners_links_devices_and_xattrs_round_trip() {
        let m = full_sample();
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(m.data_bytes(), Manifest::decode(&bytes).unwrap().data_bytes());
        for len in (0..bytes.len()).step_by(97) {
            assert!(Manifest::decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn hostile_v3_fields_are_refused() {
        let refused = |m: &Manifest, field_part: &str| {
            let err = Manifest::decode(&m.encode()).unwrap_err();
            assert!(err.to_string().contains(field_part), "{field_part}: {err}");
        };
        let link = |path: &str, target: &str| Entry {
            target: target.as_bytes().to_vec(),
            ..entry(Kind::HardLink, path, 0, "")
        };
        // Hard links to nothing, to a later entry, to a directory, to a link, to itself.
        for (at, target) in [(5, "nowhere"), (0, "b"), (5, "d"), (6, "c"), (5, "c")] {
            let mut m = sample();
            m.entries.push(link("c", "d/a"));
            m.entries.insert(at, link(if at == 6 { "e" } else { "c2" }, target));
            if at == 5 && target == "c" {
                m.entries.truncate(5);
                m.entries.push(link("c", "c"));
            }
            refused(&m, "hard link target");
        }
        let mut m = sample();
        m.entries[1].xattrs = vec![
            Xattr { name: b"user.b".to_vec(), value: vec![] },
            Xattr { name: b"user.a".to_vec(), value: vec![] },
        ];
        refused(&m, "xattr names");
        m.entries[1].xattrs.swap(0, 1);
        m.entries[1].xattrs[1].name = b"user.a".to_vec();
        refused(&m, "xattr names");
        m.entries[1].xattrs = vec![Xattr { name: Vec::new(), value: vec![] }];
        refused(&m, "xattr name or value length");
        m.entries[1].xattrs = vec![Xattr { name: vec![b'x'; 256], value: vec![] }];
        refused(&m, "xattr name or value length");
        m.entries[1].xattrs =
            vec![Xattr { name: b"user.a".to_vec(), value: vec![0; MAX_XATTR_VALUE + 1] }];
        refused(&m, "xattr name or value length");
        m.entries[1].xattrs = vec![Xattr { name: b"user\0a".to_vec(), value: vec![] }];
        refused(&m, "xattr names");
        let mut m = sample();
        m.entries[1].owner = Some(Owner { uid: u32::MAX, gid: 0 });
        refused(&m, "owner");
        let mut m = sample();
        m.entries[1].device = Some((1, 3));
        refused(&m, "device numbers");
        let mut m = sample();
        m.entries.push(entry(Kind::Fifo, "p", 5, ""));
        refused(&m, "size or target");
        // An xattr count far beyond the bytes present is a truncation, found before
        // allocating.
        let mut bytes = sample().encode();
        let at = HEADER_LEN + 56; // entry 0's xattr count
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Manifest::decode(&bytes), Err(ManifestError::Truncated { .. })));
        // Owner ids without the owner flag.
        let mut bytes = sample().encode();
        bytes[HEADER_LEN + 40] = 1;
        refused_bytes(&bytes, "owner");
    }

    fn refused_bytes(bytes: &[u8], field_part: &str) {
        let err = Manifest::decode(bytes).unwrap_err();
        assert!(err.to_string().contains(field_part), "{field_part}: {err}");
    }

    #[test]
    fn bad_extents_are_refused() {
        for extents in [
            vec![(0, 0)],             // empty
            vec![(10, 10), (20, 5)],  // touching
            vec![(10, 10), (15, 10)], // overlapping
            vec![(30, 10), (0, 5)],   // descending
            vec![(1 << 30, 1)],       // past the size
            vec![(u64::MAX, 2)],      // overflow
        ] {
            let mut m = sample();
            let mut e = entry(Kind::File, "x", 1 << 30, "");
            e.extents = Some(extents.clone());
            m.entries.push(e);
            let err = Manifest::decode(&m.encode()).unwrap_err();
            assert!(
                matches!(err, ManifestError::BadField { field: "data extents", .. }),
                "{extents:?}: {err:?}"
            );
        }
        // A count far beyond the bytes present is a truncation, found before allocating.
        let mut m = sample();
        let mut e = entry(Kind::File, "x", 1 << 30, "");
        e.extents = Some(vec![(0, 1)]);
        m.entries.push(e);
        let mut bytes = m.encode();
        let at = bytes.len() - 16 - 1 - 28; // the extent count, before the v3 ids and the path "x"
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Manifest::decode(&bytes), Err(ManifestError::Truncated { .. })));
        // Extents on a directory are refused.
        let mut m = sample();
        let mut d = entry(Kind::Dir, "d", 0, "");
        d.extents = Some(vec![(0, 1)]);
        m.entries.push(d);
        assert!(Manifest::decode(&m.encode()).is_err());
    }
    /// The eager packing the lazy iterator replaced, as the reference.
    fn reference_frames(m: &Manifest) -> Vec<Vec<Piece>> {
        let mut frames = Vec::new();
        let mut current = Vec::new();
        let mut room = m.frame_size;
        for (i, e) in m.entries.iter().enumerate() {
            for (start, len) in e.data_ranges() {
                let (mut offset, end) = (start, start + len);
                while offset < end {
                    let len = (end - offset).min(room);
                    current.push(Piece { entry: i, offset, len });
                    offset += len;
                    room -= len;
                    if room == 0 {
                        frames.push(std::mem::take(&mut current));
                        room = m.frame_size;
                    }
                }
            }
        }
        if !current.is_empty() {
            frames.push(current);
        }
        frames
    }

    #[test]
    fn lazy_frames_equal_the_eager_packing_and_their_count() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..300 {
            let mut entries = Vec::new();
            for i in 0..next(8) {
                let kind = [Kind::Dir, Kind::File, Kind::File, Kind::Symlink]
                    [usize::try_from(next(4)).unwrap()];
                let mut e =
                    entry(kind, &format!("e{i}"), 0, if kind == Kind::Symlink { "t" } else { "" });
                if kind == Kind::File {
                    e.size = next(5000);
                    if next(2) == 0 && e.size > 0 {
                        let mut at = 0;
                        let mut extents = Vec::new();
                        while at < e.size {
                            let gap = next(300);
                            let len = (1 + next(700)).min(e.size.saturating_sub(at + gap));
                            if len == 0 {
                                break;
                            }
                            extents.push((at + gap, len));
                            at += gap + len;
                        }
                        e.extents = Some(extents);
                    }
                }
                entries.push(e);
            }
            let m = Manifest { frame_size: 1 + next(3000), entries, parent: None };
            let lazy = m.data_frames();
            assert_eq!(lazy, reference_frames(&m), "round {round}: {m:?}");
            assert_eq!(lazy.len() as u64, m.data_frame_count(), "round {round}");
        }
    }

    #[test]
    fn hostile_totals_and_flags_are_refused() {
        // Two files whose sizes add past u64::MAX.
        let mut m = Manifest {
            frame_size: 1,
            entries: vec![entry(Kind::File, "a", 1 << 63, ""), entry(Kind::File, "b", 1 << 63, "")],
            parent: None,
        };
        let err = Manifest::decode(&m.encode()).unwrap_err();
        assert!(matches!(err, ManifestError::BadField { entry: 1, .. }), "{err:?}");
        // A terabyte in one-byte frames decodes (it is only a claim) but counts its frames
        // without building them, and the iterator yields them one at a time.
        m.entries.pop();
        m.entries[0].size = 1 << 40;
        let back = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(back.data_frame_count(), 1 << 40);
        assert_eq!(back.data_frames_iter().take(3).count(), 3);
        // A directory with the sparse flag.
        let mut bytes = Manifest {
            frame_size: 4096,
            entries: vec![entry(Kind::Dir, "d", 0, "")],
            parent: None,
        }
        .encode();
        bytes[HEADER_LEN + 1] = FLAG_SPARSE;
        let err = Manifest::decode(&bytes).unwrap_err();
        assert!(matches!(err, ManifestError::BadField { entry: 0, .. }), "{err:?}");
    }
}
