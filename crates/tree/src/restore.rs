//! Restoring a tree checkpoint, whole or in part.

use crate::attrs::{self, AttrPolicy, Target};
use crate::chain::Chain;
use crate::dest::{
    DIR_IN_THE_WAY, Dest, DirHandle, NewFile, TempFile, create_replacing, make_symlink,
    open_dir_file, open_node,
};
use crate::manifest::{Entry, Kind, Manifest, Piece, path_problem};
use crate::{TreeError, Warning, error::io_err};
use ckpt_frame_core::{Error as FormatError, FrameReader, Reader, Source};
use ckpt_io_backends::AlignedBuf;
use ckpt_parallel::{ParallelError, Parallelism, restore_frames_with};
use rustix::fs::{FileType, Mode};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Give entries their recorded numeric owner (tar's `--same-owner --numeric-owner`);
    /// by default only when running as root. setuid and setgid bits are restored only
    /// with the owner.
    pub same_owner: bool,
    /// Restore extended attributes and POSIX ACLs.
    pub xattrs: bool,
    /// Restore only these paths of the checkpoint (a directory with what it holds); empty
    /// for everything. Each must name an entry.
    pub paths: Vec<Vec<u8>>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self { same_owner: attrs::running_as_root(), xattrs: true, paths: Vec::new() }
    }
}

/// What a restore produced.
#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks restored.
    pub symlinks: u64,
    /// Hard links made.
    pub hard_links: u64,
    /// FIFOs and device nodes made.
    pub special_files: u64,
    /// File bytes restored.
    pub data_bytes: u64,
    /// Files and directories whose setuid or setgid bit was not restored, because their
    /// owner was not (the bits would grant the restoring user's privileges).
    pub privileges_dropped: u64,
    /// What could not be restored exactly (owners, attributes or device nodes the system
    /// refused).
    pub warnings: Vec<Warning>,
}

/// Pieces up to this length are decoded straight into one reused buffer and written in
/// 128 KiB writes (the fast path: LZ4 decodes into the buffer without a staging copy);
/// longer ones stream through the frame's own chunk buffer. Either way memory stays at
/// this bound per thread whatever length a manifest claims (the default frame is 4 MiB).
const DIRECT_PIECE_MAX: u64 = 8 << 20;

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
    buf: &mut AlignedBuf,
) -> Result<(), TreeError> {
    let whole = [(piece.offset, piece.len)];
    restore_piece_parts(frame, piece, file, path, buf, &whole, &|_, _| Ok(()))
}

/// Verifies and discards the frame's next buffer, which must be `piece` (of an entry not
/// being restored).
fn skip_piece<S: Source>(frame: &mut FrameReader<'_, S>, piece: &Piece) -> Result<(), TreeError> {
    let read = frame.read_each(|_, _: &[u8]| Ok::<(), TreeError>(()))?;
    if read == Some(piece.len) {
        Ok(())
    } else {
        Err(TreeError::Layout { what: "a data buffer's length differs from the manifest's" })
    }
}

/// Which entries a restore writes, and where: `place[i]` is the entry at whose path entry
/// `i`'s content goes (itself, or for a file restored only through one of its hard links,
/// that link), `None` when it is not restored.
fn select(manifest: &Manifest, paths: &[Vec<u8>]) -> Result<Vec<Option<usize>>, TreeError> {
    let n = manifest.entries.len();
    if paths.is_empty() {
        return Ok((0..n).map(Some).collect());
    }
    let mut wanted = Vec::with_capacity(paths.len());
    for p in paths {
        let mut p = p.as_slice();
        while let Some(rest) = p.strip_prefix(b"./") {
            p = rest;
        }
        while let Some(rest) = p.strip_suffix(b"/") {
            p = rest;
        }
        if let Some(reason) = path_problem(p) {
            let path = OsStr::from_bytes(p).into();
            return Err(TreeError::Refused { path, reason });
        }
        wanted.push(p);
    }
    let mut found = vec![false; wanted.len()];
    let mut place: Vec<Option<usize>> = Vec::with_capacity(n);
    for (i, e) in manifest.entries.iter().enumerate() {
        let mut chosen = false;
        for (w, hit) in wanted.iter().zip(found.iter_mut()) {
            let under = e
                .path
                .strip_prefix(*w)
                .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'/'));
            if under {
                *hit = true;
                chosen = true;
            }
        }
        place.push(chosen.then_some(i));
    }
    if let Some((w, _)) = wanted.iter().zip(&found).find(|(_, hit)| !**hit) {
        return Err(TreeError::NotInCheckpoint { path: OsStr::from_bytes(w).into() });
    }
    // A hard link chosen without the entry holding its inode's content: the first such
    // link receives the content, and later ones link to it.
    let by_path: HashMap<&[u8], usize> =
        manifest.entries.iter().enumerate().map(|(i, e)| (e.path.as_slice(), i)).collect();
    for (i, e) in manifest.entries.iter().enumerate() {
        if e.kind != Kind::HardLink || place.get(i).copied().flatten().is_none() {
            continue;
        }
        let Some(&t) = by_path.get(e.target.as_slice()) else { continue };
        if place.get(t).copied().flatten().is_none() {
            if let Some(slot) = place.get_mut(t) {
                *slot = Some(i);
            }
            if let Some(slot) = place.get_mut(i) {
                *slot = None;
            }
        }
    }
    Ok(place)
}

