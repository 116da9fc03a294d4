//! The pure-Rust LZ4 codec (feature `lz4-pure`, `lz4_flex`) against liblz4 (feature `lz4`):
//! checkpoints written by either restore through either, byte for byte, and on damaged or
//! hostile blocks the two decoders agree (both fail, or both hand back the same bytes) and
//! never panic. Needs both features (see `[[test]]` in Cargo.toml):
//! `cargo test -p ckpt-frame-core --features lz4-pure --test lz4_pure`.
// Test data generators and the throughput print cast freely; the values are small.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]

mod common;
use ckpt_frame_core::{
    ChunkCompressor, ChunkDecompressor, Lz4Compressor, Lz4Decompressor, PureLz4Compressor,
    PureLz4Decompressor, Reader, SliceSource, Style, VecSink, Writer, lz4_bound,
};
use common::*;
use proptest::prelude::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn pure_compressor() -> Box<dyn ChunkCompressor> {
    Box::new(PureLz4Compressor::new())
}
fn lib_compressor() -> Box<dyn ChunkCompressor> {
    Box::new(Lz4Compressor::new().expect("liblz4 stream"))
}
fn pure_decompressor() -> Box<dyn ChunkDecompressor> {
    Box::new(PureLz4Decompressor::new())
}
fn lib_decompressor() -> Box<dyn ChunkDecompressor> {
    Box::new(Lz4Decompressor::new().expect("liblz4 stream"))
}

fn write(plan: &Plan, compressor: fn() -> Box<dyn ChunkCompressor>) -> Vec<u8> {
    let w = Writer::with_codecs(VecSink::new(), ID, Some(compressor()));
    write_plan(w, plan).expect("write").into_inner()
}

/// Restores `plan` from `bytes` with `decompressor` in three ways: streaming into caller
/// buffers (`read_into`, which decodes large buffers in place), streaming into vectors,
/// and indexed in reverse frame order. Panics on any error or difference.
fn assert_restores(
    bytes: &[u8],
    plan: &Plan,
    decompressor: fn() -> Box<dyn ChunkDecompressor>,
    what: &str,
) {
    let mut r = Reader::with_codecs(SliceSource::new(bytes), Some(decompressor()));
    for (i, (_, bufs)) in plan.iter().enumerate() {
        let mut f = r.next_frame().unwrap().unwrap_or_else(|| panic!("{what}: frame {i} missing"));
        for (j, want) in bufs.iter().enumerate() {
            let mut got = vec![0u8; want.len()];
            f.read_into(&mut got).unwrap_or_else(|e| panic!("{what}: read_into {i}/{j}: {e}"));
            assert!(got == *want, "{what}: read_into frame {i} buffer {j} differs");
        }
        f.close().unwrap();
    }
    assert!(r.next_frame().unwrap().is_none());
    r.finish().unwrap();

    let mut r = Reader::with_codecs(SliceSource::new(bytes), Some(decompressor()));
    for (i, (_, bufs)) in plan.iter().enumerate() {
        let mut f = r.next_frame().unwrap().unwrap();
        for (j, want) in bufs.iter().enumerate() {
            let got = f.read_to_vec().unwrap_or_else(|e| panic!("{what}: read_to_vec: {e}"));
            assert!(got.as_ref() == Some(want), "{what}: read_to_vec frame {i} buffer {j} differs");
        }
        f.close().unwrap();
    }
    r.finish().unwrap();

    let mut r = Reader::open_with_codecs(SliceSource::new(bytes), Some(decompressor())).unwrap();
    for (i, (_, bufs)) in plan.iter().enumerate().rev() {
        let mut f = r.open_frame(i as u64).unwrap();
        for (j, want) in bufs.iter().enumerate() {
            let mut got = vec![0u8; want.len()];
            f.read_into(&mut got).unwrap_or_else(|e| panic!("{what}: indexed {i}/{j}: {e}"));
            assert!(got == *want, "{what}: indexed frame {i} buffer {j} differs");
        }
        f.close().unwrap();
    }
    r.finish().unwrap();
}

