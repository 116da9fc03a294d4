//! Many frames encoded and restored at once, on a rayon pool.
//!
//! - [`write_frames`] encodes a plan of frames on `threads` workers, a window of frames at a
//!   time (memory: the window's input buffers and their encoded bytes, never the whole
//!   checkpoint), and appends them in order to any [`Writer`]. The bytes are exactly those
//!   the serial writer produces for the same plan, whatever the thread count or window.
//! - [`restore_frames`] restores frames through the checkpoint's index, each worker with its
//!   own source, decoding straight into the caller's buffers. The first error (in frame
//!   order) is returned with its frame; the other workers stop at their next frame.
//!
//! - [`write_loaded`] is the streaming form: workers load each frame's bytes themselves
//!   (from files, say) into reused buffers and encode them, while the calling thread appends
//!   finished frames in order. At most `window` frames are in flight, so memory is bounded
//!   by the window and the frame size, never by the input.
//! - [`split_into_frames`] and [`split_dests`] cut large regions into frames of a chosen
//!   size (and the restore destinations the same way).
//! - [`restore_with`] hands each worker's frames to a caller's visitor (which may, for
//!   example, write them into files at their offsets).
#![forbid(unsafe_code)]

use ckpt_frame_core::{
    CheckpointId, EncodedFrame, Error, FrameEncoder, FrameReader, Misuse, Reader, Sink, Source,
    Style, Writer, frame_size_bound,
};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

pub use ckpt_frame_core as format;

/// One frame of a plan: its style and its buffers, in order.
#[derive(Debug, Clone)]
pub struct FramePlan<'a> {
    /// How the frame stores its bytes.
    pub style: Style,
    /// Its buffers.
    pub buffers: Vec<&'a [u8]>,
}

/// How much to do at once.
///
/// Where the workers come from: a call made from inside a rayon pool of exactly `threads`
/// threads (or from outside any pool, when rayon's global pool has that many) runs in that
/// pool; otherwise in a pool kept for that thread count, so repeated calls do not start
/// threads. [`write_loaded`] does the same, except when called from a rayon worker thread:
/// its calling thread waits for the frames, which would hold one of that pool's workers,
/// so such a call gets a pool of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Frames in flight at once (at least 1); bounds memory.
    pub window: usize,
}

impl Parallelism {
    /// `threads` workers and a window of twice as many frames.
    pub fn threads(threads: usize) -> Self {
        let threads = threads.max(1);
        Self { threads, window: 2 * threads }
    }
}

/// A failure of a parallel write or restore. `E` is the error type of the caller's own
/// callbacks ([`write_loaded`]'s loader, [`restore_with`]'s visitor); the functions without
/// callbacks use the default, which never occurs.
#[derive(Debug)]
#[non_exhaustive]
pub enum ParallelError<E = std::convert::Infallible> {
    /// Frame `frame` failed in the format layer (the first failure in frame order).
    Frame {
        /// Its index.
        frame: u64,
        /// What went wrong.
        error: Error,
    },
    /// The caller's callback failed for frame `frame` (the first failure in frame order).
    Callback {
        /// Its index.
        frame: u64,
        /// What the callback returned.
        error: E,
    },
    /// Opening the checkpoint (its index) failed.
    Open(Error),
    /// The thread pool could not be built.
    Pool(String),
    /// The restore plan has another number of frames than the checkpoint: a shorter plan
    /// would restore a prefix and a longer one ask for frames that do not exist.
    FrameCount {
        /// Frames in the plan.
        planned: u64,
        /// Frames in the checkpoint's index.
        found: u64,
    },
}

impl<E: fmt::Display> fmt::Display for ParallelError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame { frame, error } => write!(f, "frame {frame}: {error}"),
            Self::Callback { frame, error } => write!(f, "frame {frame}: {error}"),
            Self::Open(e) => write!(f, "cannot open the checkpoint: {e}"),
            Self::Pool(e) => write!(f, "cannot start worker threads: {e}"),
            Self::FrameCount { planned, found } => {
                write!(f, "the restore plan has {planned} frames but the checkpoint holds {found}")
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ParallelError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Frame { error, .. } | Self::Open(error) => Some(error),
            Self::Callback { error, .. } => Some(error),
            Self::Pool(_) | Self::FrameCount { .. } => None,
        }
    }
}

