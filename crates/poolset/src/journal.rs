//! The intent journal: what a sync or transform is about to do, durable before it does it,
//! so the next run can finish or undo an interrupted one.
//!
//! A run first writes a *prepared* journal naming the temporary files it will build (new
//! or rebuilt parts). Until those are complete and fsynced nothing else changes, and a run
//! that finds a prepared journal rolls back: it deletes the temporary files. The run then
//! replaces the journal (temporary file, fsync, rename, fsync of the directory) with a
//! *committed* one listing every change (renames of the finished parts into place, header
//! writes, removals). A run that finds a committed journal rolls forward: every action is
//! idempotent and is applied again. The journal is removed last.
//!
//! Format (all integers little-endian): the magic `CKPTPJ01`, a state byte (1 prepared, 2
//! committed), a `u32` action count, the actions, and the xxh3-64 of everything before it.
//! An action is a kind byte and its fields; a path is a `u32` length and its bytes. A
//! journal whose checksum fails was torn while being written, before any change it names
//! was made (a prepared one) or is reported as damaged (a committed one cannot be torn: it
//! appears by rename).

use crate::PoolError;
use ckpt_io_backends::durable::{self, ReplaceStep};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CKPTPJ01";
/// Longest path or write payload accepted when decoding (a header write is 4 KiB).
const MAX_FIELD: usize = 1 << 20;

/// Where a journal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Temporary files are being built; nothing else has changed.
    Prepared,
    /// Every temporary file is complete and durable; the actions are being applied.
    Committed,
}

/// One change of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A temporary file the run builds (deleted on roll-back).
    Temp(PathBuf),
    /// Rename a finished temporary file into place (skipped when `from` is gone: done
    /// already, or removed since).
    Rename {
        /// The finished temporary file.
        from: PathBuf,
        /// Its place.
        to: PathBuf,
    },
    /// Write `bytes` at `offset` of `path` (a header).
    Write {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What.
        bytes: Vec<u8>,
    },
    /// Remove a file (a part of a removed replica).
    Remove(PathBuf),
}

/// A decoded journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// Where it stands.
    pub state: State,
    /// Its actions, in order.
    pub actions: Vec<Action>,
}

/// The journal of the pool set whose poolset file is `set_path`: `SET.ckpt-journal`.
pub fn journal_path(set_path: &Path) -> PathBuf {
    let mut name = set_path.as_os_str().to_owned();
    name.push(".ckpt-journal");
    PathBuf::from(name)
}

