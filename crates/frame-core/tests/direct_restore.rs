//! Copy-free restore: `read_into` reads or decodes the chunks of a large buffer straight into
//! the caller's memory. Bytes must come back the same at every size around the chunking
//! thresholds, through every source, damage inside such a chunk must still be caught, and
//! the copy through internal memory must really be gone.

mod common;
use ckpt_frame_core::{
    ChunkDecompressor, CodecError, Error, ErrorKind, Lz4Decompressor, PlanMismatch, ReadSource,
    Reader, SliceSource, Style,
};
use common::*;

const K: usize = 1024;
const FRAME_HEADER_LEN: usize = 40;
const CHUNK_HEADER_LEN: usize = 32;

/// The sizes around the thresholds: just under and at `DIRECT_MIN` (16 KiB), one chunk,
/// one chunk and a byte, two chunks and a tail, many chunks, and exact multiples whose
/// last chunk is direct (so the history is re-homed when `read_into` returns).
const SIZES: [usize; 8] =
    [16 * K - 1, 16 * K, 64 * K, 64 * K + 1, 80 * K, 128 * K, 128 * K + 17, 5 * K * K];

/// One frame per style and data kind: every size, each after a few tiny buffers, and each
/// followed by a copy of its own last bytes, which LZ4 encodes as matches reaching back into
/// the large buffer (so the history after a direct decode must be right).
fn plan() -> Plan {
    let mut plan = Plan::new();
    for style in [Style::Raw, Style::Lz4] {
        for compressible in [true, false] {
            let mut bufs = Vec::new();
            for (i, &size) in (0u64..).zip(&SIZES) {
                let seed = i * 10 + u64::from(compressible);
                bufs.push(vec![]);
                bufs.push(content(seed + 1, 3, compressible));
                let big = content(seed + 2, size, compressible);
                let echo = big[size - 300..].to_vec();
                bufs.push(big);
                bufs.push(echo);
                bufs.push(content(seed + 3, 1, compressible));
            }
            // Large buffers back to back, the first starting the frame.
            let first = content(99, 200 * K, compressible);
            let again = first[..150 * K].to_vec();
            bufs.insert(0, again);
            bufs.insert(0, first);
            plan.push((style, bufs));
        }
    }
    plan
}

#[test]
fn every_size_restores_through_every_source() {
    let plan = plan();
    let bytes = write_vec(&plan);
    for (how, restored) in restore_every_way(&bytes, &plan) {
        restored.assert_equals(&plan, how);
    }
    let trickle = restore_streaming(ReadSource(Trickle { bytes: &bytes, max: 4093 }), &plan);
    trickle.assert_equals(&plan, "streaming ReadSource trickle 4093");
}

#[test]
fn every_size_restores_alone_in_its_frame() {
    for style in [Style::Raw, Style::Lz4] {
        for &size in &SIZES {
            let plan = vec![(style, vec![content(size as u64, size, true)])];
            let bytes = write_vec(&plan);
            restore_streaming(SliceSource::new(&bytes), &plan)
                .assert_equals(&plan, &format!("{style:?} {size} slice"));
            restore_streaming(ReadSource(Trickle { bytes: &bytes, max: 7 }), &plan)
                .assert_equals(&plan, &format!("{style:?} {size} trickle"));
        }
    }
}

/// A decompressor that implements only the required methods, so `read_into` goes through
/// the trait's default `decompress_into` (decode aside and copy).
struct RequiredOnly(Lz4Decompressor);

impl ChunkDecompressor for RequiredOnly {
    fn reset(&mut self) {
        self.0.reset();
    }
    fn decompress_linked(&mut self, stored: &[u8], logical_len: usize) -> Result<(), CodecError> {
        self.0.decompress_linked(stored, logical_len)
    }
    fn output(&self) -> &[u8] {
        self.0.output()
    }
}

