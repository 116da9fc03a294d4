//! Chains of incremental checkpoints: finding and checking each link, deciding which link
//! holds each block of the newest one, and reading those blocks back.
//!
//! A link's parent is found by the name its manifest records (beside the link, or an
//! absolute path) and must carry the recorded checkpoint id and state digest
//! ([`crate::blocks::state_digest`]); anything else is refused before a byte is written.

use crate::TreeError;
use crate::blocks::{BlockTable, block_range, state_digest};
use crate::manifest::{Kind, Manifest};
use crate::restore::manifest_and_table;
use ckpt_frame_core::{CheckpointId, Reader};
use ckpt_io_backends::{InputSource, IoMode, open_input};
use std::collections::HashMap;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most links a chain may have (the newest included): restore opens them all at once.
pub const MAX_CHAIN: usize = 64;

/// Why a link of a chain cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainProblem {
    /// The parent cannot be opened.
    Missing {
        /// The parent's recorded id.
        id: CheckpointId,
        /// What opening it said.
        error: String,
    },
    /// A checkpoint is there but not the one recorded (another id, or other contents).
    Replaced {
        /// Id and state digest the child recorded.
        expected: (CheckpointId, u64),
        /// Id and state digest found.
        found: (CheckpointId, u64),
    },
    /// The parent fails its own checks.
    Damaged {
        /// What failed.
        error: String,
    },
    /// The parent does not hold, with the recorded hash, a block the child inherits.
    BlockMissing {
        /// The file's path.
        path: String,
        /// The block number (of 4 KiB).
        block: u64,
    },
    /// More than [`MAX_CHAIN`] links, or a link that is its own ancestor.
    TooLong,
    /// A block read from a link does not hash to what the newest checkpoint's block table
    /// records (the link's chunk checks passed: its own table and data disagree with the
    /// child's record).
    BlockDiffers {
        /// The file's path.
        path: String,
        /// The block number (of 4 KiB).
        block: u64,
    },
}

impl ChainProblem {
    /// The CLI's exit status: 2 for a parent that is not there, 1 for one that is wrong.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Missing { .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { id, error } => write!(f, "parent {id} is missing: {error}"),
            Self::Replaced { expected, found } => write!(
                f,
                "parent was replaced: the child was written on checkpoint {} (state digest \
                 {:016x}), this is {} (state digest {:016x})",
                expected.0, expected.1, found.0, found.1
            ),
            Self::Damaged { error } => write!(f, "parent is damaged: {error}"),
            Self::BlockMissing { path, block } => {
                write!(f, "parent does not hold block {block} of {path:?} as the child recorded it")
            }
            Self::TooLong => write!(f, "chain is longer than {MAX_CHAIN} links or loops"),
            Self::BlockDiffers { path, block } => write!(
                f,
                "block {block} of {path:?} read from it does not hash to what the newest \
                 checkpoint records"
            ),
        }
    }
}

/// One checkpoint of a chain, opened and checked.
#[derive(Debug, Clone)]
pub struct Link {
    /// Where it is.
    pub path: PathBuf,
    /// Its checkpoint id.
    pub id: CheckpointId,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its block table.
    pub table: BlockTable,
    /// Its block table's bytes.
    pub table_bytes: Vec<u8>,
    /// Its state digest.
    pub digest: u64,
    /// Its length in bytes.
    pub len: u64,
}

impl Link {
    /// Opens and checks the checkpoint at `path`: index, manifest, frames against the
    /// manifest, block table.
    ///
    /// # Errors
    /// [`TreeError::Io`] if it cannot be opened; [`TreeError::Format`],
    /// [`TreeError::Manifest`] or [`TreeError::Layout`] if it fails a check, or has no
    /// block table (written before manifest version 4).
    pub fn open(path: &Path) -> Result<Self, TreeError> {
        let source = open_link(path)?;
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        let mut reader = Reader::open(source)?;
        let (manifest, table_bytes) = manifest_and_table(&mut reader)?;
        let table_bytes = table_bytes.ok_or(TreeError::Layout {
            what: "no block table (written before incremental checkpoints)",
        })?;
        let table = BlockTable::decode(&table_bytes, &manifest).map_err(TreeError::Manifest)?;
        let id = reader.id().ok_or(TreeError::Layout { what: "checkpoint has no id" })?;
        let digest = state_digest(&manifest, &table_bytes);
        Ok(Self { path: path.to_owned(), id, manifest, table, table_bytes, digest, len })
    }

    /// A source over this link's file, for readers of its frames.
    ///
    /// # Errors
    /// [`TreeError::Io`] if the file cannot be opened.
    pub fn source(&self) -> Result<InputSource, TreeError> {
        open_link(&self.path)
    }

