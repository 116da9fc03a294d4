//! Checkpoint identity.

use core::fmt;

/// 16 bytes that name one checkpoint. Every frame header and the tail carry it, so frames
/// of different checkpoints cannot be mixed and a healing copy can be proven to be a copy
/// of the same checkpoint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CheckpointId([u8; 16]);

impl CheckpointId {
    /// An identity from raw bytes (for reproducible output, tests, or ids from elsewhere).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// A fresh identity from the clock, the process id and a counter, hashed with XXH3-128.
    /// Unique in practice, not cryptographically unpredictable.
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::CheckpointId;
    /// assert_ne!(CheckpointId::generate(), CheckpointId::generate());
    /// ```
    #[cfg(feature = "std")]
    pub fn generate() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(&nanos.to_le_bytes());
        seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
        seed[20..28].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        Self(xxhash_rust::xxh3::xxh3_128(&seed).to_le_bytes())
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointId({self})")
    }
}
