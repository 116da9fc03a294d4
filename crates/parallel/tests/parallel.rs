//! Parallel write is byte for byte the serial writer's output for any thread count and
//! window; parallel restore equals serial restore; failures name their frame.

mod common;
use ckpt_frame_core::{
    CheckpointId, Error, ErrorKind, Reader, SliceSource, Style, VecSink, Writer,
};
use ckpt_parallel::{FramePlan, ParallelError, Parallelism, restore_frames, write_frames};
use common::FailingSink;

const ID: CheckpointId = CheckpointId::from_bytes(*b"parallel-test-id");

fn content(seed: u64, len: usize) -> Vec<u8> {
    common::content(seed, len, b"abcdefgh ")
}

/// 40 frames: both styles, empty frames, empty buffers, tiny and large buffers.
fn data() -> Vec<(Style, Vec<Vec<u8>>)> {
    (0..40u64)
        .map(|f| {
            let style = if f % 3 == 0 { Style::Raw } else { Style::Lz4 };
            let bufs = match f % 5 {
                0 => vec![],
                1 => vec![vec![], content(f, 3)],
                2 => (0..300).map(|i| content(f * 1000 + i, (i % 70) as usize)).collect(),
                3 => vec![content(f, 200_000)],
                _ => vec![content(f, 70_000), content(f + 1, 16_384), vec![]],
            };
            (style, bufs)
        })
        .collect()
}

fn plan(data: &[(Style, Vec<Vec<u8>>)]) -> impl Iterator<Item = FramePlan<'_>> {
    data.iter().map(|(style, bufs)| FramePlan {
        style: *style,
        buffers: bufs.iter().map(Vec::as_slice).collect(),
    })
}

fn serial(data: &[(Style, Vec<Vec<u8>>)]) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), ID);
    for (style, bufs) in data {
        let mut f = w.open_frame(*style).unwrap();
        f.add_all(bufs.iter().map(Vec::as_slice)).unwrap();
        f.close().unwrap();
    }
    w.finish().unwrap();
    w.into_sink().into_inner()
}

#[test]
fn identical_bytes_for_every_thread_count_and_window() {
    let data = data();
    let reference = serial(&data);
    for threads in [1, 2, 3, 8, 64] {
        for window in [1, 3, 16, 100] {
            let mut w = Writer::new(VecSink::new(), ID);
            let n = write_frames(&mut w, plan(&data), Parallelism { threads, window }).unwrap();
            assert_eq!(n, 40);
            w.finish().unwrap();
            assert!(
                w.into_sink().into_inner() == reference,
                "{threads} threads, window {window}: bytes differ from the serial writer"
            );
            // A sink that lends no memory takes the other path: frames appended in order.
            let mut w = Writer::new(FailingSink::failing_at(usize::MAX), ID);
            write_frames(&mut w, plan(&data), Parallelism { threads, window }).unwrap();
            w.finish().unwrap();
            assert!(
                w.into_sink().inner.into_inner() == reference,
                "{threads} threads, window {window}, no lent memory: bytes differ"
            );
        }
    }
}

#[test]
fn appends_after_frames_written_serially() {
    let data = data();
    let reference = serial(&data);
    let mut w = Writer::new(VecSink::new(), ID);
    for (style, bufs) in &data[..7] {
        let mut f = w.open_frame(*style).unwrap();
        f.add_all(bufs.iter().map(Vec::as_slice)).unwrap();
        f.close().unwrap();
    }
    write_frames(&mut w, plan(&data[7..]), Parallelism::threads(3)).unwrap();
    w.finish().unwrap();
    assert!(w.into_sink().into_inner() == reference);
}

fn dests(data: &[(Style, Vec<Vec<u8>>)]) -> Vec<Vec<Vec<u8>>> {
    data.iter().map(|(_, bufs)| bufs.iter().map(|b| vec![0xEE; b.len()]).collect()).collect()
}

