//! Building a part file from the healthy data of a pool set, range by range: the common
//! work of sync (a broken part), and transform (a new replica, a new header layout).
//!
//! A part is built under a temporary name, with its header written last and the whole file
//! fsynced, so it looks healthy only once it is complete and durable; the caller renames it
//! into place through the journal. Memory stays at one 4 MiB buffer whatever the pool size.

use crate::PoolError;
use crate::grammar::Extent;
use crate::header::HEADER_SIZE;
use crate::health::PoolHealth;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes copied per read and write.
const PIECE: usize = 4 << 20;

/// Where a range of the pool is read from: pool bytes `start..end` of replica `replica`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRange {
    /// First pool offset.
    pub start: u64,
    /// End (exclusive).
    pub end: u64,
    /// The replica it is read from.
    pub replica: usize,
}

/// A part to build: where its data lies in the pool, its file, its header.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The (temporary) file to write.
    pub path: PathBuf,
    /// The part's size.
    pub file_size: u64,
    /// The part's data in the pool and in its file.
    pub extent: Extent,
    /// The header to write at offset 0, if the part has one.
    pub header: Option<[u8; HEADER_SIZE]>,
    /// A file whose owner and mode the part takes (the one it replaces, or a sibling).
    pub like: Option<PathBuf>,
}

/// The healthy data of a pool set, readable by pool offset.
pub(crate) struct Sources<'a> {
    health: &'a PoolHealth,
    extents: Vec<Vec<Extent>>,
    /// Replicas to read from, fully healthy ones first.
    order: Vec<usize>,
    files: HashMap<(usize, usize), File>,
}

impl<'a> Sources<'a> {
    pub(crate) fn new(health: &'a PoolHealth) -> Self {
        let count = health.replicas.len();
        let extents =
            (0..count).map(|r| health.set.replica_extents(r).unwrap_or_default()).collect();
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by_key(|&r| !health.replicas[r].is_healthy());
        Self { health, extents, order, files: HashMap::new() }
    }

    /// Which replica to read each piece of pool bytes `start..end` from, using healthy parts
    /// only and never `exclude`. Bytes past the pool's size need no source (they are zero).
    ///
    /// # Errors
    /// The first range (start, end) that no healthy part of any replica holds.
    pub(crate) fn plan(
        &self,
        start: u64,
        end: u64,
        exclude: Option<usize>,
    ) -> Result<Vec<SourceRange>, (u64, u64)> {
        let end = end.min(self.health.set.pool_size());
        let mut out: Vec<SourceRange> = Vec::new();
        let mut at = start;
        while at < end {
            let Some((replica, stop)) = self.covering(at, exclude) else {
                // Report the whole gap: up to where some healthy part begins again.
                let resume = (at..end)
                    .step_by(4096)
                    .find(|&x| self.covering(x, exclude).is_some())
                    .unwrap_or(end);
                return Err((at, resume));
            };
            let stop = stop.min(end);
            match out.last_mut() {
                Some(last) if last.replica == replica && last.end == at => last.end = stop,
                _ => out.push(SourceRange { start: at, end: stop, replica }),
            }
            at = stop;
        }
        Ok(out)
    }

    /// The first replica (in preference order, never `exclude`) whose healthy part holds
    /// pool offset `at`, and the end of that part's data.
    fn covering(&self, at: u64, exclude: Option<usize>) -> Option<(usize, u64)> {
        self.order.iter().filter(|&&r| Some(r) != exclude).find_map(|&r| {
            self.extents[r].iter().find_map(|e| {
                let e_end = e.pool_offset + e.len;
                let healthy = self.health.replicas[r].parts[e.part].is_healthy();
                (healthy && e.pool_offset <= at && at < e_end).then_some((r, e_end))
            })
        })
    }

