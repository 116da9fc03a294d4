//! Whether the poolset file agrees with what the pool records about itself.
//!
//! A poolset file is a claim written by a person; the pool's own headers and descriptor are
//! the truth: the uuid rings say which part follows which and which replicas exist, the
//! headers' feature flags say where headers are, and the pool descriptor says how many bytes
//! the pool's data needs (for pmemobj, where the heap ends). Every place where the set file
//! says otherwise is a [`Disagreement`]. Sync and transform refuse while there is one and
//! change nothing, as `pmempool sync` refuses ("cannot synchronize"): repairing a pool into
//! the shape a wrong set file describes destroys data (a healthy part truncated to a
//! declared size, a replica rebuilt from misordered parts, another pool's part overwritten).

use crate::grammar::{Limits, PART_ALIGNMENT, PoolSet};
use crate::header::{Link, ObjDescriptor, PoolType, Uuid};
use crate::health::{PartProblem, PoolHealth};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// What the pool's own records say about the size its data needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedSize {
    /// Bytes of the pool's address space its data needs (pmemobj: `heap_offset +
    /// heap_size`; a native pool: the end of its data area).
    pub bytes: u64,
    /// The replica whose part 0 holds the record that was read.
    pub replica: usize,
    /// Which record: `"pmemobj descriptor"` or `"native pool descriptor"`.
    pub record: &'static str,
}

/// Who or what the pool's records place where the set file puts a part (see
/// [`Disagreement::Misplaced`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placed {
    /// The set file puts there a part with a valid header of this uuid.
    Part {
        /// That part's uuid.
        uuid: Uuid,
        /// Its file.
        path: PathBuf,
    },
    /// The named uuid is the header of another part of the set, at this place.
    Elsewhere {
        /// Its replica.
        replica: usize,
        /// Its index in the replica.
        part: usize,
    },
    /// The part there has no valid header, and another part's header names another uuid
    /// for it.
    NamedOtherwise {
        /// The other uuid.
        uuid: Uuid,
        /// The replica of the part whose header names it.
        replica: usize,
        /// That part's index.
        part: usize,
    },
}

/// One place where the poolset file disagrees with the pool's own records. Each carries the
/// part or replica, what the set file says and what the pool says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disagreement {
    /// A part whose header belongs to another pool set: it may be a part of another, live
    /// pool, so it is never overwritten. A damaged header counts when the rest of it is
    /// still well formed (zero reserved area, this machine's architecture flags) and
    /// neither its pool set uuid nor its own uuid is the one this pool has for the place.
    ForeignPart {
        /// Its replica.
        replica: usize,
        /// Its index in the replica.
        part: usize,
        /// Its file.
        path: PathBuf,
        /// The pool set uuid of this pool (what most valid headers carry).
        pool: Uuid,
        /// The pool set uuid in this part's header.
        found: Uuid,
        /// The header fails its checks (its pool set uuid is read from the damaged bytes).
        damaged: bool,
    },
    /// A part the set file lists after the first of its replica holds the pool descriptor
    /// that only a replica's first part holds, and the part listed first does not.
    FirstPartElsewhere {
        /// The replica.
        replica: usize,
        /// The part holding the descriptor.
        part: usize,
        /// Its file.
        path: PathBuf,
        /// The file the set lists first.
        listed_first: PathBuf,
    },
    /// A part whose valid header is of another pool type than the rest of the set.
    ForeignType {
        /// Its replica.
        replica: usize,
        /// Its index in the replica.
        part: usize,
        /// Its file.
        path: PathBuf,
        /// The pool's signature.
        pool: [u8; 8],
        /// This part's signature.
        found: [u8; 8],
    },
    /// A valid header links to a uuid at a place of the set file where the set puts
    /// something else: parts listed out of order, a replica the pool never had, a replica
    /// or a part of the pool left out of the set.
    Misplaced {
        /// The replica of the part whose header is the evidence.
        replica: usize,
        /// That part's index.
        part: usize,
        /// Its file.
        path: PathBuf,
        /// The link field.
        link: Link,
        /// The uuid it names.
        named: Uuid,
        /// The place of the set file the link points at: (replica, part).
        at: (usize, usize),
        /// What the set file has there instead.
        there: Placed,
    },
    /// The headers carry `SINGLEHDR` and the set file does not say `OPTION SINGLEHDR`, or
    /// the other way round: parts would be read at the wrong offsets.
    HeaderOption {
        /// The replica of the part whose header is the evidence.
        replica: usize,
        /// That part's index.
        part: usize,
        /// Its file.
        path: PathBuf,
        /// Whether the set file says `OPTION SINGLEHDR`.
        set_single_header: bool,
        /// Whether the header's incompat features hold `SINGLEHDR`.
        pool_single_header: bool,
    },
    /// A part file whose size differs from the set file's, where the pool's records do not
    /// say it must be bigger: the set file misstates the part (a part never grows by
    /// itself, and a shorter part that still holds everything the pool needs is not damage
    /// that a rebuild may "repair").
    PartSize {
        /// Its replica.
        replica: usize,
        /// Its index in the replica.
        part: usize,
        /// Its file.
        path: PathBuf,
        /// The size the set file declares.
        declared: u64,
        /// The file's size.
        found: u64,
    },
    /// A replica that, laid out as the set file says, is smaller than the pool's data.
    ReplicaTooSmall {
        /// The replica.
        replica: usize,
        /// Its size by the set file (PMDK's net replica size).
        declared: u64,
        /// What the pool needs.
        required: RecordedSize,
    },
    /// A part smaller than the library's minimum part size (libpmemobj: 2 MiB).
    PartBelowMinimum {
        /// Its replica.
        replica: usize,
        /// Its index in the replica.
        part: usize,
        /// Its file.
        path: PathBuf,
        /// The size the set file declares.
        declared: u64,
        /// The minimum.
        min: u64,
    },
    /// A replica smaller than the library's minimum pool size (libpmemobj: 8 MiB).
    ReplicaBelowMinimum {
        /// The replica.
        replica: usize,
        /// Its size by the set file.
        declared: u64,
        /// The minimum.
        min: u64,
    },
}

