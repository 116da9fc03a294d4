//! `cargo xtask <task>`: maintainer tasks, in Rust so they run wherever cargo does
//! (matklad's xtask pattern; the alias is in `.cargo/config.toml`). Standard library only,
//! so it builds in seconds.
//!
//! - `ci`: runs `.ci/run`, exactly what CI runs (the fuzz smoke included).
//! - `fuzz`: runs the cargo-fuzz targets, reports executions and coverage, minimises
//!   crashes into `fuzz/regressions/`.
//! - `bench`: runs the comparison runners in `benches/` and rewrites their tables in
//!   `docs/performance.md`.
//! - `release`: checks, version bump, publish order, `cargo publish --dry-run`, tag.
//!
//! `cargo xtask <task> --help` describes each.

mod bench;
mod fuzz;
mod release;
mod util;

use std::process::{Command, ExitCode};

use util::Error;

const USAGE: &str = "\
usage: cargo xtask <task> [args]   (cargo xtask <task> --help for more)

tasks:
  ci                         run .ci/run (fmt, clippy, tests, no_std build, docs, fuzz
                             smoke), exactly as CI does
  fuzz [TARGET...] [--secs N] [--jobs N] [--smoke]
                             run the cargo-fuzz targets (nightly), report, minimise crashes
  bench [--quick] [--no-write] [RUNNER...]
                             run benches/*compare.sh, rewrite their docs/performance.md blocks
  release [--dry-run|--no-dry-run] [--skip-ci] [--allow-dirty] VERSION
                             release checks, bump, publish order, cargo publish --dry-run, tag";

fn ci(args: &[String]) -> util::Result<()> {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            println!("usage: cargo xtask ci\n\nRuns `bash .ci/run`, the one description of CI.");
            return Ok(());
        }
        return Err(util::usage(format!("ci takes no arguments (got {a:?})")));
    }
    let root = util::workspace_root();
    util::run(Command::new("bash").arg(root.join(".ci/run")).current_dir(&root))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match task.as_str() {
        "ci" => ci(rest),
        "fuzz" => fuzz::main(rest),
        "bench" => bench::main(rest),
        "release" => release::main(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(util::usage(format!("unknown task {other:?}\n\n{USAGE}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            match e {
                Error::Usage(_) => ExitCode::from(2),
                Error::Failed(_) => ExitCode::FAILURE,
            }
        }
    }
}
