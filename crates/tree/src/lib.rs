//! File-tree checkpoints on top of `ckpt-frame-core`: a manifest frame (frame 0, what the
//! tree holds), then the files' bytes in data frames of a fixed size, in manifest order.
//!
//! The crate collects inputs into a [`Manifest`](manifest::Manifest), writes a checkpoint
//! into any [`Sink`](ckpt_frame_core::Sink), and restores any
//! [`Source`](ckpt_frame_core::Source) into a directory, never writing outside it. The
//! `ckpt` command is a thin layer over it.
//!
//! Linux only: restore works through directory handles (`openat`, `O_TMPFILE`, `linkat`,
//! `renameat`) and the collector asks the kernel for holes, owners and extended
//! attributes; other systems get a `compile_error!`.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ckpt-tree supports Linux only: it works through openat, O_TMPFILE, linkat and Linux extended attributes"
);

mod attrs;
pub mod blocks;
pub mod chain;
mod collect;
mod dest;
pub mod diff;
mod error;
pub mod heal;
pub mod manifest;
pub mod pattern;
mod restore;
mod write;
mod xattrs;

pub use collect::{CollectOptions, Collected, collect, frame_plan};
pub use error::{TreeError, Warning, format_exit_code};
pub use restore::{
    RestoreOptions, RestoreSummary, check_layout, read_first_manifest, restore_chain,
    restore_checkpoint, restore_checkpoint_parallel,
};
pub use write::{
    Parent, WriteOptions, WriteSummary, read_parent, write_checkpoint, write_from_chain,
    write_incremental,
};
