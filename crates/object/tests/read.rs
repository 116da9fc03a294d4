//! The read side against a real S3 server (`SeaweedFS`, see `common/mod.rs`), measured by
//! the client's own counters: a `RemoteCheckpoint` costs one `HEAD` and two ranged `GET`s
//! (tail, index) however many readers open it; a frame is fetched once and never past its
//! end; a sequential read streams the object once; a tail that claims an index the object
//! cannot hold is not believed; a server that dies mid-read gives an error naming the
//! endpoint, bucket, key and frame.

mod common;

use common::noise;

use ckpt_frame_core::scan::{Depth, scan};
use ckpt_frame_core::{CheckpointId, Reader, Sink, Style, VecSink, Writer};
use ckpt_object::{
    DEFAULT_READ_AHEAD, FetchFailure, ObjectClient, ObjectError, ObjectSink, RemoteCheckpoint,
    UploadOptions,
};
use common::{BUCKET, Weed};
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const TAIL: u64 = 64;

/// Frames of various sizes: a small first one (as a tree's manifest), frames under,
/// around and over the 4 MiB read-ahead.
fn frames() -> Vec<(Style, Vec<Vec<u8>>)> {
    vec![
        (Style::Lz4, vec![b"manifest-like first frame".repeat(40)]),
        (Style::Raw, vec![noise(3 * MIB, 1), Vec::new()]),
        (Style::Lz4, vec![noise(9 * MIB + 5, 2)]),
        (Style::Raw, vec![noise(MIB / 2, 3), noise(MIB / 2, 4)]),
        (Style::Lz4, vec![noise(4 * MIB + 100, 5)]),
        (Style::Raw, vec![noise(6 * MIB, 6)]),
        (Style::Lz4, vec![noise(1000, 7)]),
    ]
}

fn write_checkpoint<S: Sink>(sink: S, frames: &[(Style, Vec<Vec<u8>>)]) -> S {
    let mut writer = Writer::new(sink, CheckpointId::from_bytes([0x5a; 16]));
    for (style, buffers) in frames {
        let mut frame = writer.open_frame(*style).expect("open frame");
        for buffer in buffers {
            frame.add(buffer).expect("add buffer");
        }
        frame.close().expect("close frame");
    }
    writer.finish().expect("finish");
    writer.into_sink()
}

/// Uploads the sample checkpoint under `key`; returns its bytes.
fn upload(client: &ObjectClient, key: &str) -> Vec<u8> {
    let frames = frames();
    let sink = ObjectSink::create(client, key, UploadOptions::default()).expect("sink");
    write_checkpoint(sink, &frames).complete().expect("complete");
    write_checkpoint(VecSink::new(), &frames).into_inner()
}

/// `(requests, bytes)` the client's readers have cost so far.
fn counts(client: &ObjectClient) -> (u64, u64) {
    (client.requests_sent(), client.bytes_fetched())
}

/// Reads frame `i` whole through `reader` and checks it against the sample.
fn check_frame(reader: &mut Reader<ckpt_object::ObjectSource>, i: usize) {
    let (_, buffers) = &frames()[i];
    let mut frame = reader.open_frame(i as u64).expect("open frame");
    for buffer in buffers {
        let mut restored = vec![0u8; buffer.len()];
        frame.read_into(&mut restored).expect("read buffer");
        assert!(restored == *buffer, "frame {i}: restored bytes differ");
    }
    frame.close().expect("close frame");
}

/// A frame of `len` bytes read in windows of `window`: the requests it may cost (a last
/// stretch under a quarter window joins the one before).
fn windows(len: u64, window: u64) -> u64 {
    len.div_ceil(window)
}

#[test]
fn tail_and_index_cost_two_gets_once_and_each_frame_is_fetched_once_within_its_bounds() {
    let Some(weed) = Weed::start("read_once") else { return };
    let writer = weed.client(BUCKET);
    let local = upload(&writer, "state.ckpt");
    let len = local.len() as u64;
    let count = frames().len() as u64;

    let client = weed.client(BUCKET);
    let checkpoint = RemoteCheckpoint::open(&client, "state.ckpt").expect("open");
    let index_len = 8 + 40 * count;
    assert_eq!(checkpoint.len(), len);
    assert_eq!(checkpoint.frame_count(), Some(count));
    assert_eq!(checkpoint.index_len(), index_len);
    assert_eq!(checkpoint.index_problem(), None);
    assert_eq!(counts(&client), (3, TAIL + index_len), "HEAD, tail GET, index GET");

    // Eight readers open through the index: no request at all.
    let mut readers: Vec<_> =
        (0..8).map(|_| Reader::open(checkpoint.source()).expect("reader")).collect();
    assert_eq!(counts(&client), (3, TAIL + index_len), "a reader's open sent a request");

    // Each frame read by one reader, out of order: exactly its own bytes are fetched.
    let window = DEFAULT_READ_AHEAD as u64;
    let mut stored = 0;
    let mut bound = 3;
    for (n, i) in [5usize, 2, 0, 6, 3, 1, 4].into_iter().enumerate() {
        let range = checkpoint.frame_range(i as u64).expect("frame range");
        let before = counts(&client);
        let at = n % readers.len();
        check_frame(&mut readers[at], i);
        let after = counts(&client);
        assert_eq!(after.1 - before.1, range.end - range.start, "frame {i}: bytes fetched");
        assert!(after.0 - before.0 <= windows(range.end - range.start, window), "frame {i}");
        stored += range.end - range.start;
        bound += windows(range.end - range.start, window);
    }
    let (requests, bytes) = counts(&client);
    // Every byte of the object fetched exactly once, frame 0 included.
    assert_eq!(bytes, len);
    assert_eq!(stored + index_len + TAIL, len);
    assert!(requests <= bound, "{requests} requests, bound {bound}");
    eprintln!("indexed read of {len} bytes, {count} frames: {requests} requests, {bytes} bytes");

    // Frame 0 again (a tree's manifest is read more than once): from memory.
    check_frame(&mut readers[7], 0);
    assert_eq!(counts(&client), (requests, bytes));
}

