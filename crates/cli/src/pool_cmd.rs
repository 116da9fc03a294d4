//! `ckpt pool ...`: check, sync and transform PMDK pool sets.

use crate::{Failure, human, progress_bar};
use ckpt_cli::size::parse_size;
use ckpt_poolset::PoolError;
use ckpt_poolset::agreement::Disagreement;
use ckpt_poolset::health::{PoolHealth, check};
use ckpt_poolset::native::{Access, NativePool, ScrubReport};
use ckpt_poolset::sync::{SyncOptions, SyncReport, sync};
use ckpt_poolset::transform::{TransformKind, TransformOptions, TransformReport, transform};
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The `pool` subcommands.
#[derive(Subcommand)]
pub(crate) enum PoolCommand {
    /// Report the health of every part and replica of a pool set (exit 1 if any is broken).
    Check {
        /// The poolset file.
        set: PathBuf,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild missing and broken parts from healthy data, range by range across replicas;
    /// crash-safe (an interrupted sync is finished or undone by the next run).
    Sync {
        /// The poolset file.
        set: PathBuf,
        /// Only report what would be rebuilt.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Create a ckpt-native pool (per-block checksums, self-healing) on a poolset file whose
    /// part files do not exist yet.
    Create {
        /// The poolset file.
        set: PathBuf,
        /// Block size: the unit of checksums and healing (a power of two, at least 4 KiB).
        #[arg(long, default_value = "64KiB", value_parser = parse_size)]
        block_size: u64,
    },
    /// Read every block of every replica of a native pool, verify it and heal each bad copy
    /// from a copy that verifies (exit 1 if some block has no verified copy anywhere; such
    /// blocks are left as they are).
    Scrub {
        /// The poolset file.
        set: PathBuf,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write bytes (a file, or stdin with -) at OFFSET of a native pool's address space, in
    /// every replica, and publish: every replica fsynced, then the new published length.
    Write {
        /// The poolset file.
        set: PathBuf,
        /// Byte offset in the pool's data area.
        #[arg(long, default_value = "0", value_parser = parse_size)]
        offset: u64,
        /// The bytes to write: a file, or - for stdin.
        input: PathBuf,
    },
    /// Read LEN published bytes at OFFSET of a native pool to stdout, each block from a
    /// replica whose copy verifies (readers never write: `pool scrub` heals the bad copies).
    Read {
        /// The poolset file.
        set: PathBuf,
        /// Byte offset in the published range.
        #[arg(long, default_value = "0", value_parser = parse_size)]
        offset: u64,
        /// Bytes to read (default: to the end of the published range).
        #[arg(long, value_parser = parse_size)]
        len: Option<u64>,
    },
    /// Change the structure of SRC into that of DST, one kind of change per call: add
    /// replicas, remove replicas (at least one stays), or add or remove OPTION SINGLEHDR.
    /// SRC stays valid until the new set is complete and durable.
    Transform {
        /// The poolset file of the existing pool set.
        src: PathBuf,
        /// The poolset file describing the new structure.
        dst: PathBuf,
        /// Only check and report what would change.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
}

const EXIT_UNHEALTHY: u8 = 1;

fn failure(set: &Path, e: &PoolError) -> Failure {
    let code = match e {
        PoolError::Grammar(_) => 2,
        _ => EXIT_UNHEALTHY,
    };
    let message = match e {
        // The error names the set file it is about (SRC or DST of a transform).
        PoolError::SetDisagrees { .. } => e.to_string(),
        _ => format!("{}: {e}", set.display()),
    };
    Failure { code, message }
}

pub(crate) fn run(command: PoolCommand) -> Result<u8, Failure> {
    match command {
        PoolCommand::Check { set, json } => {
            let health = check(&set).map_err(|e| failure(&set, &e))?;
            print_health(&set, &health, json);
            Ok(if health.is_healthy() { 0 } else { EXIT_UNHEALTHY })
        }
        PoolCommand::Sync { set, dry_run, json } => {
            let started = Instant::now();
            let bar = progress_bar(0, "sync");
            let result = sync(&set, &SyncOptions { dry_run }, &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let report = result.map_err(|e| {
                print_refusal_json(&set, &e, json);
                failure(&set, &e)
            })?;
            print_sync(&set, &report, started.elapsed().as_secs_f64(), json);
            Ok(0)
        }
        PoolCommand::Create { set, block_size } => {
            let block_size = u32::try_from(block_size)
                .map_err(|_| Failure::usage(format!("--block-size {block_size} is too large")))?;
            let pool = NativePool::create(&set, block_size).map_err(|e| failure(&set, &e))?;
            eprintln!(
                "ckpt: created native pool {}: {} replicas, {} blocks of {}, {} for data ({} per checkpoint)",
                set.display(),
                check(&set).map_or(0, |h| h.replicas.len()),
                pool.descriptor().block_count,
                human(u64::from(block_size)),
                human(pool.capacity()),
                human(pool.half()),
            );
            Ok(0)
        }
        PoolCommand::Scrub { set, json } => {
            let started = Instant::now();
            let mut pool = NativePool::open(&set, Access::Write).map_err(|e| failure(&set, &e))?;
            let bar = progress_bar(0, "scrub");
            let result = pool.scrub(&mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let report = result.map_err(|e| failure(&set, &e))?;
            print_scrub(&set, &report, started.elapsed().as_secs_f64(), json);
            Ok(if report.unrecoverable.is_empty() { 0 } else { EXIT_UNHEALTHY })
        }
        PoolCommand::Write { set, offset, input } => pool_write(&set, offset, &input),
        PoolCommand::Read { set, offset, len } => pool_read(&set, offset, len),
        PoolCommand::Transform { src, dst, dry_run, json } => {
            let started = Instant::now();
            let bar = progress_bar(0, "transform");
            let result =
                transform(&src, &dst, &TransformOptions { dry_run }, &mut |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                });
            bar.finish_and_clear();
            let report = result.map_err(|e| {
                print_refusal_json(&src, &e, json);
                failure(&src, &e)
            })?;
            print_transform(&src, &dst, &report, started.elapsed().as_secs_f64(), json);
            Ok(0)
        }
    }
}

fn pool_write(set: &Path, offset: u64, input: &Path) -> Result<u8, Failure> {
    let bytes = if input.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
            .map_err(|e| Failure::usage(format!("stdin: {e}")))?;
        v
    } else {
        std::fs::read(input).map_err(|e| Failure::usage(format!("{}: {e}", input.display())))?
    };
    let mut pool = NativePool::open(set, Access::Write).map_err(|e| failure(set, &e))?;
    pool.write_at(offset, &bytes).map_err(|e| failure(set, &e))?;
    let old = pool.published();
    let end = (offset + bytes.len() as u64).max(old.start + old.len);
    let start = if old.len == 0 { offset } else { old.start.min(offset) };
    let published = pool.publish(start, end - start).map_err(|e| failure(set, &e))?;
    eprintln!(
        "ckpt: wrote {} at {offset} of {}; published bytes {}..{} (generation {})",
        human(bytes.len() as u64),
        set.display(),
        published.start,
        published.start + published.len,
        published.generation
    );
    Ok(0)
}

fn pool_read(set: &Path, offset: u64, len: Option<u64>) -> Result<u8, Failure> {
    let pool = NativePool::open(set, Access::Read).map_err(|e| failure(set, &e))?;
    let published = pool.published();
    let len = len.unwrap_or(published.len.saturating_sub(offset));
    let mut out = std::io::stdout().lock();
    let mut at = offset;
    let mut buf = vec![0u8; 1 << 20];
    while at < offset + len {
        let n = usize::try_from((offset + len - at).min(1 << 20)).unwrap_or(1 << 20);
        let piece = buf.get_mut(..n).unwrap_or_default();
        pool.read_published(at, piece).map_err(|e| failure(set, &e))?;
        std::io::Write::write_all(&mut out, piece)
            .map_err(|e| Failure::usage(format!("stdout: {e}")))?;
        at += n as u64;
    }
    Ok(0)
}

fn kind_text(kind: &TransformKind) -> String {
    match kind {
        TransformKind::AddReplicas(r) => format!("add replicas {r:?}"),
        TransformKind::RemoveReplicas(r) => format!("remove replicas {r:?}"),
        TransformKind::SingleHeader(true) => "add OPTION SINGLEHDR".to_owned(),
        TransformKind::SingleHeader(false) => "remove OPTION SINGLEHDR".to_owned(),
        _ => format!("{kind:?}"),
    }
}

fn print_transform(src: &Path, dst: &Path, report: &TransformReport, secs: f64, json: bool) {
    let paths = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
    if json {
        let v = json!({
            "src": src.display().to_string(), "dst": dst.display().to_string(),
            "change": kind_text(&report.kind), "dry_run": report.dry_run,
            "recovered_journal": report.recovered.map(|s| format!("{s:?}").to_lowercase()),
            "built": paths(&report.built), "removed": paths(&report.removed),
            "relinked": paths(&report.relinked), "bytes_copied": report.bytes_copied,
            "already_done": report.already_done, "seconds": secs,
        });
        println!("{v:#}");
        return;
    }
    if let Some(state) = report.recovered {
        eprintln!("ckpt: an interrupted run was found ({state:?}) and recovered");
    }
    if report.already_done {
        eprintln!(
            "ckpt: {} -> {}: the pool already has the structure of {} ({}); nothing to do",
            src.display(),
            dst.display(),
            dst.display(),
            kind_text(&report.kind)
        );
        return;
    }
    let how = if report.dry_run { "would" } else { "did" };
    eprintln!(
        "ckpt: {} -> {}: {how} {}: build {} part(s), remove {}, relink {}; copied {} in {secs:.2} s",
        src.display(),
        dst.display(),
        kind_text(&report.kind),
        report.built.len(),
        report.removed.len(),
        report.relinked.len(),
        human(report.bytes_copied)
    );
}

fn disagreements_json(disagreements: &[Disagreement]) -> Value {
    disagreements
        .iter()
        .map(|d| {
            let (replica, part) = d.place();
            json!({ "kind": d.kind(), "replica": replica, "part": part, "message": d.to_string() })
        })
        .collect()
}

/// For `--json` runs: a refusal because the set file disagrees with the pool is printed on
/// stdout too, naming each disagreement, before the usual message on stderr.
fn print_refusal_json(set: &Path, e: &PoolError, json: bool) {
    if let (true, PoolError::SetDisagrees { set: file, disagreements }) = (json, e) {
        let v = json!({
            "set": set.display().to_string(),
            "refused": true,
            "set_file": file.display().to_string(),
            "disagreements": disagreements_json(disagreements),
        });
        println!("{v:#}");
    }
}

fn health_json(health: &PoolHealth) -> Value {
    json!({
        "healthy": health.is_healthy(),
        "pool_size": health.set.pool_size(),
        "recorded_size": health.recorded_size.map(|r| json!({
            "bytes": r.bytes, "replica": r.replica, "record": r.record,
        })),
        "disagreements": disagreements_json(&health.disagreements),
        "poolset_uuid": health.poolset_uuid.map(|u| u.to_string()),
        "replicas": health.replicas.iter().enumerate().map(|(r, rep)| json!({
            "replica": r,
            "healthy": rep.is_healthy(),
            "parts": rep.parts.iter().enumerate().map(|(p, part)| json!({
                "part": p,
                "path": part.path.display().to_string(),
                "size": part.size,
                "healthy": part.is_healthy(),
                "problem": part.problem.as_ref().map(ckpt_poolset::health::PartProblem::kind),
                "reason": part.problem.as_ref().map(ToString::to_string),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn print_health(set: &Path, health: &PoolHealth, json: bool) {
    if json {
        let mut v = health_json(health);
        v["set"] = json!(set.display().to_string());
        println!("{v:#}");
        return;
    }
    println!(
        "{}: {} replicas, pool size {} ({})",
        set.display(),
        health.replicas.len(),
        human(health.set.pool_size()),
        if health.is_healthy() { "healthy" } else { "NOT healthy" }
    );
    for (r, rep) in health.replicas.iter().enumerate() {
        let name = if r == 0 { "replica 0 (master)".to_owned() } else { format!("replica {r}") };
        println!("{name}: {}", if rep.is_healthy() { "healthy" } else { "broken" });
        for (p, part) in rep.parts.iter().enumerate() {
            match &part.problem {
                None => println!("  part {p} {}: ok", part.path.display()),
                Some(problem) => println!("  part {p} {}: {problem}", part.path.display()),
            }
        }
    }
    if !health.disagreements.is_empty() {
        println!(
            "the set file disagrees with the pool's own records (sync and transform refuse until it is corrected):"
        );
        for d in &health.disagreements {
            println!("  - {d}");
        }
    }
}

fn print_sync(set: &Path, report: &SyncReport, secs: f64, json: bool) {
    if json {
        let v = json!({
            "set": set.display().to_string(),
            "dry_run": report.dry_run,
            "recovered_journal": report.recovered.map(|s| format!("{s:?}").to_lowercase()),
            "rebuilt": report.rebuilt.iter().map(|p| json!({
                "replica": p.replica, "part": p.part, "path": p.path.display().to_string(),
                "reason": p.reason,
                "sources": p.sources.iter().map(|s| json!({"start": s.start, "end": s.end, "replica": s.replica})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "relinked": report.relinked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "bytes_copied": report.bytes_copied,
            "seconds": secs,
        });
        println!("{v:#}");
        return;
    }
    if let Some(state) = report.recovered {
        eprintln!(
            "ckpt: {}: an interrupted run was found ({state:?}) and {}",
            set.display(),
            if report.dry_run { "would be recovered" } else { "was recovered" }
        );
    }
    if report.rebuilt.is_empty() && report.relinked.is_empty() {
        eprintln!("ckpt: {}: healthy, nothing to do", set.display());
        return;
    }
    let verb = if report.dry_run { "would rebuild" } else { "rebuilt" };
    for p in &report.rebuilt {
        let from: Vec<String> = p
            .sources
            .iter()
            .map(|s| format!("{:#x}..{:#x} from replica {}", s.start, s.end, s.replica))
            .collect();
        eprintln!(
            "ckpt: {verb} replica {} part {} {} ({}): {}",
            p.replica,
            p.part,
            p.path.display(),
            p.reason,
            if from.is_empty() { "header only".to_owned() } else { from.join(", ") }
        );
    }
    for path in &report.relinked {
        eprintln!(
            "ckpt: {} header of {}",
            if report.dry_run { "would relink" } else { "relinked" },
            path.display()
        );
    }
    if !report.dry_run {
        eprintln!("ckpt: copied {} in {secs:.2} s", human(report.bytes_copied));
    }
}

fn print_scrub(set: &Path, report: &ScrubReport, secs: f64, json: bool) {
    if json {
        let v = json!({
            "set": set.display().to_string(),
            "blocks_checked": report.blocks_checked,
            "replicas": report.healed.iter().zip(&report.metadata_healed).enumerate().map(|(r, (h, m))| json!({
                "replica": r, "blocks_healed": h, "metadata_healed": m,
            })).collect::<Vec<_>>(),
            "unrecoverable_blocks": report.unrecoverable,
            "seconds": secs,
        });
        println!("{v:#}");
        return;
    }
    eprintln!(
        "ckpt: {}: {} blocks checked in every replica in {secs:.2} s",
        set.display(),
        report.blocks_checked
    );
    for (r, (healed, meta)) in report.healed.iter().zip(&report.metadata_healed).enumerate() {
        eprintln!(
            "ckpt: replica {r}: {healed} bad blocks healed from verified copies{}",
            if *meta { ", control records rewritten" } else { "" }
        );
    }
    if !report.unrecoverable.is_empty() {
        eprintln!(
            "ckpt: {} blocks have no verified copy in any replica and were left as they are: {:?}",
            report.unrecoverable.len(),
            report.unrecoverable
        );
    }
}
