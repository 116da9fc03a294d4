//! `ckpt sparse ...`: layout maps and sparse copies of large, mostly-empty files.

use crate::progress_bar;
use crate::{Failure, human};
use ckpt_cli::size::parse_size;
use ckpt_sparse::sync::{
    SyncError, SyncOptions, SyncPhase, receive, sync_local_with_progress, sync_remote_with_progress,
};
use ckpt_sparse::{
    CopyOptions, ReadMode, SparseError, data_layout, fiemap, sparse_copy_with_progress,
};
use clap::Subcommand;
use serde_json::json;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The `sparse` subcommands.
#[derive(Subcommand)]
pub(crate) enum SparseCommand {
    /// Print a file's data and hole extents (`SEEK_DATA`/`SEEK_HOLE`: preallocated extents
    /// are holes), or with --fiemap the file system's extent map (unwritten and shared flags).
    Map {
        /// The file.
        file: PathBuf,
        /// Ask the file system for its extent map (FIEMAP, after syncing the file).
        #[arg(long)]
        fiemap: bool,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Bring DST up to date with SRC sending only changed blocks (coarse blocks hashed on
    /// both sides, then 4 KiB sub-blocks of the ones that differ); holes are punched on DST.
    /// DST is updated under a dirty marker (DST.ckpt-sync) and is complete only when the
    /// command succeeds; an interrupted sync is redone by the next run.
    Sync {
        /// Source file.
        src: PathBuf,
        /// Target file (created if missing).
        dst: PathBuf,
        /// Run this shell command as the receiver and speak the protocol over its stdin and
        /// stdout, e.g. "ssh host ckpt sparse receive /data/disk.img".
        #[arg(long, value_name = "CMD")]
        remote_cmd: Option<String>,
        /// Coarse block size (a power of two, 4 KiB to 64 MiB).
        #[arg(long, default_value = "1MiB", value_parser = parse_size)]
        block_size: u64,
        /// Read the source with `O_DIRECT`, past the page cache (buffered where the file
        /// system refuses it): for images larger than the memory that should stay cached.
        #[arg(long)]
        direct: bool,
        /// Print JSON statistics on stdout (`bytes_sent`, `blocks_changed`, ...).
        #[arg(long)]
        json: bool,
    },
    /// The receiving end of `sparse sync --remote-cmd`: update DST from the protocol on
    /// stdin/stdout.
    Receive {
        /// Target file (created if missing).
        dst: PathBuf,
    },
    /// Copy a child snapshot's data extents into its parent (growing it if needed); safe to
    /// re-run after a crash.
    Fold {
        /// The child (newer) image.
        child: PathBuf,
        /// The parent (older) image, changed in place.
        parent: PathBuf,
        /// Print JSON statistics on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Punch holes in the parent wherever the child has data; safe to re-run.
    Prune {
        /// The parent image, changed in place.
        parent: PathBuf,
        /// The child image.
        child: PathBuf,
        /// Print JSON statistics on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Copy a file reading only its data, with all-zero 4 KiB blocks left as holes; the copy
    /// replaces DST only once complete and durable.
    Copy {
        /// Source file.
        src: PathBuf,
        /// Destination file (replaced).
        dst: PathBuf,
        /// Copy data extents whole with `copy_file_range` (in the kernel; reflinked where the
        /// file system shares extents), keeping written zeros as data.
        #[arg(long)]
        keep_zeros: bool,
        /// Print JSON statistics on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn failure(e: &SparseError) -> Failure {
    Failure::usage(e.to_string())
}

pub(crate) fn run(cmd: SparseCommand) -> Result<u8, Failure> {
    match cmd {
        SparseCommand::Map { file, fiemap: detailed, json } => map(&file, detailed, json),
        SparseCommand::Copy { src, dst, keep_zeros, json } => copy(&src, &dst, keep_zeros, json),
        SparseCommand::Sync { src, dst, remote_cmd, block_size, direct, json } => {
            let read_mode = if direct { ReadMode::Direct } else { ReadMode::Buffered };
            sync(&src, &dst, remote_cmd.as_deref(), block_size, read_mode, json)
        }
        SparseCommand::Fold { child, parent, json } => {
            let stats = ckpt_sparse::fold::fold(&child, &parent).map_err(|e| failure(&e))?;
            report_fold("folded", &child, &parent, &stats, json);
            Ok(0)
        }
        SparseCommand::Prune { parent, child, json } => {
            let stats = ckpt_sparse::fold::prune(&parent, &child).map_err(|e| failure(&e))?;
            report_fold("pruned", &child, &parent, &stats, json);
            Ok(0)
        }
        SparseCommand::Receive { dst } => {
            receive(&dst, std::io::stdin().lock(), std::io::stdout().lock())
                .map_err(|e| sync_failure(&dst, &e))?;
            Ok(0)
        }
    }
}

fn map(path: &Path, detailed: bool, json: bool) -> Result<u8, Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::usage(format!("cannot open {}: {e}", path.display())))?;
    let layout = data_layout(&file, path).map_err(|e| failure(&e))?;
    let extents = if detailed { fiemap(&file, path, true).map_err(|e| failure(&e))? } else { None };
    if detailed && extents.is_none() {
        eprintln!(
            "ckpt: {}: the file system has no FIEMAP; showing SEEK_DATA/SEEK_HOLE",
            path.display()
        );
    }
    if json {
        let mut v = json!({
            "file": path.display().to_string(),
            "size": layout.size,
            "data_bytes": layout.data.total_len(),
            "data": layout.data.iter().map(|i| json!({"offset": i.start, "len": i.len()})).collect::<Vec<_>>(),
            "holes": layout.holes().iter().map(|i| json!({"offset": i.start, "len": i.len()})).collect::<Vec<_>>(),
        });
        if let Some(ext) = &extents {
            v["fiemap"] = ext
                .iter()
                .map(|e| {
                    json!({"logical": e.logical, "physical": e.physical, "len": e.len,
                           "unwritten": e.unwritten, "shared": e.shared, "flags": e.flags})
                })
                .collect();
        }
        println!("{v:#}");
        return Ok(0);
    }
    println!(
        "{}: {} ({} bytes), {} of data in {} extents, {} in holes",
        path.display(),
        human(layout.size),
        layout.size,
        human(layout.data.total_len()),
        layout.data.len(),
        human(layout.size - layout.data.total_len().min(layout.size))
    );
    if let Some(ext) = &extents {
        println!("{:>16} {:>16} {:>14}  flags", "logical", "physical", "length");
        for e in ext {
            let flags: Vec<&str> = [(e.unwritten, "unwritten"), (e.shared, "shared")]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
            println!("{:>16} {:>16} {:>14}  {}", e.logical, e.physical, e.len, flags.join(","));
        }
    } else {
        let mut all: Vec<(u64, u64, &str)> = layout
            .data
            .iter()
            .map(|i| (i.start, i.end, "data"))
            .chain(layout.holes().iter().map(|i| (i.start, i.end, "hole")))
            .collect();
        all.sort_unstable();
        println!("{:>16} {:>16}  kind", "start", "end");
        for (start, end, kind) in all {
            println!("{start:>16} {end:>16}  {kind}");
        }
    }
    Ok(0)
}

fn copy(src: &Path, dst: &Path, keep_zeros: bool, json: bool) -> Result<u8, Failure> {
    let started = Instant::now();
    let opts = CopyOptions { detect_zeros: !keep_zeros, ..CopyOptions::default() };
    let bar = progress_bar(0, "copy");
    let result = sparse_copy_with_progress(src, dst, &opts, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let stats = result.map_err(|e| failure(&e))?;
    let secs = started.elapsed().as_secs_f64();
    if json {
        let v = json!({
            "src": src.display().to_string(), "dst": dst.display().to_string(),
            "size": stats.size, "data_read": stats.data_read, "data_written": stats.data_written,
            "zero_blocks": stats.zero_blocks, "extents": stats.extents,
            "kernel_copied": stats.kernel_copied, "seconds": secs,
        });
        println!("{v:#}");
    } else {
        eprintln!(
            "ckpt: copied {} ({}) to {}: read {} of data in {} extents, wrote {} ({} zero blocks left as holes) in {secs:.2} s",
            src.display(),
            human(stats.size),
            dst.display(),
            human(stats.data_read),
            stats.extents,
            human(stats.data_written),
            stats.zero_blocks
        );
    }
    Ok(0)
}

fn sync_failure(dst: &Path, e: &SyncError) -> Failure {
    let code = match e {
        SyncError::Mismatch { .. } => 1,
        _ => 2,
    };
    Failure { code, message: format!("sync of {} failed: {e}", dst.display()) }
}

fn sync(
    src: &Path,
    dst: &Path,
    remote: Option<&str>,
    block_size: u64,
    read_mode: ReadMode,
    json: bool,
) -> Result<u8, Failure> {
    let block_size = u32::try_from(block_size)
        .map_err(|_| Failure::usage(format!("--block-size {block_size} is too large")))?;
    let opts = SyncOptions { block_size, read_mode, ..SyncOptions::default() };
    let started = Instant::now();
    let bar = progress_bar(0, "hash");
    let mut phase = SyncPhase::Hashing;
    let mut progress = |now: SyncPhase, done: u64, total: u64| {
        if now != phase {
            phase = now;
            bar.set_message("send");
        }
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = match remote {
        Some(cmd) => sync_remote_with_progress(src, cmd, &opts, &mut progress),
        None => sync_local_with_progress(src, dst, &opts, &mut progress),
    };
    bar.finish_and_clear();
    let stats = result.map_err(|e| sync_failure(dst, &e))?;
    let secs = started.elapsed().as_secs_f64();
    if stats.redone {
        eprintln!("ckpt: {}: an unfinished earlier sync was found and redone", dst.display());
    }
    if json {
        let v = json!({
            "src": src.display().to_string(), "dst": dst.display().to_string(),
            "size": stats.size, "bytes_sent": stats.bytes_sent,
            "blocks_changed": stats.blocks_changed, "coarse_blocks_changed": stats.coarse_changed,
            "redone": stats.redone, "seconds": secs,
        });
        println!("{v:#}");
    } else {
        eprintln!(
            "ckpt: synced {} ({}) to {}: sent {} in {} changed 4 KiB blocks in {secs:.2} s",
            src.display(),
            human(stats.size),
            dst.display(),
            human(stats.bytes_sent),
            stats.blocks_changed
        );
    }
    Ok(0)
}

fn report_fold(
    what: &str,
    child: &Path,
    parent: &Path,
    s: &ckpt_sparse::fold::FoldStats,
    json: bool,
) {
    if json {
        let v = json!({
            "child": child.display().to_string(), "parent": parent.display().to_string(),
            "bytes_written": s.bytes_written, "bytes_punched": s.bytes_punched,
            "parent_size": s.parent_size,
        });
        println!("{v:#}");
    } else {
        eprintln!(
            "ckpt: {what} {} / {}: wrote {}, punched {}, parent now {}",
            child.display(),
            parent.display(),
            human(s.bytes_written),
            human(s.bytes_punched),
            human(s.parent_size)
        );
    }
}
