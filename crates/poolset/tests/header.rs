//! Pool headers against PMDK: the committed fixture (no PMDK needed), pools that the real
//! `pmempool` creates at test time, and hostile bytes.

mod common;

use ckpt_poolset::header::{
    self, ArchFlags, Features, HEADER_SIZE, HeaderError, Link, ObjDescriptor, PoolHeader, PoolType,
    ShutdownState, Uuid, check_part_ring, check_replica_ring, check_rings, checksum, fletcher64,
    link_rings, offset,
};
use common::{
    Info, copy_set, create_obj_pool, flip_byte, libpmemobj_or_skip, parse_info, pmempool_check,
    pmempool_info, pmempool_info_args, pmempool_or_skip, read_at, read_prefix, root_pattern,
    set_parts, verify_root, write_at, write_root, write_set_2x2,
};
use std::path::{Path, PathBuf};

/// What `pmempool info` printed when the fixture was created (tests/fixtures/README.md),
/// written out here too so that an edited info file cannot hide a regression.
const FIXTURE_CHECKSUM: u64 = 0xff7e_b973_79d0_16d9;
const FIXTURE_DESCRIPTOR_CHECKSUM: u64 = 0x84c3_2eeb_527c_8b04;
const FIXTURE_POOLSET_UUID: &str = "86fa398e-b3ab-4481-a82b-94972b609160";
const FIXTURE_UUID: &str = "961ca90f-78a0-43a9-ba93-498c40e0989b";
const FIXTURE_PART1_UUID: &str = "8623a59b-bb10-4af9-a8c9-7fccf8d02de6";
const FIXTURE_REPLICA1_UUID: &str = "98b07262-f2db-40d0-9cae-5650edc17bb4";

fn fixture() -> Vec<u8> {
    let bytes = std::fs::read(common::fixtures().join("obj_part0.hdr")).expect("fixture");
    assert_eq!(bytes.len(), 8192);
    bytes
}

fn fixture_header() -> [u8; HEADER_SIZE] {
    fixture()[..HEADER_SIZE].try_into().unwrap()
}

fn fixture_info() -> Info {
    parse_info(&std::fs::read_to_string(common::fixtures().join("obj_part0.info")).unwrap())
}

fn host_is_x86_64() -> bool {
    cfg!(target_arch = "x86_64")
}

/// Whether the host is x86-64, which the fixture's arch flags describe. When it is not,
/// `test` (or the part of it that needs x86-64) fails under `CI=true`, else it prints a SKIP
/// line and the caller leaves that part out.
fn x86_64_or_skip(test: &str) -> bool {
    host_is_x86_64()
        || common::unavailable(test, "needs an x86-64 host (the fixture's arch flags are x86-64's)")
}

/// Asserts that every field `pmempool info` printed for a header matches what we decode.
fn assert_matches_info(hdr: &PoolHeader, info: &Info, what: &str) {
    let sig = info.pool("Signature");
    assert!(sig == "PMEMOBJ" || sig == "PMEMOBJ [part file]", "{what}: signature {sig:?}");
    assert_eq!(&hdr.signature, b"PMEMOBJ\0", "{what}");
    assert_eq!(u64::from(hdr.major), common::info_number(info.pool("Major")), "{what}");
    let mandatory = info.pool("Mandatory features");
    assert_eq!(u64::from(hdr.features.incompat), common::info_number(mandatory), "{what}");
    let incompat_names: Vec<_> =
        hdr.features.names().into_iter().filter(|n| *n != "CHECK_BAD_BLOCKS").collect();
    assert!(
        mandatory.ends_with(&format!("[{}]", incompat_names.join(", "))),
        "{what}: {mandatory}"
    );
    assert_eq!(
        u64::from(hdr.features.compat),
        common::info_number(info.pool("Not mandatory features")),
        "{what}"
    );
    assert_eq!(u64::from(hdr.features.ro_compat), common::info_number(info.pool("Forced RO")));
    assert_eq!(hdr.poolset_uuid.to_string(), info.pool("Pool set UUID"), "{what}");
    assert_eq!(hdr.uuid.to_string(), info.pool("UUID"), "{what}");
    assert_eq!(hdr.prev_part_uuid.to_string(), info.pool("Previous part UUID"), "{what}");
    assert_eq!(hdr.next_part_uuid.to_string(), info.pool("Next part UUID"), "{what}");
    assert_eq!(hdr.prev_repl_uuid.to_string(), info.pool("Previous replica UUID"), "{what}");
    assert_eq!(hdr.next_repl_uuid.to_string(), info.pool("Next replica UUID"), "{what}");
    let align = info.pool("Alignment Descriptor");
    assert_eq!(hdr.arch_flags.alignment_desc, common::info_number(align), "{what}");
    assert_eq!(info.pool("Class"), "64");
    assert_eq!(hdr.arch_flags.machine_class, ArchFlags::CLASS_64);
    assert_eq!(info.pool("Data"), "2's complement, little endian");
    assert_eq!(hdr.arch_flags.data, ArchFlags::DATA_LE);
    assert_eq!(info.pool("Machine"), "AMD X86-64");
    assert_eq!(hdr.arch_flags.machine, ArchFlags::MACHINE_X86_64);
    assert_eq!(info.pool("Last shutdown"), if hdr.sds.dirty == 0 { "clean" } else { "dirty" });
    let sum = info.pool("Checksum");
    assert!(sum.ends_with("[OK]"), "{what}: pmempool says checksum {sum}");
    assert_eq!(hdr.checksum, common::info_number(sum), "{what}");
    assert_eq!(hdr.compute_checksum(), hdr.checksum, "{what}");
}

