//! The streaming pipeline (`write_loaded`) and the visitor restore (`restore_with`): the
//! same bytes as the serial writer for any thread count and window, at most `window`
//! frames in flight, and every failure (loader, encoder, sink, visitor, corrupt frame,
//! panicking loader) reported with its frame, without deadlock.

mod common;
use ckpt_frame_core::{
    CheckpointId, Error, IoError, IoErrorKind, PlanMismatch, SliceSource, Source, Style, VecSink,
    Writer,
};
use ckpt_parallel::{LoadedFrame, ParallelError, Parallelism, restore_with, write_loaded};
use common::FailingSink;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const ID: CheckpointId = CheckpointId::from_bytes(*b"pipeline-test-id");

fn content(seed: u64, len: usize) -> Vec<u8> {
    common::content(seed, len, b"pipeline ")
}

type Frames = Vec<(Style, Vec<Vec<u8>>)>;

/// 30 frames of both styles: empty frames, empty, tiny and large buffers.
fn frames() -> Frames {
    (0..30u64)
        .map(|f| {
            let style = if f % 3 == 0 { Style::Raw } else { Style::Lz4 };
            let bufs = match f % 4 {
                0 => vec![],
                1 => (0..200).map(|i| content(f * 1000 + i, (i % 50) as usize)).collect(),
                2 => vec![content(f, 150_000), vec![], content(f + 7, 3)],
                _ => vec![content(f, 70_000)],
            };
            (style, bufs)
        })
        .collect()
}

fn serial(head: &Frames, frames: &Frames) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), ID);
    for (style, bufs) in head.iter().chain(frames) {
        let mut f = w.open_frame(*style).unwrap();
        f.add_all(bufs.iter().map(Vec::as_slice)).unwrap();
        f.close().unwrap();
    }
    w.finish().unwrap();
    w.into_sink().into_inner()
}

