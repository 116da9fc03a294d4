//! Writing a tree checkpoint.

use crate::error::io_err;
use crate::manifest::Piece;
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
    let mut w = Writer::new(sink, options.id);
    let manifest = c.manifest.encode();
    let mut f = w.open_frame(options.style)?;
    f.add(&manifest)?;
    f.close()?;
    let frames = c.manifest.data_frames();
    let inputs = Inputs { c, strict: options.strict, warnings: Mutex::new(Vec::new()) };
    let done = match options.style {
        Style::Raw => write_streamed(&mut w, &inputs, &frames, progress)?,
        style => write_pipelined(&mut w, &inputs, &frames, style, options.threads, progress)?,
    };
    let summary = w.finish()?;
    let mut warnings =
        inputs.warnings.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
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
        },
    ))
}

/// The files being read, and what changed under them.
struct Inputs<'c> {
    c: &'c Collected,
    strict: bool,
    warnings: Mutex<Vec<Warning>>,
}

impl Inputs<'_> {
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
        p: &Piece,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(), TreeError> {
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
    let mut done = 0u64;
    for pieces in frames {
        let mut f = w.open_frame(Style::Raw)?;
        for p in pieces {
            let mut failure = None;
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let mut at = p.offset;
            let added = f.add_streamed(len, |dst| {
                inputs.read(&mut files, p, at, dst).map(|()| at += dst.len() as u64).map_err(|e| {
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
        let mut at = 0;
        for p in pieces {
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let dst = mem.get_mut(at..at + len).unwrap_or_default();
            inputs.read(&mut files, p, p.offset, dst)?;
            inputs.piece_done(&mut files, p)?;
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
