//! `Writer::append_in_place`: frames encoded straight into the sink's memory give the bytes
//! the serial writer gives, and every misuse of the slots is refused without writing
//! anything but the frames before it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

use ckpt_frame_core::{
    CheckpointId, Error, FrameEncoder, Misuse, Reader, SliceSink, SliceSource, Style, VecSink,
    Writer, frame_size_bound,
};

type Slots<'m> = Vec<ckpt_frame_core::FrameSlot<'m>>;
type Results = Vec<Result<ckpt_frame_core::EncodedFrame, Error>>;
type EncodeFn<'a> = dyn for<'m> FnOnce(Slots<'m>) -> Results + 'a;

const ID: CheckpointId = CheckpointId::from_bytes([8; 16]);

fn frames() -> Vec<(Style, Vec<Vec<u8>>)> {
    (0..9u32)
        .map(|f| {
            let style = if f % 2 == 0 { Style::Raw } else { Style::Lz4 };
            let text: Vec<u8> =
                (0..40_000 + f * 9_000).map(|i| b"checkpoint "[(i % 11) as usize]).collect();
            let noise: Vec<u8> = (0..5_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> (f % 7 + 9)) as u8)
                .collect();
            (style, vec![text, Vec::new(), noise, vec![f as u8; 30]])
        })
        .collect()
}

fn refs(bufs: &[Vec<u8>]) -> Vec<&[u8]> {
    bufs.iter().map(Vec::as_slice).collect()
}

fn room(frames: &[(Style, Vec<Vec<u8>>)]) -> Vec<usize> {
    frames
        .iter()
        .map(|(s, b)| frame_size_bound(*s, b.iter().map(Vec::len)).unwrap() as usize)
        .collect()
}

fn serial(frames: &[(Style, Vec<Vec<u8>>)]) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), ID);
    for (style, bufs) in frames {
        let mut f = w.open_frame(*style).unwrap();
        f.add_all(refs(bufs)).unwrap();
        f.close().unwrap();
    }
    w.finish().unwrap();
    w.into_sink().into_inner()
}

fn encode_all(
    frames: &[(Style, Vec<Vec<u8>>)],
) -> impl for<'m> FnOnce(
    Vec<ckpt_frame_core::FrameSlot<'m>>,
) -> Vec<Result<ckpt_frame_core::EncodedFrame, Error>>
+ '_ {
    move |slots| {
        let mut enc = FrameEncoder::new(ID);
        slots
            .into_iter()
            .zip(frames)
            .map(|(slot, (s, b))| slot.encode(&mut enc, *s, &refs(b)))
            .collect()
    }
}

#[test]
fn same_bytes_as_the_serial_writer_in_slices_and_vecs() {
    let frames = frames();
    let reference = serial(&frames);
    let room = room(&frames);
    // A slice sink with just enough room for the worst case, and a growing vector.
    let mut mem = vec![0u8; room.iter().sum::<usize>() + 4096];
    let mut w = Writer::new(SliceSink::new(&mut mem), ID);
    assert_eq!(w.append_in_place(&room[..4], encode_all(&frames[..4])).unwrap(), Some(4));
    assert_eq!(w.append_in_place(&room[4..], encode_all(&frames[4..])).unwrap(), Some(5));
    let len = w.finish().unwrap().len as usize;
    assert!(mem[..len] == reference[..], "slice sink bytes differ from the serial writer");

    let mut w = Writer::new(VecSink::new(), ID);
    assert_eq!(w.append_in_place(&room, encode_all(&frames)).unwrap(), Some(9));
    w.finish().unwrap();
    assert!(w.into_sink().into_inner() == reference);
}

#[test]
fn a_failed_slot_keeps_the_frames_before_it_and_the_writer_usable() {
    let frames = frames();
    let mut room = room(&frames);
    // Frame 3 gets too little room: its encoding fails with StorageFull.
    room[3] = 100;
    let mut w = Writer::new(VecSink::new(), ID);
    let e = w.append_in_place(&room, encode_all(&frames)).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert_eq!(w.frames_written(), 3);
    // The writer goes on from frame 3.
    for (style, bufs) in &frames[3..] {
        let mut f = w.open_frame(*style).unwrap();
        f.add_all(refs(bufs)).unwrap();
        f.close().unwrap();
    }
    w.finish().unwrap();
    assert!(w.into_sink().into_inner() == serial(&frames));
}

#[test]
fn results_that_do_not_describe_their_slot_are_refused() {
    let frames = frames();
    let room = room(&frames[..3]);
    let foreign = CheckpointId::from_bytes([9; 16]);
    let cases: Vec<(&str, Box<EncodeFn<'_>>)> = vec![
        (
            "too few results",
            Box::new(|slots: Slots<'_>| {
                let mut enc = FrameEncoder::new(ID);
                let (s, b) = &frames[0];
                slots.into_iter().take(1).map(|slot| slot.encode(&mut enc, *s, &refs(b))).collect()
            }),
        ),
        (
            "another checkpoint's encoder",
            Box::new(|slots: Slots<'_>| {
                let mut enc = FrameEncoder::new(foreign);
                slots
                    .into_iter()
                    .zip(&frames)
                    .map(|(slot, (s, b))| slot.encode(&mut enc, *s, &refs(b)))
                    .collect()
            }),
        ),
        (
            "a result claiming more bytes",
            Box::new(|slots: Slots<'_>| {
                let mut enc = FrameEncoder::new(ID);
                slots
                    .into_iter()
                    .zip(&frames)
                    .map(|(slot, (s, b))| {
                        let mut f = slot.encode(&mut enc, *s, &refs(b))?;
                        f.len += 1_000_000;
                        Ok(f)
                    })
                    .collect()
            }),
        ),
        (
            "a result from elsewhere, slot left empty",
            Box::new(|_slots: Slots<'_>| {
                let mut enc = FrameEncoder::new(ID);
                let mut out = Vec::new();
                frames
                    .iter()
                    .take(3)
                    .enumerate()
                    .map(|(i, (s, b))| enc.encode(i as u64, *s, &refs(b), &mut out))
                    .collect()
            }),
        ),
    ];
    for (what, encode) in cases {
        let mut w = Writer::new(VecSink::new(), ID);
        let first = match what {
            "too few results" => 1,
            _ => 0,
        };
        match w.append_in_place(&room, encode) {
            Err(Error::InvalidUse(Misuse::ForeignFrame)) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(w.frames_written(), first, "{what}");
        w.finish().unwrap();
        let bytes = w.into_sink().into_inner();
        let r = Reader::open(SliceSource::new(&bytes)).unwrap();
        assert_eq!(r.frame_count(), Some(first), "{what}: only checked frames are in the index");
    }
}

#[test]
fn a_sink_that_lends_no_memory_is_told_apart() {
    struct NoLend(Vec<u8>);
    impl ckpt_frame_core::Sink for NoLend {
        fn write_all(&mut self, bytes: &[u8]) -> Result<(), ckpt_frame_core::IoError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }
    let frames = frames();
    let mut w = Writer::new(NoLend(Vec::new()), ID);
    let mut called = false;
    let r = w.append_in_place(&room(&frames), |_| {
        called = true;
        Vec::new()
    });
    assert_eq!(r.unwrap(), None);
    assert!(!called && w.frames_written() == 0);
}
