//! Sparse files: data/hole layout, hole punching, sparse copy and block-level sync.
//!
//! **Status: placeholder.** This crate will hold:
//!
//! - layout from `SEEK_DATA`/`SEEK_HOLE` (preallocated extents count as holes), with FIEMAP
//!   (`FIEMAP_FLAG_SYNC`) as an optional detailed view, and a clean fallback where neither
//!   exists;
//! - interval algebra (merge, split at a block grid, intersect);
//! - punch hole, fallocate, zero range;
//! - sparse copy and crash-safe sync of changed blocks, locally or over a byte stream;
//! - fold and prune of snapshot chains.
#![forbid(unsafe_code)]