/// Writes with each codec and restores with both, and checks the pure codec's output is
/// about as small as liblz4's.
fn differential(plan: &Plan, what: &str) {
    let by_lib = write(plan, lib_compressor);
    let by_pure = write(plan, pure_compressor);
    assert_restores(&by_pure, plan, lib_decompressor, &format!("{what}: pure -> liblz4"));
    assert_restores(&by_lib, plan, pure_decompressor, &format!("{what}: liblz4 -> pure"));
    assert_restores(&by_pure, plan, pure_decompressor, &format!("{what}: pure -> pure"));
    assert!(
        by_pure.len() <= by_lib.len() + by_lib.len() / 8 + 4096,
        "{what}: pure codec wrote {} bytes, liblz4 {}",
        by_pure.len(),
        by_lib.len()
    );
}

/// Fixed-size records that differ in a counter and a few fields: long matches at a fixed
/// distance, as in a table of accounts.
fn records(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(b"REC\0");
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&(i % 7).to_le_bytes());
        out.extend_from_slice(&[0xAB; 24]);
        out.extend_from_slice(&(i.wrapping_mul(0x9E37_79B9)).to_le_bytes()[..4]);
        i += 1;
    }
    out.truncate(len);
    out
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Random,
    Text,
    Records,
    Zeros,
}

fn data(kind: Kind, seed: u64, len: usize) -> Vec<u8> {
    match kind {
        Kind::Random => content(seed, len, false),
        Kind::Text => content(seed, len, true),
        Kind::Records => records(seed, len),
        Kind::Zeros => vec![0; len],
    }
}

const KINDS: [Kind; 4] = [Kind::Random, Kind::Text, Kind::Records, Kind::Zeros];

#[test]
fn every_data_kind_and_buffer_size_restores_across_codecs() {
    for kind in KINDS {
        let d = |seed, len| data(kind, seed, len);
        let plan: Plan = vec![
            (Style::Lz4, vec![d(1, 0), d(2, 50), d(3, 4 * KIB), d(4, MIB), d(5, 50), d(6, 0)]),
            (Style::Lz4, (0..2000).map(|i| d(100 + i, 50)).collect()),
            (Style::Lz4, (0..300).map(|i| d(3000 + i, 4 * KIB)).collect()),
            (Style::Raw, vec![d(7, 4 * KIB)]),
            (Style::Lz4, vec![d(8, MIB)]),
            (Style::Lz4, vec![d(9, 0)]),
            (Style::Lz4, vec![]),
        ];
        differential(&plan, &format!("{kind:?}"));
    }
}

#[test]
fn mixed_kinds_in_one_frame_and_chunk_edges() {
    // Kinds alternate inside one frame, so matches reach across buffers of other kinds,
    // and sizes sit on the 64 KiB chunk edge.
    let mut bufs = Vec::new();
    for (i, kind) in KINDS.iter().cycle().take(24).enumerate() {
        let len = [0, 50, 4 * KIB, 65535, 65536, 65537, 3 * 65536 + 1, 12, 13][i % 9];
        bufs.push(data(*kind, i as u64, len));
    }
    let repeated = data(Kind::Text, 77, 40 * KIB).repeat(4);
    bufs.push(repeated);
    differential(&vec![(Style::Lz4, bufs)], "mixed");
}

#[test]
fn many_frames() {
    let plan: Plan = (0..300u64)
        .map(|i| {
            let kind = KINDS[(i % 4) as usize];
            let style = if i % 11 == 0 { Style::Raw } else { Style::Lz4 };
            let lens = [0, 50, 700, 4 * KIB, 20 * KIB];
            let bufs = (0..=(i % 5) as usize)
                .map(|j| data(kind, i * 10 + j as u64, lens[(i as usize + j) % lens.len()]))
                .collect();
            (style, bufs)
        })
        .collect();
    differential(&plan, "many frames");
}

