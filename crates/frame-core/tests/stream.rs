//! `std::io` over frames: `FrameStreamWriter` (`io::Write`) and `FrameReader` (`io::Read`).
//! Streams of any size round-trip through RAW and LZ4; the frame's bytes depend only on
//! the stream, not on how it was split into writes; reads hand out only verified bytes, and
//! damage, a missing chunk or truncation is an error, never a short or wrong stream.

mod common;
use ckpt_frame_core::stream::{FrameStreamWriter, STREAM_PIECE};
use ckpt_frame_core::{Error, Reader, SeekSource, SliceSource, Style, VecSink, Writer};
use common::{ID, Trickle, content};
use std::io::{self, BufWriter, Cursor, ErrorKind, Read, Write};

const KIB: usize = 1024;
const STYLES: [Style; 2] = [Style::Raw, Style::Lz4];

/// One frame of `style` holding `data`, written by `feed` into a stream writer.
fn write_stream(
    style: Style,
    feed: impl FnOnce(&mut FrameStreamWriter<'_, '_, VecSink>) -> io::Result<()>,
) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), ID);
    let mut frame = w.open_frame(style).unwrap().into_stream();
    feed(&mut frame).unwrap();
    frame.close().unwrap();
    w.finish().unwrap();
    w.into_sink().into_inner()
}

/// Frame 0 read back through `io::Read` with reads of at most `step` bytes, from a
/// streaming reader; the frame and the checkpoint are then closed and checked.
fn read_stream(bytes: &[u8], step: usize) -> Vec<u8> {
    let mut r = Reader::new(SliceSource::new(bytes));
    let mut f = r.next_frame().unwrap().expect("a frame");
    let mut out = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= STREAM_PIECE, "one chunk per read at most");
        out.extend_from_slice(&buf[..n]);
    }
    f.close().unwrap();
    assert!(r.next_frame().unwrap().is_none());
    r.finish().unwrap();
    out
}

/// A file holding `data`, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, data: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("ckpt-stream-{}-{name}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// (offset, logical length, stored length) of each chunk of the frame at offset 0.
fn chunks(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut at = 40;
    let mut out = Vec::new();
    while at != footer_offset(bytes) {
        let (logical, stored, table) = (u32_at(at), u32_at(at + 4), u32_at(at + 12));
        out.push((at, logical, stored));
        at += 32 + stored + table;
    }
    out
}

/// Where the footer of a checkpoint's only frame starts: before the 56-byte footer come
/// the 8-byte index header, one 40-byte index entry and the 64-byte tail.
fn footer_offset(bytes: &[u8]) -> usize {
    bytes.len() - 64 - 40 - 8 - 56
}

fn inner(e: &io::Error) -> &Error {
    e.get_ref().and_then(|e| e.downcast_ref::<Error>()).expect("the crate's error inside")
}

#[test]
fn streams_of_every_size_round_trip_through_both_styles() {
    let big = 5 * KIB * KIB;
    for style in STYLES {
        for (i, len) in
            [0, 1, 16 * KIB - 1, 64 * KIB + 1, 64 * KIB + 20_000, big].into_iter().enumerate()
        {
            let data = content(i as u64, len, i % 2 == 0);
            // io::copy from a file (the generic 8 KiB loop) and from a pipe-like reader.
            let file = TempFile::new(&format!("{style:?}-{len}"), &data);
            let from_file = write_stream(style, |f| {
                let copied = io::copy(&mut std::fs::File::open(&file.0)?, f)?;
                assert_eq!(copied, len as u64);
                assert_eq!(f.stream_len(), len as u64);
                Ok(())
            });
            let from_pipe = write_stream(style, |f| {
                io::copy(&mut Trickle { bytes: &data, max: 5_000 }, f).map(drop)
            });
            assert_eq!(from_file, from_pipe, "{style:?} {len}: same stream, same checkpoint");

            let r = Reader::open(SliceSource::new(&from_file)).unwrap();
            let info = r.frame_info(0).unwrap();
            assert_eq!(info.buffer_count, len.div_ceil(STREAM_PIECE) as u64, "{style:?} {len}");
            assert_eq!(info.user_bytes, len as u64);

            for step in [8 * KIB, 1 << 20] {
                assert!(read_stream(&from_file, step) == data, "{style:?} {len} step {step}");
            }
            // Indexed, through a seekable std source.
            let mut r = Reader::open(SeekSource::new(Cursor::new(&from_file)).unwrap()).unwrap();
            let mut f = r.open_frame(0).unwrap();
            let mut back = Vec::new();
            f.read_to_end(&mut back).unwrap();
            f.close().unwrap();
            assert!(back == data, "{style:?} {len} indexed");
        }
    }
}

