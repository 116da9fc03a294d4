//! Invariant: any frame plan (frames of RAW, LZ4 or both styles, each holding buffers of any
//! size, 0 included, and any contents; RAW buffers added whole or streamed with
//! `add_streamed`) written through the frame-core writer gives the same bytes in every sink:
//! `VecSink`, `SliceSink` (memory lent through `reserve`/`commit`), `WriteSink` over a
//! `BufWriter` of any capacity on a writer that accepts a few bytes per call, and
//! `FrameEncoder` + `Writer::append_encoded` (the parallel path). The length is exactly
//! `checkpoint_size_bound` when every frame is RAW and at most that bound otherwise; a
//! `SliceSink` too small (by one byte or more) fails with an error, never a panic. The
//! checkpoint restores to exactly the planned buffers streaming from memory (`read_into`,
//! with `next_len` agreeing), streaming from a pipe-like reader that returns a few bytes per
//! read (`read_to_vec`, decoding through the codec's own memory), and through the index with
//! frames in reverse order, whose `FrameInfo` matches the plan.
//!
//! Each input writes the `VecSink` reference and one other sink, and restores from memory and
//! one other way, both chosen by the input (one of everything per input would cost several
//! times the executions); the corpus covers every combination.
//!
//! A plan describes its buffers compactly (runs, repeated patterns, noise, thousands of tiny
//! buffers), so that short inputs reach past the 64 KiB chunk size and its boundaries; the
//! logical bytes of one plan are capped at `MAX_PLAN_BYTES`.
#![no_main]

use arbitrary::Arbitrary;
use ckpt_frame_core::{
    CheckpointId, Error, FrameEncoder, ReadSource, Reader, Sink, SliceSink, SliceSource, Source,
    Style, VecSink, WriteSink, Writer, checkpoint_size_bound,
};
use libfuzzer_sys::fuzz_target;
use std::io::{BufWriter, Read, Write};

const ID: CheckpointId = CheckpointId::from_bytes(*b"ckpt-fuzz-plans!");
/// Logical bytes of one plan at most, so that an input runs in milliseconds.
const MAX_PLAN_BYTES: usize = 256 * 1024;
const CHUNK: usize = 64 * 1024;

/// A buffer length, biased towards the chunk size and its multiples.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Len {
    Small(u8),
    Medium(u16),
    /// `k` chunks (0..=4) plus `delta` (-8..=8) bytes.
    NearChunk {
        k: u8,
        delta: i8,
    },
    Large(u32),
}