fn assert_descriptor_matches_info(d: &ObjDescriptor, info: &Info, layout: &str) {
    assert_eq!(d.layout_name().unwrap(), layout);
    assert_eq!(info.obj("Layout"), layout);
    assert_eq!(d.lanes_offset, common::info_number(info.obj("Lanes offset")));
    assert_eq!(d.nlanes, common::info_number(info.obj("Number of lanes")));
    assert_eq!(d.heap_offset, common::info_number(info.obj("Heap offset")));
    assert_eq!(d.heap_size, common::info_number(info.obj("Heap size")));
    assert_eq!(d.root_offset, common::info_number(info.obj("Root offset")));
    let sum = info.obj("Checksum");
    assert!(sum.ends_with("[OK]"), "pmempool says descriptor checksum {sum}");
    assert_eq!(d.checksum, common::info_number(sum));
    d.validate(Some(layout)).unwrap();
}

// ---------------------------------------------------------------------------------------
// The committed fixture: runs without PMDK
// ---------------------------------------------------------------------------------------

#[test]
fn fixture_header_matches_what_pmempool_printed() {
    let bytes = fixture_header();
    let hdr = PoolHeader::decode(&bytes).unwrap();
    assert_eq!(checksum(&bytes), FIXTURE_CHECKSUM);
    assert_eq!(hdr.checksum, FIXTURE_CHECKSUM);
    assert_eq!(hdr.poolset_uuid.to_string(), FIXTURE_POOLSET_UUID);
    assert_eq!(hdr.uuid.to_string(), FIXTURE_UUID);
    assert_eq!(hdr.next_part_uuid.to_string(), FIXTURE_PART1_UUID);
    assert_eq!(hdr.next_repl_uuid.to_string(), FIXTURE_REPLICA1_UUID);
    assert_eq!(hdr.major, 6);
    assert_eq!(hdr.pool_type(), Some(PoolType::Obj));
    assert_eq!(hdr.features, Features { compat: 0x1, incompat: 0x6, ro_compat: 0 });
    assert_eq!(hdr.features, Features::PMDK_DEFAULT);
    assert_eq!(hdr.arch_flags.alignment_desc, 0x7f7_3777_7310);
    assert!(hdr.unused_is_zero());
    // PMDK left the shutdown state zero (files, not pmem), which checksums as zero.
    assert_eq!(hdr.sds, ShutdownState::default());
    hdr.sds.verify().unwrap();
    assert_matches_info(&hdr, &fixture_info(), "fixture");
    // The raw bytes at the documented offsets.
    assert_eq!(&bytes[..8], b"PMEMOBJ\0");
    assert_eq!(bytes[offset::CHECKSUM..], FIXTURE_CHECKSUM.to_le_bytes());
    assert_eq!(bytes[offset::UUID..offset::UUID + 16], hdr.uuid.0);
    // The uuid text swaps the first three groups of the stored bytes.
    let rfc = hdr.uuid.to_rfc_bytes();
    assert_eq!(rfc[..4], [bytes[43], bytes[42], bytes[41], bytes[40]]);
    assert_eq!(rfc[8..], bytes[48..56]);
}

#[test]
fn fixture_header_validates_and_round_trips_byte_for_byte() {
    let bytes = fixture_header();
    let hdr = PoolHeader::decode(&bytes).unwrap();
    assert_eq!(hdr.encode(), bytes);
    // decode takes the first 4096 bytes of a longer slice.
    assert_eq!(PoolHeader::decode(&fixture()).unwrap(), hdr);
    let checked = if host_is_x86_64() {
        header::validate(&bytes, Some(PoolType::Obj)).unwrap()
    } else {
        let err = header::validate(&bytes, Some(PoolType::Obj)).unwrap_err();
        assert!(matches!(err, HeaderError::ArchMismatch { .. } | HeaderError::UnsupportedHost));
        hdr.clone()
    };
    assert_eq!(checked, hdr);
    if x86_64_or_skip("fixture_header_validates_and_round_trips_byte_for_byte (host checks)") {
        hdr.validate(None).unwrap();
        assert_eq!(ArchFlags::host(), Some(hdr.arch_flags));
    }
}

#[test]
fn fixture_descriptor_matches_what_pmempool_printed() {
    let bytes = fixture();
    let d = ObjDescriptor::decode(&bytes[ObjDescriptor::OFFSET..]).unwrap();
    assert_eq!(d.checksum, FIXTURE_DESCRIPTOR_CHECKSUM);
    assert_eq!(d.compute_checksum(), FIXTURE_DESCRIPTOR_CHECKSUM);
    assert_eq!((d.lanes_offset, d.nlanes, d.heap_offset), (0x2000, 1024, 0x30_2000));
    assert_descriptor_matches_info(&d, &fixture_info(), "ckpt-fixture");
    let encoded = d.encode();
    assert_eq!(encoded[..], bytes[4096..4096 + ObjDescriptor::LEN]);
    // The checksum sits at 6136 of the part and covers bytes 4096..6144 only.
    assert_eq!(bytes[6136..6144], FIXTURE_DESCRIPTOR_CHECKSUM.to_le_bytes());
    let mut changed = bytes.clone();
    changed[4096 + 2048 + 8] ^= 0xff; // run_id: not checksummed
    ObjDescriptor::decode(&changed[4096..]).unwrap().verify_checksum().unwrap();
    changed[4096 + 1000] ^= 0x01; // inside the layout: checksummed
    let err = ObjDescriptor::decode(&changed[4096..]).unwrap().verify_checksum().unwrap_err();
    assert!(
        matches!(err, HeaderError::ChecksumMismatch { what: "pmemobj descriptor", offset: 6136, stored, .. } if stored == FIXTURE_DESCRIPTOR_CHECKSUM),
        "{err}"
    );
    assert_eq!(
        d.validate(Some("other")),
        Err(HeaderError::LayoutMismatch { expected: "other".into(), found: "ckpt-fixture".into() })
    );
}