#[test]
fn frames_read_in_parallel_in_small_windows_never_fetch_past_their_frame() {
    let Some(weed) = Weed::start("read_parallel") else { return };
    let local = upload(&weed.client(BUCKET), "p.ckpt");
    let client = weed.client(BUCKET);
    let window = MIB;
    let checkpoint =
        RemoteCheckpoint::open(&client, "p.ckpt").expect("open").with_read_ahead(window);
    let count = checkpoint.frame_count().expect("an index");
    // Three workers, each its own source; frames 1..count dealt round robin; frame 0
    // skipped, as a partial restore might.
    std::thread::scope(|scope| {
        for worker in 0..3u64 {
            let checkpoint = &checkpoint;
            scope.spawn(move || {
                let mut reader = Reader::open(checkpoint.source()).expect("reader");
                for i in (1..count).filter(|i| i % 3 == worker) {
                    check_frame(&mut reader, usize::try_from(i).expect("small"));
                }
            });
        }
    });
    let frame_0 = checkpoint.frame_range(0).expect("frame 0");
    let needed = local.len() as u64 - (frame_0.end - frame_0.start);
    let bound: u64 = 3
        + (1..count)
            .map(|i| checkpoint.frame_range(i).expect("range"))
            .map(|r| windows(r.end - r.start, window as u64))
            .sum::<u64>();
    let (requests, bytes) = counts(&client);
    assert_eq!(bytes, needed, "bytes fetched: every frame read once, frame 0 not at all");
    assert!(requests <= bound, "{requests} requests, bound {bound}");
    eprintln!("parallel read in 1 MiB windows: {requests} requests, {bytes} bytes");
}

#[test]
fn a_sequential_scan_streams_the_object_once_and_the_layout_check_after_it_is_free() {
    let Some(weed) = Weed::start("read_stream") else { return };
    let local = upload(&weed.client(BUCKET), "s.ckpt");
    let len = local.len() as u64;
    let client = weed.client(BUCKET);
    let checkpoint = RemoteCheckpoint::open(&client, "s.ckpt").expect("open");
    let report = scan(&mut checkpoint.stream(), Depth::Decoded).expect("scan");
    assert_eq!(report.bad_regions().count(), 0);
    let (requests, bytes) = counts(&client);
    assert_eq!(bytes, len, "each byte fetched once (tail and index from memory)");
    let frames_end = len - TAIL - checkpoint.index_len();
    let bound = 3 + windows(frames_end, DEFAULT_READ_AHEAD as u64) + 1;
    assert!(requests <= bound, "{requests} requests for {len} bytes (bound {bound})");
    // What `ckpt verify` does next: an indexed open and frame 0. Nothing is fetched.
    let mut reader = Reader::open(checkpoint.source()).expect("reader");
    check_frame(&mut reader, 0);
    assert_eq!(counts(&client), (requests, bytes));
    eprintln!("sequential scan of {len} bytes: {requests} requests, {bytes} bytes");
}

