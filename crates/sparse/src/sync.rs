//! Sync of one file to a target that may hold an older version, over any pair of byte
//! streams, as `docs/sparse-protocol.md` specifies: [`send`] on the source's side,
//! [`receive`] on the target's, [`sync_local`] and [`sync_remote`] to connect them.
//!
//! The receiver updates the target in place, under a durable dirty marker
//! (`TARGET.ckpt-sync`): the marker exists from before the first change until the new
//! content is fsynced, so an interrupted sync is never taken for a finished one, and the
//! next sync (which always compares every block as it is on disk) redoes the work. A new
//! target is written under a temporary name and renamed into place at the commit.

use crate::digest::{
    ABSENT, HOLE, Side, block_digests, block_digests_with_progress, coarse_digests,
};
use crate::proto::{
    self, HelloFlags, LEVEL_BLOCK, LEVEL_SUB_BLOCK, MAX_HASHES, Message, ProtoError, Role,
    error_code,
};
use crate::{BlockReader, ReadMode};
use crate::{Interval, SparseError, data_layout, punch_hole};
use ckpt_io_backends::durable::{self, ReplaceStep};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Block sizes of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// Coarse block size `B` (hashes sent for every block): a power of two, 4 KiB to 64 MiB.
    pub block_size: u32,
    /// Sub-block size `b` (hashes sent only inside differing blocks; the unit of change).
    pub sub_block_size: u32,
    /// How the sender reads its source: [`ReadMode::Direct`] keeps a large image from
    /// filling the page cache (buffered where the file system refuses `O_DIRECT`).
    pub read_mode: ReadMode,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self { block_size: 1 << 20, sub_block_size: 4096, read_mode: ReadMode::Buffered }
    }
}

/// What a sync did (the sender's view; the receiver's after its commit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The file's size.
    pub size: u64,
    /// Bytes of data sent (`Data` messages).
    pub bytes_sent: u64,
    /// Sub-blocks that differed and were sent as data or holes.
    pub blocks_changed: u64,
    /// Coarse blocks that differed.
    pub coarse_changed: u64,
    /// The receiver found an unfinished earlier sync (its dirty marker) and this one redid it.
    pub redone: bool,
}

/// What a sync is doing, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPhase {
    /// Reading and hashing the source's data: `done` of `total` bytes of data extents.
    Hashing,
    /// Sending the changed data: `done` of `total` bytes.
    Sending,
}

/// A progress callback: `(phase, done, total)` in bytes.
pub type SyncProgress<'a> = &'a mut dyn FnMut(SyncPhase, u64, u64);

