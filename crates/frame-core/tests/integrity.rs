//! Damage of every kind is an error, and never wrong data: every single-bit flip, every
//! truncation, and every restore plan that differs from the written one.

mod common;
use ckpt_frame_core::{Error, ErrorKind, PlanMismatch, Reader, SliceSource, Style};
use common::*;

/// A small checkpoint touching every structure: RAW and LZ4 frames, empty buffers, a
/// gathered chunk holding several buffers, a direct LZ4 chunk and an LZ4 buffer spanning
/// chunks. (Prefixes straddling chunk boundaries are covered in roundtrip.rs; a checkpoint
/// big enough for them would make this test's per-bit restores slow for RAW.)
fn small_plan(lz4: bool) -> Plan {
    let style = if lz4 { Style::Lz4 } else { Style::Raw };
    let big = if lz4 { 70_000 } else { 300 };
    vec![
        (style, vec![content(1, 5, true), vec![], content(2, 300, false)]),
        (Style::Raw, vec![content(3, 33, false)]),
        (style, vec![content(4, big, true), content(5, 17_000, true), content(6, 7, true)]),
    ]
}

fn flip_every_bit(plan: &Plan) -> usize {
    let clean = write_vec(plan);
    for (name, r) in restore_every_way(&clean, plan) {
        r.assert_equals(plan, name);
    }
    let mut flips = 0;
    for byte in 0..clean.len() {
        for bit in 0..8 {
            let mut bad = clean.clone();
            bad[byte] ^= 1 << bit;
            for (name, restored) in [
                ("streaming", restore_streaming(SliceSource::new(&bad), plan)),
                ("indexed", restore_indexed(SliceSource::new(&bad), plan)),
            ] {
                let what = format!("{name}, flip of bit {bit} in byte {byte}");
                assert!(restored.failed(), "{what}: damage went unnoticed");
                restored.assert_no_wrong_data(plan, &what);
            }
            flips += 1;
        }
    }
    flips
}

#[test]
fn every_bit_flip_is_an_error_raw() {
    let flips = flip_every_bit(&small_plan(false));
    assert!(flips > 8 * 1000, "checkpoint smaller than intended: {flips} flips");
}

#[test]
fn every_bit_flip_is_an_error_lz4() {
    let flips = flip_every_bit(&small_plan(true));
    assert!(flips > 8 * 1000, "checkpoint smaller than intended: {flips} flips");
}

#[test]
fn every_truncation_is_an_error() {
    for lz4 in [false, true] {
        let plan = small_plan(lz4);
        let clean = write_vec(&plan);
        for len in 0..clean.len() {
            let cut = &clean[..len];
            for (name, restored) in [
                ("streaming", restore_streaming(SliceSource::new(cut), &plan)),
                (
                    "streaming trickle",
                    restore_streaming(
                        ckpt_frame_core::ReadSource(Trickle { bytes: cut, max: 3 }),
                        &plan,
                    ),
                ),
                ("indexed", restore_indexed(SliceSource::new(cut), &plan)),
            ] {
                let what = format!("{name}, truncated to {len} of {} bytes", clean.len());
                assert!(restored.failed(), "{what}: truncation went unnoticed");
                restored.assert_no_wrong_data(&plan, &what);
            }
        }
    }
}

