//! Writing a tree checkpoint.

use crate::blocks::{BlockHasher, BlockTable, Pending, state_digest, stored_ranges};
use crate::error::io_err;
use crate::manifest::{BLOCK_SIZE, Manifest, ParentLink, Piece};
use crate::{Collected, TreeError, Warning};
use ckpt_frame_core::{CheckpointId, IoError, IoErrorKind, Sink, Style, Writer};
use ckpt_parallel::{LoadedFrame, ParallelError, Parallelism, write_loaded};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How to write.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// How frames store bytes.
    pub style: Style,
    /// The checkpoint's identity.
    pub id: CheckpointId,
    /// Worker threads compressing LZ4 frames.
    pub threads: usize,
    /// Refuse (rather than store as read, with a warning) a file that changes while it is
    /// read.
    pub strict: bool,
}

/// The checkpoint an incremental write builds on: its manifest, its block table and the
/// link the child records ([`read_parent`]).
#[derive(Debug, Clone)]
pub struct Parent {
    /// The parent's manifest.
    pub manifest: Manifest,
    /// The parent's block table.
    pub table: BlockTable,
    /// What the child records: the parent's id, state digest and name.
    pub link: ParentLink,
}

/// What a write produced.
#[derive(Debug, Clone)]
pub struct WriteSummary {
    /// The checkpoint's identity.
    pub id: CheckpointId,
    /// Stored length.
    pub stored_bytes: u64,
    /// File bytes checkpointed.
    pub data_bytes: u64,
    /// Frames, manifest included.
    pub frames: u64,
    /// Files that changed while they were read (each stored as read).
    pub warnings: Vec<Warning>,
    /// For an incremental checkpoint, the file bytes its parent already holds (not stored).
    pub inherited_bytes: u64,
    /// An incremental write found nearly every block changed (over 90% of a sample) and
    /// wrote a self-contained checkpoint instead.
    pub parent_dropped: bool,
}

/// Writes the checkpoint of `c` into `sink`; `progress` gets the file bytes done so far.
///
/// - [`Style::Raw`]: one thread streams each file through the writer in 64 KiB pieces
///   (read, hash, write while the piece is in cache); memory stays at a few hundred KiB.
///   Hashing runs at many GiB/s, so more threads would only wait on the kernel's copies.
/// - [`Style::Lz4`]: `threads` workers read and compress whole frames while this thread
///   writes them in order, with at most `2 × threads` frames in flight, so memory is
///   about `4 × threads` frames, whatever the input's size.
///
/// The bytes depend only on the inputs, the style, the frame size and `id`, never on
/// `threads`. A file that shrinks while it is read is padded with zeros to its listed
/// length, one that grows is stored up to it, one that is modified in place is stored as
/// read: each is named in [`WriteSummary::warnings`] (tar's policy), or refused with
/// [`WriteOptions::strict`].
///
/// # Errors
/// [`TreeError::Io`] reading inputs, [`TreeError::Changed`] if a file changed under
/// [`WriteOptions::strict`], [`TreeError::Format`] from the sink, [`TreeError::Threads`] if
/// no worker thread starts.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Style, VecSink};
/// use ckpt_tree::{CollectOptions, WriteOptions, collect, write_checkpoint};
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("state.bin"), vec![7u8; 100_000])?;
/// let c = collect(&[dir.path().join("state.bin")], &CollectOptions::new(1 << 20))?;
/// let options =
///     WriteOptions { style: Style::Lz4, id: CheckpointId::from_bytes([1; 16]), threads: 2, strict: true };
/// let (sink, summary) = write_checkpoint(VecSink::new(), &c, &options, &mut |_| {})?;
/// assert_eq!(summary.data_bytes, 100_000);
/// assert!(sink.into_inner().len() < 10_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_checkpoint<S: Sink>(
    sink: S,
    c: &Collected,
    options: &WriteOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<(S, WriteSummary), TreeError> {
    let hasher = BlockHasher::new(&c.manifest);
    let inputs = Inputs::files(c, options.strict, Some(&hasher));
    write_frames(sink, &c.manifest, &inputs, options, progress, || Ok(hasher.finish()))
}