/// A failed sync.
#[derive(Debug)]
#[non_exhaustive]
pub enum SyncError {
    /// A file operation failed.
    File(SparseError),
    /// The stream broke or carried an invalid message.
    Proto(ProtoError),
    /// The peer reported an error.
    Peer {
        /// Its code (`proto::error_code`).
        code: u16,
        /// Its text.
        message: String,
    },
    /// The peer broke the conversation's rules.
    Protocol(String),
    /// The target committed different content than the source holds.
    Mismatch {
        /// The source's size and digest.
        expected: (u64, u64),
        /// The target's.
        found: (u64, u64),
    },
    /// Block sizes that are not powers of two from 4 KiB to 64 MiB with the sub-block no
    /// larger than the block.
    BlockSizes {
        /// The coarse block size.
        block: u32,
        /// The sub-block size.
        sub: u32,
    },
    /// Another sync holds the target.
    Busy {
        /// The target.
        target: PathBuf,
    },
    /// The remote command could not be run or failed.
    Remote(String),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(e) => write!(f, "{e}"),
            Self::Proto(e) => write!(f, "sync stream: {e}"),
            Self::Peer { code, message } => write!(f, "the peer failed (code {code}): {message}"),
            Self::Protocol(what) => write!(f, "protocol violation: {what}"),
            Self::Mismatch { expected, found } => write!(
                f,
                "the target committed {} bytes with digest {:#018x}, but the source has {} bytes with digest {:#018x} (did the source change during the sync?)",
                found.0, found.1, expected.0, expected.1
            ),
            Self::BlockSizes { block, sub } => write!(
                f,
                "block size {block} and sub-block size {sub} refused: both must be powers of two from 4096 to 64 MiB, the sub-block no larger"
            ),
            Self::Busy { target } => {
                write!(f, "another sync is updating {} (it holds its lock)", target.display())
            }
            Self::Remote(what) => write!(f, "remote receiver: {what}"),
        }
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::File(e) => Some(e),
            Self::Proto(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SparseError> for SyncError {
    fn from(e: SparseError) -> Self {
        Self::File(e)
    }
}

impl From<ProtoError> for SyncError {
    fn from(e: ProtoError) -> Self {
        Self::Proto(e)
    }
}

impl SyncError {
    fn code(&self) -> u16 {
        match self {
            Self::File(_) => error_code::IO,
            Self::Mismatch { .. } => error_code::MISMATCH,
            Self::BlockSizes { .. } => error_code::BLOCK_SIZE,
            Self::Busy { .. } => error_code::BUSY,
            _ => error_code::PROTOCOL,
        }
    }
}

fn violation(what: impl Into<String>) -> SyncError {
    SyncError::Protocol(what.into())
}

fn io_err(
    path: &Path,
    op: &'static str,
    offset: Option<u64>,
) -> impl FnOnce(std::io::Error) -> SyncError {
    let to_sparse = SparseError::io(path, op, offset);
    move |source| SyncError::File(to_sparse(source))
}

/// Reads the next message; the end of the stream is an error here.
fn next<R: Read>(rx: &mut R) -> Result<Message, SyncError> {
    match proto::read_message(rx)? {
        Some(Message::Error { code, message }) => Err(SyncError::Peer { code, message }),
        Some(m) => Ok(m),
        None => Err(violation("the peer closed the stream in the middle of the sync")),
    }
}

/// Sends `Error` for `e` (best effort: the stream may be what broke) and returns `e`.
fn fail<W: Write>(tx: &mut W, e: SyncError) -> SyncError {
    if !matches!(e, SyncError::Peer { .. } | SyncError::Proto(ProtoError::Io { .. })) {
        let message: String =
            e.to_string().chars().take(proto::MAX_ERROR_MESSAGE_LEN / 4).collect();
        let _ = proto::write_message(tx, &Message::Error { code: e.code(), message });
        let _ = tx.flush();
    }
    e
}

fn check_sizes(block: u32, sub: u32) -> Result<(), SyncError> {
    let ok = |s: u32| {
        s.is_power_of_two() && (proto::MIN_BLOCK_SIZE..=proto::MAX_BLOCK_SIZE).contains(&s)
    };
    if ok(block) && ok(sub) && sub <= block {
        Ok(())
    } else {
        Err(SyncError::BlockSizes { block, sub })
    }
}

/// Sends `hashes[first..]` for the given block indices (ascending, in runs) in `Hashes`
/// messages of at most `MAX_HASHES`.
fn send_hashes<W: Write>(
    tx: &mut W,
    level: u8,
    block_size: u32,
    hashes: &[u64],
    ranges: &[(u64, u64)],
) -> Result<(), SyncError> {
    let mut pending: Option<(u64, Vec<u64>)> = None;
    for &(start, end) in ranges {
        for i in start..end {
            let h = usize::try_from(i).ok().and_then(|i| hashes.get(i)).copied().unwrap_or(HOLE);
            match &mut pending {
                Some((first, list))
                    if *first + list.len() as u64 == i && list.len() < MAX_HASHES as usize =>
                {
                    list.push(h);
                }
                _ => {
                    if let Some((first_block, hashes)) = pending.take() {
                        proto::write_message(
                            tx,
                            &Message::Hashes { level, first_block, block_size, hashes },
                        )?;
                    }
                    pending = Some((i, vec![h]));
                }
            }
        }
    }
    if let Some((first_block, hashes)) = pending {
        proto::write_message(tx, &Message::Hashes { level, first_block, block_size, hashes })?;
    }
    tx.flush().map_err(|e| SyncError::Proto(ProtoError::from(e)))?;
    Ok(())
}

/// Reads `Want` messages of `level` up to the empty one; checks the indices ascend and stay
/// below `limit`.
fn read_wants<R: Read>(
    rx: &mut R,
    level: u8,
    mut allowed: impl FnMut(u64) -> bool,
) -> Result<Vec<u64>, SyncError> {
    let mut wanted: Vec<u64> = Vec::new();
    loop {
        match next(rx)? {
            Message::Want { level: l, blocks } if l == level => {
                if blocks.is_empty() {
                    return Ok(wanted);
                }
                for b in blocks {
                    if wanted.last().is_some_and(|&last| b <= last) || !allowed(b) {
                        return Err(violation(format!(
                            "wanted block {b} at level {level} is out of order or was never offered"
                        )));
                    }
                    wanted.push(b);
                }
            }
            other => {
                return Err(violation(format!(
                    "expected Want at level {level}, got {:?}",
                    other.kind()
                )));
            }
        }
    }
}

fn send_wants<W: Write>(tx: &mut W, level: u8, wanted: &[u64]) -> Result<(), SyncError> {
    for chunk in wanted.chunks(proto::MAX_WANT as usize) {
        proto::write_message(tx, &Message::Want { level, blocks: chunk.to_vec() })?;
    }
    proto::write_message(tx, &Message::Want { level, blocks: Vec::new() })?;
    tx.flush().map_err(|e| SyncError::Proto(ProtoError::from(e)))?;
    Ok(())
}

/// The commit digest of a file of `size` bytes whose sub-block hashes (on the sender's
/// rule: all-zero sub-blocks are `HOLE`) are `subs`: xxh3-64 of `size` and the hashes, all
/// `u64le`. Equal for two files exactly when their sizes and contents are (up to
/// collisions), without hashing the zeros of holes.
fn commit_digest(size: u64, subs: &[u64]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&size.to_le_bytes());
    for chunk in subs.chunks(8192) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|d| d.to_le_bytes()).collect();
        hasher.update(&bytes);
    }
    hasher.digest()
}

