//! `ckpt pool sync`: rebuild the missing and broken parts of a pool set from healthy data,
//! as `pmempool sync` does, without its ways of losing data.
//!
//! - A part that another process holds locked, or that exists but cannot be read, is never
//!   deleted or overwritten: the sync fails and says which and why.
//! - A broken part is rebuilt range by range from whichever replicas hold a healthy copy of
//!   each range, so a set in which no replica is whole can still be healed.
//! - A rebuilt part is written under a temporary name, header last, and fsynced; only then
//!   does an intent journal commit the renames and header rewrites, so an interrupted sync
//!   is undone or finished by the next run, and a half-copied part never looks healthy.

use crate::PoolError;
use crate::build::{
    Changes, SourceRange, Sources, Target, commit_changes, ownership_model, temp_name,
};
use crate::header::{HEADER_SIZE, PoolHeader, Uuid};
use crate::health::{PartProblem, Pending, PoolHealth, inspect_as_if, read_set};
use crate::journal::{Journal, State, journal_path};
use crate::lock::lock_set;
use crate::rings::{UuidMap, relinked};
use std::path::{Path, PathBuf};

/// How [`sync`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Only plan: report what would be rebuilt, change nothing.
    pub dry_run: bool,
}

/// One part that was (or, in a dry run, would be) rebuilt.
#[derive(Debug, Clone)]
pub struct RebuiltPart {
    /// Its replica.
    pub replica: usize,
    /// Its index in the replica.
    pub part: usize,
    /// Its file.
    pub path: PathBuf,
    /// What was wrong with it.
    pub reason: String,
    /// Where its data came from.
    pub sources: Vec<SourceRange>,
}

/// What a sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// An earlier run's journal was found and rolled back (`Prepared`) or forward
    /// (`Committed`) first.
    pub recovered: Option<State>,
    /// The parts rebuilt.
    pub rebuilt: Vec<RebuiltPart>,
    /// Healthy parts whose headers were rewritten to link to new part uuids.
    pub relinked: Vec<PathBuf>,
    /// Data bytes copied.
    pub bytes_copied: u64,
    /// Nothing was changed (a dry run).
    pub dry_run: bool,
}

