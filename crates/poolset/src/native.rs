//! ckpt's native pool: a replicated, checksummed address space on the same poolset files,
//! replicas and parts as PMDK's pools.
//!
//! Layout of the pool's address space (the same in every replica, mapped onto its parts as
//! PMDK maps a pool, see [`PoolSet::replica_extents`]):
//!
//! | offset | size | what |
//! |---|---|---|
//! | 0 | 4 KiB | pool header, PMDK's layout with signature `CKPTNAT\0` (so `check`, `sync` and `transform` work unchanged) |
//! | 4096 | 4 KiB | descriptor: block size, block count, where the table and the data are; xxh3-checked |
//! | 8192 | 2 x 4 KiB | two control records (double buffered): generation, published range; each xxh3-checked |
//! | 16384 | 8 bytes per block | the block table: xxh3-64 of every data block (0: never written, reads as zeros) |
//! | `data_at` | `block_size` x count | the data blocks |
//!
//! A write updates a block and its table entry in every replica. [`NativePool::publish`]
//! makes them durable (fsync of every part) and only then writes the next control record
//! (generation + 1, the published range) into the slot not holding the current one, and
//! fsyncs again: a crash leaves the old or the new record, and readers, who never read past
//! the published range, see the old or the new state. A block whose copy fails its checksum
//! in one replica is read from a replica whose copy verifies, and (for the writer) the bad
//! copy is rewritten: read-repair. [`NativePool::scrub`] does that for every block.

use crate::grammar::{Extent, PoolSet};
use crate::header::{PoolHeader, PoolType, Uuid, link_rings};
use crate::lock::{SetLock, lock_set};
use crate::{PoolError, journal::sync_parent};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The default block size: 64 KiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 64 * 1024;
const DESCRIPTOR_AT: u64 = 4096;
const CONTROL_AT: u64 = 8192;
const CONTROL_SLOT: u64 = 4096;
const TABLE_AT: u64 = 16384;
const DESCRIPTOR_MAGIC: &[u8; 8] = b"CKPTNPD1";
const CONTROL_MAGIC: &[u8; 8] = b"CKPTCTL1";
/// Table entry of a block never written: it reads as zeros.
const UNWRITTEN: u64 = 0;

/// Where the parts of the native layout lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Bytes per block.
    pub block_size: u32,
    /// Data blocks.
    pub block_count: u64,
    /// Pool offset of the data area.
    pub data_at: u64,
}

impl Descriptor {
    fn for_pool(pool_size: u64, block_size: u32) -> Option<Self> {
        let b = u64::from(block_size);
        // Each block costs its bytes and an 8-byte table entry; the data starts on a block
        // boundary after the table.
        let mut count = pool_size.saturating_sub(TABLE_AT) / (b + 8);
        while count > 0 {
            let data_at = (TABLE_AT + count * 8).next_multiple_of(b);
            if data_at + count * b <= pool_size {
                return Some(Self { block_size, block_count: count, data_at });
            }
            count -= 1;
        }
        None
    }

    fn encode(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..8].copy_from_slice(DESCRIPTOR_MAGIC);
        out[8..12].copy_from_slice(&self.block_size.to_le_bytes());
        out[16..24].copy_from_slice(&self.block_count.to_le_bytes());
        out[24..32].copy_from_slice(&self.data_at.to_le_bytes());
        let check = xxhash_rust::xxh3::xxh3_64(&out[..56]);
        out[56..].copy_from_slice(&check.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..64)?;
        let u64_at =
            |i: usize| b.get(i..i + 8).and_then(|x| x.try_into().ok()).map(u64::from_le_bytes);
        if b.get(..8)? != DESCRIPTOR_MAGIC
            || u64_at(56)? != xxhash_rust::xxh3::xxh3_64(b.get(..56)?)
        {
            return None;
        }
        let block_size = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?);
        let d = Self { block_size, block_count: u64_at(16)?, data_at: u64_at(24)? };
        (block_size.is_power_of_two()
            && block_size >= 4096
            && d.data_at >= TABLE_AT + d.block_count * 8)
            .then_some(d)
    }
}