#[test]
fn the_frame_depends_only_on_the_stream_not_on_the_splits() {
    let len = 5 * STREAM_PIECE + 12_345;
    for (style, compressible) in [(Style::Raw, false), (Style::Lz4, true), (Style::Lz4, false)] {
        let data = content(7, len, compressible);
        let whole = write_stream(style, |f| f.write_all(&data));
        let ways: Vec<(&str, Vec<u8>)> = vec![
            (
                "bytes one by one",
                write_stream(style, |f| data.iter().try_for_each(|b| f.write_all(&[*b]))),
            ),
            (
                "odd sizes",
                write_stream(style, |f| {
                    let mut rest = &data[..];
                    for n in
                        [1, 7, 4096, STREAM_PIECE - 1, STREAM_PIECE + 1, 3, 200_000].iter().cycle()
                    {
                        let (now, later) = rest.split_at((*n).min(rest.len()));
                        assert_eq!(f.write(now)?, now.len(), "a write is never short");
                        rest = later;
                        if rest.is_empty() {
                            return Ok(());
                        }
                    }
                    Ok(())
                }),
            ),
            ("io::copy of a slice", write_stream(style, |f| io::copy(&mut &data[..], f).map(drop))),
            (
                "io::copy of a pipe",
                write_stream(style, |f| {
                    io::copy(&mut Trickle { bytes: &data, max: 777 }, f).map(drop)
                }),
            ),
            (
                "BufWriter with flushes",
                write_stream(style, |f| {
                    let mut b = BufWriter::with_capacity(10_000, f);
                    for (i, piece) in data.chunks(3_333).enumerate() {
                        b.write_all(piece)?;
                        if i % 5 == 0 {
                            b.flush()?;
                        }
                    }
                    b.flush()
                }),
            ),
        ];
        for (how, bytes) in ways {
            assert!(bytes == whole, "{style:?} {how}: same stream, same checkpoint");
        }
        assert!(read_stream(&whole, 64 * KIB) == data);
        if style == Style::Raw {
            // RAW stores exactly what `add` stores for the same 64 KiB pieces.
            let mut w = Writer::new(VecSink::new(), ID);
            let mut f = w.open_frame(style).unwrap();
            f.add_all(data.chunks(STREAM_PIECE)).unwrap();
            f.close().unwrap();
            w.finish().unwrap();
            assert!(w.into_sink().into_inner() == whole);
        }
    }
}

#[test]
fn reads_of_any_size_give_the_same_bytes_one_chunk_at_most() {
    for style in STYLES {
        let data = content(3, 3 * STREAM_PIECE + 999, true);
        let bytes = write_stream(style, |f| f.write_all(&data));
        for step in [1, 13, 4096, STREAM_PIECE, 10 << 20] {
            assert!(read_stream(&bytes, step) == data, "{style:?} reads of {step}");
        }
        let mut r = Reader::new(SliceSource::new(&bytes));
        let mut f = r.next_frame().unwrap().unwrap();
        let mut big = vec![0u8; 1 << 20];
        assert_eq!(f.read(&mut big).unwrap(), STREAM_PIECE);
        assert_eq!(f.read(&mut []).unwrap(), 0, "an empty read is not the end");
        assert_eq!(f.read(&mut big[..10]).unwrap(), 10);
        assert_eq!(big[..10], data[STREAM_PIECE..STREAM_PIECE + 10]);
    }
}