#[test]
fn decompressor_without_direct_decoding_still_restores() {
    let plan = plan();
    let bytes = write_vec(&plan);
    let mut r = Reader::with_codecs(
        SliceSource::new(&bytes),
        Some(Box::new(RequiredOnly(Lz4Decompressor::new().unwrap()))),
    );
    for (i, (_, bufs)) in plan.iter().enumerate() {
        let mut f = r.next_frame().unwrap().unwrap();
        for (j, want) in bufs.iter().enumerate() {
            let mut got = vec![0u8; want.len()];
            f.read_into(&mut got).unwrap();
            assert!(got == *want, "frame {i} buffer {j}");
        }
        f.close().unwrap();
    }
    r.finish().unwrap();
}

/// Chunk headers of the frame at `frame_offset`: (offset, logical, stored, table) each.
fn chunks(bytes: &[u8], frame_offset: usize) -> Vec<(usize, usize, usize, usize)> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut at = frame_offset + FRAME_HEADER_LEN;
    let mut out = Vec::new();
    while &bytes[at..at + 4] != b"CKFE" {
        let (logical, stored, table) = (u32_at(at), u32_at(at + 4), u32_at(at + 12));
        out.push((at, logical, stored, table));
        at += CHUNK_HEADER_LEN + stored + table;
    }
    out
}

/// A frame 0 to skip, then frame 1 holding one 1 MiB buffer and a tiny one.
fn damage_plan(style: Style) -> Plan {
    vec![
        (Style::Raw, vec![content(1, 10, true)]),
        (style, vec![content(2, 1 << 20, false), content(3, 5, false)]),
    ]
}

/// Restores `bytes` (written from `damage_plan`) through a streaming reader and returns the
/// error of frame 1's large `read_into`, after checking the reader refuses further use.
fn restore_damaged(bytes: &[u8], plan: &Plan) -> Error {
    let mut r = Reader::new(SliceSource::new(bytes));
    let mut f = r.next_frame().unwrap().unwrap();
    let mut small = vec![0u8; plan[0].1[0].len()];
    f.read_into(&mut small).unwrap();
    f.close().unwrap();
    let mut f = r.next_frame().unwrap().unwrap();
    let mut big = vec![0u8; plan[1].1[0].len()];
    let err = f.read_into(&mut big).unwrap_err();
    let first = err.kind();
    let mut tiny = vec![0u8; 5];
    assert!(matches!(f.read_into(&mut tiny), Err(Error::Failed { first: k }) if k == first));
    assert!(matches!(f.read_to_vec(), Err(Error::Failed { .. })));
    assert!(matches!(f.close(), Err(Error::Failed { .. })));
    assert!(matches!(r.next_frame(), Err(Error::Failed { .. })));
    assert!(matches!(r.finish(), Err(Error::Failed { .. })));
    err
}

fn frame1_offset(bytes: &[u8]) -> usize {
    let r = Reader::open(SliceSource::new(bytes)).unwrap();
    usize::try_from(r.frame_info(1).unwrap().offset).unwrap()
}

#[test]
fn damaged_raw_chunk_read_straight_into_the_buffer_is_a_checksum_mismatch() {
    let plan = damage_plan(Style::Raw);
    let mut bytes = write_vec(&plan);
    let list = chunks(&bytes, frame1_offset(&bytes));
    // The third chunk of the large buffer: the first is loaded to read the buffer's length,
    // the ones after it go straight into the caller's buffer.
    let (at, logical, ..) = list[2];
    assert_eq!(logical, 64 * K);
    bytes[at + CHUNK_HEADER_LEN + 1000] ^= 0x10;
    match restore_damaged(&bytes, &plan) {
        Error::ChecksumMismatch { frame: Some(1), offset, what: "chunk", .. } => {
            assert_eq!(offset, at as u64);
        }
        other => panic!("wrong error: {other:?}"),
    }
}

