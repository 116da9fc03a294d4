//! `s3://BUCKET/KEY` arguments: connecting, and turning object storage errors into exit
//! status 2 with the endpoint, bucket and key in the message. The work is `ckpt-object`'s.

use crate::Failure;
use ckpt_object::{
    ObjectClient, ObjectError, ObjectLocation, ObjectSource, RemoteCheckpoint, S3Settings,
};
use std::path::Path;

/// An `s3://` argument, connected with the `AWS_*` environment.
pub(crate) struct Remote {
    pub(crate) client: ObjectClient,
    pub(crate) location: ObjectLocation,
}

/// `Some` when `arg` names object storage.
pub(crate) fn remote_of(arg: &str) -> Result<Option<Remote>, Failure> {
    if !ObjectLocation::is_object_url(arg) {
        return Ok(None);
    }
    let location = ObjectLocation::parse(arg).map_err(|e| object_failure(&e))?;
    let client = ObjectClient::s3(&S3Settings::from_env(), location.bucket())
        .map_err(|e| object_failure(&e))?;
    Ok(Some(Remote { client, location }))
}

/// `Some` when the path argument names object storage.
pub(crate) fn remote_of_path(arg: &Path) -> Result<Option<Remote>, Failure> {
    match arg.to_str() {
        Some(text) => remote_of(text),
        None => Ok(None),
    }
}

impl Remote {
    /// Opens the checkpoint: one `HEAD`, then its tail and index in two ranged `GET`s,
    /// shared by every source taken from it.
    pub(crate) fn checkpoint(&self) -> Result<RemoteCheckpoint, Failure> {
        RemoteCheckpoint::open(&self.client, self.location.key()).map_err(|e| object_failure(&e))
    }

    /// Opens the checkpoint for reading frames through its index (as [`Remote::checkpoint`],
    /// then one ranged `GET` per frame read).
    pub(crate) fn open(&self) -> Result<ObjectSource, Failure> {
        Ok(self.checkpoint()?.source())
    }

    /// Logs (at `info`, for `RUST_LOG=info`) what reading the object cost so far.
    pub(crate) fn log_fetched(&self) {
        tracing::info!(
            "{}: fetched {} bytes in {} requests",
            self.location,
            self.client.bytes_fetched(),
            self.client.requests_sent()
        );
    }
}

/// Exit status 2: the message names the endpoint, bucket and key already.
pub(crate) fn object_failure(e: &ObjectError) -> Failure {
    Failure::usage(format!("{e}"))
}
