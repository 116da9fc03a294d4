//! The one checksum of the format: XXH3-64 (see `docs/format.md` for why, with figures).
//!
//! With `std` on `x86_64` the hash is computed by `twox-hash`, which picks its AVX2 or SSE2
//! kernel when the program starts: a portable build then hashes at the speed of a
//! `target-cpu=native` one (about 3x the SSE2 kernel on AVX2 machines). Without `std`
//! the choice is made at compile time by `xxhash-rust`. Both give the same values, which
//! a test checks.

/// XXH3-64 of `bytes`, seed 0.
#[inline]
pub fn checksum(bytes: &[u8]) -> u64 {
    #[cfg(feature = "std")]
    {
        twox_hash::XxHash3_64::oneshot(bytes)
    }
    #[cfg(not(feature = "std"))]
    {
        xxhash_rust::xxh3::xxh3_64(bytes)
    }
}

/// XXH3-64 of `bytes` with `seed`; used to chain values so that order matters.
#[inline]
pub fn checksum_seeded(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

/// Folds one chunk checksum into a frame's running chunk digest.
#[inline]
pub fn chain_digest(digest: u64, chunk_checksum: u64) -> u64 {
    checksum_seeded(&chunk_checksum.to_le_bytes(), digest)
}

/// XXH3-64 (seed 0) computed over pieces fed in order; equal to [`checksum`] of their
/// concatenation.
#[derive(Clone)]
pub struct Digest {
    #[cfg(feature = "std")]
    inner: twox_hash::XxHash3_64,
    #[cfg(not(feature = "std"))]
    inner: xxhash_rust::xxh3::Xxh3,
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Digest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Digest").finish_non_exhaustive()
    }
}

impl Digest {
    /// An empty digest.
    pub fn new() -> Self {
        #[cfg(feature = "std")]
        {
            Self { inner: twox_hash::XxHash3_64::with_seed(0) }
        }
        #[cfg(not(feature = "std"))]
        {
            Self { inner: xxhash_rust::xxh3::Xxh3::new() }
        }
    }

    /// Feeds `bytes`.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        #[cfg(feature = "std")]
        {
            core::hash::Hasher::write(&mut self.inner, bytes);
        }
        #[cfg(not(feature = "std"))]
        {
            self.inner.update(bytes);
        }
    }

    /// The hash of everything fed so far.
    #[inline]
    pub fn digest(&self) -> u64 {
        #[cfg(feature = "std")]
        {
            core::hash::Hasher::finish(&self.inner)
        }
        #[cfg(not(feature = "std"))]
        {
            self.inner.digest()
        }
    }
}

/// Pieces of this size are hashed while they are in the L1 cache and then copied.
const FUSED_PIECE: usize = 8 * 1024;

/// Below this length a plain copy and a one-shot hash cost less than the piecewise path.
const FUSED_MIN: usize = 2 * FUSED_PIECE;

/// Copies `src` into `dst` (equal lengths; a shorter `dst` takes a prefix) and returns the
/// XXH3-64 of the bytes copied, reading `src` from memory once: each piece is hashed from
/// `src` and then copied while it is still in the cache. On `x86_64` with `std` the copy
/// uses streaming stores, so `dst` is not read in first (what a large `memcpy` does too).
///
/// `src` is a shared borrow, so its bytes cannot change between hashing and copying: the
/// value returned is the checksum of what `dst` now holds.
pub fn copy_checksummed(dst: &mut [u8], src: &[u8]) -> u64 {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if n < FUSED_MIN {
        dst.copy_from_slice(src);
        return checksum(dst);
    }
    let mut digest = Digest::new();
    for (d, s) in dst.chunks_mut(FUSED_PIECE).zip(src.chunks(FUSED_PIECE)) {
        digest.update(s);
        crate::stream_copy::copy(d, s);
    }
    crate::stream_copy::finish();
    digest.digest()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0]).collect()
    }

    #[test]
    fn every_path_agrees_with_the_reference_xxh3() {
        let src = data(300_000);
        let lens = [0, 1, 3, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025, 8191, 8192, 16384]
            .into_iter()
            .chain([16385, 65535, 65536, 65537, 100_003, 300_000]);
        for len in lens {
            let want = xxhash_rust::xxh3::xxh3_64(&src[..len]);
            assert_eq!(checksum(&src[..len]), want, "one-shot, {len} bytes");
            for piece in [1, 7, 64, 4096, 8192, 70_000] {
                let mut d = Digest::new();
                src[..len].chunks(piece).for_each(|p| d.update(p));
                assert_eq!(d.digest(), want, "pieces of {piece}, {len} bytes");
            }
            for skew in [0, 1, 13, 31] {
                let mut dst = alloc::vec![0u8; len + skew];
                let got = copy_checksummed(&mut dst[skew..], &src[..len]);
                assert_eq!(got, want, "fused, {len} bytes at skew {skew}");
                assert_eq!(&dst[skew..], &src[..len]);
                assert!(dst[..skew].iter().all(|&b| b == 0), "nothing written before dst");
            }
        }
    }

    #[test]
    fn fused_copy_into_a_shorter_destination_copies_a_prefix() {
        let src = data(50_000);
        let mut dst = alloc::vec![0u8; 40_000];
        assert_eq!(copy_checksummed(&mut dst, &src), checksum(&src[..40_000]));
        assert_eq!(dst, src[..40_000]);
    }
}
