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

    /// A fresh identity: 16 bytes from the operating system's random source
    /// (`getrandom`). Ids are what tells copies of one checkpoint from another (heal
    /// refuses a donor of another id), so they must not repeat across machines and
    /// containers, where clocks and process ids do (pid 1 in every container). Only if the
    /// random source fails (a kernel without `getrandom(2)` and no `/dev/urandom`) do the
    /// clock, the process id, a counter and an address of this process stand in, hashed
    /// with XXH3-128.
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
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_ok() {
            return Self(bytes);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut seed = [0u8; 40];
        seed[..16].copy_from_slice(&nanos.to_le_bytes());
        seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
        seed[20..28].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        // Address-space layout randomisation differs between processes and machines.
        let here = core::ptr::addr_of!(COUNTER) as usize as u64;
        seed[28..36].copy_from_slice(&here.to_le_bytes());
        Self(xxhash_rust::xxh3::xxh3_128(&seed).to_le_bytes())
    }
}

/// Why a string is not a [`CheckpointId`]: it must be exactly 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError {
    len: usize,
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a checkpoint id: expected 32 hex digits, got {} characters", self.len)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseIdError {}

impl core::str::FromStr for CheckpointId {
    type Err = ParseIdError;

    /// Parses the 32 hex digits [`Display`](fmt::Display) prints (either case).
    ///
    /// # Examples
    /// ```
    /// use ckpt_frame_core::CheckpointId;
    /// let id: CheckpointId = "000102030405060708090a0b0c0d0e0f".parse()?;
    /// assert_eq!(id.to_bytes()[15], 15);
    /// assert_eq!(id.to_string().parse::<CheckpointId>()?, id);
    /// assert!("xyz".parse::<CheckpointId>().is_err());
    /// # Ok::<(), ckpt_frame_core::ParseIdError>(())
    /// ```
    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        let err = ParseIdError { len: s.chars().count() };
        let digits = s.as_bytes();
        if digits.len() != 32 {
            return Err(err);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut bytes = [0u8; 16];
        for (b, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let (Some(hi), Some(lo)) =
                (pair.first().copied().and_then(nibble), pair.get(1).copied().and_then(nibble))
            else {
                return Err(err);
            };
            *b = hi << 4 | lo;
        }
        Ok(Self(bytes))
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

#[cfg(all(test, feature = "std"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::CheckpointId;
    use alloc::string::ToString;

    #[test]
    fn generated_ids_do_not_repeat_and_parse_back() {
        let ids: std::collections::HashSet<CheckpointId> =
            (0..10_000).map(|_| CheckpointId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.to_string().parse::<CheckpointId>().unwrap(), *id);
            assert_eq!(id.to_string().to_uppercase().parse::<CheckpointId>().unwrap(), *id);
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = "00112233445566778899aabbccddeeff";
        assert!(good.parse::<CheckpointId>().is_ok());
        for bad in [
            "",
            &good[..31],
            "00112233445566778899aabbccddeeff0",
            "00112233445566778899aabbccddeefg",
            "+0112233445566778899aabbccddeeff",
            "é0112233445566778899aabbccddeef",
        ] {
            let err = bad.parse::<CheckpointId>().unwrap_err();
            assert!(err.to_string().contains("32 hex digits"), "{bad:?}: {err}");
        }
    }
}
