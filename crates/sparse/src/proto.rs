//! The wire protocol of `ckpt sparse sync`: message types and their framing, as a pure codec.
//!
//! `docs/sparse-protocol.md` is the normative specification; this module is its reference
//! implementation. Every message travels in one frame:
//!
//! ```text
//! magic "CKSP" | version u16le | type u16le | payload length u32le | payload | xxh3-64 u64le
//! ```
//!
//! where the check value is the xxh3-64 (seed 0) of the header and the payload. The codec does
//! no I/O of its own beyond [`std::io::Read`] and [`std::io::Write`]: [`encode`] and
//! [`decode`] work on byte buffers, [`write_message`] and [`read_message`] on streams (the
//! stdin/stdout of a `--remote-cmd` child, for instance).
//!
//! Decoding is total: hostile bytes give a [`ProtoError`] that names the numbers involved,
//! never a panic, and never an allocation larger than the frame limit
//! ([`MAX_PAYLOAD_LEN`] plus header and check value). A message that decodes re-encodes to
//! exactly the bytes it was decoded from (the encoding is canonical).
//!
//! # Examples
//!
//! ```
//! use ckpt_sparse::proto::{self, HelloFlags, Message, Role};
//!
//! let hello = Message::Hello {
//!     version: proto::PROTOCOL_VERSION,
//!     role: Role::Sender,
//!     block_size: 64 * 1024,
//!     sub_block_size: 4096,
//!     file_size: 1 << 30,
//!     flags: HelloFlags::empty(),
//! };
//! let mut wire = Vec::new();
//! proto::write_message(&mut wire, &hello)?;
//! proto::write_message(&mut wire, &Message::Truncate { size: 1 << 30 })?;
//!
//! let mut r = wire.as_slice();
//! assert_eq!(proto::read_message(&mut r)?, Some(hello));
//! assert_eq!(proto::read_message(&mut r)?, Some(Message::Truncate { size: 1 << 30 }));
//! assert_eq!(proto::read_message(&mut r)?, None); // clean end of stream
//! # Ok::<(), proto::ProtoError>(())
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;
use std::io::{self, Read, Write};

use xxhash_rust::xxh3::xxh3_64;

/// The frame magic, ASCII `"CKSP"` (`43 4B 53 50`).
pub const MAGIC: [u8; 4] = *b"CKSP";
/// The protocol version this build writes in every header and the only one it reads.
pub const PROTOCOL_VERSION: u16 = 1;
/// Length of the frame header: magic, version, type, payload length.
pub const HEADER_LEN: usize = 12;
/// Length of the check value that ends every frame.
pub const CHECKSUM_LEN: usize = 8;
/// Largest number of bytes one [`Message::Data`] carries (16 MiB).
pub const MAX_DATA_LEN: u32 = 16 * 1024 * 1024;
/// Largest payload length a header may declare: [`MAX_DATA_LEN`] plus 40 bytes for the fixed
/// fields of the largest message (16 777 256 bytes). Longer lengths are rejected before any
/// payload byte is read or any buffer is allocated.
pub const MAX_PAYLOAD_LEN: u32 = MAX_DATA_LEN + 40;
/// Largest frame: header, [`MAX_PAYLOAD_LEN`] bytes of payload and the check value.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN as usize + CHECKSUM_LEN;
/// Most hashes in one [`Message::Hashes`] (2 097 152, i.e. 16 MiB of hashes).
pub const MAX_HASHES: u32 = MAX_DATA_LEN / 8;
/// Most block indices in one [`Message::Want`] (2 097 152, i.e. 16 MiB of indices).
pub const MAX_WANT: u32 = MAX_DATA_LEN / 8;
/// Smallest block or sub-block size (4 KiB).
pub const MIN_BLOCK_SIZE: u32 = 4096;
/// Largest block or sub-block size (64 MiB).
pub const MAX_BLOCK_SIZE: u32 = 64 * 1024 * 1024;
/// Longest text of a [`Message::Error`], in bytes of UTF-8.
pub const MAX_ERROR_MESSAGE_LEN: usize = 4096;
/// [`Message::Hashes`] / [`Message::Want`] level of the coarse block grid.
pub const LEVEL_BLOCK: u8 = 0;
/// [`Message::Hashes`] / [`Message::Want`] level of the sub-block grid.
pub const LEVEL_SUB_BLOCK: u8 = 1;

/// Fixed payload lengths and fixed prefixes of the variable-length payloads.
const HELLO_LEN: u32 = 23;
const HASHES_FIXED: u32 = 17;
const WANT_FIXED: u32 = 5;
const DATA_FIXED: u32 = 12;
const PAIR_LEN: u32 = 16;
const TRUNCATE_LEN: u32 = 8;
const ERROR_FIXED: u32 = 4;
/// First allocation when reading a payload; the buffer then grows with the bytes that
/// actually arrive, so a header that lies about its length costs little memory.
const INITIAL_READ_CAPACITY: usize = 64 * 1024;

