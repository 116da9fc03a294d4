//! Publishing rules of `ObjectSink` against a real S3 server (`SeaweedFS`): no-clobber
//! refuses to replace an object and lets exactly one of two racing writers win, for single
//! `PUT`s and multipart uploads; a journaled upload abandoned mid-way is resumed without
//! re-sending the parts the server holds, counted by the server itself.

mod common;

use common::noise;

use ckpt_frame_core::CheckpointId;
use ckpt_frame_core::Sink;
use ckpt_object::{
    MIN_PART_SIZE, ObjectClient, ObjectError, ObjectSink, ObjectSource, UploadJournal,
    UploadOptions,
};
use common::Weed;
use std::sync::{Arc, Barrier};

fn read_all(client: &ObjectClient, key: &str) -> Vec<u8> {
    let mut source = ObjectSource::open(client, key).expect("open object");
    let mut bytes = vec![0u8; usize::try_from(source.len()).unwrap()];
    ckpt_frame_core::Source::read_exact(&mut source, &mut bytes).expect("read object");
    bytes
}

fn options(no_clobber: bool) -> UploadOptions {
    UploadOptions::default().with_part_size(MIN_PART_SIZE).unwrap().with_no_clobber(no_clobber)
}

fn upload(
    client: &ObjectClient,
    key: &str,
    bytes: &[u8],
    no_clobber: bool,
) -> Result<(), ObjectError> {
    let mut sink = ObjectSink::create(client, key, options(no_clobber))?;
    sink.write_all(bytes).map_err(|e| ObjectError::InvalidSettings { reason: e.to_string() })?;
    sink.complete().map(|_| ())
}

/// Two writers race for each key, released together just before they publish.
fn race(client: &ObjectClient, key: &str, len: usize) {
    let barrier = Arc::new(Barrier::new(2));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (client, key, barrier) = (client.clone(), key.to_owned(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let bytes = noise(len, 100 + w);
                let mut sink = ObjectSink::create(&client, &key, options(true)).unwrap();
                sink.write_all(&bytes).unwrap();
                barrier.wait();
                (bytes, sink.complete())
            })
        })
        .collect();
    let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "{key}: exactly one writer must win: {:?}",
        results
            .iter()
            .map(|(_, r)| r.as_ref().map(|_| ()).map_err(ToString::to_string))
            .collect::<Vec<_>>()
    );
    let loser = results.iter().find(|(_, r)| r.is_err()).unwrap();
    assert!(matches!(loser.1, Err(ObjectError::AlreadyExists { .. })), "{:?}", loser.1);
    assert_eq!(read_all(client, key), winners[0].0, "{key}: the object is the winner's, whole");
}

