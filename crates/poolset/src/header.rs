//! The 4 KiB PMDK pool header: decode, validate, encode and checksum.
//!
//! Every part file of a PMDK 1.12 pool set begins with a `struct pool_hdr` (PMDK
//! `src/common/pool_hdr.h`), 4096 bytes, integers little-endian:
//!
//! | offset | size | field |
//! | ---: | ---: | --- |
//! | 0 | 8 | signature (`"PMEMOBJ\0"`, `"PMEMBLK\0"`, `"PMEMLOG\0"`) |
//! | 8 | 4 | major (format version: obj 6, blk 1, log 1) |
//! | 12 | 4 | compat features (`CHECK_BAD_BLOCKS` = 0x1) |
//! | 16 | 4 | incompat features (`SINGLEHDR` = 0x1, `CKSUM_2K` = 0x2, `SDS` = 0x4) |
//! | 20 | 4 | `ro_compat` features (none defined) |
//! | 24 | 16 | pool set uuid |
//! | 40 | 16 | uuid of this part |
//! | 56, 72 | 16 each | previous / next part uuid (a ring within the replica) |
//! | 88, 104 | 16 each | previous / next replica uuid (uuid of that replica's part 0) |
//! | 120 | 8 | creation time (seconds since the epoch) |
//! | 128 | 16 | arch flags: `alignment_desc` u64, `machine_class` u8, data u8, reserved 4, machine u16 |
//! | 144 | 1904 | unused (zero) |
//! | 2048 | 1976 | unused2 (zero; not checksummed with `CKSUM_2K`) |
//! | 4024 | 64 | shutdown state: usc u64, uuid u64, dirty u8, reserved 39, checksum u64 |
//! | 4088 | 8 | checksum |
//!
//! The checksum is PMDK's Fletcher64-like sum ([`fletcher64`]) over the 1024 little-endian
//! words of the header, the checksum field counting as zero; when the incompat feature
//! `CKSUM_2K` is set (PMDK's default), every word from byte 2048 on counts as zero too, so
//! the shutdown state can change without rewriting the header checksum.
//!
//! The first part of each replica of a pmemobj pool continues at offset 4096 with the pool
//! descriptor ([`ObjDescriptor`]), whose first 2048 bytes carry their own checksum.
//!
//! Uuids are PMDK's `struct uuid` (`time_low` u32, `time_mid` u16, `time_hi_and_ver` u16,
//! then 8 bytes) stored in the machine's (little-endian) order, so the text form
//! ([`Uuid`]'s `Display`, as `pmempool info` prints it) byte-swaps the first three groups
//! relative to the bytes on disk.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Size of a pool header in bytes.
pub const HEADER_SIZE: usize = 4096;

/// Byte offsets of the fields of a pool header (PMDK `struct pool_hdr`).
pub mod offset {
    /// `signature[8]`.
    pub const SIGNATURE: usize = 0;
    /// `major` (u32).
    pub const MAJOR: usize = 8;
    /// `features.compat` (u32).
    pub const COMPAT: usize = 12;
    /// `features.incompat` (u32).
    pub const INCOMPAT: usize = 16;
    /// `features.ro_compat` (u32).
    pub const RO_COMPAT: usize = 20;
    /// `poolset_uuid[16]`.
    pub const POOLSET_UUID: usize = 24;
    /// `uuid[16]`.
    pub const UUID: usize = 40;
    /// `prev_part_uuid[16]`.
    pub const PREV_PART_UUID: usize = 56;
    /// `next_part_uuid[16]`.
    pub const NEXT_PART_UUID: usize = 72;
    /// `prev_repl_uuid[16]`.
    pub const PREV_REPL_UUID: usize = 88;
    /// `next_repl_uuid[16]`.
    pub const NEXT_REPL_UUID: usize = 104;
    /// `crtime` (u64).
    pub const CRTIME: usize = 120;
    /// `arch_flags.alignment_desc` (u64), the start of the arch flags.
    pub const ALIGNMENT_DESC: usize = 128;
    /// `arch_flags.machine_class` (u8).
    pub const MACHINE_CLASS: usize = 136;
    /// `arch_flags.data` (u8).
    pub const DATA: usize = 137;
    /// `arch_flags.reserved[4]`.
    pub const ARCH_RESERVED: usize = 138;
    /// `arch_flags.machine` (u16).
    pub const MACHINE: usize = 142;
    /// `unused[1904]`.
    pub const UNUSED: usize = 144;
    /// `unused2[1976]`: the first byte not covered by the checksum under `CKSUM_2K`.
    pub const UNUSED2: usize = 2048;
    /// `sds` (`struct shutdown_state`, 64 bytes).
    pub const SDS: usize = 4024;
    /// `checksum` (u64).
    pub const CHECKSUM: usize = 4088;
}

/// Length of the header's `unused` area (bytes 144..2048).
pub const UNUSED_LEN: usize = offset::UNUSED2 - offset::UNUSED;
/// Length of the header's `unused2` area (bytes 2048..4024).
pub const UNUSED2_LEN: usize = offset::SDS - offset::UNUSED2;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// What went wrong with a header, a descriptor or the uuid links between parts.
///
/// Every variant carries its evidence: the field, where it lives, what was expected and
/// what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer bytes than the structure needs.
    Truncated {
        /// The structure (`"pool header"`, `"pmemobj descriptor"`, ...).
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes there were.
        found: usize,
    },
    /// The whole 4096-byte header is zero: the part was never initialised, or was wiped.
    Zeroed,
    /// The signature is not the expected one (or, when none was expected, not one PMDK
    /// knows).
    BadSignature {
        /// The signature asked for; `None` when any known signature would do.
        expected: Option<[u8; 8]>,
        /// The signature found at offset 0.
        found: [u8; 8],
    },
    /// The format major version does not match the pool type's.
    BadMajor {
        /// The pool type's signature.
        signature: [u8; 8],
        /// The major version this crate reads for that type.
        expected: u32,
        /// The major version found at offset 8.
        found: u32,
    },
    /// Incompat ("must support") feature bits this crate does not know.
    UnknownFeatures {
        /// The unknown bits.
        unknown: u32,
        /// The whole incompat field found at offset 16.
        found: u32,
    },
    /// A stored checksum differs from the one computed over the bytes.
    ChecksumMismatch {
        /// The checksummed structure (`"pool header"`, `"pmemobj descriptor"`,
        /// `"shutdown state"`).
        what: &'static str,
        /// Offset of the checksum field, from the start of the part file.
        offset: usize,
        /// The checksum stored there.
        stored: u64,
        /// The checksum of the bytes.
        computed: u64,
    },
    /// The architecture flags do not describe this machine.
    ArchMismatch {
        /// The field (`"machine"`, `"data"`, `"machine_class"`, `"alignment_desc"`,
        /// `"reserved"`).
        field: &'static str,
        /// Its offset in the header.
        offset: usize,
        /// This machine's value.
        expected: u64,
        /// The value in the header.
        found: u64,
    },
    /// This machine is not one PMDK defines architecture flags for (PMDK supports 64-bit
    /// x86, Arm, POWER, RISC-V and `LoongArch` only).
    UnsupportedHost,
    /// The pmemobj layout name is not a NUL-terminated UTF-8 string.
    BadLayout {
        /// Offset of the layout field, from the start of the part file.
        offset: usize,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The pmemobj layout name differs from the expected one.
    LayoutMismatch {
        /// The layout asked for.
        expected: String,
        /// The layout in the descriptor.
        found: String,
    },
    /// The pmemobj heap does not start on a 4 KiB boundary.
    UnalignedHeap {
        /// The descriptor's `heap_offset`.
        heap_offset: u64,
    },
    /// Text that is not a uuid of the form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    InvalidUuid {
        /// The text.
        text: String,
    },
    /// A uuid link between parts or replicas does not point where the ring says.
    BrokenLink {
        /// The field holding the link.
        link: Link,
        /// Replica of the header holding it.
        replica: usize,
        /// Part of the header holding it.
        part: usize,
        /// The uuid the ring needs there.
        expected: Uuid,
        /// The uuid found.
        found: Uuid,
    },
    /// Two parts of the set carry the same uuid.
    DuplicateUuid {
        /// The uuid.
        uuid: Uuid,
        /// (replica, part) of its first holder.
        first: (usize, usize),
        /// (replica, part) of the second.
        second: (usize, usize),
    },
    /// A replica without any header, or a set without any replica.
    Empty {
        /// The replica, or `None` for the set.
        replica: Option<usize>,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what, needed, found } => {
                write!(f, "{what} truncated: needs {needed} bytes, got {found}")
            }
            Self::Zeroed => write!(f, "pool header is all zeros (never initialised or wiped)"),
            Self::BadSignature { expected: Some(e), found } => write!(
                f,
                "pool header signature at offset 0 is \"{}\", expected \"{}\"",
                found.escape_ascii(),
                e.escape_ascii()
            ),
            Self::BadSignature { expected: None, found } => write!(
                f,
                "pool header signature at offset 0 is \"{}\", not PMEMOBJ, PMEMBLK or PMEMLOG",
                found.escape_ascii()
            ),
            Self::BadMajor { signature, expected, found } => write!(
                f,
                "pool header major version at offset 8 is {found}, expected {expected} for \"{}\"",
                signature.escape_ascii()
            ),
            Self::UnknownFeatures { unknown, found } => write!(
                f,
                "pool header has unknown incompat features {unknown:#x} \
                 (incompat field at offset 16 is {found:#x})"
            ),
            Self::ChecksumMismatch { what, offset, stored, computed } => write!(
                f,
                "{what} checksum mismatch: stored {stored:#018x} at offset {offset}, \
                 computed {computed:#018x}"
            ),
            Self::ArchMismatch { field, offset, expected, found } => write!(
                f,
                "pool header arch flag {field} at offset {offset} is {found:#x}, \
                 this machine has {expected:#x}"
            ),
            Self::UnsupportedHost => {
                write!(f, "this machine has no PMDK architecture flags (64-bit only)")
            }
            Self::BadLayout { offset, reason } => {
                write!(f, "pmemobj layout at offset {offset} {reason}")
            }
            Self::LayoutMismatch { expected, found } => {
                write!(f, "pmemobj layout is {found:?}, expected {expected:?}")
            }
            Self::UnalignedHeap { heap_offset } => {
                write!(f, "pmemobj heap offset {heap_offset:#x} is not 4 KiB aligned")
            }
            Self::InvalidUuid { text } => write!(f, "{text:?} is not a uuid"),
            Self::BrokenLink { link, replica, part, expected, found } => write!(
                f,
                "replica {replica} part {part}: {} (offset {}) is {found}, expected {expected}",
                link.field_name(),
                link.offset()
            ),
            Self::DuplicateUuid { uuid, first, second } => write!(
                f,
                "uuid {uuid} is used by replica {} part {} and replica {} part {}",
                first.0, first.1, second.0, second.1
            ),
            Self::Empty { replica: Some(r) } => write!(f, "replica {r} has no part headers"),
            Self::Empty { replica: None } => write!(f, "pool set has no replicas"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// A uuid link field of a pool header, as named in [`HeaderError::BrokenLink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Link {
    /// `poolset_uuid`: the same in every header of a set.
    PoolsetUuid,
    /// `prev_part_uuid`: the previous part of the replica (the last for part 0).
    PrevPart,
    /// `next_part_uuid`: the next part of the replica (part 0 for the last).
    NextPart,
    /// `prev_repl_uuid`: part 0 of the previous replica (the last for replica 0).
    PrevReplica,
    /// `next_repl_uuid`: part 0 of the next replica (replica 0 for the last).
    NextReplica,
}

