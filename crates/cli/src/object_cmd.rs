//! `s3://BUCKET/KEY` arguments: connecting, and turning object storage errors into exit
//! status 2 with the endpoint, bucket and key in the message. The work is `ckpt-object`'s.

use crate::Failure;
use ckpt_frame_core::CheckpointId;
use ckpt_object::{
    ObjectClient, ObjectError, ObjectLocation, ObjectSink, ObjectSource, RemoteCheckpoint,
    S3Settings, UploadJournal, UploadOptions,
};
use std::path::Path;

/// How `write -o s3://...` publishes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UploadFlags {
    /// `--no-clobber`.
    pub(crate) no_clobber: bool,
    /// `--resume`.
    pub(crate) resume: bool,
    /// Whether `--id` was given (it must then match the interrupted upload's).
    pub(crate) id_given: bool,
}

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
    fn journal(&self) -> Option<UploadJournal> {
        ckpt_object::default_state_dir()
            .map(|dir| UploadJournal::new(&dir, &self.client, self.location.key()))
    }

    /// The sink of `write -o s3://...` and the checkpoint identity to write: `id`, or the
    /// interrupted upload's under `--resume`. The upload is journaled whenever a state
    /// directory is known, so a killed write can be resumed.
    pub(crate) fn sink(
        &self,
        flags: UploadFlags,
        id: CheckpointId,
    ) -> Result<(ObjectSink, CheckpointId), Failure> {
        let options = UploadOptions::default().with_no_clobber(flags.no_clobber);
        let key = self.location.key();
        if flags.resume {
            let Some(journal) = self.journal() else {
                return Err(Failure::usage(
                    "--resume needs a state directory: set CKPT_STATE_DIR, XDG_STATE_HOME or HOME",
                ));
            };
            // Checked before the sink exists: dropping a resumed sink aborts its upload.
            if let Some(entry) = journal.load().map_err(|e| object_failure(&e))?
                && flags.id_given
                && entry.checkpoint_id != id
            {
                return Err(Failure::usage(format!(
                    "--id {id} differs from the interrupted upload's checkpoint {}; the \
                     upload is kept",
                    entry.checkpoint_id
                )));
            }
            let (sink, resumed) = ObjectSink::resume(&self.client, key, options, journal)
                .map_err(|e| object_failure(&e))?;
            return Ok((sink, resumed));
        }
        let sink =
            ObjectSink::create(&self.client, key, options).map_err(|e| object_failure(&e))?;
        let sink = match self.journal() {
            Some(journal) => sink.with_journal(journal, id).map_err(|e| object_failure(&e))?,
            None => sink,
        };
        Ok((sink, id))
    }

    /// Exit status 2 for a failed upload, saying whether `--resume` can continue it.
    pub(crate) fn upload_failure(&self, e: &ObjectError) -> Failure {
        let kept = self.journal().is_some_and(|j| j.path().exists());
        if kept {
            Failure::usage(format!(
                "{e}\nckpt: the upload is kept: `ckpt write --resume -o {}` with the same \
                 paths continues it",
                self.location
            ))
        } else {
            object_failure(e)
        }
    }

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
