//! `O_DIRECT` alignment: what the kernel asks for, and buffers that satisfy it.

use crate::BackendError;
use rustix::fs::{AtFlags, StatxFlags};
use std::fmt;
use std::os::fd::AsFd;
use std::path::Path;

/// Where a [`DirectAlignment`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlignmentSource {
    /// `statx(STATX_DIOALIGN)` reported it (Linux 6.1 and later, on filesystems that
    /// support it).
    Statx,
    /// `statx` did not report it (old kernel, or the filesystem returns 0); we use the
    /// file's `st_blksize`. The logical block size of the device (`BLKSSZGET`) is only
    /// available for block devices, not for files on them; `st_blksize` is the filesystem
    /// block size, a multiple of it, so it is a safe (if larger than needed) alignment.
    BlockSize,
    /// Nothing usable was reported; 4096 covers every common device.
    Default,
}

/// Alignment that `O_DIRECT` requires of one file.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("f");
/// std::fs::write(&path, b"x")?;
/// let a = ckpt_io_backends::direct_alignment(&path)?;
/// assert!(a.buffer().is_power_of_two() && a.buffer() >= a.mem as usize);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectAlignment {
    /// Alignment of buffer addresses in memory (`stx_dio_mem_align`).
    pub mem: u32,
    /// Alignment of file offsets and I/O lengths (`stx_dio_offset_align`).
    pub offset: u32,
    /// How the values were found.
    pub source: AlignmentSource,
}

impl DirectAlignment {
    /// The one alignment this crate uses for addresses, offsets and lengths: the larger of
    /// the two, a power of two.
    pub fn buffer(&self) -> usize {
        let a = self.mem.max(self.offset).max(1);
        usize::try_from(a.next_power_of_two()).unwrap_or(4096)
    }
}

impl fmt::Display for DirectAlignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.source {
            AlignmentSource::Statx => "statx STATX_DIOALIGN",
            AlignmentSource::BlockSize => "st_blksize fallback",
            AlignmentSource::Default => "default",
        };
        write!(f, "memory {} / offset {} bytes ({how})", self.mem, self.offset)
    }
}

/// The largest alignment accepted from the system; anything larger would not fit the
/// I/O buffers sensibly and is treated as not reported.
const MAX_ALIGN: u32 = 64 * 1024;

fn usable(a: u32) -> bool {
    a.is_power_of_two() && a <= MAX_ALIGN
}

/// The `O_DIRECT` alignment of an open file.
pub(crate) fn probe<Fd: AsFd>(fd: Fd) -> DirectAlignment {
    let fd = fd.as_fd();
    if let Ok(st) = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
        let reported = StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::DIOALIGN);
        if reported && usable(st.stx_dio_mem_align) && usable(st.stx_dio_offset_align) {
            return DirectAlignment {
                mem: st.stx_dio_mem_align,
                offset: st.stx_dio_offset_align,
                source: AlignmentSource::Statx,
            };
        }
    }
    // Fallback (see `AlignmentSource::BlockSize`): the filesystem block size.
    if let Ok(st) = rustix::fs::fstat(fd)
        && let Ok(b) = u32::try_from(st.st_blksize)
        && usable(b)
        && b >= 512
    {
        return DirectAlignment { mem: b, offset: b, source: AlignmentSource::BlockSize };
    }
    DirectAlignment { mem: 4096, offset: 4096, source: AlignmentSource::Default }
}

/// The `O_DIRECT` alignment of the file at `path` (as this crate would use it).
///
/// # Errors
/// [`BackendError::Open`] when the file cannot be opened.
pub fn direct_alignment(path: &Path) -> Result<DirectAlignment, BackendError> {
    let file = std::fs::File::open(path)
        .map_err(|source| BackendError::Open { path: path.to_owned(), source })?;
    Ok(probe(&file))
}

/// A zeroed buffer whose start is aligned, allocated once and reused.
///
/// Safe code only: a `Vec` over-allocated by `align` bytes, used from its first aligned
/// address.
pub(crate) struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    /// `cap` bytes starting at a multiple of `align` (a power of two).
    pub(crate) fn new(cap: usize, align: usize) -> Self {
        let raw = vec![0u8; cap + align];
        let start = raw.as_ptr().align_offset(align);
        // `align_offset` may in theory give up (usize::MAX); an unaligned buffer then
        // makes O_DIRECT fail with EINVAL, reported like any refusal, never UB.
        let start = if start < align { start } else { 0 };
        Self { raw, start, cap }
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.raw.get(self.start..self.start + self.cap).unwrap_or_default()
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        self.raw.get_mut(self.start..self.start + self.cap).unwrap_or_default()
    }
}
