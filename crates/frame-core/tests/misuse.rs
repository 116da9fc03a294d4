//! Misuse of the API, failing storage, unsupported styles and versions: each is a clear
//! error, the handle is failed afterwards and says so, and nothing panics.

mod common;
use ckpt_frame_core::{
    CheckpointId, Error, ErrorKind, IoError, IoErrorKind, Misuse, ReadSource, Reader, Sink,
    SliceSink, SliceSource, Source, Style, VecSink, Writer,
};
use common::*;

fn writer() -> Writer<VecSink> {
    Writer::new(VecSink::new(), ID)
}

#[test]
fn frame_dropped_unclosed_blocks_new_frames_and_finish() {
    let data = vec![1u8; 100];
    let mut w = writer();
    {
        let mut f = w.open_frame(Style::Lz4).unwrap();
        f.add(&data).unwrap();
        // dropped without close
    }
    assert!(matches!(w.open_frame(Style::Raw), Err(Error::InvalidUse(Misuse::FrameAlreadyOpen))));
    assert!(matches!(w.finish(), Err(Error::InvalidUse(Misuse::FinishInsideFrame))));
    let msg = w.finish().unwrap_err().to_string();
    assert!(msg.contains("finish called while a frame is open"), "{msg}");
}

#[test]
fn finished_checkpoint_takes_nothing_more() {
    let mut w = writer();
    w.finish().unwrap();
    assert!(matches!(w.finish(), Err(Error::InvalidUse(Misuse::AlreadyFinished))));
    assert!(matches!(w.open_frame(Style::Raw), Err(Error::InvalidUse(Misuse::AlreadyFinished))));
    assert_eq!(w.into_sink().into_inner().len(), 72, "nothing written after finish");
}

#[test]
fn reader_misuse() {
    let plan = vec![(Style::Raw, vec![vec![1; 4]]), (Style::Lz4, vec![vec![2; 4]])];
    let bytes = write_vec(&plan);

    let mut streaming = Reader::new(SliceSource::new(&bytes));
    assert!(matches!(streaming.open_frame(0), Err(Error::InvalidUse(Misuse::NotSeekable))));
    let unclosed = streaming.next_frame().unwrap().unwrap();
    let _ = unclosed; // its frame is never closed
    assert!(matches!(streaming.next_frame(), Err(Error::InvalidUse(Misuse::FrameAlreadyOpen))));
    assert!(matches!(streaming.finish(), Err(Error::InvalidUse(Misuse::FinishInsideFrame))));

    let mut indexed = Reader::open(SliceSource::new(&bytes)).unwrap();
    assert!(matches!(
        indexed.open_frame(2),
        Err(Error::InvalidUse(Misuse::NoSuchFrame { index: 2, frame_count: 2 }))
    ));
    let mut f = indexed.open_frame(1).unwrap();
    assert_eq!(f.next_len().unwrap(), Some(4));
    assert_eq!(f.read_to_vec().unwrap(), Some(vec![2; 4]));
    assert_eq!(f.next_len().unwrap(), None);
    assert_eq!(f.read_to_vec().unwrap(), None);
    f.close().unwrap();
    // Frames can be reopened in any order.
    let mut f = indexed.open_frame(0).unwrap();
    assert_eq!(f.read_to_vec().unwrap(), Some(vec![1; 4]));
    f.close().unwrap();

    let pipe = ReadSource(Trickle { bytes: &bytes, max: 100 });
    assert!(matches!(Reader::open(pipe), Err(Error::InvalidUse(Misuse::NotSeekable))));
}

/// A sink that fails its Nth call (redb's way of testing every I/O failure point).
struct FailingSink {
    inner: VecSink,
    calls: usize,
    fail_at: usize,
}

impl Sink for FailingSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(IoError::new(IoErrorKind::Other, "injected write failure"));
        }
        self.inner.write_all(bytes)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(IoError::new(IoErrorKind::Other, "injected flush failure"));
        }
        Ok(())
    }
}

fn mixed_plan() -> Plan {
    vec![
        (Style::Lz4, vec![content(1, 100, true), content(2, 70_000, true), vec![]]),
        (Style::Raw, vec![content(3, 20_000, false), content(4, 5, false)]),
    ]
}

