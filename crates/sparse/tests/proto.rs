//! Tests of the sparse-sync wire protocol (`ckpt_sparse::proto`, spec in
//! `docs/sparse-protocol.md`): round trips, every decode error, truncation and bit flips,
//! bounded allocation, the spec's hex examples and the fuzz seeds.
#![allow(clippy::cast_possible_truncation)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::PathBuf;

use ckpt_sparse::proto::{
    self, CHECKSUM_LEN, FramePart, HEADER_LEN, HelloFlags, LEVEL_BLOCK, LEVEL_SUB_BLOCK,
    MAX_BLOCK_SIZE, MAX_DATA_LEN, MAX_ERROR_MESSAGE_LEN, MAX_FRAME_LEN, MAX_HASHES,
    MAX_PAYLOAD_LEN, MAX_WANT, MIN_BLOCK_SIZE, Message, MessageType, PROTOCOL_VERSION, ProtoError,
    Role, error_code,
};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

// ---------------------------------------------------------------------------------------------
// An allocator that remembers the largest single allocation made by the current thread, so
// that tests can show a hostile length is rejected before any buffer of that size exists.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, which upholds
// the `GlobalAlloc` contract; the bookkeeping only touches a const-initialised thread-local
// `Cell`, which never allocates.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by its contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn enc(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode(msg, &mut out);
    out
}

/// A frame with the given header fields and payload and a correct check value: lets tests
/// reach the payload checks with payloads the encoder would never write.
fn raw_frame(version: u16, kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"CKSP");
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let check = xxh3_64(&out);
    out.extend_from_slice(&check.to_le_bytes());
    out
}

fn frame(kind: MessageType, payload: &[u8]) -> Vec<u8> {
    raw_frame(PROTOCOL_VERSION, kind.code(), payload)
}

/// The payload of an encoded message.
fn payload_of(msg: &Message) -> Vec<u8> {
    let bytes = enc(msg);
    bytes[HEADER_LEN..bytes.len() - CHECKSUM_LEN].to_vec()
}

/// Decodes through both entry points and checks they agree.
fn decode_both(bytes: &[u8]) -> Result<Message, ProtoError> {
    let sliced = proto::decode(bytes);
    let mut r = bytes;
    let streamed = proto::read_message(&mut r);
    match (sliced, streamed) {
        (Ok((a, used)), Ok(Some(b))) => {
            assert_eq!(a, b);
            assert_eq!(used, bytes.len() - r.len());
            Ok(a)
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "decode and read_message disagree");
            Err(a)
        }
        (a, b) => panic!("decode {a:?} but read_message {b:?}"),
    }
}

fn hello(role: Role, file_size: u64, flags: HelloFlags) -> Message {
    Message::Hello {
        version: PROTOCOL_VERSION,
        role,
        block_size: 64 * 1024,
        sub_block_size: 4096,
        file_size,
        flags,
    }
}

/// One or more messages of every type, small enough to flip every bit of.
fn samples() -> Vec<Message> {
    vec![
        hello(Role::Sender, 10 * 1024 * 1024 + 5, HelloFlags::empty()),
        hello(Role::Receiver, 0, HelloFlags::DIRTY),
        Message::Hashes {
            level: LEVEL_BLOCK,
            first_block: 0,
            block_size: 64 * 1024,
            hashes: vec![1, 2, u64::MAX, 0x0123_4567_89ab_cdef],
        },
        Message::Hashes {
            level: LEVEL_SUB_BLOCK,
            first_block: 16,
            block_size: 4096,
            hashes: vec![],
        },
        Message::Want { level: LEVEL_BLOCK, blocks: vec![0, 3, 7, 1 << 40] },
        Message::Want { level: LEVEL_SUB_BLOCK, blocks: vec![] },
        Message::Data { offset: 4096, bytes: (0..=255u8).collect() },
        Message::Data { offset: u64::MAX, bytes: vec![] },
        Message::Hole { offset: 8192, len: 1 << 20 },
        Message::Truncate { size: 10 * 1024 * 1024 + 5 },
        Message::Done { bytes_sent: 12_288, blocks_changed: 3 },
        Message::Committed { size: 10 * 1024 * 1024 + 5, digest: 0xfeed_face_dead_beef },
        Message::Error {
            code: error_code::IO,
            message: "écriture: No space left on device".into(),
        },
        Message::Error { code: error_code::UNSPECIFIED, message: String::new() },
    ]
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ---------------------------------------------------------------------------------------------
// Round trips.

#[test]
fn round_trip_every_message_type() {
    let mut seen = Vec::new();
    for msg in samples() {
        let bytes = enc(&msg);
        assert_eq!(bytes.len(), msg.encoded_len());
        assert_eq!(bytes.len(), HEADER_LEN + msg.payload_len() + CHECKSUM_LEN);
        assert_eq!(decode_both(&bytes).unwrap(), msg);
        seen.push(msg.kind().code());
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=9).collect::<Vec<u16>>(), "a message type lacks a sample");
}

