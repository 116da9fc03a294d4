//! The manifest: what a tree checkpoint holds (frame 0, one buffer).
//!
//! Layout (all integers little-endian), version 2:
//!
//! ```text
//! header (24 bytes): magic "CKMF" | version u16 = 2 | reserved u16 = 0
//!                    | frame_size u64 | entry_count u64
//! entry (40 bytes + path + target + extents):
//!     kind u8 (0 directory, 1 file, 2 symlink) | flags u8 (bit 0: sparse file)
//!     | reserved [u8; 2] = 0 | mode u32 | mtime_sec i64 | mtime_nsec u32 | path_len u32
//!     | size u64 | target_len u32 | extent_count u32 | path bytes | target bytes
//!     | extent_count x (offset u64 | len u64)
//! ```
//! A sparse file stores only its data extents (ascending, non-empty, not touching, inside
//! `size`; none for an all-hole file): its data in the frames is those extents' bytes, and
//! restore recreates the holes. Other entries have flags 0 and no extents (a file's data is
//! then `0..size`). Version 1, the same without flags and extents, is still read.
//! Paths are relative, `/`-separated, without empty, `.` or `..` components or NUL bytes,
//! at most 4096 bytes; a symlink's target is stored verbatim (it is data, never followed by
//! restore). `size` is a file's length (0 for the other kinds). The data of all files
//! follows in later frames, in manifest order, cut into frames of `frame_size` bytes.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fmt;

const MAGIC: [u8; 4] = *b"CKMF";
const VERSION: u16 = 2;
/// The older version still read: no sparse files.
const VERSION_DENSE: u16 = 1;
const FLAG_SPARSE: u8 = 1;
const HEADER_LEN: usize = 24;
const ENTRY_FIXED_LEN: usize = 40;
/// Longest path or symlink target accepted (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;
/// Largest frame size a writer uses and a reader accepts: restore holds a frame's worth of
/// pieces in its plan, and `write` a frame in memory.
pub const MAX_FRAME_SIZE: u64 = 1 << 30;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (stored so that empty ones come back).
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

/// One path in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A symlink's target; empty otherwise.
    pub target: Vec<u8>,
    /// A sparse file's data extents as (offset, length); `None` when all of `0..size` is
    /// stored.
    pub extents: Option<Vec<(u64, u64)>>,
}

impl Entry {
    /// The ranges of the file stored in the checkpoint, as (offset, length).
    pub fn data_ranges(&self) -> Vec<(u64, u64)> {
        match (&self.extents, self.kind) {
            (Some(x), _) => x.clone(),
            (None, Kind::File) if self.size > 0 => vec![(0, self.size)],
            _ => Vec::new(),
        }
    }

    /// Range `i` of [`Entry::data_ranges`], without building the list.
    pub fn data_range(&self, i: usize) -> Option<(u64, u64)> {
        match (&self.extents, self.kind) {
            (Some(x), _) => x.get(i).copied(),
            (None, Kind::File) if self.size > 0 && i == 0 => Some((0, self.size)),
            _ => None,
        }
    }

    /// Bytes of the file stored in the checkpoint.
    pub fn data_len(&self) -> u64 {
        match &self.extents {
            Some(x) => x.iter().fold(0u64, |total, r| total.saturating_add(r.1)),
            None if self.kind == Kind::File => self.size,
            None => 0,
        }
    }
}

/// A decoded manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Bytes of file data per data frame (the last frame may hold less).
    pub frame_size: u64,
    /// The entries, directories before what they contain.
    pub entries: Vec<Entry>,
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
                write!(f, "manifest version {v} is not supported (this build reads 1 and 2)")
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

