//! Healing a damaged checkpoint file in place from another copy of the same checkpoint: the
//! plan (which regions, from where, and which the donor cannot be trusted for) comes from
//! `ckpt_frame_core::scan::plan_heal`; this module reads the donor's bytes, rewrites only
//! those regions, and scans the result again.
//!
//! When one copy is in object storage, the heal is `ckpt-object`'s (`heal_file_from_object`,
//! `heal_object_from_file`), kept there so that this crate does not build an HTTP stack; its
//! planner, `ckpt_frame_core::scan::plan_heal_ranged`, applies the same rules as
//! `plan_heal` while fetching only the damaged frames.

use crate::error::format_exit_code;
use ckpt_frame_core::Error as FormatError;
use ckpt_frame_core::scan::{Depth, HealPlan, plan_heal, scan};
use ckpt_io_backends::{BackendError, IoMode, open_input, rewrite_ranges};
use std::fmt;
use std::path::{Path, PathBuf};

/// What a heal did.
#[derive(Debug, Clone)]
pub struct HealOutcome {
    /// The plan: regions rewritten and regions refused, with why.
    pub plan: HealPlan,
    /// Whether the regions in [`HealPlan::rewrite`] were written (not a dry run, and any).
    pub rewritten: bool,
    /// Damaged regions left in the damaged copy, by a fresh scan after the rewrite (by the
    /// plan's scan for a dry run).
    pub still_bad: usize,
}

impl HealOutcome {
    /// Whether the damaged copy now verifies (never after a dry run).
    pub fn healed(&self, dry_run: bool) -> bool {
        !dry_run && self.still_bad == 0
    }
}

/// Why a heal stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum HealError {
    /// A copy could not be opened, or the damaged copy could not be rewritten.
    Backend(BackendError),
    /// The copies cannot be compared (not checkpoints, different checkpoints, unreadable).
    Plan {
        /// The damaged copy.
        damaged: PathBuf,
        /// The donor.
        good: PathBuf,
        /// What the planner found.
        error: FormatError,
    },
    /// Reading the donor's bytes or scanning the result failed.
    Read {
        /// The file being read.
        path: PathBuf,
        /// What failed.
        error: FormatError,
    },
}

impl HealError {
    /// 1 when the data is bad (no heal possible), 2 for I/O and usage errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Backend(_) => 2,
            Self::Plan { error, .. } | Self::Read { error, .. } => format_exit_code(error),
        }
    }
}

impl fmt::Display for HealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backend(e) => write!(f, "{e}"),
            Self::Plan { damaged, good, error } => {
                write!(f, "cannot heal {} from {}: {error}", damaged.display(), good.display())
            }
            Self::Read { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for HealError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(e),
            Self::Plan { error, .. } | Self::Read { error, .. } => Some(error),
        }
    }
}

/// Heals `damaged` in place from `good`, a copy of the same checkpoint: rewrites each
/// damaged region whose donor bytes verify and are the bytes the damaged copy's own
/// surviving check values record, nothing else, then scans the result. With `dry_run`,
/// plans only.
///
/// # Errors
/// [`HealError::Backend`] when a copy cannot be opened or rewritten, [`HealError::Plan`]
/// when the copies are not copies of one checkpoint, [`HealError::Read`] when the donor's
/// bytes or the result cannot be read.
///
/// # Examples
/// ```
/// use ckpt_frame_core::{CheckpointId, Style, VecSink, Writer};
/// let dir = tempfile::tempdir()?;
/// let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([3; 16]));
/// let mut f = w.open_frame(Style::Raw)?;
/// f.add(&[7u8; 100_000])?;
/// f.close()?;
/// w.finish()?;
/// let bytes = w.into_sink().into_inner();
/// let (good, damaged) = (dir.path().join("good.ckpt"), dir.path().join("damaged.ckpt"));
/// std::fs::write(&good, &bytes)?;
/// let mut broken = bytes.clone();
/// broken[5000] ^= 0xff;
/// std::fs::write(&damaged, &broken)?;
/// let outcome = ckpt_tree::heal::heal_file(&damaged, &good, false)?;
/// assert!(outcome.healed(false));
/// assert_eq!(std::fs::read(&damaged)?, bytes);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn heal_file(damaged: &Path, good: &Path, dry_run: bool) -> Result<HealOutcome, HealError> {
    let mut d = open_input(damaged, IoMode::Buffered).map_err(HealError::Backend)?;
    let mut g = open_input(good, IoMode::Buffered).map_err(HealError::Backend)?;
    let plan = plan_heal(&mut d, &mut g).map_err(|error| HealError::Plan {
        damaged: damaged.to_path_buf(),
        good: good.to_path_buf(),
        error,
    })?;
    drop(d);
    let rewritten = !dry_run && !plan.rewrite.is_empty();
    if rewritten {
        let read_err = |error| HealError::Read { path: good.to_path_buf(), error };
        let mut g = open_input(good, IoMode::Buffered).map_err(HealError::Backend)?;
        let mut bytes = Vec::with_capacity(plan.rewrite.len());
        for r in &plan.rewrite {
            // Region lengths come from the damaged copy's scan, bounded by its length.
            let mut b = vec![0u8; usize::try_from(r.len).unwrap_or(0)];
            ckpt_frame_core::Source::seek(&mut g, r.offset)
                .and_then(|()| ckpt_frame_core::Source::read_exact(&mut g, &mut b))
                .map_err(|e| read_err(FormatError::Io { offset: r.offset, error: e }))?;
            bytes.push((r.offset, b));
        }
        let ranges: Vec<(u64, &[u8])> = bytes.iter().map(|(o, b)| (*o, b.as_slice())).collect();
        rewrite_ranges(damaged, &ranges).map_err(HealError::Backend)?;
    }
    let still_bad = if dry_run {
        plan.damaged.bad_regions().count()
    } else {
        let mut d = open_input(damaged, IoMode::Buffered).map_err(HealError::Backend)?;
        scan(&mut d, Depth::Decoded)
            .map_err(|error| HealError::Read { path: damaged.to_path_buf(), error })?
            .bad_regions()
            .count()
    };
    Ok(HealOutcome { plan, rewritten, still_bad })
}