/// How [`Restorer::begin`] starts a file.
#[derive(Clone, Copy)]
enum FileStart {
    /// A new (unnamed where possible) file, open, for the caller to fill and publish.
    New,
    /// A named temporary file, closed, reopened by whoever restores its pieces (a file
    /// whose data spans frames restored on different threads).
    Named,
    /// Only its parent directories: a worker makes the file.
    ParentOnly,
}

/// A file [`Restorer::begin`] started.
enum Started {
    New(NewFile),
    Named(TempFile),
}

/// Gives a file whose bytes are all restored its size (the holes after its last data),
/// owner, mode, attributes and time, and publishes it as `name` in `parent`. Returns
/// whether setuid/setgid bits were dropped.
fn complete_file(
    new: NewFile,
    e: &Entry,
    shown: &Path,
    parent: &DirHandle,
    name: &[u8],
    policy: AttrPolicy,
    warnings: &mut Vec<Warning>,
) -> Result<bool, TreeError> {
    new.file().set_len(e.size).map_err(io_err(shown, "cannot size"))?;
    let inherited = parent.passes_on_acls();
    let dropped =
        attrs::apply(&attrs::fd_target(new.file()), e, shown, policy, inherited, warnings)?;
    new.publish(name)?;
    Ok(dropped)
}

/// One restore's destination and the work left for its end.
struct Restorer<'m> {
    manifest: &'m Manifest,
    place: Vec<Option<usize>>,
    by_path: HashMap<&'m [u8], usize>,
    policy: AttrPolicy,
    dest: Dest,
    summary: RestoreSummary,
    /// Directories restored, in manifest order, for their attributes at the end.
    dirs: Vec<usize>,
    /// Symlinks, FIFOs, devices and hard links, made once every file is in place.
    later: Vec<usize>,
}

impl<'m> Restorer<'m> {
    fn new(
        manifest: &'m Manifest,
        options: &RestoreOptions,
        dest: &Path,
    ) -> Result<Self, TreeError> {
        let place = select(manifest, &options.paths)?;
        let by_path =
            manifest.entries.iter().enumerate().map(|(i, e)| (e.path.as_slice(), i)).collect();
        Ok(Self {
            manifest,
            place,
            by_path,
            policy: AttrPolicy { same_owner: options.same_owner, xattrs: options.xattrs },
            dest: Dest::open(dest)?,
            summary: RestoreSummary::default(),
            dirs: Vec::new(),
            later: Vec::new(),
        })
    }

