//! Invariant: restoring arbitrary bytes, streaming or indexed, never panics, never reads or
//! writes out of bounds (the sanitizer checks), and never allocates beyond what the input
//! can justify (libFuzzer's -malloc_limit_mb checks); it ends in Ok or in an error. When the
//! streaming restore succeeds, the indexed one must agree buffer for buffer.
#![no_main]

use ckpt_frame_core::{Reader, SliceSource, Source};
use libfuzzer_sys::fuzz_target;

/// Every buffer of every frame, or the first error.
fn restore<S: Source>(mut r: Reader<S>, indexed: bool) -> Option<Vec<Vec<Vec<u8>>>> {
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
        while let Some(b) = f.read_to_vec().ok()? {
            bufs.push(b);
        }
        f.close().ok()?;
        frames.push(bufs);
    }
    r.finish().ok()?;
    Some(frames)
}

fuzz_target!(|data: &[u8]| {
    let streamed = restore(Reader::new(SliceSource::new(data)), false);
    let indexed = Reader::open(SliceSource::new(data)).ok().and_then(|r| restore(r, true));
    if let (Some(s), Some(i)) = (&streamed, &indexed) {
        assert_eq!(s, i, "streaming and indexed restores disagree");
    }
    if streamed.is_some() {
        assert!(indexed.is_some(), "a checkpoint that streams must open by index");
    }
});
