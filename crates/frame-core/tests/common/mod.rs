//! Plans, writers and restorers shared by the integration tests.
#![allow(dead_code)]

use ckpt_frame_core::{
    CheckpointId, Error, ReadSource, Reader, SeekSource, Sink, SliceSink, SliceSource, Source,
    Style, VecSink, WriteSink, Writer, checkpoint_size_bound,
};
use std::io::{BufWriter, Cursor, Read};

pub const ID: CheckpointId = CheckpointId::from_bytes(*b"ckpt-test-id-001");

/// What a checkpoint holds: per frame, a style and its buffers.
pub type Plan = Vec<(Style, Vec<Vec<u8>>)>;

/// Deterministic bytes that LZ4 can compress (repeated words with varying numbers) when
/// `compressible`, else xorshift noise.
pub fn content(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(len + 64);
    if compressible {
        let words: [&[u8]; 6] =
            [b"account ", b"balance=", b"slot ", b"lamports ", b"owner:", b"\n"];
        while out.len() < len {
            let r = next();
            out.extend_from_slice(words[(r % 6) as usize]);
            out.extend_from_slice(format!("{}", r % 1000).as_bytes());
        }
    } else {
        while out.len() < len {
            out.extend_from_slice(&next().to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

pub fn write_with<S: Sink>(sink: S, plan: &Plan) -> Result<S, Error> {
    write_plan(Writer::new(sink, ID), plan)
}

/// Writes `plan` with `w` (any identity, any codecs), checking offsets on the way.
pub fn write_plan<S: Sink>(mut w: Writer<S>, plan: &Plan) -> Result<S, Error> {
    for (style, bufs) in plan {
        let offset = w.position();
        let mut f = w.open_frame(*style)?;
        assert_eq!(f.offset(), offset);
        for b in bufs {
            f.add(b)?;
        }
        let end = f.close()?;
        assert_eq!(end, w.position());
    }
    let summary = w.finish()?;
    assert_eq!(summary.len, w.position());
    Ok(w.into_sink())
}

pub fn write_vec(plan: &Plan) -> Vec<u8> {
    write_with(VecSink::new(), plan).expect("write").into_inner()
}

/// A sink that writes through `std::io::Write` in pieces of at most `piece` bytes and never
/// lends memory, standing in for small I/O buffers.
pub struct PieceSink {
    pub out: Vec<u8>,
    pub piece: usize,
}

impl Sink for PieceSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ckpt_frame_core::IoError> {
        for part in bytes.chunks(self.piece) {
            self.out.extend_from_slice(part);
        }
        Ok(())
    }
}

/// Writes `plan` through every sink kind and I/O buffer size; returns each output.
pub fn write_every_way(plan: &Plan) -> Vec<(String, Vec<u8>)> {
    let mut outs = vec![("VecSink".to_string(), write_vec(plan))];
    let bound = checkpoint_size_bound(plan.iter().map(|(s, b)| (*s, b.iter().map(Vec::len))));
    let bound = usize::try_from(bound.expect("bound")).expect("fits in memory");
    let mut mem = vec![0u8; bound];
    let n = write_with(SliceSink::new(&mut mem), plan).expect("slice write").len();
    outs.push(("SliceSink".into(), mem[..n].to_vec()));
    for cap in [1usize, 7, 4096, 1 << 20] {
        let sink = WriteSink::new(BufWriter::with_capacity(cap, Vec::new()));
        let out = write_with(sink, plan).expect("write sink").into_inner().into_inner().unwrap();
        outs.push((format!("WriteSink(BufWriter {cap})"), out));
    }
    outs.push((
        "PieceSink(3)".into(),
        write_with(PieceSink { out: vec![], piece: 3 }, plan).unwrap().out,
    ));
    outs
}

/// A reader that returns at most `max` bytes per read, like a pipe.
pub struct Trickle<'a> {
    pub bytes: &'a [u8],
    pub max: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.max).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// What a restore handed back before stopping: every buffer that was restored without
/// error, and the first error, if any.
pub struct Restored {
    pub frames: Vec<Vec<Vec<u8>>>,
    pub error: Option<Error>,
    /// The checkpoint ran out of frames before the plan did (`next_frame` returned `None`).
    pub ran_out_of_frames: bool,
}

/// Restores `plan` in order from a streaming reader over `source`, using the plan's lengths.
pub fn restore_streaming<S: Source>(source: S, plan: &Plan) -> Restored {
    let mut r = Reader::new(source);
    let mut frames = Vec::new();
    let error = (|| {
        for (_, bufs) in plan {
            let Some(mut f) = r.next_frame()? else { return Err(None) };
            let mut got = Vec::new();
            for b in bufs {
                let mut out = vec![0u8; b.len()];
                f.read_into(&mut out)?;
                got.push(out);
            }
            frames.push(got);
            f.close()?;
        }
        r.finish()?;
        Ok(())
    })();
    let ran_out_of_frames = matches!(error, Err(None));
    Restored { frames, error: error.err().flatten(), ran_out_of_frames }
}

/// Restores `plan` through the index, frames in reverse order.
pub fn restore_indexed<S: Source>(source: S, plan: &Plan) -> Restored {
    let mut frames = vec![Vec::new(); plan.len()];
    let error = (|| {
        let mut r = Reader::open(source)?;
        assert_eq!(r.frame_count(), Some(plan.len() as u64));
        for (i, (style, bufs)) in plan.iter().enumerate().rev() {
            let mut f = r.open_frame(i as u64)?;
            assert_eq!(f.style(), *style);
            let mut got = Vec::new();
            for b in bufs {
                let mut out = vec![0u8; b.len()];
                f.read_into(&mut out)?;
                got.push(out);
            }
            frames[i] = got;
            f.close()?;
        }
        r.finish()?;
        Ok(())
    })();
    Restored { frames, error: error.err(), ran_out_of_frames: false }
}

impl Restored {
    /// Whether the restore stopped short of the plan, by an error or by running out of frames.
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.ran_out_of_frames
    }

    /// Panics unless the restore succeeded and returned exactly `plan`'s bytes.
    pub fn assert_equals(&self, plan: &Plan, what: &str) {
        if let Some(e) = &self.error {
            panic!("{what}: restore failed: {e}");
        }
        assert!(!self.ran_out_of_frames, "{what}: checkpoint ran out of frames");
        assert_eq!(self.frames.len(), plan.len(), "{what}: frame count");
        for (i, ((_, want), got)) in plan.iter().zip(&self.frames).enumerate() {
            assert!(want == got, "{what}: frame {i} restored different bytes");
        }
    }

    /// Panics unless every buffer handed back equals the original.
    pub fn assert_no_wrong_data(&self, plan: &Plan, what: &str) {
        for (i, got) in self.frames.iter().enumerate() {
            for (j, b) in got.iter().enumerate() {
                assert!(*b == plan[i].1[j], "{what}: frame {i} buffer {j} handed back wrong data");
            }
        }
    }
}

/// Every way this test suite restores a checkpoint held in memory.
pub fn restore_every_way(bytes: &[u8], plan: &Plan) -> Vec<(&'static str, Restored)> {
    vec![
        ("streaming SliceSource", restore_streaming(SliceSource::new(bytes), plan)),
        (
            "streaming ReadSource trickle 5",
            restore_streaming(ReadSource(Trickle { bytes, max: 5 }), plan),
        ),
        ("indexed SliceSource", restore_indexed(SliceSource::new(bytes), plan)),
        ("indexed SeekSource", restore_indexed(SeekSource::new(Cursor::new(bytes)).unwrap(), plan)),
    ]
}
