//! Starting the kernel's writeback of a range early (`sync_file_range`), so that the disk
//! writes a checkpoint while it is still being produced and the final `fsync` has little
//! left to wait for. This is a hint, never a durability step: durability still comes only
//! from the `fsync` at commit.

use std::os::fd::{AsFd, AsRawFd};

/// Asks the kernel to start writing `len` bytes from `offset` of `file` to disk, without
/// waiting for them. Errors are ignored: a file system without `sync_file_range` just
/// writes back later, at the `fsync`.
pub(crate) fn start_writeback<Fd: AsFd>(file: Fd, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len))
    else {
        return;
    };
    // SAFETY: `sync_file_range` reads only its integer arguments; the descriptor is borrowed
    // and open for the whole call. SYNC_FILE_RANGE_WRITE starts writeback of dirty pages in
    // the range and returns; it changes no memory of this process.
    let _ = unsafe {
        libc::sync_file_range(file.as_fd().as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}
