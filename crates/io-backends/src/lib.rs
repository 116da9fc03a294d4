//! Real storage under the ckpt checkpoint format: files, pipes, `O_DIRECT` and `mmap`
//! behind the [`Sink`](ckpt_frame_core::Sink) and [`Source`](ckpt_frame_core::Source)
//! traits of `ckpt-frame-core`, and durable publish of finished checkpoints.
//!
//! # Writing
//! - [`PublishSink`] writes a checkpoint file under a temporary name next to its final
//!   path and publishes it with [`PublishSink::commit`]: flush, `fsync` of the file,
//!   `rename` over the final name, `fsync` of the directory. Until then the final name
//!   holds whatever it held before (or nothing); dropping an uncommitted sink removes the
//!   temporary file. [`IoMode`] picks buffered I/O, `O_DIRECT` (aligned, reused buffers,
//!   the unaligned tail padded and then truncated away) or a shared `mmap` sized with
//!   [`checkpoint_size_bound`](ckpt_frame_core::checkpoint_size_bound).
//! - [`StreamSink`] writes to stdout, a pipe or any [`std::io::Write`]; checkpoints need no
//!   seeking to be written.
//!
//! - [`durable`]: the durable replace (`fsync`, `rename`, directory `fsync`) the sink
//!   commits with, for every crate that replaces files.
//!
//! # Reading
//! - [`open_input`] opens a checkpoint file in any [`IoMode`] as an [`InputSource`]
//!   (seekable, knows its length, so frames can be opened by number); a named pipe gives a
//!   streaming source. [`stdin_source`] and [`stream_source`] read unseekable streams.
//!   A mapped input lends its bytes to the reader without copying.
//!
//! # Healing
//! - [`rewrite_ranges`] rewrites byte ranges of an existing file in place and `fdatasync`s.
//!
//! Every backend produces exactly the bytes of `ckpt-frame-core`'s in-memory sink.
//!
//! # Examples
//! ```
//! use ckpt_frame_core::{CheckpointId, Reader, Style, Writer};
//! use ckpt_io_backends::{open_input, IoMode, OutputOptions, PublishSink};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("state.ckpt");
//! let data = vec![42u8; 100_000];
//!
//! let sink = PublishSink::create(&path, &OutputOptions::new(IoMode::Buffered))?;
//! let mut w = Writer::new(sink, CheckpointId::from_bytes([7; 16]));
//! let mut frame = w.open_frame(Style::Lz4)?;
//! frame.add(&data)?;
//! frame.close()?;
//! w.finish()?;
//! let len = w.into_sink().commit()?;
//! assert_eq!(std::fs::metadata(&path)?.len(), len);
//!
//! let mut r = Reader::open(open_input(&path, IoMode::Buffered)?)?;
//! let mut back = vec![0u8; data.len()];
//! let mut f = r.open_frame(0)?;
//! f.read_into(&mut back)?;
//! f.close()?;
//! assert_eq!(back, data);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Linux only: `O_DIRECT` with `statx(STATX_DIOALIGN)`, `fallocate`, `sync_file_range` and the `/proc` and `rustix` calls under it are Linux interfaces; other systems get a `compile_error!`.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!("ckpt-io-backends supports Linux only");

mod align;
mod block;
mod direct;
pub mod durable;
mod error;
mod input;
// The only modules allowed `unsafe`: the two memmap2 map calls, and one
// `sync_file_range` call.
#[allow(unsafe_code)]
mod map;
mod mode;
mod publish;
mod rewrite;
mod stream;
#[allow(unsafe_code)]
mod writeback;

pub use align::{
    AlignedBuf, AlignmentSource, DirectAlignment, direct_alignment, direct_alignment_of,
};
pub use direct::DirectReader;
pub use error::BackendError;
pub use input::{InputSource, open_input, open_input_mapped, stdin_source, stream_source};
pub use mode::{IoMode, OutputOptions, ParseIoModeError};
pub use publish::{PublishSink, TEMP_MARKER, process_alive, remove_stale_temps, temp_prefix};
pub use rewrite::rewrite_ranges;
pub use stream::{StreamSink, stdout_sink};

/// The format crate this crate stores, re-exported for convenience.
pub use ckpt_frame_core as format;

/// Size of the I/O buffers (buffered and `O_DIRECT`), a multiple of every alignment we
/// accept. Large enough that LZ4 compresses straight into it (a chunk needs < 66 KiB).
pub(crate) const IO_BUF_LEN: usize = 1 << 20;

// Sinks and sources may be moved to other threads.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<PublishSink>();
    is_send::<StreamSink<std::io::Stdout>>();
    is_send::<InputSource>();
};