impl Disagreement {
    /// A short machine-readable name (`"foreign_part"`, `"misplaced"`, ...), used in JSON
    /// reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ForeignPart { .. } => "foreign_part",
            Self::ForeignType { .. } => "foreign_type",
            Self::FirstPartElsewhere { .. } => "first_part_elsewhere",
            Self::Misplaced { .. } => "misplaced",
            Self::HeaderOption { .. } => "header_option",
            Self::PartSize { .. } => "part_size",
            Self::ReplicaTooSmall { .. } => "replica_too_small",
            Self::PartBelowMinimum { .. } => "part_below_minimum",
            Self::ReplicaBelowMinimum { .. } => "replica_below_minimum",
        }
    }

    /// The replica and part concerned (`None` as part for a whole replica).
    pub fn place(&self) -> (usize, Option<usize>) {
        match self {
            Self::ForeignPart { replica, part, .. }
            | Self::ForeignType { replica, part, .. }
            | Self::FirstPartElsewhere { replica, part, .. }
            | Self::Misplaced { replica, part, .. }
            | Self::HeaderOption { replica, part, .. }
            | Self::PartSize { replica, part, .. }
            | Self::PartBelowMinimum { replica, part, .. } => (*replica, Some(*part)),
            Self::ReplicaTooSmall { replica, .. } | Self::ReplicaBelowMinimum { replica, .. } => {
                (*replica, None)
            }
        }
    }
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ForeignPart { replica, part, path, pool, found, damaged } => write!(
                f,
                "replica {replica} part {part} ({}) belongs to another pool set: its {}header \
                 says pool set {found}, this pool is {pool}; it is not overwritten (it may be a \
                 part of another pool): take it out of the set file, or move it away if it is \
                 a stray copy",
                path.display(),
                if *damaged { "damaged " } else { "" }
            ),
            Self::FirstPartElsewhere { replica, part, path, listed_first } => write!(
                f,
                "replica {replica} part {part} ({}) holds the pool descriptor, which only a \
                 replica's first part holds, but the set file lists {} first (parts out of \
                 order)",
                path.display(),
                listed_first.display()
            ),
            Self::ForeignType { replica, part, path, pool, found } => write!(
                f,
                "replica {replica} part {part} ({}) is a pool of type \"{}\", this pool is \
                 \"{}\"; it is not overwritten",
                path.display(),
                found.escape_ascii(),
                pool.escape_ascii()
            ),
            Self::Misplaced { replica, part, path, link, named, at, there } => {
                write!(
                    f,
                    "replica {replica} part {part} ({}): its header's {} names {named} as \
                     replica {} part {}, but the set file has ",
                    path.display(),
                    link.field_name(),
                    at.0,
                    at.1
                )?;
                match there {
                    Placed::Part { uuid, path } => {
                        write!(f, "{} (uuid {uuid}) there", path.display())?;
                    }
                    Placed::Elsewhere { replica, part } => {
                        write!(f, "that part at replica {replica} part {part}")?;
                    }
                    Placed::NamedOtherwise { uuid, replica, part } => write!(
                        f,
                        "a part there whose uuid replica {replica} part {part}'s header says is \
                         {uuid}"
                    )?,
                }
                f.write_str(
                    " (parts out of order, or a replica or part the pool does not have, or one \
                     it has left out)",
                )
            }
            Self::HeaderOption { replica, part, path, set_single_header, pool_single_header } => {
                let says = |on: bool| if on { "SINGLEHDR" } else { "a header in every part" };
                write!(
                    f,
                    "replica {replica} part {part} ({}): the set file says {}, the pool's header \
                     says {}",
                    path.display(),
                    says(*set_single_header),
                    says(*pool_single_header)
                )
            }
            Self::PartSize { replica, part, path, declared, found } => write!(
                f,
                "replica {replica} part {part} ({}): the set file says {declared} bytes, the \
                 part is {found} bytes and holds a valid part of this pool; correct the set file",
                path.display()
            ),
            Self::ReplicaTooSmall { replica, declared, required } => write!(
                f,
                "replica {replica} would hold {declared} bytes of the pool as the set file lays \
                 it out, but the pool's data needs {} ({} of replica {})",
                required.bytes, required.record, required.replica
            ),
            Self::PartBelowMinimum { replica, part, path, declared, min } => write!(
                f,
                "replica {replica} part {part} ({}): the set file says {declared} bytes, below \
                 the minimum part size of {min}",
                path.display()
            ),
            Self::ReplicaBelowMinimum { replica, declared, min } => write!(
                f,
                "replica {replica} would hold {declared} bytes, below the minimum pool size of \
                 {min}"
            ),
        }
    }
}