/// The build's default codecs are liblz4 when `lz4` is on, whatever `lz4-pure` says.
#[test]
fn liblz4_stays_the_default_when_both_are_on() {
    let plan: Plan = vec![(Style::Lz4, vec![data(Kind::Text, 1, 300 * KIB)])];
    let by_default = write_vec(&plan);
    assert_eq!(by_default, write(&plan, lib_compressor));
    assert_ne!(by_default, write(&plan, pure_compressor), "lz4_flex chooses other matches");
}

fn buffers() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let buffer = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(0u8..4, 0..70_000),
        (any::<u64>(), 0usize..200_000, 0usize..4)
            .prop_map(|(seed, len, k)| data(KINDS[k], seed, len)),
        // A short pattern repeated: long overlapping matches.
        (proptest::collection::vec(any::<u8>(), 1..20), 0usize..100_000).prop_map(|(p, n)| p
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect()),
    ];
    proptest::collection::vec(buffer, 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_buffers_restore_across_codecs(frames in proptest::collection::vec(buffers(), 1..4)) {
        let plan: Plan = frames.into_iter().map(|b| (Style::Lz4, b)).collect();
        differential(&plan, "proptest");
    }
}

// ---- hostile blocks, through the codec API ------------------------------------------------

/// Compresses `chunks` (each at most 64 KiB) as one frame with `c`, returning the blocks.
fn compress_all(c: &mut dyn ChunkCompressor, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    c.reset();
    chunks
        .iter()
        .map(|chunk| {
            let mut out = vec![0u8; lz4_bound(chunk.len())];
            // SAFETY: every chunk is borrowed from `chunks` for the whole loop, unmodified.
            let n = unsafe { c.compress_linked(chunk, &mut out) }.unwrap();
            out.truncate(n);
            out
        })
        .collect()
}

/// One decoder under test, with scratch memory laid out as `history | chunk`.
struct Decoder {
    d: Box<dyn ChunkDecompressor>,
    out: Vec<u8>,
}

impl Decoder {
    fn new(d: Box<dyn ChunkDecompressor>) -> Self {
        Self { d, out: Vec::new() }
    }

    /// Decodes `block` as `len` bytes after `history` in place (`decompress_into`).
    fn in_place(&mut self, history: &[u8], block: &[u8], len: usize) -> Option<&[u8]> {
        self.out.clear();
        self.out.extend_from_slice(history);
        self.out.resize(history.len() + len, 0x5A);
        let ok = self.d.decompress_into(block, &mut self.out, history.len()).is_ok();
        assert!(self.out.starts_with(history), "decompress_into wrote into the history");
        ok.then(|| &self.out[history.len()..])
    }

    /// Decodes `block` as `len` bytes with the decoder's own history (`decompress_linked`).
    fn linked(&mut self, history: &[u8], block: &[u8], len: usize) -> Option<Vec<u8>> {
        self.d.reset();
        self.d.set_history(history);
        let ok = self.d.decompress_linked(block, len).is_ok();
        ok.then(|| self.d.output().to_vec())
    }
}

struct Pair {
    lib: Decoder,
    pure: Decoder,
    trials: usize,
    both_ok: usize,
}

impl Pair {
    fn new() -> Self {
        Self {
            lib: Decoder::new(lib_decompressor()),
            pure: Decoder::new(pure_decompressor()),
            trials: 0,
            both_ok: 0,
        }
    }

    /// Both decoders on one block: both fail, or both succeed with the same bytes.
    fn agree(&mut self, history: &[u8], block: &[u8], len: usize, linked_too: bool) {
        self.trials += 1;
        let a = self.lib.in_place(history, block, len);
        let b = self.pure.in_place(history, block, len);
        match (a, b) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                assert!(a == b, "decoders disagree on the bytes of {block:02x?}");
                self.both_ok += 1;
            }
            (a, b) => panic!(
                "liblz4 ok: {}, pure ok: {}, len {len}, history {}, block {block:02x?}",
                a.is_some(),
                b.is_some(),
                history.len()
            ),
        }
        if linked_too {
            let a = self.lib.linked(history, block, len);
            let b = self.pure.linked(history, block, len);
            assert_eq!(a, b, "decompress_linked disagrees on {block:02x?} (len {len})");
        }
    }
}

