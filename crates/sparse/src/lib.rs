//! Sparse files: data/hole layout, hole punching, sparse copy, sync of changed blocks, and
//! fold/prune of snapshot chains.
//!
//! What this crate holds:
//!
//! - [`Interval`] and [`IntervalSet`]: half-open byte ranges and normalised sets of them
//!   (union, intersection, difference, complement, clipping, alignment to a block grid and
//!   splitting at it). Pure code, no I/O.
//! - [`data_layout`]: where a file's data lies, by `SEEK_DATA`/`SEEK_HOLE`, the default
//!   truth (preallocated/unwritten extents count as holes; a file system without
//!   `SEEK_DATA` reports the whole file as data).
//! - [`fiemap`]: the detailed extent map by FIEMAP (`FIEMAP_FLAG_SYNC` on request), with
//!   unwritten and shared flags; `None` where the file system has no FIEMAP (tmpfs).
//! - [`punch_hole`], [`zero_range`], [`preallocate`]: `fallocate` primitives that keep the
//!   file's size; [`is_all_zero`] to find zero blocks fast; [`BlockReader`] for aligned
//!   block reads with `O_DIRECT` (buffered where the file system refuses it).
//!
//! Errors are [`SparseError`]s naming the file, the operation and, where one applies, the
//! offset.
//!
//! - [`sparse_copy`]: reads only data extents, leaves all-zero blocks as holes, publishes
//!   by fsync and rename.
//! - [`sync`]: brings a target up to date sending only changed blocks (coarse blocks, then
//!   4 KiB sub-blocks of the differing ones) over any byte stream, under a durable dirty
//!   marker; [`proto`] is its wire format (`docs/sparse-protocol.md`) and [`digest`] its
//!   block digests.
//! - [`fold`]: fold a child snapshot into its parent, prune the parent where the child has
//!   data; idempotent.
//!
//! The only unsafe code is the FIEMAP ioctl, in a module of its own.
//!
//! Linux only: `SEEK_DATA`/`SEEK_HOLE`, `FIEMAP`, hole punching and `copy_file_range` as Linux defines them; other systems get a `compile_error!`.

#![deny(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!("ckpt-sparse supports Linux only");

mod blocks;
mod copy;
pub mod digest;
mod error;
#[allow(unsafe_code)]
mod fiemap_sys;
pub mod fold;
mod interval;
mod layout;
pub mod proto;
mod punch;
pub mod sync;

pub use blocks::{BlockReader, ReadMode};
pub use copy::{CopyOptions, CopyStats, sparse_copy, sparse_copy_with_progress};
pub use error::SparseError;
pub use interval::{Interval, IntervalSet};
pub use layout::{FiemapExtent, Layout, data_layout, fiemap};
pub use punch::{is_all_zero, preallocate, punch_hole, zero_range};
