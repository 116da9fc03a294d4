//! Invariant: the pool header and pmemobj descriptor decoders of `ckpt_poolset::header` never
//! panic on arbitrary bytes, and encoding is their exact inverse wherever the checksum holds.
//!
//! - `PoolHeader::decode` fails only on fewer than 4096 bytes. Otherwise decode -> encode ->
//!   decode is stable: the re-decoded header equals the first one sealed (its checksum field
//!   replaced by the computed checksum), it verifies, and it encodes to the same bytes. A
//!   header whose stored checksum verifies encodes back to exactly its 4096 input bytes, and
//!   so does one that `validate` accepts for any expected type; `header::validate` is
//!   `decode` then `validate`. `is_zeroed` holds exactly for 4096 zero bytes, `checksum` of the
//!   input equals `compute_checksum`, and the shutdown state re-encodes to its 64 bytes.
//! - `ObjDescriptor::decode` (at offset 0 and at 4096, where it lies in a part file) fails
//!   only on fewer than `ObjDescriptor::LEN` bytes; the same stability holds, and a
//!   descriptor whose checksum verifies encodes back to exactly its input bytes.
//! - Headers built from the input and linked with `link_rings` pass `check_rings` unless two
//!   uuids are equal (`DuplicateUuid`); the ring checks never panic on unlinked headers.
//! - `Uuid`'s text form parses back to the same uuid, and parsing arbitrary text never panics.
#![no_main]

use ckpt_poolset::header::{
    self, HEADER_SIZE, HeaderError, ObjDescriptor, PoolHeader, PoolType, ShutdownState, Uuid,
    check_part_ring, check_replica_ring, check_rings, link_rings, offset,
};
use libfuzzer_sys::fuzz_target;