    /// The destination path of entry `i`, if it is restored.
    fn dest_path(&self, i: usize) -> Option<&'m [u8]> {
        let at = self.place.get(i).copied().flatten()?;
        self.manifest.entries.get(at).map(|e| e.path.as_slice())
    }

    /// Whether the data pieces of entry `i` are restored.
    fn restores_data(&self, i: usize) -> bool {
        self.dest_path(i).is_some()
    }

    /// Bytes of file content the restore makes, stored here or taken from parents.
    fn content_total(&self) -> u64 {
        let entries = self.manifest.entries.iter().enumerate();
        entries.filter(|(i, _)| self.restores_data(*i)).map(|(_, e)| e.content_len()).sum()
    }

    /// Bytes of file data the restore writes.
    fn data_total(&self) -> u64 {
        let entries = self.manifest.entries.iter().enumerate();
        entries.filter(|(i, _)| self.restores_data(*i)).map(|(_, e)| e.data_len()).sum()
    }

    /// Starts entry `i`: a directory is created, a file gets a temporary file to fill,
    /// the rest is left for [`Restorer::finish`] (their parents are created now).
    fn begin(&mut self, i: usize, files: FileStart) -> Result<Option<Started>, TreeError> {
        let (Some(path), Some(e)) = (self.dest_path(i), self.manifest.entries.get(i)) else {
            return Ok(None);
        };
        match e.kind {
            Kind::Dir => {
                self.dest.dir(path)?;
                self.dirs.push(i);
                Ok(None)
            }
            Kind::File => {
                let (parent, _) = self.dest.parent(path)?;
                match files {
                    FileStart::New => NewFile::create(&parent).map(|f| Some(Started::New(f))),
                    FileStart::Named => {
                        TempFile::create(&parent).map(|(t, _)| Some(Started::Named(t)))
                    }
                    FileStart::ParentOnly => Ok(None),
                }
            }
            _ => {
                self.dest.parent(path)?;
                self.later.push(i);
                Ok(None)
            }
        }
    }

    /// Completes and publishes file entry `i` (see [`complete_file`]).
    fn publish(&mut self, i: usize, new: NewFile) -> Result<(), TreeError> {
        let (Some(path), Some(e)) = (self.dest_path(i), self.manifest.entries.get(i)) else {
            return Err(TreeError::Layout { what: "a file restored that was not chosen" });
        };
        let (parent, name) = self.dest.parent(path)?;
        let shown = parent.path().join(OsStr::from_bytes(name));
        let dropped =
            complete_file(new, e, &shown, &parent, name, self.policy, &mut self.summary.warnings)?;
        self.summary.privileges_dropped += u64::from(dropped);
        self.summary.files += 1;
        Ok(())
    }

    /// Makes what waited for the files (special files and symlinks, then hard links, which
    /// may name any of them) and sets directories' attributes, deepest first, since
    /// restoring their contents changed their times and a read-only mode would have
    /// blocked it.
    fn finish(mut self) -> Result<RestoreSummary, TreeError> {
        let later = std::mem::take(&mut self.later);
        let (links, others): (Vec<usize>, Vec<usize>) = later
            .into_iter()
            .partition(|&i| self.manifest.entries.get(i).is_some_and(|e| e.kind == Kind::HardLink));
        for i in others.into_iter().chain(links) {
            self.make_later(i)?;
        }
        let dirs = std::mem::take(&mut self.dirs);
        for &i in dirs.iter().rev() {
            let (Some(path), Some(e)) = (self.dest_path(i), self.manifest.entries.get(i)) else {
                continue;
            };
            let (parent, name) = self.dest.parent(path)?;
            let file = open_dir_file(&parent, name)?;
            let shown = parent.path().join(OsStr::from_bytes(name));
            let dropped = attrs::apply(
                &attrs::fd_target(&file),
                e,
                &shown,
                self.policy,
                parent.passes_on_acls(),
                &mut self.summary.warnings,
            )?;
            self.summary.privileges_dropped += u64::from(dropped);
        }
        self.summary.dirs = dirs.len() as u64;
        Ok(self.summary)
    }

    fn make_later(&mut self, i: usize) -> Result<(), TreeError> {
        let (Some(path), Some(e)) = (self.dest_path(i), self.manifest.entries.get(i)) else {
            return Ok(());
        };
        let (parent, name) = self.dest.parent(path)?;
        let shown = parent.path().join(OsStr::from_bytes(name));
        match e.kind {
            Kind::Symlink => {
                make_symlink(&parent, name, &e.target)?;
                let target = Target::Symlink { dir: parent.fd(), name };
                attrs::apply(&target, e, &shown, self.policy, false, &mut self.summary.warnings)?;
                self.summary.symlinks += 1;
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                let (file_type, dev) = match (e.kind, e.device) {
                    (Kind::CharDevice, Some((major, minor))) => {
                        (FileType::CharacterDevice, rustix::fs::makedev(major, minor))
                    }
                    (Kind::BlockDevice, Some((major, minor))) => {
                        (FileType::BlockDevice, rustix::fs::makedev(major, minor))
                    }
                    _ => (FileType::Fifo, 0),
                };
                let create = |temp: &[u8]| {
                    rustix::fs::mknodat(
                        parent.fd(),
                        temp,
                        file_type,
                        Mode::from_raw_mode(0o600),
                        dev,
                    )
                };
                let (policy, warnings) = (self.policy, &mut self.summary.warnings);
                let inherited = parent.passes_on_acls();
                let mut prepare = |temp: &[u8]| -> Result<(), TreeError> {
                    let fd = open_node(&parent, temp, file_type)?;
                    attrs::apply(
                        &Target::Node(std::os::fd::AsFd::as_fd(&fd)),
                        e,
                        &shown,
                        policy,
                        inherited,
                        warnings,
                    )
                    .map(|_| ())
                };
                match create_replacing(&parent, name, DIR_IN_THE_WAY, &create, &mut prepare)? {
                    Ok(()) => self.summary.special_files += 1,
                    Err(errno) => self.summary.warnings.push(Warning::NotRestored {
                        path: shown,
                        what: e.kind.name().to_owned(),
                        reason: std::io::Error::from(errno).to_string(),
                    }),
                }
            }
            Kind::HardLink => {
                let at =
                    self.by_path.get(e.target.as_slice()).and_then(|&t| self.dest_path(t)).ok_or(
                        TreeError::Layout { what: "a hard link to an entry not restored" },
                    )?;
                let (target_dir, target_name) = self.dest.parent(at)?;
                let create = |temp: &[u8]| {
                    rustix::fs::linkat(
                        target_dir.fd(),
                        target_name,
                        parent.fd(),
                        temp,
                        rustix::fs::AtFlags::empty(),
                    )
                };
                create_replacing(&parent, name, DIR_IN_THE_WAY, &create, &mut |_| Ok(()))?
                    .map_err(|errno| TreeError::Io {
                        path: shown,
                        op: "cannot link",
                        source: errno.into(),
                    })?;
                self.summary.hard_links += 1;
            }
            Kind::Dir | Kind::File => {}
        }
        Ok(())
    }
}

/// Reads and decodes the manifest: frame 0, holding exactly one buffer.
fn read_manifest<S: Source>(f: &mut FrameReader<'_, S>) -> Result<(Manifest, Vec<u8>), TreeError> {
    let bytes = f.read_to_vec()?.ok_or(TreeError::Layout { what: "empty manifest frame" })?;
    if f.next_len()?.is_some() {
        return Err(TreeError::Layout { what: "manifest frame holds more than the manifest" });
    }
    Ok((Manifest::decode(&bytes).map_err(TreeError::Manifest)?, bytes))
}

/// The manifest version in a manifest's bytes (`None` if too short to hold one).
fn manifest_version(bytes: &[u8]) -> Option<u16> {
    let v = bytes.get(4..6)?;
    Some(u16::from_le_bytes([*v.first()?, *v.get(1)?]))
}