#[test]
fn buffers_and_a_stream_share_a_frame_and_read_back_either_way() {
    for style in STYLES {
        let head = content(1, 100 * KIB, true);
        let streamed = content(2, 2 * STREAM_PIECE + 30_000, true);
        let tail = b"tail".to_vec();
        let mut w = Writer::new(VecSink::new(), ID);
        let mut f = w.open_frame(style).unwrap();
        f.add(&head).unwrap();
        f.add(&[]).unwrap();
        let mut s = f.into_stream();
        io::copy(&mut Trickle { bytes: &streamed, max: 10_000 }, &mut s).unwrap();
        let mut f = s.finish().unwrap();
        f.add(&tail).unwrap();
        f.close().unwrap();
        w.finish().unwrap();
        let bytes = w.into_sink().into_inner();

        // One stream: the buffers' concatenation.
        let all = [&head[..], &streamed, &tail].concat();
        assert!(read_stream(&bytes, 5_000) == all, "{style:?}");

        // Buffer by buffer: the stream is 64 KiB pieces.
        let mut r = Reader::new(SliceSource::new(&bytes));
        let mut f = r.next_frame().unwrap().unwrap();
        let mut lens = Vec::new();
        let mut back = Vec::new();
        while let Some(buf) = f.read_to_vec().unwrap() {
            lens.push(buf.len());
            back.extend_from_slice(&buf);
        }
        f.close().unwrap();
        r.finish().unwrap();
        assert_eq!(lens, [head.len(), 0, STREAM_PIECE, STREAM_PIECE, 30_000, tail.len()]);
        assert!(back == all);
    }
}

#[test]
fn a_read_that_stops_inside_a_buffer_leaves_the_rest_as_the_next_buffer() {
    for style in STYLES {
        let (small, large) = (content(4, 100, true), content(5, 70_000, false));
        let mut w = Writer::new(VecSink::new(), ID);
        let mut frame = w.open_frame(style).unwrap();
        frame.add(&small).unwrap();
        frame.add(&large).unwrap();
        frame.close().unwrap();
        w.finish().unwrap();
        let bytes = w.into_sink().into_inner();

        let mut reader = Reader::new(SliceSource::new(&bytes));
        let mut f = reader.next_frame().unwrap().unwrap();
        let mut ten = [0u8; 10];
        f.read_exact(&mut ten).unwrap();
        assert_eq!(ten, small[..10]);
        assert_eq!(f.next_len().unwrap(), Some(90));
        let mut rest = vec![0u8; 90];
        f.read_into(&mut rest).unwrap();
        assert_eq!(rest, small[10..]);
        let mut some = vec![0u8; 50_000];
        f.read_exact(&mut some).unwrap();
        assert_eq!(f.read_to_vec().unwrap().unwrap(), large[50_000..]);
        assert_eq!(some, large[..50_000]);
        assert_eq!(f.read(&mut ten).unwrap(), 0);
        f.close().unwrap();
        reader.finish().unwrap();
    }
}

#[test]
fn a_damaged_chunk_is_invalid_data_and_no_byte_of_it_is_handed_out() {
    for style in STYLES {
        let data = content(6, 12 * STREAM_PIECE + 5_000, style == Style::Lz4);
        let bytes = write_stream(style, |f| f.write_all(&data));
        let chunks = chunks(&bytes);
        assert_eq!(chunks.len(), 13, "{style:?}: one chunk per piece");
        assert!(chunks[..12].iter().all(|c| c.1 == STREAM_PIECE));
        for k in [0, 5, 12] {
            let (at, _, stored) = chunks[k];
            let mut bad = bytes.clone();
            bad[at + 32 + stored / 2] ^= 0x10;
            let mut r = Reader::new(SliceSource::new(&bad));
            let mut f = r.next_frame().unwrap().unwrap();
            let mut out = Vec::new();
            let mut buf = vec![0u8; 8 * KIB];
            let e = loop {
                match f.read(&mut buf) {
                    Ok(0) => panic!("{style:?} chunk {k}: damage read to the end"),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => break e,
                }
            };
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{style:?} chunk {k}: {e}");
            match inner(&e) {
                Error::ChecksumMismatch { frame: Some(0), offset, .. } => {
                    assert_eq!(*offset, at as u64, "{style:?} chunk {k}: names the chunk");
                }
                other => panic!("{style:?} chunk {k}: {other:?}"),
            }
            assert_eq!(out.len(), k * STREAM_PIECE, "{style:?} chunk {k}: only the chunks before");
            assert!(out == data[..out.len()]);
            let again = f.read(&mut buf).unwrap_err();
            assert!(matches!(inner(&again), Error::Failed { .. }), "the reader stays failed");
        }
    }
}

