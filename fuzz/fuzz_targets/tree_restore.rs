//! Invariant: restoring arbitrary bytes as a tree checkpoint (`ckpt_tree`), streaming
//! and indexed, into a fresh directory never panics, never allocates what the input cannot
//! justify (libFuzzer's -malloc_limit_mb: a manifest may claim any size), and never creates
//! anything outside the destination: the directory holding it contains only the
//! destination afterwards, whatever paths or symlinks the manifest names. It ends in Ok or
//! in an error.
#![no_main]

use ckpt_tree::{RestoreOptions, restore_checkpoint, restore_checkpoint_parallel};
use ckpt_frame_core::SliceSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outer = tempfile::tempdir().expect("tempdir");
    let dest = outer.path().join("dest");
    // Owners are left alone: the fuzzer runs as root, and chown is not what is fuzzed.
    let options = RestoreOptions { same_owner: false, ..RestoreOptions::default() };
    let _ = restore_checkpoint(SliceSource::new(data), &dest.join("s"), &options, &|_, _| {});
    let _ = restore_checkpoint_parallel(|| Ok(SliceSource::new(data)), &dest.join("i"), &options, 1, &|_, _| {});
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(names.is_empty() || names == ["dest"], "restore created {names:?} outside");
});