/// The size and commit digest of the file as it is on disk now: reads only its data
/// extents.
fn file_commit_digest(file: &File, path: &Path, sub: u64) -> Result<(u64, u64), SyncError> {
    let layout = data_layout(file, path)?;
    let subs = block_digests(file, path, &layout, sub, Side::Sender)?;
    Ok((layout.size, commit_digest(layout.size, &subs)))
}

/// Syncs `src` to the receiver at the other end of `input`/`output` (the sender's side of
/// the conversation). Succeeds only when the receiver committed exactly the source's size
/// and content digest.
///
/// # Errors
/// [`SyncError`]: the source cannot be read, the stream broke, the receiver refused or
/// failed, or the committed content differs from the source.
pub fn send<R: Read, W: Write>(
    src: &Path,
    input: R,
    output: W,
    opts: &SyncOptions,
) -> Result<SyncStats, SyncError> {
    send_with_progress(src, input, output, opts, &mut |_, _, _| {})
}

/// [`send`], reporting progress: hashing the source, then sending the changed data.
///
/// # Errors
/// As [`send`].
pub fn send_with_progress<R: Read, W: Write>(
    src: &Path,
    input: R,
    output: W,
    opts: &SyncOptions,
    progress: SyncProgress<'_>,
) -> Result<SyncStats, SyncError> {
    let mut rx = BufReader::with_capacity(1 << 20, input);
    let mut tx = BufWriter::with_capacity(1 << 20, output);
    send_inner(src, &mut rx, &mut tx, *opts, progress).map_err(|e| fail(&mut tx, e))
}