// ---------------------------------------------------------------------------------------
// Hostile bytes
// ---------------------------------------------------------------------------------------

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = fixture();
    for len in 0..HEADER_SIZE {
        let want = HeaderError::Truncated { what: "pool header", needed: HEADER_SIZE, found: len };
        assert_eq!(PoolHeader::decode(&bytes[..len]), Err(want.clone()));
        assert_eq!(header::validate(&bytes[..len], Some(PoolType::Obj)), Err(want));
    }
    let desc = &bytes[ObjDescriptor::OFFSET..];
    for len in 0..ObjDescriptor::LEN {
        let err = ObjDescriptor::decode(&desc[..len]).unwrap_err();
        assert!(
            matches!(err, HeaderError::Truncated { what: "pmemobj descriptor", found, .. } if found == len)
        );
    }
    for len in 0..ShutdownState::SIZE {
        assert!(ShutdownState::decode(&bytes[offset::SDS..offset::SDS + len]).is_err());
    }
    assert!(PoolHeader::decode(&bytes[..HEADER_SIZE]).is_ok());
}

#[test]
fn zeroed_header_is_its_own_error() {
    let zero = [0u8; HEADER_SIZE];
    let hdr = PoolHeader::decode(&zero).unwrap();
    assert!(hdr.is_zeroed());
    for expected in [None, Some(PoolType::Obj), Some(PoolType::Blk)] {
        assert_eq!(hdr.validate(expected), Err(HeaderError::Zeroed));
    }
    assert_eq!(
        header::validate(&zero, None).unwrap_err().to_string(),
        HeaderError::Zeroed.to_string()
    );
    // A single nonzero byte anywhere (here in the unchecksummed half) is no longer "zeroed".
    let mut one = zero;
    one[3000] = 1;
    assert!(matches!(header::validate(&one, None), Err(HeaderError::BadSignature { .. })));
}

#[test]
fn flipped_signature_bytes_are_signature_errors() {
    let bytes = fixture_header();
    for i in 0..8 {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes;
            b[i] ^= mask;
            let found: [u8; 8] = b[..8].try_into().unwrap();
            assert_eq!(
                header::validate(&b, Some(PoolType::Obj)),
                Err(HeaderError::BadSignature { expected: Some(*b"PMEMOBJ\0"), found })
            );
            assert_eq!(
                header::validate(&b, None),
                Err(HeaderError::BadSignature { expected: None, found })
            );
        }
    }
    // A known signature of another type, re-checksummed: signature error when obj is
    // expected, major-version error (blk is major 1) when any type will do.
    let mut hdr = PoolHeader::decode(&bytes).unwrap();
    hdr.signature = PoolType::Blk.signature();
    let blk = hdr.encode();
    let err = header::validate(&blk, Some(PoolType::Obj)).unwrap_err();
    assert!(err.to_string().contains("\"PMEMBLK\\x00\", expected \"PMEMOBJ\\x00\""), "{err}");
    assert_eq!(
        header::validate(&blk, None),
        Err(HeaderError::BadMajor { signature: *b"PMEMBLK\0", expected: 1, found: 6 })
    );
}

#[test]
fn wrong_major_is_a_major_error() {
    let bytes = fixture_header();
    for major in [0u32, 1, 5, 7, u32::MAX] {
        let mut b = bytes;
        b[8..12].copy_from_slice(&major.to_le_bytes());
        assert_eq!(
            header::validate(&b, Some(PoolType::Obj)),
            Err(HeaderError::BadMajor { signature: *b"PMEMOBJ\0", expected: 6, found: major })
        );
    }
}

#[test]
fn every_flip_below_2k_and_in_the_checksum_is_a_checksum_error() {
    if !x86_64_or_skip("every_flip_below_2k_and_in_the_checksum_is_a_checksum_error") {
        return;
    }
    let bytes = fixture_header();
    let regions = (offset::COMPAT..offset::INCOMPAT)
        .chain(offset::RO_COMPAT..offset::UNUSED2)
        .chain(offset::CHECKSUM..HEADER_SIZE);
    let mut tried = 0;
    for at in regions {
        for bit in 0..8 {
            let mut b = bytes;
            b[at] ^= 1 << bit;
            let stored = u64::from_le_bytes(b[offset::CHECKSUM..].try_into().unwrap());
            match header::validate(&b, Some(PoolType::Obj)) {
                Err(HeaderError::ChecksumMismatch {
                    what: "pool header",
                    offset: 4088,
                    stored: s,
                    computed,
                }) if s == stored && computed == checksum(&b) && computed != stored => {}
                other => panic!("flip of bit {bit} at byte {at}: {other:?}"),
            }
            tried += 1;
        }
    }
    assert_eq!(tried, (4 + 2028 + 8) * 8);
    // Known incompat bits flipped: still checked before the checksum, and they are known,
    // so the checksum catches them (dropping CKSUM_2K widens the checksummed range).
    for bit in [Features::SINGLEHDR, Features::CKSUM_2K, Features::SDS] {
        let mut b = bytes;
        b[offset::INCOMPAT] ^= u8::try_from(bit).unwrap();
        assert!(matches!(
            header::validate(&b, Some(PoolType::Obj)),
            Err(HeaderError::ChecksumMismatch { .. })
        ));
    }
}

