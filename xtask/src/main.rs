//! `cargo xtask <task>`: maintainer tasks, in Rust so they run wherever cargo does.
//!
//! - `ci`: runs `.ci/run`, exactly what CI runs.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <task>\n\ntasks:\n  ci    run .ci/run (fmt, clippy, tests, no_std build), exactly as CI does"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("ci") => {
            let root = workspace_root();
            match Command::new("bash").arg(root.join(".ci/run")).current_dir(&root).status() {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(s) => {
                    eprintln!("xtask ci: .ci/run failed ({s})");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("xtask ci: cannot run bash .ci/run: {e}");
                    ExitCode::from(2)
                }
            }
        }
        _ => usage(),
    }
}