#[test]
fn every_failing_write_is_reported_and_fails_the_writer() {
    let plan = mixed_plan();
    let mut failures = 0;
    for fail_at in 1.. {
        let sink = FailingSink { inner: VecSink::new(), calls: 0, fail_at };
        let mut w = Writer::new(sink, ID);
        let result = (|| {
            for (style, bufs) in &plan {
                let mut f = w.open_frame(*style)?;
                f.add_all(bufs.iter().map(Vec::as_slice))?;
                f.close()?;
            }
            w.finish()
        })();
        let Err(e) = result else {
            assert!(fail_at > 3, "the plan needs several writes");
            break;
        };
        failures += 1;
        assert!(matches!(e, Error::Io { .. }), "fail_at {fail_at}: {e:?}");
        assert!(e.to_string().contains("injected"), "{e}");
        // The writer is failed and says why.
        match w.finish() {
            Err(Error::Failed { first: ErrorKind::Io }) => {}
            other => panic!("fail_at {fail_at}: writer not failed: {other:?}"),
        }
        assert!(matches!(w.open_frame(Style::Raw), Err(Error::Failed { first: ErrorKind::Io })));
    }
    assert!(failures >= 5, "only {failures} failure points");
}

#[test]
fn full_memory_sink_is_an_io_error_not_a_panic() {
    let plan = mixed_plan();
    let full = write_vec(&plan).len();
    for cap in [0, 1, 39, 40, 100, 1000, full / 2, full - 1] {
        let mut mem = vec![0u8; cap];
        let e = write_with(SliceSink::new(&mut mem), &plan).unwrap_err();
        match &e {
            Error::Io { error, .. } => assert_eq!(error.kind(), IoErrorKind::StorageFull, "{e}"),
            other => panic!("capacity {cap}: {other:?}"),
        }
    }
}

/// A source that fails its Nth read.
struct FailingSource<'a> {
    inner: SliceSource<'a>,
    calls: usize,
    fail_at: usize,
}

impl Source for FailingSource<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err(IoError::new(IoErrorKind::Other, "injected read failure"));
        }
        self.inner.read_exact(buf)
    }
    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        self.inner.total_len()
    }
    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        self.inner.seek(offset)
    }
}

#[test]
fn every_failing_read_is_reported() {
    let plan = mixed_plan();
    let bytes = write_vec(&plan);
    for indexed in [false, true] {
        for fail_at in 1.. {
            let src = FailingSource { inner: SliceSource::new(&bytes), calls: 0, fail_at };
            let r =
                if indexed { restore_indexed(src, &plan) } else { restore_streaming(src, &plan) };
            match r.error {
                None => break,
                Some(Error::Io { .. }) => r.assert_no_wrong_data(&plan, "failing read"),
                Some(e) => panic!("fail_at {fail_at}: expected an I/O error, got {e}"),
            }
        }
    }
}

#[test]
fn lz4_without_a_codec_is_unsupported() {
    let mut w = Writer::with_codecs(VecSink::new(), ID, None);
    assert!(matches!(
        w.open_frame(Style::Lz4),
        Err(Error::UnsupportedStyle { style: 1, frame: None })
    ));
    // RAW still works and the writer is not failed by the refusal.
    let mut f = w.open_frame(Style::Raw).unwrap();
    f.add(b"ok").unwrap();
    f.close().unwrap();
    w.finish().unwrap();

    let bytes = write_vec(&vec![(Style::Lz4, vec![vec![5; 10]])]);
    let mut r = Reader::with_codecs(SliceSource::new(&bytes), None);
    assert!(matches!(r.next_frame(), Err(Error::UnsupportedStyle { style: 1, frame: Some(0) })));
}

fn rewrite_check(bytes: &mut [u8], range: std::ops::Range<usize>, check_at: usize) {
    let check = xxhash_rust::xxh3::xxh3_64(&bytes[range]);
    bytes[check_at..check_at + 8].copy_from_slice(&check.to_le_bytes());
}

