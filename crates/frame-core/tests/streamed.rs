//! `FrameWriter::add_streamed`: RAW buffers filled piece by piece by the caller store the
//! same bytes as whole buffers; misuse (LZ4) and a failing fill are clear errors.

mod common;
use ckpt_frame_core::{Error, ErrorKind, IoError, IoErrorKind, Misuse, Style, VecSink, Writer};
use common::*;

/// Writes one RAW frame per entry of `frames`; buffers whose index is odd are streamed,
/// the others added whole. Returns the bytes and every piece length `fill` was given.
fn write_mixed(frames: &[Vec<Vec<u8>>]) -> (Vec<u8>, Vec<usize>) {
    let mut w = Writer::new(VecSink::new(), ID);
    let mut pieces = Vec::new();
    for bufs in frames {
        let mut f = w.open_frame(Style::Raw).unwrap();
        for (i, b) in bufs.iter().enumerate() {
            if i % 2 == 1 {
                let mut rest = &b[..];
                f.add_streamed(b.len(), |piece| {
                    pieces.push(piece.len());
                    let (now, later) = rest.split_at(piece.len());
                    piece.copy_from_slice(now);
                    rest = later;
                    Ok(())
                })
                .unwrap();
                assert!(rest.is_empty(), "fill was asked for exactly the buffer's bytes");
            } else {
                f.add(b).unwrap();
            }
        }
        f.close().unwrap();
    }
    w.finish().unwrap();
    (w.into_sink().into_inner(), pieces)
}

#[test]
fn streamed_buffers_store_the_same_bytes_as_whole_ones() {
    let sizes = [0usize, 1, 16 * 1024 - 1, 16 * 1024, 65_535, 65_536, 65_537, 200_000, 1 << 20];
    let mut frames = Vec::new();
    for (i, &a) in sizes.iter().enumerate() {
        for &b in &sizes {
            // A streamed buffer between two small whole ones, and two streamed in a row.
            frames.push(vec![
                content(i as u64, 3, false),
                content(7, a, false),
                content(8, 5, true),
                content(9, b, true),
            ]);
        }
    }
    let plan: Plan = frames.iter().map(|f| (Style::Raw, f.clone())).collect();
    let whole = write_vec(&plan);
    let (streamed, pieces) = write_mixed(&frames);
    assert!(streamed == whole, "streamed and whole buffers differ");
    assert!(pieces.iter().all(|&n| n <= 64 * 1024), "pieces are at most one chunk");
    assert!(pieces.contains(&(64 * 1024)), "large buffers come in whole chunks");
    for (how, r) in restore_every_way(&streamed, &plan) {
        r.assert_equals(&plan, &format!("streamed, restored {how}"));
    }
}

#[test]
fn streaming_into_an_lz4_frame_is_refused_and_harmless() {
    let data = content(1, 100_000, true);
    let mut w = Writer::new(VecSink::new(), ID);
    let mut f = w.open_frame(Style::Lz4).unwrap();
    let mut called = false;
    let err = f
        .add_streamed(10, |_| {
            called = true;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUse(Misuse::StreamedLz4)), "{err:?}");
    assert!(err.to_string().contains("need a RAW frame"), "{err}");
    assert!(!called, "nothing was asked of the caller");
    f.add(&data).unwrap();
    f.close().unwrap();
    w.finish().unwrap();
    let bytes = w.into_sink().into_inner();
    let plan: Plan = vec![(Style::Lz4, vec![data])];
    assert!(bytes == write_vec(&plan), "the refused call left no trace");
}

#[test]
fn a_failing_fill_names_frame_and_buffer_and_fails_the_writer() {
    let small = content(2, 10, false);
    for (len, fail_at) in [(5usize, 0usize), (300_000, 0), (300_000, 3), (70_000, 1)] {
        let mut w = Writer::new(VecSink::new(), ID);
        let mut f0 = w.open_frame(Style::Raw).unwrap();
        f0.add(&small).unwrap();
        f0.close().unwrap();
        let mut f = w.open_frame(Style::Raw).unwrap();
        f.add(&small).unwrap();
        let mut calls = 0;
        let err = f
            .add_streamed(len, |piece| {
                if calls == fail_at {
                    return Err(IoError::new(IoErrorKind::Other, "disk went away"));
                }
                calls += 1;
                piece.fill(1);
                Ok(())
            })
            .unwrap_err();
        match &err {
            Error::Input { frame: 1, buffer: 1, error } => {
                assert_eq!(error.kind(), IoErrorKind::Other);
            }
            other => panic!("len {len}: expected Input for frame 1 buffer 1, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("frame 1, buffer 1") && msg.contains("disk went away"), "{msg}");
        assert_eq!(err.kind(), ErrorKind::Input);
        assert!(matches!(f.close(), Err(Error::Failed { first: ErrorKind::Input })));
        assert!(matches!(w.finish(), Err(Error::InvalidUse(_) | Error::Failed { .. })));
    }
}