fn check_header(data: &[u8]) -> Option<PoolHeader> {
    let h = match PoolHeader::decode(data) {
        Ok(h) => h,
        Err(e) => {
            assert!(data.len() < HEADER_SIZE, "a full header failed to decode: {e}");
            assert!(matches!(e, HeaderError::Truncated { .. }), "{e:?}");
            assert!(header::validate(data, None).is_err());
            return None;
        }
    };
    let input: &[u8; HEADER_SIZE] = data[..HEADER_SIZE].try_into().expect("4096 bytes");
    let _ = (format!("{h:?}"), h.pool_type(), h.unused_is_zero(), h.features.names());
    let _ = (h.features.cksum_2k(), h.features.singlehdr(), h.features.unknown_ro_compat());

    let encoded = h.encode();
    let again = PoolHeader::decode(&encoded).expect("decode of an encoded header");
    let mut sealed = h.clone();
    sealed.seal();
    assert!(again == sealed, "decode(encode(h)) differs from h sealed");
    assert_eq!(again.encode(), encoded, "encode is not stable");
    again.verify_checksum().expect("an encoded header verifies");
    assert_eq!(h.compute_checksum(), header::checksum(input), "two checksums of one header");

    let verifies = h.verify_checksum().is_ok();
    if verifies {
        assert!(encoded == *input, "a header whose checksum holds re-encodes differently");
    }
    assert_eq!(h.is_zeroed(), input.iter().all(|&b| b == 0));
    for expected in [None, Some(PoolType::Obj), Some(PoolType::Blk), Some(PoolType::Log)] {
        let v = h.validate(expected);
        let one_step = header::validate(data, expected);
        assert_eq!(v.as_ref().err(), one_step.as_ref().err(), "validate and header::validate");
        match v {
            Ok(()) => {
                assert!(verifies, "validate accepted a bad checksum");
                assert!(encoded == *input, "a valid header re-encodes differently");
                assert!(one_step.expect("validated") == h);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    let sds_bytes = &input[offset::SDS..offset::SDS + ShutdownState::SIZE];
    let sds = ShutdownState::decode(sds_bytes).expect("64 bytes");
    assert_eq!(sds, h.sds);
    assert!(sds.encode() == *sds_bytes, "the shutdown state re-encodes differently");
    let _ = sds.verify().map_err(|e| e.to_string());
    Some(h)
}

fn check_descriptor(data: &[u8]) {
    let d = match ObjDescriptor::decode(data) {
        Ok(d) => d,
        Err(e) => {
            assert!(data.len() < ObjDescriptor::LEN, "a full descriptor failed to decode: {e}");
            return;
        }
    };
    let _ = (format!("{d:?}"), d.layout_name().map_err(|e| e.to_string()));
    let encoded = d.encode();
    let again = ObjDescriptor::decode(&encoded).expect("decode of an encoded descriptor");
    let mut sealed = d.clone();
    sealed.seal();
    assert!(again == sealed, "decode(encode(d)) differs from d sealed");
    assert_eq!(again.encode(), encoded, "encode is not stable");
    again.verify_checksum().expect("an encoded descriptor verifies");
    if d.verify_checksum().is_ok() {
        assert!(encoded[..] == data[..ObjDescriptor::LEN], "a valid descriptor re-encodes");
    }
    let layout = d.layout_name().ok().map(str::to_owned);
    for expected in [None, layout.as_deref(), Some("ckpt-fixture")] {
        if d.validate(expected).is_ok() {
            assert!(d.verify_checksum().is_ok(), "validate accepted a bad checksum");
        }
    }
    if let Some(name) = layout {
        let fresh = ObjDescriptor::new(&name).expect("a decoded layout name is a valid one");
        assert_eq!(fresh.layout_name().expect("layout"), name);
    }
}

/// Up to 3 replicas of up to 3 parts, each a copy of `base` with a uuid from `bytes`.
fn check_ring_building(base: &PoolHeader, bytes: &[u8]) {
    let Some((&shape, uuids)) = bytes.split_first() else { return };
    let replicas = usize::from(shape % 3) + 1;
    let parts = usize::from(shape / 3 % 3) + 1;
    let mut uuid_bytes = uuids.chunks(16);
    let mut set: Vec<Vec<PoolHeader>> = (0..replicas)
        .map(|r| {
            (0..parts)
                .map(|p| {
                    let mut h = base.clone();
                    let mut u = [0u8; 16];
                    match uuid_bytes.next() {
                        Some(b) => u[..b.len()].copy_from_slice(b),
                        None => u[0] = (r * 3 + p) as u8 + 1,
                    }
                    h.uuid = Uuid(u);
                    h
                })
                .collect()
        })
        .collect();
    let _ = (check_rings(&set), check_replica_ring(&set), check_part_ring(0, &set[0]));
    link_rings(&mut set).expect("link_rings of non-empty replicas");
    let mut uuids: Vec<Uuid> = set.iter().flatten().map(|h| h.uuid).collect();
    uuids.sort();
    let distinct = uuids.windows(2).all(|w| w[0] != w[1]);
    match check_rings(&set) {
        Ok(()) => assert!(distinct, "check_rings accepted a duplicate uuid"),
        Err(HeaderError::DuplicateUuid { .. }) => assert!(!distinct, "a false duplicate"),
        Err(e) => panic!("linked rings fail check_rings: {e}"),
    }
    for (r, replica) in set.iter().enumerate() {
        check_part_ring(r, replica).expect("a linked part ring");
        assert!(replica.iter().all(|h| h.verify_checksum().is_ok()), "link_rings did not seal");
    }
    check_replica_ring(&set).expect("a linked replica ring");
}

fn check_uuid_text(data: &[u8]) {
    if let Some(bytes) = data.get(offset::UUID..offset::UUID + 16) {
        let u = Uuid(bytes.try_into().expect("16 bytes"));
        let text = u.to_string();
        assert_eq!(text.parse::<Uuid>().ok(), Some(u), "uuid text {text} does not parse back");
        assert_eq!(Uuid::from_rfc_bytes(u.to_rfc_bytes()), u);
    }
    if let Ok(text) = std::str::from_utf8(data.get(..64).unwrap_or(data))
        && let Ok(u) = text.parse::<Uuid>()
    {
        assert_eq!(u.to_string().parse::<Uuid>().ok(), Some(u), "{text:?} does not round-trip");
    }
}

fuzz_target!(|data: &[u8]| {
    let header = check_header(data);
    check_descriptor(data);
    check_descriptor(data.get(ObjDescriptor::OFFSET..).unwrap_or_default());
    if let Some(h) = &header {
        check_ring_building(h, &data[HEADER_SIZE..]);
    }
    check_uuid_text(data);
});