/// Heals the pool set described by the poolset file at `set_path`.
///
/// # Errors
/// - [`PoolError::Grammar`]: the poolset file is invalid, or uses `OPTION NOHDRS`;
/// - [`PoolError::SetDisagrees`]: the poolset file disagrees with the pool's own records
///   (part order, replicas, sizes, header options, parts of another pool);
/// - [`PoolError::Locked`]: another `ckpt pool` run or a program using the pool holds it;
/// - [`PoolError::Unreadable`]: a part exists but cannot be read (it is not touched);
/// - [`PoolError::NoHealthyCopy`]: some range of a broken part has no healthy copy;
/// - [`PoolError::Unsupported`]: no valid header is left to rebuild headers from;
/// - [`PoolError::Io`], [`PoolError::Journal`]: a file operation failed or the journal of an
///   earlier run is damaged.
///
/// In every error case the set is as it was, or (an I/O error mid-way) the journal lets the
/// next run finish the work.
///
/// # Examples
/// ```no_run
/// use ckpt_poolset::sync::{sync, SyncOptions};
/// let report = sync(std::path::Path::new("/pools/obj.set"), &SyncOptions::default(), &mut |_, _| {})?;
/// for part in &report.rebuilt {
///     println!("rebuilt {} ({})", part.path.display(), part.reason);
/// }
/// # Ok::<(), ckpt_poolset::PoolError>(())
/// ```
pub fn sync(
    set_path: &Path,
    opts: &SyncOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<SyncReport, PoolError> {
    let set = read_set(set_path)?;
    let part_paths: Vec<PathBuf> =
        set.replicas.iter().flat_map(|r| r.parts.iter().map(|p| p.path.clone())).collect();
    let _lock = lock_set(set_path, part_paths.iter().map(PathBuf::as_path))?;
    let mut report = SyncReport { dry_run: opts.dry_run, ..SyncReport::default() };
    let journal = journal_path(set_path);
    let mut as_if = Pending::default();
    if let Some(pending) = Journal::load(&journal)? {
        report.recovered = Some(pending.state);
        if opts.dry_run {
            // Plan what the real run will do after rolling the journal forward.
            as_if = Pending::of(&pending);
        } else {
            pending.recover(&journal)?;
        }
    }
    let health = inspect_as_if(set, &as_if);
    for replica in &health.replicas {
        for part in &replica.parts {
            if let Some(PartProblem::Unreadable(e)) = &part.problem {
                return Err(PoolError::Unreadable {
                    path: part.path.clone(),
                    source: std::io::Error::new(e.kind(), e.to_string()),
                });
            }
        }
    }
    // Before anything is planned or written: a set file that misstates the pool is
    // refused, not "repaired".
    health.refuse_disagreements(set_path)?;
    let broken: Vec<(usize, usize)> = health
        .replicas
        .iter()
        .enumerate()
        .flat_map(|(r, rep)| {
            rep.parts.iter().enumerate().filter(|(_, p)| !p.is_healthy()).map(move |(p, _)| (r, p))
        })
        .collect();
    if broken.is_empty() {
        return Ok(report);
    }
    let plan = plan_rebuild(&health, &broken)?;
    report.rebuilt = plan
        .targets
        .iter()
        .map(|t| RebuiltPart {
            replica: t.replica,
            part: t.part,
            path: health.set.replicas[t.replica].parts[t.part].path.clone(),
            reason: health.replicas[t.replica].parts[t.part]
                .problem
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            sources: t.sources.clone(),
        })
        .collect();
    report.relinked = plan.relink.iter().map(|(path, _)| path.clone()).collect();
    if opts.dry_run {
        return Ok(report);
    }
    report.bytes_copied = execute(&health, &plan, &journal, progress)?;
    Ok(report)
}

/// A part to rebuild, planned.
struct PlannedPart {
    replica: usize,
    part: usize,
    target: Target,
    sources: Vec<SourceRange>,
}

struct Plan {
    targets: Vec<PlannedPart>,
    /// Healthy parts whose header must change (path, new header).
    relink: Vec<(PathBuf, [u8; HEADER_SIZE])>,
}

/// Plans sources, uuids and headers for every broken part.
fn plan_rebuild(health: &PoolHealth, broken: &[(usize, usize)]) -> Result<Plan, PoolError> {
    let sources = Sources::new(health);
    let set = &health.set;
    let uuids = final_uuids(health)?;
    let mut targets = Vec::new();
    for &(r, p) in broken {
        let extent = set
            .replica_extents(r)
            .and_then(|e| e.get(p).copied())
            .ok_or_else(|| PoolError::Unsupported(format!("replica {r} has no part {p}")))?;
        let planned = sources
            .plan(extent.pool_offset, extent.pool_offset + extent.len, Some(r))
            .map_err(|(start, end)| PoolError::NoHealthyCopy { replica: r, part: p, start, end })?;
        let part = &set.replicas[r].parts[p];
        let header = if set.header_size(p) > 0 {
            Some(desired_header(health, &uuids, r, p)?.encode())
        } else {
            None
        };
        targets.push(PlannedPart {
            replica: r,
            part: p,
            target: Target {
                path: temp_name(&part.path),
                file_size: part.size,
                extent,
                header,
                like: ownership_model(set, r, &part.path),
            },
            sources: planned,
        });
    }
    // Healthy parts whose links must follow new uuids.
    let mut relink = Vec::new();
    for (r, replica) in health.replicas.iter().enumerate() {
        for (p, part) in replica.parts.iter().enumerate() {
            let Some(current) = &part.header else { continue };
            let wanted = desired_header(health, &uuids, r, p)?;
            if wanted.encode() != current.encode() {
                relink.push((part.path.clone(), wanted.encode()));
            }
        }
    }
    Ok(Plan { targets, relink })
}

/// The uuid of every part with a header once the sync is done: its own, the one its
/// neighbours link to, or a new one.
fn final_uuids(health: &PoolHealth) -> Result<UuidMap, PoolError> {
    let mut out = UuidMap::new();
    for r in 0..health.replicas.len() {
        for p in health.header_ring(r) {
            let uuid = match health.expected_part_uuid(r, p) {
                Some(u) if !out.values().any(|v| *v == u) => u,
                _ => Uuid::generate()
                    .map_err(PoolError::io("/proc/sys/kernel/random/uuid", "read"))?,
            };
            out.insert((r, p), uuid);
        }
    }
    Ok(out)
}

/// The header part (`r`, `p`) must have: a valid header of the set (its own, or another of
/// its replica's, or any) with the uuid and links of the final rings.
fn desired_header(
    health: &PoolHealth,
    uuids: &UuidMap,
    r: usize,
    p: usize,
) -> Result<PoolHeader, PoolError> {
    let template = health.replicas[r].parts[p]
        .header
        .as_ref()
        .or_else(|| health.replicas[r].parts.iter().find_map(|x| x.header.as_ref()))
        .or_else(|| health.replicas.iter().flat_map(|x| &x.parts).find_map(|x| x.header.as_ref()))
        .ok_or_else(|| {
            PoolError::Unsupported(
                "no valid pool header is left in any replica to rebuild the headers from".into(),
            )
        })?;
    let ring = health.header_ring(r);
    let mut h = relinked(template, uuids, &ring, health.replicas.len(), r, p);
    if let Some(u) = health.poolset_uuid {
        h.poolset_uuid = u;
    }
    h.seal();
    Ok(h)
}

/// Builds every part, commits and applies the journal. Returns the bytes copied.
fn execute(
    health: &PoolHealth,
    plan: &Plan,
    journal: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, PoolError> {
    let builds = plan
        .targets
        .iter()
        .map(|t| {
            let to = health.set.replicas[t.replica].parts[t.part].path.clone();
            (&t.target, t.sources.as_slice(), to)
        })
        .collect();
    let changes = Changes { builds, writes: &plan.relink, removed: &[] };
    commit_changes(health, &changes, journal, progress)
}
