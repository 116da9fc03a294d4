//! What the sparse crate's file tests share.
#![allow(dead_code)]

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

/// A prerequisite of `test` (ext4 under /tmp, a tmpfs on /dev/shm) is missing: fails the
/// test under `CI=true`, where the environment must be complete, else prints
/// `SKIP <test>: <reason>` to stderr (shown even when the test passes) and returns false,
/// so the test can `return`.
pub fn unavailable(test: &str, reason: &str) -> bool {
    use std::io::Write as _;
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {reason} (CI=true: a missing prerequisite is a failure, not a skip)"
    );
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr().lock(), "SKIP {test}: {reason}");
    false
}