/// Codes for [`Message::Error`]. Receivers of an `Error` accept any code; these are the ones
/// the specification defines.
pub mod error_code {
    /// No more specific code applies.
    pub const UNSPECIFIED: u16 = 0;
    /// The peer sent a message that is valid on its own but wrong at this point of the
    /// conversation, or values that disagree with earlier messages.
    pub const PROTOCOL: u16 = 1;
    /// Reading the source or writing the target failed.
    pub const IO: u16 = 2;
    /// The peer's protocol version is not supported.
    pub const VERSION: u16 = 3;
    /// The proposed block or sub-block size is refused.
    pub const BLOCK_SIZE: u16 = 4;
    /// `Done` counters disagree with what was received.
    pub const MISMATCH: u16 = 5;
    /// Another sync holds the target.
    pub const BUSY: u16 = 6;
}

/// The type code carried in every frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// [`Message::Hello`], code 1.
    Hello,
    /// [`Message::Hashes`], code 2.
    Hashes,
    /// [`Message::Want`], code 3.
    Want,
    /// [`Message::Data`], code 4.
    Data,
    /// [`Message::Hole`], code 5.
    Hole,
    /// [`Message::Truncate`], code 6.
    Truncate,
    /// [`Message::Done`], code 7.
    Done,
    /// [`Message::Committed`], code 8.
    Committed,
    /// [`Message::Error`], code 9.
    Error,
}

impl MessageType {
    /// The type's code on the wire.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_sparse::proto::MessageType;
    /// assert_eq!(MessageType::Hello.code(), 1);
    /// assert_eq!(MessageType::from_code(9), Some(MessageType::Error));
    /// ```
    pub const fn code(self) -> u16 {
        match self {
            Self::Hello => 1,
            Self::Hashes => 2,
            Self::Want => 3,
            Self::Data => 4,
            Self::Hole => 5,
            Self::Truncate => 6,
            Self::Done => 7,
            Self::Committed => 8,
            Self::Error => 9,
        }
    }

    /// The type with this wire code, if this build knows one.
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::Hello,
            2 => Self::Hashes,
            3 => Self::Want,
            4 => Self::Data,
            5 => Self::Hole,
            6 => Self::Truncate,
            7 => Self::Done,
            8 => Self::Committed,
            9 => Self::Error,
            _ => return None,
        })
    }

    /// The type's name, as used in the specification.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hello => "Hello",
            Self::Hashes => "Hashes",
            Self::Want => "Want",
            Self::Data => "Data",
            Self::Hole => "Hole",
            Self::Truncate => "Truncate",
            Self::Done => "Done",
            Self::Committed => "Committed",
            Self::Error => "Error",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (type {})", self.name(), self.code())
    }
}

/// Which end of a sync a peer is, as announced in [`Message::Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Holds the source, sends hashes and data (wire value 0).
    Sender,
    /// Holds the target, asks for blocks and commits (wire value 1).
    Receiver,
}

impl Role {
    /// The role's byte on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Self::Sender => 0,
            Self::Receiver => 1,
        }
    }

    /// The role with this wire byte, if any.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Sender),
            1 => Some(Self::Receiver),
            _ => None,
        }
    }
}

/// Flag bits of [`Message::Hello`]. Bits this version does not define must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HelloFlags(u32);

impl HelloFlags {
    /// Receiver only: a dirty marker from an earlier sync that never committed was found,
    /// so the target may be partly updated and nothing may be skipped on trust.
    pub const DIRTY: Self = Self(1);
    /// Every bit this version defines.
    pub const ALL: Self = Self(1);

    /// No flag set.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The flags from their wire value, or `None` when a bit this version does not define is
    /// set.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_sparse::proto::HelloFlags;
    /// assert_eq!(HelloFlags::from_bits(1), Some(HelloFlags::DIRTY));
    /// assert_eq!(HelloFlags::from_bits(2), None);
    /// ```
    pub const fn from_bits(bits: u32) -> Option<Self> {
        if bits & !Self::ALL.0 == 0 { Some(Self(bits)) } else { None }
    }