fn load_from(frames: &Frames) -> impl Fn(u64, &mut LoadedFrame) -> Result<(), String> + Sync {
    |i, f| {
        let (style, bufs) = &frames[usize::try_from(i).unwrap()];
        let dst = f.reset(*style, bufs.iter().map(Vec::len));
        let mut at = 0;
        for b in bufs {
            dst[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        Ok(())
    }
}

#[test]
fn identical_to_serial_for_every_thread_count_and_window() {
    let frames = frames();
    let head: Frames = vec![(Style::Lz4, vec![content(99, 5000)])];
    let want = serial(&head, &frames);
    for threads in [1, 2, 3, 8, 64] {
        for window in [1, 2, 5, 100] {
            let mut w = Writer::new(VecSink::new(), ID);
            let mut f = w.open_frame(Style::Lz4).unwrap();
            f.add(&head[0].1[0]).unwrap();
            f.close().unwrap();
            let mut seen = Vec::new();
            let n = write_loaded(
                &mut w,
                frames.len() as u64,
                Parallelism { threads, window },
                load_from(&frames),
                |e| seen.push(e.index),
            )
            .unwrap();
            assert_eq!(n, frames.len() as u64);
            assert_eq!(seen, (1..=frames.len() as u64).collect::<Vec<_>>(), "progress in order");
            w.finish().unwrap();
            let got = w.into_sink().into_inner();
            assert!(got == want, "threads {threads} window {window}: bytes differ from serial");
        }
    }
}

#[test]
fn no_more_than_window_frames_are_in_flight() {
    let frames = frames();
    for (threads, window) in [(2, 1), (2, 3), (8, 2), (4, 4)] {
        let in_flight = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let load = load_from(&frames);
        let counting = |i, f: &mut LoadedFrame| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            load(i, f)
        };
        let mut w = Writer::new(VecSink::new(), ID);
        write_loaded(
            &mut w,
            frames.len() as u64,
            Parallelism { threads, window },
            counting,
            |_| {
                in_flight.fetch_sub(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let most = most.load(Ordering::SeqCst);
        assert!(most <= window, "threads {threads}: {most} frames in flight, window {window}");
    }
}

#[test]
fn a_failing_loader_stops_at_its_frame_and_earlier_frames_are_written() {
    let frames = frames();
    for threads in [1, 2, 8] {
        for bad in [0u64, 1, 7, 29] {
            let load = load_from(&frames);
            // Two failures: the one earlier in frame order is the one reported.
            let failing = |i, f: &mut LoadedFrame| {
                if i == bad || i == bad + 3 {
                    return Err(format!("cannot read the input of frame {i}"));
                }
                load(i, f)
            };
            let mut w = Writer::new(VecSink::new(), ID);
            let par = Parallelism { threads, window: 4 };
            match write_loaded(&mut w, frames.len() as u64, par, failing, |_| {}) {
                Err(ParallelError::Callback { frame, error }) => {
                    assert_eq!(frame, bad, "threads {threads}");
                    assert_eq!(error, format!("cannot read the input of frame {bad}"));
                }
                other => panic!("threads {threads} bad {bad}: {other:?}"),
            }
            assert_eq!(w.frames_written(), bad, "every frame before the failure is written");
            let partial = w.position();
            let want = serial(&Vec::new(), &frames[..usize::try_from(bad).unwrap()].to_vec());
            assert_eq!(&want[..usize::try_from(partial).unwrap()], w.sink().as_slice());
        }
    }
}

#[test]
fn a_failing_sink_is_reported_with_its_frame() {
    let frames = frames();
    for fail_at in [1usize, 2, 17, 30] {
        let sink = FailingSink::failing_at(fail_at);
        let mut w = Writer::new(sink, ID);
        let par = Parallelism { threads: 3, window: 3 };
        match write_loaded(&mut w, frames.len() as u64, par, load_from(&frames), |_| {}) {
            Err(ParallelError::Frame { frame, error: Error::Io { .. } }) => {
                assert_eq!(frame, fail_at as u64 - 1, "each append is one write");
            }
            other => panic!("fail_at {fail_at}: {other:?}"),
        }
        assert!(w.finish().is_err(), "the writer is failed after the error");
    }
}

#[test]
fn a_panicking_loader_panics_the_caller_instead_of_hanging() {
    let frames = frames();
    let load = load_from(&frames);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut w = Writer::new(VecSink::new(), ID);
        let panicking = |i, f: &mut LoadedFrame| {
            assert!(i != 5, "loader bug at frame 5");
            load(i, f)
        };
        write_loaded(&mut w, frames.len() as u64, Parallelism::threads(3), panicking, |_| {})
    }));
    assert!(result.is_err(), "the panic reaches the caller");
}

fn written(frames: &Frames) -> Vec<u8> {
    serial(&Vec::new(), frames)
}

/// Restores with `restore_with`, each visitor reading its frame's buffers.
fn restore(bytes: &[u8], threads: usize) -> Result<Vec<Vec<Vec<u8>>>, ParallelError<String>> {
    let out = Mutex::new(vec![Vec::new(); frames().len()]);
    restore_with(
        || Ok(SliceSource::new(bytes)),
        Parallelism::threads(threads),
        |frame| {
            let mut bufs = Vec::new();
            while let Some(b) = frame.read_to_vec().map_err(|e| e.to_string())? {
                bufs.push(b);
            }
            out.lock().unwrap()[usize::try_from(frame.index()).unwrap()] = bufs;
            Ok(())
        },
    )?;
    Ok(out.into_inner().unwrap())
}

#[test]
fn restore_with_equals_the_data_for_every_thread_count() {
    let frames = frames();
    let bytes = written(&frames);
    for threads in [1, 2, 3, 8] {
        let got = restore(&bytes, threads).unwrap();
        let want: Vec<_> = frames.iter().map(|(_, b)| b.clone()).collect();
        assert!(got == want, "threads {threads}");
    }
}

#[test]
fn restore_with_reports_corruption_visitor_errors_and_unread_buffers_by_frame() {
    let frames = frames();
    let bytes = written(&frames);
    // Damage one byte inside frame 6 (an LZ4 frame of 150,000-byte buffers).
    let info = ckpt_frame_core::Reader::open(SliceSource::new(&bytes)).unwrap().frame_info(6);
    let at = usize::try_from(info.unwrap().offset).unwrap() + 500;
    let mut damaged = bytes.clone();
    damaged[at] ^= 0x10;
    for threads in [1, 2, 8] {
        match restore(&damaged, threads) {
            Err(ParallelError::Callback { frame: 6, error }) => {
                assert!(error.contains("frame 6"), "{error}");
            }
            other => panic!("threads {threads}: {other:?}"),
        }
        let failing = restore_with(
            || Ok(SliceSource::new(&bytes)),
            Parallelism::threads(threads),
            |frame| if frame.index() >= 11 { Err("disk full") } else { Ok(()) },
        );
        // Frame 0 holds no buffers, so reading none of them is right; frame 1 holds 200.
        match failing {
            Err(ParallelError::Frame { frame: 1, error: Error::PlanMismatch { mismatch, .. } }) => {
                assert!(matches!(mismatch, PlanMismatch::BuffersLeft { restored: 0 }));
            }
            other => panic!("threads {threads}: {other:?}"),
        }
        let only_visitor = restore_with(
            || Ok(SliceSource::new(&bytes)),
            Parallelism::threads(threads),
            |frame| {
                while frame.read_to_vec().map_err(|_| "read")?.is_some() {}
                if frame.index() >= 11 { Err("disk full") } else { Ok(()) }
            },
        );
        assert!(
            matches!(only_visitor, Err(ParallelError::Callback { frame: 11, error: "disk full" })),
            "threads {threads}: {only_visitor:?}"
        );
    }
    let truncated = &bytes[..bytes.len() - 10];
    assert!(matches!(
        restore_with(
            || Ok(SliceSource::new(truncated)),
            Parallelism::threads(2),
            |_| Ok::<(), String>(())
        ),
        Err(ParallelError::Open(_))
    ));
}

/// A seekable source whose reads of the 1000 bytes from `bad_from` fail (a bad sector).
struct FailingSource<'b> {
    inner: SliceSource<'b>,
    pos: u64,
    bad_from: u64,
}