/// Writes an incremental checkpoint of `c` on top of `parent`: every file's 4 KiB blocks
/// are hashed first (on `threads` threads), then only the blocks whose hash or length
/// differs from the parent's file at the same path are stored; the manifest records the
/// parent ([`Parent::link`]) and which ranges each file stores. Files the parent lacks are
/// stored whole. The checkpoint's block table covers every block, stored or not, so it can
/// be the parent of the next one. When over 90% of the blocks of a sample (the first
/// 128 KiB of every 8 MiB share, for states of at least 256 MiB) differ from the parent, it
/// writes a self-contained checkpoint instead, in one pass
/// ([`WriteSummary::parent_dropped`]).
///
/// # Errors
/// As [`write_checkpoint`].
pub fn write_incremental<S: Sink>(
    sink: S,
    c: &Collected,
    options: &WriteOptions,
    parent: &Parent,
    progress: &mut dyn FnMut(u64),
) -> Result<(S, WriteSummary), TreeError> {
    let hasher = BlockHasher::new(&c.manifest);
    let reading = Inputs::files(c, options.strict, Some(&hasher));
    // A sample first (the head of every share, spread over all the files): when nearly
    // every block differs from the parent, a self-contained checkpoint stores as much, needs
    // no parent, and is written in one pass instead of two; only the sample is read twice.
    let shares = shares_of(&c.manifest);
    let (sample, rest) = sample_and_rest(&shares);
    hash_shares(&reading, &sample, options.threads)?;
    if shares.len() >= SAMPLED_SHARES_MIN
        && changed_fraction(&hasher, &c.manifest, &sample, parent) > SELF_CONTAINED_ABOVE
    {
        let (sink, mut summary) = write_checkpoint(sink, c, options, progress)?;
        summary.parent_dropped = true;
        return Ok((sink, summary));
    }
    hash_shares(&reading, &rest, options.threads)?;
    let table = hasher.finish();
    let mut manifest = c.manifest.clone();
    let stored = stored_ranges(&manifest, &table, &parent.manifest, &parent.table);
    for (e, s) in manifest.entries.iter_mut().zip(stored) {
        e.stored = s;
    }
    manifest.parent = Some(parent.link.clone());
    let inherited = c.manifest.data_bytes() - manifest.data_bytes();
    let mut warnings =
        reading.warnings.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let inputs = Inputs::files(c, options.strict, None);
    let (sink, mut summary) =
        write_frames(sink, &manifest, &inputs, options, progress, || Ok(table))?;
    warnings.append(&mut summary.warnings);
    let mut seen = std::collections::HashSet::new();
    warnings.retain(|w| seen.insert(w.clone()));
    summary.warnings = warnings;
    summary.inherited_bytes = inherited;
    Ok((sink, summary))
}

/// The first this many bytes of every share are hashed first to estimate how much of the
/// state changed (1/64 of an 8 MiB share: a full write after a failed guess costs 1.6%
/// more reading; one share in 16 cost 6%, over the 5% a 100%-changed write may add).
const SAMPLE_LEN: u64 = 32 * BLOCK_SIZE;
/// States of fewer shares than this are not sampled: they are written incrementally.
const SAMPLED_SHARES_MIN: usize = 32;

/// Splits every share into its first [`SAMPLE_LEN`] bytes (the sample) and the rest.
fn sample_and_rest(shares: &[Piece]) -> (Vec<Piece>, Vec<Piece>) {
    let mut sample = Vec::with_capacity(shares.len());
    let mut rest = Vec::with_capacity(shares.len());
    for p in shares {
        let head = p.len.min(SAMPLE_LEN);
        sample.push(Piece { len: head, ..*p });
        if p.len > head {
            rest.push(Piece { entry: p.entry, offset: p.offset + head, len: p.len - head });
        }
    }
    (sample, rest)
}

/// Above this fraction of changed blocks in the sample, [`write_incremental`] writes a
/// self-contained checkpoint instead.
const SELF_CONTAINED_ABOVE: f64 = 0.9;