impl Link {
    /// The field's name in PMDK's `struct pool_hdr`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::Link;
    /// assert_eq!(Link::NextPart.field_name(), "next_part_uuid");
    /// assert_eq!(Link::NextPart.offset(), 72);
    /// ```
    pub const fn field_name(self) -> &'static str {
        match self {
            Self::PoolsetUuid => "poolset_uuid",
            Self::PrevPart => "prev_part_uuid",
            Self::NextPart => "next_part_uuid",
            Self::PrevReplica => "prev_repl_uuid",
            Self::NextReplica => "next_repl_uuid",
        }
    }

    /// The field's offset in the header.
    pub const fn offset(self) -> usize {
        match self {
            Self::PoolsetUuid => offset::POOLSET_UUID,
            Self::PrevPart => offset::PREV_PART_UUID,
            Self::NextPart => offset::NEXT_PART_UUID,
            Self::PrevReplica => offset::PREV_REPL_UUID,
            Self::NextReplica => offset::NEXT_REPL_UUID,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Byte access without panics
// ---------------------------------------------------------------------------------------

/// Reads fixed-size fields out of a slice that was checked to be long enough; a field out
/// of range is reported as truncation rather than a panic.
struct Fields<'a> {
    bytes: &'a [u8],
    what: &'static str,
    needed: usize,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8], what: &'static str, needed: usize) -> Result<Self, HeaderError> {
        if bytes.len() < needed {
            return Err(HeaderError::Truncated { what, needed, found: bytes.len() });
        }
        Ok(Self { bytes, what, needed })
    }

    fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], HeaderError> {
        at.checked_add(N)
            .and_then(|end| self.bytes.get(at..end))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(HeaderError::Truncated {
                what: self.what,
                needed: self.needed,
                found: self.bytes.len(),
            })
    }

    fn u8(&self, at: usize) -> Result<u8, HeaderError> {
        Ok(u8::from_le_bytes(self.array::<1>(at)?))
    }

    fn u16(&self, at: usize) -> Result<u16, HeaderError> {
        Ok(u16::from_le_bytes(self.array(at)?))
    }

    fn u32(&self, at: usize) -> Result<u32, HeaderError> {
        Ok(u32::from_le_bytes(self.array(at)?))
    }

    fn u64(&self, at: usize) -> Result<u64, HeaderError> {
        Ok(u64::from_le_bytes(self.array(at)?))
    }

    fn uuid(&self, at: usize) -> Result<Uuid, HeaderError> {
        Ok(Uuid(self.array(at)?))
    }
}

/// Copies `src` into `out` at `at`; the offsets used here are constants inside `out`.
fn put(out: &mut [u8], at: usize, src: &[u8]) {
    let dst = at.checked_add(src.len()).and_then(|end| out.get_mut(at..end));
    debug_assert!(dst.is_some(), "field at {at}+{} outside {} bytes", src.len(), out.len());
    if let Some(dst) = dst {
        dst.copy_from_slice(src);
    }
}

