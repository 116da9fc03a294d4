//! Checkpoints in S3-compatible object storage.
//!
//! [`ObjectSink`] is a [`Sink`](ckpt_frame_core::Sink) that uploads a checkpoint as a
//! multipart upload (parts of at least 5 MiB, several in flight, memory bounded by
//! [`UploadOptions::memory_bound`]) and publishes it only on [`ObjectSink::complete`];
//! [`ObjectSource`] is a seekable [`Source`](ckpt_frame_core::Source) that reads one by
//! ranged `GET`s with read-ahead; [`RemoteCheckpoint`] opens a checkpoint once (a `HEAD`,
//! then the tail and the index in two ranged `GET`s) and hands out sources that share
//! them, for parallel restores whose workers fetch only the frames they read. The client
//! counts the requests and bytes its readers fetch ([`ObjectClient::requests_sent`],
//! [`ObjectClient::bytes_fetched`]). Any writer or reader of `ckpt-frame-core` works over
//! them unchanged, and the bytes in the bucket are the bytes a local write of the same
//! checkpoint id produces.
//!
//! # Why a crate of its own, and why blocking
//! `object_store`'s S3 client brings an async HTTP stack (tokio, hyper, reqwest, rustls
//! and its crypto), which multiplies the build time of a crate that uses it. Users who
//! checkpoint to local files take `ckpt-io-backends` and never pay for it; only those who
//! want object storage add `ckpt-object`. The rest of ckpt is synchronous, so this crate
//! keeps the async machinery inside: an [`ObjectClient`] owns a small tokio runtime and
//! every public call blocks on it. Calling the blocking API from inside an async runtime
//! is refused with [`ObjectError::InsideAsyncRuntime`] rather than deadlocking.
//!
//! # Configuration
//! [`S3Settings::from_env`] reads `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and `AWS_ALLOW_HTTP` (for a local `http://`
//! endpoint). Timeouts and retries are bounded, so wrong credentials, a missing bucket or
//! a dead endpoint fail within seconds with an error naming the endpoint, bucket and key.
//!
//! # Examples
//! Write a checkpoint to `s3://backups/state.ckpt` and read it back:
//! ```no_run
//! use ckpt_frame_core::{CheckpointId, Reader, Style, Writer};
//! use ckpt_object::{ObjectClient, ObjectLocation, ObjectSink, ObjectSource, S3Settings, UploadOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let location = ObjectLocation::parse("s3://backups/state.ckpt")?;
//! let client = ObjectClient::s3(&S3Settings::from_env(), location.bucket())?;
//!
//! let state = vec![7u8; 32 << 20];
//! let sink = ObjectSink::create(&client, location.key(), UploadOptions::default())?;
//! let mut writer = Writer::new(sink, CheckpointId::generate());
//! let mut frame = writer.open_frame(Style::Lz4)?;
//! frame.add(&state)?;
//! frame.close()?;
//! writer.finish()?;
//! writer.into_sink().complete()?; // only now does the object appear
//!
//! let mut reader = Reader::open(ObjectSource::open(&client, location.key())?)?;
//! let mut restored = vec![0u8; state.len()];
//! let mut frame = reader.open_frame(0)?;
//! frame.read_into(&mut restored)?;
//! frame.close()?;
//! assert_eq!(restored, state);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//! Every fallible call returns [`ObjectError`]; through the `Sink`/`Source` traits it
//! arrives wrapped in a [`ckpt_frame_core::IoError`] whose message is the same text.

mod checkpoint;
mod client;
mod error;
mod heal;
mod journal;
mod raw;
mod sink;
mod source;

pub use checkpoint::RemoteCheckpoint;
pub use client::{ObjectClient, ObjectLocation, S3Settings};
pub use error::{Cause, ObjectError};
pub use heal::{
    FileHealOutcome, HealError, ObjectHealOutcome, RangedObject, Refusal, heal_file_from_object,
    heal_object_from_file,
};
pub use journal::{JournalEntry, UploadJournal, default_state_dir};
pub use sink::{MAX_PARTS, MIN_PART_SIZE, ObjectSink, UploadOptions, UploadSummary};
pub use source::{DEFAULT_READ_AHEAD, FetchFailure, ObjectSource};