/// The bytes of the pool's address space a native pool's data needs, from its descriptor
/// (`bytes` start at pool offset 4096); `None` if the descriptor does not verify.
pub(crate) fn recorded_pool_size(bytes: &[u8]) -> Option<u64> {
    let d = Descriptor::decode(bytes)?;
    d.block_count.checked_mul(u64::from(d.block_size))?.checked_add(d.data_at)
}

/// A published state: its generation and the range of the data area it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    /// Incremented by every publish; 0 for a new pool.
    pub generation: u64,
    /// First published byte of the data area.
    pub start: u64,
    /// Published bytes from `start`.
    pub len: u64,
    /// How many times the writer has started to overwrite a half of the data area (see
    /// [`NativePool::begin_checkpoint`]).
    pub reclaim: u64,
    /// The value of `reclaim` when `start..start + len` was published: its half is
    /// overwritten from the second reclaim after that on, so a reader of it reads again
    /// once `reclaim >= epoch + 2`.
    pub epoch: u64,
}

impl Published {
    fn encode(&self) -> [u8; 56] {
        let mut out = [0u8; 56];
        out[..8].copy_from_slice(CONTROL_MAGIC);
        out[8..16].copy_from_slice(&self.generation.to_le_bytes());
        out[16..24].copy_from_slice(&self.start.to_le_bytes());
        out[24..32].copy_from_slice(&self.len.to_le_bytes());
        out[32..40].copy_from_slice(&self.reclaim.to_le_bytes());
        out[40..48].copy_from_slice(&self.epoch.to_le_bytes());
        let check = xxhash_rust::xxh3::xxh3_64(&out[..48]);
        out[48..].copy_from_slice(&check.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..56)?;
        let u64_at =
            |i: usize| b.get(i..i + 8).and_then(|x| x.try_into().ok()).map(u64::from_le_bytes);
        if b.get(..8)? != CONTROL_MAGIC || u64_at(48)? != xxhash_rust::xxh3::xxh3_64(b.get(..48)?) {
            return None;
        }
        Some(Self {
            generation: u64_at(8)?,
            start: u64_at(16)?,
            len: u64_at(24)?,
            reclaim: u64_at(32)?,
            epoch: u64_at(40)?,
        })
    }
}

/// The xxh3-64 of a block as the table stores it (never [`UNWRITTEN`]).
fn block_digest(bytes: &[u8]) -> u64 {
    match xxhash_rust::xxh3::xxh3_64(bytes) {
        UNWRITTEN => 1,
        d => d,
    }
}

/// Whether a block's bytes match its table entry (an unwritten block must be zeros).
fn copy_verifies(bytes: &[u8], entry: u64) -> bool {
    if entry == UNWRITTEN { bytes.iter().all(|&b| b == 0) } else { block_digest(bytes) == entry }
}

/// A block some replica's copy of failed: (block, verified bytes, table entry, bad replicas).
type BadCopies<'a> = &'a mut dyn FnMut(u64, &[u8], u64, &[usize]);

/// One replica's part files, addressed by pool offset.
#[derive(Debug)]
struct ReplicaIo {
    /// Per part: its extent and its file (`None` where it cannot be opened).
    parts: Vec<(Extent, Option<File>, PathBuf)>,
}

impl ReplicaIo {
    fn open(set: &PoolSet, replica: usize, writable: bool) -> Self {
        let extents = set.replica_extents(replica).unwrap_or_default();
        let parts = extents
            .into_iter()
            .map(|e| {
                let path = set.replicas[replica].parts[e.part].path.clone();
                let file = OpenOptions::new().read(true).write(writable).open(&path).ok();
                (e, file, path)
            })
            .collect();
        Self { parts }
    }