/// Frames a manifest's checkpoint holds besides its data frames: the manifest, and from
/// version 4 on the block table (the last frame).
fn extra_frames(manifest_bytes: &[u8]) -> u64 {
    if manifest_version(manifest_bytes).is_some_and(|v| v >= 4) { 2 } else { 1 }
}

/// Reads a block table frame: exactly one buffer.
fn read_table<S: Source>(f: &mut FrameReader<'_, S>) -> Result<Vec<u8>, TreeError> {
    let bytes = f.read_to_vec()?.ok_or(TreeError::Layout { what: "empty block table frame" })?;
    if f.next_len()?.is_some() {
        return Err(TreeError::Layout { what: "block table frame holds more than the table" });
    }
    Ok(bytes)
}

/// Reads, through the index, a tree checkpoint's manifest and (from manifest version 4
/// on) its block table's bytes, after checking the frames against the manifest's plan.
pub(crate) fn manifest_and_table<S: Source>(
    reader: &mut Reader<S>,
) -> Result<(Manifest, Option<Vec<u8>>), TreeError> {
    if reader.frame_count().unwrap_or(0) == 0 {
        return Err(TreeError::Layout { what: "no manifest frame" });
    }
    let (manifest, bytes) = {
        let mut f = reader.open_frame(0)?;
        let read = read_manifest(&mut f)?;
        f.close()?;
        read
    };
    check_frames(reader, &manifest, &bytes)?;
    let table = if extra_frames(&bytes) == 2 {
        let last = reader.frame_count().unwrap_or(0).saturating_sub(1);
        let mut f = reader.open_frame(last)?;
        let table = read_table(&mut f)?;
        f.close()?;
        Some(table)
    } else {
        None
    };
    Ok((manifest, table))
}

/// Reads the manifest from frame 0 of a checkpoint read from its start (a pipe, a pool's
/// published checkpoint), without its index: `None` when frame 0 holds no manifest.
///
/// # Errors
/// [`TreeError::Manifest`] for an invalid manifest, [`TreeError::Format`] for damage in
/// frame 0.
pub fn read_first_manifest<S: Source>(
    reader: &mut Reader<S>,
) -> Result<Option<Manifest>, TreeError> {
    let Some(mut f) = reader.next_frame()? else { return Ok(None) };
    let Some(bytes) = f.read_to_vec()? else { return Ok(None) };
    if !bytes.starts_with(b"CKMF") {
        return Ok(None);
    }
    Manifest::decode(&bytes).map(Some).map_err(TreeError::Manifest)
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
    check_frames(reader, &manifest, &bytes)?;
    Ok(Some(manifest))
}

