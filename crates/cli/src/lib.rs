//! Helpers of the `ckpt` command that other tools of this workspace share (size parsing).
//! The work itself lives in the library crates: tree checkpoints in `ckpt-tree`, pools in
//! `ckpt-poolset`, sparse files in `ckpt-sparse`.
//!
//! Linux only: the crates under it are.

#[cfg(not(target_os = "linux"))]
compile_error!("ckpt-cli supports Linux only, as the crates under it do");

pub mod size;