    /// Calls `f(file, file offset, range of buf)` for every part piece of pool bytes
    /// `at..at + len`.
    fn each(
        &self,
        at: u64,
        len: usize,
        mut f: impl FnMut(&File, u64, std::ops::Range<usize>, &Path) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let end = at + len as u64;
        let mut pos = at;
        while pos < end {
            let (e, file, path) = self
                .parts
                .iter()
                .find(|(e, _, _)| e.pool_offset <= pos && pos < e.pool_offset + e.len)
                .ok_or_else(|| {
                    std::io::Error::other(format!("pool offset {pos:#x} is past the replica"))
                })?;
            let file = file.as_ref().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} is missing", path.display()),
                )
            })?;
            let stop = end.min(e.pool_offset + e.len);
            let from = usize::try_from(pos - at).unwrap_or(0);
            let to = usize::try_from(stop - at).unwrap_or(len);
            f(file, e.file_offset + (pos - e.pool_offset), from..to, path)?;
            pos = stop;
        }
        Ok(())
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let len = buf.len();
        self.each(at, len, |file, off, range, _| {
            file.read_exact_at(buf.get_mut(range).unwrap_or_default(), off)
        })
    }

    fn write_at(&self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.each(at, bytes.len(), |file, off, range, _| {
            file.write_all_at(bytes.get(range).unwrap_or_default(), off)
        })
    }

    fn sync(&self) -> std::io::Result<()> {
        for (_, file, _) in &self.parts {
            if let Some(f) = file {
                f.sync_all()?;
            }
        }
        Ok(())
    }
}

/// What a scrub found and did, per replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Blocks checked (each in every replica).
    pub blocks_checked: u64,
    /// Per replica: blocks whose copy failed and was rewritten from a verified copy.
    pub healed: Vec<u64>,
    /// Blocks with no verified copy in any replica (nothing overwritten).
    pub unrecoverable: Vec<u64>,
    /// Per replica: whether its descriptor or control records were rewritten.
    pub metadata_healed: Vec<bool>,
}

/// How a pool is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reader: any number at once, never reads past the published state, never writes.
    Read,
    /// The one writer: holds the set's lock; read-repair rewrites bad copies.
    Write,
}

/// An open native pool.
#[derive(Debug)]
pub struct NativePool {
    set: PoolSet,
    replicas: Vec<ReplicaIo>,
    descriptor: Descriptor,
    published: Published,
    /// Which control slot holds `published`.
    slot: u64,
    access: Access,
    repaired: u64,
    _lock: Option<SetLock>,
}