#[test]
fn no_clobber_never_replaces_and_one_racer_wins() {
    let Some(weed) = Weed::start("no_clobber_never_replaces_and_one_racer_wins") else { return };
    let client = weed.client(common::BUCKET);
    for (key, len) in [("nc/small", 4096), ("nc/multi", 2 * MIN_PART_SIZE + 77)] {
        let first = noise(len, 1);
        upload(&client, key, &first, true).expect("the first no-clobber write publishes");
        let err = upload(&client, key, &noise(len, 2), true).expect_err("the key is taken");
        assert!(matches!(err, ObjectError::AlreadyExists { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&weed.endpoint) && text.contains(key), "{text}");
        assert_eq!(read_all(&client, key), first, "{key}: the existing object is untouched");
        // Without no-clobber the same key is replaced, as a local write replaces a file.
        let third = noise(len, 3);
        upload(&client, key, &third, false).unwrap();
        assert_eq!(read_all(&client, key), third);
    }
    let uploads_before = weed.requests("DELETE", 204);
    race(&client, "nc/race-small", 1000);
    race(&client, "nc/race-multi", MIN_PART_SIZE + 5);
    assert!(
        weed.requests("DELETE", 204) > uploads_before,
        "the losing multipart upload is aborted"
    );
}

#[test]
fn a_journaled_upload_abandoned_midway_resumes_without_resending_parts() {
    let Some(weed) = Weed::start("a_journaled_upload_abandoned_midway_resumes") else { return };
    let client = weed.client(common::BUCKET);
    let state = tempfile::tempdir().unwrap();
    let key = "resume/state.ckpt";
    let id = CheckpointId::from_bytes([5; 16]);
    let bytes = noise(5 * MIN_PART_SIZE + 1234, 9);
    let journal = UploadJournal::new(state.path(), &client, key);

    // Three full parts sent and acknowledged, then the writer vanishes without aborting
    // (as a killed process does): only the uncompleted upload and the journal remain.
    let mut sink = ObjectSink::create(&client, key, options(false))
        .unwrap()
        .with_journal(journal.clone(), id)
        .unwrap();
    let puts_at_start = weed.requests("PUT", 200);
    sink.write_all(&bytes[..3 * MIN_PART_SIZE + 10]).unwrap();
    // The server's count says when the three parts have landed (a fresh server can take
    // seconds for its first writes).
    let started = std::time::Instant::now();
    while weed.requests("PUT", 200) < puts_at_start + 3 {
        assert!(started.elapsed().as_secs() < 120, "the parts never landed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::mem::forget(sink);
    assert!(ObjectSource::open(&client, key).is_err(), "nothing is published before complete");
    let recorded = journal.load().unwrap().expect("the upload is journaled");
    assert_eq!(recorded.checkpoint_id, id);

    let puts_before = weed.requests("PUT", 200);
    let (mut sink, resumed_id) =
        ObjectSink::resume(&client, key, UploadOptions::default(), journal.clone()).unwrap();
    assert_eq!(resumed_id, id);
    assert_eq!(sink.options().part_size(), MIN_PART_SIZE, "the journal's part size is kept");
    // The second part differs now (the input changed): it must be sent again.
    let mut changed = bytes.clone();
    changed[MIN_PART_SIZE + 3] ^= 1;
    sink.write_all(&changed).unwrap();
    let summary = sink.complete().unwrap();
    let puts = weed.requests("PUT", 200) - puts_before;
    assert_eq!(summary.parts, 6);
    assert_eq!(summary.parts_reused, 2, "parts 1 and 3 were held with the same bytes");
    assert_eq!(puts, 4, "the server saw only the 4 parts it lacked or held with other bytes");
    assert_eq!(read_all(&client, key), changed, "the object is exactly the bytes written");
    assert_eq!(journal.load().unwrap(), None, "the journal is gone once complete");

    // Nothing recorded: resume says so.
    let err = ObjectSink::resume(&client, key, UploadOptions::default(), journal).unwrap_err();
    assert!(matches!(err, ObjectError::NothingToResume { .. }), "{err}");
}

/// A TCP proxy in front of the real server that answers the first `refusals` requests
/// with `503 Slow Down` (S3's throttling answer) and then relays bytes both ways.
struct ThrottlingProxy {
    port: u16,
    refused: Arc<std::sync::atomic::AtomicU64>,
}

impl ThrottlingProxy {
    fn start(upstream: &str, refusals: u64) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let count = Arc::clone(&refused);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut client) = stream else { return };
                if count.load(Ordering::SeqCst) < refusals {
                    count.fetch_add(1, Ordering::SeqCst);
                    // Read the request head, then refuse and close.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                    let _ = write!(
                        client,
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else { continue };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { port, refused }
    }
}

#[test]
fn throttled_requests_are_retried_with_backoff() {
    let Some(weed) = Weed::start("throttled_requests_are_retried_with_backoff") else { return };
    let proxy = ThrottlingProxy::start(&weed.endpoint, 3);
    let settings = weed
        .settings()
        .with_endpoint(&format!("http://127.0.0.1:{}", proxy.port))
        .with_retries(5, std::time::Duration::from_secs(30));
    let client = ObjectClient::s3(&settings, common::BUCKET).unwrap();
    let bytes = noise(2 * MIN_PART_SIZE + 99, 4);
    upload(&client, "throttled/a.ckpt", &bytes, false).expect("retries ride out the throttling");
    assert_eq!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(read_all(&weed.client(common::BUCKET), "throttled/a.ckpt"), bytes);

    // More refusals than retries: a clear error naming the key, and nothing published.
    let proxy = ThrottlingProxy::start(&weed.endpoint, u64::MAX);
    let settings = weed
        .settings()
        .with_endpoint(&format!("http://127.0.0.1:{}", proxy.port))
        .with_retries(2, std::time::Duration::from_secs(10));
    let client = ObjectClient::s3(&settings, common::BUCKET).unwrap();
    let err = upload(&client, "throttled/b.ckpt", &noise(1000, 5), false).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("throttled/b.ckpt") && text.contains("503"), "{text}");
    assert!(
        proxy.refused.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the request was tried again before giving up"
    );
    assert!(ObjectSource::open(&weed.client(common::BUCKET), "throttled/b.ckpt").is_err());
}

#[test]
fn a_replacement_conditional_on_the_read_version_never_overwrites_a_newer_object() {
    let Some(weed) = Weed::start("a_replacement_conditional_on_the_read_version") else { return };
    let client = weed.client(common::BUCKET);
    for (key, len) in [("cond/small", 3000), ("cond/multi", MIN_PART_SIZE + 11)] {
        upload(&client, key, &noise(len, 1), false).unwrap();
        let read_version = ObjectSource::open(&client, key).unwrap().e_tag().unwrap().to_owned();
        // Another writer replaces the object after it was read.
        let newer = noise(len, 2);
        upload(&client, key, &newer, false).unwrap();
        let mut sink = ObjectSink::create(&client, key, options(false))
            .unwrap()
            .replacing(&read_version)
            .unwrap();
        sink.write_all(&noise(len, 3)).unwrap();
        let err = sink.complete().unwrap_err();
        assert!(matches!(err, ObjectError::Changed { .. }), "{key}: {err}");
        assert!(err.to_string().contains(key), "{err}");
        assert_eq!(read_all(&client, key), newer, "{key}: the newer object stays");
        // Conditional on the version that is there now, the replacement publishes.
        let current = ObjectSource::open(&client, key).unwrap().e_tag().unwrap().to_owned();
        let third = noise(len, 4);
        let mut sink =
            ObjectSink::create(&client, key, options(false)).unwrap().replacing(&current).unwrap();
        sink.write_all(&third).unwrap();
        sink.complete().unwrap();
        assert_eq!(read_all(&client, key), third);
    }
    let sink = ObjectSink::create(&client, "cond/x", options(true)).unwrap();
    assert!(matches!(sink.replacing("\"abc\""), Err(ObjectError::InvalidSettings { .. })));
}