#[test]
fn truncation_error_names_what_is_missing() {
    let plan = small_plan(true);
    let clean = write_vec(&plan);
    let cut = &clean[..clean.len() / 2];
    let e = restore_streaming(SliceSource::new(cut), &plan).error.unwrap();
    assert!(matches!(e, Error::Truncated { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("truncated") && msg.contains("offset"), "{msg}");
    let e = restore_indexed(SliceSource::new(cut), &plan).error.unwrap();
    assert!(e.to_string().contains("tail"), "{e}");
}

#[test]
fn corrupt_chunk_names_frame_and_offset() {
    let plan = small_plan(true);
    let mut bad = write_vec(&plan);
    let info = Reader::open(SliceSource::new(&bad)).unwrap().frame_info(2).unwrap();
    // Damage a byte inside the first chunk of frame 2 (past its 40-byte header and the
    // 32-byte chunk header).
    let at = usize::try_from(info.offset + 40 + 32 + 3).unwrap();
    bad[at] ^= 0x40;
    let e = restore_indexed(SliceSource::new(&bad), &plan).error.unwrap();
    assert_eq!(e.frame(), Some(2), "{e}");
    assert_eq!(e.offset(), Some(info.offset + 40), "{e}");
    assert!(matches!(e.kind(), ErrorKind::ChecksumMismatch | ErrorKind::Corrupt), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("frame 2") && msg.contains(&format!("offset {}", info.offset + 40)),
        "{msg}"
    );
}

#[test]
fn checksum_mismatch_carries_expected_and_found() {
    let plan = vec![(Style::Raw, vec![content(1, 100, false)])];
    let mut bad = write_vec(&plan);
    bad[40 + 32 + 50] ^= 1;
    match restore_streaming(SliceSource::new(&bad), &plan).error.unwrap() {
        Error::ChecksumMismatch { frame: Some(0), offset: 40, what: "chunk", expected, found } => {
            assert_ne!(expected, found);
        }
        other => panic!("expected a chunk checksum mismatch, got {other:?}"),
    }
}

type Case<'a> = (&'a str, &'a Plan, fn(&Error) -> bool);

fn plan_error(bytes: &[u8], restore_plan: &Plan) -> Error {
    let r = restore_streaming(SliceSource::new(bytes), restore_plan);
    r.error.expect("restore with a different plan must fail")
}

#[test]
fn buffer_restored_with_another_length_is_an_error_and_writes_nothing() {
    // The C original restored a 100-byte buffer as 200 bytes "successfully", with stale
    // bytes of an earlier frame.
    let written =
        vec![(Style::Lz4, vec![content(1, 200, true)]), (Style::Lz4, vec![content(2, 100, true)])];
    let bytes = write_vec(&written);
    let mut r = Reader::new(SliceSource::new(&bytes));
    let mut f = r.next_frame().unwrap().unwrap();
    let mut first = vec![0u8; 200];
    f.read_into(&mut first).unwrap();
    f.close().unwrap();
    let mut f = r.next_frame().unwrap().unwrap();
    let mut wrong = vec![0xAAu8; 200];
    match f.read_into(&mut wrong) {
        Err(Error::PlanMismatch {
            frame: 1,
            mismatch: PlanMismatch::BufferLength { buffer: 0, written: 100, requested: 200 },
        }) => {}
        other => panic!("expected a buffer length mismatch, got {other:?}"),
    }
    assert!(wrong.iter().all(|&b| b == 0xAA), "the caller's buffer was written");
    // The handle is failed and says so.
    assert!(matches!(
        f.read_into(&mut [0u8; 100]),
        Err(Error::Failed { first: ErrorKind::PlanMismatch })
    ));
}

#[test]
fn every_kind_of_plan_difference_is_an_error() {
    let written: Plan =
        vec![(Style::Raw, vec![vec![1; 10], vec![2; 20]]), (Style::Lz4, vec![vec![3; 30]])];
    let bytes = write_vec(&written);
    let mut more_buffers = written.clone();
    more_buffers[0].1.push(vec![0; 1]);
    let mut fewer_buffers = written.clone();
    fewer_buffers[0].1.pop();
    let mut swapped = written.clone();
    swapped[0].1.swap(0, 1);
    let mut fewer_frames = written.clone();
    fewer_frames.pop();
    let mut more_frames = written.clone();
    more_frames.push((Style::Raw, vec![]));
    let mut empty_instead = written.clone();
    empty_instead[1].1[0] = vec![];

    let cases: [Case<'_>; 5] = [
        ("more buffers", &more_buffers, |e| {
            matches!(
                e,
                Error::PlanMismatch {
                    frame: 0,
                    mismatch: PlanMismatch::TooManyBuffers { written: 2 }
                }
            )
        }),
        ("fewer buffers", &fewer_buffers, |e| {
            matches!(
                e,
                Error::PlanMismatch {
                    frame: 0,
                    mismatch: PlanMismatch::BuffersLeft { restored: 1 }
                }
            )
        }),
        ("swapped sizes", &swapped, |e| {
            matches!(
                e,
                Error::PlanMismatch {
                    frame: 0,
                    mismatch: PlanMismatch::BufferLength { buffer: 0, written: 10, requested: 20 }
                }
            )
        }),
        ("fewer frames", &fewer_frames, |e| {
            matches!(
                e,
                Error::PlanMismatch { frame: 1, mismatch: PlanMismatch::FramesLeft { read: 1 } }
            )
        }),
        ("empty instead of 30", &empty_instead, |e| {
            matches!(
                e,
                Error::PlanMismatch {
                    frame: 1,
                    mismatch: PlanMismatch::BufferLength { written: 30, requested: 0, .. }
                }
            )
        }),
    ];
    // Asking for a frame the checkpoint does not have: the reader says there is none.
    let r = restore_streaming(SliceSource::new(&bytes), &more_frames);
    assert!(r.error.is_none() && r.ran_out_of_frames, "more frames");
    for (name, plan, expected) in cases {
        let e = plan_error(&bytes, plan);
        assert!(expected(&e), "{name}: unexpected error {e:?}");
    }
}

#[test]
fn frames_of_another_checkpoint_are_refused() {
    let plan = vec![(Style::Raw, vec![vec![1; 10]]), (Style::Raw, vec![vec![2; 10]])];
    let a = write_vec(&plan);
    let other = ckpt_frame_core::CheckpointId::from_bytes([9; 16]);
    let b = write_plan(ckpt_frame_core::Writer::new(ckpt_frame_core::VecSink::new(), other), &plan)
        .unwrap()
        .into_inner();
    // Same sizes, different identity: splice frame 1 of `b` into `a`.
    let frame_len =
        usize::try_from(ckpt_frame_core::frame_size_bound(Style::Raw, [10]).unwrap()).unwrap();
    let mut spliced = a.clone();
    spliced[frame_len..2 * frame_len].copy_from_slice(&b[frame_len..2 * frame_len]);
    let e = restore_streaming(SliceSource::new(&spliced), &plan).error.unwrap();
    assert!(e.to_string().contains("different checkpoint"), "{e}");
    let e = restore_indexed(SliceSource::new(&spliced), &plan).error.unwrap();
    assert!(e.to_string().contains("different checkpoint"), "{e}");
}

#[test]
fn trailing_bytes_after_the_tail_are_an_error() {
    let plan = vec![(Style::Raw, vec![vec![1; 10]])];
    let mut bytes = write_vec(&plan);
    bytes.push(0);
    let e = restore_streaming(SliceSource::new(&bytes), &plan).error.unwrap();
    assert!(e.to_string().contains("follow the checkpoint tail"), "{e}");
    assert!(restore_indexed(SliceSource::new(&bytes), &plan).error.is_some());
}

#[test]
fn indexed_reader_stops_a_damaged_chunk_length_inside_its_frame() {
    let plan = vec![
        (Style::Raw, vec![content(1, 100, false)]),
        (Style::Raw, vec![content(2, 100, false)]),
    ];
    let mut bad = write_vec(&plan);
    // stored_len (and logical_len, so RAW's equality rule holds) of frame 0's only chunk
    // grow by 64: the chunk would swallow frame 1's header.
    for field in [40, 44] {
        let len = u32::from_le_bytes(bad[field..field + 4].try_into().unwrap());
        bad[field..field + 4].copy_from_slice(&(len + 64).to_le_bytes());
    }
    let e = restore_indexed(SliceSource::new(&bad), &plan).error.unwrap();
    assert!(matches!(e, Error::Corrupt { frame: Some(0), offset: 40, .. }), "{e:?}");
    assert!(e.to_string().contains("past the frame end"), "{e}");
}

#[test]
fn embedded_checkpoint_reads_with_an_explicit_length() {
    use std::io::{Cursor, Seek, SeekFrom};
    let plan = vec![(Style::Lz4, vec![content(1, 5000, true)]), (Style::Raw, vec![vec![7; 9]])];
    let ckpt = write_vec(&plan);
    let file = [b"HEADER".to_vec(), ckpt.clone(), b"MORE DATA".to_vec()].concat();
    let mut cursor = Cursor::new(file.as_slice());
    cursor.seek(SeekFrom::Start(6)).unwrap();
    let src = ckpt_frame_core::SeekSource::with_len(cursor, ckpt.len() as u64).unwrap();
    restore_indexed(src, &plan).assert_equals(&plan, "embedded, indexed");
    let mut cursor = Cursor::new(file.as_slice());
    cursor.seek(SeekFrom::Start(6)).unwrap();
    let src = ckpt_frame_core::SeekSource::with_len(cursor, ckpt.len() as u64).unwrap();
    restore_streaming(src, &plan).assert_equals(&plan, "embedded, streaming");
    // Reads stop at the checkpoint's end, so damage cannot lead a reader into what follows.
    let mut cursor = Cursor::new(file.as_slice());
    cursor.seek(SeekFrom::Start(6)).unwrap();
    let mut src = ckpt_frame_core::SeekSource::with_len(cursor, ckpt.len() as u64).unwrap();
    let mut all = vec![0u8; ckpt.len() + 1];
    assert!(ckpt_frame_core::Source::read_exact(&mut src, &mut all).is_err(), "read past len");
    // Without the length, the trailing data is where the tail should be.
    let mut cursor = Cursor::new(file.as_slice());
    cursor.seek(SeekFrom::Start(6)).unwrap();
    let src = ckpt_frame_core::SeekSource::new(cursor).unwrap();
    assert!(restore_indexed(src, &plan).error.is_some());
}