#[test]
fn with_cksum_2k_flips_from_2048_on_do_not_change_the_checksum() {
    let bytes = fixture_header();
    assert!(PoolHeader::decode(&bytes).unwrap().features.cksum_2k());
    let on_x86_64 = x86_64_or_skip(
        "with_cksum_2k_flips_from_2048_on_do_not_change_the_checksum (validate calls)",
    );
    for at in offset::UNUSED2..offset::CHECKSUM {
        let mut b = bytes;
        b[at] ^= 0xa5;
        assert_eq!(checksum(&b), FIXTURE_CHECKSUM, "byte {at}");
        let hdr = PoolHeader::decode(&b).unwrap();
        hdr.verify_checksum().unwrap();
        if on_x86_64 {
            hdr.validate(Some(PoolType::Obj)).unwrap();
        }
        // The shutdown state has a checksum of its own that does see the flip.
        let in_sds = (offset::SDS..offset::CHECKSUM).contains(&at);
        assert_eq!(hdr.sds.verify().is_err(), in_sds, "byte {at}");
        // encode keeps the flipped byte (and the stored, still valid, checksum).
        assert_eq!(hdr.encode(), b);
    }
    // Without CKSUM_2K the same flips are checksum errors.
    let mut hdr = PoolHeader::decode(&bytes).unwrap();
    hdr.features.incompat &= !Features::CKSUM_2K;
    let full = hdr.encode();
    assert_ne!(checksum(&full), FIXTURE_CHECKSUM);
    for at in (offset::UNUSED2..offset::CHECKSUM).step_by(7) {
        let mut b = full;
        b[at] ^= 0xa5;
        let hdr = PoolHeader::decode(&b).unwrap();
        assert!(
            matches!(hdr.verify_checksum(), Err(HeaderError::ChecksumMismatch { stored, .. }) if stored == checksum(&full)),
            "byte {at}"
        );
    }
}

#[test]
fn unknown_incompat_features_are_refused_and_others_are_not() {
    let bytes = fixture_header();
    let base = PoolHeader::decode(&bytes).unwrap();
    for bit in 3..32 {
        let mut hdr = base.clone();
        hdr.features.incompat |= 1 << bit;
        let b = hdr.encode();
        assert_eq!(
            header::validate(&b, Some(PoolType::Obj)),
            Err(HeaderError::UnknownFeatures { unknown: 1 << bit, found: 0x6 | (1 << bit) })
        );
    }
    if !x86_64_or_skip("unknown_incompat_features_are_refused_and_others_are_not (the rest)") {
        return;
    }
    // Unknown compat bits are ignored; unknown ro_compat bits are the caller's to act on.
    let mut hdr = base.clone();
    hdr.features.compat |= 0x8000_0000;
    hdr.features.ro_compat |= 0x2;
    let b = hdr.encode();
    let back = header::validate(&b, Some(PoolType::Obj)).unwrap();
    assert_eq!(back.features.unknown_ro_compat(), 0x2);
}

type ArchChange = fn(&mut ArchFlags);