/// The index's frames against the manifest's plan (count first: a hostile manifest may
/// claim billions of frames).
fn check_frames<S: Source>(
    reader: &Reader<S>,
    manifest: &Manifest,
    manifest_bytes: &[u8],
) -> Result<(), TreeError> {
    let extra = extra_frames(manifest_bytes);
    if reader.frame_count() != manifest.data_frame_count().checked_add(extra) {
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

/// Restores a tree checkpoint from `source` into `dest` (created if missing), reading it
/// once from start to end. Paths are checked (relative, no `..`, never through a symlink);
/// each file is written under a temporary name and appears under its own only once all
/// its bytes are restored and verified; symlinks, special files and hard links are made
/// after every file. Entries not chosen by [`RestoreOptions::paths`] are read and verified
/// but not written. `progress` gets the file bytes done so far and the total.
///
/// # Errors
/// [`TreeError::Format`] for damaged or truncated input, [`TreeError::Manifest`] for an
/// invalid manifest, [`TreeError::Refused`] for paths that would leave `dest`,
/// [`TreeError::NotInCheckpoint`] for a chosen path the checkpoint lacks,
/// [`TreeError::Io`] for the destination.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink};
/// use ckpt_tree::{CollectOptions, RestoreOptions, WriteOptions, collect, restore_checkpoint, write_checkpoint};
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir_all(dir.path().join("app/logs"))?;
/// std::fs::write(dir.path().join("app/logs/today"), b"started")?;
/// std::fs::write(dir.path().join("app/config"), b"x = 1")?;
/// let c = collect(&[dir.path().join("app")], &CollectOptions::new(1 << 20))?;
/// let options = WriteOptions { style: Style::Lz4, id: CheckpointId::from_bytes([2; 16]), threads: 1, strict: true };
/// let (sink, _) = write_checkpoint(VecSink::new(), &c, &options, &mut |_| {})?;
/// let bytes = sink.into_inner();
/// // Only `app/logs` comes back.
/// let out = dir.path().join("out");
/// let only_logs = RestoreOptions { paths: vec![b"app/logs".to_vec()], ..RestoreOptions::default() };
/// let summary = restore_checkpoint(SliceSource::new(&bytes), &out, &only_logs, &|_, _| {})?;
/// assert_eq!(summary.files, 1);
/// assert_eq!(std::fs::read(out.join("app/logs/today"))?, b"started");
/// assert!(!out.join("app/config").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn restore_checkpoint<S: Source>(
    source: S,
    dest: &Path,
    options: &RestoreOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RestoreSummary, TreeError> {
    let mut reader = Reader::new(source);
    let (manifest, manifest_bytes) = {
        let mut f = reader.next_frame()?.ok_or(TreeError::Layout { what: "no manifest frame" })?;
        let read = read_manifest(&mut f)?;
        f.close()?;
        read
    };
    if manifest.parent.is_some() {
        return Err(TreeError::NeedsParent);
    }
    let mut r = Restorer::new(&manifest, options, dest)?;
    let total = r.data_total();
    progress(0, total);
    // Lazily: a manifest may claim more frames than the checkpoint holds.
    let mut planned = manifest.data_frames_iter();
    let mut pieces: std::vec::IntoIter<Piece> = Vec::new().into_iter();
    let mut frame = None;
    let mut buf = AlignedBuf::new(0, 0);
    let mut done = 0;
    for (i, e) in manifest.entries.iter().enumerate() {
        let mut target = match r.begin(i, FileStart::New)? {
            Some(Started::New(new)) => Some(new),
            _ => None,
        };
        if e.kind != Kind::File {
            continue;
        }
        let mut restored = 0;
        while restored < e.data_len() {
            let Some(piece) = pieces.next() else {
                if let Some(f) = frame.take() {
                    FrameReader::close(f)?;
                }
                let next = planned.next();
                pieces = next
                    .ok_or(TreeError::Layout { what: "fewer data frames than files need" })?
                    .into_iter();
                let next = reader.next_frame()?;
                frame =
                    Some(next.ok_or(TreeError::Layout {
                        what: "checkpoint ends before the data does",
                    })?);
                continue;
            };
            if piece.entry != i {
                return Err(TreeError::Layout { what: "a data piece of another file" });
            }
            let f =
                frame.as_mut().ok_or(TreeError::Layout { what: "data piece outside a frame" })?;
            match &target {
                Some(new) => {
                    restore_piece(f, &piece, new.file(), &new.shown(), &mut buf)?;
                    done += piece.len;
                    progress(done, total);
                }
                None => skip_piece(f, &piece)?,
            }
            restored += piece.len;
        }
        if let Some(new) = target.take() {
            r.publish(i, new)?;
        }
    }
    if let Some(f) = frame.take() {
        FrameReader::close(f)?;
    }
    if planned.next().is_some() || pieces.next().is_some() {
        return Err(TreeError::Layout { what: "more data frames than the files need" });
    }
    if extra_frames(&manifest_bytes) == 2 {
        let mut f = reader
            .next_frame()?
            .ok_or(TreeError::Layout { what: "checkpoint ends before its block table" })?;
        let table = read_table(&mut f)?;
        f.close()?;
        crate::blocks::BlockTable::decode(&table, &manifest).map_err(TreeError::Manifest)?;
    }
    reader.finish()?;
    let mut summary = r.finish()?;
    summary.data_bytes = done;
    Ok(summary)
}

/// Restores a tree checkpoint held in a file (any source that can seek) with `threads`
/// workers, each opening its own source with `open` and decoding whole frames through the
/// index into its own buffer, then writing them into the files at their offsets. Only the
/// frames holding chosen entries are read. Files appear under their names only after every
/// frame is restored and checked, as with [`restore_checkpoint`], whose guarantees this
/// keeps; the result is the same. A checkpoint whose index cannot be read (cut short,
/// damaged end) is restored by [`restore_checkpoint`] instead, which restores every whole
/// file before the damage.
///
/// # Errors
/// As [`restore_checkpoint`]; with several failures, the one in the earliest frame.
pub fn restore_checkpoint_parallel<S, O>(
    open: O,
    dest: &Path,
    options: &RestoreOptions,
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
            return restore_checkpoint(open()?, dest, options, progress);
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
    check_frames(&reader, &manifest, &manifest_bytes)?;
    if manifest.parent.is_some() {
        return Err(TreeError::NeedsParent);
    }
    let data_frames = manifest.data_frames();
    drop(reader);
    let mut r = Restorer::new(&manifest, options, dest)?;
    let total = r.data_total();
    progress(0, total);
    let spans = frame_spans(&data_frames, manifest.entries.len());
    let spanning = r.start_all(&spans)?;
    let restores_data = |i: usize| r.restores_data(i);
    // Frame 0 (the manifest, read again to check it did not change) and every data frame
    // holding a piece restored.
    let whole = options.paths.is_empty();
    let frames: Vec<u64> =
        std::iter::once(0)
            .filter(|_| whole)
            .chain((1u64..).zip(&data_frames).filter_map(|(i, pieces)| {
                pieces.iter().any(|p| restores_data(p.entry)).then_some(i)
            }))
            .collect();
    let views = std::sync::Mutex::new(Vec::new());
    let root = r.dest.worker();
    let shared = Shared {
        r: &r,
        spans: &spans,
        spanning: &spanning,
        done: AtomicU64::new(0),
        made: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        warnings: std::sync::Mutex::new(Vec::new()),
        progress,
        total,
    };
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
            static BUF: std::cell::RefCell<AlignedBuf> = std::cell::RefCell::new(AlignedBuf::new(0, 0));
        }
        let mut view = views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_else(|| root.worker());
        let result = BUF.with_borrow_mut(|buf| shared.restore_frame(frame, pieces, &mut view, buf));
        views.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(view);
        result
    };
    restore_frames_with(open, &frames, Parallelism::threads(threads), visit).map_err(
        |e| match e {
            ParallelError::Callback { error, .. } => error,
            ParallelError::Frame { error, .. } | ParallelError::Open(error) => error.into(),
            ParallelError::Pool(reason) => TreeError::Threads { reason },
            _ => TreeError::Threads { reason: e.to_string() },
        },
    )?;
    let (done, made, dropped, mut warnings) = shared.into_counts();
    r.summary.files += made;
    r.summary.privileges_dropped += dropped;
    r.summary.warnings.append(&mut warnings);
    r.finish_spanning(spanning, done)
}

