//! Sparse files: data/hole layout, hole punching, and the interval algebra under them.
//!
//! What this crate holds so far:
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
//!   file's size; [`is_all_zero`] to find zero blocks fast.
//!
//! Errors are [`SparseError`]s naming the file, the operation and, where one applies, the
//! offset.
//!
//! Sparse copy, the block-sync protocol and fold/prune of snapshot chains are being built on
//! top of these; see the modules.
//!
//! The only unsafe code is the FIEMAP ioctl, in a module of its own.
#![deny(unsafe_code)]

mod buf;
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

pub use copy::{CopyOptions, CopyStats, sparse_copy};
pub use error::SparseError;
pub use interval::{Interval, IntervalSet};
pub use layout::{FiemapExtent, Layout, data_layout, fiemap};
pub use punch::{is_all_zero, preallocate, punch_hole, zero_range};