fn read_u32_le(bytes: &[u8], at: usize) -> u32 {
    at.checked_add(4)
        .and_then(|end| bytes.get(at..end))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

// ---------------------------------------------------------------------------------------
// Checksum
// ---------------------------------------------------------------------------------------

/// PMDK's Fletcher64-like checksum (`util_checksum_compute` in `src/core/util.c`).
///
/// The bytes are read as little-endian u32 words `w`; for each word `lo += w; hi += lo`
/// (both u32, wrapping) and the result is `(hi << 32) | lo`. The word at byte
/// `checksum_at` and the one after it (the u64 checksum field), and every word at or past
/// byte `zero_from`, count as zero — they still advance `hi`. As in PMDK such a skipped
/// region is stepped over two words at a time. Trailing bytes after the last whole word
/// are ignored (PMDK aborts on a length that is not a multiple of 4).
///
/// Pass `zero_from = bytes.len()` to checksum everything but the checksum field.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::fletcher64;
/// // Words 1, 2: lo = 1 then 3, hi = 1 then 4.
/// let bytes = [1, 0, 0, 0, 2, 0, 0, 0];
/// assert_eq!(fletcher64(&bytes, usize::MAX, bytes.len()), (4 << 32) | 3);
/// // The checksum field (bytes 0..8 here) counts as zero.
/// assert_eq!(fletcher64(&bytes, 0, bytes.len()), 0);
/// ```
pub fn fletcher64(bytes: &[u8], checksum_at: usize, zero_from: usize) -> u64 {
    let words = bytes.len() / 4;
    let checksum_word = if checksum_at.is_multiple_of(4) { Some(checksum_at / 4) } else { None };
    let first_zero_word = zero_from.div_ceil(4);
    let mut lo: u32 = 0;
    let mut hi: u32 = 0;
    let mut i = 0;
    while i < words {
        if Some(i) == checksum_word || i >= first_zero_word {
            hi = hi.wrapping_add(lo).wrapping_add(lo);
            i += 2;
        } else {
            lo = lo.wrapping_add(read_u32_le(bytes, i * 4));
            hi = hi.wrapping_add(lo);
            i += 1;
        }
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The checksum PMDK stores at offset 4088 of a pool header.
///
/// Covers the whole header except the checksum field, or — when the incompat feature
/// `CKSUM_2K` (0x2) is set in the header's incompat field — only the first 2048 bytes
/// (PMDK `POOL_HDR_CSUM_END_OFF`), the rest counting as zero.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::{checksum, HEADER_SIZE};
/// let mut hdr = [0u8; HEADER_SIZE];
/// hdr[16] = 0x2; // incompat CKSUM_2K
/// let before = checksum(&hdr);
/// hdr[3000] = 0xff; // above 2048: not covered
/// assert_eq!(checksum(&hdr), before);
/// hdr[100] = 0xff; // below 2048: covered
/// assert_ne!(checksum(&hdr), before);
/// ```
pub fn checksum(header: &[u8; HEADER_SIZE]) -> u64 {
    let incompat = read_u32_le(header, offset::INCOMPAT);
    fletcher64(header, offset::CHECKSUM, checksum_end(incompat))
}

const fn checksum_end(incompat: u32) -> usize {
    if incompat & Features::CKSUM_2K != 0 { offset::UNUSED2 } else { offset::CHECKSUM }
}

// ---------------------------------------------------------------------------------------
// Uuid
// ---------------------------------------------------------------------------------------

/// A 16-byte uuid as PMDK stores it.
///
/// PMDK keeps uuids as `struct uuid { u32 time_low; u16 time_mid; u16 time_hi_and_ver;
/// u8 clock_seq_hi; u8 clock_seq_low; u8 node[6]; }` in machine (little-endian) order, filled
/// by parsing the text of `/proc/sys/kernel/random/uuid` (`util_uuid_from_string`). The text
/// form ([`Display`](fmt::Display), [`FromStr`]) is the one `pmempool info` prints: the
/// first three groups are the byte-swapped first 4, 2 and 2 bytes.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::Uuid;
/// let u: Uuid = "1a376e6c-f2a8-4b22-8f26-36347b7f713f".parse()?;
/// assert_eq!(u.0[..4], [0x6c, 0x6e, 0x37, 0x1a]); // time_low, little-endian
/// assert_eq!(u.0[8..10], [0x8f, 0x26]); // clock_seq bytes, as written
/// assert_eq!(u.to_string(), "1a376e6c-f2a8-4b22-8f26-36347b7f713f");
/// # Ok::<(), ckpt_poolset::header::HeaderError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero uuid.
    pub const NIL: Self = Self([0; 16]);

    /// Whether every byte is zero.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// The uuid whose RFC 4122 (big-endian, text-order) bytes are `rfc`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::Uuid;
    /// let rfc = [0x1a, 0x37, 0x6e, 0x6c, 0xf2, 0xa8, 0x4b, 0x22, 0x8f, 0x26, 0x36, 0x34,
    ///            0x7b, 0x7f, 0x71, 0x3f];
    /// let u = Uuid::from_rfc_bytes(rfc);
    /// assert_eq!(u.to_string(), "1a376e6c-f2a8-4b22-8f26-36347b7f713f");
    /// assert_eq!(u.to_rfc_bytes(), rfc);
    /// ```
    pub const fn from_rfc_bytes(rfc: [u8; 16]) -> Self {
        Self(swap_groups(rfc))
    }

    /// The RFC 4122 (text-order) bytes of this uuid.
    pub const fn to_rfc_bytes(&self) -> [u8; 16] {
        swap_groups(self.0)
    }

    /// A version-4 (random) uuid made of 16 random bytes, laid out as PMDK lays out the
    /// text of `/proc/sys/kernel/random/uuid`: the version nibble 4 and the RFC 4122
    /// variant bits are set in text order, then the first three groups are stored
    /// little-endian.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::Uuid;
    /// let u = Uuid::from_random_bytes([0xff; 16]);
    /// assert_eq!(u.to_string(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
    /// assert_eq!(u.0[7], 0x4f); // time_hi_and_ver high byte, little-endian
    /// assert_eq!(u.0[8], 0xbf); // clock_seq_hi with the variant bits
    /// ```
    pub const fn from_random_bytes(mut random: [u8; 16]) -> Self {
        random[6] = (random[6] & 0x0f) | 0x40;
        random[8] = (random[8] & 0x3f) | 0x80;
        Self::from_rfc_bytes(random)
    }

    /// A fresh random uuid for a new part, obtained as PMDK's `util_uuid_generate` does:
    /// by reading and parsing `/proc/sys/kernel/random/uuid` (Linux).
    ///
    /// # Errors
    ///
    /// The file cannot be read (not Linux, no `/proc`), or its text is not a uuid
    /// ([`std::io::ErrorKind::InvalidData`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::Uuid;
    /// let a = Uuid::generate()?;
    /// let b = Uuid::generate()?;
    /// assert_ne!(a, b);
    /// assert_eq!(a.to_rfc_bytes()[6] >> 4, 4); // version 4
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn generate() -> std::io::Result<Self> {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
        text.trim_end().parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// Swaps the byte order of the first three groups (4, 2, 2 bytes); its own inverse.
const fn swap_groups(b: [u8; 16]) -> [u8; 16] {
    [
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    ]
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.to_rfc_bytes();
        for (i, b) in r.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

impl FromStr for Uuid {
    type Err = HeaderError;

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits of either case), as
    /// PMDK's `util_uuid_from_string` does.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || HeaderError::InvalidUuid { text: text.to_owned() };
        let s = text.as_bytes();
        if s.len() != 36 {
            return Err(err());
        }
        let mut rfc = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < s.len() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if s.get(i) != Some(&b'-') {
                    return Err(err());
                }
                i += 1;
                continue;
            }
            let hi = s.get(i).and_then(|c| hex_value(*c)).ok_or_else(err)?;
            let lo = s.get(i + 1).and_then(|c| hex_value(*c)).ok_or_else(err)?;
            let slot = rfc.get_mut(n).ok_or_else(err)?;
            *slot = (hi << 4) | lo;
            n += 1;
            i += 2;
        }
        if n != 16 {
            return Err(err());
        }
        Ok(Self::from_rfc_bytes(rfc))
    }
}

const fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Pool type, features, arch flags, shutdown state
// ---------------------------------------------------------------------------------------

/// The kinds of PMDK pool, told apart by the header's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PoolType {
    /// libpmemobj: `"PMEMOBJ\0"`, major 6.
    Obj,
    /// libpmemblk: `"PMEMBLK\0"`, major 1.
    Blk,
    /// libpmemlog: `"PMEMLOG\0"`, major 1.
    Log,
    /// ckpt's native pool (per-block checksums, see `native`): `"CKPTNAT\0"`, major 1.
    Native,
}

impl PoolType {
    /// Every type, in the order above.
    pub const ALL: [Self; 4] = [Self::Obj, Self::Blk, Self::Log, Self::Native];

    /// The 8 signature bytes at offset 0.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::PoolType;
    /// assert_eq!(&PoolType::Obj.signature(), b"PMEMOBJ\0");
    /// assert_eq!(PoolType::from_signature(b"PMEMLOG\0"), Some(PoolType::Log));
    /// assert_eq!(PoolType::Obj.major(), 6);
    /// ```
    pub const fn signature(self) -> [u8; 8] {
        match self {
            Self::Obj => *b"PMEMOBJ\0",
            Self::Blk => *b"PMEMBLK\0",
            Self::Log => *b"PMEMLOG\0",
            Self::Native => *b"CKPTNAT\0",
        }
    }

    /// The format major version PMDK 1.12 writes for this type.
    pub const fn major(self) -> u32 {
        match self {
            Self::Obj => 6,
            Self::Blk | Self::Log | Self::Native => 1,
        }
    }

    /// The type whose signature is `signature`.
    pub fn from_signature(signature: &[u8; 8]) -> Option<Self> {
        Self::ALL.into_iter().find(|t| &t.signature() == signature)
    }
}

/// The three feature masks of a pool header (PMDK `features_t`).
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::Features;
/// let f = Features::PMDK_DEFAULT;
/// assert!(f.cksum_2k());
/// assert_eq!(f.names(), ["CHECK_BAD_BLOCKS", "CKSUM_2K", "SHUTDOWN_STATE"]);
/// assert_eq!(f.unknown_incompat(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features {
    /// "May" features, ignored when unknown (offset 12).
    pub compat: u32,
    /// "Must support" features: unknown ones make the pool unusable (offset 16).
    pub incompat: u32,
    /// Unknown ones force read-only use (offset 20).
    pub ro_compat: u32,
}

impl Features {
    /// compat `CHECK_BAD_BLOCKS`: check bad blocks when opening.
    pub const CHECK_BAD_BLOCKS: u32 = 0x1;
    /// incompat `SINGLEHDR`: only part 0 of a replica has a header (`OPTION SINGLEHDR`).
    pub const SINGLEHDR: u32 = 0x1;
    /// incompat `CKSUM_2K`: the header checksum covers only its first 2048 bytes.
    pub const CKSUM_2K: u32 = 0x2;
    /// incompat `SDS` (`SHUTDOWN_STATE` in pmempool): check the shutdown state.
    pub const SDS: u32 = 0x4;
    /// Every compat bit PMDK 1.12 defines.
    pub const COMPAT_KNOWN: u32 = Self::CHECK_BAD_BLOCKS;
    /// Every incompat bit PMDK 1.12 defines.
    pub const INCOMPAT_KNOWN: u32 = Self::SINGLEHDR | Self::CKSUM_2K | Self::SDS;
    /// What `pmempool create` of PMDK 1.12 (built with ndctl) writes: compat 0x1,
    /// incompat 0x6.
    pub const PMDK_DEFAULT: Self =
        Self { compat: Self::CHECK_BAD_BLOCKS, incompat: Self::CKSUM_2K | Self::SDS, ro_compat: 0 };

    /// Whether the header checksum covers only the first 2048 bytes.
    pub const fn cksum_2k(&self) -> bool {
        self.incompat & Self::CKSUM_2K != 0
    }

    /// Whether only part 0 of each replica carries a header.
    pub const fn singlehdr(&self) -> bool {
        self.incompat & Self::SINGLEHDR != 0
    }

    /// Incompat bits this crate does not know (a pool with any must not be used).
    pub const fn unknown_incompat(&self) -> u32 {
        self.incompat & !Self::INCOMPAT_KNOWN
    }

    /// `ro_compat` bits this crate does not know (PMDK then opens read-only; none are
    /// defined, so any set bit is unknown).
    pub const fn unknown_ro_compat(&self) -> u32 {
        self.ro_compat
    }

    /// The names of the known bits that are set, as `pmempool info` and
    /// `pmempool feature` spell them.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.compat & Self::CHECK_BAD_BLOCKS != 0 {
            names.push("CHECK_BAD_BLOCKS");
        }
        if self.incompat & Self::SINGLEHDR != 0 {
            names.push("SINGLEHDR");
        }
        if self.incompat & Self::CKSUM_2K != 0 {
            names.push("CKSUM_2K");
        }
        if self.incompat & Self::SDS != 0 {
            names.push("SHUTDOWN_STATE");
        }
        names
    }
}

