//! Multi-threaded checkpoint write and restore.
//!
//! **Status: placeholder.** This crate will encode and restore many frames at once on a rayon
//! pool, with a bounded window of in-flight frames, writing through any `ckpt-io-backends`
//! sink. Its output is byte for byte the serial writer's output for the same frame plan,
//! whatever the thread count.
#![forbid(unsafe_code)]

pub use ckpt_frame_core as format;
