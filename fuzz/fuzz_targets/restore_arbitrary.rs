//! Invariant: restoring arbitrary bytes, streaming or indexed, never panics, never reads or
//! writes out of bounds (the sanitizer checks), and never allocates beyond what the input
//! can justify (libFuzzer's -malloc_limit_mb checks); it ends in Ok or in an error. When the
//! streaming restore succeeds, the indexed one must agree buffer for buffer, and so must a
//! streaming restore through `FrameReader::read_each` (pieces of at most one chunk, at
//! consecutive offsets), which must also succeed exactly when `read_to_vec` does.
#![no_main]

use ckpt_frame_core::{Reader, SliceSource, Source};
use libfuzzer_sys::fuzz_target;

/// The next buffer through `read_each`, checking the pieces' offsets and sizes.
fn read_pieces<S: Source>(
    f: &mut ckpt_frame_core::FrameReader<'_, S>,
) -> Result<Option<Vec<u8>>, ckpt_frame_core::Error> {
    let mut out = Vec::new();
    let len = f.read_each(|at, piece: &[u8]| -> Result<(), ckpt_frame_core::Error> {
        assert_eq!(at, out.len() as u64, "a piece out of order");
        assert!(piece.len() <= 64 * 1024, "a piece longer than a chunk");
        out.extend_from_slice(piece);
        Ok(())
    })?;
    Ok(len.map(|len| {
        assert_eq!(len, out.len() as u64, "read_each's length differs from its pieces");
        out
    }))
}

/// Every buffer of every frame, or the first error; buffers through `read_each` when
/// `pieces`.
fn restore_with<S: Source>(
    mut r: Reader<S>,
    indexed: bool,
    pieces: bool,
) -> Option<Vec<Vec<Vec<u8>>>> {
    let mut frames = Vec::new();
    loop {
        let next = if indexed {
            let i = frames.len() as u64;
            if Some(i) == r.frame_count() { None } else { Some(r.open_frame(i).ok()?) }
        } else {
            r.next_frame().ok()?
        };
        let Some(mut f) = next else { break };
        let mut bufs = Vec::new();
        loop {
            let next = if pieces { read_pieces(&mut f) } else { f.read_to_vec() };
            let Some(b) = next.ok()? else { break };
            bufs.push(b);
        }
        f.close().ok()?;
        frames.push(bufs);
    }
    r.finish().ok()?;
    Some(frames)
}

fn restore<S: Source>(r: Reader<S>, indexed: bool) -> Option<Vec<Vec<Vec<u8>>>> {
    restore_with(r, indexed, false)
}

fuzz_target!(|data: &[u8]| {
    let streamed = restore(Reader::new(SliceSource::new(data)), false);
    let pieces = restore_with(Reader::new(SliceSource::new(data)), false, true);
    assert_eq!(streamed, pieces, "read_each and read_to_vec disagree");
    let indexed = Reader::open(SliceSource::new(data)).ok().and_then(|r| restore(r, true));
    if let (Some(s), Some(i)) = (&streamed, &indexed) {
        assert_eq!(s, i, "streaming and indexed restores disagree");
    }
    if streamed.is_some() {
        assert!(indexed.is_some(), "a checkpoint that streams must open by index");
    }
});
