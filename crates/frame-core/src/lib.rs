//! The ckpt checkpoint format.
//!
//! A checkpoint is a sequence of independent **frames**, each holding a sequence of
//! **buffers** of any size (0 included), followed by a **frame index** and a fixed-size
//! **tail** that a reader finds from the end. A frame is stored in one of two [`Style`]s:
//! RAW (verbatim) or LZ4 (linked LZ4 blocks of up to 64 KiB, each allowed to reference the
//! 64 KiB before it in the same frame). Every chunk carries the XXH3-64 checksum of its
//! logical bytes; frame headers, footers, the index and the tail carry check values too, so
//! that restore never hands back wrong data: damage is an [`Error`] naming the frame and the
//! offset. The byte-level specification is `docs/format.md`.
//!
//! - Write with [`Writer`]: [`Writer::open_frame`] returns a [`FrameWriter`] that borrows
//!   every buffer added until [`FrameWriter::close`]; frame offsets are relative to the
//!   checkpoint start.
//! - Read with [`Reader`]: streaming ([`Reader::new`], works on pipes) or indexed
//!   ([`Reader::open`], any frame by number).
//! - Storage is abstracted by [`Sink`] and [`Source`]; this crate has in-memory ones
//!   ([`SliceSink`], [`VecSink`], [`SliceSource`]) and, with `std`, adapters over
//!   `std::io` ([`WriteSink`], [`ReadSource`], [`SeekSource`]).
//! - Sizes are known up front: [`frame_size_bound`] and [`checkpoint_size_bound`] are exact
//!   for RAW and the worst case for LZ4.
//! - With `std`, a frame is also a byte stream: [`FrameWriter::into_stream`] gives a
//!   [`FrameStreamWriter`] (`std::io::Write`) and [`FrameReader`] is `std::io::Read`.
//! - A checkpoint can build on a parent: [`Writer::set_parent`] with the parent's
//!   [`ParentChunks`] writes each chunk equal to the parent's chunk at its place as a
//!   reference, and [`Reader::open_frame_inheriting`] reads such a checkpoint with a
//!   [`ParentReader`] over its parent (format version 2).
//! - Many frames can be encoded at once, one [`FrameEncoder`] per thread, either into
//!   vectors appended with [`Writer::append_encoded`] or straight into the sink's memory
//!   with [`Writer::append_in_place`] (what `ckpt-parallel` does).
//!
//! # Features
//! - `std` (default): `std::io` adapters and conversions, `std::error::Error`.
//! - `lz4` (default): the LZ4 style through liblz4. Without it, bring a codec through
//!   [`ChunkCompressor`] / [`ChunkDecompressor`] and [`Writer::with_codecs`] /
//!   [`Reader::with_codecs`].
//! - `lz4-pure`: the LZ4 style in pure Rust through `lz4_flex` (`PureLz4Compressor`,
//!   `PureLz4Decompressor`), so that a `no_std` build with LZ4 needs no C compiler
//!   (`--no-default-features --features lz4-pure`). Its blocks are valid LZ4 that liblz4
//!   decodes, though not byte-identical to liblz4's, and its decoder accepts exactly the
//!   blocks liblz4's safe decoder accepts with this format's offset-0 rule; both are tested
//!   against liblz4. With `lz4` off it is the codec of [`Writer::new`] and [`Reader::new`];
//!   with both on, liblz4 is (it is faster) and the pure codec is used only where passed to
//!   [`Writer::with_codecs`] / [`Reader::with_codecs`].
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod aligned;
mod checksum;
mod chunker;
mod codec;
mod error;
mod id;
mod inherit;
mod io;
#[cfg(feature = "lz4")]
mod lz4;
#[cfg(feature = "lz4-pure")]
mod lz4_pure;
mod reader;
pub mod scan;
pub mod stream;
mod stream_copy;
mod table;
mod wire;
mod writer;

pub use checksum::{checksum, checksum_seeded};
pub use chunker::{checkpoint_size_bound, frame_size_bound};
pub use codec::{ChunkCompressor, ChunkDecompressor, Style, lz4_bound};
pub use error::{CodecError, Error, ErrorKind, IoError, IoErrorKind, Misuse, PlanMismatch};
pub use id::{CheckpointId, ParseIdError};
pub use inherit::{InheritedChunks, ParentChunks, ParentReader, ParentRef};
#[cfg(feature = "std")]
pub use io::{ReadSource, SeekSource, WriteSink};
pub use io::{Sink, SliceSink, SliceSource, Source, VecSink};
#[cfg(feature = "lz4")]
pub use lz4::{Lz4Compressor, Lz4Decompressor};
#[cfg(feature = "lz4-pure")]
pub use lz4_pure::{PureLz4Compressor, PureLz4Decompressor};
pub use reader::{FrameInfo, FrameReader, Reader};
#[cfg(feature = "std")]
pub use stream::{FrameStreamWriter, STREAM_PIECE};
pub use wire::{CHUNK_MAX, FORMAT_VERSION, FORMAT_VERSION_INHERITING};
pub use writer::{CheckpointSummary, EncodedFrame, FrameEncoder, FrameSlot, FrameWriter, Writer};

/// The workspace README's Rust example runs as a doctest, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
