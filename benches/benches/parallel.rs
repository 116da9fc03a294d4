//! In-memory LZ4 write and restore of 64 MiB (16 frames of 4 MiB) through the parallel
//! engine on 1 and on all cores: the engine's scaling, apart from file I/O.
#![allow(missing_docs)]

use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink, Writer};
use ckpt_parallel::{FramePlan, Parallelism, restore_frames, write_frames};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const FRAME: usize = 4 << 20;
const FRAMES: usize = 16;

fn write(data: &[u8], threads: usize) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([0; 16]));
    let plan = data.chunks(FRAME).map(|c| FramePlan { style: Style::Lz4, buffers: vec![c] });
    write_frames(&mut w, plan, Parallelism::threads(threads)).unwrap();
    w.finish().unwrap();
    w.into_sink().into_inner()
}

fn parallel(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let data = ckpt_benches::log_lines(FRAME * FRAMES);
    let mut g = c.benchmark_group("parallel_lz4_logs_64MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    let bytes = write(&data, 1);
    for threads in [1, cores] {
        g.bench_function(format!("write_{threads}_threads"), |b| b.iter(|| write(&data, threads)));
        let mut out = vec![0u8; data.len()];
        g.bench_function(format!("restore_{threads}_threads"), |b| {
            b.iter(|| {
                let mut dests: Vec<Vec<&mut [u8]>> =
                    out.chunks_mut(FRAME).map(|c| vec![c]).collect();
                restore_frames(
                    || Ok(SliceSource::new(&bytes)),
                    &mut dests,
                    Parallelism::threads(threads),
                )
                .unwrap();
            });
        });
    }
    g.finish();
}

criterion_group!(benches, parallel);
criterion_main!(benches);