/// The minimum part and pool sizes of a pool type's library.
pub(crate) fn limits_of(pool_type: PoolType) -> Limits {
    match pool_type {
        PoolType::Obj => Limits::PMEMOBJ,
        // PMEMBLK_MIN_PART / PMEMBLK_MIN_POOL, PMEMLOG_MIN_PART / PMEMLOG_MIN_POOL.
        PoolType::Blk => Limits { min_part: 2 << 20, min_pool: (16 << 20) + (8 << 10) },
        PoolType::Log => Limits { min_part: 2 << 20, min_pool: 2 << 20 },
        // A header and one page of data.
        PoolType::Native => Limits { min_part: 2 * PART_ALIGNMENT, min_pool: 2 * PART_ALIGNMENT },
    }
}

/// The size the pool's data needs, from the descriptors in part 0 of the replicas whose
/// part 0 is healthy and whose record verifies: the largest, since pmemobj's `heap_size` is
/// outside the descriptor's checksum and a smaller value read from a damaged copy must not
/// let a replica shrink. `descriptors[r]` holds the bytes at offset 4096 of replica `r`'s
/// part 0, when its header was valid.
pub(crate) fn recorded_size(
    pool_type: Option<PoolType>,
    descriptors: &[Option<Vec<u8>>],
) -> Option<RecordedSize> {
    let records = descriptors.iter().enumerate().filter_map(|(replica, bytes)| {
        let bytes = bytes.as_deref()?;
        match pool_type? {
            PoolType::Obj => {
                let d = ObjDescriptor::decode(bytes).ok()?;
                d.validate(None).ok()?;
                (d.heap_offset > 0).then_some(())?;
                // Pools of PMDK before 1.5 keep no heap size; their heap is the pool.
                (d.heap_size > 0).then_some(())?;
                let bytes = d.heap_offset.checked_add(d.heap_size)?;
                Some(RecordedSize { bytes, replica, record: "pmemobj descriptor" })
            }
            PoolType::Native => crate::native::recorded_pool_size(bytes)
                .map(|bytes| RecordedSize { bytes, replica, record: "native pool descriptor" }),
            PoolType::Blk | PoolType::Log => None,
        }
    });
    // The largest; on a tie the first replica's.
    records.fold(None, |best: Option<RecordedSize>, r| match best {
        Some(b) if b.bytes >= r.bytes => Some(b),
        _ => Some(r),
    })
}

fn usable(set: &PoolSet, part: usize, size: u64) -> u64 {
    (size & !(PART_ALIGNMENT - 1)).saturating_sub(set.header_size(part))
}

/// Finds every disagreement of `health` (whose headers are already judged, foreign and
/// duplicate ones set aside), and turns short parts that the pool's records say must be
/// bigger into [`PartProblem::WrongSize`].
pub(crate) fn judge(health: &mut PoolHealth, foreign: Vec<Disagreement>) -> Vec<Disagreement> {
    let mut out = foreign;
    damaged_foreign(health, &mut out);
    first_parts(health, &mut out);
    header_options(health, &mut out);
    placement(health, &mut out);
    sizes(health, &mut out);
    limits(&health.set, health.pool_type, &mut out);
    if let Some(required) = health.recorded_size {
        too_small(&health.set, required, &mut out);
    }
    out
}

