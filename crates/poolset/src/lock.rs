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

/// How long a lock held by someone else is waited for before the run is refused. A lock is
/// also "held" for a moment by any child process that another thread of this program forks
/// while the lock file is open: the child shares the open file until it execs (the file is
/// close-on-exec), which takes microseconds, or milliseconds on a loaded machine. A real
/// holder (another run, a program using the pool) holds it far longer.
const CONTENDED_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

fn try_lock(file: &File, path: &Path, holder: &'static str) -> Result<(), PoolError> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::WOULDBLOCK) if started.elapsed() < CONTENDED_WAIT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(PoolError::Locked { path: path.to_path_buf(), holder });
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(PoolError::io(path, "lock")(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds `path`'s lock through another open file (as a forked child would) for `hold`.
    fn hold_for(path: &Path, hold: std::time::Duration) -> std::thread::JoinHandle<()> {
        let other = OpenOptions::new().create(true).truncate(false).write(true).open(path);
        let other = other.expect("open the lock file");
        rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive).expect("lock");
        std::thread::spawn(move || {
            std::thread::sleep(hold);
            drop(other);
        })
    }

    #[test]
    fn a_lock_held_for_a_moment_is_waited_for_and_a_lock_held_on_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = dir.path().join("pool.set");
        let own = lock_path(&set);

        let brief = hold_for(&own, std::time::Duration::from_millis(30));
        assert!(lock_set(&set, []).is_ok(), "a lock released within the wait is taken");
        brief.join().expect("holder");

        let long = hold_for(&own, std::time::Duration::from_secs(2));
        let started = std::time::Instant::now();
        match lock_set(&set, []) {
            Err(PoolError::Locked { path, holder }) => {
                assert_eq!(path, own);
                assert!(holder.contains("another ckpt pool run"), "{holder}");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "refused within the wait");
        long.join().expect("holder");
    }
}