/// Architecture identification flags (PMDK `struct arch_flags`, header offset 128).
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::ArchFlags;
/// # #[cfg(target_arch = "x86_64")] {
/// let host = ArchFlags::host().expect("x86_64 is supported");
/// assert_eq!(host.machine, ArchFlags::MACHINE_X86_64);
/// assert_eq!(host.alignment_desc, 0x7f7_3777_7310);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ArchFlags {
    /// Alignments of char, short, int, long, long long, `size_t`, `off_t`, float, double,
    /// long double and `void *`, 4 bits each (alignment − 1), lowest first.
    pub alignment_desc: u64,
    /// Address size: [`ArchFlags::CLASS_64`].
    pub machine_class: u8,
    /// Byte order: [`ArchFlags::DATA_LE`] or [`ArchFlags::DATA_BE`].
    pub data: u8,
    /// Must be zero.
    pub reserved: [u8; 4],
    /// ELF machine number ([`ArchFlags::MACHINE_X86_64`], ...).
    pub machine: u16,
}

impl ArchFlags {
    /// `machine_class` of 64-bit machines (the only class PMDK supports).
    pub const CLASS_64: u8 = 2;
    /// `data` of little-endian machines.
    pub const DATA_LE: u8 = 1;
    /// `data` of big-endian machines.
    pub const DATA_BE: u8 = 2;
    /// `machine` of x86-64.
    pub const MACHINE_X86_64: u16 = 62;
    /// `machine` of 64-bit Arm.
    pub const MACHINE_AARCH64: u16 = 183;
    /// `machine` of 64-bit POWER.
    pub const MACHINE_PPC64: u16 = 21;
    /// `machine` of 64-bit RISC-V.
    pub const MACHINE_RISCV64: u16 = 243;
    /// `machine` of 64-bit `LoongArch`.
    pub const MACHINE_LOONGARCH64: u16 = 258;

    /// The flags PMDK writes on this machine (`util_get_arch_flags`), or `None` where
    /// PMDK does not run.
    ///
    /// `long double` has no Rust type; it is 16-byte aligned on every machine PMDK
    /// supports.
    pub fn host() -> Option<Self> {
        let machine = if cfg!(target_arch = "x86_64") {
            Self::MACHINE_X86_64
        } else if cfg!(target_arch = "aarch64") {
            Self::MACHINE_AARCH64
        } else if cfg!(target_arch = "powerpc64") {
            Self::MACHINE_PPC64
        } else if cfg!(target_arch = "riscv64") {
            Self::MACHINE_RISCV64
        } else if cfg!(target_arch = "loongarch64") {
            Self::MACHINE_LOONGARCH64
        } else {
            return None;
        };
        if !cfg!(target_pointer_width = "64") {
            return None;
        }
        let aligns = [
            align_of::<core::ffi::c_char>(),
            align_of::<core::ffi::c_short>(),
            align_of::<core::ffi::c_int>(),
            align_of::<core::ffi::c_long>(),
            align_of::<core::ffi::c_longlong>(),
            align_of::<usize>(),
            align_of::<i64>(), // off_t on 64-bit Linux
            align_of::<f32>(),
            align_of::<f64>(),
            16, // long double
            align_of::<*const u8>(),
        ];
        let mut alignment_desc = 0u64;
        for (i, a) in aligns.into_iter().enumerate() {
            let nibble = u64::try_from(a).unwrap_or(0).wrapping_sub(1) & 0xf;
            alignment_desc |= nibble << (4 * i);
        }
        Some(Self {
            alignment_desc,
            machine_class: Self::CLASS_64,
            data: if cfg!(target_endian = "big") { Self::DATA_BE } else { Self::DATA_LE },
            reserved: [0; 4],
            machine,
        })
    }

    /// Checks these flags against this machine's, as PMDK's `util_check_arch_flags` does.
    ///
    /// # Errors
    ///
    /// [`HeaderError::ArchMismatch`] naming the first differing field (reserved bytes,
    /// machine, data, machine class, alignment descriptor), or
    /// [`HeaderError::UnsupportedHost`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::{ArchFlags, HeaderError};
    /// # if let Some(host) = ArchFlags::host() {
    /// assert!(host.check_host().is_ok());
    /// let other = ArchFlags { machine: host.machine ^ 1, ..host };
    /// assert!(matches!(other.check_host(), Err(HeaderError::ArchMismatch { field: "machine", .. })));
    /// # }
    /// ```
    pub fn check_host(&self) -> Result<(), HeaderError> {
        let host = Self::host().ok_or(HeaderError::UnsupportedHost)?;
        let checks = [
            ("reserved", offset::ARCH_RESERVED, 0, u64::from(u32::from_le_bytes(self.reserved))),
            ("machine", offset::MACHINE, u64::from(host.machine), u64::from(self.machine)),
            ("data", offset::DATA, u64::from(host.data), u64::from(self.data)),
            (
                "machine_class",
                offset::MACHINE_CLASS,
                u64::from(host.machine_class),
                u64::from(self.machine_class),
            ),
            ("alignment_desc", offset::ALIGNMENT_DESC, host.alignment_desc, self.alignment_desc),
        ];
        for (field, offset, expected, found) in checks {
            if expected != found {
                return Err(HeaderError::ArchMismatch { field, offset, expected, found });
            }
        }
        Ok(())
    }
}

/// The shutdown state kept in the pool header of part 0 of a replica (PMDK
/// `struct shutdown_state`, header offset 4024, 64 bytes).
///
/// Its checksum is [`fletcher64`] over its own 64 bytes with the checksum field (offset
/// 56) counting as zero (PMDK `shutdown_state_checksum`); an all-zero state (what PMDK
/// leaves when it ignores the shutdown state, e.g. on files that are not real pmem) is
/// therefore consistent.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::ShutdownState;
/// let mut sds = ShutdownState { usc: 7, dirty: 1, ..ShutdownState::default() };
/// sds.seal();
/// assert!(sds.verify().is_ok());
/// sds.usc += 1;
/// assert!(sds.verify().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShutdownState {
    /// Sum of the unsafe shutdown counts of the devices under the replica's parts.
    pub usc: u64,
    /// Sum of the checksums of the devices' ids.
    pub uuid: u64,
    /// Nonzero while the pool is open.
    pub dirty: u8,
    /// Must be zero.
    pub reserved: [u8; 39],
    /// The stored checksum.
    pub checksum: u64,
}

impl Default for ShutdownState {
    fn default() -> Self {
        Self { usc: 0, uuid: 0, dirty: 0, reserved: [0; 39], checksum: 0 }
    }
}

impl ShutdownState {
    /// Size in bytes.
    pub const SIZE: usize = 64;
    /// Offset of the checksum within the state.
    pub const CHECKSUM_AT: usize = 56;

