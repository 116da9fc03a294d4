//! The one checksum of the format: XXH3-64 (see `docs/format.md` for why, with figures).

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// XXH3-64 of `bytes`, seed 0.
#[inline]
pub fn checksum(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// XXH3-64 of `bytes` with `seed`; used to chain values so that order matters.
#[inline]
pub fn checksum_seeded(bytes: &[u8], seed: u64) -> u64 {
    xxh3_64_with_seed(bytes, seed)
}

/// Folds one chunk checksum into a frame's running chunk digest.
#[inline]
pub fn chain_digest(digest: u64, chunk_checksum: u64) -> u64 {
    checksum_seeded(&chunk_checksum.to_le_bytes(), digest)
}
