//! Restoring and streaming writes many times do not start threads every time (alone in its test binary, so
//! that no other test's threads are counted).
#![allow(clippy::unwrap_used)]

use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink, Writer};
use ckpt_parallel::{LoadedFrame, Parallelism, restore_frames, write_loaded};
use std::collections::HashSet;
use std::sync::Mutex;
use std::thread::ThreadId;

/// Threads of this process, from /proc.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

fn checkpoint() -> (Vec<u8>, Vec<Vec<u8>>) {
    let frames: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 10_000]).collect();
    let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([4; 16]));
    for f in &frames {
        let mut fw = w.open_frame(Style::Lz4).unwrap();
        fw.add(f).unwrap();
        fw.close().unwrap();
    }
    w.finish().unwrap();
    (w.into_sink().into_inner(), frames)
}

/// Restores on `threads` workers; returns the threads that opened a source (each worker
/// opens its own: the threads that did the work, and the caller's for the index check).
fn restore(bytes: &[u8], frames: &[Vec<u8>], threads: usize) -> HashSet<ThreadId> {
    let seen = Mutex::new(HashSet::new());
    let mut out: Vec<Vec<u8>> = frames.iter().map(|f| vec![0; f.len()]).collect();
    let mut dests: Vec<Vec<&mut [u8]>> = out.iter_mut().map(|b| vec![b.as_mut_slice()]).collect();
    let open = || {
        seen.lock().unwrap().insert(std::thread::current().id());
        Ok(SliceSource::new(bytes))
    };
    restore_frames(open, &mut dests, Parallelism::threads(threads)).unwrap();
    assert_eq!(out, frames);
    seen.into_inner().unwrap()
}

/// A pool per thread count is kept, so fifty restores on three threads use the same three
/// workers (fresh pools would use 150 threads); a caller already in a pool of the size asked
/// for runs in it.
#[test]
fn repeated_restores_reuse_their_workers() {
    let (bytes, frames) = checkpoint();
    let mut workers = HashSet::new();
    for _ in 0..50 {
        workers.extend(restore(&bytes, &frames, 3));
    }
    workers.remove(&std::thread::current().id());
    assert!(workers.len() <= 3, "{} worker threads over 50 restores", workers.len());
    let before = thread_count();
    let own = rayon::ThreadPoolBuilder::new().num_threads(5).build().unwrap();
    let mut in_own = HashSet::new();
    own.install(|| {
        for _ in 0..20 {
            in_own.extend(restore(&bytes, &frames, 5));
        }
    });
    assert!(in_own.len() <= 5, "{} threads for restores inside a pool of 5", in_own.len());
    assert_eq!(thread_count(), before + 5, "a restore inside a pool of its size started threads");

    // Streaming writes use the kept pools too (their tasks never block each other).
    let before = thread_count();
    for _ in 0..30 {
        let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([4; 16]));
        let load = |i: u64, f: &mut LoadedFrame| -> Result<(), String> {
            f.reset(Style::Lz4, [10_000]).fill(u8::try_from(i).unwrap());
            Ok(())
        };
        write_loaded(&mut w, 16, Parallelism::threads(3), load, |_| {}).unwrap();
        w.finish().unwrap();
        assert!(w.into_sink().into_inner() == bytes, "streamed write differs");
    }
    assert_eq!(thread_count(), before, "thirty streaming writes on 3 threads started threads");
}
