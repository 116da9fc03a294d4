//! Single-thread write and restore throughput of one frame in memory, per style and data
//! kind, next to the peer measured in the same run: liblz4 itself on independent 64 KiB
//! blocks (no framing, no checksums) and a plain copy for RAW. The comparison against the
//! lz4/zstd/cp command-line tools comes with the parallel issue.
#![allow(missing_docs)]

use ckpt_frame_core::{
    CheckpointId, Reader, SliceSink, SliceSource, Style, Writer, checkpoint_size_bound,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LEN: usize = 16 << 20;

fn write_into(out: &mut [u8], style: Style, data: &[u8]) -> usize {
    let mut w = Writer::new(SliceSink::new(out), CheckpointId::from_bytes([0; 16]));
    let mut frame = w.open_frame(style).unwrap();
    frame.add(data).unwrap();
    frame.close().unwrap();
    usize::try_from(w.finish().unwrap().len).unwrap()
}

fn frame_core(c: &mut Criterion) {
    for (kind, data) in
        [("logs", ckpt_benches::log_lines(LEN)), ("random", ckpt_benches::random_bytes(LEN))]
    {
        for style in [Style::Raw, Style::Lz4] {
            let bound = usize::try_from(checkpoint_size_bound([(style, [LEN])]).unwrap()).unwrap();
            let mut out = vec![0u8; bound];
            let mut g = c.benchmark_group(format!("{style:?}_{kind}"));
            g.throughput(Throughput::Bytes(LEN as u64));
            g.sample_size(10);
            g.bench_function("write", |bench| bench.iter(|| write_into(&mut out, style, &data)));
            let written = write_into(&mut out, style, &data);
            let mut back = vec![0u8; LEN];
            g.bench_function("restore", |bench| {
                bench.iter(|| {
                    let mut reader = Reader::new(SliceSource::new(&out[..written]));
                    let mut frame = reader.next_frame().unwrap().unwrap();
                    frame.read_into(&mut back).unwrap();
                    frame.close().unwrap();
                    reader.finish().unwrap();
                });
            });
            if style == Style::Lz4 {
                peer_lz4_blocks(&mut g, &data);
            } else {
                let mut copy = vec![0u8; LEN];
                g.bench_function("peer_memcpy", |bench| bench.iter(|| copy.copy_from_slice(&data)));
            }
            g.finish();
        }
    }
}

/// liblz4 compressing and decompressing the same bytes as independent 64 KiB blocks.
fn peer_lz4_blocks(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    data: &[u8],
) {
    const BLOCK: usize = 64 * 1024;
    let bound = ckpt_frame_core::lz4_bound(BLOCK);
    let mut packed = vec![0u8; data.len() / BLOCK * bound + bound];
    let mut sizes = Vec::new();
    let compress = |packed: &mut [u8], sizes: &mut Vec<usize>| {
        sizes.clear();
        let mut at = 0;
        for block in data.chunks(BLOCK) {
            let n = lz4::block::compress_to_buffer(block, None, false, &mut packed[at..at + bound])
                .unwrap();
            sizes.push(n);
            at += n;
        }
    };
    g.bench_function("peer_liblz4_blocks_write", |bench| {
        bench.iter(|| compress(&mut packed, &mut sizes));
    });
    compress(&mut packed, &mut sizes);
    let mut back = vec![0u8; data.len()];
    g.bench_function("peer_liblz4_blocks_restore", |bench| {
        bench.iter(|| {
            let mut at = 0;
            for (out, &n) in back.chunks_mut(BLOCK).zip(&sizes) {
                let len = i32::try_from(out.len()).unwrap();
                lz4::block::decompress_to_buffer(&packed[at..at + n], Some(len), out).unwrap();
                at += n;
            }
        });
    });
}

criterion_group!(benches, frame_core);
criterion_main!(benches);