/// For each entry, the first and last data frame (counted from 0) holding its data.
fn frame_spans(data_frames: &[Vec<Piece>], entries: usize) -> Vec<Option<(usize, usize)>> {
    let mut span: Vec<Option<(usize, usize)>> = vec![None; entries];
    for (k, pieces) in data_frames.iter().enumerate() {
        for p in pieces {
            if let Some(s) = span.get_mut(p.entry) {
                *s = Some(s.map_or((k, k), |(first, _)| (first, k)));
            }
        }
    }
    span
}

fn within_one_frame(spans: &[Option<(usize, usize)>], i: usize) -> bool {
    spans.get(i).copied().flatten().is_some_and(|(a, b)| a == b)
}

impl Restorer<'_> {
    /// Starts every entry before the frames are restored in parallel. A file inside one
    /// frame is made whole by the worker restoring that frame (created, filled, published:
    /// no name exists before it is complete, and no other thread is involved); a file
    /// spanning frames gets a named temporary file each worker reopens, returned here to
    /// be published once every frame is restored; a file without data is completed now.
    fn start_all(
        &mut self,
        spans: &[Option<(usize, usize)>],
    ) -> Result<Vec<Option<TempFile>>, TreeError> {
        let mut spanning = Vec::with_capacity(self.manifest.entries.len());
        for (i, e) in self.manifest.entries.iter().enumerate() {
            let start = match (e.kind, spans.get(i).copied().flatten()) {
                (Kind::File, None) => FileStart::New,
                (Kind::File, Some(_)) if within_one_frame(spans, i) => FileStart::ParentOnly,
                _ => FileStart::Named,
            };
            // Closed at once: a restore may hold thousands of files pending.
            spanning.push(match self.begin(i, start)? {
                Some(Started::Named(temp)) => Some(temp),
                Some(Started::New(new)) => {
                    self.publish(i, new)?;
                    None
                }
                None => None,
            });
        }
        Ok(spanning)
    }

    /// Publishes the files [`Restorer::start_all`] left to the workers, once all of them
    /// are filled, and finishes the restore.
    fn finish_spanning(
        mut self,
        spanning: Vec<Option<TempFile>>,
        data_bytes: u64,
    ) -> Result<RestoreSummary, TreeError> {
        for (i, temp) in spanning.into_iter().enumerate() {
            if let Some(temp) = temp {
                let file = temp.reopen()?;
                self.publish(i, NewFile::named(temp, file))?;
            }
        }
        let mut summary = self.finish()?;
        summary.data_bytes = data_bytes;
        Ok(summary)
    }
}

/// What the workers of a parallel restore share.
struct Shared<'a, 'm> {
    r: &'a Restorer<'m>,
    spans: &'a [Option<(usize, usize)>],
    spanning: &'a [Option<TempFile>],
    done: AtomicU64,
    made: AtomicU64,
    dropped: AtomicU64,
    warnings: std::sync::Mutex<Vec<Warning>>,
    progress: &'a (dyn Fn(u64, u64) + Sync),
    total: u64,
}

impl Shared<'_, '_> {
    /// Restores the pieces of one data frame: into a spanning file's temporary file, into
    /// files made and published here, or read and verified only (entries not chosen).
    fn restore_frame<S: Source>(
        &self,
        frame: &mut FrameReader<'_, S>,
        pieces: &[Piece],
        view: &mut Dest,
        buf: &mut AlignedBuf,
    ) -> Result<(), TreeError> {
        let mut current: Option<(usize, NewFile)> = None;
        for p in pieces {
            if let Some(temp) = self.spanning.get(p.entry).and_then(Option::as_ref) {
                let file = temp.reopen()?;
                restore_piece(frame, p, &file, &temp.path(), buf)?;
            } else if self.r.restores_data(p.entry) && within_one_frame(self.spans, p.entry) {
                let (Some(path), Some(e)) =
                    (self.r.dest_path(p.entry), self.r.manifest.entries.get(p.entry))
                else {
                    return Err(TreeError::Layout { what: "a file restored that was not chosen" });
                };
                let (parent, name) = view.parent(path)?;
                if current.as_ref().is_none_or(|(i, _)| *i != p.entry) {
                    current = Some((p.entry, NewFile::create(&parent)?));
                }
                let Some((_, new)) = current.as_ref() else { continue };
                restore_piece(frame, p, new.file(), &new.shown(), buf)?;
                if e.data_end() == Some(p.offset + p.len) {
                    let Some((_, new)) = current.take() else { continue };
                    self.complete(new, e, &parent, name)?;
                }
            } else {
                skip_piece(frame, p)?;
                continue;
            }
            (self.progress)(self.done.fetch_add(p.len, Ordering::Relaxed) + p.len, self.total);
        }
        Ok(())
    }