    /// Where this link's parent is to be found, if it has one.
    pub fn parent_path(&self) -> Option<PathBuf> {
        let link = self.manifest.parent.as_ref()?;
        let name = Path::new(std::ffi::OsStr::from_bytes(&link.name));
        Some(if name.is_absolute() {
            name.to_owned()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(name)
        })
    }
}

fn open_link(path: &Path) -> Result<InputSource, TreeError> {
    open_input(path, IoMode::Buffered).map_err(|e| TreeError::Io {
        path: path.to_owned(),
        op: "cannot open",
        source: e.into(),
    })
}

/// The name a child records for its parent at `parent`, when the child is written at
/// `child`: the file name when both are in one directory, else an absolute path.
pub fn parent_name(child: &Path, parent: &Path) -> Vec<u8> {
    let dir = |p: &Path| {
        let d = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::canonicalize(d).ok()
    };
    if let (Some(a), Some(b), Some(name)) = (dir(child), dir(parent), parent.file_name())
        && a == b
    {
        return name.as_bytes().to_vec();
    }
    std::path::absolute(parent)
        .unwrap_or_else(|_| parent.to_owned())
        .as_os_str()
        .as_bytes()
        .to_vec()
}

/// A checkpoint and its ancestors, newest first, each checked against its child's record.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The links: `links[0]` is the checkpoint opened, `links[k + 1]` the parent of
    /// `links[k]`; the last one is self-contained.
    pub links: Vec<Link>,
}

impl Chain {
    /// Opens the checkpoint at `path` and every ancestor, checking each parent's id and
    /// state digest against what its child recorded.
    ///
    /// # Errors
    /// [`TreeError::Chain`] naming the child and the parent at fault; the errors of
    /// [`Link::open`] for the checkpoint at `path` itself.
    pub fn open(path: &Path) -> Result<Self, TreeError> {
        let mut links = vec![Link::open(path)?];
        loop {
            let child = links.last().ok_or(TreeError::Layout { what: "empty chain" })?;
            let (Some(record), Some(parent_path)) =
                (child.manifest.parent.clone(), child.parent_path())
            else {
                return Ok(Self { links });
            };
            let fail = |problem| TreeError::Chain {
                child: child.path.clone(),
                parent: parent_path.clone(),
                problem,
            };
            let expected_id = CheckpointId::from_bytes(record.id);
            if links.len() >= MAX_CHAIN || links.iter().any(|l| l.id == expected_id) {
                return Err(fail(ChainProblem::TooLong));
            }
            let parent = match Link::open(&parent_path) {
                Ok(p) => p,
                Err(TreeError::Io { source, .. }) => {
                    let error = source.to_string();
                    return Err(fail(ChainProblem::Missing { id: expected_id, error }));
                }
                Err(e) => return Err(fail(ChainProblem::Damaged { error: e.to_string() })),
            };
            if (parent.id, parent.digest) != (expected_id, record.digest) {
                return Err(fail(ChainProblem::Replaced {
                    expected: (expected_id, record.digest),
                    found: (parent.id, parent.digest),
                }));
            }
            links.push(parent);
        }
    }

    /// For each link, for each of its entries, the entry of the newest checkpoint it
    /// supplies and the byte ranges of that file it supplies (ascending): every block of
    /// every file of `links[0]` comes from the newest link that stores it.
    ///
    /// # Errors
    /// [`TreeError::Chain`] with [`ChainProblem::BlockMissing`] when a link lacks a block
    /// its child inherits (no file at the path, another length or hash), or
    /// [`TreeError::Layout`] for stored ranges that split a block.
    pub fn owners(&self) -> Result<Vec<Vec<Option<Supply>>>, TreeError> {
        let mut out: Vec<Vec<Option<Supply>>> =
            self.links.iter().map(|l| vec![None; l.manifest.entries.len()]).collect();
        let by_path: Vec<HashMap<&[u8], usize>> = self
            .links
            .iter()
            .map(|l| {
                let files = l.manifest.entries.iter().enumerate();
                files
                    .filter(|(_, e)| e.kind == Kind::File)
                    .map(|(i, e)| (e.path.as_slice(), i))
                    .collect()
            })
            .collect();
        let Some(target) = self.links.first() else { return Ok(out) };
        for (i, e) in target.manifest.entries.iter().enumerate() {
            if e.kind != Kind::File {
                continue;
            }
            let content = e.content_ranges();
            // Per link, the entry of that link holding this path (looked up once).
            let mut at: Vec<Option<usize>> = vec![None; self.links.len()];
            if let Some(a) = at.first_mut() {
                *a = Some(i);
            }
            for j in target.table.blocks(i) {
                let hash = target.table.hash(i, j);
                let (bs, be) = block_range(e.size, j);
                let mut k = 0;
                let owner = loop {
                    let (Some(link), Some(li)) = (self.links.get(k), at.get(k).copied().flatten())
                    else {
                        return Err(TreeError::Layout { what: "chain resolution lost its link" });
                    };
                    let le = link
                        .manifest
                        .entries
                        .get(li)
                        .ok_or(TreeError::Layout { what: "chain resolution lost its entry" })?;
                    if k > 0 {
                        let same = block_range(le.size, j) == (bs, be)
                            && hash.is_some()
                            && link.table.hash(li, j) == hash;
                        if !same {
                            return Err(self.block_missing(k, &e.path, j));
                        }
                    }
                    if stores_block(le, j)? {
                        break (k, li);
                    }
                    k += 1;
                    if k >= self.links.len() {
                        return Err(self.block_missing(k, &e.path, j));
                    }
                    if at.get(k).copied().flatten().is_none() {
                        let n = by_path
                            .get(k)
                            .and_then(|m| m.get(e.path.as_slice()).copied())
                            .ok_or_else(|| self.block_missing(k, &e.path, j))?;
                        if let Some(slot) = at.get_mut(k) {
                            *slot = Some(n);
                        }
                    }
                };
                let (k, li) = owner;
                let slot = out
                    .get_mut(k)
                    .and_then(|v| v.get_mut(li))
                    .ok_or(TreeError::Layout { what: "chain resolution lost its entry" })?;
                let supply = slot.get_or_insert_with(|| Supply { entry: i, ranges: Vec::new() });
                crate::blocks::append_clipped(&mut supply.ranges, &content, bs, be);
            }
        }
        Ok(out)
    }