    /// The wire value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` added.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// One protocol message. `docs/sparse-protocol.md` says who sends which, when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// First message of each peer (type 1).
    Hello {
        /// Highest protocol version the peer implements (at least 1).
        version: u16,
        /// The peer's role.
        role: Role,
        /// Coarse block size: a power of two in [`MIN_BLOCK_SIZE`]`..=`[`MAX_BLOCK_SIZE`].
        block_size: u32,
        /// Sub-block size: a power of two in the same range, at most `block_size`.
        sub_block_size: u32,
        /// Sender: size of the source. Receiver: current size of the target (0 if absent).
        file_size: u64,
        /// See [`HelloFlags`].
        flags: HelloFlags,
    },
    /// Hashes of consecutive blocks `first_block..first_block + hashes.len()` (type 2).
    Hashes {
        /// [`LEVEL_BLOCK`] or [`LEVEL_SUB_BLOCK`].
        level: u8,
        /// Index of the first block, on the grid of `block_size` aligned to offset 0.
        first_block: u64,
        /// Size of the blocks hashed (a valid block size).
        block_size: u32,
        /// One hash per block (xxh3-based; `docs/sparse-protocol.md` 4.2 defines them, with
        /// 0 for a block of zeros); at most [`MAX_HASHES`].
        hashes: Vec<u64>,
    },
    /// Indices of the blocks of one level that differ, strictly ascending; an empty list ends
    /// the level's list (type 3).
    Want {
        /// [`LEVEL_BLOCK`] or [`LEVEL_SUB_BLOCK`].
        level: u8,
        /// Block indices, strictly ascending; at most [`MAX_WANT`].
        blocks: Vec<u64>,
    },
    /// Bytes to write at `offset` (type 4).
    Data {
        /// Target offset of the first byte.
        offset: u64,
        /// At most [`MAX_DATA_LEN`] bytes; `offset + bytes.len()` fits in a `u64`.
        bytes: Vec<u8>,
    },
    /// A range to make a hole (type 5).
    Hole {
        /// First byte of the hole.
        offset: u64,
        /// Length of the hole; `offset + len` fits in a `u64`.
        len: u64,
    },
    /// The target's final size (type 6).
    Truncate {
        /// The size.
        size: u64,
    },
    /// Sender: everything was sent (type 7).
    Done {
        /// Sum of the lengths of all `Data` messages sent.
        bytes_sent: u64,
        /// Number of sub-blocks the receiver wanted.
        blocks_changed: u64,
    },
    /// Receiver: the new target is durable under its name (type 8).
    Committed {
        /// The target's size.
        size: u64,
        /// xxh3-64 of the target's whole content (holes read as zeros).
        digest: u64,
    },
    /// Either peer: the sync failed; the sender of `Error` closes the stream next (type 9).
    Error {
        /// One of [`error_code`], or another value.
        code: u16,
        /// What went wrong, at most [`MAX_ERROR_MESSAGE_LEN`] bytes.
        message: String,
    },
}

impl Message {
    /// The message's type.
    pub const fn kind(&self) -> MessageType {
        match self {
            Self::Hello { .. } => MessageType::Hello,
            Self::Hashes { .. } => MessageType::Hashes,
            Self::Want { .. } => MessageType::Want,
            Self::Data { .. } => MessageType::Data,
            Self::Hole { .. } => MessageType::Hole,
            Self::Truncate { .. } => MessageType::Truncate,
            Self::Done { .. } => MessageType::Done,
            Self::Committed { .. } => MessageType::Committed,
            Self::Error { .. } => MessageType::Error,
        }
    }

    /// Length of the message's payload on the wire (saturating for messages too large to
    /// encode, which [`validate`](Self::validate) rejects).
    pub fn payload_len(&self) -> usize {
        let var = |fixed: u32, n: usize, size: usize| {
            n.saturating_mul(size).saturating_add(fixed as usize)
        };
        match self {
            Self::Hello { .. } => HELLO_LEN as usize,
            Self::Hashes { hashes, .. } => var(HASHES_FIXED, hashes.len(), 8),
            Self::Want { blocks, .. } => var(WANT_FIXED, blocks.len(), 8),
            Self::Data { bytes, .. } => var(DATA_FIXED, bytes.len(), 1),
            Self::Hole { .. } | Self::Done { .. } | Self::Committed { .. } => PAIR_LEN as usize,
            Self::Truncate { .. } => TRUNCATE_LEN as usize,
            Self::Error { message, .. } => var(ERROR_FIXED, message.len(), 1),
        }
    }

    /// Length of the whole frame: header, payload and check value.
    pub fn encoded_len(&self) -> usize {
        self.payload_len().saturating_add(HEADER_LEN + CHECKSUM_LEN)
    }