    fn complete(
        &self,
        new: NewFile,
        e: &Entry,
        parent: &DirHandle,
        name: &[u8],
    ) -> Result<(), TreeError> {
        let shown = parent.path().join(OsStr::from_bytes(name));
        let mut warned = Vec::new();
        let lost = complete_file(new, e, &shown, parent, name, self.r.policy, &mut warned)?;
        self.dropped.fetch_add(u64::from(lost), Ordering::Relaxed);
        self.made.fetch_add(1, Ordering::Relaxed);
        if !warned.is_empty() {
            self.warnings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .append(&mut warned);
        }
        Ok(())
    }

    /// Bytes restored, files made, privilege bits dropped, warnings.
    fn into_counts(self) -> (u64, u64, u64, Vec<Warning>) {
        let warnings =
            self.warnings.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.done.into_inner(), self.made.into_inner(), self.dropped.into_inner(), warnings)
    }
}

/// Restores the newest checkpoint of `chain` into `dest`: every file block comes from the
/// newest link that stores it ([`Chain::owners`], resolved and checked before anything is
/// created), each link's frames are read once on `threads` workers (only the frames that
/// supply something) with every chunk checked as usual, and files appear under their names
/// only once every link is restored. A link whose frames fail a check is named as the
/// damaged parent of its child.
///
/// Links are written oldest first, each a supplying piece whole (within the newest file's
/// data ranges): the newer links then overwrite what they own. Writing only the owned
/// ranges instead cut a parent's pieces into thousands of small writes, which contend for
/// the file's lock (a 10%-changed chain restored at 2x a full restore); the bytes that end
/// up in the file are the same, since the newest link storing a block writes it last.
///
/// # Errors
/// As [`restore_checkpoint_parallel`], and [`TreeError::Chain`] for a link that lacks a
/// block its child inherits or fails its checks.
pub fn restore_chain(
    chain: &Chain,
    dest: &Path,
    options: &RestoreOptions,
    threads: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RestoreSummary, TreeError> {
    let supplies = chain.owners()?;
    let target = chain.links.first().ok_or(TreeError::Layout { what: "empty chain" })?;
    let manifest = &target.manifest;
    let mut r = Restorer::new(manifest, options, dest)?;
    let total = r.content_total();
    progress(0, total);
    // Every file with data may take blocks from several links: a named temporary file
    // that each link's workers reopen.
    let spans: Vec<Option<(usize, usize)>> = manifest
        .entries
        .iter()
        .map(|e| (e.kind == Kind::File && e.content_len() > 0).then_some((0, 1)))
        .collect();
    let spanning = r.start_all(&spans)?;
    let done = AtomicU64::new(0);
    let content: Vec<Vec<(u64, u64)>> =
        manifest.entries.iter().map(crate::manifest::Entry::content_ranges).collect();
    for (k, (link, supply)) in chain.links.iter().zip(&supplies).enumerate().rev() {
        let wanted = |entry: usize| {
            supply
                .get(entry)
                .and_then(Option::as_ref)
                .filter(|s| r.restores_data(s.entry) && !s.ranges.is_empty())
        };
        let data_frames = link.manifest.data_frames();
        let frames: Vec<u64> = (1u64..)
            .zip(&data_frames)
            .filter_map(|(i, pieces)| pieces.iter().any(|p| wanted(p.entry).is_some()).then_some(i))
            .collect();
        if frames.is_empty() {
            continue;
        }
        let visit =
            |frame: &mut FrameReader<'_, ckpt_io_backends::InputSource>| -> Result<(), TreeError> {
                let pieces = frame
                    .index()
                    .checked_sub(1)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| data_frames.get(i))
                    .ok_or(TreeError::Layout { what: "a frame outside the link's data" })?;
                thread_local! {
                    static CHAIN_BUF: std::cell::RefCell<AlignedBuf> = std::cell::RefCell::new(AlignedBuf::new(0, 0));
                }
                CHAIN_BUF.with_borrow_mut(|buf| {
                    for p in pieces {
                        let Some(s) = wanted(p.entry) else {
                            skip_piece(frame, p)?;
                            continue;
                        };
                        let owned = crate::chain::parts_within(&s.ranges, p.offset, p.len);
                        let data = content.get(s.entry).map_or(&[][..], Vec::as_slice);
                        let parts = crate::chain::parts_within(data, p.offset, p.len);
                        let Some(temp) = spanning.get(s.entry).and_then(Option::as_ref) else {
                            skip_piece(frame, p)?;
                            continue;
                        };
                        let file = temp.reopen()?;
                        // Only the blocks this link owns must match the newest table; the
                        // rest is overwritten by a newer link.
                        let check = |offset: u64, bytes: &[u8]| {
                            check_owned(target, &owned, s.entry, offset, bytes).map_err(
                                |(path, block)| TreeError::Chain {
                                    child: target.path.clone(),
                                    parent: link.path.clone(),
                                    problem: crate::chain::ChainProblem::BlockDiffers {
                                        path,
                                        block,
                                    },
                                },
                            )
                        };
                        restore_piece_parts(frame, p, &file, &temp.path(), buf, &parts, &check)?;
                        let n: u64 = owned.iter().map(|x| x.1).sum();
                        progress(done.fetch_add(n, Ordering::Relaxed) + n, total);
                    }
                    Ok(())
                })
            };
        let open = || {
            link.source().map_err(|e| FormatError::Io {
                offset: 0,
                error: std::io::Error::other(e.to_string()).into(),
            })
        };
        let restored = restore_frames_with(open, &frames, Parallelism::threads(threads), visit)
            .map_err(|e| match e {
                ParallelError::Callback { error, .. } => error,
                ParallelError::Frame { error, .. } | ParallelError::Open(error) => error.into(),
                ParallelError::Pool(reason) => TreeError::Threads { reason },
                _ => TreeError::Threads { reason: e.to_string() },
            });
        restored.map_err(|e| chain.blame(k, e))?;
    }
    r.finish_spanning(spanning, done.into_inner())
}

