//! Shared by the crash explorer's tests: tool lookup with loud skips, and the real `ckpt`
//! binary.
//!
//! A test that needs `strace` (or `pmempool`) starts with [`require`]: when the tool is
//! missing it prints a loud SKIPPED line and returns `false`, except under `CI=true`, where a
//! missing tool is a failure.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether `tool` is installed; if not, a loud skip (or a panic under `CI=true`).
pub fn require(tool: &str, install: &str, test: &str) -> bool {
    if find_in_path(tool).is_some() {
        return true;
    }
    let msg = format!("SKIPPED: {tool} not installed; {install}");
    assert!(!in_ci(), "{msg} (test {test}; CI=true, so {tool} must be installed)");
    let bar = "!".repeat(msg.len().min(100));
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr().lock(), "\n{bar}\n{msg}\n  test: {test}\n{bar}\n");
    false
}

/// `strace` is installed (or the test should return).
pub fn strace_or_skip(test: &str) -> bool {
    require("strace", "apt-get install -y strace", test)
}

/// `pmempool` is installed (or the test should return).
pub fn pmempool_or_skip(test: &str) -> bool {
    require("pmempool", "apt-get install -y pmdk-tools libpmemobj-dev", test)
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The real `ckpt` binary, built once per test binary with the cargo running the tests
/// (`cargo build -p ckpt-cli --bin ckpt`, same target directory and the dev profile), its
/// path taken from cargo's JSON messages: robust to `CARGO_TARGET_DIR` and build layouts.
pub fn ckpt() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args(["build", "-p", "ckpt-cli", "--bin", "ckpt", "--message-format=json"])
            .current_dir(workspace())
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build -p ckpt-cli --bin ckpt failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "ckpt")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no ckpt executable")
    })
}