    /// Checks every field against the limits of the specification: the checks a decoder
    /// makes, so that a message passes here exactly when its encoding decodes.
    ///
    /// # Errors
    ///
    /// The first violated limit, as the [`ProtoError`] a decoder would report.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_sparse::proto::{Message, ProtoError};
    /// let ok = Message::Hole { offset: 4096, len: 4096 };
    /// assert!(ok.validate().is_ok());
    /// let bad = Message::Hole { offset: u64::MAX, len: 1 };
    /// assert!(matches!(bad.validate(), Err(ProtoError::RangeOverflow { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), ProtoError> {
        let kind = self.kind();
        match self {
            Self::Hello { version, block_size, sub_block_size, flags, .. } => {
                if *version == 0 {
                    return Err(ProtoError::ZeroHelloVersion);
                }
                check_block_size("block_size", *block_size)?;
                check_block_size("sub_block_size", *sub_block_size)?;
                if sub_block_size > block_size {
                    return Err(ProtoError::SubBlockLarger {
                        block_size: *block_size,
                        sub_block_size: *sub_block_size,
                    });
                }
                if HelloFlags::from_bits(flags.bits()).is_none() {
                    return Err(ProtoError::UnknownFlags { flags: flags.bits() });
                }
            }
            Self::Hashes { level, first_block, block_size, hashes } => {
                check_level(kind, *level)?;
                check_block_size("block_size", *block_size)?;
                check_count(kind, hashes.len(), MAX_HASHES)?;
                let end = first_block
                    .checked_add(hashes.len() as u64)
                    .and_then(|end| end.checked_mul(u64::from(*block_size)));
                if end.is_none() {
                    return Err(ProtoError::BlockRangeOverflow {
                        first_block: *first_block,
                        count: hashes.len() as u64,
                        block_size: *block_size,
                    });
                }
            }
            Self::Want { level, blocks } => {
                check_level(kind, *level)?;
                check_count(kind, blocks.len(), MAX_WANT)?;
                for (i, pair) in blocks.windows(2).enumerate() {
                    if let [previous, block] = *pair
                        && block <= previous
                    {
                        return Err(ProtoError::NotAscending { index: i + 1, previous, block });
                    }
                }
            }
            Self::Data { offset, bytes } => {
                check_count(kind, bytes.len(), MAX_DATA_LEN)?;
                check_range(kind, *offset, bytes.len() as u64)?;
            }
            Self::Hole { offset, len } => check_range(kind, *offset, *len)?,
            Self::Error { message, .. } => {
                if message.len() > MAX_ERROR_MESSAGE_LEN {
                    return Err(ProtoError::TooMany {
                        kind,
                        count: message.len() as u64,
                        max: MAX_ERROR_MESSAGE_LEN as u64,
                    });
                }
            }
            Self::Truncate { .. } | Self::Done { .. } | Self::Committed { .. } => {}
        }
        Ok(())
    }
}

/// Which part of a frame a truncated message stopped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramePart {
    /// The 12-byte header.
    Header,
    /// The payload.
    Payload,
    /// The 8-byte check value.
    Checksum,
}

impl fmt::Display for FramePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Payload => "payload",
            Self::Checksum => "checksum",
        })
    }
}