#[test]
fn damaged_lz4_chunk_decoded_straight_into_the_buffer_is_an_error() {
    let plan = damage_plan(Style::Lz4);
    let clean = write_vec(&plan);
    let list = chunks(&clean, frame1_offset(&clean));
    let (at, logical, stored, table) = list[2];
    assert_eq!(logical, 64 * K);
    // Any damage to the stored bytes: the stored check names it.
    let mut bytes = clean.clone();
    bytes[at + CHUNK_HEADER_LEN + stored / 2] ^= 0x01;
    match restore_damaged(&bytes, &plan) {
        Error::ChecksumMismatch { frame: Some(1), offset, .. } => assert_eq!(offset, at as u64),
        other => panic!("wrong error: {other:?}"),
    }
    // The same damage with the stored check recomputed, so the block decodes into the
    // caller's buffer (random data is stored as literals) and only the checksum of the
    // decoded bytes can catch it.
    let check_at = at + 24;
    let covered = |b: &[u8]| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&b[at..at + 24]);
        h.update(&b[at + CHUNK_HEADER_LEN..at + CHUNK_HEADER_LEN + stored + table]);
        h.digest()
    };
    let fixed = covered(&bytes);
    bytes[check_at..check_at + 8].copy_from_slice(&fixed.to_le_bytes());
    match restore_damaged(&bytes, &plan) {
        Error::ChecksumMismatch { frame: Some(1), offset, what: "chunk", .. }
        | Error::Corrupt { frame: Some(1), offset, .. } => assert_eq!(offset, at as u64),
        other => panic!("wrong error: {other:?}"),
    }
}

/// Bit flips spread over frames whose large buffers are restored chunk by chunk straight
/// into the caller's memory (the every-bit test in integrity.rs is too small to have such
/// chunks): each is an error, and no buffer handed back is wrong.
#[test]
fn sampled_bit_flips_in_direct_chunks_are_errors() {
    let plan = vec![
        (Style::Lz4, vec![content(1, 5, true), content(2, 200 * K, true), content(3, 9, true)]),
        (Style::Lz4, vec![content(4, 150 * K, false), content(5, 64 * K + 3, true)]),
        (Style::Raw, vec![content(6, 140 * K, false), vec![]]),
    ];
    let clean = write_vec(&plan);
    let mut flips = 0;
    for byte in (0..clean.len()).step_by(211) {
        let mut bad = clean.clone();
        bad[byte] ^= 1 << (byte % 8);
        for (name, restored) in [
            ("streaming", restore_streaming(SliceSource::new(&bad), &plan)),
            ("indexed", restore_indexed(SliceSource::new(&bad), &plan)),
        ] {
            let what = format!("{name}, flip in byte {byte}");
            assert!(restored.failed(), "{what}: damage went unnoticed");
            restored.assert_no_wrong_data(&plan, &what);
        }
        flips += 1;
    }
    assert!(flips > 1000, "checkpoint smaller than intended: {flips} flips");
}

#[test]
fn buffer_of_the_wrong_length_is_left_untouched() {
    for style in [Style::Raw, Style::Lz4] {
        let plan = vec![(style, vec![content(7, 300 * K, true)])];
        let bytes = write_vec(&plan);
        let mut r = Reader::new(SliceSource::new(&bytes));
        let mut f = r.next_frame().unwrap().unwrap();
        let mut wrong = vec![0xA5u8; 300 * K + 1];
        let err = f.read_into(&mut wrong).unwrap_err();
        assert!(matches!(
            err,
            Error::PlanMismatch { frame: 0, mismatch: PlanMismatch::BufferLength { .. } }
        ));
        assert!(wrong.iter().all(|&b| b == 0xA5), "{style:?}: plan mismatch wrote to the buffer");
        assert_eq!(err.kind(), ErrorKind::PlanMismatch);
    }
}

/// Restores `plan` with `read_into` and returns the bytes the reader copied through its
/// internal memory.
fn copied_restoring<S: ckpt_frame_core::Source>(source: S, plan: &Plan) -> u64 {
    let mut r = Reader::new(source);
    for (_, bufs) in plan {
        let mut f = r.next_frame().unwrap().unwrap();
        for want in bufs {
            let mut got = vec![0u8; want.len()];
            f.read_into(&mut got).unwrap();
            assert!(got == *want);
        }
        f.close().unwrap();
    }
    r.finish().unwrap();
    r.internal_copy_bytes()
}