#[test]
fn arch_flags_of_another_machine_are_refused() {
    if !x86_64_or_skip("arch_flags_of_another_machine_are_refused") {
        return;
    }
    let base = PoolHeader::decode(&fixture_header()).unwrap();
    let cases: [(&str, usize, ArchChange); 5] = [
        ("machine", 142, |a| a.machine = ArchFlags::MACHINE_AARCH64),
        ("data", 137, |a| a.data = ArchFlags::DATA_BE),
        ("machine_class", 136, |a| a.machine_class = 1),
        ("alignment_desc", 128, |a| a.alignment_desc ^= 0xf << 36),
        ("reserved", 138, |a| a.reserved[2] = 1),
    ];
    for (field, at, change) in cases {
        let mut hdr = base.clone();
        change(&mut hdr.arch_flags);
        let err = header::validate(&hdr.encode(), Some(PoolType::Obj)).unwrap_err();
        assert!(
            matches!(err, HeaderError::ArchMismatch { field: f, offset, .. } if f == field && offset == at),
            "{field}: {err}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn garbage_never_panics() {
    let mut state = 0x243f_6a88_85a3_08d3u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let fixture = fixture();
    for round in 0..3000 {
        let len = usize::try_from(next() % 9000).unwrap();
        let mut buf: Vec<u8> = if round % 2 == 0 {
            (0..len).map(|_| next().to_le_bytes()[0]).collect()
        } else {
            // Mostly-valid bytes with a few random changes.
            let mut b = fixture.clone();
            b.resize(len, 0);
            b
        };
        for _ in 0..(next() % 4) {
            if !buf.is_empty() {
                let i = usize::try_from(next() % u64::try_from(buf.len()).unwrap()).unwrap();
                buf[i] = next().to_le_bytes()[0];
            }
        }
        let _ = header::validate(&buf, None);
        if let Ok(hdr) = PoolHeader::decode(&buf) {
            let _ = hdr.validate(Some(PoolType::Log));
            let _ = hdr.sds.verify();
            let _ = format!("{hdr:?}");
            assert_eq!(hdr.encode()[2048..4088], buf[2048..4088]);
        }
        if let Some(desc) = buf.get(4096..)
            && let Ok(d) = ObjDescriptor::decode(desc)
        {
            let _ = d.validate(Some("x"));
            let _ = d.layout_name();
            let _ = format!("{d:?}");
        }
        let _ = check_rings(&[PoolHeader::decode(&buf).into_iter().collect::<Vec<_>>()]);
    }
}

// ---------------------------------------------------------------------------------------
// Checksum, uuid, shutdown state details
// ---------------------------------------------------------------------------------------

/// A straightforward reading of PMDK's rule: each little-endian word is added to `lo` (or 0
/// for the checksum field and the words from `zero_from` on) and `lo` to `hi`.
fn reference_fletcher(bytes: &[u8], checksum_at: usize, zero_from: usize) -> u64 {
    let (mut lo, mut hi) = (0u32, 0u32);
    for (i, w) in bytes.chunks_exact(4).enumerate() {
        let at = i * 4;
        let skipped = at == checksum_at || at == checksum_at.wrapping_add(4) || at >= zero_from;
        if !skipped {
            lo = lo.wrapping_add(u32::from_le_bytes(w.try_into().unwrap()));
        }
        hi = hi.wrapping_add(lo);
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

#[test]
fn checksum_follows_the_pmdk_rule() {
    let mut state = 7u64;
    for round in 0..200 {
        let mut b = [0u8; HEADER_SIZE];
        for chunk in b.chunks_mut(8) {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let two_k = round % 2 == 0;
        let incompat: u32 = if two_k { 0x6 } else { 0x4 };
        b[16..20].copy_from_slice(&incompat.to_le_bytes());
        let end = if two_k { 2048 } else { 4096 };
        assert_eq!(checksum(&b), reference_fletcher(&b, 4088, end));
        assert_eq!(checksum(&b), fletcher64(&b, 4088, end));
    }
    // Wrapping: all-ones words.
    let ones = [0xffu8; 16];
    assert_eq!(fletcher64(&ones, usize::MAX, 16), reference_fletcher(&ones, usize::MAX, 16));
    // The descriptor rule: 2048 bytes, checksum at 2040.
    let d = &fixture()[4096..4096 + 2048];
    assert_eq!(reference_fletcher(d, 2040, 2048), FIXTURE_DESCRIPTOR_CHECKSUM);
    // The shutdown state rule: 64 bytes, checksum at 56.
    let mut sds = ShutdownState { usc: 3, uuid: 0x1234_5678_9abc, dirty: 1, ..Default::default() };
    sds.seal();
    assert_eq!(sds.checksum, reference_fletcher(&sds.encode(), 56, 64));
}

#[test]
fn uuid_text_and_byte_order() {
    let text = "1a376e6c-f2a8-4b22-8f26-36347b7f713f";
    let u: Uuid = text.parse().unwrap();
    // As PMDK stored it on disk (bytes 24..40 of a header made by pmempool).
    assert_eq!(
        u.0,
        [
            0x6c, 0x6e, 0x37, 0x1a, 0xa8, 0xf2, 0x22, 0x4b, 0x8f, 0x26, 0x36, 0x34, 0x7b, 0x7f,
            0x71, 0x3f
        ]
    );
    assert_eq!(u.to_string(), text);
    assert_eq!(format!("{u:?}"), format!("Uuid({text})"));
    assert_eq!(text.to_uppercase().parse::<Uuid>().unwrap(), u);
    for bad in [
        "",
        "1a376e6c-f2a8-4b22-8f26-36347b7f713",
        "1a376e6c-f2a8-4b22-8f26-36347b7f713f0",
        "1a376e6cxf2a8-4b22-8f26-36347b7f713f",
        "1a376e6c-f2a8-4b22-8f26-36347b7f713g",
        "1a376e6c-f2a8-4b22-8f2636347b7f713f-",
        "+a376e6c-f2a8-4b22-8f26-36347b7f713f",
        "1a376e6c-f2a8-4b22-8f26-36347b7f71é",
    ] {
        assert_eq!(bad.parse::<Uuid>(), Err(HeaderError::InvalidUuid { text: bad.into() }));
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let g = Uuid::generate().unwrap();
        let rfc = g.to_rfc_bytes();
        assert_eq!(rfc[6] >> 4, 4, "{g}");
        assert_eq!(rfc[8] >> 6, 0b10, "{g}");
        assert_eq!(g.to_string().parse::<Uuid>().unwrap(), g);
        assert!(seen.insert(g));
    }
    let r = Uuid::from_random_bytes([0; 16]);
    assert_eq!(r.to_string(), "00000000-0000-4000-8000-000000000000");
    assert!(Uuid::NIL.is_nil() && !r.is_nil());
}

#[test]
fn shutdown_state_lives_at_4024_with_its_own_checksum() {
    let mut hdr = PoolHeader::decode(&fixture_header()).unwrap();
    hdr.sds = ShutdownState { usc: 11, uuid: 0xfeed, dirty: 1, ..Default::default() };
    hdr.sds.seal();
    let b = hdr.encode();
    assert_eq!(b[4024..4032], 11u64.to_le_bytes());
    assert_eq!(b[4032..4040], 0xfeedu64.to_le_bytes());
    assert_eq!(b[4040], 1);
    assert_eq!(b[4080..4088], hdr.sds.checksum.to_le_bytes());
    // CKSUM_2K: the header checksum does not see the shutdown state.
    assert_eq!(checksum(&b), FIXTURE_CHECKSUM);
    let back = PoolHeader::decode(&b).unwrap();
    back.sds.verify().unwrap();
    let mut torn = b;
    torn[4040] = 0;
    let err = PoolHeader::decode(&torn).unwrap().sds.verify().unwrap_err();
    assert!(
        matches!(err, HeaderError::ChecksumMismatch { what: "shutdown state", offset: 4080, .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Uuid rings (synthetic)
// ---------------------------------------------------------------------------------------

fn synthetic_set(replicas: usize, parts: usize) -> Vec<Vec<PoolHeader>> {
    let set = Uuid::generate().unwrap();
    let mut hdrs: Vec<Vec<PoolHeader>> = (0..replicas)
        .map(|_| {
            (0..parts)
                .map(|_| PoolHeader::new(PoolType::Obj, set, Uuid::generate().unwrap()))
                .collect()
        })
        .collect();
    link_rings(&mut hdrs).unwrap();
    hdrs
}

#[test]
fn rings_detect_every_wrong_link() {
    for (nr, np) in [(1, 1), (1, 3), (3, 1), (2, 2), (3, 4)] {
        let good = synthetic_set(nr, np);
        check_rings(&good).unwrap();
        for r in 0..nr {
            for p in 0..np {
                let other = Uuid::generate().unwrap();
                let links = [
                    Link::PoolsetUuid,
                    Link::PrevPart,
                    Link::NextPart,
                    Link::PrevReplica,
                    Link::NextReplica,
                ];
                for link in links {
                    let mut bad = good.clone();
                    let h = &mut bad[r][p];
                    let (field, expected) = match link {
                        Link::PoolsetUuid => (&mut h.poolset_uuid, good[0][0].poolset_uuid),
                        Link::PrevPart => (&mut h.prev_part_uuid, good[r][(p + np - 1) % np].uuid),
                        Link::NextPart => (&mut h.next_part_uuid, good[r][(p + 1) % np].uuid),
                        Link::PrevReplica => {
                            (&mut h.prev_repl_uuid, good[(r + nr - 1) % nr][0].uuid)
                        }
                        Link::NextReplica => (&mut h.next_repl_uuid, good[(r + 1) % nr][0].uuid),
                        _ => unreachable!(),
                    };
                    *field = other;
                    // A changed pool set uuid of replica 0 part 0 is reported at the first
                    // header that disagrees with it (none when it is the only header).
                    if link == Link::PoolsetUuid && r == 0 && p == 0 {
                        let result = check_rings(&bad);
                        if nr * np == 1 {
                            assert_eq!(result, Ok(()));
                        } else {
                            let err = result.unwrap_err();
                            assert!(
                                matches!(err, HeaderError::BrokenLink { link: Link::PoolsetUuid, found, .. } if found == good[0][0].poolset_uuid),
                                "{err}"
                            );
                        }
                        continue;
                    }
                    let err = check_rings(&bad).unwrap_err();
                    assert_eq!(
                        err,
                        HeaderError::BrokenLink {
                            link,
                            replica: r,
                            part: p,
                            expected,
                            found: other
                        },
                        "{nr}x{np} r{r} p{p}"
                    );
                    assert!(err.to_string().contains(link.field_name()));
                }
            }
        }
    }
    // Empty input and duplicate uuids.
    assert_eq!(check_rings::<Vec<PoolHeader>>(&[]), Err(HeaderError::Empty { replica: None }));
    assert_eq!(
        check_rings(&[vec![], vec![]] as &[Vec<PoolHeader>]),
        Err(HeaderError::Empty { replica: Some(0) })
    );
    assert_eq!(check_part_ring(4, &[]), Err(HeaderError::Empty { replica: Some(4) }));
    let mut dup = synthetic_set(2, 2);
    dup[1][1].uuid = dup[0][1].uuid;
    link_rings(&mut dup).unwrap();
    assert_eq!(
        check_rings(&dup),
        Err(HeaderError::DuplicateUuid { uuid: dup[0][1].uuid, first: (0, 1), second: (1, 1) })
    );
}

// ---------------------------------------------------------------------------------------
// Against pools the real pmempool creates
// ---------------------------------------------------------------------------------------

struct PmdkSet {
    _dir: tempfile::TempDir,
    set: PathBuf,
    parts: Vec<Vec<PathBuf>>,
}

fn create_2x2(layout: &str) -> PmdkSet {
    let dir = tempfile::tempdir().unwrap();
    let set = write_set_2x2(dir.path());
    create_obj_pool(&set, layout);
    let parts = set_parts(&set);
    assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
    PmdkSet { _dir: dir, set, parts }
}

fn read_headers(parts: &[Vec<PathBuf>]) -> Vec<Vec<PoolHeader>> {
    parts
        .iter()
        .map(|rep| {
            rep.iter().map(|p| PoolHeader::decode(&read_prefix(p, HEADER_SIZE)).unwrap()).collect()
        })
        .collect()
}

fn write_header(part: &Path, hdr: &PoolHeader) {
    write_at(part, 0, &hdr.encode());
}

#[test]
fn pmdk_headers_decode_validate_and_match_pmempool_info() {
    if pmempool_or_skip("pmdk_headers_decode_validate_and_match_pmempool_info").is_none() {
        return;
    }
    let s = create_2x2("ckpt-header-test");
    for (r, rep) in s.parts.iter().enumerate() {
        for (p, part) in rep.iter().enumerate() {
            let what = format!("replica {r} part {p}");
            let raw = read_prefix(part, 8192);
            let hdr = header::validate(&raw, Some(PoolType::Obj)).unwrap();
            assert_eq!(hdr.encode()[..], raw[..HEADER_SIZE], "{what}");
            // pmempool info on the part file prints that part's own header.
            let info = parse_info(&pmempool_info(part));
            assert_matches_info(&hdr, &info, &what);
            if p == 0 {
                let d = ObjDescriptor::decode(&raw[4096..]).unwrap();
                assert_eq!(d.encode()[..], raw[4096..4096 + ObjDescriptor::LEN]);
                let rep_info = parse_info(&pmempool_info_args(&["-p", &r.to_string()], &s.set));
                assert_eq!(rep_info.pool("UUID"), hdr.uuid.to_string());
                assert_descriptor_matches_info(&d, &rep_info, "ckpt-header-test");
            }
        }
    }
}

#[test]
fn pmdk_uuid_rings_link_parts_and_replicas() {
    if pmempool_or_skip("pmdk_uuid_rings_link_parts_and_replicas").is_none() {
        return;
    }
    let s = create_2x2("ckpt-rings");
    let hdrs = read_headers(&s.parts);
    check_rings(&hdrs).unwrap();
    for (r, rep) in hdrs.iter().enumerate() {
        check_part_ring(r, rep).unwrap();
    }
    check_replica_ring(&hdrs).unwrap();
    // Ours links exactly as PMDK did.
    let mut relinked = hdrs.clone();
    link_rings(&mut relinked).unwrap();
    assert_eq!(relinked, hdrs);
    // Parts listed out of order, or replicas swapped with their parts: broken links.
    // (Two parts point to each other both ways, so their swap shows in the replica ring:
    // replica 0 points at the old part 0 of replica 1.)
    let mut swapped = hdrs.clone();
    swapped[1].swap(0, 1);
    assert_eq!(
        check_rings(&swapped),
        Err(HeaderError::BrokenLink {
            link: Link::NextReplica,
            replica: 0,
            part: 0,
            expected: hdrs[1][1].uuid,
            found: hdrs[1][0].uuid
        })
    );
    let mut single = vec![hdrs[0].clone()];
    link_rings(&mut single).unwrap();
    single[0].swap(0, 1);
    assert!(matches!(
        check_rings(&single),
        Err(HeaderError::BrokenLink { link: Link::NextReplica, replica: 0, part: 0, .. })
    ));
    let mut crossed = hdrs.clone();
    let (first, second) = crossed.split_at_mut(1);
    std::mem::swap(&mut first[0][1], &mut second[0][1]);
    assert!(matches!(check_rings(&crossed), Err(HeaderError::BrokenLink { .. })));
    // The replica ring of a 2-replica set: both links point at the other replica's part 0.
    assert_eq!(hdrs[0][1].next_repl_uuid, hdrs[1][0].uuid);
    assert_eq!(hdrs[1][1].prev_repl_uuid, hdrs[0][0].uuid);
}

#[test]
fn pmempool_accepts_headers_we_encode_with_new_uuids() {
    const SEED: u64 = 42;
    const LEN: usize = 20 << 20;
    if pmempool_or_skip("pmempool_accepts_headers_we_encode_with_new_uuids").is_none() {
        return;
    }
    let with_data = libpmemobj_or_skip("pmempool_accepts_headers_we_encode_with_new_uuids");
    let s = create_2x2("ckpt-relink");
    if with_data {
        write_root(&s.set, SEED, LEN);
    }
    let mut hdrs = read_headers(&s.parts);
    let old: Vec<Uuid> = hdrs.iter().flatten().map(|h| h.uuid).collect();
    for h in hdrs.iter_mut().flatten() {
        h.uuid = Uuid::generate().unwrap();
    }
    link_rings(&mut hdrs).unwrap();
    check_rings(&hdrs).unwrap();
    for (rep, files) in hdrs.iter().zip(&s.parts) {
        for (h, part) in rep.iter().zip(files) {
            write_header(part, h);
        }
    }
    let check = pmempool_check(&s.set);
    assert!(check.consistent, "pmempool check refused our headers:\n{}", check.output);
    for (rep, files) in hdrs.iter().zip(&s.parts) {
        for (h, part) in rep.iter().zip(files) {
            let info = parse_info(&pmempool_info(part));
            assert_matches_info(h, &info, &part.display().to_string());
            assert!(!old.contains(&h.uuid));
        }
    }
    if with_data {
        verify_root(&s.set, SEED, LEN).unwrap();
        // libpmemobj opened it and closed it cleanly: the headers still validate.
        let after = read_headers(&s.parts);
        check_rings(&after).unwrap();
        for h in after.iter().flatten() {
            h.validate(Some(PoolType::Obj)).unwrap();
        }
    }
}

#[test]
fn pmempool_and_we_both_flag_a_single_broken_link() {
    if pmempool_or_skip("pmempool_and_we_both_flag_a_single_broken_link").is_none() {
        return;
    }
    let s = create_2x2("ckpt-broken-link");
    let mut hdrs = read_headers(&s.parts);
    let old = hdrs[0][1].uuid;
    let new = Uuid::generate().unwrap();
    hdrs[0][1].uuid = new;
    write_header(&s.parts[0][1], &hdrs[0][1]);
    // The rewritten header itself is valid (our checksum is PMDK's: pmempool info agrees)...
    let raw = read_prefix(&s.parts[0][1], HEADER_SIZE);
    header::validate(&raw, Some(PoolType::Obj)).unwrap();
    let info = parse_info(&pmempool_info(&s.parts[0][1]));
    assert!(info.pool("Checksum").ends_with("[OK]"), "{info:?}");
    assert_eq!(info.pool("UUID"), new.to_string());
    // ...but part 0 still points at the old uuid.
    assert_eq!(
        check_rings(&hdrs),
        Err(HeaderError::BrokenLink {
            link: Link::NextPart,
            replica: 0,
            part: 0,
            expected: new,
            found: old
        })
    );
    let check = pmempool_check(&s.set);
    assert!(!check.consistent, "pmempool check accepted a broken part ring:\n{}", check.output);
    // PMDK names the same field of the same header, and no checksum.
    assert!(
        check.output.contains("replica 0 part 0: invalid pool_hdr.next_part_uuid"),
        "{}",
        check.output
    );
    assert!(!check.output.to_lowercase().contains("checksum"), "{}", check.output);
}

#[test]
fn our_checksums_equal_pmempool_should_be_values() {
    if pmempool_or_skip("our_checksums_equal_pmempool_should_be_values").is_none() {
        return;
    }
    let s = create_2x2("ckpt-should-be");
    let part = &s.parts[0][0];
    // Corrupt the header below 2048 and the descriptor, leaving the stored checksums.
    // (`pmempool info` refuses a part with a bad header checksum unless forced with
    // `-f obj`; then it prints "[wrong! should be: 0x...]".)
    for (at, mask) in
        [(100u64, 0x5au8), (130, 0x01), (2047, 0x80), (4096 + 5, 0x33), (4096 + 1500, 0x10)]
    {
        flip_byte(part, at, mask);
    }
    let raw = read_prefix(part, 8192);
    let hdr = PoolHeader::decode(&raw).unwrap();
    let d = ObjDescriptor::decode(&raw[4096..]).unwrap();
    let info = parse_info(&pmempool_info_args(&["-f", "obj"], part));
    let pmdk_hdr =
        common::info_should_be(info.pool("Checksum")).expect("pmempool saw the header corruption");
    let pmdk_desc = common::info_should_be(info.obj("Checksum"))
        .expect("pmempool saw the descriptor corruption");
    assert_eq!(hdr.compute_checksum(), pmdk_hdr);
    assert_eq!(d.compute_checksum(), pmdk_desc);
    assert_eq!(
        hdr.verify_checksum(),
        Err(HeaderError::ChecksumMismatch {
            what: "pool header",
            offset: 4088,
            stored: common::info_number(info.pool("Checksum")),
            computed: pmdk_hdr
        })
    );
    let check = pmempool_check(&s.set);
    assert!(!check.consistent, "{}", check.output);
}

#[test]
fn pmempool_agrees_that_cksum_2k_leaves_the_upper_half_unchecked() {
    if pmempool_or_skip("pmempool_agrees_that_cksum_2k_leaves_the_upper_half_unchecked").is_none() {
        return;
    }
    let s = create_2x2("ckpt-2k");
    flip_byte(&s.parts[0][1], 3000, 0xff);
    flip_byte(&s.parts[1][1], 2048, 0x01);
    let check = pmempool_check(&s.set);
    assert!(check.consistent, "{}", check.output);
    for part in [&s.parts[0][1], &s.parts[1][1]] {
        let hdr = header::validate(&read_prefix(part, HEADER_SIZE), Some(PoolType::Obj)).unwrap();
        assert!(!hdr.unused_is_zero());
    }
    // One byte lower, the checksum covers it: both PMDK and we refuse.
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_set(&s.set, dir.path());
    let part = &set_parts(&copy)[0][1];
    flip_byte(part, 2047, 0x01);
    assert!(!pmempool_check(&copy).consistent);
    assert!(matches!(
        header::validate(&read_prefix(part, HEADER_SIZE), Some(PoolType::Obj)),
        Err(HeaderError::ChecksumMismatch { .. })
    ));
}

#[test]
fn libpmemobj_refuses_an_unknown_incompat_feature_we_encode() {
    if pmempool_or_skip("libpmemobj_refuses_an_unknown_incompat_feature_we_encode").is_none() {
        return;
    }
    let s = create_2x2("ckpt-features");
    let mut hdrs = read_headers(&s.parts);
    for (rep, files) in hdrs.iter_mut().zip(&s.parts) {
        for (h, part) in rep.iter_mut().zip(files) {
            h.features.incompat |= 0x10;
            write_header(part, h);
        }
    }
    // PMDK 1.12's `pmempool check` does not look at the feature bits (it calls this set
    // consistent) and `pmempool info` shows them as ?UNKNOWN_FLAG? with a checksum it
    // accepts; libpmemobj refuses to open the pool. We refuse like libpmemobj.
    let check = pmempool_check(&s.set);
    assert!(check.consistent, "{}", check.output);
    let info = parse_info(&pmempool_info(&s.set));
    assert!(info.pool("Mandatory features").starts_with("0x16 "), "{info:?}");
    assert!(info.pool("Checksum").ends_with("[OK]"), "{info:?}");
    if libpmemobj_or_skip("libpmemobj_refuses_an_unknown_incompat_feature_we_encode") {
        let err = verify_root(&s.set, 1, 64).unwrap_err();
        assert!(err.contains("unknown incompat features: 0x10"), "{err}");
    }
    for h in hdrs.iter().flatten() {
        let raw = h.encode();
        assert_eq!(
            header::validate(&raw, Some(PoolType::Obj)),
            Err(HeaderError::UnknownFeatures { unknown: 0x10, found: 0x16 })
        );
    }
}

#[test]
fn root_object_helper_writes_through_libpmemobj_across_parts() {
    const LEN: usize = 20 << 20;
    const PART: u64 = 16 << 20;
    if pmempool_or_skip("root_object_helper_writes_through_libpmemobj_across_parts").is_none()
        || !libpmemobj_or_skip("root_object_helper_writes_through_libpmemobj_across_parts")
    {
        return;
    }
    let s = create_2x2("ckpt-root");
    let root = write_root(&s.set, 7, LEN);
    assert!(root.size >= LEN as u64);
    verify_root(&s.set, 7, LEN).unwrap();
    let err = verify_root(&s.set, 8, LEN).unwrap_err();
    assert!(err.contains("differs"), "{err}");
    // The root object runs from part 0 into part 1 (16 MiB parts; part 1's data starts
    // after its own 4 KiB header), in both replicas.
    let end = root.offset + LEN as u64;
    assert!(root.offset < PART && end > PART, "root {root:?} does not span both parts");
    let pattern = root_pattern(7, LEN);
    let split = usize::try_from(PART - root.offset).unwrap();
    for rep in &s.parts {
        assert_eq!(read_at(&rep[0], root.offset, 4096), pattern[..4096]);
        assert_eq!(read_at(&rep[0], PART - 4096, 4096), pattern[split - 4096..split]);
        assert_eq!(read_at(&rep[1], 4096, 4096), pattern[split..split + 4096]);
        let tail_at = 4096 + (end - PART) - 4096;
        assert_eq!(read_at(&rep[1], tail_at, 4096), pattern[LEN - 4096..]);
    }
    // Damage one byte of replica 0's data in part 1: libpmemobj reads the master replica
    // and the helper reports the offset.
    flip_byte(&s.parts[0][1], 4096 + 100, 0xff);
    let err = verify_root(&s.set, 7, LEN).unwrap_err();
    assert!(err.contains(&format!("first at root offset {}", split + 100)), "{err}");
}
