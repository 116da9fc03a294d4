//! Locks held while a pool set is changed: our own lock file, so two `ckpt pool` runs never
//! work on one set at once, and the parts themselves, which libpmemobj locks (`flock`)
//! while a program has the pool open. A part that is locked is in use, not broken.

use crate::PoolError;
use rustix::fs::FlockOperation;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The locks of one run; released when dropped.
#[derive(Debug)]
pub(crate) struct SetLock {
    _held: Vec<File>,
}

/// The lock file of the pool set whose poolset file is `set_path`: `SET.ckpt-lock`.
pub(crate) fn lock_path(set_path: &Path) -> PathBuf {
    let mut name = set_path.as_os_str().to_owned();
    name.push(".ckpt-lock");
    PathBuf::from(name)
}

/// Takes the set's lock file and an exclusive lock on every part file that exists, without
/// waiting.
///
/// # Errors
/// [`PoolError::Locked`] naming the first file another process holds; [`PoolError::Io`] if
/// the lock file cannot be created.
pub(crate) fn lock_set<'a>(
    set_path: &Path,
    parts: impl IntoIterator<Item = &'a Path>,
) -> Result<SetLock, PoolError> {
    let own = lock_path(set_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&own)
        .map_err(PoolError::io(&own, "create the lock file"))?;
    try_lock(&file, &own, "another ckpt pool run on this set")?;
    let mut held = vec![file];
    for part in parts {
        // A part that cannot be opened is not in use by anyone; the health check says what
        // is wrong with it.
        let Ok(file) = File::open(part) else { continue };
        try_lock(&file, part, "a process that has the pool open (libpmemobj locks its parts)")?;
        held.push(file);
    }
    Ok(SetLock { _held: held })
}

fn try_lock(file: &File, path: &Path, holder: &'static str) -> Result<(), PoolError> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            Err(PoolError::Locked { path: path.to_path_buf(), holder })
        }
        Err(e) => Err(PoolError::io(path, "lock")(e.into())),
    }
}
