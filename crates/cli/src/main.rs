//! `ckpt`: the command-line tool over the ckpt crates.
//!
//! **Status: placeholder.** The commands (`write`, `restore`, `verify`, `info`, `heal`,
//! `demo`, `sparse ...`, `pool ...`) arrive with the io-backends issue and later ones; this
//! binary is a thin layer and all logic lives in the library crates.

use std::process::ExitCode;

/// Exit status for usage or environment errors, as the CLI contract specifies.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    eprintln!(
        "ckpt {}: no commands are implemented yet (checkpoint format ckpt-frame-core v{})",
        env!("CARGO_PKG_VERSION"),
        ckpt_frame_core::FORMAT_VERSION
    );
    ExitCode::from(EXIT_USAGE)
}