impl Len {
    fn get(self) -> usize {
        match self {
            Self::Small(n) => usize::from(n),
            Self::Medium(n) => usize::from(n),
            Self::NearChunk { k, delta } => {
                let base = usize::from(k % 5) * CHUNK;
                base.saturating_add_signed(isize::from(delta % 9))
            }
            Self::Large(n) => n as usize % (MAX_PLAN_BYTES / 2 + 1),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Content {
    /// The bytes as given.
    Bytes(Vec<u8>),
    /// One byte over and over (compresses to almost nothing).
    Fill { len: Len, byte: u8 },
    /// `pattern` repeated, every repetition with one byte changed, so that LZ4 matches link
    /// back across chunk boundaries.
    Repeat { len: Len, pattern: Vec<u8> },
    /// xorshift noise (incompressible: LZ4 stores it near its worst case).
    Noise { len: Len, seed: u64 },
}

#[derive(Arbitrary, Debug)]
struct BufferPlan {
    content: Content,
    /// In a RAW frame, add with `add_streamed` rather than `add`.
    streamed: bool,
}

#[derive(Arbitrary, Debug)]
enum FramePlan {
    Buffers {
        lz4: bool,
        buffers: Vec<BufferPlan>,
    },
    /// `count` buffers of 0..=`max_len` bytes each, so that lengths and bytes land across
    /// chunk boundaries at every position.
    Tiny {
        lz4: bool,
        count: u16,
        max_len: u8,
        seed: u64,
        streamed: bool,
    },
}

/// The second sink an input writes through (besides the `VecSink` reference).
#[derive(Arbitrary, Debug)]
enum SinkChoice {
    /// A `VecSink` again, RAW buffers marked `streamed` added with `add_streamed`.
    Streamed,
    /// A `SliceSink` of exactly the size bound, then one `short_by + 1` bytes too small.
    Slice { short_by: u16 },
    /// A `WriteSink` over a `BufWriter` of `capacity` (0 allowed) over a writer that takes
    /// at most `io_size(piece)` bytes per call.
    Write { capacity: u16, piece: u8 },
    /// `FrameEncoder` + `Writer::append_encoded`.
    Encoder,
}

/// The second way an input restores (besides streaming from memory with `read_into`).
#[derive(Arbitrary, Debug)]
enum RestoreChoice {
    /// Streaming from a reader that returns at most `io_size(max)` bytes per call.
    Trickle { max: u8 },
    /// Through the index, frames in reverse order.
    Indexed,
}

#[derive(Arbitrary, Debug)]
struct Plan {
    frames: Vec<FramePlan>,
    sink: SinkChoice,
    restore: RestoreChoice,
}

/// An I/O size from one byte: 1 to 8 KiB, powers of two and their neighbours (one byte per
/// call over a whole checkpoint would make an input take seconds).
fn io_size(b: u8) -> usize {
    (1usize << (b % 14)) + usize::from(b / 14 % 3) * 7
}

struct Buffer {
    bytes: Vec<u8>,
    streamed: bool,
}

struct Frame {
    style: Style,
    buffers: Vec<Buffer>,
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn bytes_of(content: &Content, room: usize) -> Vec<u8> {
    match content {
        Content::Bytes(b) => b.iter().copied().take(room).collect(),
        Content::Fill { len, byte } => vec![*byte; len.get().min(room)],
        Content::Repeat { len, pattern } => {
            let len = len.get().min(room);
            if pattern.is_empty() {
                return vec![0; len];
            }
            let mut out = Vec::with_capacity(len);
            let mut round = 0u8;
            while out.len() < len {
                let start = out.len();
                out.extend_from_slice(pattern);
                if let Some(b) = out.get_mut(start + usize::from(round) % pattern.len()) {
                    *b ^= round | 1;
                }
                round = round.wrapping_add(1);
            }
            out.truncate(len);
            out
        }
        Content::Noise { len, seed } => noise(*seed, len.get().min(room)),
    }
}

fn build(plan: &Plan) -> Vec<Frame> {
    let mut room = MAX_PLAN_BYTES;
    let mut frames = Vec::new();
    for f in plan.frames.iter().take(16) {
        let (lz4, buffers) = match f {
            FramePlan::Buffers { lz4, buffers } => {
                let buffers = buffers
                    .iter()
                    .take(64)
                    .map(|b| {
                        let bytes = bytes_of(&b.content, room);
                        room -= bytes.len();
                        Buffer { bytes, streamed: b.streamed }
                    })
                    .collect();
                (*lz4, buffers)
            }
            FramePlan::Tiny { lz4, count, max_len, seed, streamed } => {
                let lens = noise(*seed, usize::from(*count % 4096));
                let modulus = usize::from(*max_len) + 1;
                let buffers = lens
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let len = (usize::from(*l) % modulus).min(room);
                        room -= len;
                        let bytes = noise(seed ^ i as u64, len);
                        Buffer { bytes, streamed: *streamed && i % 3 == 0 }
                    })
                    .collect();
                (*lz4, buffers)
            }
        };
        frames.push(Frame { style: if lz4 { Style::Lz4 } else { Style::Raw }, buffers });
    }
    frames
}

/// Writes `frames` through `sink`; `streamed` lets RAW buffers marked so use `add_streamed`.
fn write<S: Sink>(sink: S, frames: &[Frame], streamed: bool) -> Result<S, Error> {
    let mut w = Writer::new(sink, ID);
    for (i, frame) in frames.iter().enumerate() {
        let at = w.position();
        let mut f = w.open_frame(frame.style)?;
        assert_eq!((f.offset(), f.index()), (at, i as u64), "frame offset or index at open");
        for b in &frame.buffers {
            if streamed && b.streamed && frame.style == Style::Raw {
                let mut rest = &b.bytes[..];
                f.add_streamed(b.bytes.len(), |piece| {
                    let (now, later) = rest
                        .split_at_checked(piece.len())
                        .expect("add_streamed asked for more bytes than the buffer holds");
                    piece.copy_from_slice(now);
                    rest = later;
                    Ok(())
                })?;
                assert!(rest.is_empty(), "add_streamed asked for fewer bytes than the buffer");
            } else {
                f.add(&b.bytes)?;
            }
        }
        let end = f.close()?;
        assert_eq!(end, w.position(), "frame end differs from the writer's position");
    }
    let summary = w.finish()?;
    assert_eq!(summary.frames, frames.len() as u64);
    assert_eq!(summary.len, w.position());
    Ok(w.into_sink())
}

/// An `io::Write` that takes at most `max` bytes per call, like a small pipe.
struct PieceWriter {
    out: Vec<u8>,
    max: usize,
}

impl Write for PieceWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.max);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `Read` that returns at most `max` bytes per call, like a pipe.
struct Trickle<'a> {
    bytes: &'a [u8],
    max: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.max).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// Frames encoded one by one with `FrameEncoder` and appended, as `ckpt-parallel` does.