/// Cuts `regions` into frames of at most `frame_size` bytes of data each, in order: a
/// region larger than a frame spans several frames, small regions share one, and an empty
/// region stays an empty buffer. [`split_dests`] makes the same cut of the restore
/// destinations, so a checkpoint written from this plan restores with it.
///
/// # Examples
/// ```
/// use ckpt_frame_core::Style;
/// use ckpt_parallel::split_into_frames;
/// let (big, small) = (vec![1u8; 10_000], vec![2u8; 300]);
/// let plan = split_into_frames(Style::Lz4, [&big[..], &small[..]], 4096);
/// let sizes: Vec<Vec<usize>> =
///     plan.iter().map(|f| f.buffers.iter().map(|b| b.len()).collect()).collect();
/// assert_eq!(sizes, [vec![4096], vec![4096], vec![1808, 300]]);
/// ```
pub fn split_into_frames<'a>(
    style: Style,
    regions: impl IntoIterator<Item = &'a [u8]>,
    frame_size: usize,
) -> Vec<FramePlan<'a>> {
    cut(regions, frame_size, <[u8]>::split_at)
        .into_iter()
        .map(|buffers| FramePlan { style, buffers })
        .collect()
}

/// The cut [`split_into_frames`] makes, applied to restore destinations of the same
/// lengths: the `dests` argument of [`restore_frames`].
///
/// # Examples
/// ```
/// use ckpt_parallel::split_dests;
/// let (mut big, mut small) = (vec![0u8; 10_000], vec![0u8; 300]);
/// let dests = split_dests([&mut big[..], &mut small[..]], 4096);
/// assert_eq!(dests.len(), 3);
/// ```
pub fn split_dests<'a>(
    regions: impl IntoIterator<Item = &'a mut [u8]>,
    frame_size: usize,
) -> Vec<Vec<&'a mut [u8]>> {
    cut(regions, frame_size, <[u8]>::split_at_mut)
}

/// Packs pieces of `regions` into frames of `frame_size` bytes; `split(r, n)` cuts a region
/// after `n` bytes.
fn cut<R: SliceLen>(
    regions: impl IntoIterator<Item = R>,
    frame_size: usize,
    split: impl Fn(R, usize) -> (R, R),
) -> Vec<Vec<R>> {
    let size = frame_size.max(1);
    let (mut frames, mut current, mut room) = (Vec::new(), Vec::new(), size);
    for mut region in regions {
        if region.len() == 0 {
            current.push(region);
            continue;
        }
        while region.len() > 0 {
            let n = region.len().min(room);
            let (piece, rest) = split(region, n);
            current.push(piece);
            region = rest;
            room -= n;
            if room == 0 {
                frames.push(std::mem::take(&mut current));
                room = size;
            }
        }
    }
    if !current.is_empty() {
        frames.push(current);
    }
    frames
}

/// Shared and exclusive byte slices alike.
trait SliceLen {
    fn len(&self) -> usize;
}

impl SliceLen for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

impl SliceLen for &mut [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
}

/// A new pool of `threads` workers: kept by [`pool_for`], or of its own for a
/// [`write_loaded`] called from a rayon worker.
fn pool<E>(threads: usize) -> Result<rayon::ThreadPool, ParallelError<E>> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ParallelError::Pool(e.to_string()))
}

/// Pools kept for the calls whose work never blocks, by thread count, so that restoring or
/// writing many checkpoints does not start and stop threads on every call.
const SHARED_POOLS_MAX: usize = 8;

/// Runs `work` on `threads` workers: in the pool the caller is already in (or rayon's
/// global pool) when it has that many threads, otherwise in a pool kept for that count.
fn run_on<R: Send, E>(
    threads: usize,
    work: impl FnOnce() -> R + Send,
) -> Result<R, ParallelError<E>> {
    Ok(in_pool(pool_for(threads)?.as_ref(), work))
}

/// A scope in `pool`, or in the current pool for `None`, whose body runs on this thread.
fn in_place_scope_of<'scope, R>(
    pool: Option<&rayon::ThreadPool>,
    op: impl FnOnce(&rayon::Scope<'scope>) -> R,
) -> R {
    match pool {
        Some(p) => p.in_place_scope(op),
        None => rayon::in_place_scope(op),
    }
}

