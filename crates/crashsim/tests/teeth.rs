//! The explorer has teeth: an atomic replace done right passes every crash state, and the
//! two classic mistakes (publishing data before it is durable, acknowledging a rename
//! before the directory is synced) are caught.

mod common;

use ckpt_crashsim::{Cmd, ExploreSpec, Report, explore};
use std::path::Path;

const OLD: &[u8] = b"old content, version 1.\n";

/// What `crashsim-replace` writes: its pattern repeated to 3000 bytes.
fn new_content() -> Vec<u8> {
    b"new content, version 2. ".iter().copied().cycle().take(3000).collect()
}

fn replace(mode: &str) -> Option<Report> {
    if !common::strace_or_skip(&format!("teeth {mode}")) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    let helper = env!("CARGO_BIN_EXE_crashsim-replace");
    let new = new_content();
    let spec = ExploreSpec::new(&work, Cmd::new(helper).arg(mode).arg(&work))
        .setup(|d: &Path| Ok(std::fs::write(d.join("target"), OLD)?))
        .invariant(|d, crash| {
            let got = std::fs::read(d.join("target")).map_err(|e| format!("target: {e}"))?;
            if got != OLD && got != new {
                let prefix = got.iter().take_while(|&&b| b != 0).count();
                return Err(format!(
                    "target is neither the old nor the new content: {} bytes ({} before the first zero byte)",
                    got.len(),
                    prefix
                ));
            }
            if crash.said("committed") && got != new {
                return Err("the replace was acknowledged (`committed` on stdout) but target holds the old content".into());
            }
            Ok(())
        });
    let report = explore(&spec).unwrap_or_else(|e| panic!("explore {mode}: {e}"));
    eprintln!("teeth {mode}: {report}");
    assert!(!report.truncated);
    Some(report)
}

#[test]
fn correct_replace_survives_every_crash_state() {
    let Some(r) = replace("correct") else { return };
    assert!(r.violations.is_empty(), "{r}\n{}", r.op_list());
    assert!(r.distinct >= 5, "too few states to mean anything: {r}");
}

#[test]
fn rename_before_the_data_is_durable_is_caught() {
    let Some(r) = replace("no-file-fsync") else { return };
    assert!(
        r.violations.iter().any(|v| v.detail.contains("neither the old nor the new")),
        "the explorer missed the unsynced data: {r}\n{}",
        r.op_list()
    );
}

#[test]
fn acknowledged_rename_without_directory_fsync_is_caught() {
    let Some(r) = replace("no-dir-fsync") else { return };
    assert!(
        r.violations.iter().any(|v| v.detail.contains("acknowledged")),
        "the explorer missed the lost rename: {r}\n{}",
        r.op_list()
    );
}