fn write_encoded(frames: &[Frame]) -> Result<Vec<u8>, Error> {
    let mut enc = FrameEncoder::new(ID);
    let mut w = Writer::new(VecSink::new(), ID);
    let mut bytes = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let bufs: Vec<&[u8]> = frame.buffers.iter().map(|b| &b.bytes[..]).collect();
        let e = enc.encode(i as u64, frame.style, &bufs, &mut bytes)?;
        assert_eq!(e.len, bytes.len() as u64, "EncodedFrame::len differs from its bytes");
        w.append_encoded(&bytes, &e)?;
    }
    w.finish()?;
    Ok(w.into_sink().into_inner())
}

fn restore_streaming_into<S: Source>(src: S, frames: &[Frame]) {
    let mut r = Reader::new(src);
    for (i, frame) in frames.iter().enumerate() {
        let mut f = r.next_frame().expect("next_frame").expect("a frame is missing");
        assert_eq!((f.index(), f.style()), (i as u64, frame.style));
        for (j, b) in frame.buffers.iter().enumerate() {
            assert_eq!(f.next_len().expect("next_len"), Some(b.bytes.len() as u64));
            let mut got = vec![0u8; b.bytes.len()];
            f.read_into(&mut got).expect("read_into");
            assert!(got == b.bytes, "streaming read_into: frame {i} buffer {j} differs");
        }
        assert_eq!(f.next_len().expect("next_len at the end"), None);
        f.close().expect("close");
    }
    assert!(r.next_frame().expect("next_frame at the end").is_none(), "an extra frame");
    r.finish().expect("finish");
}

fn restore_streaming_to_vec<S: Source>(src: S, frames: &[Frame]) {
    let mut r = Reader::new(src);
    for (i, frame) in frames.iter().enumerate() {
        let mut f = r.next_frame().expect("next_frame").expect("a frame is missing");
        for (j, b) in frame.buffers.iter().enumerate() {
            let got = f.read_to_vec().expect("read_to_vec").expect("a buffer is missing");
            assert!(got == b.bytes, "streaming read_to_vec: frame {i} buffer {j} differs");
        }
        assert!(f.read_to_vec().expect("read_to_vec at the end").is_none(), "an extra buffer");
        f.close().expect("close");
    }
    assert!(r.next_frame().expect("next_frame at the end").is_none(), "an extra frame");
    r.finish().expect("finish");
}