#[test]
fn other_format_versions_are_refused_by_name() {
    let plan = vec![(Style::Raw, vec![vec![1; 3]])];
    let clean = write_vec(&plan);

    // A frame header claiming version 3 with a valid check value.
    let mut v3 = clean.clone();
    v3[4..6].copy_from_slice(&3u16.to_le_bytes());
    rewrite_check(&mut v3, 0..32, 32);
    match restore_streaming(SliceSource::new(&v3), &plan).error {
        Some(Error::VersionMismatch { offset: 0, found: 3, supported: 2 }) => {}
        other => panic!("{other:?}"),
    }

    // A tail claiming version 3.
    let mut v3 = clean.clone();
    let tail = v3.len() - 64;
    v3[tail + 40..tail + 42].copy_from_slice(&3u16.to_le_bytes());
    rewrite_check(&mut v3, tail..tail + 48, tail + 48);
    let e = Reader::open(SliceSource::new(&v3)).unwrap_err();
    assert!(matches!(e, Error::VersionMismatch { found: 3, .. }), "{e:?}");
    assert!(e.to_string().contains("format version 3"), "{e}");

    // Version 2 (a checkpoint with a parent) in only one place: a version-2 frame in a
    // version-1 checkpoint, and a version-2 tail over an index without a parent record.
    let mut mixed = clean.clone();
    mixed[4..6].copy_from_slice(&2u16.to_le_bytes());
    rewrite_check(&mut mixed, 0..32, 32);
    // (The footer's check is bound to the header's, so either may be what fails.)
    for e in [
        restore_streaming(SliceSource::new(&mixed), &plan).error,
        restore_indexed(SliceSource::new(&mixed), &plan).error,
    ] {
        assert!(matches!(e, Some(Error::Corrupt { .. } | Error::ChecksumMismatch { .. })), "{e:?}");
    }
    let mut mixed = clean.clone();
    mixed[tail + 40..tail + 42].copy_from_slice(&2u16.to_le_bytes());
    rewrite_check(&mut mixed, tail..tail + 48, tail + 48);
    let e = Reader::open(SliceSource::new(&mixed)).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
}

#[test]
fn unknown_style_byte_is_unsupported() {
    let plan = vec![(Style::Raw, vec![vec![1; 3]])];
    let mut bad = write_vec(&plan);
    bad[6] = 7;
    rewrite_check(&mut bad, 0..32, 32);
    match restore_streaming(SliceSource::new(&bad), &plan).error {
        Some(Error::UnsupportedStyle { style: 7, frame: Some(0) }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_a_checkpoint() {
    for junk in [&b""[..], b"hello", &[0u8; 200][..], &[0xFFu8; 4096][..]] {
        assert!(Reader::open(SliceSource::new(junk)).is_err());
        let mut r = Reader::new(SliceSource::new(junk));
        assert!(r.next_frame().is_err());
    }
    let e = Reader::open(SliceSource::new(&[0u8; 200])).unwrap_err();
    assert!(e.to_string().contains("not a ckpt checkpoint"), "{e}");
}

#[test]
fn errors_convert_to_std_io_errors() {
    let e = Error::Truncated { offset: 5, what: "chunk data" };
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
    let io: std::io::Error = Error::InvalidUse(Misuse::AlreadyFinished).into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    let from_os = IoError::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
    assert_eq!(from_os.kind(), IoErrorKind::StorageFull);
    assert!(std::error::Error::source(&from_os).is_some());
    assert_eq!(CheckpointId::from_bytes([0xAB; 16]).to_string(), "ab".repeat(16));
}

#[test]
fn unknown_style_in_a_valid_index_is_unsupported() {
    let plan = vec![(Style::Raw, vec![vec![1; 3]])];
    let mut bad = write_vec(&plan);
    let tail = bad.len() - 64;
    let index = tail - 40 - 8;
    bad[index + 8 + 32] = 9; // entry 0's style byte
    let digest = xxhash_rust::xxh3::xxh3_64(&bad[index..tail]);
    bad[tail + 32..tail + 40].copy_from_slice(&digest.to_le_bytes());
    rewrite_check(&mut bad, tail..tail + 48, tail + 48);
    let e = Reader::open(SliceSource::new(&bad)).unwrap_err();
    assert!(matches!(e, Error::UnsupportedStyle { style: 9, frame: Some(0) }), "{e:?}");
}
