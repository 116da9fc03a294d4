//! Single-thread write and restore throughput of one frame in memory, per style and data
//! kind. The comparison against lz4/zstd/cp comes with the parallel issue.
#![allow(missing_docs)]

use ckpt_frame_core::{
    CheckpointId, Reader, SliceSink, SliceSource, Style, Writer, checkpoint_size_bound,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LEN: usize = 16 << 20;

fn write_into(out: &mut [u8], style: Style, data: &[u8]) -> usize {
    let mut w = Writer::new(SliceSink::new(out), CheckpointId::from_bytes([0; 16]));
    let mut f = w.open_frame(style).unwrap();
    f.add(data).unwrap();
    f.close().unwrap();
    w.finish().unwrap().len as usize
}

fn frame_core(c: &mut Criterion) {
    for (kind, data) in
        [("logs", ckpt_benches::log_lines(LEN)), ("random", ckpt_benches::random_bytes(LEN))]
    {
        for style in [Style::Raw, Style::Lz4] {
            let bound = checkpoint_size_bound([(style, [LEN])]).unwrap() as usize;
            let mut out = vec![0u8; bound];
            let mut g = c.benchmark_group(format!("{style:?}_{kind}"));
            g.throughput(Throughput::Bytes(LEN as u64));
            g.sample_size(10);
            g.bench_function("write", |b| b.iter(|| write_into(&mut out, style, &data)));
            let n = write_into(&mut out, style, &data);
            let mut back = vec![0u8; LEN];
            g.bench_function("restore", |b| {
                b.iter(|| {
                    let mut r = Reader::new(SliceSource::new(&out[..n]));
                    let mut f = r.next_frame().unwrap().unwrap();
                    f.read_into(&mut back).unwrap();
                    f.close().unwrap();
                    r.finish().unwrap();
                });
            });
            g.finish();
        }
    }
}

criterion_group!(benches, frame_core);
criterion_main!(benches);