/// Reads what an incremental write needs of its parent checkpoint: the manifest (frame 0),
/// the block table (the last frame), and the state digest they give. `name` is recorded in
/// the child as a hint for finding the parent again.
///
/// # Errors
/// [`TreeError::Format`] for a damaged parent, [`TreeError::Manifest`] for an invalid
/// manifest or table, [`TreeError::Layout`] for a checkpoint that is not a tree checkpoint
/// or has no block table (written before manifest version 4).
pub fn read_parent<Src: ckpt_frame_core::Source>(
    source: Src,
    name: Vec<u8>,
) -> Result<Parent, TreeError> {
    let mut reader = ckpt_frame_core::Reader::open(source)?;
    let (manifest, table_bytes) = crate::restore::manifest_and_table(&mut reader)?;
    let table_bytes = table_bytes.ok_or(TreeError::Layout {
        what: "the parent has no block table (written before incremental checkpoints); write a full checkpoint first",
    })?;
    let table = BlockTable::decode(&table_bytes, &manifest).map_err(TreeError::Manifest)?;
    let id = reader.id().ok_or(TreeError::Layout { what: "the parent has no id" })?.to_bytes();
    let digest = state_digest(&manifest, &table_bytes);
    Ok(Parent { manifest, table, link: ParentLink { id, digest, name } })
}

/// Writes the newest checkpoint of `chain` again into `sink`, with its id, entries and block
/// table (so with its state digest: its own children stay valid): self-contained when
/// `onto` is `None` (fold), else on top of `chain.links[k]` for `onto = Some((k, name))`,
/// storing what the links newer than `k` stored (rebase; prune of the links between).
/// Every byte is read from the link that stores it, each chunk checked.
///
/// # Errors
/// [`TreeError::Chain`] for a link that fails its checks, [`TreeError::Format`] from the
/// sink, [`TreeError::Layout`] for `k` outside the chain.
pub fn write_from_chain<S: Sink>(
    sink: S,
    chain: &crate::chain::Chain,
    onto: Option<(usize, &[u8])>,
    style: Style,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<(S, WriteSummary), TreeError> {
    let owners = chain.owners()?;
    let target = chain.links.first().ok_or(TreeError::Layout { what: "empty chain" })?;
    let mut manifest = target.manifest.clone();
    manifest.parent = None;
    let keep = onto.as_ref().map_or(chain.links.len(), |(k, _)| *k);
    if let Some((k, name)) = &onto {
        let base = chain
            .links
            .get(*k)
            .filter(|_| *k > 0)
            .ok_or(TreeError::Layout { what: "rebase onto a link outside the chain" })?;
        manifest.parent =
            Some(ParentLink { id: base.id.to_bytes(), digest: base.digest, name: name.to_vec() });
    }
    let mut stored: Vec<Option<Vec<(u64, u64)>>> = vec![None; manifest.entries.len()];
    let mut inherits = vec![false; manifest.entries.len()];
    for (k, per_link) in owners.iter().enumerate() {
        for s in per_link.iter().flatten() {
            if k >= keep {
                if let Some(x) = inherits.get_mut(s.entry) {
                    *x = true;
                }
            } else if let Some(v) = stored.get_mut(s.entry) {
                v.get_or_insert_with(Vec::new).extend_from_slice(&s.ranges);
            }
        }
    }
    let mut inherited = 0;
    for (i, e) in manifest.entries.iter_mut().enumerate() {
        let total = e.content_len();
        e.stored = if inherits.get(i).copied().unwrap_or(false) {
            let mut ranges = stored.get_mut(i).and_then(Option::take).unwrap_or_default();
            ranges.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
            for (o, l) in ranges {
                match merged.last_mut() {
                    Some((mo, ml)) if *mo + *ml == o => *ml += l,
                    _ => merged.push((o, l)),
                }
            }
            Some(merged)
        } else {
            None
        };
        inherited += total - e.data_len();
    }
    let reader = crate::chain::ChainReader::new(chain, &owners);
    let c = Collected {
        manifest: target.manifest.clone(),
        sources: vec![None; target.manifest.entries.len()],
        warnings: Vec::new(),
    };
    let inputs = Inputs {
        c: &c,
        chain: Some(&reader),
        strict: false,
        warnings: Mutex::new(Vec::new()),
        hasher: None,
    };
    let options = WriteOptions { style, id: target.id, threads, strict: false };
    let (sink, mut summary) =
        write_frames(sink, &manifest, &inputs, &options, progress, || Ok(target.table.clone()))?;
    summary.inherited_bytes = inherited;
    Ok((sink, summary))
}

/// The files' content cut into shares of 8 MiB on the block grid, the unit of hashing work.
fn shares_of(manifest: &Manifest) -> Vec<Piece> {
    // A multiple of the block size: shares end on the block grid.
    const SHARE: u64 = 2048 * BLOCK_SIZE;
    let mut shares = Vec::new();
    for (i, e) in manifest.entries.iter().enumerate() {
        for (offset, len) in e.content_ranges() {
            let mut at = offset;
            while at < offset + len {
                let end = ((at / SHARE + 1) * SHARE).min(offset + len);
                shares.push(Piece { entry: i, offset: at, len: end - at });
                at = end;
            }
        }
    }
    shares
}

/// The fraction of the blocks of `shares` (hashed) whose hash or length differs from the
/// parent's, or that the parent lacks.
fn changed_fraction(
    hasher: &BlockHasher,
    manifest: &Manifest,
    shares: &[Piece],
    parent: &Parent,
) -> f64 {
    let by_path: std::collections::HashMap<&[u8], usize> = parent
        .manifest
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == crate::manifest::Kind::File)
        .map(|(i, e)| (e.path.as_slice(), i))
        .collect();
    let (mut changed, mut all) = (0u64, 0u64);
    for p in shares {
        let Some(e) = manifest.entries.get(p.entry) else { continue };
        let in_parent = by_path.get(e.path.as_slice()).copied();
        let psize = in_parent.and_then(|i| parent.manifest.entries.get(i)).map_or(0, |pe| pe.size);
        for j in p.offset / BLOCK_SIZE..(p.offset + p.len).div_ceil(BLOCK_SIZE) {
            all += 1;
            let same = in_parent.is_some_and(|pi| {
                crate::blocks::block_range(e.size, j) == crate::blocks::block_range(psize, j)
                    && hasher.hash(p.entry, j).is_some()
                    && hasher.hash(p.entry, j) == parent.table.hash(pi, j)
            });
            changed += u64::from(!same);
        }
    }
    #[allow(clippy::cast_precision_loss)] // A ratio of counts far below 2^52.
    if all == 0 { 0.0 } else { changed as f64 / all as f64 }
}

