//! The health of every part and replica of a pool set, judged as PMDK's `pmempool sync`
//! judges it: files present, readable and of their declared size; headers not zeroed, with
//! a known signature and a valid checksum; the same pool set uuid everywhere; part and
//! replica uuid rings linked. Where the poolset file and the pool's own records disagree
//! (see [`crate::agreement`]), the disagreements are listed too: they are not damage to
//! repair, and sync and transform refuse while there is one.

use crate::PoolError;
use crate::agreement::{Disagreement, RecordedSize};
use crate::grammar::{Limits, PoolSet};
use crate::header::{HEADER_SIZE, HeaderError, ObjDescriptor, PoolHeader, PoolType, Uuid};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What is wrong with one part.
#[derive(Debug)]
#[non_exhaustive]
pub enum PartProblem {
    /// The file does not exist.
    Missing,
    /// The file exists but cannot be opened or read.
    Unreadable(std::io::Error),
    /// The file is shorter than the poolset file declares and the pool's records say its
    /// replica needs the missing bytes (or it cannot even hold its header); or its size
    /// differs only past its last whole 4 KiB page, where no pool data lies.
    WrongSize {
        /// The declared size.
        expected: u64,
        /// The file's size.
        found: u64,
    },
    /// The pool header is all zeros.
    ZeroedHeader,
    /// The pool header is invalid (signature, version, features, checksum, architecture).
    BadHeader(HeaderError),
    /// The header belongs to another pool set (an alien part).
    WrongPoolset {
        /// The pool set's uuid.
        expected: Uuid,
        /// The uuid in this header.
        found: Uuid,
    },
    /// The header is of another pool type than the rest of the set.
    WrongType {
        /// The set's signature.
        expected: [u8; 8],
        /// This header's signature.
        found: [u8; 8],
    },
    /// Another part carries the same uuid and fits the rings better: this one is a copy of
    /// a part from elsewhere.
    DuplicateUuid {
        /// The uuid.
        uuid: Uuid,
        /// The part that keeps it.
        kept_by: PathBuf,
    },
}

impl PartProblem {
    /// A short machine-readable name (`"missing"`, `"bad_header"`, ...), used in JSON
    /// reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unreadable(_) => "unreadable",
            Self::WrongSize { .. } => "wrong_size",
            Self::ZeroedHeader => "zeroed_header",
            Self::BadHeader(HeaderError::ChecksumMismatch { .. }) => "bad_checksum",
            Self::BadHeader(HeaderError::BadSignature { .. }) => "bad_signature",
            Self::BadHeader(_) => "bad_header",
            Self::WrongPoolset { .. } => "alien",
            Self::WrongType { .. } => "wrong_type",
            Self::DuplicateUuid { .. } => "duplicate",
        }
    }
}

impl fmt::Display for PartProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::Unreadable(e) => write!(f, "cannot be read: {e}"),
            Self::WrongSize { expected, found } => {
                write!(f, "wrong size: {found} bytes, the poolset file says {expected}")
            }
            Self::ZeroedHeader => f.write_str("the pool header is all zeros"),
            Self::BadHeader(e) => write!(f, "bad pool header: {e}"),
            Self::WrongPoolset { expected, found } => {
                write!(
                    f,
                    "belongs to another pool set: poolset uuid {found}, the set's is {expected}"
                )
            }
            Self::WrongType { expected, found } => write!(
                f,
                "pool type \"{}\", the set's is \"{}\"",
                found.escape_ascii(),
                expected.escape_ascii()
            ),
            Self::DuplicateUuid { uuid, kept_by } => write!(
                f,
                "a copy of another part: its uuid {uuid} belongs to {}, which fits the rings",
                kept_by.display()
            ),
        }
    }
}