/// Checks the blocks of `entry` that lie in `owned` (ranges of the file, ascending) and
/// whole inside `bytes` (file bytes at `offset`) against the newest checkpoint's table;
/// returns the path and block of the first that differs.
fn check_owned(
    target: &crate::chain::Link,
    owned: &[(u64, u64)],
    entry: usize,
    offset: u64,
    bytes: &[u8],
) -> Result<(), (String, u64)> {
    for (o, l) in crate::chain::parts_within(owned, offset, bytes.len() as u64) {
        let from = usize::try_from(o - offset).unwrap_or(usize::MAX);
        let len = usize::try_from(l).unwrap_or(usize::MAX);
        let mine = bytes.get(from..).and_then(|b| b.get(..len)).unwrap_or_default();
        check_blocks(&target.table, &target.manifest, entry, o, mine)?;
    }
    Ok(())
}

/// Sees the bytes of a part before they are written ([`restore_piece_parts`]).
type PartCheck<'a> = dyn Fn(u64, &[u8]) -> Result<(), TreeError> + 'a;

/// Checks the blocks of entry `entry` lying whole inside `bytes` (file bytes at `offset`)
/// against the hashes `table` records; returns the path and block of the first that differs.
fn check_blocks(
    table: &crate::blocks::BlockTable,
    manifest: &Manifest,
    entry: usize,
    offset: u64,
    bytes: &[u8],
) -> Result<(), (String, u64)> {
    let Some(e) = manifest.entries.get(entry) else { return Ok(()) };
    let block = crate::manifest::BLOCK_SIZE;
    let end = offset + bytes.len() as u64;
    let mut j = offset.div_ceil(block);
    loop {
        let (s, t) = crate::blocks::block_range(e.size, j);
        if s >= t || t > end {
            return Ok(());
        }
        let from = usize::try_from(s - offset).unwrap_or(usize::MAX);
        let to = usize::try_from(t - offset).unwrap_or(usize::MAX);
        let Some(piece) = bytes.get(from..to) else { return Ok(()) };
        if table.hash(entry, j) != Some(ckpt_frame_core::checksum(piece)) {
            return Err((String::from_utf8_lossy(&e.path).into_owned(), j));
        }
        j += 1;
    }
}

/// Restores the parts of the frame's next buffer (which must be `piece`) listed in
/// `parts` (file offsets and lengths inside the piece, ascending) into `file`; the rest is
/// read and verified only. `check` sees each part's bytes and file offset before they are
/// written (whole when the piece fits [`DIRECT_PIECE_MAX`], else in the frame's pieces).
fn restore_piece_parts<S: Source>(
    frame: &mut FrameReader<'_, S>,
    piece: &Piece,
    file: &File,
    path: &Path,
    buf: &mut AlignedBuf,
    parts: &[(u64, u64)],
    check: &PartCheck<'_>,
) -> Result<(), TreeError> {
    if frame.next_len()? != Some(piece.len) {
        return Err(TreeError::Layout {
            what: "a data buffer's length differs from the manifest's",
        });
    }
    if piece.len <= DIRECT_PIECE_MAX {
        // On a cache line (AlignedBuf's least alignment): the kernel copies out of memory
        // 16 bytes past one, where large `malloc` blocks start, about four times slower.
        let bytes = buf.prefix_mut(usize::try_from(piece.len).unwrap_or(0));
        frame.read_into(bytes)?;
        for &(o, l) in parts {
            let at = usize::try_from(o - piece.offset).unwrap_or(usize::MAX);
            let part = bytes
                .get(at..at.saturating_add(usize::try_from(l).unwrap_or(usize::MAX)))
                .ok_or(TreeError::Layout { what: "a supplied range outside its piece" })?;
            check(o, part)?;
            write_in_pieces(file, part, o).map_err(io_err(path, "cannot write"))?;
        }
        return Ok(());
    }
    let read = frame.read_each(|at, bytes: &[u8]| -> Result<(), TreeError> {
        let start = piece.offset + at;
        for (o, l) in crate::chain::parts_within(parts, start, bytes.len() as u64) {
            let from = usize::try_from(o - start).unwrap_or(usize::MAX);
            let part = bytes
                .get(from..from.saturating_add(usize::try_from(l).unwrap_or(usize::MAX)))
                .unwrap_or_default();
            check(o, part)?;
            file.write_all_at(part, o).map_err(io_err(path, "cannot write"))?;
        }
        Ok(())
    })?;
    if read == Some(piece.len) {
        Ok(())
    } else {
        Err(TreeError::Layout { what: "a data buffer's length differs from the manifest's" })
    }
}
