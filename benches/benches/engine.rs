//! In-memory engine throughput (issue 16): write into a preallocated `SliceSink` and restore
//! into caller buffers, 64 MiB of logical data per iteration cut into frames of 4 MiB, next
//! to a `memcpy` of the same bytes, buffer by buffer, measured in the same run.
//!
//! Cases, one criterion group per `{kind}_{buffer size}`:
//! - kinds `random` (incompressible), `text` (JSON log lines, about 5x with LZ4) and
//!   `records` (50-byte struct-like records with varying fields);
//! - buffer sizes 1 MiB and 4 KiB for every kind, 50 B for `text` and `records` only;
//! - in each group: `{raw,lz4}_{write,restore}_{1,2}t`, `memcpy`, and the goal's reference
//!   `liblz4_{compress,decompress}_1t`; the 50 B groups run on 1 thread only.
//!
//! One thread drives `Writer::open_frame`/`FrameWriter::add`/`close` and
//! `FrameReader::read_into` directly; two threads go through `ckpt_parallel::write_frames`
//! and `restore_frames`. Both use the frame cut of `split_into_frames`, so the checkpoints
//! are identical. The 2-thread write clones the prebuilt plan each iteration (the API takes
//! it by value), which is part of the measured cost. Every restore is checked against the
//! input once, before it is timed.
//!
//! `liblz4_compress_1t` and `liblz4_decompress_1t` are liblz4's own linked-block streaming
//! loop on the same bytes, through the lz4-sys FFI: `LZ4_compress_fast_continue`
//! (acceleration 1, as ckpt uses) over consecutive 64 KiB blocks (ckpt's `CHUNK_MAX`) of the
//! contiguous input, so the previous block is always in place as the prefix (liblz4's best
//! case), each block written with a 4-byte length prefix into a preallocated output; and
//! `LZ4_decompress_safe_continue` into a preallocated, contiguous buffer. Like ckpt, the
//! stream restarts every 4 MiB (`LZ4_resetStream_fast` / `LZ4_setStreamDecode`), so both see
//! the same history; unlike ckpt, no checksums and no headers. The input is contiguous, so
//! these two do not depend on the group's buffer size and repeat across a kind's groups.
//! The round trip is checked once, before it is timed.
#![allow(missing_docs)]

use ckpt_frame_core::{
    CheckpointId, Reader, SliceSink, SliceSource, Style, Writer, checkpoint_size_bound,
};
use ckpt_parallel::{
    FramePlan, Parallelism, restore_frames, split_dests, split_into_frames, write_frames,
};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lz4_sys::{
    LZ4_compressBound, LZ4_createStream, LZ4_createStreamDecode, LZ4_decompress_safe_continue,
    LZ4_freeStream, LZ4_freeStreamDecode, LZ4_setStreamDecode, LZ4StreamDecode, LZ4StreamEncode,
};
use std::ffi::{c_char, c_int};
use std::hint::black_box;
use std::time::Duration;

const TOTAL: usize = 64 << 20;
const FRAME: usize = 4 << 20;
const RECORD: usize = 50;
/// liblz4's block size in the reference loop: ckpt's chunk size (`CHUNK_MAX`).
const BLOCK: usize = 64 << 10;
/// `LZ4_compress_fast_continue`'s acceleration in the reference loop: the 1 ckpt's LZ4 style
/// uses (`crates/frame-core/src/lz4.rs`).
const ACCELERATION: c_int = 1;

// liblz4 (bundled by lz4-sys) exports these since 1.9.0; lz4-sys does not declare them.
unsafe extern "C" {
    fn LZ4_resetStream_fast(stream: *mut LZ4StreamEncode);
    fn LZ4_compress_fast_continue(
        stream: *mut LZ4StreamEncode,
        src: *const c_char,
        dst: *mut c_char,
        src_size: c_int,
        dst_capacity: c_int,
        acceleration: c_int,
    ) -> c_int;
}

/// Struct-like 50-byte records: id, timestamp, value, flags, an account tag and a short
/// status name; fields vary from record to record but repeat in structure.
fn records(len: usize) -> Vec<u8> {
    let statuses: [&[u8; 8]; 4] = [b"ok______", b"retry___", b"failed__", b"pending_"];
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut out = Vec::with_capacity(len + RECORD);
    let mut id = 1_000_000_u64;
    let mut ts = 1_700_000_000_000_u64;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        id += 1;
        ts += state % 64;
        out.extend_from_slice(&id.to_le_bytes()); // 8
        out.extend_from_slice(&ts.to_le_bytes()); // 16
        out.extend_from_slice(&((state >> 8) % 100_000).to_le_bytes()); // 24
        out.extend_from_slice(&u32::try_from(state >> 40 & 0xff).unwrap().to_le_bytes()); // 28
        out.extend_from_slice(&u16::try_from(state >> 48 & 0x3ff).unwrap().to_le_bytes()); // 30
        out.extend_from_slice(&[0xAA; 4]); // 34: fixed account prefix
        out.extend_from_slice(&u32::try_from((state >> 20) % 4096).unwrap().to_le_bytes()); // 38
        out.extend_from_slice(statuses[usize::try_from(state % 4).unwrap()]); // 46
        out.extend_from_slice(&[0; 4]); // 50: padding
    }
    out.truncate(len);
    out
}