/// One part's state.
#[derive(Debug)]
pub struct PartHealth {
    /// The part file.
    pub path: PathBuf,
    /// The declared size.
    pub size: u64,
    /// The file's size, when it exists and could be examined.
    pub found_size: Option<u64>,
    /// For a part the set file gives no header (`SINGLEHDR`, parts after the first): a
    /// valid pool header found at its offset 0 all the same, which is what a first part
    /// listed in the wrong place looks like.
    pub(crate) stray_header: Option<PoolHeader>,
    /// The fields of a header that fails validation (not all zeros): damaged, but what it
    /// still says about its pool set is evidence of whose part this is.
    pub(crate) damaged_header: Option<PoolHeader>,
    /// The bytes at offset 4096, where a replica's first part keeps the pool descriptor.
    pub(crate) record: Option<Vec<u8>>,
    /// The decoded header, when the part has one and it is valid.
    pub header: Option<PoolHeader>,
    /// What is wrong, or `None` for a healthy part.
    pub problem: Option<PartProblem>,
}

impl PartHealth {
    /// Whether the part is healthy.
    pub fn is_healthy(&self) -> bool {
        self.problem.is_none()
    }
}

/// One replica's state.
#[derive(Debug)]
pub struct ReplicaHealth {
    /// Its parts, in order.
    pub parts: Vec<PartHealth>,
}

impl ReplicaHealth {
    /// Whether every part is healthy.
    pub fn is_healthy(&self) -> bool {
        self.parts.iter().all(PartHealth::is_healthy)
    }
}

/// The state of a whole pool set.
#[derive(Debug)]
pub struct PoolHealth {
    /// The pool set (directories resolved).
    pub set: PoolSet,
    /// The pool type, from the valid headers (`None` when no header is valid, or with
    /// `NOHDRS`).
    pub pool_type: Option<PoolType>,
    /// The pool set uuid most valid headers carry.
    pub poolset_uuid: Option<Uuid>,
    /// The replicas, in order (replica 0 is the master).
    pub replicas: Vec<ReplicaHealth>,
    /// The size the pool's own descriptor says its data needs, when one could be read.
    pub recorded_size: Option<RecordedSize>,
    /// Where the poolset file disagrees with the pool's records. Sync and transform refuse
    /// while this is not empty.
    pub disagreements: Vec<Disagreement>,
}

impl PoolHealth {
    /// Whether every part of every replica is healthy and the set file agrees with the
    /// pool.
    pub fn is_healthy(&self) -> bool {
        self.disagreements.is_empty() && self.replicas.iter().all(ReplicaHealth::is_healthy)
    }

    /// Refuses a set whose file disagrees with the pool's records, naming every
    /// disagreement.
    ///
    /// # Errors
    /// [`PoolError::SetDisagrees`] when there is a disagreement.
    pub fn refuse_disagreements(&self, set_file: &Path) -> Result<(), PoolError> {
        if self.disagreements.is_empty() {
            Ok(())
        } else {
            Err(PoolError::SetDisagrees {
                set: set_file.to_path_buf(),
                disagreements: self.disagreements.clone(),
            })
        }
    }

    /// The uuid part `part` of replica `replica` has or must have: its own valid header's,
    /// else what its neighbours' valid headers link to; `None` where nothing says.
    pub fn expected_part_uuid(&self, replica: usize, part: usize) -> Option<Uuid> {
        let parts = &self.replicas.get(replica)?.parts;
        if let Some(h) = parts.get(part)?.header.as_ref() {
            return Some(h.uuid);
        }
        let ring = self.header_ring(replica);
        let at = ring.iter().position(|&p| p == part)?;
        let n = ring.len();
        let prev = ring.get((at + n - 1) % n).and_then(|&p| parts.get(p)?.header.as_ref());
        let next = ring.get((at + 1) % n).and_then(|&p| parts.get(p)?.header.as_ref());
        let from_parts = prev
            .filter(|_| n > 1)
            .map(|h| h.next_part_uuid)
            .or_else(|| next.filter(|_| n > 1).map(|h| h.prev_part_uuid));
        if from_parts.is_some() || part != 0 {
            return from_parts;
        }
        // Part 0 is what the neighbouring replicas link to.
        let r = self.replicas.len();
        let prev_replica = self.valid_header_of((replica + r - 1) % r).map(|h| h.next_repl_uuid);
        let next_replica = self.valid_header_of((replica + 1) % r).map(|h| h.prev_repl_uuid);
        prev_replica.or(next_replica).filter(|_| r > 1)
    }