#[test]
fn a_tail_naming_an_index_the_object_cannot_hold_is_not_believed() {
    let Some(weed) = Weed::start("read_hostile_tail") else { return };
    let client = weed.client(BUCKET);
    let put = |key: &str, bytes: &[u8]| {
        let mut sink = ObjectSink::create(&client, key, UploadOptions::default()).unwrap();
        sink.write_all(bytes).unwrap();
        sink.complete().unwrap();
    };
    let tail = |index_offset: u64, frame_count: u64| {
        let mut t = vec![0u8; 64];
        t[..8].copy_from_slice(&index_offset.to_le_bytes());
        t[8..16].copy_from_slice(&frame_count.to_le_bytes());
        t[40..42].copy_from_slice(&1u16.to_le_bytes());
        t[56..].copy_from_slice(b"CKPTEND1");
        t
    };
    // 1 KiB of junk, then tails claiming: an index of 2^60 entries (the length check
    // overflows); an index that ends at the object's end but needs frames smaller than
    // a frame can be; no tail at all.
    let junk = noise(1024, 11);
    let huge = [junk.clone(), tail(0, 1 << 60)].concat();
    let tiny_frames = [junk.clone(), tail(1024 - 8 - 400, 10)].concat();
    let no_tail = noise(4096, 12);
    for (key, bytes) in [("huge", &huge), ("tiny", &tiny_frames), ("none", &no_tail)] {
        put(key, bytes);
        let client = weed.client(BUCKET);
        let checkpoint = RemoteCheckpoint::open(&client, key).expect("open");
        assert!(checkpoint.index_problem().is_some(), "{key}: index believed");
        assert_eq!(checkpoint.frame_count(), None);
        assert_eq!(counts(&client), (2, TAIL), "{key}: only HEAD and tail");
        let error = Reader::open(checkpoint.source()).expect_err("refused");
        // The fake tails carry no valid check value: refused as damaged data (exit 1 in
        // the CLI), never as an I/O failure.
        assert!(
            matches!(
                error,
                ckpt_frame_core::Error::Corrupt { .. }
                    | ckpt_frame_core::Error::ChecksumMismatch { .. }
            ),
            "{key}: {error:?} ({})",
            checkpoint.index_problem().unwrap_or_default()
        );
        assert_eq!(counts(&client), (2, TAIL), "{key}: the refusal sent a request");
        eprintln!("{key}: {} / reader: {error}", checkpoint.index_problem().unwrap_or_default());
    }
    // An object shorter than an empty checkpoint: the HEAD only.
    put("short", b"tiny");
    let client = weed.client(BUCKET);
    let checkpoint = RemoteCheckpoint::open(&client, "short").expect("open");
    assert_eq!((counts(&client), checkpoint.frame_count()), ((1, 0), None));
    assert!(matches!(
        Reader::open(checkpoint.source()),
        Err(ckpt_frame_core::Error::Truncated { .. })
    ));
}

#[test]
fn a_server_stopped_mid_read_names_endpoint_bucket_key_and_frame() {
    let Some(mut weed) = Weed::start("read_server_stopped") else { return };
    upload(&weed.client(BUCKET), "dies.ckpt");
    // Retries bounded so the failure comes within seconds.
    let settings = weed
        .settings()
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(5))
        .with_retries(1, Duration::from_secs(2));
    let client = ObjectClient::s3(&settings, BUCKET).unwrap();
    let checkpoint = RemoteCheckpoint::open(&client, "dies.ckpt").expect("open");
    let mut reader = Reader::open(checkpoint.source()).expect("reader");
    check_frame(&mut reader, 1);
    weed.stop();
    let error = reader.open_frame(4).and_then(|mut f| f.read_to_vec()).expect_err("dead server");
    let message = error.to_string();
    eprintln!("{message}");
    let frame_4 = checkpoint.frame_range(4).unwrap();
    for needle in [
        weed.endpoint.as_str(),
        BUCKET,
        "dies.ckpt",
        "frame 4",
        &format!("bytes {}..", frame_4.start),
    ] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    // The evidence is typed, too: the ObjectError inside, and its FetchFailure cause.
    let ckpt_frame_core::Error::Io { error: io, .. } = &error else {
        panic!("not an I/O error: {error:?}")
    };
    let object = std::error::Error::source(io)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .and_then(|e| e.get_ref())
        .and_then(|e| e.downcast_ref::<ObjectError>());
    let failure =
        object.and_then(std::error::Error::source).and_then(|e| e.downcast_ref::<FetchFailure>());
    match failure {
        Some(f) => assert_eq!((f.frame(), f.range().start), (Some(4), frame_4.start)),
        None => eprintln!("(FetchFailure not reachable through IoError's source chain)"),
    }
}

#[test]
fn a_key_overwritten_while_it_is_read_fails_the_read_instead_of_mixing_objects() {
    let Some(weed) = Weed::start("read_overwritten") else { return };
    let client = weed.client(BUCKET);
    upload(&client, "moving.ckpt");
    let checkpoint = RemoteCheckpoint::open(&client, "moving.ckpt").expect("open");
    let mut reader = Reader::open(checkpoint.source()).expect("reader");
    check_frame(&mut reader, 1);
    // Another writer replaces the key with a different checkpoint of the same layout.
    let other = frames()
        .into_iter()
        .map(|(style, buffers)| {
            (style, buffers.into_iter().map(|b| b.iter().map(|x| x ^ 0x55).collect()).collect())
        })
        .collect::<Vec<_>>();
    let sink = ObjectSink::create(&client, "moving.ckpt", UploadOptions::default()).unwrap();
    write_checkpoint(sink, &other).complete().unwrap();
    // Every GET carries If-Match with the ETag the HEAD saw: the next frame is refused by
    // the server, not read from the new object.
    let error = reader.open_frame(2).and_then(|mut f| f.read_to_vec()).expect_err("replaced");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains("moving.ckpt") && message.contains("frame 2"), "{message}");
}