/// A frame's chunks: a full chunk of text, one of records, and short ones that refer back.
fn sample_frame() -> Vec<Vec<u8>> {
    let mut text = data(Kind::Text, 9, 64 * KIB);
    text.extend_from_slice(&data(Kind::Records, 3, 64 * KIB));
    let mut chunks: Vec<Vec<u8>> = text.chunks(64 * KIB).map(<[u8]>::to_vec).collect();
    chunks.push(data(Kind::Text, 9, 300)); // repeats the frame's start, 128 KiB back
    chunks.push(data(Kind::Records, 40, 200));
    chunks.push(b"abcdefghijklmnopqrstuvwxyz".repeat(3));
    chunks.push(data(Kind::Random, 5, 40));
    chunks
}

#[test]
fn every_single_byte_change_in_small_blocks_is_judged_alike() {
    let chunks = sample_frame();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut pair = Pair::new();
    for c in &mut [pure_compressor(), lib_compressor()] {
        let blocks = compress_all(c.as_mut(), &refs);
        let mut history: Vec<u8> = Vec::new();
        for (chunk, block) in chunks.iter().zip(&blocks) {
            let hist = &history[history.len().saturating_sub(64 * KIB)..];
            // Intact, then every value at every position of blocks up to 400 bytes, else a
            // sample of positions and values.
            pair.agree(hist, block, chunk.len(), true);
            let small = block.len() <= 400;
            let step = if small { 1 } else { block.len() / 97 + 1 };
            for at in (0..block.len()).step_by(step) {
                let orig = block[at];
                let values: Vec<u8> = if small {
                    (0..=255).collect()
                } else {
                    vec![0, 1, 15, 0xF0, 0xFF, orig ^ 0x80]
                };
                let mut bad = block.clone();
                for v in values.into_iter().filter(|&v| v != orig) {
                    bad[at] = v;
                    pair.agree(hist, &bad, chunk.len(), at % 16 == 0 && v % 64 == 0);
                }
            }
            // Truncated and extended blocks, and the wrong logical length.
            for n in 0..block.len() {
                pair.agree(hist, &block[..n], chunk.len(), false);
            }
            let mut longer = block.clone();
            longer.extend_from_slice(&[0, 0x10, 0x41]);
            pair.agree(hist, &longer, chunk.len(), false);
            for len in [chunk.len() - 1, chunk.len() + 1, 1, 64 * KIB] {
                if len > 0 && len <= 64 * KIB {
                    pair.agree(hist, block, len, false);
                }
            }
            // Without its history (or with less): matches that reach before the start.
            pair.agree(&[], block, chunk.len(), true);
            pair.agree(&hist[hist.len() / 2..], block, chunk.len(), false);
            history.extend_from_slice(chunk);
        }
    }
    assert!(pair.trials > 100_000, "{} trials", pair.trials);
    assert!(pair.both_ok > 100, "{} trials decoded", pair.both_ok);
}

/// Builds a block by hand: `(literals, offset, match_len)` sequences, then final literals.
fn block(seqs: &[(&[u8], u16, usize)], last: &[u8]) -> Vec<u8> {
    fn len_bytes(out: &mut Vec<u8>, mut n: usize) {
        while n >= 255 {
            out.push(255);
            n -= 255;
        }
        out.push(n as u8);
    }
    let mut out = Vec::new();
    for (lit, offset, ml) in seqs {
        let l = lit.len().min(15) as u8;
        let m = (ml - 4).min(15) as u8;
        out.push(l << 4 | m);
        if lit.len() >= 15 {
            len_bytes(&mut out, lit.len() - 15);
        }
        out.extend_from_slice(lit);
        out.extend_from_slice(&offset.to_le_bytes());
        if ml - 4 >= 15 {
            len_bytes(&mut out, ml - 4 - 15);
        }
    }
    out.push((last.len().min(15) as u8) << 4);
    if last.len() >= 15 {
        len_bytes(&mut out, last.len() - 15);
    }
    out.extend_from_slice(last);
    out
}