/// Two entries with one path: which one a restore keeps would be an accident of its order.
fn refuse_duplicates(entries: &[Entry]) -> Result<(), ManifestError> {
    let mut seen: std::collections::HashMap<&[u8], u64> =
        std::collections::HashMap::with_capacity(entries.len());
    for (i, e) in (0u64..).zip(entries) {
        if let Some(&first) = seen.get(e.path.as_slice()) {
            let path = String::from_utf8_lossy(&e.path).into_owned();
            return Err(ManifestError::DuplicatePath { entry: i, first, path });
        }
        seen.insert(&e.path, i);
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
    /// Encodes the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.entries.len() * (ENTRY_FIXED_LEN + 32));
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.frame_size.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            let kind: u8 = match e.kind {
                Kind::Dir => 0,
                Kind::File => 1,
                Kind::Symlink => 2,
            };
            let flags = if e.extents.is_some() { FLAG_SPARSE } else { 0 };
            out.extend_from_slice(&[kind, flags, 0, 0]);
            out.extend_from_slice(&e.mode.to_le_bytes());
            out.extend_from_slice(&e.mtime_sec.to_le_bytes());
            out.extend_from_slice(&e.mtime_nsec.to_le_bytes());
            out.extend_from_slice(&u32::try_from(e.path.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&u32::try_from(e.target.len()).unwrap_or(u32::MAX).to_le_bytes());
            let extents = e.extents.as_deref().unwrap_or_default();
            out.extend_from_slice(&u32::try_from(extents.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(&e.path);
            out.extend_from_slice(&e.target);
            for (offset, len) in extents {
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
            }
        }
        out
    }

    /// Decodes and validates a manifest: every path must be safe to restore.
    ///
    /// # Errors
    /// A [`ManifestError`] naming the entry and field.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut r = Cursor { bytes, at: 0 };
        if r.take::<4>()? != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let version = u16::from_le_bytes(r.take()?);
        if version != VERSION && version != VERSION_DENSE {
            return Err(ManifestError::Version(version));
        }
        if r.take::<2>()? != [0, 0] {
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
        // Each entry takes at least ENTRY_FIXED_LEN bytes, which bounds the allocation.
        let room = (bytes.len().saturating_sub(HEADER_LEN) / ENTRY_FIXED_LEN) as u64;
        if count > room {
            return Err(ManifestError::Truncated { offset: bytes.len() });
        }
        let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut total = 0u64;
        for i in 0..count {
            let [kind, flags, r1, r2] = r.take()?;
            let kind = match kind {
                0 => Kind::Dir,
                1 => Kind::File,
                2 => Kind::Symlink,
                _ => return Err(ManifestError::BadField { entry: i, field: "kind" }),
            };
            let sparse = flags == FLAG_SPARSE && version == VERSION && kind == Kind::File;
            if [r1, r2] != [0; 2] || (flags != 0 && !sparse) {
                return Err(ManifestError::BadField { entry: i, field: "flags or reserved bytes" });
            }
            let mode = u32::from_le_bytes(r.take()?);
            let secs = i64::from_le_bytes(r.take()?);
            let nanos = u32::from_le_bytes(r.take()?);
            let path_len = u32::from_le_bytes(r.take()?) as usize;
            let file_size = u64::from_le_bytes(r.take()?);
            let target_len = u32::from_le_bytes(r.take()?) as usize;
            let extent_count = u32::from_le_bytes(r.take()?) as usize;
            if extent_count != 0 && !(sparse && kind == Kind::File) {
                return Err(ManifestError::BadField { entry: i, field: "extent count" });
            }
            if mode > 0o7777 || nanos >= 1_000_000_000 {
                return Err(ManifestError::BadField { entry: i, field: "mode or mtime" });
            }
            if path_len > MAX_PATH || target_len > MAX_PATH {
                let path = String::from("(over 4096 bytes)");
                return Err(ManifestError::UnsafePath {
                    entry: i,
                    path,
                    reason: "longer than 4096 bytes",
                });
            }
            let path = r.slice(path_len)?.to_vec();
            let target = r.slice(target_len)?.to_vec();
            let extents = if sparse { Some(r.extents(extent_count, file_size, i)?) } else { None };
            if let Some(reason) = path_problem(&path) {
                let path = String::from_utf8_lossy(&path).into_owned();
                return Err(ManifestError::UnsafePath { entry: i, path, reason });
            }
            let consistent = match kind {
                Kind::File => target.is_empty(),
                Kind::Dir => target.is_empty() && file_size == 0,
                Kind::Symlink => !target.is_empty() && !target.contains(&0) && file_size == 0,
            };
            if !consistent {
                return Err(ManifestError::BadField {
                    entry: i,
                    field: "size or target for its kind",
                });
            }
            let entry = Entry {
                kind,
                path,
                mode,
                mtime_sec: secs,
                mtime_nsec: nanos,
                size: file_size,
                target,
                extents,
            };
            total = total
                .checked_add(entry.data_len())
                .ok_or(ManifestError::BadField { entry: i, field: "size (the total overflows)" })?;
            entries.push(entry);
        }
        if r.at != bytes.len() {
            return Err(ManifestError::TrailingBytes { offset: r.at });
        }
        refuse_duplicates(&entries)?;
        Ok(Self { frame_size, entries })
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
        }
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
    fn version_1_manifests_still_decode() {
        let m = sample();
        let mut bytes = m.encode();
        bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        // ... but a version 1 manifest has no sparse files.
        let mut sparse = sparse_sample().encode();
        sparse[4..6].copy_from_slice(&1u16.to_le_bytes());
        assert!(matches!(Manifest::decode(&sparse), Err(ManifestError::BadField { .. })));
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
        let at = bytes.len() - 16 - 1 - 4; // the extent count, before the path "x"
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
            let m = Manifest { frame_size: 1 + next(3000), entries };
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
        let mut bytes =
            Manifest { frame_size: 4096, entries: vec![entry(Kind::Dir, "d", 0, "")] }.encode();
        bytes[HEADER_LEN + 1] = FLAG_SPARSE;
        let err = Manifest::decode(&bytes).unwrap_err();
        assert!(matches!(err, ManifestError::BadField { entry: 0, .. }), "{err:?}");
    }
}
