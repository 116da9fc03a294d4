//! [`UploadJournal`]: the local record of a multipart upload in progress, so that a write
//! that was killed or cut off from the server can be resumed without re-sending the parts
//! the server already holds.
//!
//! The journal records only what cannot be learned from the server: the checkpoint's
//! identity (so the resumed write produces the same bytes) and the upload's id. Which parts
//! to skip is never taken from the journal: on resume the server lists the parts it holds
//! and each is skipped only if its length and MD5 entity tag match the part computed again.

use crate::client::ObjectClient;
use crate::error::ObjectError;
use ckpt_frame_core::CheckpointId;
use md5::{Digest, Md5};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

const MAGIC: &str = "ckpt-upload-journal 1";

/// What a journal records about one interrupted upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The identity of the checkpoint being uploaded.
    pub checkpoint_id: CheckpointId,
    /// The S3 multipart upload id.
    pub upload_id: String,
    /// The part size the upload was cut with.
    pub part_size: usize,
}

/// Where the upload to one `s3://BUCKET/KEY` at one endpoint is recorded: a small file in
/// a state directory (see [`default_state_dir`]), written durably before the first part is
/// sent and removed once the upload completes or is aborted.
///
/// # Examples
/// ```
/// use ckpt_object::{ObjectClient, UploadJournal};
/// use object_store::memory::InMemory;
/// let client = ObjectClient::with_store(std::sync::Arc::new(InMemory::new()), "mem", "b")?;
/// let dir = tempfile::tempdir()?;
/// let journal = UploadJournal::new(dir.path(), &client, "runs/7.ckpt");
/// assert_eq!(journal.load()?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct UploadJournal {
    path: PathBuf,
    endpoint: String,
    bucket: String,
    key: String,
}

/// The state directory for upload journals: `$CKPT_STATE_DIR`, else
/// `$XDG_STATE_HOME/ckpt/uploads`, else `$HOME/.local/state/ckpt/uploads`; `None` when none
/// of these is set.
pub fn default_state_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("CKPT_STATE_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("ckpt/uploads")))
        .or_else(|| var("HOME").map(|d| d.join(".local/state/ckpt/uploads")))
}

impl UploadJournal {
    /// The journal of uploads to `key` in the client's bucket, kept in `state_dir`.
    pub fn new(state_dir: &Path, client: &ObjectClient, key: &str) -> Self {
        let endpoint = client.endpoint().to_owned();
        let bucket = client.bucket().to_owned();
        let digest = Md5::digest(format!("{endpoint}\n{bucket}\n{key}").as_bytes());
        let mut name = String::from("upload-");
        for b in digest {
            let _ = write!(name, "{b:02x}");
        }
        Self { path: state_dir.join(name), endpoint, bucket, key: key.to_owned() }
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded upload, if any.
    ///
    /// # Errors
    /// [`ObjectError::Journal`] when the file exists but cannot be read, or is not a
    /// journal of this endpoint, bucket and key.
    pub fn load(&self) -> Result<Option<JournalEntry>, ObjectError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(self.error(cause)),
        };
        self.parse(&text).map(Some).ok_or_else(|| {
            self.error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not an upload journal of this endpoint, bucket and key",
            ))
        })
    }

    fn parse(&self, text: &str) -> Option<JournalEntry> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut field = |name: &str| {
            let line = lines.next()?;
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            Some(value.to_owned())
        };
        let endpoint = field("endpoint")?;
        let bucket = field("bucket")?;
        let key = field("key")?;
        let checkpoint_id = field("checkpoint")?.parse().ok()?;
        let upload_id = field("upload")?;
        let part_size = field("part-size")?.parse().ok()?;
        // A journal cut short (a crash while it was written elsewhere) has no end line.
        if lines.next()? != "end" {
            return None;
        }
        let same = endpoint == escape(&self.endpoint)
            && bucket == escape(&self.bucket)
            && key == escape(&self.key);
        (same && !upload_id.is_empty()).then_some(JournalEntry {
            checkpoint_id,
            upload_id: unescape(&upload_id)?,
            part_size,
        })
    }

    /// Records `entry` durably (written under a temporary name, synced, renamed, directory
    /// synced), creating the state directory if needed.
    ///
    /// # Errors
    /// [`ObjectError::Journal`] on any file system error.
    pub fn record(&self, entry: &JournalEntry) -> Result<(), ObjectError> {
        let dir = ckpt_io_backends::durable::parent_dir(&self.path);
        std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        let text = format!(
            "{MAGIC}\nendpoint {}\nbucket {}\nkey {}\ncheckpoint {}\nupload {}\npart-size {}\nend\n",
            escape(&self.endpoint),
            escape(&self.bucket),
            escape(&self.key),
            entry.checkpoint_id,
            escape(&entry.upload_id),
            entry.part_size
        );
        let temp = self.path.with_extension(format!("tmp{}", std::process::id()));
        let written = std::fs::File::create(&temp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            Ok(f)
        });
        let result = written.and_then(|f| {
            ckpt_io_backends::durable::replace(&f, &temp, &self.path).map_err(Into::into)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result.map_err(|e| self.error(e))
    }

    /// Forgets the upload (after it completed or was aborted).
    ///
    /// # Errors
    /// [`ObjectError::Journal`] when the file exists and cannot be removed.
    pub fn remove(&self) -> Result<(), ObjectError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                let dir = ckpt_io_backends::durable::parent_dir(&self.path);
                ckpt_io_backends::durable::sync_dir(dir).map_err(|e| self.error(e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn error(&self, cause: std::io::Error) -> ObjectError {
        ObjectError::Journal { path: self.path.clone(), cause }
    }
}

/// One line per field: newlines, `%` and other control bytes are percent-encoded.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    fn client() -> ObjectClient {
        ObjectClient::with_store(Arc::new(InMemory::new()), "http://127.0.0.1:1", "bkt").unwrap()
    }

    #[test]
    fn entries_round_trip_and_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let journal = UploadJournal::new(&dir.path().join("state"), &client(), "a\nb%/c d");
        let entry = JournalEntry {
            checkpoint_id: CheckpointId::from_bytes([7; 16]),
            upload_id: "up\nload%id".to_owned(),
            part_size: 8 << 20,
        };
        journal.record(&entry).unwrap();
        assert_eq!(journal.load().unwrap(), Some(entry));
        journal.remove().unwrap();
        assert_eq!(journal.load().unwrap(), None);
        journal.remove().unwrap();
    }

    #[test]
    fn another_keys_or_damaged_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let journal = UploadJournal::new(dir.path(), &client(), "k");
        let entry = JournalEntry {
            checkpoint_id: CheckpointId::from_bytes([1; 16]),
            upload_id: "u".to_owned(),
            part_size: 5 << 20,
        };
        journal.record(&entry).unwrap();
        let other = UploadJournal { key: "other".to_owned(), ..journal.clone() };
        assert!(matches!(other.load(), Err(ObjectError::Journal { .. })));
        let text = std::fs::read_to_string(journal.path()).unwrap();
        for cut in 0..text.len() - 1 {
            std::fs::write(journal.path(), &text[..cut]).unwrap();
            assert!(journal.load().is_err(), "a journal cut at {cut} bytes was accepted");
        }
    }
}
