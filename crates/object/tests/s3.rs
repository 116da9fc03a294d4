//! `ObjectSink` and `ObjectSource` against a real S3 server (`SeaweedFS`, see
//! `common/mod.rs`): multipart round trips, byte identity with a local write, aborted
//! uploads, and the errors for wrong credentials, a missing bucket and a missing key.

mod common;

use common::noise;

use ckpt_frame_core::{CheckpointId, Error, Reader, Sink, Style, VecSink, Writer};
use ckpt_object::{MIN_PART_SIZE, ObjectError, ObjectSink, ObjectSource, UploadOptions};
use common::{BUCKET, Weed};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// Compressible text.
fn text(len: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy checkpoint 0123456789\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Frames of RAW and LZ4 buffers, about 26 MiB in all (over five 5 MiB parts).
fn sample_frames() -> Vec<(Style, Vec<Vec<u8>>)> {
    vec![
        (Style::Raw, vec![noise(3 * MIB, 1), Vec::new(), text(100)]),
        (Style::Lz4, vec![noise(6 * MIB + 17, 2), text(2 * MIB)]),
        (Style::Raw, vec![noise(5 * MIB, 3)]),
        (Style::Lz4, vec![text(MIB), noise(7 * MIB, 4), vec![9; 1]]),
        (Style::Lz4, vec![noise(2 * MIB, 5)]),
    ]
}

fn write_checkpoint<S: Sink>(sink: S, id: CheckpointId, frames: &[(Style, Vec<Vec<u8>>)]) -> S {
    let mut writer = Writer::new(sink, id);
    for (style, buffers) in frames {
        let mut frame = writer.open_frame(*style).expect("open frame");
        for buffer in buffers {
            frame.add(buffer).expect("add buffer");
        }
        frame.close().expect("close frame");
    }
    writer.finish().expect("finish checkpoint");
    writer.into_sink()
}

fn read_streaming(source: ObjectSource, frames: &[(Style, Vec<Vec<u8>>)]) {
    let mut reader = Reader::new(source);
    for (index, (_, buffers)) in frames.iter().enumerate() {
        let mut frame = reader.next_frame().expect("next frame").expect("a frame");
        assert_eq!(frame.index(), index as u64);
        for buffer in buffers {
            let mut restored = vec![0u8; buffer.len()];
            frame.read_into(&mut restored).expect("restore buffer");
            assert!(restored == *buffer, "frame {index}: restored bytes differ");
        }
        frame.close().expect("close frame");
    }
    assert!(reader.next_frame().expect("end").is_none());
    reader.finish().expect("finish restore");
}

/// Restores the frames through the index, last first; returns the requests sent.
fn read_indexed(source: ObjectSource, frames: &[(Style, Vec<Vec<u8>>)]) -> u64 {
    let mut reader = Reader::open(source).expect("open through the index");
    assert_eq!(reader.frame_count(), Some(frames.len() as u64));
    for (index, (_, buffers)) in frames.iter().enumerate().rev() {
        let mut frame = reader.open_frame(index as u64).expect("open frame");
        for buffer in buffers {
            let mut restored = vec![0u8; buffer.len()];
            frame.read_into(&mut restored).expect("restore buffer");
            assert!(restored == *buffer, "frame {index}: restored bytes differ");
        }
        frame.close().expect("close frame");
    }
    reader.into_source().requests()
}

fn read_all(source: &mut ObjectSource) -> Vec<u8> {
    let mut bytes = vec![0u8; usize::try_from(source.len()).expect("fits")];
    ckpt_frame_core::Source::read_exact(source, &mut bytes).expect("read the whole object");
    bytes
}

#[test]
fn multipart_round_trip_streaming_and_indexed_is_byte_identical_to_a_local_write() {
    let Some(weed) = Weed::start("multipart_round_trip") else { return };
    let client = weed.client(BUCKET);
    let frames = sample_frames();
    let id = CheckpointId::generate();

    let options = UploadOptions::default()
        .with_part_size(MIN_PART_SIZE)
        .unwrap()
        .with_max_in_flight(3)
        .unwrap();
    assert_eq!(options.memory_bound(), 4 * MIN_PART_SIZE);
    let sink = ObjectSink::create(&client, "runs/1/state.ckpt", options).unwrap();
    let sink = write_checkpoint(sink, id, &frames);
    // Not visible before complete.
    assert!(matches!(
        ObjectSource::open(&client, "runs/1/state.ckpt"),
        Err(ObjectError::NoSuchKey { .. })
    ));
    let summary = sink.complete().expect("complete the upload");
    assert!(summary.parts > 3, "expected more than 3 parts, got {summary:?}");

    let local = write_checkpoint(VecSink::new(), id, &frames).into_inner();
    assert_eq!(summary.bytes, local.len() as u64);
    let mut source = ObjectSource::open(&client, "runs/1/state.ckpt").unwrap();
    assert_eq!(source.len(), local.len() as u64);
    assert!(read_all(&mut source) == local, "object bytes differ from the local write");

    read_streaming(ObjectSource::open(&client, "runs/1/state.ckpt").unwrap(), &frames);
    let source = ObjectSource::open(&client, "runs/1/state.ckpt").unwrap().with_read_ahead(MIB);
    let requests = read_indexed(source, &frames);
    // HEAD, tail, index, then one GET per MiB of frame bytes plus one seek per frame
    // (and the prefetch each seek starts).
    let bound = 3 + local.len() / MIB + 2 * frames.len() + 2;
    assert!(
        usize::try_from(requests).unwrap() <= bound,
        "{requests} requests for an indexed restore (bound {bound})"
    );
    eprintln!("indexed restore of {} bytes: {requests} requests", local.len());
}

#[test]
fn small_checkpoint_is_one_put_and_reads_back() {
    let Some(weed) = Weed::start("small_checkpoint") else { return };
    let client = weed.client(BUCKET);
    let frames = vec![(Style::Lz4, vec![text(1000), Vec::new()]), (Style::Raw, vec![noise(10, 9)])];
    let id = CheckpointId::generate();
    let sink = ObjectSink::create(&client, "small.ckpt", UploadOptions::default()).unwrap();
    let summary = write_checkpoint(sink, id, &frames).complete().unwrap();
    assert_eq!(summary.parts, 0);
    let local = write_checkpoint(VecSink::new(), id, &frames).into_inner();
    let mut source = ObjectSource::open(&client, "small.ckpt").unwrap();
    assert!(read_all(&mut source) == local);
    read_streaming(ObjectSource::open(&client, "small.ckpt").unwrap(), &frames);
    read_indexed(ObjectSource::open(&client, "small.ckpt").unwrap(), &frames);
}

#[test]
fn an_upload_dropped_or_failed_midway_leaves_no_object() {
    let Some(weed) = Weed::start("aborted_uploads") else { return };
    let client = weed.client(BUCKET);
    let options = UploadOptions::default().with_part_size(MIN_PART_SIZE).unwrap();

    // Dropped after several parts went out, without complete.
    let mut sink = ObjectSink::create(&client, "dropped.ckpt", options).unwrap();
    sink.write_all(&noise(3 * MIN_PART_SIZE + 100, 7)).unwrap();
    assert!(sink.parts_sent() >= 3);
    drop(sink);
    assert!(matches!(
        ObjectSource::open(&client, "dropped.ckpt"),
        Err(ObjectError::NoSuchKey { .. })
    ));

    // The writer fails mid-frame (the caller's input breaks) after parts went out.
    let sink = ObjectSink::create(&client, "failed.ckpt", options).unwrap();
    let mut writer = Writer::new(sink, CheckpointId::generate());
    let big = noise(2 * MIN_PART_SIZE, 8);
    let mut frame = writer.open_frame(Style::Raw).unwrap();
    frame.add(&big).unwrap();
    let failed = frame.add_streamed(4 * MIB, |_chunk: &mut [u8]| {
        Err(ckpt_frame_core::IoError::new(ckpt_frame_core::IoErrorKind::Other, "input broke"))
    });
    assert!(matches!(failed, Err(Error::Input { .. })), "{failed:?}");
    drop(writer);
    assert!(matches!(
        ObjectSource::open(&client, "failed.ckpt"),
        Err(ObjectError::NoSuchKey { .. })
    ));

    // The server refuses a part (missing bucket) mid-checkpoint: the write fails there and
    // the sink refuses to go on.
    let gone = weed.client("no-such-bucket");
    let mut sink = ObjectSink::create(&gone, "x.ckpt", options).unwrap();
    let error = sink.write_all(&noise(MIN_PART_SIZE + 1, 9)).expect_err("no bucket");
    assert!(error.to_string().contains("no-such-bucket"), "{error}");
    let again = sink.write_all(b"more").expect_err("refused after the failure");
    assert!(again.to_string().contains("failed earlier"), "{again}");
}

#[test]
fn wrong_credentials_missing_bucket_and_missing_key_fail_fast_and_name_the_object() {
    let Some(weed) = Weed::start("error_messages") else { return };
    let endpoint = weed.endpoint.clone();

    // Something to read with wrong credentials.
    let client = weed.client(BUCKET);
    let mut sink = ObjectSink::create(&client, "present.ckpt", UploadOptions::default()).unwrap();
    sink.write_all(b"not a checkpoint, but an object").unwrap();
    sink.complete().unwrap();

    let started = Instant::now();
    let wrong = ckpt_object::ObjectClient::s3(
        &weed.settings_with(common::ACCESS_KEY, "not-the-secret"),
        BUCKET,
    )
    .unwrap();
    let error = ObjectSource::open(&wrong, "present.ckpt").expect_err("wrong secret");
    assert!(matches!(error, ObjectError::AccessDenied { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&endpoint) && message.contains("present.ckpt"), "{message}");
    let unknown =
        ckpt_object::ObjectClient::s3(&weed.settings_with("nobody", "nothing"), BUCKET).unwrap();
    let mut sink = ObjectSink::create(&unknown, "new.ckpt", UploadOptions::default()).unwrap();
    sink.write_all(b"bytes").unwrap();
    let error = sink.complete().expect_err("unknown access key");
    assert!(matches!(error, ObjectError::AccessDenied { .. }), "{error:?}");
    assert!(error.to_string().contains("new.ckpt"), "{error}");

    let missing_bucket = weed.client("no-such-bucket");
    let error = ObjectSource::open(&missing_bucket, "a.ckpt").expect_err("no bucket");
    assert!(matches!(error, ObjectError::NoSuchBucket { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&endpoint) && message.contains("no-such-bucket"), "{message}");
    let mut sink = ObjectSink::create(&missing_bucket, "a.ckpt", UploadOptions::default()).unwrap();
    sink.write_all(b"bytes").unwrap();
    let error = sink.complete().expect_err("no bucket");
    assert!(matches!(error, ObjectError::NoSuchBucket { .. }), "{error:?}");

    let error = ObjectSource::open(&client, "dir/missing.ckpt").expect_err("no key");
    assert!(matches!(error, ObjectError::NoSuchKey { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&endpoint)
            && message.contains(BUCKET)
            && message.contains("dir/missing.ckpt"),
        "{message}"
    );
    // Through the frame-core reader the same text arrives inside Error::Io.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "errors took {elapsed:?}");
}

#[test]
fn a_dead_endpoint_fails_within_the_configured_bounds() {
    // No server needed: nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = ckpt_object::S3Settings::from_env()
        .with_endpoint(&format!("http://127.0.0.1:{port}"))
        .with_credentials("a", "b")
        .with_allow_http(true)
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(5))
        .with_retries(1, Duration::from_secs(2));
    let client = ckpt_object::ObjectClient::s3(&settings, "bucket").unwrap();
    let started = Instant::now();
    let error = ObjectSource::open(&client, "k.ckpt").expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    let message = error.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("k.ckpt"),
        "{message}"
    );
}