#[test]
fn a_missing_chunk_is_an_error_not_a_short_stream() {
    let data = content(8, 4 * STREAM_PIECE, false);
    let bytes = write_stream(Style::Raw, |f| f.write_all(&data));
    let c = chunks(&bytes);
    let mut cut = bytes[..c[2].0].to_vec();
    cut.extend_from_slice(&bytes[c[3].0..]);
    let mut r = Reader::new(SliceSource::new(&cut));
    let mut f = r.next_frame().unwrap().unwrap();
    let mut out = Vec::new();
    let e = f.read_to_end(&mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    assert!(matches!(inner(&e), Error::ChecksumMismatch { frame: Some(0), .. }), "{e}");
}

#[test]
fn a_truncated_checkpoint_is_an_error() {
    for style in STYLES {
        let data = content(9, 3 * STREAM_PIECE + 100, true);
        let bytes = write_stream(style, |f| f.write_all(&data));
        let c = chunks(&bytes);
        let footer_at = footer_offset(&bytes);
        let index_at = footer_at + 56;
        for len in [c[1].0 + 20, c[2].0 + 32 + 100, footer_at + 10] {
            let mut r = Reader::new(SliceSource::new(&bytes[..len]));
            let mut f = r.next_frame().unwrap().unwrap();
            let mut out = Vec::new();
            let e = f.read_to_end(&mut out).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{style:?} cut at {len}: {e}");
            assert!(matches!(inner(&e), Error::Truncated { .. }));
            assert!(out.len() % STREAM_PIECE == 0 || out.len() == data.len());
            assert!(out == data[..out.len()], "{style:?} cut at {len}: verified bytes only");
        }
        // Cut inside the index: the frame reads whole, the checkpoint does not finish.
        let mut r = Reader::new(SliceSource::new(&bytes[..index_at + 20]));
        let mut f = r.next_frame().unwrap().unwrap();
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        f.close().unwrap();
        assert!(out == data);
        assert!(matches!(r.finish(), Err(Error::Truncated { .. })));
        // And an indexed reader refuses it outright.
        assert!(Reader::open(SliceSource::new(&bytes[..bytes.len() - 1])).is_err());
    }
}

#[test]
fn several_stream_frames_and_an_empty_one() {
    let mut w = Writer::new(VecSink::new(), ID);
    let streams = [content(10, 100_000, true), Vec::new(), content(11, 1, false)];
    for (i, s) in streams.iter().enumerate() {
        let style = STYLES[i % 2];
        let mut f = w.open_frame(style).unwrap().into_stream();
        f.write_all(s).unwrap();
        f.close().unwrap();
    }
    w.finish().unwrap();
    let bytes = w.into_sink().into_inner();
    let mut r = Reader::new(SliceSource::new(&bytes));
    for s in &streams {
        let mut f = r.next_frame().unwrap().unwrap();
        let mut back = Vec::new();
        f.read_to_end(&mut back).unwrap();
        f.close().unwrap();
        assert!(back == *s);
    }
    assert!(r.next_frame().unwrap().is_none());
}

#[test]
fn lz4_history_never_points_into_the_callers_memory() {
    // Whole pieces are taken straight from the caller's slice; one reused buffer,
    // overwritten after every write, must give the checkpoint of one big write.
    let data = content(12, 8 * 2 * STREAM_PIECE, true);
    let whole = write_stream(Style::Lz4, |f| f.write_all(&data));
    let reused = write_stream(Style::Lz4, |f| {
        let mut buf = vec![0u8; 2 * STREAM_PIECE];
        for piece in data.chunks(buf.len()) {
            buf.copy_from_slice(piece);
            f.write_all(&buf)?;
            buf.fill(0xA5);
        }
        Ok(())
    });
    assert!(reused == whole);
    assert!(read_stream(&reused, 8 * KIB) == data);
}

#[test]
fn a_sink_error_is_the_writes_error() {
    let mut mem = vec![0u8; 50_000];
    let mut w = Writer::new(ckpt_frame_core::SliceSink::new(&mut mem), ID);
    let mut f = w.open_frame(Style::Raw).unwrap().into_stream();
    f.write_all(&vec![1u8; 40_000]).unwrap();
    let e = f.write_all(&vec![2u8; 40_000]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StorageFull, "{e}");
    let again = f.write_all(&vec![3u8; STREAM_PIECE]).unwrap_err();
    assert!(matches!(inner(&again), Error::Failed { .. }), "{again}");
    assert!(matches!(f.close(), Err(Error::Failed { .. })), "the checkpoint is failed");
}
