//! `ckpt pool transform SRC DST`: change a pool set's structure as `pmempool transform`
//! does, one kind of change per call: add replicas, remove replicas (the master included, at
//! least one left), or add or remove `OPTION SINGLEHDR`.
//!
//! The source stays valid until the new set is complete and durable: new or re-laid-out
//! parts are built under temporary names (data, then header, then fsync) while the source
//! is untouched; an intent journal next to DST then commits the renames, header rewrites and
//! removals, which the next run rolls forward if this one is interrupted.

use crate::PoolError;
use crate::agreement::{limits, too_small};
use crate::build::{Changes, Sources, Target, commit_changes, ownership_model, temp_name};
use crate::grammar::{PoolSet, Replica};
use crate::header::{Features, HEADER_SIZE, Uuid};
use crate::health::{PoolHealth, inspect, read_set};
use crate::journal::{Journal, State, journal_path};
use crate::lock::lock_set;
use crate::rings::{UuidMap, relinked};
use std::path::{Path, PathBuf};

/// The kind of change a transform makes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransformKind {
    /// Replicas added: their indices in DST.
    AddReplicas(Vec<usize>),
    /// Replicas removed: their indices in SRC.
    RemoveReplicas(Vec<usize>),
    /// `OPTION SINGLEHDR` added (`true`) or removed (`false`): every part is laid out anew.
    SingleHeader(bool),
}

/// How [`transform`] runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransformOptions {
    /// Only check and plan; change nothing.
    pub dry_run: bool,
}

/// What a transform did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub struct TransformReport {
    /// The change.
    pub kind: TransformKind,
    /// An earlier run's journal was found and rolled back or forward first.
    pub recovered: Option<State>,
    /// Part files written (new replicas, or every part for a header layout change).
    pub built: Vec<PathBuf>,
    /// Part files of removed replicas, deleted.
    pub removed: Vec<PathBuf>,
    /// Part files kept whose headers were rewritten (new replica links).
    pub relinked: Vec<PathBuf>,
    /// Data bytes copied.
    pub bytes_copied: u64,
    /// Nothing was changed.
    pub dry_run: bool,
    /// The pool already had DST's structure (an earlier run of this transform finished, or
    /// this run finished an interrupted one through its journal): nothing else was done.
    pub already_done: bool,
}

/// What becomes of each part of DST.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// The file of SRC replica `from`, same part, kept (its header may be rewritten).
    Keep { from: usize },
    /// Built from SRC's data.
    Build,
}

