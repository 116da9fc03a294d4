//! Helpers of the `ckpt` command that other tools of this workspace share (size parsing).
//! The work itself lives in the library crates: tree checkpoints in `ckpt-tree`, pools in
//! `ckpt-poolset`, sparse files in `ckpt-sparse`.

pub mod size;
