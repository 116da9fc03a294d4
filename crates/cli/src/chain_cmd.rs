//! Incremental checkpoints on the command line: `fold`, `prune`, and the chain lines of
//! `info`, `verify` and `list`, over `ckpt_tree::chain`.

use crate::{Failure, backend_failure, human, progress_bar};
use ckpt_frame_core::Style;
use ckpt_frame_core::scan::{Depth, scan};
use ckpt_io_backends::{IoMode, OutputOptions, PublishSink, open_input};
use ckpt_tree::chain::{Chain, Link, parent_name};
use ckpt_tree::{Parent, TreeError, read_parent, write_from_chain};
use serde_json::json;
use std::path::Path;

/// Reads what `write --parent` needs of the parent, recording its name as seen from `out`.
pub(crate) fn parent_for(out: &Path, parent: &Path) -> Result<Parent, Failure> {
    let source = open_input(parent, IoMode::Buffered).map_err(|e| backend_failure(&e))?;
    read_parent(source, parent_name(out, parent))
        .map_err(|e| Failure { code: e.exit_code(), message: format!("{}: {e}", parent.display()) })
}

/// Says what an incremental write took from its parent.
pub(crate) fn report_parent(parent: &Path, summary: &ckpt_tree::WriteSummary) {
    if summary.parent_dropped {
        eprintln!(
            "ckpt: nearly every block differs from {}: wrote a self-contained checkpoint",
            parent.display()
        );
    } else {
        eprintln!(
            "ckpt: incremental on {}: {} of file data taken from it, not stored",
            parent.display(),
            human(summary.inherited_bytes)
        );
    }
}

/// Opens the chain of `input`, naming it in errors.
pub(crate) fn open_chain(input: &Path) -> Result<Chain, Failure> {
    Chain::open(input).map_err(|e| chain_failure(input, &e))
}

fn chain_failure(input: &Path, e: &TreeError) -> Failure {
    Failure { code: e.exit_code(), message: format!("{}: {e}", input.display()) }
}

fn link_json(l: &Link) -> serde_json::Value {
    json!({
        "path": l.path.display().to_string(),
        "id": l.id.to_string(),
        "state_digest": format!("{:016x}", l.digest),
        "bytes": l.len,
        "stored_file_bytes": l.manifest.data_bytes(),
        "file_bytes": l.manifest.entries.iter().map(ckpt_tree::manifest::Entry::content_len).sum::<u64>(),
    })
}

/// The chain of `input` for `info`: `None` for a self-contained checkpoint.
pub(crate) fn chain_info(input: &Path) -> Result<Option<serde_json::Value>, Failure> {
    let chain = open_chain(input)?;
    if chain.links.len() < 2 {
        return Ok(None);
    }
    chain.owners().map_err(|e| chain_failure(input, &e))?;
    Ok(Some(json!(chain.links.iter().map(link_json).collect::<Vec<_>>())))
}

/// Prints a chain as `info` shows it.
pub(crate) fn print_chain(links: &serde_json::Value) {
    let Some(links) = links.as_array() else { return };
    println!("  incremental: a chain of {} checkpoints, newest first", links.len());
    for l in links {
        let n = |k: &str| l[k].as_u64().unwrap_or(0);
        println!(
            "    {} ({}, state {}): stores {} of {} of file data",
            l["path"].as_str().unwrap_or(""),
            l["id"].as_str().unwrap_or(""),
            l["state_digest"].as_str().unwrap_or(""),
            human(n("stored_file_bytes")),
            human(n("file_bytes"))
        );
    }
}

/// Checks the block table of the checkpoint at `input` against the blocks it stores.
pub(crate) fn verify_table(input: &Path) -> Result<(), Failure> {
    let link = Link::open(input).map_err(|e| chain_failure(input, &e))?;
    check_link_table(&link)
}

fn check_link_table(link: &Link) -> Result<(), Failure> {
    let source = link.source().map_err(|e| chain_failure(&link.path, &e))?;
    ckpt_tree::blocks::check_table(source, &link.manifest, &link.table)
        .map_err(|e| chain_failure(&link.path, &e))
}

