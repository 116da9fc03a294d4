//! Real storage under the ckpt checkpoint format.
//!
//! **Status: placeholder.** This crate is the second layer of ckpt. It will implement the
//! [`ckpt_frame_core::Sink`] and [`ckpt_frame_core::Source`] traits for:
//!
//! - buffered file descriptors (regular files, pipes, stdin/stdout; unseekable streams work);
//! - `O_DIRECT` with alignment from `statx(STATX_DIOALIGN)`, reused aligned buffers and a
//!   correctly handled unaligned tail;
//! - `mmap`, writing into a file mapped at the size bound and truncated to the real size;
//! - durable publish: temporary name, `fsync`, `rename`, `fsync` of the directory.
//!
//! Every backend must produce the same bytes as the in-memory sink of `ckpt-frame-core`.
#![forbid(unsafe_code)]

pub use ckpt_frame_core as format;