/// Everything that can be wrong with a message, or with the stream that carries it.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProtoError {
    /// Reading or writing the stream failed.
    Io(io::Error),
    /// The input ended inside a message.
    Truncated {
        /// The part of the frame that was cut.
        part: FramePart,
        /// Bytes of that part that were present.
        got: usize,
        /// Bytes that part needs.
        expected: usize,
    },
    /// The frame does not start with [`MAGIC`].
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The header's protocol version is not [`PROTOCOL_VERSION`].
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The header's type code is not one this build knows.
    UnknownType {
        /// The code found.
        found: u16,
    },
    /// The header declares a payload longer than [`MAX_PAYLOAD_LEN`].
    PayloadTooLarge {
        /// The declared length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The check value does not match the header and payload.
    ChecksumMismatch {
        /// The value stored in the frame.
        stored: u64,
        /// The value computed from the bytes received.
        computed: u64,
    },
    /// A payload's length is wrong for its message type (a fixed-size payload of the wrong
    /// size, or a payload shorter than its fixed fields).
    PayloadLength {
        /// The message type.
        kind: MessageType,
        /// The payload length found.
        len: u32,
        /// The length required (exact for fixed-size types, minimum for the others).
        expected: u32,
        /// Whether `expected` is exact (true) or a minimum (false).
        exact: bool,
    },
    /// An element count disagrees with the bytes that follow it (too few, or trailing bytes).
    CountMismatch {
        /// The message type.
        kind: MessageType,
        /// The declared count.
        count: u32,
        /// Size of one element in bytes.
        element_size: u32,
        /// Payload bytes that follow the fixed fields.
        remaining: u32,
    },
    /// More elements (hashes, indices, data bytes, message bytes) than one message may hold.
    TooMany {
        /// The message type.
        kind: MessageType,
        /// The count.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A block size is not a power of two within [`MIN_BLOCK_SIZE`]`..=`[`MAX_BLOCK_SIZE`].
    BadBlockSize {
        /// Which field.
        field: &'static str,
        /// Its value.
        size: u32,
    },
    /// `Hello`'s sub-block size exceeds its block size.
    SubBlockLarger {
        /// The block size.
        block_size: u32,
        /// The sub-block size.
        sub_block_size: u32,
    },
    /// A level other than [`LEVEL_BLOCK`] and [`LEVEL_SUB_BLOCK`].
    BadLevel {
        /// The message type.
        kind: MessageType,
        /// The level found.
        level: u8,
    },
    /// A role byte other than 0 and 1.
    BadRole {
        /// The byte found.
        role: u8,
    },
    /// `Hello` flags with bits this version does not define.
    UnknownFlags {
        /// The flags found.
        flags: u32,
    },
    /// `Hello` announces version 0.
    ZeroHelloVersion,
    /// `offset + len` does not fit in a `u64`.
    RangeOverflow {
        /// The message type.
        kind: MessageType,
        /// The offset.
        offset: u64,
        /// The length.
        len: u64,
    },
    /// The end offset of a `Hashes` run does not fit in a `u64`.
    BlockRangeOverflow {
        /// The first block index.
        first_block: u64,
        /// The number of hashes.
        count: u64,
        /// The block size.
        block_size: u32,
    },
    /// `Want` block indices are not strictly ascending.
    NotAscending {
        /// Position of the offending index in the list.
        index: usize,
        /// The index before it.
        previous: u64,
        /// The offending index.
        block: u64,
    },
    /// An `Error` message text is not UTF-8.
    InvalidUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "sparse protocol stream I/O error: {e}"),
            Self::Truncated { part, got, expected } => {
                write!(f, "truncated message: {got} of {expected} {part} bytes")
            }
            Self::BadMagic { found } => write!(
                f,
                "bad message magic {:02X} {:02X} {:02X} {:02X} (expected \"CKSP\" = 43 4B 53 50)",
                found[0], found[1], found[2], found[3]
            ),
            Self::UnsupportedVersion { found } => {
                write!(f, "unknown protocol version {found} (this build speaks {PROTOCOL_VERSION})")
            }
            Self::UnknownType { found } => {
                write!(f, "unknown message type {found} (this build knows 1 to 9)")
            }
            Self::PayloadTooLarge { len, max } => {
                write!(f, "message payload of {len} bytes exceeds the {max}-byte limit")
            }
            Self::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")
            }
            Self::PayloadLength { kind, len, expected, exact } => {
                let how = if *exact { "exactly" } else { "at least" };
                write!(f, "{kind} payload is {len} bytes, expected {how} {expected}")
            }
            Self::CountMismatch { kind, count, element_size, remaining } => write!(
                f,
                "{kind} declares {count} elements of {element_size} bytes ({} bytes) but {remaining} bytes follow",
                u64::from(*count) * u64::from(*element_size)
            ),
            Self::TooMany { kind, count, max } => {
                write!(f, "{kind} holds {count} elements, more than the limit of {max}")
            }
            Self::BadBlockSize { field, size } => write!(
                f,
                "{field} {size} is not a power of two between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"
            ),
            Self::SubBlockLarger { block_size, sub_block_size } => {
                write!(f, "sub_block_size {sub_block_size} exceeds block_size {block_size}")
            }
            Self::BadLevel { kind, level } => {
                write!(f, "{kind} has level {level} (expected 0 or 1)")
            }
            Self::BadRole { role } => write!(f, "Hello has role {role} (expected 0 or 1)"),
            Self::UnknownFlags { flags } => write!(
                f,
                "Hello flags {flags:#010x} set bits outside the defined {:#010x}",
                HelloFlags::ALL.bits()
            ),
            Self::ZeroHelloVersion => f.write_str("Hello announces protocol version 0"),
            Self::RangeOverflow { kind, offset, len } => {
                write!(f, "{kind} range at offset {offset} of length {len} runs past 2^64 - 1")
            }
            Self::BlockRangeOverflow { first_block, count, block_size } => write!(
                f,
                "Hashes of {count} blocks of {block_size} bytes from block {first_block} end past 2^64 - 1"
            ),
            Self::NotAscending { index, previous, block } => write!(
                f,
                "Want block {block} at position {index} does not follow {previous} in ascending order"
            ),
            Self::InvalidUtf8 { valid_up_to } => {
                write!(f, "Error message text is not UTF-8 (valid up to byte {valid_up_to})")
            }
        }
    }
}

impl std::error::Error for ProtoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ProtoError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn check_block_size(field: &'static str, size: u32) -> Result<(), ProtoError> {
    if size.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(ProtoError::BadBlockSize { field, size })
    }
}

fn check_level(kind: MessageType, level: u8) -> Result<(), ProtoError> {
    if level == LEVEL_BLOCK || level == LEVEL_SUB_BLOCK {
        Ok(())
    } else {
        Err(ProtoError::BadLevel { kind, level })
    }
}

fn check_count(kind: MessageType, count: usize, max: u32) -> Result<(), ProtoError> {
    if count <= max as usize {
        Ok(())
    } else {
        Err(ProtoError::TooMany { kind, count: count as u64, max: u64::from(max) })
    }
}

fn check_range(kind: MessageType, offset: u64, len: u64) -> Result<(), ProtoError> {
    match offset.checked_add(len) {
        Some(_) => Ok(()),
        None => Err(ProtoError::RangeOverflow { kind, offset, len }),
    }
}

