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
//! **Status:** the engine and its tests. The CLI's `--threads`, the comparison runner
//! against `lz4`, `zstd` and `cp`, and peak-memory measurements come with the rest of the
//! parallel issue.
#![forbid(unsafe_code)]

use ckpt_frame_core::{Error, FrameEncoder, Reader, Sink, Source, Style, Writer};
use rayon::prelude::*;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// A failure of a parallel write or restore.
#[derive(Debug)]
#[non_exhaustive]
pub enum ParallelError {
    /// Frame `frame` failed (the first failure in frame order).
    Frame {
        /// Its index.
        frame: u64,
        /// What went wrong.
        error: Error,
    },
    /// Opening the checkpoint (its index) failed.
    Open(Error),
    /// The thread pool could not be built.
    Pool(String),
}

impl fmt::Display for ParallelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame { frame, error } => write!(f, "frame {frame}: {error}"),
            Self::Open(e) => write!(f, "cannot open the checkpoint: {e}"),
            Self::Pool(e) => write!(f, "cannot start worker threads: {e}"),
        }
    }
}

impl std::error::Error for ParallelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Frame { error, .. } | Self::Open(error) => Some(error),
            Self::Pool(_) => None,
        }
    }
}

fn pool(threads: usize) -> Result<rayon::ThreadPool, ParallelError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ParallelError::Pool(e.to_string()))
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
    let pool = pool(par.threads)?;
    let id = writer.id();
    let mut plan = plan.into_iter();
    let mut written = 0u64;
    loop {
        let batch: Vec<FramePlan<'a>> = plan.by_ref().take(par.window.max(1)).collect();
        if batch.is_empty() {
            return Ok(written);
        }
        let first = writer.frames_written();
        let encoded: Vec<_> = pool.install(|| {
            batch
                .par_iter()
                .enumerate()
                .map_init(
                    || FrameEncoder::new(id),
                    |enc, (i, f)| {
                        let mut out = Vec::new();
                        let index = first + i as u64;
                        enc.encode(index, f.style, &f.buffers, &mut out).map(|frame| (out, frame))
                    },
                )
                .collect()
        });
        for (i, result) in encoded.into_iter().enumerate() {
            let frame = first + i as u64;
            let (bytes, summary) = result.map_err(|error| ParallelError::Frame { frame, error })?;
            writer
                .append_encoded(&bytes, &summary)
                .map_err(|error| ParallelError::Frame { frame, error })?;
            written += 1;
        }
    }
}

/// Restores frames through the index: `dests[i]` receives frame `i`'s buffers (each slice
/// must have the written length). Each worker opens its own source with `open`.
///
/// # Errors
/// [`ParallelError::Open`] if the checkpoint's index cannot be read; otherwise
/// [`ParallelError::Frame`] with the first failing frame in order (corruption, plan
/// mismatch, I/O). Workers stop taking frames once one failed.
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
    // Fail early, on this thread, if the index is unreadable.
    let _index_is_readable = open().and_then(Reader::open).map_err(ParallelError::Open)?;
    let pool = pool(par.threads)?;
    let stop = AtomicBool::new(false);
    let results: Vec<Option<Result<(), Error>>> = pool.install(|| {
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
    });
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