fn send_inner<R: Read, W: Write>(
    src: &Path,
    rx: &mut R,
    tx: &mut W,
    opts: SyncOptions,
    progress: SyncProgress<'_>,
) -> Result<SyncStats, SyncError> {
    let (block, sub) = (opts.block_size, opts.sub_block_size);
    check_sizes(block, sub)?;
    let mut reader = BlockReader::open(src, opts.read_mode)?;
    let layout = data_layout(reader.file(), src)?;
    let n = layout.size;
    let data_total = layout.data.total_len();
    let subs = block_digests_with_progress(
        &mut reader,
        &layout,
        u64::from(sub),
        Side::Sender,
        &mut |done| {
            progress(SyncPhase::Hashing, done, data_total);
        },
    )?;
    let per = usize::try_from(block / sub).unwrap_or(1);
    let coarse = coarse_digests(&subs, per);
    proto::write_message(
        tx,
        &Message::Hello {
            version: proto::PROTOCOL_VERSION,
            role: Role::Sender,
            block_size: block,
            sub_block_size: sub,
            file_size: n,
            flags: HelloFlags::empty(),
        },
    )?;
    tx.flush().map_err(|e| SyncError::Proto(ProtoError::from(e)))?;
    let redone = match next(rx)? {
        Message::Hello { role: Role::Receiver, block_size, sub_block_size, flags, .. }
            if block_size == block && sub_block_size == sub =>
        {
            flags.contains(HelloFlags::DIRTY)
        }
        other => {
            return Err(violation(format!(
                "expected the receiver's Hello with the same block sizes, got {other:?}"
            )));
        }
    };
    let count = coarse.len() as u64;
    send_hashes(tx, LEVEL_BLOCK, block, &coarse, &[(0, count)])?;
    let wanted = read_wants(rx, LEVEL_BLOCK, |b| b < count)?;
    let nsub = subs.len() as u64;
    let per64 = per as u64;
    let ranges: Vec<(u64, u64)> =
        wanted.iter().map(|&i| (i * per64, ((i + 1) * per64).min(nsub))).collect();
    send_hashes(tx, LEVEL_SUB_BLOCK, sub, &subs, &ranges)?;
    // Wants ascend, and so do the ranges offered: one pass over both.
    let mut range_at = 0;
    let offered = |j: u64| {
        while ranges.get(range_at).is_some_and(|&(_, end)| end <= j) {
            range_at += 1;
        }
        ranges.get(range_at).is_some_and(|&(start, end)| (start..end).contains(&j))
    };
    let changed = read_wants(rx, LEVEL_SUB_BLOCK, offered)?;
    proto::write_message(tx, &Message::Truncate { size: n })?;
    let mut source = Source { reader: &mut reader, size: n, subs: &subs, sub };
    let bytes_sent = send_changes(tx, &mut source, &changed, progress)?;
    let blocks_changed = changed.len() as u64;
    proto::write_message(tx, &Message::Done { bytes_sent, blocks_changed })?;
    tx.flush().map_err(|e| SyncError::Proto(ProtoError::from(e)))?;
    // The source as hashed at the start: a block changed since then and sent makes the
    // target differ from this, and the sync fails rather than pass a mix.
    let expected = (n, commit_digest(n, &subs));
    match next(rx)? {
        Message::Committed { size, digest } if (size, digest) == expected => Ok(SyncStats {
            size: n,
            bytes_sent,
            blocks_changed,
            coarse_changed: wanted.len() as u64,
            redone,
        }),
        Message::Committed { size, digest } => {
            Err(SyncError::Mismatch { expected, found: (size, digest) })
        }
        other => Err(violation(format!("expected Committed, got {:?}", other.kind()))),
    }
}

/// The sender's source: its reader, size and sub-block hashes.
struct Source<'a> {
    reader: &'a mut BlockReader,
    size: u64,
    subs: &'a [u64],
    sub: u32,
}

