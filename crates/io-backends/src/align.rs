//! `O_DIRECT` alignment: what the kernel asks for, and buffers that satisfy it.

use crate::BackendError;
use rustix::fs::{AtFlags, StatxFlags};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
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

/// `(stx_dio_mem_align, stx_dio_offset_align)` where `statx` reports them.
fn statx_dio(fd: BorrowedFd<'_>) -> Option<(u32, u32)> {
    let st = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN).ok()?;
    StatxFlags::from_bits_retain(st.stx_mask)
        .contains(StatxFlags::DIOALIGN)
        .then_some((st.stx_dio_mem_align, st.stx_dio_offset_align))
}

/// The `O_DIRECT` alignment of an open file.
pub(crate) fn probe<Fd: AsFd>(fd: Fd) -> DirectAlignment {
    let fd = fd.as_fd();
    from_reported(fd, statx_dio(fd))
}

fn from_reported(fd: BorrowedFd<'_>, reported: Option<(u32, u32)>) -> DirectAlignment {
    if let Some((mem, offset)) = reported
        && usable(mem)
        && usable(offset)
    {
        return DirectAlignment { mem, offset, source: AlignmentSource::Statx };
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

/// The `O_DIRECT` alignment of an open file (the one statx probe of the std crates):
/// `statx(STATX_DIOALIGN)`, falling back to the block size (see [`AlignmentSource`]).
/// `None` where `statx` says the file has no direct I/O (both alignments 0).
///
/// # Examples
/// ```
/// let file = tempfile::tempfile()?;
/// if let Some(a) = ckpt_io_backends::direct_alignment_of(&file) {
///     assert!(a.buffer().is_power_of_two());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn direct_alignment_of<Fd: AsFd>(fd: Fd) -> Option<DirectAlignment> {
    let fd = fd.as_fd();
    let reported = statx_dio(fd);
    (reported != Some((0, 0))).then(|| from_reported(fd, reported))
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

/// A zeroed, reusable I/O buffer whose start is aligned: for `O_DIRECT`, which needs aligned
/// memory, and for any large read or write (the kernel copies to and from memory 16 bytes
/// past a cache line, where large `malloc` blocks start, about four times slower; measured
/// for the checkpoint writer, see `ckpt-frame-core`'s `aligned.rs`). The one aligned heap
/// buffer of the std crates.
///
/// Safe code only: a `Vec` over-allocated by the alignment, used from its first aligned
/// address. Should `align_offset` ever give up, the buffer starts unaligned: `O_DIRECT` then
/// fails with `EINVAL`, reported like any refusal, never undefined behaviour.
///
/// # Examples
/// ```
/// use ckpt_io_backends::AlignedBuf;
/// let mut buf = AlignedBuf::new(8192, 4096);
/// assert_eq!(buf.as_slice().as_ptr() as usize % 4096, 0);
/// assert_eq!(buf.cap(), 8192);
/// // Asking for more than the capacity reallocates (zeroed, still aligned).
/// let big = buf.prefix_mut(10_000);
/// assert_eq!((big.len(), big.as_ptr() as usize % 4096), (10_000, 0));
/// ```
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
    align: usize,
}

impl AlignedBuf {
    /// The least alignment of every buffer: a cache line.
    pub const CACHE_LINE: usize = 64;

    /// `cap` zero bytes starting at a multiple of `align` (a power of two), or of
    /// [`CACHE_LINE`](Self::CACHE_LINE) if that is larger.
    pub fn new(cap: usize, align: usize) -> Self {
        let align = align.max(Self::CACHE_LINE);
        let raw = vec![0u8; cap + align];
        let start = raw.as_ptr().align_offset(align);
        let start = if start < align { start } else { 0 };
        Self { raw, start, cap, align }
    }

    /// The buffer's length in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The alignment of the buffer's start.
    pub fn align(&self) -> usize {
        self.align
    }

    /// The whole buffer.
    pub fn as_slice(&self) -> &[u8] {
        self.raw.get(self.start..self.start + self.cap).unwrap_or_default()
    }

    /// The whole buffer, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.raw.get_mut(self.start..self.start + self.cap).unwrap_or_default()
    }

    /// The first `len` bytes. Where `len` exceeds [`cap`](Self::cap) the buffer is first
    /// replaced by a zeroed one of `len` bytes with the same alignment (its contents are
    /// lost).
    pub fn prefix_mut(&mut self, len: usize) -> &mut [u8] {
        if len > self.cap {
            *self = Self::new(len, self.align);
        }
        self.as_mut_slice().get_mut(..len).unwrap_or_default()
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the bytes: a megabyte of them says nothing.
        let mut d = f.debug_struct("AlignedBuf");
        d.field("cap", &self.cap).field("align", &self.align).finish_non_exhaustive()
    }
}
