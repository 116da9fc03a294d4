//! The `FS_IOC_FIEMAP` ioctl, the only unsafe code in this crate, behind one safe function.
//!
//! Layouts and constants follow `include/uapi/linux/fiemap.h` and `include/uapi/linux/fs.h`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Extent slots handed to the kernel per call.
pub(crate) const EXTENTS_PER_CALL: usize = 256;
/// [`EXTENTS_PER_CALL`] as the kernel's `__u32`.
const EXTENTS_PER_CALL_U32: u32 = 256;

/// `FIEMAP_FLAG_SYNC`: sync the file before mapping it.
pub(crate) const FIEMAP_FLAG_SYNC: u32 = 0x0000_0001;
/// `FIEMAP_EXTENT_LAST`: last extent in the file.
pub(crate) const FIEMAP_EXTENT_LAST: u32 = 0x0000_0001;
/// `FIEMAP_EXTENT_UNWRITTEN`: space allocated, but no data (reads as zeros).
pub(crate) const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x0000_0800;
/// `FIEMAP_EXTENT_SHARED`: space shared with other files (reflink, snapshot).
pub(crate) const FIEMAP_EXTENT_SHARED: u32 = 0x0000_2000;

/// `FS_IOC_FIEMAP` = `_IOWR('f', 11, struct fiemap)`: direction read|write (3) << 30,
/// size 32 << 16, type `'f'` << 8, number 11.
const FS_IOC_FIEMAP: u32 = 0xC020_660B;

/// `struct fiemap_extent` from linux/fiemap.h (56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::struct_field_names)] // the kernel's names
struct FiemapExtentRaw {
    /// `fe_logical`: byte offset of the extent in the file.
    fe_logical: u64,
    /// `fe_physical`: byte offset of the extent on the device.
    fe_physical: u64,
    /// `fe_length`: length of the extent in bytes.
    fe_length: u64,
    /// `fe_reserved64[2]`.
    fe_reserved64: [u64; 2],
    /// `fe_flags`: `FIEMAP_EXTENT_*`.
    fe_flags: u32,
    /// `fe_reserved[3]`.
    fe_reserved: [u32; 3],
}

/// `struct fiemap` from linux/fiemap.h without its flexible `fm_extents[]` tail (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::struct_field_names)] // the kernel's names
struct Fiemap {
    /// `fm_start`: first logical byte to map.
    fm_start: u64,
    /// `fm_length`: number of logical bytes to map.
    fm_length: u64,
    /// `fm_flags`: `FIEMAP_FLAG_*` in, compatible flags out.
    fm_flags: u32,
    /// `fm_mapped_extents`: number of extents written back.
    fm_mapped_extents: u32,
    /// `fm_extent_count`: size of `fm_extents` (0: only count the extents).
    fm_extent_count: u32,
    /// `fm_reserved`.
    fm_reserved: u32,
}

/// `struct fiemap` followed by its extent array, as the kernel expects them in memory.
#[repr(C)]
struct FiemapBuf {
    head: Fiemap,
    extents: [FiemapExtentRaw; EXTENTS_PER_CALL],
}

const _: () = assert!(size_of::<Fiemap>() == 32);
const _: () = assert!(FS_IOC_FIEMAP == (0b11 << 30) | (0x20 << 16) | ((b'f' as u32) << 8) | 0x0B);
const _: () = assert!(EXTENTS_PER_CALL_U32 as usize == EXTENTS_PER_CALL);
const _: () = assert!(size_of::<FiemapExtentRaw>() == 56);
const _: () = assert!(size_of::<FiemapBuf>() == 32 + 56 * EXTENTS_PER_CALL);

/// One extent as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawExtent {
    pub(crate) logical: u64,
    pub(crate) physical: u64,
    pub(crate) len: u64,
    pub(crate) flags: u32,
}

/// One `FS_IOC_FIEMAP` call mapping `[start, start + length)` with `flags`; returns at most
/// [`EXTENTS_PER_CALL`] extents, in the kernel's order.
pub(crate) fn fiemap_once(
    fd: BorrowedFd<'_>,
    start: u64,
    length: u64,
    flags: u32,
) -> io::Result<Vec<RawExtent>> {
    let mut buf = Box::new(FiemapBuf {
        head: Fiemap {
            fm_start: start,
            fm_length: length,
            fm_flags: flags,
            fm_extent_count: EXTENTS_PER_CALL_U32,
            ..Fiemap::default()
        },
        extents: [FiemapExtentRaw::default(); EXTENTS_PER_CALL],
    });
    let ptr: *mut FiemapBuf = &raw mut *buf;
    // The request type is `c_ulong` on glibc (lossless) and `c_int` on musl (where the bit
    // pattern is what the kernel expects).
    #[allow(clippy::cast_lossless, clippy::cast_possible_wrap)]
    let request = FS_IOC_FIEMAP as libc::Ioctl;
    // SAFETY: `fd` is a live descriptor for the duration of the call (borrowed). `ptr` points
    // to an exclusively borrowed, properly aligned `FiemapBuf` whose `#[repr(C)]` layout is
    // `struct fiemap` followed by `fm_extent_count` (= EXTENTS_PER_CALL) `struct
    // fiemap_extent` slots, so the kernel reads and writes only inside the allocation. The
    // request number matches `_IOWR('f', 11, struct fiemap)`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, ptr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mapped = usize::try_from(buf.head.fm_mapped_extents).unwrap_or(usize::MAX);
    Ok(buf
        .extents
        .iter()
        .take(mapped.min(EXTENTS_PER_CALL))
        .map(|e| RawExtent {
            logical: e.fe_logical,
            physical: e.fe_physical,
            len: e.fe_length,
            flags: e.fe_flags,
        })
        .collect())
}
