//! The library behind the `ckpt` command: checkpoints of file trees (a manifest frame, then
//! the files' bytes) on top of `ckpt-frame-core` and `ckpt-io-backends`. The binary only
//! parses arguments, shows progress and prints reports.

pub mod manifest;
pub mod size;
pub mod tree;