/// Runs `work` in `pool`, or in the current pool for `None`.
fn in_pool<R: Send>(
    pool: Option<&std::sync::Arc<rayon::ThreadPool>>,
    work: impl FnOnce() -> R + Send,
) -> R {
    match pool {
        Some(kept) => kept.install(work),
        None => work(),
    }
}

/// The pool [`run_on`] runs in: `None` for the current one (it has `threads` threads).
fn pool_for<E>(
    threads: usize,
) -> Result<Option<std::sync::Arc<rayon::ThreadPool>>, ParallelError<E>> {
    use std::sync::{Arc, OnceLock};
    type Kept = Vec<(usize, Arc<rayon::ThreadPool>)>;
    static POOLS: OnceLock<Mutex<Kept>> = OnceLock::new();
    let threads = threads.max(1);
    if rayon::current_num_threads() == threads {
        return Ok(None);
    }
    let pools = POOLS.get_or_init(|| Mutex::new(Vec::new()));
    let mut pools = pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, p)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(Some(Arc::clone(p)));
    }
    let p = Arc::new(pool(threads)?);
    if pools.len() < SHARED_POOLS_MAX {
        pools.push((threads, Arc::clone(&p)));
    }
    Ok(Some(p))
}

/// Encodes `plan` on `par.threads` workers and appends the frames, in order, to `writer`
/// (which may already hold frames). Returns how many frames were written.
///
/// # Errors
/// [`ParallelError::Frame`] with the first frame (in order) whose encoding or append
/// failed; frames before it are written, none after it.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer};
/// use ckpt_parallel::{FramePlan, Parallelism, write_frames};
/// let data: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 100_000]).collect();
/// let plan = data.iter().map(|d| FramePlan { style: Style::Lz4, buffers: vec![d.as_slice()] });
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([1; 16]));
/// assert_eq!(write_frames(&mut w, plan, Parallelism::threads(4))?, 8);
/// w.finish().unwrap();
/// # Ok::<(), ckpt_parallel::ParallelError>(())
/// ```
pub fn write_frames<'a, S: Sink>(
    writer: &mut Writer<S>,
    plan: impl IntoIterator<Item = FramePlan<'a>>,
    par: Parallelism,
) -> Result<u64, ParallelError> {
    let id = writer.id();
    let mut plan = plan.into_iter();
    let mut written = 0u64;
    // Encoded LZ4 frames' buffers, reused from batch to batch.
    let mut spare: Vec<Vec<u8>> = Vec::new();
    loop {
        let batch: Vec<FramePlan<'a>> = plan.by_ref().take(par.window.max(1)).collect();
        if batch.is_empty() {
            return Ok(written);
        }
        let first = writer.frames_written();
        if let Some(written_here) = write_in_place(writer, &batch, par.threads, &mut spare)? {
            written += written_here;
            continue;
        }
        let pool = pool_for(par.threads)?;
        let encoded = encode_into_spare(id, &batch, first, &mut spare, pool.as_ref());
        for (i, (result, bytes)) in encoded.into_iter().zip(&spare).enumerate() {
            let frame = first + i as u64;
            let summary = result.map_err(|error| ParallelError::Frame { frame, error })?;
            writer
                .append_encoded(bytes, &summary)
                .map_err(|error| ParallelError::Frame { frame, error })?;
            written += 1;
        }
    }
}

