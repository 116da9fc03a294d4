//! Writing a tree checkpoint.

use crate::manifest::Piece;
use crate::{Collected, TreeError, error::io_err};
use ckpt_frame_core::{CheckpointId, IoError, IoErrorKind, Sink, Style, Writer};
use ckpt_parallel::{LoadedFrame, ParallelError, Parallelism, write_loaded};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What a write produced.
#[derive(Debug, Clone, Copy)]
pub struct WriteSummary {
    /// The checkpoint's identity.
    pub id: CheckpointId,
    /// Stored length.
    pub stored_bytes: u64,
    /// File bytes checkpointed.
    pub data_bytes: u64,
    /// Frames, manifest included.
    pub frames: u64,
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
/// `threads`.
///
/// # Errors
/// [`TreeError::Io`] reading inputs, [`TreeError::Changed`] if a file changed size,
/// [`TreeError::Format`] from the sink, [`TreeError::Threads`] if no worker thread starts.
pub fn write_checkpoint<S: Sink>(
    sink: S,
    c: &Collected,
    style: Style,
    id: CheckpointId,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<(S, WriteSummary), TreeError> {
    let mut w = Writer::new(sink, id);
    let manifest = c.manifest.encode();
    let mut f = w.open_frame(style)?;
    f.add(&manifest)?;
    f.close()?;
    let frames = c.manifest.data_frames();
    let done = match style {
        Style::Raw => write_streamed(&mut w, c, &frames, progress)?,
        _ => write_pipelined(&mut w, c, &frames, style, threads, progress)?,
    };
    let summary = w.finish()?;
    Ok((
        w.into_sink(),
        WriteSummary { id, stored_bytes: summary.len, data_bytes: done, frames: summary.frames },
    ))
}

fn write_streamed<S: Sink>(
    w: &mut Writer<S>,
    c: &Collected,
    frames: &[Vec<Piece>],
    progress: &mut dyn FnMut(u64),
) -> Result<u64, TreeError> {
    let mut files = OpenFiles::default();
    let mut done = 0u64;
    for pieces in frames {
        let mut f = w.open_frame(Style::Raw)?;
        for p in pieces {
            let (path, file) = files.get(c, p.entry)?;
            let mut failure = None;
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let mut at = p.offset;
            let added = f.add_streamed(len, |dst| {
                read_piece(file, path, at, dst).map(|()| at += dst.len() as u64).map_err(|e| {
                    failure = Some(e);
                    IoError::new(IoErrorKind::Other, "reading the input failed")
                })
            });
            if let Some(e) = failure {
                return Err(e);
            }
            added?;
            check_end(c, p, file, path)?;
            done += p.len;
        }
        f.close()?;
        progress(done);
    }
    Ok(done)
}

fn write_pipelined<S: Sink>(
    w: &mut Writer<S>,
    c: &Collected,
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
        let mut at = 0;
        for p in pieces {
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let (path, file) = files.get(c, p.entry)?;
            let dst = mem.get_mut(at..at + len).unwrap_or_default();
            read_piece(file, path, p.offset, dst)?;
            check_end(c, p, file, path)?;
            at += len;
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

/// The input file last used, kept open while the next pieces come from it.
#[derive(Default)]
struct OpenFiles {
    open: Option<(usize, PathBuf, File)>,
}

impl OpenFiles {
    fn get(&mut self, c: &Collected, entry: usize) -> Result<(&Path, &File), TreeError> {
        if self.open.as_ref().is_none_or(|(i, _, _)| *i != entry) {
            let path = c.sources.get(entry).and_then(Option::as_ref).ok_or(TreeError::Layout {
                what: "a data piece belongs to an entry that is not a file",
            })?;
            let file = File::open(path).map_err(io_err(path, "cannot open"))?;
            self.open = Some((entry, path.clone(), file));
        }
        match &self.open {
            Some((_, path, file)) => Ok((path, file)),
            None => Err(TreeError::Layout { what: "no input file is open" }),
        }
    }
}

/// Fills `dst` from `file` at `offset`; a short read means the file shrank.
fn read_piece(file: &File, path: &Path, offset: u64, dst: &mut [u8]) -> Result<(), TreeError> {
    file.read_exact_at(dst, offset).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => TreeError::Changed { path: path.to_owned(), how: "shrank" },
        _ => TreeError::Io { path: path.to_owned(), op: "cannot read", source: e },
    })
}

/// After a file's last piece: the file must not have grown since it was listed.
fn check_end(c: &Collected, p: &Piece, file: &File, path: &Path) -> Result<(), TreeError> {
    let size = c.manifest.entries.get(p.entry).map_or(0, |e| e.size);
    let data_end = c.manifest.entries.get(p.entry).and_then(|e| e.data_ranges().last().copied());
    if data_end.is_some_and(|(o, l)| p.offset + p.len == o + l)
        && file.read_at(&mut [0u8; 1], size).map_err(io_err(path, "cannot read"))? > 0
    {
        return Err(TreeError::Changed { path: path.to_owned(), how: "grew" });
    }
    Ok(())
}