/// `verify` of an incremental checkpoint's ancestors: each link opened and checked against
/// its child's record, every block resolved, every chunk of every parent checked. Returns
/// the links verified (1 for a self-contained checkpoint).
pub(crate) fn verify_parents(input: &Path) -> Result<usize, Failure> {
    let chain = open_chain(input)?;
    chain.owners().map_err(|e| chain_failure(input, &e))?;
    for (k, link) in chain.links.iter().enumerate().skip(1) {
        let mut src = link.source().map_err(|e| chain_failure(input, &e))?;
        let report = scan(&mut src, Depth::Decoded).map_err(|e| {
            Failure::bad_data(format!("{}: parent {}: {e}", input.display(), link.path.display()))
        })?;
        if report.is_ok() {
            check_link_table(link)?;
        }
        if let Some(bad) = report.bad_regions().next() {
            let child = chain.links.get(k - 1).map_or(input, |l| l.path.as_path());
            return Err(Failure::bad_data(format!(
                "{}: parent of {} is damaged: {} at offset {} ({} bytes)",
                link.path.display(),
                child.display(),
                bad.kind.name(),
                bad.offset,
                bad.len
            )));
        }
    }
    Ok(chain.links.len())
}

/// `ckpt fold CHILD [-o OUT]`: the chain's newest state as one self-contained checkpoint,
/// published durably (by default in place of CHILD).
pub(crate) fn fold(
    child: &Path,
    output: Option<&Path>,
    style: Style,
    threads: usize,
) -> Result<u8, Failure> {
    let chain = open_chain(child)?;
    let out = output.unwrap_or(child);
    let summary = rewrite(&chain, out, None, style, threads)?;
    eprintln!(
        "ckpt: folded a chain of {} into {} ({} of file data, {} stored)",
        chain.links.len(),
        out.display(),
        human(summary.data_bytes),
        human(summary.stored_bytes)
    );
    Ok(0)
}

/// `ckpt prune CHILD`: removes CHILD's parent from the chain by rebasing CHILD onto its
/// grandparent (CHILD then stores what it took from its parent), then deletes the parent,
/// unless another checkpoint beside it still builds on it or `keep` is set.
pub(crate) fn prune(child: &Path, keep: bool, style: Style, threads: usize) -> Result<u8, Failure> {
    let chain = open_chain(child)?;
    let (Some(parent), Some(grandparent)) = (chain.links.get(1), chain.links.get(2)) else {
        return Err(Failure::usage(format!(
            "{}: prune needs a chain of at least three checkpoints (child, parent to remove, \
             grandparent); use `ckpt fold` to make a checkpoint self-contained",
            child.display()
        )));
    };
    let name = parent_name(child, &grandparent.path);
    let summary = rewrite(&chain, child, Some((2, &name)), style, threads)?;
    eprintln!(
        "ckpt: {} now builds on {} ({} stored)",
        child.display(),
        grandparent.path.display(),
        human(summary.stored_bytes)
    );
    let others = dependents(&parent.path, parent.id, child);
    if keep || !others.is_empty() {
        for o in &others {
            eprintln!("ckpt: kept {}: {} still builds on it", parent.path.display(), o.display());
        }
        return Ok(0);
    }
    std::fs::remove_file(&parent.path)
        .and_then(|()| {
            ckpt_io_backends::durable::sync_dir(ckpt_io_backends::durable::parent_dir(&parent.path))
        })
        .map_err(|e| Failure::usage(format!("cannot remove {}: {e}", parent.path.display())))?;
    eprintln!("ckpt: removed {}", parent.path.display());
    Ok(0)
}

/// Other checkpoints in `parent`'s directory whose parent is `id` (the link about to be
/// removed); `except` is the child just rebased.
fn dependents(
    parent: &Path,
    id: ckpt_frame_core::CheckpointId,
    except: &Path,
) -> Vec<std::path::PathBuf> {
    let dir = ckpt_io_backends::durable::parent_dir(parent);
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let except = std::fs::canonicalize(except).ok();
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && std::fs::canonicalize(p).ok() != except)
        .filter(|p| {
            Link::open(p).is_ok_and(|l| l.manifest.parent.is_some_and(|r| r.id == id.to_bytes()))
        })
        .collect()
}

fn rewrite(
    chain: &Chain,
    out: &Path,
    onto: Option<(usize, &[u8])>,
    style: Style,
    threads: usize,
) -> Result<ckpt_tree::WriteSummary, Failure> {
    let total = chain.links.first().map_or(0, |l| l.manifest.data_bytes());
    let bar = progress_bar(total, "rewrite");
    let options = OutputOptions { mode: IoMode::Buffered, size_bound: None };
    let sink = PublishSink::create(out, &options).map_err(|e| backend_failure(&e))?;
    let (sink, summary) =
        write_from_chain(sink, chain, onto, style, threads, &mut |done| bar.set_position(done))
            .map_err(|e| Failure {
                code: e.exit_code(),
                message: format!("{}: {e}", out.display()),
            })?;
    sink.commit().map_err(|e| backend_failure(&e))?;
    bar.finish_and_clear();
    Ok(summary)
}