/// Appends one framed message to `out`, or nothing if the message is invalid.
///
/// # Errors
///
/// [`Message::validate`]'s error when a field exceeds a limit of the specification; `out`
/// is then unchanged.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::proto::{self, Message};
/// let mut out = Vec::new();
/// proto::try_encode(&Message::Truncate { size: 0 }, &mut out)?;
/// assert_eq!(out.len(), 12 + 8 + 8);
/// let too_long = Message::Error { code: 1, message: "x".repeat(5000) };
/// assert!(proto::try_encode(&too_long, &mut out).is_err());
/// assert_eq!(out.len(), 28);
/// # Ok::<(), proto::ProtoError>(())
/// ```
pub fn try_encode(msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    msg.validate()?;
    let payload_len = msg.payload_len();
    // validate() bounds every payload by MAX_PAYLOAD_LEN, so this conversion cannot fail.
    let Ok(wire_len) = u32::try_from(payload_len) else {
        return Err(ProtoError::PayloadTooLarge { len: u32::MAX, max: MAX_PAYLOAD_LEN });
    };
    let start = out.len();
    out.reserve(msg.encoded_len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&msg.kind().code().to_le_bytes());
    out.extend_from_slice(&wire_len.to_le_bytes());
    match msg {
        Message::Hello { version, role, block_size, sub_block_size, file_size, flags } => {
            out.extend_from_slice(&version.to_le_bytes());
            out.push(role.code());
            out.extend_from_slice(&block_size.to_le_bytes());
            out.extend_from_slice(&sub_block_size.to_le_bytes());
            out.extend_from_slice(&file_size.to_le_bytes());
            out.extend_from_slice(&flags.bits().to_le_bytes());
        }
        Message::Hashes { level, first_block, block_size, hashes } => {
            out.push(*level);
            out.extend_from_slice(&first_block.to_le_bytes());
            out.extend_from_slice(&block_size.to_le_bytes());
            put_u32_count(out, hashes.len());
            for h in hashes {
                out.extend_from_slice(&h.to_le_bytes());
            }
        }
        Message::Want { level, blocks } => {
            out.push(*level);
            put_u32_count(out, blocks.len());
            for b in blocks {
                out.extend_from_slice(&b.to_le_bytes());
            }
        }
        Message::Data { offset, bytes } => {
            out.extend_from_slice(&offset.to_le_bytes());
            put_u32_count(out, bytes.len());
            out.extend_from_slice(bytes);
        }
        Message::Hole { offset: a, len: b }
        | Message::Done { bytes_sent: a, blocks_changed: b }
        | Message::Committed { size: a, digest: b } => {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        Message::Truncate { size } => out.extend_from_slice(&size.to_le_bytes()),
        Message::Error { code, message } => {
            out.extend_from_slice(&code.to_le_bytes());
            // validate() bounds the text by MAX_ERROR_MESSAGE_LEN, far below u16::MAX.
            let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(message.as_bytes());
        }
    }
    let check = out.get(start..).map_or(0, xxh3_64);
    out.extend_from_slice(&check.to_le_bytes());
    Ok(())
}

/// Appends a count that [`Message::validate`] has already bounded by a `u32` limit.
fn put_u32_count(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
}

/// Appends one framed message to `out`.
///
/// # Panics
///
/// If the message violates a limit of the specification (see [`Message::validate`]): such
/// a message has no encoding. Use [`try_encode`] or [`write_message`] to get an error
/// instead.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::proto::{self, Message};
/// let mut out = Vec::new();
/// proto::encode(&Message::Hole { offset: 0, len: 1 << 20 }, &mut out);
/// let (msg, used) = proto::decode(&out)?;
/// assert_eq!(msg, Message::Hole { offset: 0, len: 1 << 20 });
/// assert_eq!(used, out.len());
/// # Ok::<(), proto::ProtoError>(())
/// ```
pub fn encode(msg: &Message, out: &mut Vec<u8>) {
    if let Err(e) = try_encode(msg, out) {
        panic!("cannot encode {}: {e}", msg.kind());
    }
}

/// Writes one framed message to `w` (one `write_all` of the whole frame; no flush).
///
/// # Errors
///
/// [`Message::validate`]'s error for a message that violates a limit (nothing is written),
/// or [`ProtoError::Io`] when writing fails.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::proto::{self, Message};
/// let mut wire = Vec::new();
/// proto::write_message(&mut wire, &Message::Done { bytes_sent: 8192, blocks_changed: 2 })?;
/// assert_eq!(wire.len(), 12 + 16 + 8);
/// # Ok::<(), proto::ProtoError>(())
/// ```
pub fn write_message<W: Write>(w: &mut W, msg: &Message) -> Result<(), ProtoError> {
    let mut frame = Vec::new();
    try_encode(msg, &mut frame)?;
    w.write_all(&frame)?;
    Ok(())
}

/// Checks a header and returns the message type and payload length. Nothing is allocated
/// and nothing more is read before this passes.
fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(MessageType, u32), ProtoError> {
    let [m0, m1, m2, m3, v0, v1, t0, t1, l0, l1, l2, l3] = *header;
    let magic = [m0, m1, m2, m3];
    if magic != MAGIC {
        return Err(ProtoError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != PROTOCOL_VERSION {
        return Err(ProtoError::UnsupportedVersion { found: version });
    }
    let code = u16::from_le_bytes([t0, t1]);
    let kind = MessageType::from_code(code).ok_or(ProtoError::UnknownType { found: code })?;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len > MAX_PAYLOAD_LEN {
        return Err(ProtoError::PayloadTooLarge { len, max: MAX_PAYLOAD_LEN });
    }
    Ok((kind, len))
}

/// Verifies the check value over `checked` (header and payload), then decodes `payload`.
fn finish(
    kind: MessageType,
    checked: &[u8],
    payload: &[u8],
    stored: [u8; CHECKSUM_LEN],
) -> Result<Message, ProtoError> {
    let stored = u64::from_le_bytes(stored);
    let computed = xxh3_64(checked);
    if stored != computed {
        return Err(ProtoError::ChecksumMismatch { stored, computed });
    }
    decode_payload(kind, payload)
}

/// Parses one message from the start of `frame`, returning it and the number of bytes it
/// occupied. Bytes after the message are not looked at.
///
/// # Errors
///
/// The first problem found, checked in this order (`docs/sparse-protocol.md`, 3.1):
/// [`ProtoError::Truncated`] when `frame` is shorter than a header (an empty `frame`
/// included); magic, version, type and the payload length limit, from the header alone;
/// [`ProtoError::Truncated`] when `frame` ends inside the payload or check value; the check
/// value; the payload's layout and field limits.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::proto::{self, FramePart, Message, ProtoError};
/// let mut bytes = Vec::new();
/// proto::encode(&Message::Truncate { size: 7 }, &mut bytes);
/// proto::encode(&Message::Want { level: 0, blocks: vec![] }, &mut bytes);
/// let (first, used) = proto::decode(&bytes)?;
/// assert_eq!(first, Message::Truncate { size: 7 });
/// let (second, _) = proto::decode(&bytes[used..])?;
/// assert_eq!(second, Message::Want { level: 0, blocks: vec![] });
///
/// let err = proto::decode(&bytes[..5]).unwrap_err();
/// assert!(matches!(err, ProtoError::Truncated { part: FramePart::Header, got: 5, expected: 12 }));
/// # Ok::<(), proto::ProtoError>(())
/// ```
pub fn decode(frame: &[u8]) -> Result<(Message, usize), ProtoError> {
    let Some((header, rest)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(ProtoError::Truncated {
            part: FramePart::Header,
            got: frame.len(),
            expected: HEADER_LEN,
        });
    };
    let (kind, len) = parse_header(header)?;
    let len = len as usize;
    let Some((payload, rest)) = rest.split_at_checked(len) else {
        return Err(ProtoError::Truncated {
            part: FramePart::Payload,
            got: rest.len(),
            expected: len,
        });
    };
    let Some((stored, _)) = rest.split_first_chunk::<CHECKSUM_LEN>() else {
        return Err(ProtoError::Truncated {
            part: FramePart::Checksum,
            got: rest.len(),
            expected: CHECKSUM_LEN,
        });
    };
    let total = HEADER_LEN + len;
    let checked = frame.get(..total).unwrap_or_default();
    let msg = finish(kind, checked, payload, *stored)?;
    Ok((msg, total + CHECKSUM_LEN))
}

/// Reads into `buf` until it is full or the stream ends; returns the bytes read. Retries on
/// [`io::ErrorKind::Interrupted`].
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, ProtoError> {
    let mut got = 0;
    while let Some(dst) = buf.get_mut(got..) {
        if dst.is_empty() {
            break;
        }
        match r.read(dst) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtoError::Io(e)),
        }
    }
    Ok(got)
}

/// Reads one message from a stream.
///
/// Reads exactly one frame and nothing beyond it. The payload buffer starts small and grows
/// (at most to the declared length, itself bounded by [`MAX_PAYLOAD_LEN`]) as bytes arrive.
///
/// # Errors
///
/// [`ProtoError::Io`] when the stream fails; [`ProtoError::Truncated`] when it ends inside a
/// message; otherwise as [`decode`].
///
/// # Examples
///
/// ```
/// use ckpt_sparse::proto::{self, Message};
/// let mut wire = Vec::new();
/// proto::encode(&Message::Committed { size: 4096, digest: 0x1234 }, &mut wire);
/// let mut r = wire.as_slice();
/// assert_eq!(
///     proto::read_message(&mut r)?,
///     Some(Message::Committed { size: 4096, digest: 0x1234 })
/// );
/// assert_eq!(proto::read_message(&mut r)?, None);
/// # Ok::<(), proto::ProtoError>(())
/// ```
pub fn read_message<R: Read>(r: &mut R) -> Result<Option<Message>, ProtoError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(ProtoError::Truncated { part: FramePart::Header, got, expected: HEADER_LEN });
    }
    let (kind, len) = parse_header(&header)?;
    let total = HEADER_LEN + len as usize;
    let mut buf = Vec::with_capacity(total.min(HEADER_LEN + INITIAL_READ_CAPACITY));
    buf.extend_from_slice(&header);
    while buf.len() < total {
        if buf.len() == buf.capacity() {
            // Grow geometrically, but never past the declared frame.
            let target = buf.capacity().saturating_mul(2).min(total);
            buf.reserve_exact(target - buf.len());
        }
        let filled = buf.len();
        let room = buf.capacity().min(total) - filled;
        buf.resize(filled + room, 0);
        let n = read_full(r, buf.get_mut(filled..).unwrap_or_default())?;
        buf.truncate(filled + n);
        if n < room {
            return Err(ProtoError::Truncated {
                part: FramePart::Payload,
                got: buf.len() - HEADER_LEN,
                expected: len as usize,
            });
        }
    }
    let mut stored = [0u8; CHECKSUM_LEN];
    let got = read_full(r, &mut stored)?;
    if got < CHECKSUM_LEN {
        return Err(ProtoError::Truncated {
            part: FramePart::Checksum,
            got,
            expected: CHECKSUM_LEN,
        });
    }
    let payload = buf.get(HEADER_LEN..).unwrap_or_default();
    finish(kind, &buf, payload, stored).map(Some)
}

