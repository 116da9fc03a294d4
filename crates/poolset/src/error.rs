//! The errors of checking, syncing and transforming a pool set.

use crate::agreement::Disagreement;
use crate::grammar::GrammarError;
use std::fmt;
use std::path::PathBuf;

/// Why a pool set operation failed. Nothing was changed unless the variant says otherwise.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// The poolset file is not valid poolset(5) text, or names files that cannot be used.
    Grammar(GrammarError),
    /// A file operation failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`"open"`, `"read"`, `"fsync"`, ...).
        op: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// Another process holds a lock on this file: a program with the pool open (libpmemobj
    /// locks every part) or another `ckpt pool` run. Nothing was changed.
    Locked {
        /// The locked file.
        path: PathBuf,
        /// Who is expected to hold it.
        holder: &'static str,
    },
    /// A part exists but cannot be read. It is left alone: it may be data that only a
    /// permission or a failing device keeps from us for now.
    Unreadable {
        /// The part.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// No healthy replica holds these bytes of the pool, so the broken part cannot be rebuilt.
    NoHealthyCopy {
        /// The replica being rebuilt.
        replica: usize,
        /// Its part being rebuilt.
        part: usize,
        /// Start of the missing pool range.
        start: u64,
        /// End (exclusive) of the missing pool range.
        end: u64,
    },
    /// The pool set cannot be used for this operation as it is (unhealthy source, unknown
    /// pool type, options this crate does not handle).
    Unsupported(String),
    /// The poolset file disagrees with what the pool records about itself (part order,
    /// replicas, sizes, header options, parts of another pool). Nothing was changed: a set
    /// file is a claim, and repairing a pool into the shape a wrong one describes destroys
    /// data.
    SetDisagrees {
        /// The poolset file.
        set: PathBuf,
        /// Every disagreement found, each naming the part or replica.
        disagreements: Vec<Disagreement>,
    },
    /// A transform was asked for that PMDK's rules do not allow.
    Transform(String),
    /// The intent journal of an earlier run is damaged in its committed part. Nothing was
    /// changed; the journal is kept for inspection.
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl PoolError {
    /// A closure turning an [`std::io::Error`] into [`PoolError::Io`] for `path` and `op`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        op: &'static str,
    ) -> impl FnOnce(std::io::Error) -> PoolError {
        let path = path.into();
        move |source| PoolError::Io { path, op, source }
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Grammar(e) => write!(f, "{e}"),
            Self::Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            Self::Locked { path, holder } => write!(
                f,
                "{} is locked by {holder}; nothing was changed (close the pool or wait for the other run)",
                path.display()
            ),
            Self::Unreadable { path, source } => write!(
                f,
                "part {} exists but cannot be read ({source}); it is left as it is: fix the access or move it away, then run again",
                path.display()
            ),
            Self::NoHealthyCopy { replica, part, start, end } => write!(
                f,
                "cannot rebuild replica {replica} part {part}: no healthy replica holds pool bytes {start:#x}..{end:#x}"
            ),
            Self::SetDisagrees { set, disagreements } => {
                write!(
                    f,
                    "{} disagrees with the pool's own records; nothing was changed:",
                    set.display()
                )?;
                for d in disagreements {
                    write!(f, "\n  - {d}")?;
                }
                Ok(())
            }
            Self::Unsupported(what) | Self::Transform(what) => f.write_str(what),
            Self::Journal { path, detail } => {
                write!(
                    f,
                    "intent journal {} is damaged: {detail}; nothing was changed",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Grammar(e) => Some(e),
            Self::Io { source, .. } | Self::Unreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<GrammarError> for PoolError {
    fn from(e: GrammarError) -> Self {
        Self::Grammar(e)
    }
}