impl Journal {
    /// Encodes the journal.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(match self.state {
            State::Prepared => 1,
            State::Committed => 2,
        });
        out.extend_from_slice(&u32::try_from(self.actions.len()).unwrap_or(u32::MAX).to_le_bytes());
        let path = |out: &mut Vec<u8>, p: &Path| {
            let b = p.as_os_str().as_bytes();
            out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(b);
        };
        for a in &self.actions {
            match a {
                Action::Temp(p) => {
                    out.push(1);
                    path(&mut out, p);
                }
                Action::Rename { from, to } => {
                    out.push(2);
                    path(&mut out, from);
                    path(&mut out, to);
                }
                Action::Write { path: p, offset, bytes } => {
                    out.push(3);
                    path(&mut out, p);
                    out.extend_from_slice(&offset.to_le_bytes());
                    out.extend_from_slice(
                        &u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes(),
                    );
                    out.extend_from_slice(bytes);
                }
                Action::Remove(p) => {
                    out.push(4);
                    path(&mut out, p);
                }
            }
        }
        let check = xxhash_rust::xxh3::xxh3_64(&out);
        out.extend_from_slice(&check.to_le_bytes());
        out
    }

    /// Decodes a journal; never panics.
    ///
    /// # Errors
    /// A description of the first thing wrong (checksum, magic, truncation, unknown kind).
    pub fn decode(bytes: &[u8]) -> Result<Journal, String> {
        let body_len = bytes.len().checked_sub(8).ok_or("shorter than its checksum")?;
        let (body, check) = bytes.split_at(body_len);
        let stored = u64::from_le_bytes(check.try_into().map_err(|_| "short checksum")?);
        if xxhash_rust::xxh3::xxh3_64(body) != stored {
            return Err("checksum mismatch (torn or damaged)".into());
        }
        let mut r = Reader { bytes: body, at: 0 };
        if r.take(8)? != MAGIC {
            return Err("not a ckpt pool journal (bad magic)".into());
        }
        let state = match r.take(1)? {
            [1] => State::Prepared,
            [2] => State::Committed,
            other => return Err(format!("unknown state {other:?}")),
        };
        let count = r.u32()?;
        let mut actions = Vec::new();
        for _ in 0..count {
            let kind = r.take(1)?;
            actions.push(match kind {
                [1] => Action::Temp(r.path()?),
                [2] => Action::Rename { from: r.path()?, to: r.path()? },
                [3] => {
                    let path = r.path()?;
                    let offset = u64::from_le_bytes(r.take(8)?.try_into().map_err(|_| "short")?);
                    let len = r.u32()? as usize;
                    if len > MAX_FIELD {
                        return Err(format!("write of {len} bytes is too long"));
                    }
                    Action::Write { path, offset, bytes: r.take(len)?.to_vec() }
                }
                [4] => Action::Remove(r.path()?),
                other => return Err(format!("unknown action kind {other:?}")),
            });
        }
        if r.at != body.len() {
            return Err(format!("{} bytes after the last action", body.len() - r.at));
        }
        Ok(Journal { state, actions })
    }

    /// Writes the journal durably at `path`: temporary file, fsync, rename, fsync of the
    /// directory, so it is either absent, the old one or this one.
    ///
    /// # Errors
    /// [`PoolError::Io`] naming the file.
    pub fn store(&self, path: &Path) -> Result<(), PoolError> {
        let tmp = temp_path(path);
        let mut f = File::create(&tmp).map_err(PoolError::io(&tmp, "create"))?;
        f.write_all(&self.encode()).map_err(PoolError::io(&tmp, "write"))?;
        durable::replace(&f, &tmp, path).map_err(|e| match e.step {
            ReplaceStep::SyncFile => PoolError::io(&tmp, "fsync")(e.source),
            ReplaceStep::Rename => PoolError::io(path, "rename the journal to")(e.source),
            ReplaceStep::SyncDir => {
                PoolError::io(durable::parent_dir(path), "fsync the directory")(e.source)
            }
        })
    }

    /// Loads the journal at `path`: `Ok(None)` when there is none. A journal appears only by
    /// rename, so a torn one is left only under the temporary name, which this removes.
    ///
    /// # Errors
    /// [`PoolError::Io`] if it cannot be read; [`PoolError::Journal`] if it is damaged.
    pub fn load(path: &Path) -> Result<Option<Journal>, PoolError> {
        remove_if_present(&temp_path(path))?;
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PoolError::io(path, "read")(e)),
        };
        Journal::decode(&bytes)
            .map(Some)
            .map_err(|detail| PoolError::Journal { path: path.to_path_buf(), detail })
    }

    /// Finishes or undoes the run this journal describes, then removes it. Prepared: the
    /// temporary files are deleted. Committed: every action is applied again.
    ///
    /// # Errors
    /// [`PoolError::Io`] if an action fails; the journal stays for the next run.
    pub fn recover(&self, path: &Path) -> Result<(), PoolError> {
        match self.state {
            State::Prepared => {
                for a in &self.actions {
                    if let Action::Temp(p) = a {
                        remove_if_present(p)?;
                    }
                }
            }
            State::Committed => self.apply()?,
        }
        remove_if_present(path)?;
        sync_parent(path)
    }

    /// Applies the committed actions in order, each made durable.
    ///
    /// # Errors
    /// [`PoolError::Io`] naming the file of the failed action.
    pub fn apply(&self) -> Result<(), PoolError> {
        for a in &self.actions {
            match a {
                Action::Temp(_) => {}
                Action::Rename { from, to } => {
                    // A missing source was renamed already (or removed since: the health
                    // check then finds the part missing); either way there is nothing to do.
                    if from.exists() {
                        fs::rename(from, to)
                            .map_err(PoolError::io(to, "rename a rebuilt part to"))?;
                        sync_parent(to)?;
                    }
                }
                Action::Write { path, offset, bytes } => {
                    let f = match fs::OpenOptions::new().write(true).open(path) {
                        Ok(f) => f,
                        // Removed since: nothing to rewrite; the health check finds it.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(PoolError::io(path, "open for a header write")(e)),
                    };
                    f.write_all_at(bytes, *offset)
                        .map_err(PoolError::io(path, "write a header of"))?;
                    f.sync_all().map_err(PoolError::io(path, "fsync"))?;
                }
                Action::Remove(p) => {
                    remove_if_present(p)?;
                    sync_parent(p)?;
                }
            }
        }
        Ok(())
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

fn remove_if_present(path: &Path) -> Result<(), PoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PoolError::io(path, "remove")(e)),
        _ => Ok(()),
    }
}