/// Encodes `batch` on the workers into the sink's memory when the sink lends it
/// ([`Writer::append_in_place`]); returns `None` when it does not. A batch of RAW frames is
/// encoded straight into its exact room, so nothing moves. A batch with LZ4 frames, whose
/// sizes are known only once compressed, is encoded into the workers' reused buffers and
/// then copied into exact room by the workers at once: encoding into worst-case room
/// instead and closing the gaps afterwards leaves those moves to the calling thread alone
/// (on incompressible data nearly a second copy of the batch, in series), which measured
/// slower on two threads (docs/performance.md).
fn write_in_place<S: Sink>(
    writer: &mut Writer<S>,
    batch: &[FramePlan<'_>],
    threads: usize,
    spare: &mut Vec<Vec<u8>>,
) -> Result<Option<u64>, ParallelError> {
    let id = writer.id();
    let first = writer.frames_written();
    let pool = pool_for(threads)?;
    if batch.iter().all(|f| f.style == Style::Raw) {
        let room: Option<Vec<usize>> = batch
            .iter()
            .map(|f| {
                let bound = frame_size_bound(f.style, f.buffers.iter().map(|b| <[u8]>::len(b)))?;
                usize::try_from(bound).ok()
            })
            .collect();
        let Some(room) = room else {
            return Ok(None);
        };
        let appended = writer.append_in_place(&room, |slots| {
            let slots = Mutex::new(slots.into_iter().map(Some).collect::<Vec<_>>());
            in_pool(pool.as_ref(), || {
                encode_each(id, batch, |enc, i, f| {
                    take_slot(&slots, i)?.encode(enc, f.style, &f.buffers)
                })
            })
        });
        return appended.map_err(|e| ParallelError::Frame {
            frame: writer.frames_written().max(first),
            error: e,
        });
    }
    let encoded = encode_into_spare(id, batch, first, spare, pool.as_ref());
    // Frames before the first failure go in; that failure is reported in frame order.
    let ok = encoded.iter().take_while(|r| r.is_ok()).count();
    let room: Vec<usize> = encoded
        .iter()
        .take(ok)
        .filter_map(|r| r.as_ref().ok().and_then(|f| usize::try_from(f.len).ok()))
        .collect();
    let frames: Vec<EncodedFrame> =
        encoded.iter().take(ok).filter_map(|r| r.as_ref().ok().copied()).collect();
    let bytes: &[Vec<u8>] = spare;
    let appended = writer.append_in_place(&room, |slots| {
        let slots = Mutex::new(slots.into_iter().map(Some).collect::<Vec<_>>());
        in_pool(pool.as_ref(), || {
            (0..room.len())
                .into_par_iter()
                .map(|i| {
                    let slot = take_slot(&slots, i)?;
                    match (bytes.get(i), frames.get(i)) {
                        (Some(b), Some(f)) => slot.copy_encoded(b, f),
                        _ => Err(Error::InvalidUse(Misuse::ForeignFrame)),
                    }
                })
                .collect()
        })
    });
    let appended = appended.map_err(|error| ParallelError::Frame {
        frame: writer.frames_written().max(first),
        error,
    })?;
    if let Some(Err(error)) = encoded.into_iter().nth(ok) {
        return Err(ParallelError::Frame { frame: first + ok as u64, error });
    }
    Ok(appended)
}

/// Runs `encode` for every frame of `batch` (with its position) on the current pool's
/// workers, each worker with an encoder of its own; the results are in frame order.
fn encode_each(
    id: CheckpointId,
    batch: &[FramePlan<'_>],
    encode: impl Fn(&mut FrameEncoder, usize, &FramePlan<'_>) -> Result<EncodedFrame, Error> + Sync,
) -> Vec<Result<EncodedFrame, Error>> {
    batch
        .par_iter()
        .enumerate()
        .map_init(|| FrameEncoder::new(id), |enc, (i, f)| encode(enc, i, f))
        .collect()
}

/// Encodes every frame of `batch` on the workers into `spare[i]` (grown to the batch,
/// reused from batch to batch); the results are in frame order.
fn encode_into_spare(
    id: CheckpointId,
    batch: &[FramePlan<'_>],
    first: u64,
    spare: &mut Vec<Vec<u8>>,
    pool: Option<&std::sync::Arc<rayon::ThreadPool>>,
) -> Vec<Result<EncodedFrame, Error>> {
    if spare.len() < batch.len() {
        spare.resize_with(batch.len(), Vec::new);
    }
    let outs = Mutex::new(spare.iter_mut().map(Some).collect::<Vec<_>>());
    in_pool(pool, || {
        encode_each(id, batch, |enc, i, f| {
            enc.encode(first + i as u64, f.style, &f.buffers, take_slot(&outs, i)?)
        })
    })
}

/// Takes item `i` of a list shared by the workers (each index is taken once).
fn take_slot<T>(list: &Mutex<Vec<Option<T>>>, i: usize) -> Result<T, Error> {
    let mut list = list.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    list.get_mut(i).and_then(Option::take).ok_or(Error::InvalidUse(Misuse::ForeignFrame))
}

/// Restores frames through the index: `dests[i]` receives frame `i`'s buffers (each slice
/// must have the written length), and the plan must cover every frame of the checkpoint.
/// Each worker opens its own source with `open`.
///
/// # Errors
/// [`ParallelError::Open`] if the checkpoint's index cannot be read;
/// [`ParallelError::FrameCount`], before anything is restored, if `dests` has another
/// number of frames than the checkpoint; otherwise [`ParallelError::Frame`] with the first
/// failing frame in order (corruption, plan mismatch, I/O). Workers stop taking frames once
/// one failed.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink, Writer};
/// use ckpt_parallel::{Parallelism, restore_frames};
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([1; 16]));
/// for i in 0..4u8 {
///     let data = vec![i; 1000];
///     let mut f = w.open_frame(Style::Raw).unwrap();
///     f.add(&data).unwrap();
///     f.close().unwrap();
/// }
/// w.finish().unwrap();
/// let bytes = w.into_sink().into_inner();
/// let mut back = vec![vec![0u8; 1000]; 4];
/// let mut dests: Vec<Vec<&mut [u8]>> = back.iter_mut().map(|b| vec![b.as_mut_slice()]).collect();
/// restore_frames(|| Ok(SliceSource::new(&bytes)), &mut dests, Parallelism::threads(2))?;
/// assert!(back.iter().enumerate().all(|(i, b)| b.iter().all(|&x| usize::from(x) == i)));
/// # Ok::<(), ckpt_parallel::ParallelError>(())
/// ```
pub fn restore_frames<S, F>(
    open: F,
    dests: &mut [Vec<&mut [u8]>],
    par: Parallelism,
) -> Result<(), ParallelError>
where
    S: Source,
    F: Fn() -> Result<S, Error> + Sync,
{
    // Fail early, on this thread, if the index is unreadable or the plan does not cover
    // the checkpoint: a short plan would restore a prefix and report success.
    let index = open().and_then(Reader::open).map_err(ParallelError::Open)?;
    let found = index.frame_count().unwrap_or(0);
    let planned = dests.len() as u64;
    if planned != found {
        return Err(ParallelError::FrameCount { planned, found });
    }
    let stop = AtomicBool::new(false);
    let results: Vec<Option<Result<(), Error>>> = run_on(par.threads, || {
        dests
            .par_iter_mut()
            .enumerate()
            .map_init(
                || None,
                |reader: &mut Option<Reader<S>>, (i, bufs)| {
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    let result = match reader {
                        Some(r) => restore_one(r, i as u64, bufs, &stop),
                        None => open()
                            .and_then(Reader::open)
                            .and_then(|r| restore_one(reader.insert(r), i as u64, bufs, &stop)),
                    };
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    Some(result)
                },
            )
            .collect()
    })?;
    for (i, r) in results.into_iter().enumerate() {
        if let Some(Err(error)) = r {
            return Err(ParallelError::Frame { frame: i as u64, error });
        }
    }
    Ok(())
}

fn restore_one<S: Source>(
    reader: &mut Reader<S>,
    index: u64,
    bufs: &mut [&mut [u8]],
    stop: &AtomicBool,
) -> Result<(), Error> {
    let mut frame = reader.open_frame(index)?;
    for b in bufs.iter_mut() {
        if stop.load(Ordering::Relaxed) {
            // Another frame failed: leave this one; its result is not reported.
            return Ok(());
        }
        frame.read_into(b)?;
    }
    frame.close().map(|_| ())
}

/// A frame's input as a loader fills it: its style and its buffers, back to back in memory
/// that starts on a cache line (the kernel reads into 16-byte-offset memory, where large
/// `malloc` blocks start, about four times slower). Workers reuse these between frames.
#[derive(Debug)]
pub struct LoadedFrame {
    style: Style,
    mem: Vec<u8>,
    start: usize,
    lens: Vec<usize>,
}

impl Default for LoadedFrame {
    fn default() -> Self {
        Self { style: Style::Raw, mem: Vec::new(), start: 0, lens: Vec::new() }
    }
}

const CACHE_LINE: usize = 64;

impl LoadedFrame {
    /// Makes this a frame of `style` whose buffers have `lens`, and returns the memory to
    /// fill with their bytes, back to back (reusing the previous allocation).
    pub fn reset(&mut self, style: Style, lens: impl IntoIterator<Item = usize>) -> &mut [u8] {
        self.style = style;
        self.lens.clear();
        self.lens.extend(lens);
        let total = self.lens.iter().fold(0usize, |a, &l| a.saturating_add(l));
        if self.mem.len() < total.saturating_add(CACHE_LINE) {
            self.mem = vec![0u8; total.saturating_add(CACHE_LINE)];
        }
        let start = self.mem.as_ptr().align_offset(CACHE_LINE);
        self.start = if start < CACHE_LINE { start } else { 0 };
        self.mem.get_mut(self.start..self.start + total).unwrap_or_default()
    }

    /// The frame's style.
    pub fn style(&self) -> Style {
        self.style
    }

    /// The buffers' lengths.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// The frame's buffers, as filled after [`reset`](Self::reset).
    pub fn buffers(&self) -> Vec<&[u8]> {
        let mut at = self.start;
        self.lens
            .iter()
            .map(|&len| {
                let piece = self.mem.get(at..at.saturating_add(len)).unwrap_or_default();
                at = at.saturating_add(len);
                piece
            })
            .collect()
    }
}

/// What the tasks of [`write_loaded`] share: reusable buffers and encoders, and the first
/// failure so far (frames at or past it are not loaded).
struct Pipeline {
    limit: AtomicU64,
    inputs: Mutex<Vec<LoadedFrame>>,
    outputs: Mutex<Vec<Vec<u8>>>,
    encoders: Mutex<Vec<FrameEncoder>>,
}

/// Sends a task's verdict even when the task unwinds, so the appender never waits for a
/// frame that will not come (the scope then re-raises the panic).
struct Verdict<'t, E> {
    index: u64,
    to: &'t mpsc::Sender<(u64, Done<E>)>,
    sent: bool,
}

impl<E> Verdict<'_, E> {
    fn send(mut self, done: Done<E>) {
        self.sent = true;
        // The appender stops listening only after a failure; nothing is left to tell it.
        let _ = self.to.send((self.index, done));
    }
}

impl<E> Drop for Verdict<'_, E> {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.to.send((self.index, Done::Panicked));
        }
    }
}