    /// Decodes the 64 bytes of a shutdown state.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Truncated`] when `bytes` is shorter than 64.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::ShutdownState;
    /// let sds = ShutdownState::decode(&[0u8; 64])?;
    /// assert_eq!(sds, ShutdownState::default());
    /// assert!(ShutdownState::decode(&[0u8; 63]).is_err());
    /// # Ok::<(), ckpt_poolset::header::HeaderError>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let r = Fields::new(bytes, "shutdown state", Self::SIZE)?;
        Ok(Self {
            usc: r.u64(0)?,
            uuid: r.u64(8)?,
            dirty: r.u8(16)?,
            reserved: r.array(17)?,
            checksum: r.u64(Self::CHECKSUM_AT)?,
        })
    }

    /// The 64 bytes, with the stored checksum as it is.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        put(&mut out, 0, &self.usc.to_le_bytes());
        put(&mut out, 8, &self.uuid.to_le_bytes());
        put(&mut out, 16, &[self.dirty]);
        put(&mut out, 17, &self.reserved);
        put(&mut out, Self::CHECKSUM_AT, &self.checksum.to_le_bytes());
        out
    }

    /// The checksum of the state's fields.
    pub fn compute_checksum(&self) -> u64 {
        let bytes = self.encode();
        fletcher64(&bytes, Self::CHECKSUM_AT, Self::SIZE)
    }

    /// Stores the computed checksum.
    pub fn seal(&mut self) {
        self.checksum = self.compute_checksum();
    }

    /// Checks the stored checksum.
    ///
    /// # Errors
    ///
    /// [`HeaderError::ChecksumMismatch`] with the offset of the checksum in the header.
    pub fn verify(&self) -> Result<(), HeaderError> {
        let computed = self.compute_checksum();
        if computed == self.checksum {
            Ok(())
        } else {
            Err(HeaderError::ChecksumMismatch {
                what: "shutdown state",
                offset: offset::SDS + Self::CHECKSUM_AT,
                stored: self.checksum,
                computed,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// The pool header
// ---------------------------------------------------------------------------------------

/// A decoded pool header: every field of PMDK's `struct pool_hdr`, the unused areas
/// included, so that [`PoolHeader::encode`] gives back the bytes it was decoded from.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::{PoolHeader, PoolType, Uuid};
/// let set = Uuid::generate()?;
/// let part = Uuid::generate()?;
/// let hdr = PoolHeader::new(PoolType::Obj, set, part);
/// let bytes = hdr.encode();
/// let back = PoolHeader::decode(&bytes)?;
/// assert_eq!(back.uuid, part);
/// assert_eq!(back.encode(), bytes);
/// # if ckpt_poolset::header::ArchFlags::host().is_some() {
/// back.validate(Some(PoolType::Obj))?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PoolHeader {
    /// Pool type signature (offset 0).
    pub signature: [u8; 8],
    /// Format major version (offset 8).
    pub major: u32,
    /// Feature masks (offsets 12, 16, 20).
    pub features: Features,
    /// Uuid of the pool set, the same in every header (offset 24).
    pub poolset_uuid: Uuid,
    /// Uuid of this part (offset 40).
    pub uuid: Uuid,
    /// Uuid of the previous part of the replica (offset 56).
    pub prev_part_uuid: Uuid,
    /// Uuid of the next part of the replica (offset 72).
    pub next_part_uuid: Uuid,
    /// Uuid of part 0 of the previous replica (offset 88).
    pub prev_repl_uuid: Uuid,
    /// Uuid of part 0 of the next replica (offset 104).
    pub next_repl_uuid: Uuid,
    /// Creation time, seconds since the epoch (offset 120).
    pub crtime: u64,
    /// Architecture flags (offset 128).
    pub arch_flags: ArchFlags,
    /// Bytes 144..2048, zero in pools PMDK writes.
    pub unused: Box<[u8; UNUSED_LEN]>,
    /// Bytes 2048..4024, zero in pools PMDK writes.
    pub unused2: Box<[u8; UNUSED2_LEN]>,
    /// Shutdown state (offset 4024); meaningful in part 0 of a replica.
    pub sds: ShutdownState,
    /// The checksum as stored (offset 4088). [`PoolHeader::encode`] writes the computed
    /// one instead.
    pub checksum: u64,
}

impl fmt::Debug for PoolHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonzero = |b: &[u8]| b.iter().filter(|&&x| x != 0).count();
        f.debug_struct("PoolHeader")
            .field("signature", &format_args!("\"{}\"", self.signature.escape_ascii()))
            .field("major", &self.major)
            .field("features", &self.features)
            .field("poolset_uuid", &self.poolset_uuid)
            .field("uuid", &self.uuid)
            .field("prev_part_uuid", &self.prev_part_uuid)
            .field("next_part_uuid", &self.next_part_uuid)
            .field("prev_repl_uuid", &self.prev_repl_uuid)
            .field("next_repl_uuid", &self.next_repl_uuid)
            .field("crtime", &self.crtime)
            .field("arch_flags", &self.arch_flags)
            .field("unused_nonzero_bytes", &nonzero(&self.unused[..]))
            .field("unused2_nonzero_bytes", &nonzero(&self.unused2[..]))
            .field("sds", &self.sds)
            .field("checksum", &format_args!("{:#018x}", self.checksum))
            .finish()
    }
}

impl PoolHeader {
    /// A header for a pool set of a single part: its part and replica links point to
    /// `uuid` itself (use [`link_rings`] for more parts), features
    /// [`Features::PMDK_DEFAULT`], this machine's arch flags (zero where PMDK does not
    /// run), creation time 0, zero shutdown state.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::{PoolHeader, PoolType, Uuid};
    /// let hdr = PoolHeader::new(PoolType::Log, Uuid([1; 16]), Uuid([2; 16]));
    /// assert_eq!(hdr.next_part_uuid, Uuid([2; 16]));
    /// assert_eq!(hdr.major, 1);
    /// ```
    pub fn new(pool_type: PoolType, poolset_uuid: Uuid, uuid: Uuid) -> Self {
        let mut hdr = Self {
            signature: pool_type.signature(),
            major: pool_type.major(),
            features: Features::PMDK_DEFAULT,
            poolset_uuid,
            uuid,
            prev_part_uuid: uuid,
            next_part_uuid: uuid,
            prev_repl_uuid: uuid,
            next_repl_uuid: uuid,
            crtime: 0,
            arch_flags: ArchFlags::host().unwrap_or_default(),
            unused: Box::new([0; UNUSED_LEN]),
            unused2: Box::new([0; UNUSED2_LEN]),
            sds: ShutdownState::default(),
            checksum: 0,
        };
        hdr.seal();
        hdr
    }

    /// Decodes the first 4096 bytes of `bytes` (more are ignored). Never panics.
    ///
    /// Decoding checks nothing but the length; use [`PoolHeader::validate`] (or
    /// [`validate`]) to check the contents.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Truncated`] when `bytes` is shorter than 4096.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::{HeaderError, PoolHeader};
    /// let err = PoolHeader::decode(&[0u8; 100]).unwrap_err();
    /// assert_eq!(err, HeaderError::Truncated { what: "pool header", needed: 4096, found: 100 });
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let r = Fields::new(bytes, "pool header", HEADER_SIZE)?;
        let sds_bytes: [u8; ShutdownState::SIZE] = r.array(offset::SDS)?;
        Ok(Self {
            signature: r.array(offset::SIGNATURE)?,
            major: r.u32(offset::MAJOR)?,
            features: Features {
                compat: r.u32(offset::COMPAT)?,
                incompat: r.u32(offset::INCOMPAT)?,
                ro_compat: r.u32(offset::RO_COMPAT)?,
            },
            poolset_uuid: r.uuid(offset::POOLSET_UUID)?,
            uuid: r.uuid(offset::UUID)?,
            prev_part_uuid: r.uuid(offset::PREV_PART_UUID)?,
            next_part_uuid: r.uuid(offset::NEXT_PART_UUID)?,
            prev_repl_uuid: r.uuid(offset::PREV_REPL_UUID)?,
            next_repl_uuid: r.uuid(offset::NEXT_REPL_UUID)?,
            crtime: r.u64(offset::CRTIME)?,
            arch_flags: ArchFlags {
                alignment_desc: r.u64(offset::ALIGNMENT_DESC)?,
                machine_class: r.u8(offset::MACHINE_CLASS)?,
                data: r.u8(offset::DATA)?,
                reserved: r.array(offset::ARCH_RESERVED)?,
                machine: r.u16(offset::MACHINE)?,
            },
            unused: Box::new(r.array(offset::UNUSED)?),
            unused2: Box::new(r.array(offset::UNUSED2)?),
            sds: ShutdownState::decode(&sds_bytes)?,
            checksum: r.u64(offset::CHECKSUM)?,
        })
    }

    /// The fields as stored, the checksum field holding `checksum`.
    fn encode_with(&self, checksum: u64) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        put(&mut out, offset::SIGNATURE, &self.signature);
        put(&mut out, offset::MAJOR, &self.major.to_le_bytes());
        put(&mut out, offset::COMPAT, &self.features.compat.to_le_bytes());
        put(&mut out, offset::INCOMPAT, &self.features.incompat.to_le_bytes());
        put(&mut out, offset::RO_COMPAT, &self.features.ro_compat.to_le_bytes());
        put(&mut out, offset::POOLSET_UUID, &self.poolset_uuid.0);
        put(&mut out, offset::UUID, &self.uuid.0);
        put(&mut out, offset::PREV_PART_UUID, &self.prev_part_uuid.0);
        put(&mut out, offset::NEXT_PART_UUID, &self.next_part_uuid.0);
        put(&mut out, offset::PREV_REPL_UUID, &self.prev_repl_uuid.0);
        put(&mut out, offset::NEXT_REPL_UUID, &self.next_repl_uuid.0);
        put(&mut out, offset::CRTIME, &self.crtime.to_le_bytes());
        put(&mut out, offset::ALIGNMENT_DESC, &self.arch_flags.alignment_desc.to_le_bytes());
        put(&mut out, offset::MACHINE_CLASS, &[self.arch_flags.machine_class]);
        put(&mut out, offset::DATA, &[self.arch_flags.data]);
        put(&mut out, offset::ARCH_RESERVED, &self.arch_flags.reserved);
        put(&mut out, offset::MACHINE, &self.arch_flags.machine.to_le_bytes());
        put(&mut out, offset::UNUSED, &self.unused[..]);
        put(&mut out, offset::UNUSED2, &self.unused2[..]);
        put(&mut out, offset::SDS, &self.sds.encode());
        put(&mut out, offset::CHECKSUM, &checksum.to_le_bytes());
        out
    }

    /// The 4096 header bytes, with the checksum computed over them (the stored
    /// [`PoolHeader::checksum`] is not used; the shutdown state's own checksum is written
    /// as stored).
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::{checksum, PoolHeader, PoolType, Uuid};
    /// let mut hdr = PoolHeader::new(PoolType::Obj, Uuid([1; 16]), Uuid([2; 16]));
    /// hdr.crtime = 1_700_000_000;
    /// let bytes = hdr.encode();
    /// assert_eq!(bytes[4088..], checksum(&bytes).to_le_bytes());
    /// ```
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = self.encode_with(0);
        let sum = checksum(&out);
        put(&mut out, offset::CHECKSUM, &sum.to_le_bytes());
        out
    }

    /// The checksum of this header's fields, as [`PoolHeader::encode`] writes it.
    pub fn compute_checksum(&self) -> u64 {
        checksum(&self.encode_with(0))
    }

    /// Stores the computed checksum in [`PoolHeader::checksum`], so that the value matches
    /// what [`PoolHeader::encode`] writes.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::{PoolHeader, PoolType, Uuid};
    /// let mut hdr = PoolHeader::new(PoolType::Obj, Uuid([1; 16]), Uuid([2; 16]));
    /// hdr.uuid = Uuid([3; 16]);
    /// assert!(hdr.verify_checksum().is_err());
    /// hdr.seal();
    /// assert!(hdr.verify_checksum().is_ok());
    /// ```
    pub fn seal(&mut self) {
        self.checksum = self.compute_checksum();
    }

    /// The pool type named by the signature, if PMDK knows it.
    pub fn pool_type(&self) -> Option<PoolType> {
        PoolType::from_signature(&self.signature)
    }

    /// Whether every byte of the header, the checksum included, is zero.
    pub fn is_zeroed(&self) -> bool {
        self.encode_with(self.checksum).iter().all(|&b| b == 0)
    }

    /// Checks the stored checksum against the computed one.
    ///
    /// # Errors
    ///
    /// [`HeaderError::ChecksumMismatch`] carrying both values.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::{HeaderError, PoolHeader, PoolType, Uuid};
    /// let mut bytes = PoolHeader::new(PoolType::Obj, Uuid([1; 16]), Uuid([2; 16])).encode();
    /// bytes[100] ^= 1;
    /// let hdr = PoolHeader::decode(&bytes)?;
    /// let Err(HeaderError::ChecksumMismatch { stored, computed, offset: 4088, .. }) =
    ///     hdr.verify_checksum() else { panic!("not detected") };
    /// assert_ne!(stored, computed);
    /// # Ok::<(), HeaderError>(())
    /// ```
    pub fn verify_checksum(&self) -> Result<(), HeaderError> {
        let computed = self.compute_checksum();
        if computed == self.checksum {
            Ok(())
        } else {
            Err(HeaderError::ChecksumMismatch {
                what: "pool header",
                offset: offset::CHECKSUM,
                stored: self.checksum,
                computed,
            })
        }
    }

    /// Checks the header as PMDK does when it opens a part (`util_header_check`), in this
    /// order: not all zero, signature (`expected`, or any PMDK signature when `None`),
    /// major version of that type, no unknown incompat features, checksum, architecture
    /// flags of this machine.
    ///
    /// Unknown compat bits are ignored and unknown `ro_compat` bits are left to the caller
    /// ([`Features::unknown_ro_compat`]), as PMDK opens such pools read-only. The shutdown
    /// state is not checked here ([`ShutdownState::verify`]); nor are the uuid links,
    /// which need the other parts' headers ([`check_rings`]).
    ///
    /// # Errors
    ///
    /// [`HeaderError::Zeroed`], [`HeaderError::BadSignature`], [`HeaderError::BadMajor`],
    /// [`HeaderError::UnknownFeatures`], [`HeaderError::ChecksumMismatch`],
    /// [`HeaderError::ArchMismatch`] or [`HeaderError::UnsupportedHost`]: the first check
    /// that fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::{HeaderError, PoolHeader, PoolType, Uuid};
    /// let mut hdr = PoolHeader::new(PoolType::Obj, Uuid([1; 16]), Uuid([2; 16]));
    /// hdr.features.incompat |= 0x100;
    /// let hdr = PoolHeader::decode(&hdr.encode())?;
    /// assert_eq!(
    ///     hdr.validate(Some(PoolType::Obj)),
    ///     Err(HeaderError::UnknownFeatures { unknown: 0x100, found: 0x106 })
    /// );
    /// assert!(matches!(
    ///     hdr.validate(Some(PoolType::Blk)),
    ///     Err(HeaderError::BadSignature { .. })
    /// ));
    /// # Ok::<(), HeaderError>(())
    /// ```
    pub fn validate(&self, expected: Option<PoolType>) -> Result<(), HeaderError> {
        if self.is_zeroed() {
            return Err(HeaderError::Zeroed);
        }
        let pool_type = match expected {
            Some(t) if t.signature() == self.signature => t,
            Some(t) => {
                return Err(HeaderError::BadSignature {
                    expected: Some(t.signature()),
                    found: self.signature,
                });
            }
            None => self
                .pool_type()
                .ok_or(HeaderError::BadSignature { expected: None, found: self.signature })?,
        };
        if self.major != pool_type.major() {
            return Err(HeaderError::BadMajor {
                signature: self.signature,
                expected: pool_type.major(),
                found: self.major,
            });
        }
        let unknown = self.features.unknown_incompat();
        if unknown != 0 {
            return Err(HeaderError::UnknownFeatures { unknown, found: self.features.incompat });
        }
        self.verify_checksum()?;
        self.arch_flags.check_host()
    }

    /// Whether `unused` and `unused2` are all zero, as PMDK writes them.
    pub fn unused_is_zero(&self) -> bool {
        self.unused.iter().chain(self.unused2.iter()).all(|&b| b == 0)
    }
}