#[test]
fn round_trip_stream_of_messages_then_clean_eof() {
    let mut wire = Vec::new();
    for msg in samples() {
        proto::write_message(&mut wire, &msg).unwrap();
    }
    let mut r = wire.as_slice();
    for msg in samples() {
        assert_eq!(proto::read_message(&mut r).unwrap(), Some(msg));
    }
    assert!(proto::read_message(&mut r).unwrap().is_none());
    assert!(proto::read_message(&mut r).unwrap().is_none());

    // decode walks the same bytes message by message.
    let mut rest = wire.as_slice();
    for msg in samples() {
        let (got, used) = proto::decode(rest).unwrap();
        assert_eq!(got, msg);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

#[test]
fn round_trip_empty_vectors() {
    for msg in [
        Message::Hashes { level: 0, first_block: 0, block_size: MIN_BLOCK_SIZE, hashes: vec![] },
        Message::Want { level: 0, blocks: vec![] },
        Message::Want { level: 1, blocks: vec![] },
        Message::Data { offset: 0, bytes: vec![] },
        Message::Error { code: 0, message: String::new() },
    ] {
        let bytes = enc(&msg);
        assert_eq!(decode_both(&bytes).unwrap(), msg);
    }
}

#[test]
fn round_trip_maximum_sizes() {
    let max_hashes = Message::Hashes {
        level: LEVEL_SUB_BLOCK,
        first_block: u64::MAX / u64::from(MAX_BLOCK_SIZE) - u64::from(MAX_HASHES),
        block_size: MAX_BLOCK_SIZE,
        hashes: (0..u64::from(MAX_HASHES)).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect(),
    };
    let max_want = Message::Want {
        level: LEVEL_BLOCK,
        blocks: (0..u64::from(MAX_WANT))
            .map(|i| i * 3 + (u64::MAX - 3 * u64::from(MAX_WANT)))
            .collect(),
    };
    let max_data = Message::Data {
        offset: u64::MAX - u64::from(MAX_DATA_LEN),
        bytes: (0..MAX_DATA_LEN).map(|i| (i % 251) as u8).collect(),
    };
    let max_error =
        Message::Error { code: u16::MAX, message: "ü".repeat(MAX_ERROR_MESSAGE_LEN / 2) };
    let max_hello = Message::Hello {
        version: u16::MAX,
        role: Role::Receiver,
        block_size: MAX_BLOCK_SIZE,
        sub_block_size: MAX_BLOCK_SIZE,
        file_size: u64::MAX,
        flags: HelloFlags::ALL,
    };
    for msg in [max_hashes, max_want, max_data, max_error, max_hello] {
        let bytes = enc(&msg);
        assert!(bytes.len() <= MAX_FRAME_LEN, "{} frame of {} bytes", msg.kind(), bytes.len());
        assert_eq!(decode_both(&bytes).unwrap(), msg);
    }
}

#[test]
fn largest_messages_fit_the_payload_limit() {
    // The limit is MAX_DATA_LEN plus the fixed fields of the largest message, plus slack.
    for (fixed, per) in [(17u64, 8u64), (5, 8), (12, 1)] {
        assert!(fixed + per * u64::from(MAX_DATA_LEN / per as u32) <= u64::from(MAX_PAYLOAD_LEN));
    }
    assert_eq!(MAX_PAYLOAD_LEN, 16 * 1024 * 1024 + 40);
    assert_eq!(MAX_FRAME_LEN, HEADER_LEN + MAX_PAYLOAD_LEN as usize + CHECKSUM_LEN);
}

#[test]
fn reads_survive_short_reads_and_interruptions() {
    /// Hands out one byte per call and reports `Interrupted` every other call.
    struct Trickle<'a> {
        bytes: &'a [u8],
        tick: bool,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.tick = !self.tick;
            if self.tick {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = usize::from(!self.bytes.is_empty() && !buf.is_empty());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }
    let mut wire = Vec::new();
    for msg in samples() {
        proto::encode(&msg, &mut wire);
    }
    let mut r = Trickle { bytes: &wire, tick: false };
    for msg in samples() {
        assert_eq!(proto::read_message(&mut r).unwrap(), Some(msg));
    }
    assert!(proto::read_message(&mut r).unwrap().is_none());
}

#[test]
fn read_message_reads_nothing_past_its_frame() {
    let mut wire = enc(&Message::Truncate { size: 1 });
    wire.extend_from_slice(b"not a frame");
    let mut r = wire.as_slice();
    assert_eq!(proto::read_message(&mut r).unwrap(), Some(Message::Truncate { size: 1 }));
    assert_eq!(r, b"not a frame");
}

// ---------------------------------------------------------------------------------------------
// Truncation and corruption of valid messages.

#[test]
fn every_truncation_is_truncated() {
    for msg in samples() {
        let bytes = enc(&msg);
        for cut in 0..bytes.len() {
            let short = &bytes[..cut];
            let (part, got, expected) = if cut < HEADER_LEN {
                (FramePart::Header, cut, HEADER_LEN)
            } else if cut < bytes.len() - CHECKSUM_LEN {
                (FramePart::Payload, cut - HEADER_LEN, msg.payload_len())
            } else {
                (FramePart::Checksum, cut + CHECKSUM_LEN - bytes.len(), CHECKSUM_LEN)
            };
            match proto::decode(short) {
                Err(ProtoError::Truncated { part: p, got: g, expected: e }) => {
                    assert_eq!((p, g, e), (part, got, expected), "{} cut at {cut}", msg.kind());
                }
                other => panic!("{} cut at {cut}: {other:?}", msg.kind()),
            }
            let mut r = short;
            match proto::read_message(&mut r) {
                Ok(None) => assert_eq!(cut, 0, "Ok(None) is for a clean end only"),
                Err(ProtoError::Truncated { part: p, got: g, expected: e }) => {
                    assert_eq!((p, g, e), (part, got, expected), "{} cut at {cut}", msg.kind());
                }
                other => panic!("{} read cut at {cut}: {other:?}", msg.kind()),
            }
        }
    }
}

#[test]
fn truncated_display_names_the_numbers() {
    let bytes = enc(&Message::Done { bytes_sent: 1, blocks_changed: 1 });
    let err = proto::decode(&bytes[..5]).unwrap_err();
    assert_eq!(err.to_string(), "truncated message: 5 of 12 header bytes");
    let err = proto::decode(&bytes[..20]).unwrap_err();
    assert_eq!(err.to_string(), "truncated message: 8 of 16 payload bytes");
    let err = proto::decode(&bytes[..30]).unwrap_err();
    assert_eq!(err.to_string(), "truncated message: 2 of 8 checksum bytes");
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let mut checked = 0usize;
    for msg in samples() {
        let bytes = enc(&msg);
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok((got, _)) = proto::decode(&bad) {
                panic!("{} with bit {bit} flipped decoded as {got:?}", msg.kind());
            }
            let mut r = bad.as_slice();
            assert!(proto::read_message(&mut r).is_err(), "{} bit {bit}", msg.kind());
            checked += 1;
        }
    }
    assert!(checked > 5_000, "{checked} flips");
}

#[test]
fn flipped_checksum_reports_both_values() {
    let mut bytes = enc(&Message::Truncate { size: 42 });
    let n = bytes.len();
    let stored = u64::from_le_bytes(bytes[n - 8..].try_into().unwrap());
    bytes[n - 1] ^= 0x80;
    match proto::decode(&bytes) {
        Err(e @ ProtoError::ChecksumMismatch { stored: s, computed: c }) => {
            assert_eq!(c, stored);
            assert_eq!(s, stored ^ (0x80 << 56));
            assert_eq!(
                e.to_string(),
                format!("checksum mismatch: stored {s:#018x}, computed {c:#018x}")
            );
            assert!(e.to_string().starts_with("checksum mismatch: stored 0x"));
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Header errors.

#[test]
fn oversized_length_rejected_without_allocating() {
    for len in [u32::MAX, MAX_PAYLOAD_LEN + 1, 1 << 31] {
        let mut header = Vec::new();
        header.extend_from_slice(b"CKSP");
        header.extend_from_slice(&1u16.to_le_bytes());
        header.extend_from_slice(&MessageType::Data.code().to_le_bytes());
        header.extend_from_slice(&len.to_le_bytes());

        // A stream that would hand out gigabytes after the header: it is never read.
        let mut r = header.as_slice().chain(io::repeat(0));
        let (result, largest) = largest_allocation(|| proto::read_message(&mut r));
        match result {
            Err(ProtoError::PayloadTooLarge { len: l, max }) => {
                assert_eq!((l, max), (len, MAX_PAYLOAD_LEN));
            }
            other => panic!("{other:?}"),
        }
        assert!(largest < 1024, "read_message allocated {largest} bytes for a {len}-byte claim");

        let (result, largest) = largest_allocation(|| proto::decode(&header));
        assert!(matches!(result, Err(ProtoError::PayloadTooLarge { .. })));
        assert!(largest < 1024, "decode allocated {largest} bytes");
    }
    let err = ProtoError::PayloadTooLarge { len: u32::MAX, max: MAX_PAYLOAD_LEN };
    assert_eq!(
        err.to_string(),
        "message payload of 4294967295 bytes exceeds the 16777256-byte limit"
    );
}

#[test]
fn lying_length_within_the_limit_allocates_only_what_arrives() {
    // The largest legal claim, followed by 100 bytes and the end of the stream.
    let mut wire = frame(MessageType::Data, &[0; 112])[..HEADER_LEN + 100].to_vec();
    wire[8..12].copy_from_slice(&MAX_PAYLOAD_LEN.to_le_bytes());
    let mut r = wire.as_slice();
    let (result, largest) = largest_allocation(|| proto::read_message(&mut r));
    match result {
        Err(ProtoError::Truncated { part: FramePart::Payload, got: 100, expected }) => {
            assert_eq!(expected, MAX_PAYLOAD_LEN as usize);
        }
        other => panic!("{other:?}"),
    }
    assert!(largest <= 128 * 1024, "allocated {largest} bytes for 100 bytes received");
}

#[test]
fn wrong_magic_is_rejected() {
    let mut bytes = enc(&Message::Truncate { size: 0 });
    bytes[..4].copy_from_slice(b"CKSQ");
    let err = decode_both(&bytes).unwrap_err();
    assert!(matches!(err, ProtoError::BadMagic { found } if &found == b"CKSQ"), "{err:?}");
    assert!(err.to_string().contains("43 4B 53 51"), "{err}");
}

#[test]
fn unknown_version_is_rejected_with_the_version_found() {
    for version in [0u16, 2, 7, u16::MAX] {
        let bytes = raw_frame(version, MessageType::Truncate.code(), &[0; 8]);
        match decode_both(&bytes) {
            Err(e @ ProtoError::UnsupportedVersion { found }) => {
                assert_eq!(found, version);
                assert_eq!(
                    e.to_string(),
                    format!("unknown protocol version {version} (this build speaks 1)")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn unknown_type_is_rejected() {
    for code in [0u16, 10, 0x100, u16::MAX] {
        let bytes = raw_frame(PROTOCOL_VERSION, code, &[0; 8]);
        match decode_both(&bytes) {
            Err(ProtoError::UnknownType { found }) => assert_eq!(found, code),
            other => panic!("type {code}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payload errors (frames with correct check values, so the payload checks are reached).

#[test]
fn trailing_bytes_in_fixed_payloads_are_rejected() {
    for msg in [
        hello(Role::Sender, 1, HelloFlags::empty()),
        Message::Hole { offset: 1, len: 2 },
        Message::Truncate { size: 3 },
        Message::Done { bytes_sent: 4, blocks_changed: 5 },
        Message::Committed { size: 6, digest: 7 },
    ] {
        let mut payload = payload_of(&msg);
        let len = payload.len() as u32;
        payload.push(0);
        match decode_both(&frame(msg.kind(), &payload)) {
            Err(ProtoError::PayloadLength { kind, len: l, expected, exact: true }) => {
                assert_eq!((kind, l, expected), (msg.kind(), len + 1, len));
            }
            other => panic!("{other:?}"),
        }
        payload.truncate(payload.len() - 2);
        assert!(matches!(
            decode_both(&frame(msg.kind(), &payload)),
            Err(ProtoError::PayloadLength { exact: true, .. })
        ));
    }
    let err = decode_both(&frame(MessageType::Hole, &[0; 17])).unwrap_err();
    assert_eq!(err.to_string(), "Hole (type 5) payload is 17 bytes, expected exactly 16");
}

#[test]
fn trailing_bytes_after_counted_elements_are_rejected() {
    for msg in [
        Message::Hashes { level: 0, first_block: 0, block_size: 4096, hashes: vec![9, 8] },
        Message::Want { level: 1, blocks: vec![1, 2] },
        Message::Data { offset: 0, bytes: vec![1, 2, 3] },
        Message::Error { code: 1, message: "abc".into() },
    ] {
        let mut payload = payload_of(&msg);
        payload.push(0);
        match decode_both(&frame(msg.kind(), &payload)) {
            Err(ProtoError::CountMismatch { kind, .. }) => assert_eq!(kind, msg.kind()),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn counts_that_disagree_with_the_payload_are_rejected() {
    // (message, offset of its count field, count width)
    let cases = [
        (Message::Hashes { level: 0, first_block: 0, block_size: 4096, hashes: vec![9, 8] }, 13, 4),
        (Message::Want { level: 1, blocks: vec![1, 2] }, 1, 4),
        (Message::Data { offset: 0, bytes: vec![1, 2, 3] }, 8, 4),
        (Message::Error { code: 1, message: "abc".into() }, 2, 2),
    ];
    for (msg, at, width) in cases {
        let payload = payload_of(&msg);
        let count = u32::from_le_bytes({
            let mut b = [0; 4];
            b[..width].copy_from_slice(&payload[at..at + width]);
            b
        });
        for wrong in [0, count - 1, count + 1, count * 8, u32::from(u16::MAX), u32::MAX] {
            if width == 2 && wrong > u32::from(u16::MAX) {
                continue;
            }
            let mut bad = payload.clone();
            bad[at..at + width].copy_from_slice(&wrong.to_le_bytes()[..width]);
            match decode_both(&frame(msg.kind(), &bad)) {
                Err(ProtoError::CountMismatch { kind, count: c, .. }) => {
                    assert_eq!((kind, c), (msg.kind(), wrong));
                }
                Err(ProtoError::TooMany { kind, count: c, .. }) => {
                    assert_eq!((kind, c), (msg.kind(), u64::from(wrong)));
                }
                other => panic!("{} count {wrong}: {other:?}", msg.kind()),
            }
        }
    }
    let err = decode_both(&frame(MessageType::Want, &[0, 3, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Want (type 3) declares 3 elements of 8 bytes (24 bytes) but 8 bytes follow"
    );
}

#[test]
fn overlong_counts_are_rejected_as_too_many() {
    let mut payload = vec![0u8];
    payload.extend_from_slice(&(MAX_WANT + 1).to_le_bytes());
    match decode_both(&frame(MessageType::Want, &payload)) {
        Err(e @ ProtoError::TooMany { kind: MessageType::Want, count, max }) => {
            assert_eq!((count, max), (u64::from(MAX_WANT) + 1, u64::from(MAX_WANT)));
            assert_eq!(
                e.to_string(),
                "Want (type 3) holds 2097153 elements, more than the limit of 2097152"
            );
        }
        other => panic!("{other:?}"),
    }
    // An Error text longer than 4096 bytes, with all its bytes present.
    let mut payload = vec![1, 0];
    payload.extend_from_slice(&4097u16.to_le_bytes());
    payload.extend_from_slice(&[b'x'; 4097]);
    assert!(matches!(
        decode_both(&frame(MessageType::Error, &payload)),
        Err(ProtoError::TooMany { kind: MessageType::Error, count: 4097, max: 4096 })
    ));
    // Data longer than MAX_DATA_LEN cannot even be framed: its payload exceeds the limit.
    let mut payload = vec![0u8; 8];
    payload.extend_from_slice(&(MAX_DATA_LEN + 1).to_le_bytes());
    assert!(matches!(
        decode_both(&frame(MessageType::Data, &payload)),
        Err(ProtoError::TooMany { kind: MessageType::Data, .. })
    ));
}

#[test]
fn payloads_shorter_than_their_fixed_fields_are_rejected() {
    for (kind, min) in [
        (MessageType::Hashes, 17),
        (MessageType::Want, 5),
        (MessageType::Data, 12),
        (MessageType::Error, 4),
    ] {
        for len in 0..min {
            match decode_both(&frame(kind, &vec![0; len as usize])) {
                Err(ProtoError::PayloadLength { kind: k, len: l, expected, exact: false }) => {
                    assert_eq!((k, l, expected), (kind, len, min));
                }
                other => panic!("{kind} of {len}: {other:?}"),
            }
        }
    }
}

#[test]
fn non_utf8_error_text_is_rejected() {
    for (text, valid) in [(&b"ok \xff"[..], 3), (b"\xc3", 0), (b"abc\xed\xa0\x80", 3)] {
        let mut payload = vec![2, 0];
        payload.extend_from_slice(&(text.len() as u16).to_le_bytes());
        payload.extend_from_slice(text);
        match decode_both(&frame(MessageType::Error, &payload)) {
            Err(ProtoError::InvalidUtf8 { valid_up_to }) => assert_eq!(valid_up_to, valid),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn bad_block_sizes_are_rejected() {
    let bad = [0, 1, 2048, 4095, 4097, 3 * 4096, MAX_BLOCK_SIZE + 1, MAX_BLOCK_SIZE * 2, u32::MAX];
    for size in bad {
        // Hello block_size (payload offset 3), Hello sub_block_size (7), Hashes block_size (9).
        let hello_payload = payload_of(&hello(Role::Sender, 0, HelloFlags::empty()));
        let hashes = Message::Hashes { level: 0, first_block: 0, block_size: 4096, hashes: vec![] };
        for (kind, mut payload, at, field) in [
            (MessageType::Hello, hello_payload.clone(), 3, "block_size"),
            (MessageType::Hello, hello_payload, 7, "sub_block_size"),
            (MessageType::Hashes, payload_of(&hashes), 9, "block_size"),
        ] {
            payload[at..at + 4].copy_from_slice(&size.to_le_bytes());
            match decode_both(&frame(kind, &payload)) {
                Err(ProtoError::BadBlockSize { field: f, size: s }) => {
                    assert_eq!((f, s), (field, size));
                }
                // A legal sub-block size can still exceed the block size; not here.
                other => panic!("{kind} {field} {size}: {other:?}"),
            }
        }
    }
    let err = ProtoError::BadBlockSize { field: "block_size", size: 4097 };
    assert_eq!(err.to_string(), "block_size 4097 is not a power of two between 4096 and 67108864");

    // Each size legal, but the sub-block larger than the block.
    let msg = Message::Hello {
        version: 1,
        role: Role::Sender,
        block_size: 4096,
        sub_block_size: 8192,
        file_size: 0,
        flags: HelloFlags::empty(),
    };
    assert!(matches!(
        msg.validate(),
        Err(ProtoError::SubBlockLarger { block_size: 4096, sub_block_size: 8192 })
    ));
    let mut payload = payload_of(&hello(Role::Sender, 0, HelloFlags::empty()));
    payload[3..7].copy_from_slice(&4096u32.to_le_bytes());
    payload[7..11].copy_from_slice(&8192u32.to_le_bytes());
    assert!(matches!(
        decode_both(&frame(MessageType::Hello, &payload)),
        Err(ProtoError::SubBlockLarger { .. })
    ));
}

#[test]
fn offset_plus_len_overflow_is_rejected() {
    // Hole: offset + len = 2^64.
    let mut payload = u64::MAX.to_le_bytes().to_vec();
    payload.extend_from_slice(&1u64.to_le_bytes());
    match decode_both(&frame(MessageType::Hole, &payload)) {
        Err(ProtoError::RangeOverflow { kind: MessageType::Hole, offset, len }) => {
            assert_eq!((offset, len), (u64::MAX, 1));
        }
        other => panic!("{other:?}"),
    }
    // Data: 4 bytes at 2^64 - 2.
    let mut payload = (u64::MAX - 1).to_le_bytes().to_vec();
    payload.extend_from_slice(&4u32.to_le_bytes());
    payload.extend_from_slice(&[1, 2, 3, 4]);
    assert!(matches!(
        decode_both(&frame(MessageType::Data, &payload)),
        Err(ProtoError::RangeOverflow { kind: MessageType::Data, len: 4, .. })
    ));
    // The largest legal ranges still decode.
    decode_both(&enc(&Message::Hole { offset: u64::MAX, len: 0 })).unwrap();
    decode_both(&enc(&Message::Hole { offset: 0, len: u64::MAX })).unwrap();
    decode_both(&enc(&Message::Data { offset: u64::MAX - 3, bytes: vec![0; 3] })).unwrap();
    // Hashes whose blocks end past 2^64.
    let msg = Message::Hashes {
        level: 0,
        first_block: u64::MAX / 4096,
        block_size: 4096,
        hashes: vec![0],
    };
    let payload = {
        let mut p = vec![0u8];
        p.extend_from_slice(&(u64::MAX / 4096).to_le_bytes());
        p.extend_from_slice(&4096u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&0u64.to_le_bytes());
        p
    };
    assert!(matches!(
        decode_both(&frame(MessageType::Hashes, &payload)),
        Err(ProtoError::BlockRangeOverflow { count: 1, block_size: 4096, .. })
    ));
    assert!(matches!(msg.validate(), Err(ProtoError::BlockRangeOverflow { .. })));
}

#[test]
fn bad_levels_roles_flags_and_hello_version_are_rejected() {
    for level in [2u8, 0x80, u8::MAX] {
        let mut payload = payload_of(&Message::Want { level: 0, blocks: vec![5] });
        payload[0] = level;
        assert!(matches!(
            decode_both(&frame(MessageType::Want, &payload)),
            Err(ProtoError::BadLevel { kind: MessageType::Want, level: l }) if l == level
        ));
        let mut payload = payload_of(&Message::Hashes {
            level: 0,
            first_block: 0,
            block_size: 4096,
            hashes: vec![],
        });
        payload[0] = level;
        assert!(matches!(
            decode_both(&frame(MessageType::Hashes, &payload)),
            Err(ProtoError::BadLevel { kind: MessageType::Hashes, .. })
        ));
    }
    let good = payload_of(&hello(Role::Receiver, 0, HelloFlags::empty()));
    let mut payload = good.clone();
    payload[2] = 2;
    assert!(matches!(
        decode_both(&frame(MessageType::Hello, &payload)),
        Err(ProtoError::BadRole { role: 2 })
    ));
    for flags in [2u32, 0x8000_0000, u32::MAX] {
        let mut payload = good.clone();
        payload[19..23].copy_from_slice(&flags.to_le_bytes());
        assert!(matches!(
            decode_both(&frame(MessageType::Hello, &payload)),
            Err(ProtoError::UnknownFlags { flags: f }) if f == flags
        ));
    }
    let mut payload = good;
    payload[0..2].copy_from_slice(&0u16.to_le_bytes());
    assert!(matches!(
        decode_both(&frame(MessageType::Hello, &payload)),
        Err(ProtoError::ZeroHelloVersion)
    ));
}

#[test]
fn want_blocks_must_strictly_ascend() {
    for (blocks, index, previous, block) in
        [(vec![1u64, 1], 1, 1, 1), (vec![5, 4], 1, 5, 4), (vec![0, 9, 10, 3], 3, 10, 3)]
    {
        let mut payload = vec![0u8];
        payload.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
        for b in &blocks {
            payload.extend_from_slice(&b.to_le_bytes());
        }
        match decode_both(&frame(MessageType::Want, &payload)) {
            Err(ProtoError::NotAscending { index: i, previous: p, block: b }) => {
                assert_eq!((i, p, b), (index, previous, block));
            }
            other => panic!("{blocks:?}: {other:?}"),
        }
        assert!(Message::Want { level: 0, blocks }.validate().is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding side, errors and I/O.

#[test]
fn invalid_messages_are_refused_by_try_encode_and_write_message() {
    let invalid = [
        Message::Error { code: 1, message: "x".repeat(MAX_ERROR_MESSAGE_LEN + 1) },
        Message::Data { offset: 0, bytes: vec![0; MAX_DATA_LEN as usize + 1] },
        Message::Data { offset: u64::MAX, bytes: vec![0] },
        Message::Want { level: 0, blocks: vec![2, 1] },
        Message::Want { level: 3, blocks: vec![] },
        Message::Hashes { level: 0, first_block: 0, block_size: 1000, hashes: vec![] },
        Message::Hashes {
            level: 0,
            first_block: 0,
            block_size: 4096,
            hashes: vec![0; MAX_HASHES as usize + 1],
        },
        Message::Hello {
            version: 0,
            role: Role::Sender,
            block_size: 4096,
            sub_block_size: 4096,
            file_size: 0,
            flags: HelloFlags::empty(),
        },
    ];
    for msg in invalid {
        let mut out = vec![0xAA];
        assert!(proto::try_encode(&msg, &mut out).is_err(), "{}", msg.kind());
        assert_eq!(out, [0xAA], "try_encode appended to the buffer on error");
        let mut wire = Vec::new();
        assert!(proto::write_message(&mut wire, &msg).is_err());
        assert!(wire.is_empty());
    }
}

#[test]
#[should_panic(expected = "cannot encode Error (type 9)")]
fn encode_panics_on_an_invalid_message() {
    let mut out = Vec::new();
    proto::encode(&Message::Error { code: 0, message: "y".repeat(5000) }, &mut out);
}

#[test]
fn io_errors_carry_their_source() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer went away"))
        }
    }
    impl io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let err = proto::read_message(&mut Broken).unwrap_err();
    assert!(matches!(&err, ProtoError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset));
    let source = std::error::Error::source(&err).expect("an I/O error has a source");
    assert_eq!(source.to_string(), "peer went away");

    let err = proto::write_message(&mut Broken, &Message::Truncate { size: 0 }).unwrap_err();
    assert!(matches!(&err, ProtoError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe));
    assert!(std::error::Error::source(&err).is_some());
    assert!(std::error::Error::source(&ProtoError::ZeroHelloVersion).is_none());

    // An error after part of a header is an I/O error, not a truncation.
    let mut r = b"CKSP".chain(Broken);
    assert!(matches!(proto::read_message(&mut r), Err(ProtoError::Io(_))));
}

#[test]
fn message_type_codes_are_stable() {
    let all = [
        (MessageType::Hello, 1, "Hello"),
        (MessageType::Hashes, 2, "Hashes"),
        (MessageType::Want, 3, "Want"),
        (MessageType::Data, 4, "Data"),
        (MessageType::Hole, 5, "Hole"),
        (MessageType::Truncate, 6, "Truncate"),
        (MessageType::Done, 7, "Done"),
        (MessageType::Committed, 8, "Committed"),
        (MessageType::Error, 9, "Error"),
    ];
    for (kind, code, name) in all {
        assert_eq!(kind.code(), code);
        assert_eq!(MessageType::from_code(code), Some(kind));
        assert_eq!(kind.name(), name);
    }
    assert_eq!(MessageType::from_code(0), None);
    assert_eq!(MessageType::from_code(10), None);
    assert_eq!((Role::Sender.code(), Role::Receiver.code()), (0, 1));
    assert_eq!(HelloFlags::DIRTY.bits(), 1);
    assert!(HelloFlags::empty().union(HelloFlags::DIRTY).contains(HelloFlags::DIRTY));
}

// ---------------------------------------------------------------------------------------------
// Property tests.

fn arb_block_size() -> impl Strategy<Value = u32> {
    (12u32..=26).prop_map(|shift| 1 << shift)
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            1u16..,
            prop_oneof![Just(Role::Sender), Just(Role::Receiver)],
            arb_block_size(),
            arb_block_size(),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(version, role, a, b, file_size, dirty)| Message::Hello {
                version,
                role,
                block_size: a.max(b),
                sub_block_size: a.min(b),
                file_size,
                flags: if dirty { HelloFlags::DIRTY } else { HelloFlags::empty() },
            }),
        (0u8..=1, arb_block_size(), vec(any::<u64>(), 0..64), any::<u64>()).prop_map(
            |(level, block_size, hashes, seed)| {
                let last_first = u64::MAX / u64::from(block_size) - hashes.len() as u64;
                Message::Hashes { level, first_block: seed.min(last_first), block_size, hashes }
            }
        ),
        (0u8..=1, btree_set(any::<u64>(), 0..64))
            .prop_map(|(level, set)| Message::Want { level, blocks: set.into_iter().collect() }),
        (any::<u64>(), vec(any::<u8>(), 0..600)).prop_map(|(offset, bytes)| Message::Data {
            offset: offset.min(u64::MAX - bytes.len() as u64),
            bytes,
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(offset, len)| Message::Hole { offset, len: len.min(u64::MAX - offset) }),
        any::<u64>().prop_map(|size| Message::Truncate { size }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(bytes_sent, blocks_changed)| Message::Done { bytes_sent, blocks_changed }),
        (any::<u64>(), any::<u64>()).prop_map(|(size, digest)| Message::Committed { size, digest }),
        (any::<u16>(), "\\PC{0,300}").prop_map(|(code, message)| Message::Error { code, message }),
    ]
}

proptest! {
    #[test]
    fn proptest_round_trip(msgs in vec(arb_message(), 1..8)) {
        let mut wire = Vec::new();
        for msg in &msgs {
            prop_assert!(msg.validate().is_ok());
            proto::write_message(&mut wire, msg).unwrap();
        }
        let mut r = wire.as_slice();
        let mut rest = wire.as_slice();
        for msg in &msgs {
            let read = proto::read_message(&mut r).unwrap();
            prop_assert_eq!(read.as_ref(), Some(msg));
            let (got, used) = proto::decode(rest).unwrap();
            prop_assert_eq!(&got, msg);
            prop_assert_eq!(used, msg.encoded_len());
            rest = &rest[used..];
        }
        prop_assert!(proto::read_message(&mut r).unwrap().is_none());
        prop_assert!(rest.is_empty());
    }

    /// Arbitrary payloads in correctly framed and check-summed frames reach every payload
    /// check: never a panic, and whatever decodes re-encodes to the same bytes.
    #[test]
    fn proptest_arbitrary_payload_decodes_canonically(
        kind in 0u16..12,
        payload in vec(any::<u8>(), 0..80),
    ) {
        let bytes = raw_frame(PROTOCOL_VERSION, kind, &payload);
        if let Ok(msg) = decode_both(&bytes) {
            prop_assert_eq!(enc(&msg), bytes);
        }
    }

    #[test]
    fn proptest_arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        if let Ok((msg, used)) = proto::decode(&bytes) {
            prop_assert_eq!(enc(&msg), &bytes[..used]);
        }
        let mut r = bytes.as_slice();
        let _ = proto::read_message(&mut r);
    }

    /// Random multi-byte damage to a valid message never yields a different message.
    #[test]
    fn proptest_damaged_messages_are_rejected(
        msg in arb_message(),
        hits in vec((any::<usize>(), 1u8..), 1..4),
    ) {
        let mut bytes = enc(&msg);
        for (at, x) in hits {
            let n = bytes.len();
            bytes[at % n] ^= x;
        }
        if let Ok((got, _)) = proto::decode(&bytes) {
            prop_assert_eq!(got, msg);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The specification's hex examples and the fuzz seeds come from the encoder.

/// Hex dump, 16 bytes a line, with offsets.
fn hexdump(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02X}")).collect();
        writeln!(s, "{:04X}  {}", i * 16, hex.join(" ")).unwrap();
    }
    s
}

/// The encoding split into named fields, one a line.
fn annotated(bytes: &[u8], fields: &[(usize, &str)]) -> String {
    let mut s = String::new();
    let mut at = 0;
    for &(len, name) in fields {
        let hex: Vec<String> = bytes[at..at + len].iter().map(|b| format!("{b:02X}")).collect();
        writeln!(s, "{at:3}  {:<24} {name}", hex.join(" ")).unwrap();
        at += len;
    }
    assert_eq!(at, bytes.len(), "the annotation must cover every byte");
    s
}

/// The examples of section "Worked examples" of docs/sparse-protocol.md.
fn spec_examples() -> Vec<(&'static str, String)> {
    let hello_sender = hello(Role::Sender, 10 * 1024 * 1024 + 5, HelloFlags::empty());
    let bytes = enc(&hello_sender);
    let hello_fields = [
        (4, "magic \"CKSP\""),
        (2, "protocol version = 1"),
        (2, "type = 1 (Hello)"),
        (4, "payload length = 23"),
        (2, "version = 1"),
        (1, "role = 0 (sender)"),
        (4, "block_size = 65536"),
        (4, "sub_block_size = 4096"),
        (8, "file_size = 10485765"),
        (4, "flags = 0"),
        (8, "xxh3-64 of bytes 0..35"),
    ];
    let hello_receiver = hello(Role::Receiver, 8 * 1024 * 1024, HelloFlags::DIRTY);
    let want = Message::Want { level: LEVEL_BLOCK, blocks: vec![3, 160] };
    let want_end = Message::Want { level: LEVEL_BLOCK, blocks: vec![] };
    let data = Message::Data { offset: 0x3000, bytes: b"ckpt".to_vec() };
    let error = Message::Error { code: error_code::BLOCK_SIZE, message: "block size".into() };
    vec![
        ("hello-sender", annotated(&bytes, &hello_fields)),
        ("hello-receiver", hexdump(&enc(&hello_receiver))),
        ("want", hexdump(&enc(&want))),
        ("want-end", hexdump(&enc(&want_end))),
        ("data", hexdump(&enc(&data))),
        ("error", hexdump(&enc(&error))),
    ]
}

#[test]
fn spec_hex_examples_match_the_encoder() {
    let path = repo_root().join("docs/sparse-protocol.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut missing = String::new();
    for (name, text) in spec_examples() {
        let block = format!("<!-- example: {name} -->\n```text\n{text}```\n");
        if !doc.contains(&block) {
            missing.push_str(&block);
        }
    }
    assert!(missing.is_empty(), "docs/sparse-protocol.md lacks or has stale examples:\n{missing}");
}

/// Seeds of `fuzz/fuzz_targets/sparse_proto.rs`: one valid message of each type, plus a stream.
fn fuzz_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = samples()
        .iter()
        .enumerate()
        .map(|(i, msg)| (format!("{i:02}-{}", msg.kind().name().to_lowercase()), enc(msg)))
        .collect();
    let stream = [
        hello(Role::Sender, 1 << 20, HelloFlags::empty()),
        Message::Hashes { level: 0, first_block: 0, block_size: 65536, hashes: vec![7; 16] },
        Message::Want { level: 0, blocks: vec![2] },
        Message::Want { level: 0, blocks: vec![] },
        Message::Data { offset: 2 * 65536, bytes: vec![0x5a; 64] },
        Message::Done { bytes_sent: 64, blocks_changed: 1 },
    ];
    seeds.push(("20-stream".into(), stream.iter().flat_map(enc).collect()));
    seeds
}

/// Writes the seeds when `CKPT_WRITE_FUZZ_SEEDS` is set; otherwise checks that the committed
/// ones (when present) are still what the encoder writes.
#[test]
fn fuzz_seeds_are_current() {
    let dir = repo_root().join("fuzz/seeds/sparse_proto");
    let write = std::env::var_os("CKPT_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    } else if !dir.is_dir() {
        return;
    }
    for (name, bytes) in fuzz_seeds() {
        let path = dir.join(&name);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(stored, bytes, "{name} is stale: rerun with CKPT_WRITE_FUZZ_SEEDS=1");
        }
    }
}
