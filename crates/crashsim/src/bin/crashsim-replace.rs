//! The helper of the teeth tests: replaces `DIR/target` with new content by a temporary
//! file and a rename, done right or deliberately wrong, then prints `committed` on standard
//! output (its acknowledgement to the caller).
//!
//! Usage: `crashsim-replace MODE DIR` with MODE
//! - `correct`: write `target.tmp`, fsync it, rename it over `target`, fsync `DIR`;
//! - `no-file-fsync`: the same without the fsync of `target.tmp` (data published before it
//!   is durable);
//! - `no-dir-fsync`: the same without the fsync of `DIR` (the rename is acknowledged before
//!   it is durable).
//!
//! The new content is [`NEW`] repeated to 3000 bytes (six sectors), so that it can tear.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The pattern of the new content.
const NEW: &[u8] = b"new content, version 2. ";

fn new_content() -> Vec<u8> {
    NEW.iter().copied().cycle().take(3000).collect()
}

fn run(mode: &str, dir: &Path) -> std::io::Result<()> {
    let tmp = dir.join("target.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&new_content())?;
    if mode != "no-file-fsync" {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, dir.join("target"))?;
    if mode != "no-dir-fsync" {
        File::open(dir)?.sync_all()?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(b"committed\n")?;
    out.flush()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: crashsim-replace correct|no-file-fsync|no-dir-fsync DIR");
        return ExitCode::from(2);
    };
    if !["correct", "no-file-fsync", "no-dir-fsync"].contains(&mode.as_str()) {
        eprintln!("unknown mode {mode}");
        return ExitCode::from(2);
    }
    match run(mode, Path::new(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crashsim-replace: {e}");
            ExitCode::FAILURE
        }
    }
}