/// Decodes and validates a header in one step: [`PoolHeader::decode`] then
/// [`PoolHeader::validate`].
///
/// # Errors
///
/// As [`PoolHeader::decode`] and [`PoolHeader::validate`].
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::{validate, HeaderError, HEADER_SIZE};
/// assert_eq!(validate(&[0u8; HEADER_SIZE], None).unwrap_err(), HeaderError::Zeroed);
/// ```
pub fn validate(bytes: &[u8], expected: Option<PoolType>) -> Result<PoolHeader, HeaderError> {
    let hdr = PoolHeader::decode(bytes)?;
    hdr.validate(expected)?;
    Ok(hdr)
}

// ---------------------------------------------------------------------------------------
// The pmemobj pool descriptor
// ---------------------------------------------------------------------------------------

/// Length of a pmemobj layout name field, its NUL included (`PMEMOBJ_MAX_LAYOUT`).
pub const OBJ_MAX_LAYOUT: usize = 1024;
/// Length of the pmemobj descriptor's `unused` area (`OBJ_DSC_P_UNUSED`, 984).
pub const OBJ_DSC_P_UNUSED: usize = ObjDescriptor::CHECKSUMMED_LEN - OBJ_MAX_LAYOUT - 40;

/// The persistent pmemobj pool descriptor that follows the pool header in part 0 of every
/// replica of a pmemobj pool (PMDK `struct pmemobjpool` in `src/libpmemobj/obj.h`).
///
/// Offsets below are from the start of the descriptor, which is at
/// [`ObjDescriptor::OFFSET`] (4096) in the part file: `layout[1024]` at 0, `lanes_offset`
/// 1024, `nlanes` 1032, `heap_offset` 1040, `unused3` 1048, `unused[984]` 1056, checksum
/// 2040, then, not checksummed, `root_offset` 2048, `run_id` 2056, `root_size` 2064,
/// `conversion_flags` 2072, `heap_size` 2080.
///
/// The checksum is [`fletcher64`] over the first 2048 bytes (`OBJ_DSC_P_SIZE`) with the
/// checksum field counting as zero (`obj_descr_check`).
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::ObjDescriptor;
/// let mut d = ObjDescriptor::new("my-layout")?;
/// d.heap_offset = 0x30_2000;
/// let bytes = d.encode();
/// let back = ObjDescriptor::decode(&bytes)?;
/// assert_eq!(back.layout_name()?, "my-layout");
/// back.validate(Some("my-layout"))?;
/// # Ok::<(), ckpt_poolset::header::HeaderError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ObjDescriptor {
    /// Layout name, NUL-terminated.
    pub layout: Box<[u8; OBJ_MAX_LAYOUT]>,
    /// Offset of the lanes in the pool (0x2000 in PMDK 1.12).
    pub lanes_offset: u64,
    /// Number of lanes (1024).
    pub nlanes: u64,
    /// Offset of the heap in the pool.
    pub heap_offset: u64,
    /// Unused, zero.
    pub unused3: u64,
    /// Unused, zero.
    pub unused: Box<[u8; OBJ_DSC_P_UNUSED]>,
    /// The checksum as stored. [`ObjDescriptor::encode`] writes the computed one instead.
    pub checksum: u64,
    /// Offset of the root object (0 when there is none). Not checksummed.
    pub root_offset: u64,
    /// Incremented on every open. Not checksummed.
    pub run_id: u64,
    /// Size of the root object. Not checksummed.
    pub root_size: u64,
    /// Flags left by a conversion tool. Not checksummed.
    pub conversion_flags: u64,
    /// Size of the heap. Not checksummed.
    pub heap_size: u64,
}

impl fmt::Debug for ObjDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout_end = self.layout.iter().position(|&b| b == 0).unwrap_or(OBJ_MAX_LAYOUT);
        f.debug_struct("ObjDescriptor")
            .field(
                "layout",
                &format_args!(
                    "\"{}\"",
                    self.layout.get(..layout_end).unwrap_or(&[]).escape_ascii()
                ),
            )
            .field("lanes_offset", &self.lanes_offset)
            .field("nlanes", &self.nlanes)
            .field("heap_offset", &self.heap_offset)
            .field("unused3", &self.unused3)
            .field("unused_nonzero_bytes", &self.unused.iter().filter(|&&b| b != 0).count())
            .field("checksum", &format_args!("{:#018x}", self.checksum))
            .field("root_offset", &self.root_offset)
            .field("run_id", &self.run_id)
            .field("root_size", &self.root_size)
            .field("conversion_flags", &self.conversion_flags)
            .field("heap_size", &self.heap_size)
            .finish()
    }
}