/// Sends the `changed` sub-blocks (ascending) as `Data` and `Hole` messages, adjacent ones
/// of the same kind merged. Returns the data bytes sent.
fn send_changes<W: Write>(
    tx: &mut W,
    source: &mut Source<'_>,
    changed: &[u64],
    progress: SyncProgress<'_>,
) -> Result<u64, SyncError> {
    let (n, subs, sub) = (source.size, source.subs, source.sub);
    let sub64 = u64::from(sub);
    let send_total: u64 = changed
        .iter()
        .filter(|&&j| {
            subs.get(usize::try_from(j).unwrap_or(usize::MAX)).is_some_and(|&d| d != HOLE)
        })
        .map(|&j| ((j + 1) * sub64).min(n).saturating_sub(j * sub64))
        .sum();
    progress(SyncPhase::Sending, 0, send_total);
    let mut bytes_sent = 0u64;
    let mut i = 0;
    while let Some(&first) = changed.get(i) {
        // A run of adjacent changed sub-blocks of the same kind (hole or data).
        let hole = subs.get(usize::try_from(first).unwrap_or(usize::MAX)) == Some(&HOLE);
        let mut last = first;
        let max_run = u64::from(proto::MAX_DATA_LEN / 16 / sub).max(1);
        while let Some(&j) = changed.get(i + 1) {
            let same = (subs.get(usize::try_from(j).unwrap_or(usize::MAX)) == Some(&HOLE)) == hole;
            if j != last + 1 || !same || (!hole && j - first >= max_run) {
                break;
            }
            last = j;
            i += 1;
        }
        i += 1;
        let start = first * sub64;
        let end = ((last + 1) * sub64).min(n);
        if hole {
            proto::write_message(tx, &Message::Hole { offset: start, len: end - start })?;
        } else {
            let len = usize::try_from(end - start).unwrap_or(0);
            let bytes = source.reader.read_at(start, len)?.to_vec();
            bytes_sent += bytes.len() as u64;
            proto::write_message(tx, &Message::Data { offset: start, bytes })?;
            progress(SyncPhase::Sending, bytes_sent, send_total);
        }
    }
    Ok(bytes_sent)
}

/// Removes the temporary files (`.NAME.ckpt-sync-new.PID`) of first syncs to `dst` that
/// died: those no live sync holds locked. Best effort: a file that cannot be examined stays.
fn remove_stale_new_targets(dst: &Path, prefix: &std::ffi::OsStr) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = fs::read_dir(durable::parent_dir(dst)) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let Ok(f) = File::open(&path) else { continue };
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The dirty marker of `dst`: `DST.ckpt-sync`.
pub fn marker_path(dst: &Path) -> PathBuf {
    let mut name = dst.as_os_str().to_owned();
    name.push(".ckpt-sync");
    PathBuf::from(name)
}

fn fsync_dir(path: &Path) -> Result<(), SyncError> {
    let dir = durable::parent_dir(path);
    durable::sync_dir(dir).map_err(io_err(dir, "fsync the directory", None))
}

/// Receives a sync into `dst` from the sender at the other end of `input`/`output` (the
/// receiver's side). The target is changed only under its dirty marker and committed
/// (fsynced, marker removed) only after `Done` checked out.
///
/// # Errors
/// [`SyncError`]: the target cannot be read or written, the stream broke or broke the
/// protocol, or the sender reported an error. The marker then stays.
pub fn receive<R: Read, W: Write>(dst: &Path, input: R, output: W) -> Result<SyncStats, SyncError> {
    let mut rx = BufReader::with_capacity(1 << 20, input);
    let mut tx = BufWriter::with_capacity(1 << 20, output);
    receive_inner(dst, &mut rx, &mut tx).map_err(|e| fail(&mut tx, e))
}