#[test]
fn restoring_8_mib_copies_at_most_192_kib() {
    const LIMIT: u64 = 192 * 1024;
    for style in [Style::Raw, Style::Lz4] {
        for compressible in [true, false] {
            let big = content(8, 8 << 20, compressible);
            let what = format!("{style:?}, compressible {compressible}");
            // Alone in its frame, then after and before small buffers, then twice.
            let plans = [
                vec![(style, vec![big.clone()])],
                vec![(style, vec![content(1, 100, compressible), big.clone(), vec![1, 2, 3]])],
                vec![(style, vec![big[..(8 << 20) - 5000].to_vec(), big.clone()])],
            ];
            for (p, plan) in plans.iter().enumerate() {
                let bytes = write_vec(plan);
                let buffers = plan[0].1.iter().filter(|b| b.len() >= 1 << 20).count() as u64;
                let small: u64 =
                    plan[0].1.iter().filter(|b| b.len() < 1 << 20).map(|b| b.len() as u64).sum();
                for (source, copied) in [
                    ("slice", copied_restoring(SliceSource::new(&bytes), plan)),
                    (
                        "trickle",
                        copied_restoring(ReadSource(Trickle { bytes: &bytes, max: 3000 }), plan),
                    ),
                ] {
                    assert!(
                        copied <= buffers * LIMIT + small,
                        "{what}, plan {p}, {source}: copied {copied} bytes"
                    );
                }
            }
            // The statistic is not vacuous: `read_to_vec` copies everything.
            let plan = vec![(style, vec![big])];
            let bytes = write_vec(&plan);
            let mut r = Reader::new(SliceSource::new(&bytes));
            let mut f = r.next_frame().unwrap().unwrap();
            assert_eq!(f.read_to_vec().unwrap().as_deref(), Some(&plan[0].1[0][..]));
            f.close().unwrap();
            assert!(r.internal_copy_bytes() >= 8 << 20, "{what}");
        }
    }
}

/// `read_each` streams a buffer in pieces of at most one chunk, and a checkpoint cut inside
/// the buffer fails after the pieces that are there, never handing on unchecked bytes;
/// a failing sink leaves the reader failed.
#[test]
fn read_each_streams_checked_pieces_and_stops_at_a_cut_or_a_failing_sink() {
    use ckpt_frame_core::{CheckpointId, Error, Reader, SliceSource, Style, VecSink, Writer};
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for style in [Style::Raw, Style::Lz4] {
        let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([3; 16]));
        let mut f = w.open_frame(style).unwrap();
        f.add(&data).unwrap();
        f.close().unwrap();
        w.finish().unwrap();
        let bytes = w.into_sink().into_inner();
        let mut r = Reader::new(SliceSource::new(&bytes));
        let mut f = r.next_frame().unwrap().unwrap();
        let mut got = Vec::new();
        let len = f
            .read_each(|at, piece: &[u8]| -> Result<(), Error> {
                assert_eq!(at, got.len() as u64);
                assert!(piece.len() <= 64 * 1024);
                got.extend_from_slice(piece);
                Ok(())
            })
            .unwrap();
        assert_eq!((len, got == data), (Some(data.len() as u64), true), "{style:?}");
        // Cut in the middle of the buffer.
        let cut = &bytes[..bytes.len() / 2];
        let mut r = Reader::new(SliceSource::new(cut));
        let mut f = r.next_frame().unwrap().unwrap();
        let mut seen = 0usize;
        let err = f
            .read_each(|_, piece: &[u8]| -> Result<(), Error> {
                seen += piece.len();
                Ok(())
            })
            .unwrap_err();
        assert!(seen < data.len(), "{style:?}: {err}");
        assert!(data[..seen] == got[..seen]);
        // A sink that fails.
        let mut r = Reader::new(SliceSource::new(&bytes));
        let mut f = r.next_frame().unwrap().unwrap();
        let err =
            f.read_each(|_, _: &[u8]| Err(Error::Failed { first: ckpt_frame_core::ErrorKind::Io }));
        assert!(err.is_err());
        assert!(f.next_len().is_err(), "the reader is failed after a sink error");
    }
}