    /// An error met reading link `k`: for a parent, reported as that parent being damaged
    /// (I/O, thread and chain errors as they are).
    pub(crate) fn blame(&self, k: usize, e: TreeError) -> TreeError {
        match (k, e) {
            (0, e)
            | (
                _,
                e @ (TreeError::Io { .. } | TreeError::Threads { .. } | TreeError::Chain { .. }),
            ) => e,
            (_, e) => TreeError::Chain {
                child: self.links.get(k - 1).map(|l| l.path.clone()).unwrap_or_default(),
                parent: self.links.get(k).map(|l| l.path.clone()).unwrap_or_default(),
                problem: ChainProblem::Damaged { error: e.to_string() },
            },
        }
    }

    fn block_missing(&self, k: usize, path: &[u8], block: u64) -> TreeError {
        let child = self.links.get(k.saturating_sub(1)).map(|l| l.path.clone()).unwrap_or_default();
        let parent = self.links.get(k).map_or_else(
            || self.links.get(k.saturating_sub(1)).and_then(Link::parent_path).unwrap_or_default(),
            |l| l.path.clone(),
        );
        TreeError::Chain {
            child,
            parent,
            problem: ChainProblem::BlockMissing {
                path: String::from_utf8_lossy(path).into_owned(),
                block,
            },
        }
    }
}

/// What one link supplies to one file of the newest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supply {
    /// The entry of the newest checkpoint.
    pub entry: usize,
    /// The byte ranges of the file, ascending, not touching.
    pub ranges: Vec<(u64, u64)>,
}

/// Whether `e` stores (all of) block `j`'s content.
pub(crate) fn stores_block(e: &crate::manifest::Entry, j: u64) -> Result<bool, TreeError> {
    let Some(stored) = &e.stored else { return Ok(true) };
    let (bs, be) = block_range(e.size, j);
    let ranges = e.content_ranges_borrowed();
    let content: u64 = crate::blocks::clipped(&ranges, bs, be).map(|r| r.1).sum();
    let covered: u64 = crate::blocks::clipped(stored, bs, be).map(|r| r.1).sum();
    if covered != 0 && covered != content {
        return Err(TreeError::Layout { what: "stored ranges split a block" });
    }
    Ok(covered != 0)
}

/// The parts of `ranges` (ascending, not touching) inside `start..start + len`.
pub(crate) fn parts_within(ranges: &[(u64, u64)], start: u64, len: u64) -> Vec<(u64, u64)> {
    crate::blocks::clipped(ranges, start, start + len).collect()
}

/// Reads the bytes of the newest checkpoint's files from the links that supply them,
/// decoding whole frames (each chunk checked) and keeping the last few per link.
pub(crate) struct ChainReader<'c> {
    chain: &'c Chain,
    /// For each entry of the newest checkpoint: (file offset, length, link, link entry),
    /// ascending.
    supplies: Vec<Vec<(u64, u64, usize, usize)>>,
    /// For each link and link entry: (file offset, length, data frame, offset in frame).
    pieces: Vec<Vec<Vec<PieceAt>>>,
    cache: std::sync::Mutex<Vec<CachedFrame>>,
}