impl NativePool {
    /// Creates a native pool on the poolset file at `set_path`: every part file is created
    /// (none may exist), headers linked, the descriptor, an empty control record and a
    /// zero table written, all fsynced. Returns it open for writing.
    ///
    /// # Errors
    /// [`PoolError::Transform`] if a part file exists or the pool is too small for one
    /// block; [`PoolError::Grammar`], [`PoolError::Io`].
    ///
    /// # Examples
    /// ```
    /// use ckpt_poolset::native::{Access, NativePool, DEFAULT_BLOCK_SIZE};
    /// let dir = tempfile::tempdir()?;
    /// let set = dir.path().join("pool.set");
    /// let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    /// std::fs::write(&set, format!("PMEMPOOLSET\n8M {}\nREPLICA\n8M {}\n", a.display(), b.display()))?;
    /// let mut pool = NativePool::create(&set, DEFAULT_BLOCK_SIZE)?;
    /// pool.write_at(0, b"hello")?;
    /// pool.publish(0, 5)?;
    /// drop(pool);
    /// let reader = NativePool::open(&set, Access::Read)?;
    /// let mut buf = [0u8; 5];
    /// reader.read_published(0, &mut buf)?;
    /// assert_eq!(&buf, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(set_path: &Path, block_size: u32) -> Result<Self, PoolError> {
        let set = PoolSet::from_file(set_path)?.resolve_directories()?;
        if !block_size.is_power_of_two() || block_size < 4096 {
            return Err(PoolError::Transform(format!(
                "block size {block_size} is not a power of two of at least 4096"
            )));
        }
        if set.options.no_headers {
            return Err(PoolError::Unsupported(
                "a native pool needs pool headers (no NOHDRS)".into(),
            ));
        }
        let paths: Vec<&Path> =
            set.replicas.iter().flat_map(|r| r.parts.iter().map(|p| p.path.as_path())).collect();
        if let Some(p) = paths.iter().find(|p| p.exists()) {
            return Err(PoolError::Transform(format!(
                "part {} already exists; a new pool is never created over a file",
                p.display()
            )));
        }
        let descriptor = Descriptor::for_pool(set.pool_size(), block_size).ok_or_else(|| {
            PoolError::Transform(format!(
                "the pool holds {} bytes: too small for one block of {block_size} and the metadata",
                set.pool_size()
            ))
        })?;
        let lock = lock_set(set_path, [])?;
        let poolset_uuid =
            Uuid::generate().map_err(PoolError::io("/proc/sys/kernel/random/uuid", "read"))?;
        let mut headers: Vec<Vec<PoolHeader>> = Vec::new();
        for r in 0..set.replicas.len() {
            let mut ring = Vec::new();
            for p in 0..set.replicas[r].parts.len() {
                if set.header_size(p) > 0 {
                    let uuid = Uuid::generate()
                        .map_err(PoolError::io("/proc/sys/kernel/random/uuid", "read"))?;
                    let mut h = PoolHeader::new(PoolType::Native, poolset_uuid, uuid);
                    h.crtime = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    if set.options.single_header {
                        h.features.incompat |= crate::header::Features::SINGLEHDR;
                    }
                    ring.push(h);
                }
            }
            headers.push(ring);
        }
        link_rings(&mut headers).map_err(|e| PoolError::Unsupported(e.to_string()))?;
        for (r, replica) in set.replicas.iter().enumerate() {
            let mut ring = headers[r].iter();
            for (p, part) in replica.parts.iter().enumerate() {
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&part.path)
                    .map_err(PoolError::io(&part.path, "create"))?;
                f.set_len(part.size).map_err(PoolError::io(&part.path, "set the size of"))?;
                if set.header_size(p) > 0
                    && let Some(h) = ring.next()
                {
                    f.write_all_at(&h.encode(), 0)
                        .map_err(PoolError::io(&part.path, "write the header of"))?;
                }
            }
        }
        let replicas: Vec<ReplicaIo> =
            (0..set.replicas.len()).map(|r| ReplicaIo::open(&set, r, true)).collect();
        for (r, io) in replicas.iter().enumerate() {
            let io_err = |e| PoolError::Io {
                path: set.replicas[r].parts[0].path.clone(),
                op: "initialise",
                source: e,
            };
            io.write_at(DESCRIPTOR_AT, &descriptor.encode()).map_err(io_err)?;
            io.write_at(CONTROL_AT, &Published::default().encode()).map_err(io_err)?;
            io.sync().map_err(|e| PoolError::Io {
                path: set.replicas[r].parts[0].path.clone(),
                op: "fsync",
                source: e,
            })?;
        }
        for p in &paths {
            sync_parent(p)?;
        }
        Ok(Self {
            set,
            replicas,
            descriptor,
            published: Published::default(),
            slot: 0,
            access: Access::Write,
            repaired: 0,
            _lock: Some(lock),
        })
    }

    /// Opens the native pool of the poolset file at `set_path`. A writer takes the set's
    /// lock (one writer at a time; `ckpt pool sync` and `transform` wait for none and fail
    /// while it is held); readers take no lock.
    ///
    /// # Errors
    /// [`PoolError::Locked`] if another writer holds the set; [`PoolError::Unsupported`] if
    /// no replica holds a valid native descriptor and control record.
    pub fn open(set_path: &Path, access: Access) -> Result<Self, PoolError> {
        let set = PoolSet::from_file(set_path)?.resolve_directories()?;
        let lock = match access {
            Access::Write => Some(lock_set(set_path, [])?),
            Access::Read => None,
        };
        let writable = access == Access::Write;
        let replicas: Vec<ReplicaIo> =
            (0..set.replicas.len()).map(|r| ReplicaIo::open(&set, r, writable)).collect();
        let descriptor = replicas
            .iter()
            .find_map(|io| {
                let mut b = [0u8; 64];
                io.read_at(DESCRIPTOR_AT, &mut b).ok().and_then(|()| Descriptor::decode(&b))
            })
            .ok_or_else(|| {
                PoolError::Unsupported(format!(
                    "{}: no replica holds a valid native pool descriptor (not a native pool?)",
                    set_path.display()
                ))
            })?;
        let mut pool = Self {
            set,
            replicas,
            descriptor,
            published: Published::default(),
            slot: 0,
            access,
            repaired: 0,
            _lock: lock,
        };
        pool.reload()?;
        Ok(pool)
    }

    /// Re-reads the control records: a reader picks up the writer's newest published state.
    ///
    /// # Errors
    /// [`PoolError::Unsupported`] if no replica holds a valid control record.
    pub fn reload(&mut self) -> Result<Published, PoolError> {
        let mut best: Option<(Published, u64)> = None;
        for io in &self.replicas {
            for slot in 0..2 {
                let mut b = [0u8; 56];
                if io.read_at(CONTROL_AT + slot * CONTROL_SLOT, &mut b).is_err() {
                    continue;
                }
                if let Some(p) = Published::decode(&b)
                    && best.is_none_or(|(q, _)| p.generation > q.generation)
                {
                    best = Some((p, slot));
                }
            }
        }
        let (published, slot) = best.ok_or_else(|| {
            PoolError::Unsupported("no replica holds a valid control record".into())
        })?;
        self.published = published;
        self.slot = slot;
        Ok(published)
    }

    /// The newest published state this handle knows.
    pub fn published(&self) -> Published {
        self.published
    }

    /// The descriptor (block size and count).
    pub fn descriptor(&self) -> Descriptor {
        self.descriptor
    }

    /// Bytes of the data area.
    pub fn capacity(&self) -> u64 {
        self.descriptor.block_count * u64::from(self.descriptor.block_size)
    }

    /// Bad copies rewritten by read-repair since this handle was opened.
    pub fn repaired(&self) -> u64 {
        self.repaired
    }

    fn block_at(&self, block: u64) -> u64 {
        self.descriptor.data_at + block * u64::from(self.descriptor.block_size)
    }

    fn entry(&self, replica: usize, block: u64) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        self.replicas[replica].read_at(TABLE_AT + block * 8, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads `block` from the first replica whose copy verifies into `out`; returns its
    /// table entry and the replicas whose copies failed.
    fn verified_block(&self, block: u64, out: &mut [u8]) -> Result<(u64, Vec<usize>), PoolError> {
        let mut bad = Vec::new();
        for r in 0..self.replicas.len() {
            if let Ok(entry) = self.entry(r, block)
                && self.replicas[r].read_at(self.block_at(block), out).is_ok()
                && copy_verifies(out, entry)
            {
                return Ok((entry, bad));
            }
            bad.push(r);
        }
        Err(PoolError::Unsupported(format!(
            "block {block} has no copy that verifies in any of the {} replicas",
            self.replicas.len()
        )))
    }

    fn write_copy(
        &self,
        replica: usize,
        block: u64,
        bytes: &[u8],
        entry: u64,
    ) -> std::io::Result<()> {
        self.replicas[replica].write_at(self.block_at(block), bytes)?;
        self.replicas[replica].write_at(TABLE_AT + block * 8, &entry.to_le_bytes())
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<(), PoolError> {
        let end = offset.checked_add(len as u64).filter(|&e| e <= self.capacity());
        end.map(|_| ()).ok_or_else(|| {
            PoolError::Transform(format!(
                "bytes {offset}..{} are past the pool's data area of {} bytes",
                offset.saturating_add(len as u64),
                self.capacity()
            ))
        })
    }

    /// Reads `buf.len()` bytes of the data area at `offset`, each block from a replica whose
    /// copy verifies; the writer rewrites the copies that failed (read-repair).
    ///
    /// # Errors
    /// [`PoolError::Transform`] for a range past the data area; [`PoolError::Unsupported`]
    /// for a block with no verified copy.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), PoolError> {
        let mut repairs: Vec<(u64, Vec<u8>, u64, Vec<usize>)> = Vec::new();
        self.read_into(offset, buf, &mut |block, bytes, entry, bad| {
            repairs.push((block, bytes.to_vec(), entry, bad.to_vec()));
        })?;
        if self.access == Access::Write {
            for (block, bytes, entry, bad) in repairs {
                for r in bad {
                    if self.write_copy(r, block, &bytes, entry).is_ok() {
                        self.repaired += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// [`read_at`](Self::read_at) limited to the published range, without repair: what a
    /// reader sees. `offset` is relative to the published start.
    ///
    /// # Errors
    /// As [`read_at`](Self::read_at); [`PoolError::Transform`] past the published length.
    pub fn read_published(&self, offset: u64, buf: &mut [u8]) -> Result<(), PoolError> {
        if offset.saturating_add(buf.len() as u64) > self.published.len {
            return Err(PoolError::Transform(format!(
                "bytes {offset}..{} are past the {} published bytes",
                offset.saturating_add(buf.len() as u64),
                self.published.len
            )));
        }
        self.read_into(self.published.start + offset, buf, &mut |_, _, _, _| {})
    }

    /// Reads verified blocks into `buf`; `on_bad(block, bytes, entry, bad replicas)` for
    /// every block some replica's copy of failed.
    fn read_into(
        &self,
        offset: u64,
        buf: &mut [u8],
        on_bad: BadCopies<'_>,
    ) -> Result<(), PoolError> {
        self.check_range(offset, buf.len())?;
        let bs = u64::from(self.descriptor.block_size);
        let mut block_buf = vec![0u8; self.descriptor.block_size as usize];
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let block = pos / bs;
            let (entry, bad) = self.verified_block(block, &mut block_buf)?;
            if !bad.is_empty() {
                on_bad(block, &block_buf, entry, &bad);
            }
            let within = usize::try_from(pos % bs).unwrap_or(0);
            let n = usize::try_from((bs - pos % bs).min(end - pos)).unwrap_or(0);
            let at = usize::try_from(pos - offset).unwrap_or(0);
            buf.get_mut(at..at + n)
                .unwrap_or_default()
                .copy_from_slice(block_buf.get(within..within + n).unwrap_or_default());
            pos += n as u64;
        }
        Ok(())
    }

    /// Writes `bytes` at `offset` of the data area in every replica, blocks and table
    /// entries; durable and visible to readers only after [`publish`](Self::publish).
    ///
    /// # Errors
    /// [`PoolError::Transform`] for a reader or a range past the data area;
    /// [`PoolError::Io`] if a replica cannot be written.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), PoolError> {
        if self.access != Access::Write {
            return Err(PoolError::Transform("the pool is open for reading only".into()));
        }
        self.check_range(offset, bytes.len())?;
        let bs = u64::from(self.descriptor.block_size);
        let mut block_buf = vec![0u8; self.descriptor.block_size as usize];
        let mut pos = offset;
        let end = offset + bytes.len() as u64;
        while pos < end {
            let block = pos / bs;
            let within = usize::try_from(pos % bs).unwrap_or(0);
            let n = usize::try_from((bs - pos % bs).min(end - pos)).unwrap_or(0);
            if n as u64 == bs {
                block_buf.fill(0);
            } else {
                self.verified_block(block, &mut block_buf)?;
            }
            let at = usize::try_from(pos - offset).unwrap_or(0);
            block_buf
                .get_mut(within..within + n)
                .unwrap_or_default()
                .copy_from_slice(bytes.get(at..at + n).unwrap_or_default());
            let entry = block_digest(&block_buf);
            for r in 0..self.replicas.len() {
                self.write_copy(r, block, &block_buf, entry).map_err(|e| PoolError::Io {
                    path: self.set.replicas[r].parts[0].path.clone(),
                    op: "write a block of replica",
                    source: e,
                })?;
            }
            pos += n as u64;
        }
        Ok(())
    }

    /// Publishes bytes `start..start + len` of the data area: every replica fsynced, then
    /// the next control record written to the other slot of every replica and fsynced.
    /// Returns the new state.
    ///
    /// # Errors
    /// [`PoolError::Io`] if a replica cannot be made durable (the old state stays
    /// published); [`PoolError::Transform`] for a reader or a range past the data area.
    pub fn publish(&mut self, start: u64, len: u64) -> Result<Published, PoolError> {
        if self.access != Access::Write {
            return Err(PoolError::Transform("the pool is open for reading only".into()));
        }
        self.check_range(start, usize::try_from(len).unwrap_or(usize::MAX))?;
        self.sync_all()?;
        self.write_control(Published {
            generation: self.published.generation + 1,
            start,
            len,
            reclaim: self.published.reclaim,
            epoch: self.published.reclaim,
        })
    }

    /// Writes `next` into the control slot not holding the current record, in every
    /// replica, and fsyncs: the record is replaced atomically (a torn one fails its check
    /// and the other slot still holds the previous record).
    fn write_control(&mut self, next: Published) -> Result<Published, PoolError> {
        let slot = 1 - self.slot;
        for (r, io) in self.replicas.iter().enumerate() {
            io.write_at(CONTROL_AT + slot * CONTROL_SLOT, &next.encode()).map_err(|e| {
                PoolError::Io {
                    path: self.set.replicas[r].parts[0].path.clone(),
                    op: "write the control record of replica",
                    source: e,
                }
            })?;
        }
        self.sync_all()?;
        self.published = next;
        self.slot = slot;
        Ok(next)
    }

    /// The half of the data area a new checkpoint goes to: the one not holding the
    /// published one. Readers of the published checkpoint are never overwritten; the
    /// half is announced (the `reclaim` counter, made durable) before it is written, so a
    /// reader still on the checkpoint before the published one knows to read again.
    ///
    /// # Errors
    /// [`PoolError::Transform`] for a reader; [`PoolError::Io`].
    pub fn begin_checkpoint(&mut self) -> Result<CheckpointWriter<'_>, PoolError> {
        if self.access != Access::Write {
            return Err(PoolError::Transform("the pool is open for reading only".into()));
        }
        let half = self.half();
        let start = if self.published.len > 0 && self.published.start < half { half } else { 0 };
        let current = self.published;
        self.write_control(Published {
            generation: current.generation + 1,
            reclaim: current.reclaim + 1,
            ..current
        })?;
        Ok(CheckpointWriter { pool: self, start, written: 0 })
    }

    /// Bytes of one half of the data area, on a block boundary: the largest checkpoint.
    pub fn half(&self) -> u64 {
        self.descriptor.block_count / 2 * u64::from(self.descriptor.block_size)
    }

    fn sync_all(&self) -> Result<(), PoolError> {
        for (r, io) in self.replicas.iter().enumerate() {
            io.sync().map_err(|e| PoolError::Io {
                path: self.set.replicas[r].parts[0].path.clone(),
                op: "fsync replica",
                source: e,
            })?;
        }
        Ok(())
    }

    /// Reads every block of the published range in every replica, verifies it, and
    /// rewrites each bad copy from a verified one; a block with no verified copy anywhere
    /// is reported and left as it is. Also heals the descriptor and control records.
    ///
    /// # Errors
    /// [`PoolError::Transform`] for a reader; [`PoolError::Io`] if a heal cannot be made
    /// durable.
    pub fn scrub(&mut self, progress: &mut dyn FnMut(u64, u64)) -> Result<ScrubReport, PoolError> {
        if self.access != Access::Write {
            return Err(PoolError::Transform("scrub needs the pool open for writing".into()));
        }
        let n = self.replicas.len();
        let mut report = ScrubReport {
            healed: vec![0; n],
            metadata_healed: vec![false; n],
            ..ScrubReport::default()
        };
        // Metadata: descriptor and the current control record, from memory (verified).
        let desc = self.descriptor.encode();
        let ctl = self.published.encode();
        for (r, io) in self.replicas.iter().enumerate() {
            let mut d = [0u8; 64];
            let mut c = [0u8; 56];
            let d_ok = io.read_at(DESCRIPTOR_AT, &mut d).is_ok() && d == desc;
            let c_ok =
                io.read_at(CONTROL_AT + self.slot * CONTROL_SLOT, &mut c).is_ok() && c == ctl;
            if !d_ok || !c_ok {
                let healed = io
                    .write_at(DESCRIPTOR_AT, &desc)
                    .and_then(|()| io.write_at(CONTROL_AT + self.slot * CONTROL_SLOT, &ctl));
                report.metadata_healed[r] = healed.is_ok();
            }
        }
        let bs = u64::from(self.descriptor.block_size);
        let (first, last) =
            (self.published.start / bs, (self.published.start + self.published.len).div_ceil(bs));
        let mut copies: Vec<Vec<u8>> = vec![vec![0u8; self.descriptor.block_size as usize]; n];
        for block in first..last {
            report.blocks_checked += 1;
            // Per replica: its table entry when its copy verifies.
            let mut entries: Vec<Option<u64>> = Vec::with_capacity(n);
            for (r, copy) in copies.iter_mut().enumerate() {
                let read = self
                    .entry(r, block)
                    .ok()
                    .filter(|_| self.replicas[r].read_at(self.block_at(block), copy).is_ok());
                entries.push(read.filter(|&entry| copy_verifies(copy, entry)));
            }
            // The first verified copy wins (the master's when it verifies); a replica whose
            // copy verifies but differs from it is brought in line too.
            match entries.iter().enumerate().find_map(|(r, e)| e.map(|e| (r, e))) {
                None => report.unrecoverable.push(block),
                Some((good, entry)) => {
                    let bytes = copies[good].clone();
                    for r in (0..n).filter(|&r| entries[r] != Some(entry)) {
                        if self.write_copy(r, block, &bytes, entry).is_ok() {
                            report.healed[r] += 1;
                        }
                    }
                }
            }
            progress(block - first + 1, last - first);
        }
        self.sync_all()?;
        Ok(report)
    }
}

/// A checkpoint being written into a native pool ([`NativePool::begin_checkpoint`]): bytes
/// go to the free half in order; [`finish`](Self::finish) publishes them.
#[derive(Debug)]
pub struct CheckpointWriter<'a> {
    pool: &'a mut NativePool,
    start: u64,
    written: u64,
}

impl CheckpointWriter<'_> {
    /// Makes the written bytes durable and publishes them as the pool's checkpoint.
    ///
    /// # Errors
    /// As [`NativePool::publish`].
    pub fn finish(self) -> Result<Published, PoolError> {
        self.pool.publish(self.start, self.written)
    }
}

