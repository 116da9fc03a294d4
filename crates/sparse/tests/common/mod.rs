//! What the sparse crate's file tests share.

/// A small xorshift generator: reproducible data without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `len` bytes with no zero byte, so data blocks are never mistaken for holes.
    pub fn bytes(&mut self, len: u64) -> Vec<u8> {
        (0..len).map(|_| u8::try_from(self.next() % 255 + 1).unwrap()).collect()
    }
}