/// Fsyncs the directory holding `path`.
///
/// # Errors
/// [`PoolError::Io`] naming the directory.
pub(crate) fn sync_parent(path: &Path) -> Result<(), PoolError> {
    let dir = durable::parent_dir(path);
    durable::sync_dir(dir).map_err(PoolError::io(dir, "fsync the directory"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated")?;
        let out = self.bytes.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "truncated")?))
    }

    fn path(&mut self) -> Result<PathBuf, String> {
        let len = self.u32()? as usize;
        if len == 0 || len > MAX_FIELD {
            return Err(format!("path of {len} bytes"));
        }
        Ok(PathBuf::from(OsStr::from_bytes(self.take(len)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        Journal {
            state: State::Committed,
            actions: vec![
                Action::Temp("/p/.a.tmp".into()),
                Action::Rename { from: "/p/.a.tmp".into(), to: "/p/a".into() },
                Action::Write { path: "/p/b".into(), offset: 0, bytes: vec![7; 4096] },
                Action::Remove("/p/c".into()),
            ],
        }
    }

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let j = sample();
        let bytes = j.encode();
        assert_eq!(Journal::decode(&bytes).unwrap(), j);
        for cut in 0..bytes.len() {
            assert!(Journal::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Journal::decode(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn recover_rolls_back_prepared_and_forward_committed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (tmp, part, other, gone) = (d.join(".a.tmp"), d.join("a"), d.join("b"), d.join("c"));
        fs::write(&tmp, b"new part").unwrap();
        fs::write(&other, vec![0u8; 8192]).unwrap();
        fs::write(&gone, b"removed replica").unwrap();
        let jp = d.join("set.ckpt-journal");
        let prepared = Journal { state: State::Prepared, actions: vec![Action::Temp(tmp.clone())] };
        prepared.store(&jp).unwrap();
        Journal::load(&jp).unwrap().unwrap().recover(&jp).unwrap();
        assert!(!tmp.exists() && !jp.exists() && !part.exists());

        fs::write(&tmp, b"new part").unwrap();
        let committed = Journal {
            state: State::Committed,
            actions: vec![
                Action::Temp(tmp.clone()),
                Action::Rename { from: tmp.clone(), to: part.clone() },
                Action::Write { path: other.clone(), offset: 4096, bytes: vec![9; 16] },
                Action::Remove(gone.clone()),
            ],
        };
        committed.store(&jp).unwrap();
        // Applying twice (a crash after the first) gives the same result.
        committed.apply().unwrap();
        Journal::load(&jp).unwrap().unwrap().recover(&jp).unwrap();
        assert_eq!(fs::read(&part).unwrap(), b"new part");
        assert_eq!(&fs::read(&other).unwrap()[4096..4112], &[9; 16]);
        assert!(!gone.exists() && !tmp.exists() && !jp.exists());
    }

    #[test]
    fn a_damaged_journal_is_an_error_and_a_torn_temporary_one_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let jp = dir.path().join("j");
        let bytes = sample().encode();
        fs::write(&jp, &bytes[..bytes.len() / 2]).unwrap();
        let err = Journal::load(&jp).unwrap_err();
        assert!(matches!(err, PoolError::Journal { .. }), "{err:?}");
        assert!(err.to_string().contains("checksum"), "{err}");
        fs::remove_file(&jp).unwrap();
        let tmp = temp_path(&jp);
        fs::write(&tmp, &bytes[..10]).unwrap();
        assert_eq!(Journal::load(&jp).unwrap(), None);
        assert!(!tmp.exists());
    }
}