#[allow(clippy::too_many_lines)]
fn receive_inner<R: Read, W: Write>(
    dst: &Path,
    rx: &mut R,
    tx: &mut W,
) -> Result<SyncStats, SyncError> {
    let (block, sub, n) = match next(rx)? {
        Message::Hello { role: Role::Sender, block_size, sub_block_size, file_size, .. } => {
            (block_size, sub_block_size, file_size)
        }
        other => {
            return Err(violation(format!("expected the sender's Hello, got {:?}", other.kind())));
        }
    };
    // A refusal goes back as `Error` BLOCK_SIZE (see `fail`), the only message sent.
    check_sizes(block, sub)?;
    let marker = marker_path(dst);
    let redone = marker.exists();
    let existing = match File::open(dst) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(dst, "open", None)(e)),
    };
    // One sync at a time per target: an exclusive advisory lock on the target, held (with
    // `existing`) until this function returns. A target that does not exist yet is written
    // under a private temporary name, so concurrent first syncs cannot mix.
    if let Some(f) = &existing {
        match rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(SyncError::Busy { target: dst.to_path_buf() });
            }
            Err(e) => return Err(io_err(dst, "lock", None)(e.into())),
        }
    }
    let (m, subs) = match &existing {
        Some(f) => {
            let layout = data_layout(f, dst)?;
            (layout.size, block_digests(f, dst, &layout, u64::from(sub), Side::Receiver)?)
        }
        None => (0, Vec::new()),
    };
    let flags = if redone { HelloFlags::DIRTY } else { HelloFlags::empty() };
    proto::write_message(
        tx,
        &Message::Hello {
            version: proto::PROTOCOL_VERSION,
            role: Role::Receiver,
            block_size: block,
            sub_block_size: sub,
            file_size: m,
            flags,
        },
    )?;
    tx.flush().map_err(|e| SyncError::Proto(ProtoError::from(e)))?;

    let per = u64::from(block / sub);
    let count = n.div_ceil(u64::from(block));
    let nsub = n.div_ceil(u64::from(sub));
    let own_sub =
        |j: u64| usize::try_from(j).ok().and_then(|j| subs.get(j)).copied().unwrap_or(ABSENT);
    let own_coarse = |i: u64| {
        let s: Vec<u64> = (i * per..((i + 1) * per).min(nsub)).map(own_sub).collect();
        if s.contains(&ABSENT) {
            ABSENT
        } else {
            coarse_digests(&s, s.len()).first().copied().unwrap_or(HOLE)
        }
    };
    let mut wanted = Vec::new();
    let mut expect = 0u64;
    while expect < count {
        match next(rx)? {
            Message::Hashes { level: LEVEL_BLOCK, first_block, block_size, hashes }
                if first_block == expect && block_size == block && !hashes.is_empty() =>
            {
                for (k, h) in hashes.iter().enumerate() {
                    let i = first_block + k as u64;
                    if i >= count {
                        return Err(violation("more block hashes than the file has blocks"));
                    }
                    if *h != own_coarse(i) {
                        wanted.push(i);
                    }
                }
                expect += hashes.len() as u64;
            }
            other => {
                return Err(violation(format!(
                    "expected block hashes from block {expect}, got {:?}",
                    other.kind()
                )));
            }
        }
    }
    send_wants(tx, LEVEL_BLOCK, &wanted)?;
    let mut offered: Vec<u64> =
        wanted.iter().flat_map(|&i| i * per..((i + 1) * per).min(nsub)).collect();
    offered.reverse();
    let mut changed = Vec::new();
    while let Some(&want_next) = offered.last() {
        match next(rx)? {
            Message::Hashes { level: LEVEL_SUB_BLOCK, first_block, block_size, hashes }
                if first_block == want_next && block_size == sub =>
            {
                for (k, h) in hashes.iter().enumerate() {
                    let j = first_block + k as u64;
                    if offered.pop() != Some(j) {
                        return Err(violation(format!("sub-block hash {j} was not expected")));
                    }
                    if *h != own_sub(j) {
                        changed.push(j);
                    }
                }
            }
            other => {
                return Err(violation(format!(
                    "expected sub-block hashes from {want_next}, got {:?}",
                    other.kind()
                )));
            }
        }
    }
    send_wants(tx, LEVEL_SUB_BLOCK, &changed)?;

    // Phase 5: the marker is durable before the first change.
    File::create(&marker).and_then(|f| f.sync_all()).map_err(io_err(
        &marker,
        "create the dirty marker",
        None,
    ))?;
    fsync_dir(&marker)?;
    let (target, temp) = if existing.is_some() {
        let f = OpenOptions::new().write(true).open(dst);
        (f.map_err(io_err(dst, "open for writing", None))?, None)
    } else {
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(dst.file_name().unwrap_or_default());
        prefix.push(".ckpt-sync-new.");
        remove_stale_new_targets(dst, &prefix);
        let mut name = prefix;
        name.push(std::process::id().to_string());
        let tmp = durable::parent_dir(dst).join(name);
        let f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp);
        let f = f.map_err(io_err(&tmp, "create", None))?;
        // Held until this sync ends: a later first sync takes a temporary file it can lock
        // as one left by a sync that died, and removes it.
        let _ = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        (f, Some(tmp))
    };
    let written_to = temp.clone().unwrap_or_else(|| dst.to_path_buf());
    let result = apply_changes(rx, &target, &written_to, n, u64::from(sub), &changed);
    let (bytes_sent, blocks_changed) = match result {
        Ok(v) => v,
        Err(e) => {
            if let Some(t) = &temp {
                let _ = fs::remove_file(t);
            }
            return Err(e);
        }
    };
    // Commit: data durable under the target's name, then the marker goes.
    if let Some(t) = &temp {
        durable::replace(&target, t, dst).map_err(|e| match e.step {
            ReplaceStep::SyncFile => io_err(&written_to, "fsync", None)(e.source),
            ReplaceStep::Rename => io_err(dst, "rename the new target to", None)(e.source),
            ReplaceStep::SyncDir => {
                io_err(durable::parent_dir(dst), "fsync the directory", None)(e.source)
            }
        })?;
    } else {
        target.sync_all().map_err(io_err(&written_to, "fsync", None))?;
    }
    fs::remove_file(&marker).map_err(io_err(&marker, "remove the dirty marker", None))?;
    fsync_dir(&marker)?;
    let committed = File::open(dst).map_err(io_err(dst, "open", None))?;
    let (size, digest) = file_commit_digest(&committed, dst, u64::from(sub))?;
    proto::write_message(tx, &Message::Committed { size, digest })?;
    tx.flush().map_err(|e| SyncError::Proto(ProtoError::from(e)))?;
    match proto::read_message(rx)? {
        None => Ok(SyncStats {
            size,
            bytes_sent,
            blocks_changed,
            coarse_changed: wanted.len() as u64,
            redone,
        }),
        Some(_) => Err(violation("the sender sent more after Committed")),
    }
}

