//! Writing a tree checkpoint.

use super::{Collected, TreeError, io_err};
use crate::manifest::Piece;
use ckpt_frame_core::{CheckpointId, Sink, Style, Writer};
use ckpt_parallel::{FramePlan, ParallelError, Parallelism, write_frames};
use std::fs::File;
use std::io::{self, Read};
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

/// Writes the checkpoint of `c` into `sink`. With `threads` > 1, that many data frames are
/// read and then encoded at once (memory: `threads` frames of input and their encoded
/// bytes); otherwise one frame at a time. The bytes are the same either way. `progress`
/// gets the file bytes done so far.
///
/// # Errors
/// [`TreeError::Io`] reading inputs, [`TreeError::Changed`] if a file changed size,
/// [`TreeError::Format`] from the sink.
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
    let mut reader = PieceReader::default();
    let mut done = 0u64;
    let window = threads.max(1);
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); window];
    for batch in frames.chunks(window) {
        for (pieces, buf) in batch.iter().zip(bufs.iter_mut()) {
            reader.fill(c, pieces, buf)?;
        }
        if window == 1 {
            let (Some(pieces), Some(buf)) = (batch.first(), bufs.first()) else { continue };
            let mut f = w.open_frame(style)?;
            f.add_all(split(pieces, buf))?;
            f.close()?;
        } else {
            let plan = batch
                .iter()
                .zip(&bufs)
                .map(|(pieces, buf)| FramePlan { style, buffers: split(pieces, buf).collect() });
            write_frames(&mut w, plan, Parallelism { threads: window, window }).map_err(
                |e| match e {
                    ParallelError::Frame { error, .. } | ParallelError::Open(error) => {
                        TreeError::Format(error)
                    }
                    _ => TreeError::Layout { what: "the worker threads could not be started" },
                },
            )?;
        }
        done += batch.iter().flatten().map(|p| p.len).sum::<u64>();
        progress(done);
    }
    let summary = w.finish()?;
    Ok((
        w.into_sink(),
        WriteSummary { id, stored_bytes: summary.len, data_bytes: done, frames: summary.frames },
    ))
}

/// Reads the files' bytes, piece by piece, keeping the current file open.
#[derive(Default)]
struct PieceReader {
    open: Option<(usize, File)>,
}

impl PieceReader {
    /// Fills `buf` with a data frame's pieces, checking each file still has its size.
    fn fill(
        &mut self,
        c: &Collected,
        pieces: &[Piece],
        buf: &mut Vec<u8>,
    ) -> Result<(), TreeError> {
        let total: u64 = pieces.iter().map(|p| p.len).sum();
        buf.resize(usize::try_from(total).unwrap_or(usize::MAX), 0);
        let mut at = 0;
        for p in pieces {
            let path =
                c.sources.get(p.entry).and_then(Option::as_ref).ok_or(TreeError::Layout {
                    what: "a data piece belongs to an entry that is not a file",
                })?;
            if self.open.as_ref().is_none_or(|(i, _)| *i != p.entry) {
                let file = File::open(path).map_err(io_err(path, "cannot open"))?;
                self.open = Some((p.entry, file));
            }
            let Some((_, file)) = self.open.as_mut() else { continue };
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let dst = buf.get_mut(at..at + len).unwrap_or_default();
            file.read_exact(dst).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    TreeError::Changed { path: path.clone(), how: "shrank" }
                }
                _ => TreeError::Io { path: path.clone(), op: "cannot read", source: e },
            })?;
            let size = c.manifest.entries.get(p.entry).map_or(0, |e| e.size);
            if p.offset + p.len == size
                && file.read(&mut [0u8; 1]).map_err(io_err(path, "cannot read"))? > 0
            {
                return Err(TreeError::Changed { path: path.clone(), how: "grew" });
            }
            at += len;
        }
        Ok(())
    }
}

/// A data frame's buffers: `buf` cut at its pieces' lengths.
fn split<'b>(pieces: &[Piece], buf: &'b [u8]) -> impl Iterator<Item = &'b [u8]> {
    let mut at = 0;
    pieces.iter().map(move |p| {
        let len = usize::try_from(p.len).unwrap_or(usize::MAX);
        let piece = buf.get(at..at + len).unwrap_or_default();
        at += len;
        piece
    })
}