fn take<T: Default>(pool: &Mutex<Vec<T>>) -> T {
    take_or(pool, T::default)
}

fn take_or<T>(pool: &Mutex<Vec<T>>, make: impl FnOnce() -> T) -> T {
    pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_else(make)
}

fn give<T>(pool: &Mutex<Vec<T>>, item: T) {
    pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(item);
}

/// A worker's verdict on one frame.
enum Done<E> {
    Encoded(Vec<u8>, EncodedFrame),
    LoadFailed(E),
    EncodeFailed(Error),
    /// The task unwound; the scope re-raises its panic.
    Panicked,
    /// Not loaded: a frame before it failed.
    Skipped,
}

/// Appends `frames` frames to `writer`, each loaded by `load(i, &mut frame)` (for the i-th
/// of these frames) and encoded on `par.threads` rayon workers, while the calling thread
/// appends finished frames in order and calls `progress` after each. At most `par.window`
/// frames are loaded or encoded but not yet appended, so memory stays near
/// `(threads + window) × frame size` whatever the input's size. The bytes are exactly those
/// the serial writer produces for the same frames.
///
/// # Errors
/// The first failure in frame order: [`ParallelError::Callback`] if `load` failed,
/// [`ParallelError::Frame`] if encoding or appending failed. The frames before it are
/// appended, none after it; workers stop taking frames past it at once.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer};
/// use ckpt_parallel::{LoadedFrame, Parallelism, write_loaded};
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([1; 16]));
/// let load = |i: u64, f: &mut LoadedFrame| -> Result<(), std::io::Error> {
///     f.reset(Style::Lz4, [60_000, 40_000]).fill(i as u8);
///     Ok(())
/// };
/// let mut appended = 0;
/// write_loaded(&mut w, 6, Parallelism::threads(2), load, |_| appended += 1)?;
/// assert_eq!((appended, w.finish().unwrap().frames), (6, 6));
/// # Ok::<(), ckpt_parallel::ParallelError<std::io::Error>>(())
/// ```
pub fn write_loaded<S, L, E>(
    writer: &mut Writer<S>,
    frames: u64,
    par: Parallelism,
    load: L,
    mut progress: impl FnMut(&EncodedFrame),
) -> Result<u64, ParallelError<E>>
where
    S: Sink,
    L: Fn(u64, &mut LoadedFrame) -> Result<(), E> + Sync,
    E: Send,
{
    // Tasks never wait for each other (the calling thread starts a frame's task only once
    // the frame is inside the window), so they can share a pool with other callers. The
    // calling thread blocks while it waits for frames, so it must not be one of that
    // pool's workers: from inside a rayon pool the call gets a pool of its own.
    let pool = if rayon::current_thread_index().is_some() {
        Some(std::sync::Arc::new(pool(par.threads)?))
    } else {
        pool_for(par.threads)?
    };
    let id = writer.id();
    let first = writer.frames_written();
    let window = par.window.max(1) as u64;
    let shared = Pipeline {
        limit: AtomicU64::new(frames),
        inputs: Mutex::new(Vec::new()),
        outputs: Mutex::new(Vec::new()),
        encoders: Mutex::new(Vec::new()),
    };
    let (done_tx, done_rx) = mpsc::channel::<(u64, Done<E>)>();
    let mut failure: Option<(u64, Done<E>)> = None;
    in_place_scope_of(pool.as_deref(), |scope| {
        let (shared, load, done_tx) = (&shared, &load, &done_tx);
        let start = |i: u64| {
            scope.spawn(move |_| {
                let verdict = Verdict { index: i, to: done_tx, sent: false };
                if i >= shared.limit.load(Ordering::Acquire) {
                    return verdict.send(Done::Skipped);
                }
                let mut input = take(&shared.inputs);
                let done = if let Err(e) = load(i, &mut input) {
                    Done::LoadFailed(e)
                } else {
                    let mut out = take(&shared.outputs);
                    let mut encoder = take_or(&shared.encoders, || FrameEncoder::new(id));
                    let buffers = input.buffers();
                    let done = match encoder.encode(first + i, input.style(), &buffers, &mut out) {
                        Ok(frame) => Done::Encoded(out, frame),
                        Err(e) => Done::EncodeFailed(e),
                    };
                    give(&shared.encoders, encoder);
                    done
                };
                give(&shared.inputs, input);
                if !matches!(done, Done::Encoded(..)) {
                    shared.limit.fetch_min(i, Ordering::AcqRel);
                }
                verdict.send(done);
            });
        };
        let mut started = 0u64;
        while started < frames.min(window) {
            start(started);
            started += 1;
        }
        let mut waiting: BTreeMap<u64, Done<E>> = BTreeMap::new();
        let mut next = 0u64;
        while next < frames {
            let Some(done) = waiting.remove(&next) else {
                match done_rx.recv() {
                    Ok((i, done)) => {
                        waiting.insert(i, done);
                        continue;
                    }
                    Err(mpsc::RecvError) => break,
                }
            };
            match done {
                Done::Encoded(bytes, frame) => {
                    if let Err(e) = writer.append_encoded(&bytes, &frame) {
                        failure = Some((next, Done::EncodeFailed(e)));
                        break;
                    }
                    give(&shared.outputs, bytes);
                    progress(&frame);
                    next += 1;
                    if started < frames {
                        start(started);
                        started += 1;
                    }
                }
                failed => {
                    failure = Some((next, failed));
                    break;
                }
            }
        }
        // Frames already started finish (or skip) on their own; the scope waits for them.
        shared.limit.fetch_min(next, Ordering::AcqRel);
    });
    match failure {
        None => Ok(frames),
        Some((i, Done::LoadFailed(error))) => {
            Err(ParallelError::Callback { frame: first + i, error })
        }
        Some((i, Done::EncodeFailed(error))) => {
            Err(ParallelError::Frame { frame: first + i, error })
        }
        Some((i, Done::Panicked | Done::Skipped | Done::Encoded(..))) => {
            unreachable!(
                "frame {i}: a panic is re-raised by the scope; skips and successes are not failures"
            )
        }
    }
}