/// Applies `Truncate`, then `Data`/`Hole` up to `Done`; checks every range lies in wanted
/// sub-blocks and `Done`'s counters. Returns (data bytes, sub-blocks changed).
fn apply_changes<R: Read>(
    rx: &mut R,
    target: &File,
    path: &Path,
    n: u64,
    sub: u64,
    changed: &[u64],
) -> Result<(u64, u64), SyncError> {
    match next(rx)? {
        Message::Truncate { size } if size == n => {
            target.set_len(n).map_err(io_err(path, "set the length of", None))?;
        }
        other => return Err(violation(format!("expected Truncate to {n}, got {other:?}"))),
    }
    let covered = |offset: u64, len: u64| {
        let (first, last) = (offset / sub, (offset + len).div_ceil(sub));
        offset.is_multiple_of(sub)
            && offset.checked_add(len).is_some_and(|e| e <= n)
            && (first..last).all(|j| changed.binary_search(&j).is_ok())
    };
    let mut data_bytes = 0u64;
    let mut touched = 0u64;
    loop {
        match next(rx)? {
            Message::Data { offset, bytes } => {
                let len = bytes.len() as u64;
                if !covered(offset, len) {
                    return Err(violation(format!(
                        "data at {offset}+{len} lies outside the wanted sub-blocks"
                    )));
                }
                for piece in bytes.chunks(128 * 1024).scan(offset, |at, p| {
                    let here = *at;
                    *at += p.len() as u64;
                    Some((here, p))
                }) {
                    target.write_all_at(piece.1, piece.0).map_err(io_err(
                        path,
                        "write",
                        Some(piece.0),
                    ))?;
                }
                data_bytes += len;
                touched += len.div_ceil(sub);
            }
            Message::Hole { offset, len } => {
                if !covered(offset, len) {
                    return Err(violation(format!(
                        "hole at {offset}+{len} lies outside the wanted sub-blocks"
                    )));
                }
                // A hole that ends the file is punched to the end of its last block: ext4
                // only zeroes a partly covered block, which would stay allocated.
                let end = if offset + len == n { n.next_multiple_of(sub) } else { offset + len };
                punch_hole(target, path, Interval { start: offset, end })?;
                touched += len.div_ceil(sub);
            }
            Message::Done { bytes_sent, blocks_changed } => {
                let want = changed.len() as u64;
                if bytes_sent != data_bytes || blocks_changed != want || touched != want {
                    return Err(SyncError::Protocol(format!(
                        "Done says {bytes_sent} bytes / {blocks_changed} blocks; received {data_bytes} bytes covering {touched} of {want} wanted blocks"
                    )));
                }
                return Ok((data_bytes, want));
            }
            other => {
                return Err(violation(format!(
                    "expected Data, Hole or Done, got {:?}",
                    other.kind()
                )));
            }
        }
    }
}

