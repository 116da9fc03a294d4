//! Unit-level checks without a server: location parsing, option bounds, and the sink and
//! source over `object_store`'s `InMemory` store (multipart cut, visibility, abort).

use ckpt_frame_core::{CheckpointId, Reader, Sink, Source, Style, VecSink, Writer};
use ckpt_object::{
    MIN_PART_SIZE, ObjectClient, ObjectError, ObjectLocation, ObjectSink, ObjectSource,
    UploadOptions,
};
use object_store::memory::InMemory;
use std::sync::Arc;

fn memory_client() -> ObjectClient {
    ObjectClient::with_store(Arc::new(InMemory::new()), "memory://", "bucket").unwrap()
}

#[test]
fn locations_parse_and_refuse_clearly() {
    let loc = ObjectLocation::parse("s3://b/dir/file.ckpt").unwrap();
    assert_eq!((loc.bucket(), loc.key()), ("b", "dir/file.ckpt"));
    assert_eq!(loc.to_string(), "s3://b/dir/file.ckpt");
    for bad in [
        "b/key",
        "s3://",
        "s3://b",
        "s3://b/",
        "s3:///key",
        "s3://b/a//c",
        "s3://b/../x",
        "gs://b/k",
    ] {
        let error = ObjectLocation::parse(bad).expect_err(bad);
        assert!(matches!(error, ObjectError::InvalidLocation { .. }), "{bad}: {error:?}");
        assert!(error.to_string().contains(bad), "{error}");
    }
    assert!(ObjectLocation::is_object_url("s3://b/k"));
    assert!(!ObjectLocation::is_object_url("/tmp/s3://b"));
}

#[test]
fn upload_options_keep_s3_limits_and_state_the_memory_bound() {
    assert!(UploadOptions::default().with_part_size(MIN_PART_SIZE - 1).is_err());
    assert!(UploadOptions::default().with_max_in_flight(0).is_err());
    let options = UploadOptions::default();
    assert_eq!(options.memory_bound(), options.part_size() * (options.max_in_flight() + 1));
}

fn write<S: Sink>(sink: S, id: CheckpointId, data: &[u8]) -> S {
    let mut writer = Writer::new(sink, id);
    for style in [Style::Raw, Style::Lz4] {
        let mut frame = writer.open_frame(style).unwrap();
        frame.add(data).unwrap();
        frame.close().unwrap();
    }
    writer.finish().unwrap();
    writer.into_sink()
}

#[test]
fn memory_store_round_trip_matches_a_local_write() {
    let client = memory_client();
    let id = CheckpointId::generate();
    let data: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    let options = UploadOptions::default().with_part_size(MIN_PART_SIZE).unwrap();
    let sink = write(ObjectSink::create(&client, "a/b.ckpt", options).unwrap(), id, &data);
    assert!(matches!(ObjectSource::open(&client, "a/b.ckpt"), Err(ObjectError::NoSuchKey { .. })));
    let summary = sink.complete().unwrap();
    assert!(summary.parts >= 3, "{summary:?}");
    let local = write(VecSink::new(), id, &data).into_inner();

    let mut source = ObjectSource::open(&client, "a/b.ckpt").unwrap().with_read_ahead(1 << 20);
    let mut all = vec![0u8; local.len()];
    source.read_exact(&mut all).unwrap();
    assert!(all == local);
    let mut past_end = [0u8; 1];
    assert!(source.read_exact(&mut past_end).is_err());

    let mut reader = Reader::open(ObjectSource::open(&client, "a/b.ckpt").unwrap()).unwrap();
    let mut frame = reader.open_frame(1).unwrap();
    let mut restored = vec![0u8; data.len()];
    frame.read_into(&mut restored).unwrap();
    frame.close().unwrap();
    assert!(restored == data);
}

#[test]
fn memory_store_dropped_upload_publishes_nothing() {
    let client = memory_client();
    let options = UploadOptions::default().with_part_size(MIN_PART_SIZE).unwrap();
    let mut sink = ObjectSink::create(&client, "k", options).unwrap();
    sink.write_all(&vec![1u8; 2 * MIN_PART_SIZE + 3]).unwrap();
    drop(sink);
    assert!(matches!(ObjectSource::open(&client, "k"), Err(ObjectError::NoSuchKey { .. })));
}

#[test]
fn blocking_calls_inside_an_async_runtime_are_refused() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let result = runtime.block_on(async {
        ObjectClient::with_store(Arc::new(InMemory::new()), "memory://", "bucket").map(|_| ())
    });
    assert!(matches!(result, Err(ObjectError::InsideAsyncRuntime)));
}