fn restore(bytes: &[u8], out: &mut [Vec<Vec<u8>>], threads: usize) -> Result<(), ParallelError> {
    let mut slices: Vec<Vec<&mut [u8]>> =
        out.iter_mut().map(|f| f.iter_mut().map(Vec::as_mut_slice).collect()).collect();
    restore_frames(|| Ok(SliceSource::new(bytes)), &mut slices, Parallelism::threads(threads))
}

#[test]
fn parallel_restore_equals_the_data_for_every_thread_count() {
    let data = data();
    let bytes = serial(&data);
    for threads in [1, 2, 3, 8] {
        let mut out = dests(&data);
        restore(&bytes, &mut out, threads).unwrap();
        for (i, ((_, want), got)) in data.iter().zip(&out).enumerate() {
            assert!(want == got, "{threads} threads: frame {i} differs");
        }
    }
}

#[test]
fn corruption_is_reported_with_its_frame_and_nothing_hangs() {
    let data = data();
    let clean = serial(&data);
    let reader = Reader::open(SliceSource::new(&clean)).unwrap();
    for damaged_frame in [3u64, 17, 39] {
        let info = reader.frame_info(damaged_frame).unwrap();
        let mut bad = clean.clone();
        bad[usize::try_from(info.offset + info.len / 2).unwrap()] ^= 0x20;
        for threads in [1, 4] {
            let mut out = dests(&data);
            match restore(&bad, &mut out, threads) {
                Err(ParallelError::Frame { frame, error }) => {
                    assert_eq!(frame, damaged_frame, "{error}");
                    assert!(
                        matches!(error.kind(), ErrorKind::ChecksumMismatch | ErrorKind::Corrupt),
                        "{error}"
                    );
                }
                other => panic!("damage in frame {damaged_frame} not reported: {other:?}"),
            }
        }
    }
    // A damaged index is reported before any work starts.
    let mut bad = clean.clone();
    let n = bad.len();
    bad[n - 70] ^= 1;
    assert!(matches!(restore(&bad, &mut dests(&data), 2), Err(ParallelError::Open(_))));
}

/// A plan with fewer or more frames than the checkpoint is refused before anything is
/// restored: a short plan used to restore a prefix and report success.
#[test]
fn a_plan_with_another_frame_count_is_refused_before_restoring() {
    let data = data();
    let bytes = serial(&data);
    let n = data.len() as u64;
    for planned in [0, 1, data.len() - 1, data.len() + 1] {
        let mut out: Vec<Vec<Vec<u8>>> = dests(&data);
        out.resize(planned, Vec::new());
        match restore(&bytes, &mut out, 2) {
            Err(ParallelError::FrameCount { planned: p, found }) => {
                assert_eq!((p, found), (planned as u64, n));
            }
            other => panic!("a plan of {planned} frames for {n}: {other:?}"),
        }
        assert!(
            out.iter().flatten().all(|b| b.iter().all(|&x| x == 0xEE)),
            "a plan of {planned} frames: something was restored"
        );
    }
}

#[test]
fn a_wrong_destination_length_is_a_plan_mismatch_of_that_frame() {
    let data = data();
    let bytes = serial(&data);
    let mut out = dests(&data);
    out[4][0].push(0);
    match restore(&bytes, &mut out, 3) {
        Err(ParallelError::Frame { frame: 4, error: Error::PlanMismatch { .. } }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_sink_stops_the_write_at_that_frame() {
    let data = data();
    for fail_at in [1, 2, 10, 39] {
        let sink = FailingSink::failing_at(fail_at);
        let mut w = Writer::new(sink, ID);
        match write_frames(&mut w, plan(&data), Parallelism::threads(4)) {
            Err(ParallelError::Frame { frame, error: Error::Io { .. } }) => {
                assert_eq!(frame, fail_at as u64 - 1, "each append is one write");
            }
            other => panic!("fail_at {fail_at}: {other:?}"),
        }
        assert!(w.finish().is_err(), "the writer is failed after the error");
    }
}