impl ObjDescriptor {
    /// Offset of the descriptor in part 0 of a replica.
    pub const OFFSET: usize = HEADER_SIZE;
    /// Bytes covered by the descriptor checksum (`OBJ_DSC_P_SIZE`).
    pub const CHECKSUMMED_LEN: usize = 2048;
    /// Offset of the checksum within the descriptor.
    pub const CHECKSUM_AT: usize = Self::CHECKSUMMED_LEN - 8;
    /// Bytes [`ObjDescriptor::decode`] reads (through `heap_size`).
    pub const LEN: usize = Self::CHECKSUMMED_LEN + 40;

    /// A descriptor with layout `layout`, PMDK's lanes (offset 0x2000, 1024 lanes) and
    /// everything else zero.
    ///
    /// # Errors
    ///
    /// [`HeaderError::BadLayout`] when `layout` holds a NUL or is longer than 1023
    /// bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::ObjDescriptor;
    /// assert!(ObjDescriptor::new("ok").is_ok());
    /// assert!(ObjDescriptor::new("a\0b").is_err());
    /// assert!(ObjDescriptor::new(&"x".repeat(1024)).is_err());
    /// ```
    pub fn new(layout: &str) -> Result<Self, HeaderError> {
        let bad = |reason| HeaderError::BadLayout { offset: Self::OFFSET, reason };
        if layout.len() >= OBJ_MAX_LAYOUT {
            return Err(bad("is longer than 1023 bytes"));
        }
        if layout.as_bytes().contains(&0) {
            return Err(bad("holds a NUL byte"));
        }
        let mut name = Box::new([0u8; OBJ_MAX_LAYOUT]);
        put(&mut name[..], 0, layout.as_bytes());
        let mut d = Self {
            layout: name,
            lanes_offset: 0x2000,
            nlanes: 1024,
            heap_offset: 0,
            unused3: 0,
            unused: Box::new([0; OBJ_DSC_P_UNUSED]),
            checksum: 0,
            root_offset: 0,
            run_id: 0,
            root_size: 0,
            conversion_flags: 0,
            heap_size: 0,
        };
        d.seal();
        Ok(d)
    }

    /// Decodes a descriptor from `bytes`, which start at the descriptor (offset 4096 of
    /// the part file). Never panics.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Truncated`] when `bytes` is shorter than [`ObjDescriptor::LEN`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_poolset::header::{HeaderError, ObjDescriptor};
    /// let bytes = ObjDescriptor::new("layout")?.encode();
    /// assert_eq!(ObjDescriptor::decode(&bytes)?.layout_name()?, "layout");
    /// assert!(matches!(ObjDescriptor::decode(&bytes[..2000]), Err(HeaderError::Truncated { .. })));
    /// # Ok::<(), HeaderError>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let r = Fields::new(bytes, "pmemobj descriptor", Self::LEN)?;
        let at = Self::CHECKSUMMED_LEN;
        Ok(Self {
            layout: Box::new(r.array(0)?),
            lanes_offset: r.u64(OBJ_MAX_LAYOUT)?,
            nlanes: r.u64(OBJ_MAX_LAYOUT + 8)?,
            heap_offset: r.u64(OBJ_MAX_LAYOUT + 16)?,
            unused3: r.u64(OBJ_MAX_LAYOUT + 24)?,
            unused: Box::new(r.array(OBJ_MAX_LAYOUT + 32)?),
            checksum: r.u64(Self::CHECKSUM_AT)?,
            root_offset: r.u64(at)?,
            run_id: r.u64(at + 8)?,
            root_size: r.u64(at + 16)?,
            conversion_flags: r.u64(at + 24)?,
            heap_size: r.u64(at + 32)?,
        })
    }

    fn encode_with(&self, checksum: u64) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let at = Self::CHECKSUMMED_LEN;
        put(&mut out, 0, &self.layout[..]);
        put(&mut out, OBJ_MAX_LAYOUT, &self.lanes_offset.to_le_bytes());
        put(&mut out, OBJ_MAX_LAYOUT + 8, &self.nlanes.to_le_bytes());
        put(&mut out, OBJ_MAX_LAYOUT + 16, &self.heap_offset.to_le_bytes());
        put(&mut out, OBJ_MAX_LAYOUT + 24, &self.unused3.to_le_bytes());
        put(&mut out, OBJ_MAX_LAYOUT + 32, &self.unused[..]);
        put(&mut out, Self::CHECKSUM_AT, &checksum.to_le_bytes());
        put(&mut out, at, &self.root_offset.to_le_bytes());
        put(&mut out, at + 8, &self.run_id.to_le_bytes());
        put(&mut out, at + 16, &self.root_size.to_le_bytes());
        put(&mut out, at + 24, &self.conversion_flags.to_le_bytes());
        put(&mut out, at + 32, &self.heap_size.to_le_bytes());
        out
    }

    /// The descriptor's [`ObjDescriptor::LEN`] bytes, with the checksum computed over the
    /// first 2048 (the stored [`ObjDescriptor::checksum`] is not used).
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = self.encode_with(0);
        let sum = checksum_descriptor(&out);
        put(&mut out, Self::CHECKSUM_AT, &sum.to_le_bytes());
        out
    }

    /// The checksum of the checksummed part, as [`ObjDescriptor::encode`] writes it.
    pub fn compute_checksum(&self) -> u64 {
        checksum_descriptor(&self.encode_with(0))
    }

    /// Stores the computed checksum in [`ObjDescriptor::checksum`].
    pub fn seal(&mut self) {
        self.checksum = self.compute_checksum();
    }

    /// Checks the stored checksum.
    ///
    /// # Errors
    ///
    /// [`HeaderError::ChecksumMismatch`] with the checksum's offset in the part file
    /// (6136).
    pub fn verify_checksum(&self) -> Result<(), HeaderError> {
        let computed = self.compute_checksum();
        if computed == self.checksum {
            Ok(())
        } else {
            Err(HeaderError::ChecksumMismatch {
                what: "pmemobj descriptor",
                offset: Self::OFFSET + Self::CHECKSUM_AT,
                stored: self.checksum,
                computed,
            })
        }
    }

    /// The layout name: the bytes before the first NUL.
    ///
    /// # Errors
    ///
    /// [`HeaderError::BadLayout`] when there is no NUL in the 1024 bytes or the name is
    /// not UTF-8.
    pub fn layout_name(&self) -> Result<&str, HeaderError> {
        let bad = |reason| HeaderError::BadLayout { offset: Self::OFFSET, reason };
        let end = self
            .layout
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("has no terminating NUL in its 1024 bytes"))?;
        let name = self.layout.get(..end).ok_or_else(|| bad("is out of range"))?;
        std::str::from_utf8(name).map_err(|_| bad("is not UTF-8"))
    }

    /// Checks the descriptor as PMDK does when it opens a pool (`obj_descr_check`):
    /// checksum, layout (when `expected_layout` is given), heap alignment to 4 KiB.
    ///
    /// # Errors
    ///
    /// [`HeaderError::ChecksumMismatch`], [`HeaderError::BadLayout`],
    /// [`HeaderError::LayoutMismatch`] or [`HeaderError::UnalignedHeap`].
    pub fn validate(&self, expected_layout: Option<&str>) -> Result<(), HeaderError> {
        self.verify_checksum()?;
        if let Some(expected) = expected_layout {
            let found = self.layout_name()?;
            if found != expected {
                return Err(HeaderError::LayoutMismatch {
                    expected: expected.to_owned(),
                    found: found.to_owned(),
                });
            }
        }
        if !self.heap_offset.is_multiple_of(4096) {
            return Err(HeaderError::UnalignedHeap { heap_offset: self.heap_offset });
        }
        Ok(())
    }
}

fn checksum_descriptor(bytes: &[u8]) -> u64 {
    let covered = bytes.get(..ObjDescriptor::CHECKSUMMED_LEN).unwrap_or(bytes);
    fletcher64(covered, ObjDescriptor::CHECKSUM_AT, ObjDescriptor::CHECKSUMMED_LEN)
}

// ---------------------------------------------------------------------------------------
// The uuid rings
// ---------------------------------------------------------------------------------------

fn link_error(
    link: Link,
    replica: usize,
    part: usize,
    expected: Uuid,
    found: Uuid,
) -> Result<(), HeaderError> {
    if expected == found {
        Ok(())
    } else {
        Err(HeaderError::BrokenLink { link, replica, part, expected, found })
    }
}