impl std::io::Write for CheckpointWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.pool.half() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "the checkpoint is larger than half the pool's data area ({} bytes); use a larger pool",
                    self.pool.half()
                ),
            ));
        }
        self.pool
            .write_at(self.start + self.written, buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads the checkpoint published when it was opened, for readers; never past it. If the
/// writer reclaims its half while it is read (see [`Published::epoch`]), a read fails with
/// [`std::io::ErrorKind::WouldBlock`] and a message saying to read again, so a torn
/// checkpoint is never handed on as whole.
#[derive(Debug)]
pub struct PublishedReader {
    pool: NativePool,
    snapshot: Published,
    pos: u64,
}

impl PublishedReader {
    /// Opens the pool read-only at its newest published checkpoint.
    ///
    /// # Errors
    /// As [`NativePool::open`].
    pub fn open(set_path: &Path) -> Result<Self, PoolError> {
        let pool = NativePool::open(set_path, Access::Read)?;
        let snapshot = pool.published();
        Ok(Self { pool, snapshot, pos: 0 })
    }

    /// The checkpoint being read.
    pub fn snapshot(&self) -> Published {
        self.snapshot
    }

    /// Whether the writer may have overwritten what was read so far.
    fn reclaimed(&mut self) -> bool {
        self.pool.reload().is_ok_and(|now| now.reclaim >= self.snapshot.epoch + 2)
    }
}

impl std::io::Read for PublishedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.snapshot.len - self.pos;
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len()).min(1 << 20);
        if n == 0 {
            // The end: everything read must still be the snapshot's.
            return if self.reclaimed() { Err(reclaimed_error(self.snapshot)) } else { Ok(0) };
        }
        let out = buf.get_mut(..n).unwrap_or_default();
        let result = self.pool.read_into(self.snapshot.start + self.pos, out, &mut |_, _, _, _| {});
        if self.reclaimed() {
            return Err(reclaimed_error(self.snapshot));
        }
        result.map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn reclaimed_error(snapshot: Published) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::WouldBlock,
        format!(
            "generation {} was overwritten by the writer while it was read; read the pool again",
            snapshot.generation
        ),
    )
}
