//! Invariant: restoring a checkpoint that builds on a parent (format version 2), with
//! arbitrary damage to the child, the parent or both, never panics and never returns bytes
//! other than the state the child was written from: every restore, indexed or streaming,
//! ends in that state or in an error.
//!
//! A parent (a RAW frame of gathered and direct chunks, an LZ4 frame) and a child that
//! changed a few chunks of each are built once per process; each input applies its damage
//! records (which file, offset, xor mask) to copies of them and restores.
#![no_main]

use ckpt_frame_core::{
    CheckpointId, ParentChunks, ParentReader, Reader, SliceSource, Style, VecSink, Writer,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

type State = Vec<(Style, Vec<Vec<u8>>)>;

struct Fixture {
    parent: Vec<u8>,
    child: Vec<u8>,
    state: State,
}

fn bytes(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| ((i / 7).wrapping_mul(2_654_435_761) ^ seed) as u8 % 23).collect()
}

fn write(id: u8, state: &State, parent: Option<&[u8]>) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([id; 16]));
    if let Some(p) = parent {
        let mut r = Reader::open(SliceSource::new(p)).unwrap();
        w.set_parent(ParentChunks::read(&mut r).unwrap()).unwrap();
    }
    for (style, bufs) in state {
        let mut f = w.open_frame(*style).unwrap();
        for b in bufs {
            f.add(b).unwrap();
        }
        f.close().unwrap();
    }
    w.finish().unwrap();
    w.into_sink().into_inner()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base: State = vec![
            (Style::Raw, vec![bytes(1, 300), Vec::new(), bytes(2, 200_000), bytes(3, 5)]),
            (Style::Lz4, vec![bytes(4, 300_000), bytes(5, 40)]),
        ];
        let parent = write(1, &base, None);
        let mut state = base;
        state[0].1[2][70_000] ^= 1;
        state[1].1[0][10] ^= 1;
        state[1].1[0][200_000] ^= 1;
        let child = write(2, &state, Some(&parent));
        Fixture { parent, child, state }
    })
}

fn restore_indexed(parent: &[u8], child: &[u8]) -> Option<State> {
    let mut p = ParentReader::new(Reader::open(SliceSource::new(parent)).ok()?, None).ok()?;
    let mut r = Reader::open(SliceSource::new(child)).ok()?;
    let mut out = Vec::new();
    for i in 0..r.frame_count()? {
        let mut f = r.open_frame_inheriting(i, &mut p).ok()?;
        let style = f.style();
        let mut bufs = Vec::new();
        while let Some(len) = f.next_len().ok()? {
            let mut b = vec![0u8; usize::try_from(len).ok()?.min(1 << 20)];
            f.read_into(&mut b).ok()?;
            bufs.push(b);
        }
        f.close().ok()?;
        out.push((style, bufs));
    }
    Some(out)
}

fn restore_streaming(parent: &[u8], child: &[u8]) -> Option<State> {
    let mut p = ParentReader::new(Reader::open(SliceSource::new(parent)).ok()?, None).ok()?;
    let mut r = Reader::new(SliceSource::new(child));
    let mut out = Vec::new();
    while let Some(mut f) = r.next_frame_inheriting(&mut p).ok()? {
        let style = f.style();
        let mut bufs = Vec::new();
        while let Some(b) = f.read_to_vec().ok()? {
            bufs.push(b);
        }
        f.close().ok()?;
        out.push((style, bufs));
    }
    r.finish().ok()?;
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (mut parent, mut child) = (f.parent.clone(), f.child.clone());
    // Damage: 5-byte records (file bit + offset in 31 bits, xor mask).
    for rec in data.chunks_exact(5).take(32) {
        let word = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let target = if word >> 31 == 0 { &mut child } else { &mut parent };
        let at = (word & 0x7fff_ffff) as usize % target.len();
        target[at] ^= rec[4] | 1;
    }
    let undamaged = data.len() < 5;
    for got in [restore_indexed(&parent, &child), restore_streaming(&parent, &child)] {
        assert!(got.is_some() || !undamaged, "an undamaged chain failed to restore");
        if let Some(state) = got {
            assert!(state == f.state, "a restore returned another state than was written");
        }
    }
});