    /// The parts of a replica that carry a header (all, or part 0 only with `SINGLEHDR`,
    /// none with `NOHDRS`), in ring order.
    pub fn header_ring(&self, replica: usize) -> Vec<usize> {
        let count = self.set.replicas.get(replica).map_or(0, |r| r.parts.len());
        (0..count).filter(|&p| self.set.header_size(p) > 0).collect()
    }

    /// Any valid header of a replica.
    fn valid_header_of(&self, replica: usize) -> Option<&PoolHeader> {
        self.replicas.get(replica)?.parts.iter().find_map(|p| p.header.as_ref())
    }
}

/// Reads the poolset file at `set_path` and checks every part, and the set file against the
/// pool's own records.
///
/// # Errors
/// [`PoolError::Grammar`] if the poolset file cannot be read or parsed (its directories
/// resolved), or uses what no local pool may (`OPTION NOHDRS`; directories without
/// `OPTION SINGLEHDR`). Problems of the parts and disagreements are not errors: they are in
/// the result.
///
/// # Examples
/// ```no_run
/// let health = ckpt_poolset::health::check(std::path::Path::new("/pools/obj.set"))?;
/// for (r, replica) in health.replicas.iter().enumerate() {
///     for part in &replica.parts {
///         if let Some(problem) = &part.problem {
///             println!("replica {r} {}: {problem}", part.path.display());
///         }
///     }
/// }
/// # Ok::<(), ckpt_poolset::PoolError>(())
/// ```
pub fn check(set_path: &Path) -> Result<PoolHealth, PoolError> {
    Ok(inspect(read_set(set_path)?))
}

/// Reads, parses and resolves a poolset file, refusing what PMDK refuses for any local
/// pool whatever its type: `OPTION NOHDRS`, and directories without `OPTION SINGLEHDR`.
/// (The size minimums depend on the pool type, which only the headers tell: they are
/// disagreements.)
///
/// # Errors
/// [`PoolError::Grammar`].
pub fn read_set(set_path: &Path) -> Result<PoolSet, PoolError> {
    let set = PoolSet::from_file(set_path)?.resolve_directories()?;
    set.validate(&Limits::NONE)?;
    Ok(set)
}

/// Checks every part of an already parsed pool set.
pub fn inspect(set: PoolSet) -> PoolHealth {
    inspect_as_if(set, &Pending::default())
}

/// What a committed journal will change once it is applied: the set is judged as if it had
/// been (for dry runs, which must not apply it).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Part path -> the finished file that will be renamed onto it.
    pub renamed: HashMap<PathBuf, PathBuf>,
    /// Part path -> the header that will be written at its offset 0.
    pub headers: HashMap<PathBuf, Vec<u8>>,
    /// Parts that will be removed.
    pub removed: Vec<PathBuf>,
}

impl Pending {
    /// The changes of a committed journal (none for a prepared one, which is rolled back).
    pub(crate) fn of(journal: &crate::journal::Journal) -> Self {
        use crate::journal::{Action, State};
        let mut out = Self::default();
        if journal.state != State::Committed {
            return out;
        }
        for a in &journal.actions {
            match a {
                Action::Rename { from, to } if from.exists() => {
                    out.renamed.insert(to.clone(), from.clone());
                }
                Action::Write { path, offset: 0, bytes } => {
                    out.headers.insert(path.clone(), bytes.clone());
                }
                Action::Remove(path) => out.removed.push(path.clone()),
                _ => {}
            }
        }
        out
    }
}

