//! A reusable I/O buffer that starts on a cache line: the kernel copies into memory 16
//! bytes past one (where large `malloc` blocks start) about four times slower (measured
//! for the checkpoint writer; see `ckpt-frame-core`'s `aligned.rs`). Safe code only.

const LINE: usize = 64;

#[derive(Debug)]
pub(crate) struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
    align: usize,
}

impl AlignedBuf {
    pub(crate) fn new(cap: usize) -> Self {
        Self::with_alignment(cap, LINE)
    }

    /// A buffer starting at a multiple of `align` (a power of two; at least a cache line is
    /// used), for `O_DIRECT`.
    pub(crate) fn with_alignment(cap: usize, align: usize) -> Self {
        let align = align.max(LINE);
        let mem = vec![0u8; cap + align];
        let start = mem.as_ptr().align_offset(align);
        // `align_offset` may in theory give up: an unaligned buffer makes O_DIRECT fail
        // with EINVAL, which the reader answers by reading buffered.
        Self { start: if start < align { start } else { 0 }, mem, align }
    }

    /// `len` bytes of the buffer (grown if needed).
    pub(crate) fn get_mut(&mut self, len: usize) -> &mut [u8] {
        if self.mem.len() < self.start + len {
            *self = Self::with_alignment(len, self.align);
        }
        self.mem.get_mut(self.start..self.start + len).unwrap_or_default()
    }
}