fn write_1t(out: &mut [u8], plan: &[FramePlan<'_>]) -> usize {
    let mut w = Writer::new(SliceSink::new(out), CheckpointId::from_bytes([0; 16]));
    for f in plan {
        let mut frame = w.open_frame(f.style).unwrap();
        for buf in &f.buffers {
            frame.add(buf).unwrap();
        }
        frame.close().unwrap();
    }
    usize::try_from(w.finish().unwrap().len).unwrap()
}

fn write_2t(out: &mut [u8], plan: &[FramePlan<'_>]) -> usize {
    let mut w = Writer::new(SliceSink::new(out), CheckpointId::from_bytes([0; 16]));
    write_frames(&mut w, plan.iter().cloned(), Parallelism::threads(2)).unwrap();
    usize::try_from(w.finish().unwrap().len).unwrap()
}

fn restore_1t(bytes: &[u8], dests: &mut [Vec<&mut [u8]>]) {
    let mut reader = Reader::new(SliceSource::new(bytes));
    for frame_dests in dests {
        let mut frame = reader.next_frame().unwrap().unwrap();
        for buf in frame_dests {
            frame.read_into(buf).unwrap();
        }
        frame.close().unwrap();
    }
    assert!(reader.next_frame().unwrap().is_none());
    reader.finish().unwrap();
}

fn restore_2t(bytes: &[u8], dests: &mut [Vec<&mut [u8]>]) {
    restore_frames(|| Ok(SliceSource::new(bytes)), dests, Parallelism::threads(2)).unwrap();
}

/// liblz4's streaming state for the reference loop, freed on drop.
struct Lz4Ref {
    enc: *mut LZ4StreamEncode,
    dec: *mut LZ4StreamDecode,
}

impl Lz4Ref {
    fn new() -> Self {
        // SAFETY: both constructors take no arguments and return an owned, initialised
        // stream or null (checked below); `Drop` frees each exactly once.
        let (enc, dec) = unsafe { (LZ4_createStream(), LZ4_createStreamDecode()) };
        assert!(!enc.is_null() && !dec.is_null(), "liblz4 stream allocation failed");
        Self { enc, dec }
    }

    /// Output room for `len` bytes of input: a 4-byte length and the LZ4 bound per block.
    fn out_bound(len: usize) -> usize {
        let bound = usize::try_from(lz4_bound(BLOCK)).unwrap();
        len.div_ceil(BLOCK) * (4 + bound)
    }

    /// Compresses `data` in 64 KiB linked blocks, the stream restarting every `FRAME`
    /// bytes; each block goes to `out` as a little-endian `u32` length and the block.
    /// Returns the bytes written.
    fn compress(&mut self, data: &[u8], out: &mut [u8]) -> usize {
        let bound = lz4_bound(BLOCK);
        let mut at = 0;
        for frame in data.chunks(FRAME) {
            // SAFETY: `enc` is a live stream from LZ4_createStream, which initialised it as
            // LZ4_resetStream_fast requires.
            unsafe { LZ4_resetStream_fast(self.enc) };
            for block in frame.chunks(BLOCK) {
                let dst = &mut out[at + 4..at + 4 + usize::try_from(bound).unwrap()];
                // SAFETY: `block` is readable and `dst` writable for the lengths passed; the
                // earlier blocks of this frame, which the stream keeps pointers to as
                // history, are the bytes of `data` right before `block`, borrowed and
                // unmodified for the whole loop.
                let n = unsafe {
                    LZ4_compress_fast_continue(
                        self.enc,
                        block.as_ptr().cast::<c_char>(),
                        dst.as_mut_ptr().cast::<c_char>(),
                        c_int::try_from(block.len()).unwrap(),
                        bound,
                        ACCELERATION,
                    )
                };
                let n = u32::try_from(n).ok().filter(|&n| n > 0).expect("LZ4 compression failed");
                out[at..at + 4].copy_from_slice(&n.to_le_bytes());
                at += 4 + usize::try_from(n).unwrap();
            }
        }
        at
    }

    /// Restores what [`Self::compress`] wrote (`stored`) into `back`, which has the input's
    /// length.
    fn decompress(&mut self, mut stored: &[u8], back: &mut [u8]) {
        for frame in back.chunks_mut(FRAME) {
            // SAFETY: `dec` is a live stream from LZ4_createStreamDecode; a null dictionary of
            // length 0 resets it.
            unsafe { LZ4_setStreamDecode(self.dec, std::ptr::null(), 0) };
            for block in frame.chunks_mut(BLOCK) {
                let (len, rest) = stored.split_at(4);
                let len = usize::try_from(u32::from_le_bytes(len.try_into().unwrap())).unwrap();
                let (src, rest) = rest.split_at(len);
                stored = rest;
                // SAFETY: `src` is readable and `block` writable for the lengths passed, and
                // liblz4's safe decoder stays within both. The history the stream refers to
                // is the previous blocks of this frame, decoded right before `block` in the
                // same buffer and not touched since.
                let n = unsafe {
                    LZ4_decompress_safe_continue(
                        self.dec,
                        src.as_ptr(),
                        block.as_mut_ptr(),
                        c_int::try_from(src.len()).unwrap(),
                        c_int::try_from(block.len()).unwrap(),
                    )
                };
                assert_eq!(usize::try_from(n).ok(), Some(block.len()), "LZ4 block is invalid");
            }
        }
        assert!(stored.is_empty(), "LZ4 output has trailing bytes");
    }
}

impl Drop for Lz4Ref {
    fn drop(&mut self) {
        // SAFETY: each stream came from its create function and is freed exactly once.
        unsafe {
            LZ4_freeStream(self.enc);
            LZ4_freeStreamDecode(self.dec);
        }
    }
}

fn lz4_bound(len: usize) -> c_int {
    // SAFETY: LZ4_compressBound is a pure function of its argument.
    unsafe { LZ4_compressBound(c_int::try_from(len).unwrap()) }
}

fn size_name(len: usize) -> String {
    match len {
        n if n >= 1 << 20 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

fn engine(c: &mut Criterion) {
    let kinds = [
        ("random", ckpt_benches::random_bytes(TOTAL)),
        ("text", ckpt_benches::log_lines(TOTAL)),
        ("records", records(TOTAL)),
    ];
    for (kind, data) in &kinds {
        for buf_len in [1 << 20, 4 << 10, RECORD] {
            if buf_len == RECORD && *kind == "random" {
                continue;
            }
            let threads: &[usize] = if buf_len == RECORD { &[1] } else { &[1, 2] };
            let mut g = c.benchmark_group(format!("{kind}_{}", size_name(buf_len)));
            g.throughput(Throughput::Bytes(TOTAL as u64));
            g.sample_size(10);
            g.sampling_mode(SamplingMode::Flat);
            g.measurement_time(Duration::from_secs(2));
            g.warm_up_time(Duration::from_secs(1));

            let mut back = vec![0u8; TOTAL];
            g.bench_function("memcpy", |b| {
                b.iter(|| {
                    for (d, s) in back.chunks_mut(buf_len).zip(data.chunks(buf_len)) {
                        d.copy_from_slice(black_box(s));
                    }
                });
            });

            let mut lz4 = Lz4Ref::new();
            let mut stored = vec![0u8; Lz4Ref::out_bound(TOTAL)];
            let stored_len = lz4.compress(data, &mut stored);
            back.fill(0);
            lz4.decompress(&stored[..stored_len], &mut back);
            assert!(back == *data, "{kind} liblz4 round trip differs");
            g.bench_function("liblz4_compress_1t", |b| {
                b.iter(|| lz4.compress(black_box(data), &mut stored));
            });
            g.bench_function("liblz4_decompress_1t", |b| {
                b.iter(|| lz4.decompress(black_box(&stored[..stored_len]), &mut back));
            });
            drop(stored);
            drop(lz4);

            for style in [Style::Raw, Style::Lz4] {
                let name = if style == Style::Raw { "raw" } else { "lz4" };
                let plan = split_into_frames(style, data.chunks(buf_len), FRAME);
                let bound = checkpoint_size_bound(
                    plan.iter().map(|f| (f.style, f.buffers.iter().map(|b| b.len()))),
                )
                .unwrap();
                let mut out = vec![0u8; usize::try_from(bound).unwrap()];
                let written = write_1t(&mut out, &plan);
                if threads.contains(&2) {
                    let mut out2 = vec![0u8; out.len()];
                    let written2 = write_2t(&mut out2, &plan);
                    assert_eq!(out[..written], out2[..written2], "1t and 2t checkpoints differ");
                }
                let bytes = out[..written].to_vec();
                for &t in threads {
                    let write = if t == 1 { write_1t } else { write_2t };
                    let restore = if t == 1 { restore_1t } else { restore_2t };
                    g.bench_function(format!("{name}_write_{t}t"), |b| {
                        b.iter(|| write(&mut out, &plan));
                    });
                    back.fill(0);
                    let mut dests = split_dests(back.chunks_mut(buf_len), FRAME);
                    restore(&bytes, &mut dests);
                    drop(dests);
                    assert!(back == *data, "{kind} {name} {t}t restore differs");
                    let mut dests = split_dests(back.chunks_mut(buf_len), FRAME);
                    g.bench_function(format!("{name}_restore_{t}t"), |b| {
                        b.iter(|| restore(&bytes, &mut dests));
                    });
                }
            }
            g.finish();
        }
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