/// Hashes the blocks of `shares` on `threads` threads.
fn hash_shares(inputs: &Inputs<'_>, shares: &[Piece], threads: usize) -> Result<(), TreeError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut files = OpenFiles::default();
                let mut pending = Pending::default();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(p) = shares.get(k) else { break };
                    let mut at = p.offset;
                    while at < p.offset + p.len {
                        let n = usize::try_from((p.offset + p.len - at).min(1 << 20)).unwrap_or(0);
                        let dst = buf.get_mut(..n).unwrap_or_default();
                        if let Err(e) = inputs.read(&mut files, &mut pending, p, at, dst) {
                            failure
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get_or_insert(e);
                            next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                        at += n as u64;
                    }
                    // The file's last share: it must not have changed since it was listed
                    // (the data pass checks only the files with blocks to store).
                    if let Err(e) = inputs.piece_done(&mut files, p) {
                        failure
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                        next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                        return;
                    }
                }
                if let Some(h) = inputs.hasher {
                    h.flush(&mut pending);
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes the manifest frame, the data frames `manifest` lays out, and the block table
/// that `table` gives once the data is written.
fn write_frames<S: Sink>(
    sink: S,
    manifest: &Manifest,
    inputs: &Inputs<'_>,
    options: &WriteOptions,
    progress: &mut dyn FnMut(u64),
    table: impl FnOnce() -> Result<BlockTable, TreeError>,
) -> Result<(S, WriteSummary), TreeError> {
    let mut w = Writer::new(sink, options.id);
    let encoded = manifest.encode();
    let mut f = w.open_frame(options.style)?;
    f.add(&encoded)?;
    f.close()?;
    let frames = manifest.data_frames();
    let done = match options.style {
        Style::Raw => write_streamed(&mut w, inputs, &frames, progress)?,
        style => write_pipelined(&mut w, inputs, &frames, style, options.threads, progress)?,
    };
    let table = table()?.encode();
    let mut f = w.open_frame(options.style)?;
    f.add(&table)?;
    f.close()?;
    let summary = w.finish()?;
    let mut warnings = std::mem::take(
        &mut *inputs.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    // Workers reading pieces of one file in different frames may each have seen the change.
    let mut seen = std::collections::HashSet::new();
    warnings.retain(|w| seen.insert(w.clone()));
    Ok((
        w.into_sink(),
        WriteSummary {
            id: options.id,
            stored_bytes: summary.len,
            data_bytes: done,
            frames: summary.frames,
            warnings,
            inherited_bytes: 0,
            parent_dropped: false,
        },
    ))
}

/// The files being read, and what changed under them.
struct Inputs<'c> {
    c: &'c Collected,
    /// Read the files' bytes from a chain of checkpoints instead of `c`'s sources.
    chain: Option<&'c crate::chain::ChainReader<'c>>,
    strict: bool,
    warnings: Mutex<Vec<Warning>>,
    /// Hashes the blocks of what is read, when the table is built while writing.
    hasher: Option<&'c BlockHasher>,
}

impl<'c> Inputs<'c> {
    /// Reading `c`'s files from disk, hashing their blocks into `hasher` if given.
    fn files(c: &'c Collected, strict: bool, hasher: Option<&'c BlockHasher>) -> Self {
        Self { c, chain: None, strict, warnings: Mutex::new(Vec::new()), hasher }
    }

    fn changed(&self, path: &Path, how: &'static str) -> Result<(), TreeError> {
        if self.strict {
            return Err(TreeError::Changed { path: path.to_owned(), how });
        }
        tracing::warn!(path = %path.display(), "{how} while it was read; stored as read");
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Warning::Changed { path: path.to_owned(), how });
        Ok(())
    }

    /// Fills `dst` with the bytes of `p`'s file at `offset`: bytes past a shrunken end, or
    /// of a file removed since it was listed, are zeros.
    fn read(
        &self,
        files: &mut OpenFiles,
        pending: &mut Pending,
        p: &Piece,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), TreeError> {
        self.read_only(files, p, offset, dst)?;
        if let Some(h) = self.hasher {
            h.feed(pending, p.entry, offset, dst);
        }
        Ok(())
    }

    fn read_only(
        &self,
        files: &mut OpenFiles,
        p: &Piece,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), TreeError> {
        if let Some(chain) = self.chain {
            return chain.read(p.entry, offset, dst);
        }
        let (path, file) = files.get(self, p.entry)?;
        let Some(file) = file else {
            dst.fill(0);
            return Ok(());
        };
        let mut at = 0;
        while at < dst.len() {
            let rest = dst.get_mut(at..).unwrap_or_default();
            match file.read_at(rest, offset + at as u64) {
                Ok(0) => {
                    rest.fill(0);
                    return self.changed(path, "shrank");
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(TreeError::Io {
                        path: path.to_owned(),
                        op: "cannot read",
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    /// After a piece: if it ends the file's data, the file must not have grown or been
    /// modified since it was listed.
    fn piece_done(&self, files: &mut OpenFiles, p: &Piece) -> Result<(), TreeError> {
        if self.chain.is_some() {
            return Ok(());
        }
        let Some(e) = self.c.manifest.entries.get(p.entry) else { return Ok(()) };
        if e.data_end() != Some(p.offset + p.len) {
            return Ok(());
        }
        let (path, file) = files.get(self, p.entry)?;
        let Some(file) = file else { return Ok(()) };
        // One fstat: the size tells growth (a shrink was met reading), the time an
        // in-place rewrite.
        let meta = file.metadata().map_err(io_err(path, "cannot read"))?;
        if meta.len() > e.size {
            return self.changed(path, "grew");
        }
        let mtime = (meta.mtime(), u32::try_from(meta.mtime_nsec()).unwrap_or(0));
        if meta.len() == e.size && mtime != (e.mtime_sec, e.mtime_nsec) {
            return self.changed(path, "changed");
        }
        Ok(())
    }
}

fn write_streamed<S: Sink>(
    w: &mut Writer<S>,
    inputs: &Inputs<'_>,
    frames: &[Vec<Piece>],
    progress: &mut dyn FnMut(u64),
) -> Result<u64, TreeError> {
    let mut files = OpenFiles::default();
    let mut pending = Pending::default();
    let mut done = 0u64;
    for pieces in frames {
        let mut f = w.open_frame(Style::Raw)?;
        for p in pieces {
            let mut failure = None;
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let mut at = p.offset;
            let added = f.add_streamed(len, |dst| {
                let read = inputs.read(&mut files, &mut pending, p, at, dst);
                read.map(|()| at += dst.len() as u64).map_err(|e| {
                    failure = Some(e);
                    IoError::new(IoErrorKind::Other, "reading the input failed")
                })
            });
            if let Some(e) = failure {
                return Err(e);
            }
            added?;
            inputs.piece_done(&mut files, p)?;
            done += p.len;
        }
        f.close()?;
        progress(done);
    }
    if let Some(h) = inputs.hasher {
        h.flush(&mut pending);
    }
    Ok(done)
}

fn write_pipelined<S: Sink>(
    w: &mut Writer<S>,
    inputs: &Inputs<'_>,
    frames: &[Vec<Piece>],
    style: Style,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, TreeError> {
    let load = |i: u64, frame: &mut LoadedFrame| -> Result<(), TreeError> {
        let pieces =
            usize::try_from(i).ok().and_then(|i| frames.get(i)).ok_or(TreeError::Layout {
                what: "the pipeline asked for a frame the manifest lacks",
            })?;
        let lens = pieces.iter().map(|p| usize::try_from(p.len).unwrap_or(usize::MAX));
        let mem = frame.reset(style, lens);
        let mut files = OpenFiles::default();
        let mut pending = Pending::default();
        let mut at = 0;
        for p in pieces {
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let dst = mem.get_mut(at..at + len).unwrap_or_default();
            inputs.read(&mut files, &mut pending, p, p.offset, dst)?;
            inputs.piece_done(&mut files, p)?;
            at += len;
        }
        if let Some(h) = inputs.hasher {
            h.flush(&mut pending);
        }
        Ok(())
    };
    let mut done = 0u64;
    let par = Parallelism::threads(threads);
    write_loaded(w, frames.len() as u64, par, load, |frame| {
        done += frame.user_bytes;
        progress(done);
    })
    .map_err(|e| match e {
        ParallelError::Callback { error, .. } => error,
        ParallelError::Frame { error, .. } | ParallelError::Open(error) => error.into(),
        ParallelError::Pool(reason) => TreeError::Threads { reason },
        _ => TreeError::Threads { reason: e.to_string() },
    })?;
    Ok(done)
}

/// The input file last used, kept open while the next pieces come from it (`None`: it was
/// removed after it was listed).
#[derive(Default)]
struct OpenFiles {
    open: Option<(usize, PathBuf, Option<File>)>,
}

impl OpenFiles {
    fn get(
        &mut self,
        inputs: &Inputs<'_>,
        entry: usize,
    ) -> Result<(&Path, Option<&File>), TreeError> {
        if self.open.as_ref().is_none_or(|(i, _, _)| *i != entry) {
            let path =
                inputs.c.sources.get(entry).and_then(Option::as_ref).ok_or(TreeError::Layout {
                    what: "a data piece belongs to an entry that is not a file",
                })?;
            let file = match File::open(path) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    inputs.changed(path, "was removed")?;
                    None
                }
                Err(e) => {
                    return Err(TreeError::Io { path: path.clone(), op: "cannot open", source: e });
                }
            };
            self.open = Some((entry, path.clone(), file));
        }
        match &self.open {
            Some((_, path, file)) => Ok((path, file.as_ref())),
            None => Err(TreeError::Layout { what: "no input file is open" }),
        }
    }
}
