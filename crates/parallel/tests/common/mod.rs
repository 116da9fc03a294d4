//! What the parallel crate's test files share.

use ckpt_frame_core::{IoError, IoErrorKind, Sink, VecSink};

/// A sink that fails its Nth write (counting from 1), as a full disk would.
pub struct FailingSink {
    pub inner: VecSink,
    pub calls: usize,
    pub fail_at: usize,
}

impl FailingSink {
    pub fn failing_at(fail_at: usize) -> Self {
        Self { inner: VecSink::new(), calls: 0, fail_at }
    }
}

impl Sink for FailingSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(IoError::new(IoErrorKind::Other, "injected write failure"));
        }
        self.inner.write_all(bytes)
    }
}

/// `len` bytes from `seed`: text-like for even seeds, noise for odd ones.
pub fn content(seed: u64, len: usize, text: &[u8]) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let words = seed.is_multiple_of(2);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if words {
                text[usize::try_from(x % text.len() as u64).unwrap()]
            } else {
                x.to_le_bytes()[i % 8]
            }
        })
        .collect()
}
