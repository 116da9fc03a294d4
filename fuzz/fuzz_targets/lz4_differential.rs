//! Invariant: our LZ4 and a second implementation (`lz4_flex`, pure Rust) agree, at the
//! frame level and block by block, on any data.
//!
//! - Frames: any data, cut into buffers at arbitrary points, written as one LZ4 frame by our
//!   writer (liblz4), restores equal when every chunk is decoded by `lz4_flex` (plugged in
//!   through `Reader::with_codecs`); written by `lz4_flex` instead (`Writer::with_codecs`),
//!   it restores equal through our default decoder, streaming and by index.
//! - Blocks: the data cut into linked chunks of at most 64 KiB and compressed by our
//!   `Lz4Compressor` decodes equal with `lz4_flex` given the 64 KiB before each chunk as
//!   dictionary; compressed by `lz4_flex` the same way, it decodes equal with our
//!   `Lz4Decompressor`, both through its ring (`decompress_linked`) and in place
//!   (`decompress_into`).
//! - Hostile blocks: the input itself, taken as a stored block with a dictionary, is either
//!   refused by our decoder or decoded to exactly the expected length, never out of bounds;
//!   when both decoders accept it they produce the same bytes.
//!
//! The data is the input repeated (each copy changed in one byte) so that short inputs reach
//! past the 64 KiB chunk size and chunks link back to earlier ones; it is capped at
//! `MAX_DATA` bytes.
#![no_main]

use arbitrary::Arbitrary;
use ckpt_frame_core::{
    CHUNK_MAX, CheckpointId, ChunkCompressor, ChunkDecompressor, CodecError, Lz4Compressor,
    Lz4Decompressor, Reader, SliceSource, Style, VecSink, Writer, lz4_bound,
};
use libfuzzer_sys::fuzz_target;

const ID: CheckpointId = CheckpointId::from_bytes(*b"ckpt-fuzz-lz4-df");
const WINDOW: usize = 64 * 1024;
const MAX_DATA: usize = 512 * 1024;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Copies of `data` to concatenate (1..=64).
    copies: u8,
    /// Buffer lengths to cut the data into (the rest is one last buffer).
    cuts: Vec<u16>,
    /// Chunk lengths for the block-level checks (0 counts as 64 KiB).
    chunks: Vec<u16>,
    /// Length the hostile block must decode to (1..=64 KiB) and dictionary length.
    hostile_len: u16,
    hostile_dict: u16,
    data: Vec<u8>,
}

fn keep_window(history: &mut Vec<u8>, more: &[u8]) {
    history.extend_from_slice(more);
    if history.len() > WINDOW {
        history.drain(..history.len() - WINDOW);
    }
}

/// Decodes each LZ4 chunk with `lz4_flex`, the frame's last 64 KiB as external dictionary.
#[derive(Default)]
struct FlexDecompressor {
    history: Vec<u8>,
    out: Vec<u8>,
}

impl ChunkDecompressor for FlexDecompressor {
    fn reset(&mut self) {
        self.history.clear();
    }
    fn decompress_linked(&mut self, stored: &[u8], logical_len: usize) -> Result<(), CodecError> {
        self.out.clear();
        self.out.resize(logical_len, 0);
        let n = lz4_flex::block::decompress_into_with_dict(stored, &mut self.out, &self.history)
            .map_err(|_| CodecError { message: "lz4_flex rejected the block" })?;
        if n != logical_len {
            return Err(CodecError { message: "lz4_flex decoded another length" });
        }
        let out = std::mem::take(&mut self.out);
        keep_window(&mut self.history, &out);
        self.out = out;
        Ok(())
    }
    fn output(&self) -> &[u8] {
        &self.out
    }
}

/// Compresses each chunk with `lz4_flex` against a private copy of the last 64 KiB.
#[derive(Default)]
struct FlexCompressor {
    history: Vec<u8>,
}

