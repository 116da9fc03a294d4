//! A reusable I/O buffer that starts on a cache line: the kernel copies into memory 16
//! bytes past one (where large `malloc` blocks start) about four times slower (measured
//! for the checkpoint writer; see `ckpt-frame-core`'s `aligned.rs`). Safe code only.

const LINE: usize = 64;

pub(crate) struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    pub(crate) fn new(cap: usize) -> Self {
        let mem = vec![0u8; cap + LINE];
        let start = mem.as_ptr().align_offset(LINE);
        Self { start: if start < LINE { start } else { 0 }, mem }
    }

    /// `len` bytes of the buffer (grown if needed).
    pub(crate) fn get_mut(&mut self, len: usize) -> &mut [u8] {
        if self.mem.len() < self.start + len {
            *self = Self::new(len);
        }
        self.mem.get_mut(self.start..self.start + len).unwrap_or_default()
    }
}
