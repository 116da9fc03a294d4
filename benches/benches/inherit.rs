//! The in-memory API's incremental checkpoints: writing a state that changed in scattered
//! 4 KiB pieces as a child of the previous checkpoint, next to writing it in full, and
//! restoring the chain next to restoring the full checkpoint, in the same run, for RAW
//! frames of random bytes and LZ4 frames of log lines. Prints each child's size as a share
//! of the full checkpoint's.
#![allow(missing_docs)]

use ckpt_frame_core::{
    CheckpointId, ParentChunks, ParentReader, Reader, SliceSink, SliceSource, Style, Writer,
    checkpoint_size_bound,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LEN: usize = 256 << 20;
const BUFFER: usize = 16 << 20;
const PIECE: usize = 4096;

fn write_into(
    out: &mut [u8],
    (id, style): (u8, Style),
    state: &[u8],
    parent: Option<&ParentChunks>,
) -> usize {
    let mut w = Writer::new(SliceSink::new(out), CheckpointId::from_bytes([id; 16]));
    if let Some(p) = parent {
        w.set_parent(p.clone()).unwrap();
    }
    let mut frame = w.open_frame(style).unwrap();
    for buffer in state.chunks(BUFFER) {
        frame.add(buffer).unwrap();
    }
    frame.close().unwrap();
    usize::try_from(w.finish().unwrap().len).unwrap()
}

fn restore(bytes: &[u8], parent: Option<&[u8]>, back: &mut [u8]) {
    let mut r = Reader::open(SliceSource::new(bytes)).unwrap();
    let mut chain = parent
        .map(|p| ParentReader::new(Reader::open(SliceSource::new(p)).unwrap(), None).unwrap());
    let mut frame = match chain.as_mut() {
        Some(p) => r.open_frame_inheriting(0, p).unwrap(),
        None => r.open_frame(0).unwrap(),
    };
    for buffer in back.chunks_mut(BUFFER) {
        frame.read_into(buffer).unwrap();
    }
    frame.close().unwrap();
}

/// Changes `percent` of the state's 4 KiB pieces, spread evenly with a fixed stride.
fn changed(state: &[u8], percent: usize) -> Vec<u8> {
    let mut out = state.to_vec();
    let pieces = LEN / PIECE;
    let count = pieces * percent / 100;
    for i in 0..count {
        let at = (i * pieces / count) * PIECE;
        for b in &mut out[at..at + PIECE] {
            *b = b.wrapping_add(1);
        }
    }
    out
}

fn inherit(c: &mut Criterion) {
    for (style, kind, base) in [
        (Style::Raw, "random", ckpt_benches::random_bytes(LEN)),
        (Style::Lz4, "logs", ckpt_benches::log_lines(LEN)),
    ] {
        run_style(c, style, kind, &base);
    }
}

fn run_style(c: &mut Criterion, style: Style, kind: &str, base: &[u8]) {
    let bound = usize::try_from(checkpoint_size_bound([(style, [LEN])]).unwrap()).unwrap() + 4096;
    let mut parent = vec![0u8; bound];
    let parent_len = write_into(&mut parent, (1, style), base, None);
    parent.truncate(parent_len);
    let sums = ParentChunks::read(&mut Reader::open(SliceSource::new(&parent)).unwrap()).unwrap();
    let mut out = vec![0u8; bound];
    let mut back = vec![0u8; LEN];
    for percent in [1, 10, 100] {
        let state = changed(base, percent);
        let name = format!("inherit_{style:?}_{kind}_{percent}pct");
        let mut g = c.benchmark_group(&name);
        g.throughput(Throughput::Bytes(LEN as u64));
        g.sample_size(10);
        let me = (2, style);
        g.bench_function("full_write", |b| b.iter(|| write_into(&mut out, me, &state, None)));
        g.bench_function("child_write", |b| {
            b.iter(|| write_into(&mut out, me, &state, Some(&sums)));
        });
        let full_len = write_into(&mut out, me, &state, None);
        let full = out[..full_len].to_vec();
        let child_len = write_into(&mut out, me, &state, Some(&sums));
        let child = out[..child_len].to_vec();
        restore(&child, Some(&parent), &mut back);
        assert!(back == state, "the chain restores the state");
        #[allow(clippy::cast_precision_loss)]
        let share = child_len as f64 / full_len as f64 * 100.0;
        println!("{name}: child {child_len} bytes, full {full_len}: {share:.2}%");
        g.bench_function("full_restore", |b| b.iter(|| restore(&full, None, &mut back)));
        g.bench_function("chain_restore", |b| {
            b.iter(|| restore(&child, Some(&parent), &mut back));
        });
        g.finish();
    }
}

criterion_group!(benches, inherit);
criterion_main!(benches);