impl ChunkCompressor for FlexCompressor {
    fn reset(&mut self) {
        self.history.clear();
    }
    unsafe fn compress_linked(
        &mut self,
        chunk: &[u8],
        out: &mut [u8],
    ) -> Result<usize, CodecError> {
        // `lz4_flex` asks for more room than LZ4's true worst case, so compress aside.
        let packed = lz4_flex::block::compress_with_dict(chunk, &self.history);
        assert!(packed.len() <= lz4_bound(chunk.len()), "lz4_flex block over LZ4's bound");
        let dst = out.get_mut(..packed.len()).ok_or(CodecError { message: "block over bound" })?;
        dst.copy_from_slice(&packed);
        keep_window(&mut self.history, chunk);
        Ok(packed.len())
    }
}

fn expand(input: &Input) -> Vec<u8> {
    let copies = usize::from(input.copies % 64) + 1;
    let mut data = Vec::with_capacity((input.data.len() * copies).min(MAX_DATA));
    for c in 0..copies {
        if data.len() >= MAX_DATA {
            break;
        }
        let start = data.len();
        data.extend_from_slice(&input.data);
        if let Some(b) = data.get_mut(start + c * 7 % input.data.len().max(1)) {
            *b = b.wrapping_add(c as u8);
        }
    }
    data.truncate(MAX_DATA);
    data
}

fn cut<'a>(data: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut rest = data;
    let mut out = Vec::new();
    for &c in cuts.iter().take(256) {
        let (now, later) = rest.split_at(usize::from(c).min(rest.len()));
        out.push(now);
        rest = later;
    }
    out.push(rest);
    out
}

fn write_frame(w: Writer<VecSink>, buffers: &[&[u8]]) -> Vec<u8> {
    let mut w = w;
    let mut f = w.open_frame(Style::Lz4).expect("open_frame");
    f.add_all(buffers.iter().copied()).expect("add");
    f.close().expect("close");
    w.finish().expect("finish");
    w.into_sink().into_inner()
}

fn restore(mut r: Reader<SliceSource<'_>>, indexed: bool, buffers: &[&[u8]], what: &str) {
    let mut f = if indexed {
        r.open_frame(0).expect("open_frame")
    } else {
        r.next_frame().expect("next_frame").expect("one frame")
    };
    for (j, want) in buffers.iter().enumerate() {
        let got = f.read_to_vec().unwrap_or_else(|e| panic!("{what}: buffer {j}: {e}"));
        assert!(got.as_deref() == Some(*want), "{what}: buffer {j} differs");
    }
    assert!(f.read_to_vec().expect("end of frame").is_none(), "{what}: an extra buffer");
    f.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
    r.finish().unwrap_or_else(|e| panic!("{what}: finish: {e}"));
}

/// The data as linked chunks: (start, end) pairs covering it.
fn chunk_bounds(len: usize, chunks: &[u16]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < len {
        let size = match sizes.next() {
            Some(0) | None => CHUNK_MAX,
            Some(&s) => usize::from(s),
        };
        let end = (at + size).min(len);
        out.push((at, end));
        at = end;
    }
    out
}

fn dict_before(data: &[u8], start: usize) -> &[u8] {
    &data[start.saturating_sub(WINDOW)..start]
}

