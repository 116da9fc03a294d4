//! The crate's only `unsafe`: creating memory maps with `memmap2`.
//!
//! Everything else (including every `rustix` call) goes through safe APIs. A map is sound
//! as long as nobody changes the mapped file's length or bytes behind the map's back while
//! Rust references into it exist; the two functions below state why that holds, or what is
//! left to the caller, for each use.

use memmap2::{Mmap, MmapMut, MmapOptions};
use std::fs::File;
use std::io;

/// Maps the first `len` bytes of a checkpoint's temporary output file, shared and writable.
pub(crate) fn map_output(file: &File, len: usize) -> io::Result<MmapMut> {
    // SAFETY: `file` is the temporary file that `PublishSink::create` just created with
    // O_CREAT|O_EXCL under a random name in the destination directory, and has already
    // sized to at least `len` bytes (fallocate, so a full disk fails there instead of as a
    // SIGBUS on first touch). The sink owns both the file and the map, never shrinks the
    // file while the map exists (the truncation to the real length happens after the map
    // is dropped), and lends slices of the map only through `&mut self` borrows. Another
    // process that guessed the name and truncated the file could still cause SIGBUS: that
    // is the usual memmap2 caveat, out of reach of any safe API.
    unsafe { MmapOptions::new().len(len).map_mut(file) }
}

/// Maps a whole checkpoint file read-only.
///
/// # Safety
/// Nobody may truncate `file` or change its bytes while the map exists (the caller of
/// `open_input_mapped` promises it).
pub(crate) unsafe fn map_input(file: &File) -> io::Result<Mmap> {
    // SAFETY: the map is read-only and private to the `InputSource` that owns `file`, and
    // we never write the file; the caller promises nobody else truncates or rewrites it
    // while it is mapped (memmap2's rule, passed on through `open_input_mapped`).
    unsafe { Mmap::map(file) }
}