fn restore_indexed(bytes: &[u8], frames: &[Frame]) {
    let mut r = Reader::open(SliceSource::new(bytes)).expect("open by index");
    assert_eq!(r.id(), Some(ID));
    assert_eq!(r.frame_count(), Some(frames.len() as u64));
    let mut next_offset = 0;
    for (i, frame) in frames.iter().enumerate() {
        let info = r.frame_info(i as u64).expect("frame_info");
        assert_eq!(info.index, i as u64);
        assert_eq!(info.offset, next_offset, "frames are not contiguous in the index");
        assert_eq!(info.style, frame.style);
        assert_eq!(info.buffer_count, frame.buffers.len() as u64);
        let user: usize = frame.buffers.iter().map(|b| b.bytes.len()).sum();
        assert_eq!(info.user_bytes, user as u64);
        next_offset = info.offset + info.len;
    }
    for (i, frame) in frames.iter().enumerate().rev() {
        let mut f = r.open_frame(i as u64).expect("open_frame");
        for (j, b) in frame.buffers.iter().enumerate() {
            let mut got = vec![0u8; b.bytes.len()];
            f.read_into(&mut got).expect("read_into");
            assert!(got == b.bytes, "indexed: frame {i} buffer {j} differs");
        }
        let end = f.close().expect("close");
        let info = r.frame_info(i as u64).expect("frame_info");
        assert_eq!(end, info.offset + info.len);
    }
    r.finish().expect("finish");
}

fuzz_target!(|plan: Plan| {
    let frames = build(&plan);
    let reference = write(VecSink::new(), &frames, false).expect("VecSink write").into_inner();

    let bound = checkpoint_size_bound(
        frames.iter().map(|f| (f.style, f.buffers.iter().map(|b| b.bytes.len()))),
    )
    .expect("size bound");
    let len = reference.len() as u64;
    if frames.iter().all(|f| f.style == Style::Raw) {
        assert_eq!(len, bound, "a RAW checkpoint's length differs from its exact bound");
    } else {
        assert!(len <= bound, "length {len} exceeds the bound {bound}");
    }

    match plan.sink {
        SinkChoice::Streamed => {
            let out = write(VecSink::new(), &frames, true).expect("VecSink streamed").into_inner();
            assert!(out == reference, "add_streamed changed the bytes");
        }
        SinkChoice::Slice { short_by } => {
            let mut mem = vec![0u8; usize::try_from(bound).expect("bound fits in memory")];
            let n = write(SliceSink::new(&mut mem), &frames, true).expect("SliceSink write").len();
            assert!(mem[..n] == reference[..], "SliceSink bytes differ");
            if let Some(short) = reference.len().checked_sub(1 + usize::from(short_by)) {
                let mut mem = vec![0u8; short];
                let result = write(SliceSink::new(&mut mem), &frames, true);
                assert!(result.is_err(), "a SliceSink {short} bytes long did not fail");
            }
        }
        SinkChoice::Write { capacity, piece } => {
            let pieces = PieceWriter { out: Vec::new(), max: io_size(piece) };
            let sink = WriteSink::new(BufWriter::with_capacity(usize::from(capacity), pieces));
            let written = write(sink, &frames, true).expect("WriteSink write");
            let out = written.into_inner().into_inner().map_err(|_| "flush").expect("flush").out;
            assert!(out == reference, "WriteSink(BufWriter(pieces)) bytes differ");
        }
        SinkChoice::Encoder => {
            let encoded = write_encoded(&frames).expect("FrameEncoder");
            assert!(encoded == reference, "FrameEncoder + append_encoded bytes differ");
        }
    }

    restore_streaming_into(SliceSource::new(&reference), &frames);
    match plan.restore {
        RestoreChoice::Trickle { max } => {
            let trickle = Trickle { bytes: &reference, max: io_size(max) };
            restore_streaming_to_vec(ReadSource(trickle), &frames);
        }
        RestoreChoice::Indexed => restore_indexed(&reference, &frames),
    }
});