fn blocks(data: &[u8], chunks: &[u16]) {
    let bounds = chunk_bounds(data.len(), chunks);

    // Ours to lz4_flex. The chunks are consecutive slices of `data`, which stays in place and
    // unmodified until the compressor is dropped, as `compress_linked` requires.
    let mut ours = Lz4Compressor::new().expect("liblz4 compressor");
    ours.reset();
    for &(start, end) in &bounds {
        let chunk = &data[start..end];
        let mut out = vec![0u8; lz4_bound(chunk.len())];
        // SAFETY: every chunk passed since the reset is a slice of `data`, alive and unchanged
        // for the whole loop.
        let n = unsafe { ours.compress_linked(chunk, &mut out) }.expect("liblz4 compress");
        let mut back = vec![0u8; chunk.len()];
        let got = lz4_flex::block::decompress_into_with_dict(
            &out[..n],
            &mut back,
            dict_before(data, start),
        )
        .unwrap_or_else(|e| panic!("lz4_flex rejects our block at {start}: {e}"));
        assert_eq!(got, chunk.len(), "lz4_flex decoded our block at {start} to another length");
        assert!(back == chunk, "lz4_flex decoded our block at {start} to other bytes");
    }

    // lz4_flex to ours, through the ring and in place.
    let mut ring = Lz4Decompressor::new().expect("liblz4 decompressor");
    ring.reset();
    let mut in_place = Lz4Decompressor::new().expect("liblz4 decompressor");
    in_place.reset();
    let mut out = vec![0u8; data.len()];
    for &(start, end) in &bounds {
        let chunk = &data[start..end];
        let block = lz4_flex::block::compress_with_dict(chunk, dict_before(data, start));
        assert!(block.len() <= lz4_bound(chunk.len()), "lz4_flex block over LZ4's bound");
        ring.decompress_linked(&block, chunk.len())
            .unwrap_or_else(|e| panic!("liblz4 rejects lz4_flex's block at {start}: {e}"));
        assert!(ring.output() == chunk, "liblz4 (ring) decoded lz4_flex's block at {start}");
        in_place
            .decompress_into(&block, &mut out[..end], start)
            .unwrap_or_else(|e| panic!("liblz4 rejects lz4_flex's block in place at {start}: {e}"));
        assert!(out[start..end] == *chunk, "liblz4 (in place) decoded lz4_flex's block at {start}");
    }
}

/// The raw input as a stored block: both decoders either refuse it or agree.
fn hostile(input: &Input, data: &[u8]) {
    let len = usize::from(input.hostile_len) % CHUNK_MAX + 1;
    let dict = &data[..usize::from(input.hostile_dict).min(data.len())];
    let stored = &input.data;

    let mut ours = vec![0u8; dict.len() + len];
    ours[..dict.len()].copy_from_slice(dict);
    let mut dec = Lz4Decompressor::new().expect("liblz4 decompressor");
    let ours_ok = dec.decompress_into(stored, &mut ours, dict.len()).is_ok();

    dec.reset();
    dec.set_history(dict);
    let ring_ok = dec.decompress_linked(stored, len).is_ok();
    if ring_ok {
        assert_eq!(dec.output().len(), len, "our ring decoder returned another length");
    }
    assert_eq!(ours_ok, ring_ok, "our in-place and ring decoders disagree on acceptance");
    if ours_ok && ring_ok {
        assert!(dec.output() == &ours[dict.len()..], "our two decode paths differ");
    }

    let mut theirs = vec![0u8; len];
    let flex = lz4_flex::block::decompress_into_with_dict(stored, &mut theirs, dict);
    if let (true, Ok(n)) = (ours_ok, flex)
        && n == len
    {
        assert!(theirs == ours[dict.len()..], "liblz4 and lz4_flex decode a block differently");
    }
}

fuzz_target!(|input: Input| {
    let data = expand(&input);
    let buffers = cut(&data, &input.cuts);

    let ours = write_frame(Writer::new(VecSink::new(), ID), &buffers);
    let flex =
        Reader::with_codecs(SliceSource::new(&ours), Some(Box::new(FlexDecompressor::default())));
    restore(flex, false, &buffers, "our frame through lz4_flex (streaming)");
    let flex = Reader::open_with_codecs(
        SliceSource::new(&ours),
        Some(Box::new(FlexDecompressor::default())),
    )
    .expect("open with lz4_flex");
    restore(flex, true, &buffers, "our frame through lz4_flex (indexed)");

    let theirs = write_frame(
        Writer::with_codecs(VecSink::new(), ID, Some(Box::new(FlexCompressor::default()))),
        &buffers,
    );
    restore(Reader::new(SliceSource::new(&theirs)), false, &buffers, "lz4_flex frame (streaming)");
    let indexed = Reader::open(SliceSource::new(&theirs)).expect("open lz4_flex frame");
    restore(indexed, true, &buffers, "lz4_flex frame (indexed)");

    blocks(&data, &input.chunks);
    hostile(&input, &data);
});