/// [`inspect`] as if `pending` had been applied.
pub(crate) fn inspect_as_if(set: PoolSet, pending: &Pending) -> PoolHealth {
    let replicas: Vec<ReplicaHealth> = set
        .replicas
        .iter()
        .map(|replica| ReplicaHealth {
            parts: replica
                .parts
                .iter()
                .enumerate()
                .map(|(p, part)| read_part(&part.path, part.size, set.header_size(p), pending))
                .collect(),
        })
        .collect();
    let mut replicas = replicas;
    let (pool_type, poolset_uuid) = majority(&replicas);
    // Headers of another set or type are not part of this one, and may be part of another
    // live pool.
    let mut foreign = Vec::new();
    for (r, replica) in replicas.iter_mut().enumerate() {
        for (p, part) in replica.parts.iter_mut().enumerate() {
            let Some(h) = &part.header else { continue };
            if let Some(expected) = poolset_uuid
                && h.poolset_uuid != expected
            {
                foreign.push(Disagreement::ForeignPart {
                    replica: r,
                    part: p,
                    path: part.path.clone(),
                    pool: expected,
                    found: h.poolset_uuid,
                    damaged: false,
                });
                part.problem = Some(PartProblem::WrongPoolset { expected, found: h.poolset_uuid });
                part.header = None;
            } else if let Some(t) = pool_type
                && h.signature != t.signature()
            {
                foreign.push(Disagreement::ForeignType {
                    replica: r,
                    part: p,
                    path: part.path.clone(),
                    pool: t.signature(),
                    found: h.signature,
                });
                part.problem =
                    Some(PartProblem::WrongType { expected: t.signature(), found: h.signature });
                part.header = None;
            }
        }
    }
    // The first part's record, where its header is one of this pool's.
    let descriptors: Vec<Option<Vec<u8>>> = replicas
        .iter()
        .map(|replica| {
            replica.parts.first().filter(|p| p.header.is_some()).and_then(|p| p.record.clone())
        })
        .collect();
    let recorded_size = crate::agreement::recorded_size(pool_type, &descriptors);
    let mut health = PoolHealth {
        set,
        pool_type,
        poolset_uuid,
        replicas,
        recorded_size,
        disagreements: Vec::new(),
    };
    mark_duplicates(&mut health);
    health.disagreements = crate::agreement::judge(&mut health, foreign);
    health
}

/// Stats, opens and reads the header of one part; for a part with a header, also the bytes
/// after it where part 0 keeps the pool descriptor.
fn read_part(path: &Path, size: u64, header_size: u64, pending: &Pending) -> PartHealth {
    let mut health = PartHealth {
        path: path.to_path_buf(),
        size,
        found_size: None,
        stray_header: None,
        damaged_header: None,
        record: None,
        header: None,
        problem: None,
    };
    if pending.removed.iter().any(|r| r == path) {
        health.problem = Some(PartProblem::Missing);
        return health;
    }
    let source = pending.renamed.get(path).map_or(path, PathBuf::as_path);
    let found = match std::fs::metadata(source) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            health.problem = Some(PartProblem::Missing);
            return health;
        }
        Err(e) => {
            health.problem = Some(PartProblem::Unreadable(e));
            return health;
        }
    };
    let file = match File::open(source) {
        Ok(f) => f,
        Err(e) => {
            health.problem = Some(PartProblem::Unreadable(e));
            return health;
        }
    };
    health.found_size = Some(found);
    if header_size == 0 {
        let mut bytes = vec![0u8; HEADER_SIZE];
        if found >= HEADER_SIZE as u64 && file.read_exact_at(&mut bytes, 0).is_ok() {
            health.stray_header = crate::header::validate(&bytes, None).ok();
        }
        return health;
    }
    if found < size && found < HEADER_SIZE as u64 {
        health.problem = Some(PartProblem::WrongSize { expected: size, found });
        return health;
    }
    let mut bytes = vec![0u8; HEADER_SIZE];
    if let Some(h) = pending.headers.get(path) {
        bytes.clear();
        bytes.extend_from_slice(h);
    } else if let Err(e) = file.read_exact_at(&mut bytes, 0) {
        health.problem = Some(PartProblem::Unreadable(e));
        return health;
    }
    match crate::header::validate(&bytes, None) {
        Ok(h) => health.header = Some(h),
        Err(HeaderError::Zeroed) => health.problem = Some(PartProblem::ZeroedHeader),
        Err(e) => {
            health.damaged_header = PoolHeader::decode(&bytes).ok();
            health.problem = Some(PartProblem::BadHeader(e));
        }
    }
    let mut record = vec![0u8; ObjDescriptor::LEN];
    health.record = file.read_exact_at(&mut record, HEADER_SIZE as u64).is_ok().then_some(record);
    health
}

