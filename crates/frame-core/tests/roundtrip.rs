//! Round trips over the matrix of the original checkpointer's own test: styles x buffer
//! sizes x buffer counts x many frames, through every sink kind and I/O buffer size, and
//! back through every source kind.

mod common;
use ckpt_frame_core::{Style, checkpoint_size_bound, frame_size_bound};
use common::*;

const SIZES: [usize; 12] =
    [0, 1, 2, 3, 4095, 4096, 4097, 65535, 65536, 65537, 1 << 20, (8 << 20) + 1];

/// One frame per (style, size, count), all in one checkpoint, so frames follow each other
/// at every kind of offset.
fn matrix_plan(styles: &[Style], counts: &[usize]) -> Plan {
    let mut plan = Plan::new();
    let mut seed = 0;
    for &style in styles {
        for &size in &SIZES {
            for &count in counts {
                let bufs = (0..count)
                    .map(|k| {
                        seed += 1;
                        content(seed, size, k % 2 == 0)
                    })
                    .collect();
                plan.push((style, bufs));
            }
        }
    }
    plan
}

fn check_plan(plan: &Plan) {
    let outs = write_every_way(plan);
    let reference = &outs[0].1;
    for (name, bytes) in &outs[1..] {
        assert!(bytes == reference, "{name} wrote different bytes than VecSink");
    }
    let bound = checkpoint_size_bound(plan.iter().map(|(s, b)| (*s, b.iter().map(Vec::len))));
    let bound = bound.unwrap();
    if plan.iter().all(|(s, _)| *s == Style::Raw) {
        assert_eq!(reference.len() as u64, bound, "RAW size must be exact");
    } else {
        assert!(reference.len() as u64 <= bound, "LZ4 size above its worst case");
    }
    for (name, restored) in restore_every_way(reference, plan) {
        restored.assert_equals(plan, name);
    }
}

#[test]
fn matrix_raw_single_and_triple_buffers() {
    check_plan(&matrix_plan(&[Style::Raw], &[1, 3]));
}

#[test]
fn matrix_lz4_single_and_triple_buffers() {
    check_plan(&matrix_plan(&[Style::Lz4], &[1, 3]));
}

#[test]
fn matrix_mixed_styles_in_one_checkpoint() {
    check_plan(&matrix_plan(&[Style::Lz4, Style::Raw], &[2]));
}

#[test]
fn every_size_interleaved_in_one_frame() {
    for style in [Style::Raw, Style::Lz4] {
        let bufs = SIZES.iter().chain(SIZES.iter().rev()).enumerate();
        let bufs = bufs.map(|(i, &s)| content(i as u64, s, i % 3 != 0)).collect();
        check_plan(&vec![(style, bufs)]);
    }
}

#[test]
fn empty_checkpoint_and_empty_frames() {
    check_plan(&Plan::new());
    check_plan(&vec![(Style::Raw, vec![]), (Style::Lz4, vec![]), (Style::Lz4, vec![vec![]])]);
    assert_eq!(write_vec(&Plan::new()).len(), 72, "index header + tail");
}

#[test]
fn many_tiny_buffers_compress_like_one_big_buffer() {
    // The C original gave each tiny buffer a block of its own: 20,000 buffers of 50 bytes
    // took 4x the space of the same bytes as one buffer.
    let big = content(7, 20_000 * 50, true);
    let tiny: Vec<Vec<u8>> = big.chunks(50).map(<[u8]>::to_vec).collect();
    let one = write_vec(&vec![(Style::Lz4, vec![big.clone()])]).len();
    let many = write_vec(&vec![(Style::Lz4, tiny.clone())]).len();
    // Lengths live in per-chunk run-length tables, outside the compressed data: the data
    // stream is byte for byte the one big buffer's, plus a few bytes of tables.
    assert!(many <= one + one / 100, "many tiny {many} vs one {one}");
    check_plan(&vec![(Style::Lz4, tiny)]);
}

#[test]
fn lz4_references_cross_chunks() {
    // 32 KiB of noise four times over two 64 KiB chunks: the second chunk is compressible
    // only through references into the first (LZ4's window is 65535 bytes), so a decoder
    // must keep the frame's history across chunks.
    let noise = content(99, 32 * 1024, false);
    let twice = noise.repeat(4);
    let plan = vec![(Style::Lz4, vec![twice.clone()])];
    let bytes = write_vec(&plan);
    // One copy of the noise plus small change; without history it would be two copies.
    assert!(bytes.len() < twice.len() * 4 / 10, "history was not used: {}", bytes.len());
    check_plan(&plan);
}

#[test]
fn raw_sizes_are_exact_and_lz4_within_bound_per_frame() {
    for size in SIZES {
        let data = content(size as u64, size, false);
        for style in [Style::Raw, Style::Lz4] {
            let bytes = write_vec(&vec![(style, vec![data.clone()])]);
            let frame = bytes.len() as u64 - 8 - 40 - 64;
            let bound = frame_size_bound(style, [size]).unwrap();
            if style == Style::Raw {
                assert_eq!(frame, bound, "RAW frame of one {size}-byte buffer");
            } else {
                assert!(frame <= bound, "LZ4 frame of incompressible {size} bytes over bound");
            }
        }
    }
}

#[test]
fn buffers_ending_next_to_chunk_boundaries() {
    // Four gathered buffers fill a staging chunk to just under, at, or past 64 KiB, so the
    // next buffer starts at the end of one chunk or the start of the next.
    for split in 1..8 {
        let sizes = [16384 - 1, 16384 - 1, 16384 - 1, 16384 + 3 - split, 10, 0];
        for style in [Style::Raw, Style::Lz4] {
            let bufs = sizes.iter().enumerate().map(|(i, &s)| content(i as u64, s, true)).collect();
            check_plan(&vec![(style, bufs)]);
        }
    }
}