/// A piece of a link: (file offset, length, data frame, offset in the frame).
type PieceAt = (u64, u64, u64, u64);
/// A decoded frame: (link, frame, its logical bytes).
type CachedFrame = (usize, u64, std::sync::Arc<Vec<u8>>);

/// Frames kept decoded at once (per reader, all links together).
const CACHED_FRAMES: usize = 8;

impl<'c> ChainReader<'c> {
    pub(crate) fn new(chain: &'c Chain, owners: &[Vec<Option<Supply>>]) -> Self {
        let n = chain.links.first().map_or(0, |l| l.manifest.entries.len());
        let mut supplies: Vec<Vec<(u64, u64, usize, usize)>> = vec![Vec::new(); n];
        for (k, per_link) in owners.iter().enumerate() {
            for (li, s) in per_link.iter().enumerate() {
                let Some(s) = s else { continue };
                if let Some(v) = supplies.get_mut(s.entry) {
                    v.extend(s.ranges.iter().map(|&(o, l)| (o, l, k, li)));
                }
            }
        }
        for v in &mut supplies {
            v.sort_unstable();
        }
        let pieces = chain
            .links
            .iter()
            .map(|link| {
                let mut per: Vec<Vec<(u64, u64, u64, u64)>> =
                    vec![Vec::new(); link.manifest.entries.len()];
                for (f, frame) in (1u64..).zip(link.manifest.data_frames_iter()) {
                    let mut pos = 0;
                    for p in frame {
                        if let Some(v) = per.get_mut(p.entry) {
                            v.push((p.offset, p.len, f, pos));
                        }
                        pos += p.len;
                    }
                }
                per
            })
            .collect();
        Self { chain, supplies, pieces, cache: std::sync::Mutex::new(Vec::new()) }
    }

    fn frame(&self, k: usize, f: u64) -> Result<std::sync::Arc<Vec<u8>>, TreeError> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = cache.iter().position(|(ck, cf, _)| (*ck, *cf) == (k, f)) {
            let hit = cache.remove(at);
            let bytes = hit.2.clone();
            cache.push(hit);
            return Ok(bytes);
        }
        drop(cache);
        let link = self.chain.links.get(k).ok_or(TreeError::Layout { what: "no such link" })?;
        let decode = || -> Result<Vec<u8>, TreeError> {
            let mut reader = Reader::open(link.source()?)?;
            let mut frame = reader.open_frame(f)?;
            let mut out = Vec::new();
            while let Some(len) = frame.next_len()? {
                let at = out.len();
                out.resize(at + usize::try_from(len).unwrap_or(usize::MAX), 0);
                frame.read_into(out.get_mut(at..).unwrap_or_default())?;
            }
            frame.close()?;
            Ok(out)
        };
        let bytes = std::sync::Arc::new(decode().map_err(|e| self.chain.blame(k, e))?);
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CACHED_FRAMES {
            cache.remove(0);
        }
        cache.push((k, f, bytes.clone()));
        Ok(bytes)
    }

    /// Fills `dst` with the bytes of entry `entry` of the newest checkpoint at `offset`
    /// (holes are zeros).
    pub(crate) fn read(&self, entry: usize, offset: u64, dst: &mut [u8]) -> Result<(), TreeError> {
        dst.fill(0);
        let end = offset + dst.len() as u64;
        let supplies = self.supplies.get(entry).map(Vec::as_slice).unwrap_or_default();
        let first = supplies.partition_point(|&(o, l, _, _)| o + l <= offset);
        let lost = || TreeError::Layout { what: "a supplied range its link does not store" };
        for &(o, l, k, li) in supplies.get(first..).unwrap_or_default() {
            if o >= end {
                break;
            }
            let (mut s, t) = (o.max(offset), (o + l).min(end));
            let pieces =
                self.pieces.get(k).and_then(|v| v.get(li)).map(Vec::as_slice).unwrap_or_default();
            while s < t {
                let at = pieces.partition_point(|&(po, pl, _, _)| po + pl <= s);
                // Bytes the supplying link holds as a hole are zeros (the block hashes
                // matched, so the newest checkpoint's bytes there are zeros too).
                let Some(&(po, pl, f, pos)) = pieces.get(at) else { break };
                if po > s {
                    s = po.min(t);
                    continue;
                }
                let n = (po + pl).min(t) - s;
                let bytes = self.frame(k, f)?;
                let from = usize::try_from(pos + (s - po)).unwrap_or(usize::MAX);
                let to = usize::try_from(s - offset).unwrap_or(usize::MAX);
                let len = usize::try_from(n).unwrap_or(usize::MAX);
                let src = bytes.get(from..from.saturating_add(len)).ok_or_else(lost)?;
                dst.get_mut(to..to.saturating_add(len)).ok_or_else(lost)?.copy_from_slice(src);
                s += n;
            }
        }
        Ok(())
    }
}