    /// Reads pool bytes `at..at + buf.len()` of `replica` (within one of its parts).
    fn read(&mut self, replica: usize, at: u64, buf: &mut [u8]) -> Result<(), PoolError> {
        let e = *self.extents[replica]
            .iter()
            .find(|e| e.pool_offset <= at && at < e.pool_offset + e.len)
            .ok_or_else(|| {
                PoolError::Unsupported(format!("replica {replica} holds no pool offset {at:#x}"))
            })?;
        let path = &self.health.set.replicas[replica].parts[e.part].path;
        let file = match self.files.entry((replica, e.part)) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(File::open(path).map_err(PoolError::io(path, "open"))?)
            }
        };
        file.read_exact_at(buf, e.file_offset + (at - e.pool_offset))
            .map_err(PoolError::io(path, "read"))
    }
}

/// Builds `target` from `plan` (pool ranges inside the target's extent): data copied, zero
/// pieces left as holes, header written last, file fsynced. Returns the bytes copied.
///
/// # Errors
/// [`PoolError::Io`] naming the file that failed.
pub(crate) fn build_part(
    target: &Target,
    sources: &mut Sources<'_>,
    plan: &[SourceRange],
    buf: &mut Vec<u8>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, PoolError> {
    let path = &target.path;
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(PoolError::io(path, "create"))?;
    out.set_len(target.file_size).map_err(PoolError::io(path, "set the size of"))?;
    if let Some(meta) = target.like.as_ref().and_then(|l| std::fs::metadata(l).ok()) {
        use std::os::unix::fs::MetadataExt;
        // A service that owns its pool must still be able to open it; only root can give
        // a file away, and anyone else keeps their own ownership.
        match std::os::unix::fs::fchown(&out, Some(meta.uid()), Some(meta.gid())) {
            Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => {
                return Err(PoolError::io(path, "set the owner of")(e));
            }
            _ => {}
        }
        out.set_permissions(meta.permissions()).map_err(PoolError::io(path, "set the mode of"))?;
    }
    buf.resize(PIECE, 0);
    let mut copied = 0;
    for range in plan {
        let mut at = range.start;
        while at < range.end {
            // Never cross a part boundary of the source within one read.
            let n = usize::try_from(range.end - at).unwrap_or(PIECE).min(PIECE);
            let n = n.min(source_part_left(sources, range.replica, at));
            let piece = buf.get_mut(..n).unwrap_or_default();
            sources.read(range.replica, at, piece)?;
            if piece.iter().any(|&b| b != 0) {
                let file_at = target.extent.file_offset + (at - target.extent.pool_offset);
                out.write_all_at(piece, file_at).map_err(PoolError::io(path, "write"))?;
            }
            at += n as u64;
            copied += n as u64;
            progress(n as u64);
        }
    }
    // The data is durable before the header that makes the part look healthy.
    out.sync_data().map_err(PoolError::io(path, "fsync"))?;
    if let Some(header) = &target.header {
        out.write_all_at(header, 0).map_err(PoolError::io(path, "write the header of"))?;
    }
    out.sync_all().map_err(PoolError::io(path, "fsync"))?;
    // The name too: the committed journal will refer to it.
    crate::journal::sync_parent(path)?;
    Ok(copied)
}

fn source_part_left(sources: &Sources<'_>, replica: usize, at: u64) -> usize {
    sources.extents[replica]
        .iter()
        .find(|e| e.pool_offset <= at && at < e.pool_offset + e.len)
        .map_or(PIECE, |e| usize::try_from(e.pool_offset + e.len - at).unwrap_or(PIECE))
}

/// The temporary name a part is built under, next to it: `.NAME.ckpt-build`.
pub(crate) fn temp_name(part: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(part.file_name().unwrap_or_default());
    name.push(".ckpt-build");
    part.with_file_name(name)
}

/// Builds every target (each with its plan) on up to one thread per core, each thread with
/// its own 4 MiB buffer and file handles; `progress(done, total)` is called on this thread.
/// Returns the bytes copied.
///
/// # Errors
/// The first failure (by target order); the other threads finish their current part and
/// stop.
pub(crate) fn build_all(
    health: &PoolHealth,
    jobs: &[(&Target, &[SourceRange])],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, PoolError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let total: u64 = jobs.iter().flat_map(|(_, plan)| plan.iter()).map(|s| s.end - s.start).sum();
    let threads =
        std::thread::available_parallelism().map_or(1, usize::from).min(jobs.len()).max(1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let mut errors: Vec<(usize, PoolError)> = Vec::new();
    let mut done = 0u64;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let tx = tx.clone();
                let (next, failed) = (&next, &failed);
                scope.spawn(move || {
                    let mut sources = Sources::new(health);
                    let mut buf = Vec::new();
                    let mut errors = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((target, plan)) = jobs.get(i) else { break };
                        let built = build_part(target, &mut sources, plan, &mut buf, &mut |n| {
                            let _ = tx.send(n);
                        });
                        if let Err(e) = built {
                            failed.store(true, Ordering::Relaxed);
                            errors.push((i, e));
                        }
                    }
                    errors
                })
            })
            .collect();
        drop(tx);
        for n in rx {
            done += n;
            progress(done, total);
        }
        for w in workers {
            match w.join() {
                Ok(mut e) => errors.append(&mut e),
                Err(_) => errors
                    .push((usize::MAX, PoolError::Unsupported("a copy thread panicked".into()))),
            }
        }
    });
    errors.sort_by_key(|(i, _)| *i);
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(done),
    }
}