/// Checks that the headers of one replica's parts, in poolset order, form PMDK's part
/// ring: each part's `next_part_uuid` is the next part's uuid and its `prev_part_uuid`
/// the previous part's (wrapping around; a single part points to itself), and all carry
/// part 0's pool set uuid. `replica` only labels errors.
///
/// With `OPTION SINGLEHDR` only part 0 has a header; pass just that one.
///
/// # Errors
///
/// [`HeaderError::Empty`] for no headers; otherwise [`HeaderError::BrokenLink`] for the
/// first link (pool set uuid, then next, then previous, part by part) that is wrong —
/// the order in which `pmempool check` reports them (`invalid pool_hdr.next_part_uuid`).
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::{check_part_ring, link_rings, Link, HeaderError, PoolHeader, PoolType, Uuid};
/// let set = Uuid([9; 16]);
/// let mut parts: Vec<PoolHeader> =
///     (1..=3).map(|i| PoolHeader::new(PoolType::Obj, set, Uuid([i; 16]))).collect();
/// link_rings(&mut [&mut parts[..]])?;
/// check_part_ring(0, &parts)?;
/// parts.swap(1, 2);
/// assert!(matches!(
///     check_part_ring(0, &parts),
///     Err(HeaderError::BrokenLink { link: Link::NextPart, part: 0, .. })
/// ));
/// # Ok::<(), HeaderError>(())
/// ```
pub fn check_part_ring(replica: usize, parts: &[PoolHeader]) -> Result<(), HeaderError> {
    let first = parts.first().ok_or(HeaderError::Empty { replica: Some(replica) })?;
    let n = parts.len();
    for (p, hdr) in parts.iter().enumerate() {
        let prev = parts.get((p + n - 1) % n).unwrap_or(hdr);
        let next = parts.get((p + 1) % n).unwrap_or(hdr);
        link_error(Link::PoolsetUuid, replica, p, first.poolset_uuid, hdr.poolset_uuid)?;
        link_error(Link::NextPart, replica, p, next.uuid, hdr.next_part_uuid)?;
        link_error(Link::PrevPart, replica, p, prev.uuid, hdr.prev_part_uuid)?;
    }
    Ok(())
}

/// Checks the replica ring: every header of replica `r` has `prev_repl_uuid` = the uuid
/// of part 0 of replica `r - 1` and `next_repl_uuid` = that of replica `r + 1`
/// (wrapping; a single replica points to itself), and every header carries the pool set
/// uuid of replica 0 part 0.
///
/// # Errors
///
/// [`HeaderError::Empty`] for no replicas or a replica without headers; otherwise
/// [`HeaderError::BrokenLink`] for the first wrong link.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::{check_replica_ring, link_rings, PoolHeader, PoolType, Uuid};
/// let set = Uuid([9; 16]);
/// let mut a = vec![PoolHeader::new(PoolType::Obj, set, Uuid([1; 16]))];
/// let mut b = vec![PoolHeader::new(PoolType::Obj, set, Uuid([2; 16]))];
/// link_rings(&mut [&mut a[..], &mut b[..]])?;
/// assert_eq!(a[0].next_repl_uuid, Uuid([2; 16]));
/// check_replica_ring(&[&a[..], &b[..]])?;
/// # Ok::<(), ckpt_poolset::header::HeaderError>(())
/// ```
pub fn check_replica_ring<R: AsRef<[PoolHeader]>>(replicas: &[R]) -> Result<(), HeaderError> {
    let heads = replica_heads(replicas)?;
    let set_uuid =
        heads.first().map(|h| h.poolset_uuid).ok_or(HeaderError::Empty { replica: None })?;
    let n = heads.len();
    for (r, rep) in replicas.iter().enumerate() {
        let prev = heads.get((r + n - 1) % n).map_or(Uuid::NIL, |h| h.uuid);
        let next = heads.get((r + 1) % n).map_or(Uuid::NIL, |h| h.uuid);
        for (p, hdr) in rep.as_ref().iter().enumerate() {
            link_error(Link::PoolsetUuid, r, p, set_uuid, hdr.poolset_uuid)?;
            link_error(Link::NextReplica, r, p, next, hdr.next_repl_uuid)?;
            link_error(Link::PrevReplica, r, p, prev, hdr.prev_repl_uuid)?;
        }
    }
    Ok(())
}

fn replica_heads<R: AsRef<[PoolHeader]>>(replicas: &[R]) -> Result<Vec<&PoolHeader>, HeaderError> {
    if replicas.is_empty() {
        return Err(HeaderError::Empty { replica: None });
    }
    replicas
        .iter()
        .enumerate()
        .map(|(r, rep)| rep.as_ref().first().ok_or(HeaderError::Empty { replica: Some(r) }))
        .collect()
}

/// Checks a whole set's headers (`replicas[r][p]` = header of part `p` of replica `r`, in
/// poolset order): uuids all distinct, the pool set uuid of replica 0 part 0 in every
/// header, every replica's part ring ([`check_part_ring`]) and the replica ring
/// ([`check_replica_ring`]).
///
/// # Errors
///
/// [`HeaderError::Empty`], [`HeaderError::DuplicateUuid`] or [`HeaderError::BrokenLink`]
/// for the first problem found.
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::{check_rings, link_rings, HeaderError, PoolHeader, PoolType, Uuid};
/// let set = Uuid([9; 16]);
/// let mut set_hdrs: Vec<Vec<PoolHeader>> = (0..2u8)
///     .map(|r| (0..2u8).map(|p| PoolHeader::new(PoolType::Obj, set, Uuid([r * 2 + p + 1; 16]))).collect())
///     .collect();
/// link_rings(&mut set_hdrs)?;
/// check_rings(&set_hdrs)?;
/// set_hdrs[1][1].uuid = Uuid([1; 16]);
/// assert!(matches!(check_rings(&set_hdrs), Err(HeaderError::DuplicateUuid { .. })));
/// # Ok::<(), HeaderError>(())
/// ```
pub fn check_rings<R: AsRef<[PoolHeader]>>(replicas: &[R]) -> Result<(), HeaderError> {
    replica_heads(replicas)?;
    let mut seen: HashMap<Uuid, (usize, usize)> = HashMap::new();
    for (r, rep) in replicas.iter().enumerate() {
        for (p, hdr) in rep.as_ref().iter().enumerate() {
            if let Some(&first) = seen.get(&hdr.uuid) {
                return Err(HeaderError::DuplicateUuid { uuid: hdr.uuid, first, second: (r, p) });
            }
            seen.insert(hdr.uuid, (r, p));
        }
    }
    let set_uuid =
        replicas.first().and_then(|rep| rep.as_ref().first()).map_or(Uuid::NIL, |h| h.poolset_uuid);
    for (r, rep) in replicas.iter().enumerate() {
        for (p, hdr) in rep.as_ref().iter().enumerate() {
            link_error(Link::PoolsetUuid, r, p, set_uuid, hdr.poolset_uuid)?;
        }
    }
    for (r, rep) in replicas.iter().enumerate() {
        check_part_ring(r, rep.as_ref())?;
    }
    check_replica_ring(replicas)
}

/// Rewrites the link fields of a set's headers from their `uuid`s so that they form the
/// part and replica rings [`check_rings`] expects, as PMDK links the headers it creates.
/// The pool set uuid of replica 0 part 0 is copied into every header, and every header is
/// [sealed](PoolHeader::seal).
///
/// # Errors
///
/// [`HeaderError::Empty`] for no replicas or a replica without headers (nothing is
/// changed then).
///
/// # Examples
///
/// ```
/// use ckpt_poolset::header::{link_rings, PoolHeader, PoolType, Uuid};
/// let set = Uuid([9; 16]);
/// let mut parts: Vec<PoolHeader> =
///     (1..=3).map(|i| PoolHeader::new(PoolType::Obj, set, Uuid([i; 16]))).collect();
/// link_rings(&mut [&mut parts[..]])?;
/// assert_eq!(parts[2].next_part_uuid, Uuid([1; 16]));
/// assert_eq!(parts[0].prev_part_uuid, Uuid([3; 16]));
/// assert_eq!(parts[1].next_repl_uuid, Uuid([1; 16])); // one replica: its own part 0
/// assert!(parts.iter().all(|h| h.verify_checksum().is_ok()));
/// # Ok::<(), ckpt_poolset::header::HeaderError>(())
/// ```
pub fn link_rings<R: AsMut<[PoolHeader]>>(replicas: &mut [R]) -> Result<(), HeaderError> {
    if replicas.is_empty() {
        return Err(HeaderError::Empty { replica: None });
    }
    let mut heads = Vec::with_capacity(replicas.len());
    for (r, rep) in replicas.iter_mut().enumerate() {
        let first = rep.as_mut().first().ok_or(HeaderError::Empty { replica: Some(r) })?;
        heads.push(first.uuid);
    }
    let set_uuid =
        replicas.first_mut().and_then(|rep| rep.as_mut().first().map(|h| h.poolset_uuid));
    let set_uuid = set_uuid.unwrap_or(Uuid::NIL);
    let n = heads.len();
    for (r, rep) in replicas.iter_mut().enumerate() {
        let prev_repl = heads.get((r + n - 1) % n).copied().unwrap_or(Uuid::NIL);
        let next_repl = heads.get((r + 1) % n).copied().unwrap_or(Uuid::NIL);
        let parts = rep.as_mut();
        let uuids: Vec<Uuid> = parts.iter().map(|h| h.uuid).collect();
        let m = uuids.len();
        for (p, hdr) in parts.iter_mut().enumerate() {
            hdr.poolset_uuid = set_uuid;
            hdr.prev_part_uuid = uuids.get((p + m - 1) % m).copied().unwrap_or(hdr.uuid);
            hdr.next_part_uuid = uuids.get((p + 1) % m).copied().unwrap_or(hdr.uuid);
            hdr.prev_repl_uuid = prev_repl;
            hdr.next_repl_uuid = next_repl;
            hdr.seal();
        }
    }
    Ok(())
}