#[test]
fn hand_made_offsets_and_end_of_block_cases_are_judged_alike() {
    let history = data(Kind::Text, 1, 64 * KIB);
    let mut pair = Pair::new();
    let tail = [b'z'; 12];
    for hist_len in [0usize, 1, 5, 100, 65534, 65535, 65536] {
        let hist = &history[history.len() - hist_len..];
        for lits in [0usize, 1, 4, 20] {
            for offset in [0u16, 1, 3, 4, 8, 19, 20, 21, 100, 120, 65534, 65535] {
                for ml in [4usize, 5, 18, 19, 300] {
                    let lit = vec![b'q'; lits];
                    let b = block(&[(&lit, offset, ml)], &tail);
                    let len = lits + ml + tail.len();
                    pair.agree(hist, &b, len, true);
                    // Too little room for the end-of-block rules: last literals 0..5 long.
                    for short in 0..6 {
                        let b = block(&[(&lit, offset, ml)], &tail[..short]);
                        pair.agree(hist, &b, lits + ml + short, false);
                    }
                    // A block that ends with a match.
                    let mut b = block(&[(&lit, offset, ml)], &[]);
                    b.pop();
                    pair.agree(hist, &b, lits + ml, false);
                }
            }
        }
    }
    // Long literal and match lengths right at the end of the block.
    for n in [14usize, 15, 16, 269, 270, 271, 600] {
        let lit = vec![7u8; n];
        pair.agree(&[], &block(&[], &lit), n, true);
        pair.agree(&history, &block(&[(&lit, 1, n)], &tail), 2 * n + 12, true);
    }
}

#[test]
fn random_junk_blocks_are_judged_alike() {
    let history = data(Kind::Records, 2, 64 * KIB);
    let mut pair = Pair::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let n = (next() % 64) as usize;
        // Small numbers dominate, so tokens, lengths and offsets come out plausible.
        let junk: Vec<u8> = (0..n)
            .map(|_| {
                let r = next();
                if r % 3 == 0 { (r >> 8) as u8 } else { (r >> 8) as u8 & 0x1F }
            })
            .collect();
        let len = 1 + (next() % 200) as usize;
        let hist = &history[history.len() - (next() % 70_000).min(64 * 1024) as usize..];
        pair.agree(hist, &junk, len, false);
    }
}

/// Throughput of both codecs on 64 MiB of text in 64 KiB chunks. Run with
/// `cargo test --release -p ckpt-frame-core --features lz4-pure --test lz4_pure -- --ignored
/// --nocapture speed`.
#[test]
#[ignore = "a measurement, not a test"]
fn speed() {
    let input = data(Kind::Text, 1, 64 * MIB);
    let chunks: Vec<&[u8]> = input.chunks(64 * KIB).collect();
    for (name, mut c, mut d) in [
        ("liblz4", lib_compressor(), lib_decompressor()),
        ("lz4_flex", pure_compressor(), pure_decompressor()),
    ] {
        let t = std::time::Instant::now();
        let blocks = compress_all(c.as_mut(), &chunks);
        let ct = t.elapsed();
        let stored: usize = blocks.iter().map(Vec::len).sum();
        let mut out = vec![0u8; input.len()];
        let t = std::time::Instant::now();
        let mut at = 0;
        for (chunk, b) in chunks.iter().zip(&blocks) {
            d.decompress_into(b, &mut out[..at + chunk.len()], at).unwrap();
            at += chunk.len();
        }
        let dt = t.elapsed();
        assert!(out == input);
        d.reset();
        let t = std::time::Instant::now();
        for (chunk, b) in chunks.iter().zip(&blocks) {
            d.decompress_linked(b, chunk.len()).unwrap();
        }
        let lt = t.elapsed();
        let gbs = |t: std::time::Duration| input.len() as f64 / t.as_secs_f64() / 1e9;
        println!(
            "{name}: ratio {:.2}, compress {:.2} GB/s, decompress_into {:.2} GB/s, \
             decompress_linked {:.2} GB/s",
            input.len() as f64 / stored as f64,
            gbs(ct),
            gbs(dt),
            gbs(lt)
        );
    }
}