/// The file whose owner and mode a part built at `part` of `replica` takes: the part itself
/// if it exists, else the first existing part of its replica, else of any replica.
pub(crate) fn ownership_model(
    set: &crate::grammar::PoolSet,
    replica: usize,
    part: &Path,
) -> Option<PathBuf> {
    let exists = |p: &&crate::grammar::Part| p.path.exists();
    if part.exists() {
        return Some(part.to_path_buf());
    }
    set.replicas
        .get(replica)
        .and_then(|r| r.parts.iter().find(exists))
        .or_else(|| set.replicas.iter().flat_map(|r| &r.parts).find(exists))
        .map(|p| p.path.clone())
}

/// One run's changes: parts to build (target, plan, final path), healthy parts whose header
/// is rewritten, files removed.
pub(crate) struct Changes<'a> {
    pub builds: Vec<(&'a Target, &'a [SourceRange], PathBuf)>,
    pub writes: &'a [(PathBuf, [u8; HEADER_SIZE])],
    pub removed: &'a [PathBuf],
}

/// Carries out `changes` through the journal at `journal`: prepared (the temporary files),
/// every part built and made durable, then committed (renames, header writes, removals) and
/// applied. A failed build is rolled back at once. Returns the bytes copied.
///
/// # Errors
/// [`PoolError::Io`] naming the file, or the build's error.
pub(crate) fn commit_changes(
    health: &PoolHealth,
    changes: &Changes<'_>,
    journal: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, PoolError> {
    use crate::journal::{Action, Journal, State};
    let temps: Vec<Action> =
        changes.builds.iter().map(|(t, _, _)| Action::Temp(t.path.clone())).collect();
    let prepared = Journal { state: State::Prepared, actions: temps.clone() };
    prepared.store(journal)?;
    let jobs: Vec<_> = changes.builds.iter().map(|(t, plan, _)| (*t, *plan)).collect();
    let done = match build_all(health, &jobs, progress) {
        Ok(done) => done,
        Err(e) => {
            // Undo now rather than leave it to the next run: nothing else was changed yet.
            let _ = prepared.recover(journal);
            return Err(e);
        }
    };
    let mut actions = temps;
    for (t, _, to) in &changes.builds {
        actions.push(Action::Rename { from: t.path.clone(), to: to.clone() });
    }
    for (path, header) in changes.writes {
        actions.push(Action::Write { path: path.clone(), offset: 0, bytes: header.to_vec() });
    }
    for path in changes.removed {
        actions.push(Action::Remove(path.clone()));
    }
    let committed = Journal { state: State::Committed, actions };
    committed.store(journal)?;
    committed.recover(journal)?;
    Ok(done)
}
