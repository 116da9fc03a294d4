//! Why the format checksums chunks with XXH3-64 rather than CRC32C: throughput on 64 KiB
//! chunks (the format's chunk size) and on 58-byte pieces. Figures are in docs/format.md.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn checksums(c: &mut Criterion) {
    let data = ckpt_benches::random_bytes(64 * 1024);
    for len in [64 * 1024, 58] {
        let mut g = c.benchmark_group(format!("checksum_{len}B"));
        g.throughput(Throughput::Bytes(len as u64));
        let input = &data[..len];
        g.bench_function("xxh3_64", |b| b.iter(|| xxhash_rust::xxh3::xxh3_64(black_box(input))));
        g.bench_function("crc32c", |b| b.iter(|| crc32c::crc32c(black_box(input))));
        g.finish();
    }
}

criterion_group!(benches, checksums);
criterion_main!(benches);