/// Damaged headers that still say, in well-formed fields, that they are another pool set's.
fn damaged_foreign(health: &PoolHealth, out: &mut Vec<Disagreement>) {
    let Some(pool) = health.poolset_uuid else { return };
    for (replica, rep) in health.replicas.iter().enumerate() {
        for (part, p) in rep.parts.iter().enumerate() {
            let Some(h) = &p.damaged_header else { continue };
            let well_formed = h.unused.iter().all(|&b| b == 0) && h.arch_flags.check_host().is_ok();
            let ours = h.poolset_uuid == pool
                || h.poolset_uuid.is_nil()
                || health.expected_part_uuid(replica, part) == Some(h.uuid);
            if well_formed && !ours {
                out.push(Disagreement::ForeignPart {
                    replica,
                    part,
                    path: p.path.clone(),
                    pool,
                    found: h.poolset_uuid,
                    damaged: true,
                });
            }
        }
    }
}

/// Whether `bytes` (from offset 4096 of a part) are a pool descriptor that verifies. All
/// zeros verify as a pmemobj descriptor (fletcher64 of zeros is zero), and unused heap is
/// zeros: a descriptor must also place the heap.
fn is_descriptor(pool_type: PoolType, bytes: &[u8]) -> Option<bool> {
    match pool_type {
        PoolType::Obj => Some(
            ObjDescriptor::decode(bytes)
                .is_ok_and(|d| d.validate(None).is_ok() && d.heap_offset > 0 && d.nlanes > 0),
        ),
        PoolType::Native => Some(crate::native::recorded_pool_size(bytes).is_some()),
        PoolType::Blk | PoolType::Log => None,
    }
}

/// Only a replica's first part holds the pool descriptor (at offset 4096). In a replica of
/// two parts the part links cannot show their order (each names the other both ways), so
/// a descriptor in a later part, with none in the part listed first, is the evidence.
fn first_parts(health: &PoolHealth, out: &mut Vec<Disagreement>) {
    let Some(pool_type) = health.pool_type else { return };
    for (replica, rep) in health.replicas.iter().enumerate() {
        let holds = |p: &crate::health::PartHealth| {
            p.header.is_some()
                && p.record.as_deref().and_then(|b| is_descriptor(pool_type, b)) == Some(true)
        };
        let Some(first) = rep.parts.first() else { continue };
        if holds(first) {
            continue;
        }
        for (part, p) in rep.parts.iter().enumerate().skip(1) {
            if health.set.header_size(part) > 0 && holds(p) {
                out.push(Disagreement::FirstPartElsewhere {
                    replica,
                    part,
                    path: p.path.clone(),
                    listed_first: first.path.clone(),
                });
            }
        }
    }
}

fn header_options(health: &PoolHealth, out: &mut Vec<Disagreement>) {
    let set_single_header = health.set.options.single_header;
    for (replica, rep) in health.replicas.iter().enumerate() {
        for (part, p) in rep.parts.iter().enumerate() {
            let Some(h) = &p.header else { continue };
            if h.features.singlehdr() != set_single_header {
                out.push(Disagreement::HeaderOption {
                    replica,
                    part,
                    path: p.path.clone(),
                    set_single_header,
                    pool_single_header: h.features.singlehdr(),
                });
            }
        }
    }
}