/// Syncs `src` to `dst` on this machine: the receiver runs on a thread, connected by pipes,
/// speaking the same protocol as a remote one.
///
/// # Errors
/// As [`send`] and [`receive`]; the receiver's error when it failed first.
pub fn sync_local(src: &Path, dst: &Path, opts: &SyncOptions) -> Result<SyncStats, SyncError> {
    sync_local_with_progress(src, dst, opts, &mut |_, _, _| {})
}

/// [`sync_local`], reporting the sender's progress.
///
/// # Errors
/// As [`sync_local`].
pub fn sync_local_with_progress(
    src: &Path,
    dst: &Path,
    opts: &SyncOptions,
    progress: SyncProgress<'_>,
) -> Result<SyncStats, SyncError> {
    let pipe = |what| {
        std::io::pipe()
            .map_err(|e| SyncError::Remote(format!("cannot create a pipe for {what}: {e}")))
    };
    let (to_receiver_r, to_receiver_w) = pipe("the sender")?;
    let (to_sender_r, to_sender_w) = pipe("the receiver")?;
    widen_pipe(&to_receiver_w);
    let dst_owned = dst.to_path_buf();
    let receiver = std::thread::spawn(move || receive(&dst_owned, to_receiver_r, to_sender_w));
    let sent = send_with_progress(src, to_sender_r, to_receiver_w, opts, progress);
    let receiver_result =
        receiver.join().map_err(|_| SyncError::Remote("the receiver thread panicked".into()))?;
    match (sent, receiver_result) {
        (Ok(stats), Ok(_)) => Ok(stats),
        // The receiver's own error says more than the sender's view of it.
        (Err(SyncError::Peer { .. } | SyncError::Proto(_)) | Ok(_), Err(e)) | (Err(e), _) => Err(e),
    }
}

/// Bytes a pipe to the receiver holds: the default 64 KiB makes the two sides take turns
/// every 64 KiB of data, and the context switches cost more than the copies.
const PIPE_BYTES: usize = 1 << 20;

/// Asks for a [`PIPE_BYTES`] pipe buffer. Only a hint: an unprivileged process over
/// `/proc/sys/fs/pipe-max-size` keeps the default, which works, just slower.
fn widen_pipe(pipe: &impl std::os::fd::AsFd) {
    let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_BYTES);
}

/// Syncs `src` through `sh -c command`, which must run a receiver (for example
/// `ssh host ckpt sparse receive /path/to/target`) speaking the protocol on its standard
/// input and output. Succeeds only if the receiver committed the source's content and the
/// command exited successfully.
///
/// # Errors
/// As [`send`]; [`SyncError::Remote`] if the command cannot start or fails.
pub fn sync_remote(src: &Path, command: &str, opts: &SyncOptions) -> Result<SyncStats, SyncError> {
    sync_remote_with_progress(src, command, opts, &mut |_, _, _| {})
}

/// [`sync_remote`], reporting the sender's progress.
///
/// # Errors
/// As [`sync_remote`].
pub fn sync_remote_with_progress(
    src: &Path,
    command: &str,
    opts: &SyncOptions,
    progress: SyncProgress<'_>,
) -> Result<SyncStats, SyncError> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| SyncError::Remote(format!("cannot start `{command}`: {e}")))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        return Err(SyncError::Remote("no pipes to the command".into()));
    };
    widen_pipe(&stdin);
    let sent = send_with_progress(src, stdout, stdin, opts, progress);
    let exit =
        child.wait().map_err(|e| SyncError::Remote(format!("cannot wait for `{command}`: {e}")))?;
    match sent {
        Ok(stats) if exit.success() => Ok(stats),
        Ok(_) => Err(SyncError::Remote(format!("`{command}` failed after the commit: {exit}"))),
        Err(e) => Err(e),
    }
}