/// Restores every frame through the index on `par.threads` workers: each worker opens its
/// own source with `open` and hands each frame it takes to `visit`, which reads the frame's
/// buffers; the frame is then closed, which checks its footer and that every buffer was
/// read.
///
/// # Errors
/// [`ParallelError::Open`] if the index cannot be read; otherwise the first failure in frame
/// order: [`ParallelError::Callback`] from `visit`, [`ParallelError::Frame`] from the
/// format (corruption, truncation, I/O). Workers stop taking frames once one failed.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink, Writer};
/// use ckpt_parallel::{Parallelism, restore_with};
/// use std::sync::Mutex;
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([1; 16]));
/// let data: Vec<[u8; 1000]> = (0..4u8).map(|i| [i; 1000]).collect();
/// for d in &data {
///     let mut f = w.open_frame(Style::Lz4).unwrap();
///     f.add(d).unwrap();
///     f.close().unwrap();
/// }
/// w.finish().unwrap();
/// let bytes = w.into_sink().into_inner();
/// let sums = Mutex::new(vec![0u64; 4]);
/// restore_with(|| Ok(SliceSource::new(&bytes)), Parallelism::threads(2), |frame| {
///     let data = frame.read_to_vec()?.unwrap_or_default();
///     let index = usize::try_from(frame.index()).unwrap_or(usize::MAX);
///     sums.lock().unwrap()[index] = data.iter().map(|&b| u64::from(b)).sum();
///     Ok::<(), ckpt_frame_core::Error>(())
/// })?;
/// assert_eq!(sums.into_inner().unwrap(), [0, 1000, 2000, 3000]);
/// # Ok::<(), ckpt_parallel::ParallelError<ckpt_frame_core::Error>>(())
/// ```
pub fn restore_with<S, O, V, E>(open: O, par: Parallelism, visit: V) -> Result<(), ParallelError<E>>
where
    S: Source,
    O: Fn() -> Result<S, Error> + Sync,
    V: for<'f, 'r> Fn(&'f mut FrameReader<'r, S>) -> Result<(), E> + Sync,
    E: Send,
{
    let count =
        open().and_then(Reader::open).map_err(ParallelError::Open)?.frame_count().unwrap_or(0);
    let frames: Vec<u64> = (0..count).collect();
    restore_frames_with(open, &frames, par, visit)
}