impl Source for FailingSource<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        let end = self.pos + buf.len() as u64;
        if end > self.bad_from && self.pos < self.bad_from + 1000 {
            return Err(IoError::new(IoErrorKind::Other, "injected read failure"));
        }
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        self.inner.total_len()
    }
    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        self.pos = offset;
        self.inner.seek(offset)
    }
}

#[test]
fn a_failing_source_is_reported_with_its_frame() {
    let frames = frames();
    let bytes = written(&frames);
    let index = ckpt_frame_core::Reader::open(SliceSource::new(&bytes)).unwrap();
    let victim = index.frame_info(14).unwrap();
    let bad_from = victim.offset + 100;
    for threads in [1, 2, 8] {
        let open = || Ok(FailingSource { inner: SliceSource::new(&bytes), pos: 0, bad_from });
        let result = restore_with(open, Parallelism::threads(threads), |frame| {
            while frame.read_to_vec()?.is_some() {}
            Ok::<(), Error>(())
        });
        match result {
            Err(
                ParallelError::Callback { frame: 14, error: Error::Io { error, .. } }
                | ParallelError::Frame { frame: 14, error: Error::Io { error, .. } },
            ) => {
                assert!(error.to_string().contains("injected read failure"), "{error}");
            }
            other => panic!("threads {threads}: {other:?}"),
        }
    }
}

#[test]
fn large_regions_are_split_into_frames_and_restore_with_the_same_cut() {
    let regions: Vec<Vec<u8>> = [0usize, 1, 70_000, 5, 0, 300_000, 4096, 4095]
        .iter()
        .enumerate()
        .map(|(i, &len)| content(i as u64, len))
        .collect();
    let total: usize = regions.iter().map(Vec::len).sum();
    for frame_size in [1000usize, 4096, 65_536, 100_000, 1 << 20] {
        let plan = ckpt_parallel::split_into_frames(
            Style::Lz4,
            regions.iter().map(Vec::as_slice),
            frame_size,
        );
        assert_eq!(plan.len(), total.div_ceil(frame_size), "frame size {frame_size}");
        for f in &plan {
            assert!(f.buffers.iter().map(|b| b.len()).sum::<usize>() <= frame_size);
        }
        let mut w = Writer::new(VecSink::new(), ID);
        ckpt_parallel::write_frames(&mut w, plan, Parallelism::threads(3)).unwrap();
        w.finish().unwrap();
        let bytes = w.into_sink().into_inner();
        let mut back: Vec<Vec<u8>> = regions.iter().map(|r| vec![0xAA; r.len()]).collect();
        let mut dests =
            ckpt_parallel::split_dests(back.iter_mut().map(Vec::as_mut_slice), frame_size);
        ckpt_parallel::restore_frames(
            || Ok(SliceSource::new(&bytes)),
            &mut dests,
            Parallelism::threads(2),
        )
        .unwrap();
        assert!(back == regions, "frame size {frame_size}");
    }
}

/// `write_loaded`'s tasks never wait for each other, so several writes can share one pool
/// at once (four writers, windows of 1 and 2, on a pool of 2 kept for them), and a write
/// started from inside a rayon pool of the same size does not starve that pool.
#[test]
fn concurrent_and_nested_writes_share_pools_without_deadlock() {
    let frames = frames();
    let want = serial(&Vec::new(), &frames);
    let load = load_from(&frames);
    let write = |window: usize| {
        let mut w = Writer::new(VecSink::new(), ID);
        let par = Parallelism { threads: 2, window };
        write_loaded(&mut w, frames.len() as u64, par, &load, |_| {}).unwrap();
        w.finish().unwrap();
        w.into_sink().into_inner()
    };
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..4).map(|k| s.spawn(move || write(1 + k % 2))).collect();
        for h in writers {
            assert!(h.join().unwrap() == want, "a concurrent write differs from the serial one");
        }
    });
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let nested = pool.install(|| write(1));
    assert!(nested == want, "a write from inside a pool of its size differs");
    let mut in_tasks = Vec::new();
    pool.scope(|s| {
        s.spawn(|_| in_tasks.push(write(2)));
    });
    assert!(in_tasks.iter().all(|b| *b == want));
}