/// The pool type and pool set uuid most valid headers agree on (ties: the earliest).
fn majority(replicas: &[ReplicaHealth]) -> (Option<PoolType>, Option<Uuid>) {
    let mut votes: HashMap<(Option<PoolType>, Uuid), (usize, usize)> = HashMap::new();
    for (order, h) in
        replicas.iter().flat_map(|r| &r.parts).filter_map(|p| p.header.as_ref()).enumerate()
    {
        let entry = votes.entry((h.pool_type(), h.poolset_uuid)).or_insert((0, order));
        entry.0 += 1;
    }
    votes
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
        .map_or((None, None), |((t, u), _)| (t, Some(u)))
}

/// Where several valid headers carry one uuid (a part file copied over another), keeps the
/// one whose links agree best with the headers around it and marks the others broken; on a
/// tie all of them are marked.
fn mark_duplicates(health: &mut PoolHealth) {
    let mut by_uuid: HashMap<Uuid, Vec<(usize, usize)>> = HashMap::new();
    for (r, replica) in health.replicas.iter().enumerate() {
        for (p, part) in replica.parts.iter().enumerate() {
            if let Some(h) = &part.header {
                by_uuid.entry(h.uuid).or_default().push((r, p));
            }
        }
    }
    let uuid_at = |health: &PoolHealth, r: usize, p: usize| {
        health.replicas.get(r)?.parts.get(p)?.header.as_ref().map(|h| h.uuid)
    };
    let mut marks = Vec::new();
    for (uuid, members) in by_uuid.into_iter().filter(|(_, m)| m.len() > 1) {
        let replicas = health.replicas.len();
        let mismatches = |&(r, p): &(usize, usize)| {
            let Some(h) = health.replicas[r].parts[p].header.as_ref() else { return 4 };
            let ring = health.header_ring(r);
            let n = ring.len();
            let at = ring.iter().position(|&x| x == p).unwrap_or(0);
            [
                (uuid_at(health, r, ring[(at + n - 1) % n]), h.prev_part_uuid),
                (uuid_at(health, r, ring[(at + 1) % n]), h.next_part_uuid),
                (uuid_at(health, (r + replicas - 1) % replicas, 0), h.prev_repl_uuid),
                (uuid_at(health, (r + 1) % replicas, 0), h.next_repl_uuid),
            ]
            .into_iter()
            .filter(|(actual, link)| actual.is_some_and(|a| a != *link))
            .count()
        };
        let scores: Vec<usize> = members.iter().map(mismatches).collect();
        let best = scores.iter().copied().min().unwrap_or(0);
        let winners: Vec<&(usize, usize)> =
            members.iter().zip(&scores).filter(|(_, s)| **s == best).map(|(m, _)| m).collect();
        let kept = (winners.len() == 1).then(|| *winners[0]);
        for &(r, p) in &members {
            if Some((r, p)) != kept {
                let kept_by = kept.map_or_else(PathBuf::new, |(kr, kp)| {
                    health.replicas[kr].parts[kp].path.clone()
                });
                marks.push((r, p, PartProblem::DuplicateUuid { uuid, kept_by }));
            }
        }
    }
    for (r, p, problem) in marks {
        let part = &mut health.replicas[r].parts[p];
        part.problem = Some(problem);
        part.header = None;
    }
}