/// Every link of every valid header against the place the set file gives the part it
/// names.
fn placement(health: &PoolHealth, out: &mut Vec<Disagreement>) {
    let replicas = health.replicas.len();
    let uuid_at =
        |r: usize, p: usize| health.replicas.get(r)?.parts.get(p)?.header.as_ref().map(|h| h.uuid);
    let mut place_of: HashMap<Uuid, (usize, usize)> = HashMap::new();
    for (r, rep) in health.replicas.iter().enumerate() {
        for (p, part) in rep.parts.iter().enumerate() {
            if let Some(h) = &part.header {
                place_of.entry(h.uuid).or_insert((r, p));
            }
        }
    }
    // A valid header of this pool at offset 0 of a part the set gives no header (SINGLEHDR)
    // is a first part listed in the wrong place: where a link names it, that is evidence.
    for (r, rep) in health.replicas.iter().enumerate() {
        for (p, part) in rep.parts.iter().enumerate() {
            if let Some(h) = &part.stray_header
                && Some(h.poolset_uuid) == health.poolset_uuid
            {
                place_of.entry(h.uuid).or_insert((r, p));
            }
        }
    }
    // Uuids named for places without a valid header, and by whom.
    let mut claims: HashMap<(usize, usize), (Uuid, (usize, usize))> = HashMap::new();
    for (r, rep) in health.replicas.iter().enumerate() {
        let ring = health.header_ring(r);
        let n = ring.len();
        for (at, &p) in ring.iter().enumerate() {
            let Some(h) = &rep.parts[p].header else { continue };
            let links = [
                (Link::PrevPart, h.prev_part_uuid, (r, ring[(at + n - 1) % n])),
                (Link::NextPart, h.next_part_uuid, (r, ring[(at + 1) % n])),
                (Link::PrevReplica, h.prev_repl_uuid, ((r + replicas - 1) % replicas, 0)),
                (Link::NextReplica, h.next_repl_uuid, ((r + 1) % replicas, 0)),
            ];
            for (link, named, target) in links {
                let there = match uuid_at(target.0, target.1) {
                    Some(found) if found == named => continue,
                    Some(found) => Placed::Part {
                        uuid: found,
                        path: health.replicas[target.0].parts[target.1].path.clone(),
                    },
                    None => match place_of.get(&named) {
                        Some(&(replica, part)) => Placed::Elsewhere { replica, part },
                        None => match claims.get(&target) {
                            Some(&(other, by)) if other != named => {
                                Placed::NamedOtherwise { uuid: other, replica: by.0, part: by.1 }
                            }
                            _ => {
                                claims.insert(target, (named, (r, p)));
                                continue;
                            }
                        },
                    },
                };
                out.push(Disagreement::Misplaced {
                    replica: r,
                    part: p,
                    path: rep.parts[p].path.clone(),
                    link,
                    named,
                    at: target,
                    there,
                });
            }
        }
    }
}

/// Parts whose file size is not the declared one: damage when the pool's records say the
/// part must be bigger (or it has no valid header to vouch for it), a disagreement
/// otherwise.
fn sizes(health: &mut PoolHealth, out: &mut Vec<Disagreement>) {
    let required = health.recorded_size.map(|r| r.bytes);
    for r in 0..health.replicas.len() {
        let declared_replica = health.set.replica_size(r).unwrap_or(0);
        for p in 0..health.replicas[r].parts.len() {
            let part = &health.replicas[r].parts[p];
            let (declared, Some(found)) = (part.size, part.found_size) else { continue };
            if found == declared || matches!(part.problem, Some(PartProblem::WrongSize { .. })) {
                continue;
            }
            let as_found = declared_replica.saturating_sub(usable(&health.set, p, declared))
                + usable(&health.set, p, found);
            // Bytes past the last whole page are no pool data: the layout is the same either
            // way, so the part is rebuilt to its size with every pool byte it held.
            let same_layout = usable(&health.set, p, found) == usable(&health.set, p, declared);
            let must_grow =
                same_layout || (found < declared && required.is_none_or(|need| as_found < need));
            let problem = &mut health.replicas[r].parts[p].problem;
            if must_grow {
                if problem.is_none() {
                    *problem = Some(PartProblem::WrongSize { expected: declared, found });
                }
            } else if problem.is_none() || found > declared {
                out.push(Disagreement::PartSize {
                    replica: r,
                    part: p,
                    path: health.replicas[r].parts[p].path.clone(),
                    declared,
                    found,
                });
            }
        }
    }
}

/// Parts and replicas below the minimums of the pool type's library.
pub(crate) fn limits(set: &PoolSet, pool_type: Option<PoolType>, out: &mut Vec<Disagreement>) {
    let Some(limits) = pool_type.map(limits_of) else { return };
    for (replica, rep) in set.replicas.iter().enumerate() {
        for (part, p) in rep.parts.iter().enumerate() {
            if p.size < limits.min_part {
                out.push(Disagreement::PartBelowMinimum {
                    replica,
                    part,
                    path: p.path.clone(),
                    declared: p.size,
                    min: limits.min_part,
                });
            }
        }
        let declared = set.replica_reservation_size(replica).unwrap_or(0);
        if declared < limits.min_pool {
            out.push(Disagreement::ReplicaBelowMinimum { replica, declared, min: limits.min_pool });
        }
    }
}

/// Replicas that, as `set` lays them out, cannot hold the pool's data.
pub(crate) fn too_small(set: &PoolSet, required: RecordedSize, out: &mut Vec<Disagreement>) {
    for replica in 0..set.replicas.len() {
        let declared = set.replica_size(replica).unwrap_or(0);
        if declared < required.bytes {
            out.push(Disagreement::ReplicaTooSmall { replica, declared, required });
        }
    }
}