/// [`restore_with`] for some frames only (ascending indices, as a partial restore needs):
/// frames not listed are never read.
///
/// # Errors
/// As [`restore_with`]; an index past the checkpoint's last frame is a
/// [`ParallelError::Frame`] for that index.
pub fn restore_frames_with<S, O, V, E>(
    open: O,
    frames: &[u64],
    par: Parallelism,
    visit: V,
) -> Result<(), ParallelError<E>>
where
    S: Source,
    O: Fn() -> Result<S, Error> + Sync,
    V: for<'f, 'r> Fn(&'f mut FrameReader<'r, S>) -> Result<(), E> + Sync,
    E: Send,
{
    let limit = AtomicU64::new(u64::MAX);
    let results: Vec<Option<Result<(), ParallelError<E>>>> = run_on(par.threads, || {
        frames
            .par_iter()
            .map_init(
                || None,
                |reader: &mut Option<Reader<S>>, &i| {
                    if i >= limit.load(Ordering::Acquire) {
                        return None;
                    }
                    let result = visit_one(reader, &open, i, &visit);
                    if result.is_err() {
                        limit.fetch_min(i, Ordering::AcqRel);
                    }
                    Some(result)
                },
            )
            .collect()
    })?;
    results.into_iter().flatten().find(Result::is_err).unwrap_or(Ok(()))
}

fn visit_one<S, O, V, E>(
    reader: &mut Option<Reader<S>>,
    open: &O,
    i: u64,
    visit: &V,
) -> Result<(), ParallelError<E>>
where
    S: Source,
    O: Fn() -> Result<S, Error>,
    V: for<'f, 'r> Fn(&'f mut FrameReader<'r, S>) -> Result<(), E>,
{
    let frame_err = |error| ParallelError::Frame { frame: i, error };
    let r = match reader {
        Some(r) => r,
        None => reader.insert(open().and_then(Reader::open).map_err(frame_err)?),
    };
    let mut frame = r.open_frame(i).map_err(frame_err)?;
    visit(&mut frame).map_err(|error| ParallelError::Callback { frame: i, error })?;
    frame.close().map(|_| ()).map_err(frame_err)
}