/// A cursor over a payload whose length has been checked against the fields it reads.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                *head
            }
            // Unreachable: every caller checks the payload length first.
            None => [0; N],
        }
    }
    fn u8(&mut self) -> u8 {
        let [b] = self.array();
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
    /// The remaining bytes after checking that they hold exactly `count` elements of
    /// `element_size` bytes and that `count` is within `max`.
    fn elements(
        &mut self,
        kind: MessageType,
        count: u32,
        element_size: u32,
        max: u32,
    ) -> Result<&'a [u8], ProtoError> {
        if count > max {
            return Err(ProtoError::TooMany { kind, count: count.into(), max: max.into() });
        }
        let remaining = self.rest.len();
        if u64::from(count) * u64::from(element_size) != remaining as u64 {
            return Err(ProtoError::CountMismatch {
                kind,
                count,
                element_size,
                // The payload is at most MAX_PAYLOAD_LEN bytes.
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            });
        }
        Ok(std::mem::take(&mut self.rest))
    }
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    let (chunks, _) = bytes.as_chunks::<8>();
    chunks.iter().map(|c| u64::from_le_bytes(*c)).collect()
}

/// Decodes a payload whose check value has been verified.
fn decode_payload(kind: MessageType, payload: &[u8]) -> Result<Message, ProtoError> {
    // The header check bounds every payload by MAX_PAYLOAD_LEN.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let (expected, exact) = match kind {
        MessageType::Hello => (HELLO_LEN, true),
        MessageType::Hashes => (HASHES_FIXED, false),
        MessageType::Want => (WANT_FIXED, false),
        MessageType::Data => (DATA_FIXED, false),
        MessageType::Hole | MessageType::Done | MessageType::Committed => (PAIR_LEN, true),
        MessageType::Truncate => (TRUNCATE_LEN, true),
        MessageType::Error => (ERROR_FIXED, false),
    };
    if len < expected || (exact && len != expected) {
        return Err(ProtoError::PayloadLength { kind, len, expected, exact });
    }
    let mut f = Fields { rest: payload };
    let msg = match kind {
        MessageType::Hello => {
            let version = f.u16();
            let role = f.u8();
            let role = Role::from_code(role).ok_or(ProtoError::BadRole { role })?;
            let block_size = f.u32();
            let sub_block_size = f.u32();
            let file_size = f.u64();
            let flags = f.u32();
            let flags = HelloFlags::from_bits(flags).ok_or(ProtoError::UnknownFlags { flags })?;
            Message::Hello { version, role, block_size, sub_block_size, file_size, flags }
        }
        MessageType::Hashes => {
            let level = f.u8();
            let first_block = f.u64();
            let block_size = f.u32();
            let count = f.u32();
            let hashes = u64s(f.elements(kind, count, 8, MAX_HASHES)?);
            Message::Hashes { level, first_block, block_size, hashes }
        }
        MessageType::Want => {
            let level = f.u8();
            let count = f.u32();
            let blocks = u64s(f.elements(kind, count, 8, MAX_WANT)?);
            Message::Want { level, blocks }
        }
        MessageType::Data => {
            let offset = f.u64();
            let count = f.u32();
            let bytes = f.elements(kind, count, 1, MAX_DATA_LEN)?.to_vec();
            Message::Data { offset, bytes }
        }
        MessageType::Hole => Message::Hole { offset: f.u64(), len: f.u64() },
        MessageType::Truncate => Message::Truncate { size: f.u64() },
        MessageType::Done => Message::Done { bytes_sent: f.u64(), blocks_changed: f.u64() },
        MessageType::Committed => Message::Committed { size: f.u64(), digest: f.u64() },
        MessageType::Error => {
            let code = f.u16();
            let count = f.u16();
            let max = u32::try_from(MAX_ERROR_MESSAGE_LEN).unwrap_or(u32::MAX);
            let text = f.elements(kind, count.into(), 1, max)?;
            let message = match std::str::from_utf8(text) {
                Ok(s) => s.to_owned(),
                Err(e) => return Err(ProtoError::InvalidUtf8 { valid_up_to: e.valid_up_to() }),
            };
            Message::Error { code, message }
        }
    };
    msg.validate()?;
    Ok(msg)
}