/// Transforms the pool set of poolset file `src` into the structure of poolset file `dst`.
///
/// # Errors
/// - [`PoolError::Transform`]: the two sets are identical, differ in more than one kind of
///   change, remove every replica, change a replica partly, name part files that already
///   exist, or (for a pool that keeps no record of its data size) describe a pool smaller than the source's;
/// - [`PoolError::Unsupported`]: the source is not healthy (run sync first);
/// - [`PoolError::SetDisagrees`]: SRC disagrees with the pool's own records, or DST has a
///   part or replica below the library's minimums, or a replica too small for the pool's
///   data (`heap_offset + heap_size` for pmemobj);
/// - [`PoolError::Grammar`], [`PoolError::Locked`], [`PoolError::Io`], [`PoolError::Journal`]
///   as for [`crate::sync::sync`].
///
/// # Examples
/// ```no_run
/// use ckpt_poolset::transform::{transform, TransformOptions};
/// use std::path::Path;
/// // add.set lists the replicas of obj.set plus a new one.
/// let report = transform(Path::new("/pools/obj.set"), Path::new("/pools/add.set"),
///     &TransformOptions::default(), &mut |_, _| {})?;
/// println!("{:?}: built {:?}", report.kind, report.built);
/// # Ok::<(), ckpt_poolset::PoolError>(())
/// ```
pub fn transform(
    src: &Path,
    dst: &Path,
    opts: &TransformOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TransformReport, PoolError> {
    let src_set = read_set(src)?;
    let dst_set = read_set(dst)?;
    let parts = |s: &PoolSet| -> Vec<PathBuf> {
        s.replicas.iter().flat_map(|r| r.parts.iter().map(|p| p.path.clone())).collect()
    };
    let src_parts = parts(&src_set);
    let _src_lock = lock_set(src, src_parts.iter().map(PathBuf::as_path))?;
    let _dst_lock = if same_file(src, dst) { None } else { Some(lock_set(dst, [])?) };
    let journal = journal_path(dst);
    let mut recovered = None;
    let mut finished_earlier = false;
    for j in [journal_path(src), journal.clone()] {
        if let Some(pending) = Journal::load(&j)? {
            recovered = Some(pending.state);
            finished_earlier = j == journal && pending.state == State::Committed;
            if !opts.dry_run {
                pending.recover(&j)?;
            }
        }
    }
    if finished_earlier {
        // An interrupted run of this transform had committed: rolling its journal forward
        // finished it, and the pool now has DST's structure, which SRC no longer describes.
        return finished(&src_set, dst_set, dst, recovered, opts.dry_run, true);
    }
    // SRC first: a source set file that misstates the pool makes every plan wrong, unless
    // the pool agrees with DST: this transform was done before.
    let health = inspect(src_set);
    if !health.disagreements.is_empty() {
        if let Ok(report) =
            finished(&health.set, dst_set.clone(), dst, recovered, opts.dry_run, false)
        {
            return Ok(report);
        }
        health.refuse_disagreements(src)?;
    }
    let (kind, fates) = classify(&health.set, &dst_set, true)?;
    if !health.is_healthy() {
        let broken: Vec<String> = health
            .replicas
            .iter()
            .flat_map(|r| &r.parts)
            .filter_map(|p| p.problem.as_ref().map(|x| format!("{}: {x}", p.path.display())))
            .collect();
        return Err(PoolError::Unsupported(format!(
            "the source pool set is not healthy ({}); run `ckpt pool sync` on it first",
            broken.join("; ")
        )));
    }
    // DST against the pool's records: the library's minimums, and room for the pool's data
    // in every replica (PMDK's rule: `heap_offset + heap_size` must fit).
    let mut dst_problems = Vec::new();
    limits(&dst_set, health.pool_type, &mut dst_problems);
    match health.recorded_size {
        Some(required) => too_small(&dst_set, required, &mut dst_problems),
        None if dst_set.pool_size() < health.set.pool_size() => {
            return Err(PoolError::Transform(format!(
                "the target pool would hold {} bytes, less than the source's {}, and the pool \
                 keeps no record of how much of it its data needs",
                dst_set.pool_size(),
                health.set.pool_size()
            )));
        }
        None => {}
    }
    if !dst_problems.is_empty() {
        return Err(PoolError::SetDisagrees {
            set: dst.to_path_buf(),
            disagreements: dst_problems,
        });
    }
    let plan = plan(&health, &dst_set, &fates)?;
    let dst_parts = parts(&dst_set);
    let removed: Vec<PathBuf> =
        src_parts.iter().filter(|p| !dst_parts.contains(p)).cloned().collect();
    let mut report = TransformReport {
        kind,
        recovered,
        built: plan.builds.iter().map(|b| b.final_path.clone()).collect(),
        removed: removed.clone(),
        relinked: plan.writes.iter().map(|(p, _)| p.clone()).collect(),
        bytes_copied: 0,
        dry_run: opts.dry_run,
        already_done: false,
    };
    if opts.dry_run {
        return Ok(report);
    }
    report.bytes_copied = execute(&health, &plan, &removed, &journal, progress)?;
    Ok(report)
}

/// The report of a transform that is already done: an interrupted run had committed it
/// (`from_journal`; this run applied the journal, unless a dry run), or an earlier run
/// finished it. Checks that the pool agrees with DST and is healthy.
fn finished(
    src_set: &PoolSet,
    dst_set: PoolSet,
    dst: &Path,
    recovered: Option<State>,
    dry_run: bool,
    from_journal: bool,
) -> Result<TransformReport, PoolError> {
    let (kind, _) = classify(src_set, &dst_set, false)?;
    // A dry run has not applied the journal, so the pool is not in DST's shape yet.
    if !(dry_run && from_journal) {
        let health = inspect(dst_set);
        health.refuse_disagreements(dst)?;
        if !health.is_healthy() {
            return Err(PoolError::Unsupported(format!(
                "the interrupted transform was finished, but {} is not healthy; run `ckpt pool sync` on it",
                dst.display()
            )));
        }
    }
    Ok(TransformReport {
        kind,
        recovered,
        built: Vec::new(),
        removed: Vec::new(),
        relinked: Vec::new(),
        bytes_copied: 0,
        dry_run,
        already_done: true,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn same_replica(a: &Replica, b: &Replica) -> bool {
    a.parts.len() == b.parts.len()
        && a.parts.iter().zip(&b.parts).all(|(x, y)| x.path == y.path && x.size == y.size)
}

/// Decides the kind of change and what becomes of each DST part.
/// With `new_parts_absent`, the part files of added replicas must not exist yet.
fn classify(
    src: &PoolSet,
    dst: &PoolSet,
    new_parts_absent: bool,
) -> Result<(TransformKind, Vec<Vec<Fate>>), PoolError> {
    let refuse = |m: String| Err(PoolError::Transform(m));
    if src.options.no_headers != dst.options.no_headers {
        return refuse(
            "adding or removing NOHDRS is not supported (PMDK allows it only for remote replicas)"
                .into(),
        );
    }
    if src.options.single_header != dst.options.single_header {
        // Same parts (sizes may grow to make room for headers), only the option differs.
        let same_paths = src.replicas.len() == dst.replicas.len()
            && src.replicas.iter().zip(&dst.replicas).all(|(a, b)| {
                a.parts.len() == b.parts.len()
                    && a.parts
                        .iter()
                        .zip(&b.parts)
                        .all(|(x, y)| x.path == y.path && y.size >= x.size)
            });
        if !same_paths {
            return refuse("a transform makes one kind of change: SINGLEHDR changes, so the replicas and their part files must stay the same (parts may only grow)".into());
        }
        let fates = dst.replicas.iter().map(|r| vec![Fate::Build; r.parts.len()]).collect();
        return Ok((TransformKind::SingleHeader(dst.options.single_header), fates));
    }
    let find = |r: &Replica, set: &PoolSet| set.replicas.iter().position(|x| same_replica(r, x));
    let added: Vec<usize> =
        (0..dst.replicas.len()).filter(|&i| find(&dst.replicas[i], src).is_none()).collect();
    let removed: Vec<usize> =
        (0..src.replicas.len()).filter(|&i| find(&src.replicas[i], dst).is_none()).collect();
    // A replica that shares part files with the other set but is not equal to one of its
    // replicas was changed partly.
    for (i, r) in dst.replicas.iter().enumerate().filter(|(i, _)| added.contains(i)) {
        let shared = r
            .parts
            .iter()
            .find(|p| src.replicas.iter().flat_map(|x| &x.parts).any(|q| q.path == p.path));
        if let Some(p) = shared {
            return refuse(format!(
                "replica {i} of the target changes a replica of the source ({} is in both); only whole replicas can be added or removed",
                p.path.display()
            ));
        }
    }
    match (added.is_empty(), removed.is_empty()) {
        (true, true) => {
            refuse("the two pool sets describe the same structure: nothing to transform".into())
        }
        (false, false) => refuse(format!(
            "a transform makes one kind of change, but this one adds replicas {added:?} and removes replicas {removed:?}"
        )),
        (false, true) => {
            for &i in added.iter().filter(|_| new_parts_absent) {
                if let Some(p) = dst.replicas[i].parts.iter().find(|p| p.path.exists()) {
                    return refuse(format!(
                        "part {} of the new replica {i} already exists; it is not overwritten",
                        p.path.display()
                    ));
                }
            }
            let fates = dst
                .replicas
                .iter()
                .map(|r| match find(r, src) {
                    Some(from) => vec![Fate::Keep { from }; r.parts.len()],
                    None => vec![Fate::Build; r.parts.len()],
                })
                .collect();
            Ok((TransformKind::AddReplicas(added), fates))
        }
        (true, false) => {
            let fates = dst
                .replicas
                .iter()
                .map(|r| vec![Fate::Keep { from: find(r, src).unwrap_or(0) }; r.parts.len()])
                .collect();
            Ok((TransformKind::RemoveReplicas(removed), fates))
        }
    }
}

struct Build {
    final_path: PathBuf,
    target: Target,
    sources: Vec<crate::build::SourceRange>,
}

struct Plan {
    builds: Vec<Build>,
    writes: Vec<(PathBuf, [u8; HEADER_SIZE])>,
}

fn plan(health: &PoolHealth, dst: &PoolSet, fates: &[Vec<Fate>]) -> Result<Plan, PoolError> {
    // The uuid of every DST part with a header: kept parts keep theirs, a part built over a
    // source part that had a header keeps that one, the rest get new ones.
    let mut uuids = UuidMap::new();
    let src_uuid_of = |path: &Path| {
        health
            .replicas
            .iter()
            .flat_map(|r| &r.parts)
            .find(|p| p.path == path)
            .and_then(|p| p.header.as_ref().map(|h| h.uuid))
    };
    for (r, replica) in dst.replicas.iter().enumerate() {
        for (p, part) in replica.parts.iter().enumerate() {
            if dst.header_size(p) == 0 {
                continue;
            }
            let uuid = match src_uuid_of(&part.path) {
                Some(u) => u,
                None => Uuid::generate()
                    .map_err(PoolError::io("/proc/sys/kernel/random/uuid", "read"))?,
            };
            uuids.insert((r, p), uuid);
        }
    }
    let template =
        health.replicas.iter().flat_map(|r| &r.parts).find_map(|p| p.header.as_ref()).ok_or_else(
            || PoolError::Unsupported("the source has no pool header to copy".into()),
        )?;
    let sources = Sources::new(health);
    let mut builds = Vec::new();
    let mut writes = Vec::new();
    let replicas = dst.replicas.len();
    for (r, replica) in dst.replicas.iter().enumerate() {
        let ring: Vec<usize> =
            (0..replica.parts.len()).filter(|&p| dst.header_size(p) > 0).collect();
        let extents = dst.replica_extents(r).unwrap_or_default();
        for (p, part) in replica.parts.iter().enumerate() {
            let header = if dst.header_size(p) > 0 {
                let base = match fates[r][p] {
                    Fate::Keep { from } => health.replicas[from].parts[p].header.as_ref(),
                    Fate::Build => None,
                };
                let mut h = relinked(base.unwrap_or(template), &uuids, &ring, replicas, r, p);
                if dst.options.single_header {
                    h.features.incompat |= Features::SINGLEHDR;
                } else {
                    h.features.incompat &= !Features::SINGLEHDR;
                }
                h.seal();
                Some(h)
            } else {
                None
            };
            match fates[r][p] {
                Fate::Keep { from } => {
                    let current = health.replicas[from].parts[p].header.as_ref();
                    if let (Some(h), Some(cur)) = (&header, current)
                        && h.encode() != cur.encode()
                    {
                        writes.push((part.path.clone(), h.encode()));
                    }
                }
                Fate::Build => {
                    let extent = extents.get(p).copied().ok_or_else(|| {
                        PoolError::Unsupported(format!("replica {r} of the target has no part {p}"))
                    })?;
                    let planned = sources
                        .plan(extent.pool_offset, extent.pool_offset + extent.len, None)
                        .map_err(|(start, end)| PoolError::NoHealthyCopy {
                            replica: r,
                            part: p,
                            start,
                            end,
                        })?;
                    builds.push(Build {
                        final_path: part.path.clone(),
                        target: Target {
                            path: temp_name(&part.path),
                            file_size: part.size,
                            extent,
                            header: header.map(|h| h.encode()),
                            like: ownership_model(&health.set, 0, &part.path),
                        },
                        sources: planned,
                    });
                }
            }
        }
    }
    Ok(Plan { builds, writes })
}

fn execute(
    health: &PoolHealth,
    plan: &Plan,
    removed: &[PathBuf],
    journal: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, PoolError> {
    let builds = plan
        .builds
        .iter()
        .map(|b| (&b.target, b.sources.as_slice(), b.final_path.clone()))
        .collect();
    let changes = Changes { builds, writes: &plan.writes, removed };
    commit_changes(health, &changes, journal, progress)
}
