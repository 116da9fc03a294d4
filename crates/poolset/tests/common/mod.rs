//! PMDK test harness shared by the poolset integration tests: the real `pmempool`, pool set
//! files in temporary directories, `pmempool info` parsing, and a root-object helper built
//! against the real libpmemobj (`tests/fixtures/pmemobj_root.c`).
//!
//! Tests that need PMDK start with [`pmempool_or_skip`] (and [`libpmemobj_or_skip`] for the
//! root-object helper): when the tool is missing they print a loud SKIPPED line and return
//! early, except under `CI=true`, where a missing PMDK is a failure.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// What to install when PMDK is missing.
pub const INSTALL_HINT: &str = "apt-get install -y pmdk-tools libpmemobj-dev";

/// The fixtures directory (`tests/fixtures`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Prints the loud skip message for `test_name`, or panics with it under `CI=true`.
fn skip(test_name: &str, what: &str) {
    let msg = format!("SKIPPED: {what}; {INSTALL_HINT}");
    assert!(!in_ci(), "{msg} (test {test_name}; CI=true, so PMDK must be installed)");
    let bar = "!".repeat(msg.len().min(100));
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr().lock(), "\n{bar}\n{msg}\n  test: {test_name}\n{bar}\n");
}

/// A prerequisite of `test` other than PMDK (root, an architecture) is missing: fails the
/// test under `CI=true`, else prints `SKIP <test>: <reason>` to stderr (shown even when the
/// test passes) and returns false, so the test can `return`.
pub fn unavailable(test: &str, reason: &str) -> bool {
    assert!(
        !in_ci(),
        "{test}: {reason} (CI=true: a missing prerequisite is a failure, not a skip)"
    );
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr().lock(), "SKIP {test}: {reason}");
    false
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The `pmempool` binary, if installed.
pub fn pmempool_path() -> Option<PathBuf> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| find_in_path("pmempool")).clone()
}

/// Finds `pmempool`. When it is absent, prints
/// `SKIPPED: pmempool not installed; apt-get install -y pmdk-tools libpmemobj-dev` to stderr
/// and returns `None` (the test should return), or panics with that message when `CI=true`.
pub fn pmempool_or_skip(test_name: &str) -> Option<PathBuf> {
    let found = pmempool_path();
    if found.is_none() {
        skip(test_name, "pmempool not installed");
    }
    found
}

fn pmempool() -> PathBuf {
    pmempool_path().unwrap_or_else(|| panic!("pmempool not installed; {INSTALL_HINT}"))
}

fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// Runs `pmempool ARGS...` and returns its output (not checked).
pub fn run_pmempool(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(pmempool())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run pmempool {args:?}: {e}"))
}

/// `pmempool create obj --layout=LAYOUT SET`; panics with pmempool's output on failure.
pub fn create_obj_pool(set: &Path, layout: &str) {
    let layout_arg = format!("--layout={layout}");
    let out = run_pmempool(&["create".as_ref(), "obj".as_ref(), layout_arg.as_ref(), set.as_ref()]);
    assert!(
        out.status.success(),
        "pmempool create obj {layout_arg} {} failed ({}):\n{}",
        set.display(),
        out.status,
        output_text(&out)
    );
}

/// What `pmempool check -v` said about a pool set.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// Exit status 0 and the verdict line says "consistent" (not "not consistent").
    pub consistent: bool,
    /// stdout and stderr.
    pub output: String,
}

/// `pmempool check -v SET` (no repair).
pub fn pmempool_check(set: &Path) -> CheckOutcome {
    let out = run_pmempool(&["check".as_ref(), "-v".as_ref(), set.as_ref()]);
    let output = output_text(&out);
    let consistent = out.status.success()
        && output.lines().any(|l| l.trim_end().ends_with(": consistent"))
        && !output.contains("not consistent");
    CheckOutcome { consistent, output }
}

/// `pmempool info PATH` (a pool set or a single part file); panics on failure.
pub fn pmempool_info(path: &Path) -> String {
    pmempool_info_args(&[], path)
}

/// `pmempool info EXTRA... PATH`; panics on failure.
pub fn pmempool_info_args(extra: &[&str], path: &Path) -> String {
    let mut args: Vec<&std::ffi::OsStr> = vec!["info".as_ref()];
    args.extend(extra.iter().map(|a| -> &std::ffi::OsStr { a.as_ref() }));
    args.push(path.as_ref());
    let out = run_pmempool(&args);
    let text = output_text(&out);
    assert!(out.status.success(), "pmempool info {extra:?} {} failed:\n{text}", path.display());
    text
}

/// The `key : value` lines of the sections of `pmempool info` output, by section title
/// (`"POOL Header"`, `"PMEM OBJ Header"`, ...); the first section of each title wins, and
/// within it the first line of each key.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Info {
    /// The value of `key` in section `section`; panics with the text when absent.
    pub fn get(&self, section: &str, key: &str) -> &str {
        self.sections
            .get(section)
            .and_then(|s| s.get(key))
            .unwrap_or_else(|| panic!("pmempool info has no {key:?} in {section:?}: {self:#?}"))
    }

    /// The `POOL Header` value of `key`.
    pub fn pool(&self, key: &str) -> &str {
        self.get("POOL Header", key)
    }

    /// The `PMEM OBJ Header` value of `key`.
    pub fn obj(&self, key: &str) -> &str {
        self.get("PMEM OBJ Header", key)
    }
}

/// Parses `pmempool info` output.
pub fn parse_info(text: &str) -> Info {
    let mut info = Info::default();
    let mut section: Option<String> = None;
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(" : ") {
            if let Some(sec) = &section {
                let map = info.sections.entry(sec.clone()).or_default();
                map.entry(key.trim().to_owned()).or_insert_with(|| value.trim().to_owned());
            }
        } else if let Some(title) = line.strip_suffix(':') {
            if !title.starts_with(' ') && !title.is_empty() {
                let title = title.trim().to_owned();
                section = if info.sections.contains_key(&title) { None } else { Some(title) };
            }
        } else if line.trim().is_empty() {
            section = None;
        }
    }
    info
}

/// The number at the start of an info value (`"0x6 [CKSUM_2K]"` → 6, `"1024"` → 1024).
pub fn info_number(value: &str) -> u64 {
    let token = value.split(|c: char| c.is_whitespace() || c == '[').next().unwrap_or("");
    let parsed = match token.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => token.parse(),
    };
    parsed.unwrap_or_else(|e| panic!("info value {value:?} is not a number: {e}"))
}

/// For a checksum value printed as `0x... [wrong! should be: 0x...]`, the value PMDK
/// computed; `None` for `[OK]`.
pub fn info_should_be(value: &str) -> Option<u64> {
    let rest = value.split("should be:").nth(1)?;
    Some(info_number(rest.trim().trim_end_matches(']')))
}

/// Writes `dir/pool.set` for `replicas` (each a list of `(size, part file name)`), with
/// `OPTION` lines for `options`, part paths absolute under `dir`. Returns the set's path.
pub fn write_set(dir: &Path, replicas: &[&[(&str, &str)]], options: &[&str]) -> PathBuf {
    write_set_named(dir, "pool.set", replicas, options)
}

/// [`write_set`] with a chosen set file name.
pub fn write_set_named(
    dir: &Path,
    name: &str,
    replicas: &[&[(&str, &str)]],
    options: &[&str],
) -> PathBuf {
    let dir = fs::canonicalize(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut text = String::from("PMEMPOOLSET\n");
    for opt in options {
        writeln!(text, "OPTION {opt}").unwrap();
    }
    for (r, parts) in replicas.iter().enumerate() {
        if r > 0 {
            text.push_str("REPLICA\n");
        }
        for (size, part) in *parts {
            writeln!(text, "{size} {}", dir.join(part).display()).unwrap();
        }
    }
    let path = dir.join(name);
    fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// The 2-replica, 2-part set of 16 MiB parts used by most tests: `r0p0 r0p1 | r1p0 r1p1`.
pub fn write_set_2x2(dir: &Path) -> PathBuf {
    write_set(dir, &[&[("16M", "r0p0"), ("16M", "r0p1")], &[("16M", "r1p0"), ("16M", "r1p1")]], &[])
}

/// The part lines of a simple pool set file (`SIZE PATH`), by replica: (size token, path).
pub fn set_part_lines(set: &Path) -> Vec<Vec<(String, PathBuf)>> {
    let text = fs::read_to_string(set).unwrap_or_else(|e| panic!("{}: {e}", set.display()));
    let mut replicas = vec![Vec::new()];
    for line in text.lines().map(str::trim) {
        if line == "REPLICA" {
            replicas.push(Vec::new());
        } else if let Some((size, path)) = line.split_once(char::is_whitespace)
            && size.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && let Some(last) = replicas.last_mut()
        {
            last.push((size.to_owned(), PathBuf::from(path.trim())));
        }
    }
    replicas
}

/// The part file paths of a simple pool set file (lines `SIZE PATH`), by replica.
pub fn set_parts(set: &Path) -> Vec<Vec<PathBuf>> {
    set_part_lines(set).into_iter().map(|r| r.into_iter().map(|(_, p)| p).collect()).collect()
}

/// Copies a simple pool set (its part files and set file) into `dir`, keeping part file
/// names; returns the new set file's path.
pub fn copy_set(set: &Path, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(set).unwrap_or_else(|e| panic!("{}: {e}", set.display()));
    let dir = fs::canonicalize(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out = String::new();
    for line in text.lines() {
        let copied = line.trim().split_once(char::is_whitespace).and_then(|(size, path)| {
            if !size.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                return None;
            }
            let src = Path::new(path.trim());
            let dst = dir.join(src.file_name()?);
            fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            Some(format!("{size} {}", dst.display()))
        });
        out.push_str(&copied.unwrap_or_else(|| line.to_owned()));
        out.push('\n');
    }
    let name = set.file_name().unwrap_or_else(|| "pool.set".as_ref());
    let path = dir.join(name);
    fs::write(&path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// The first `len` bytes of a file.
pub fn read_prefix(path: &Path, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    buf
}

/// `len` bytes of a file at `offset`.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.seek(SeekFrom::Start(offset)).unwrap_or_else(|e| panic!("seek {}: {e}", path.display()));
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    buf
}

/// Overwrites `bytes` of a file at `offset` and fsyncs it.
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.seek(SeekFrom::Start(offset)).unwrap_or_else(|e| panic!("seek {}: {e}", path.display()));
    f.write_all(bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.sync_all().unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
}

/// XORs the byte at `offset` of a file with `mask`.
pub fn flip_byte(path: &Path, offset: u64, mask: u8) {
    let old = read_at(path, offset, 1);
    write_at(path, offset, &[old.first().copied().unwrap_or(0) ^ mask]);
}

// ---------------------------------------------------------------------------------------
// The root-object helper (real libpmemobj)
// ---------------------------------------------------------------------------------------

const ROOT_TOOL_SRC: &str = include_str!("../fixtures/pmemobj_root.c");

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The bytes the helper writes into a root object for `seed`: byte `i` is byte `i % 8`
/// (little-endian) of `splitmix64(seed + i / 8)`.
pub fn root_pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut k = 0u64;
    while out.len() < len {
        out.extend_from_slice(&splitmix64(seed.wrapping_add(k)).to_le_bytes());
        k += 1;
    }
    out.truncate(len);
    out
}

/// Builds the helper once per test binary under `CARGO_TARGET_TMPDIR`, named by a hash of
/// its source so that an edited source is rebuilt.
fn root_tool() -> Result<PathBuf, String> {
    static TOOL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOOL.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in ROOT_TOOL_SRC.bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let exe = dir.join(format!("pmemobj_root-{hash:016x}"));
        if exe.is_file() {
            return Ok(exe);
        }
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = dir.join(format!("pmemobj_root-{hash:016x}.{}.tmp", std::process::id()));
        let src = fixtures().join("pmemobj_root.c");
        let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let out = Command::new(&cc)
            .args(["-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-lpmemobj")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", cc.to_string_lossy()))?;
        if !out.status.success() {
            return Err(format!("cc {} failed:\n{}", src.display(), output_text(&out)));
        }
        fs::rename(&tmp, &exe).map_err(|e| format!("rename to {}: {e}", exe.display()))?;
        Ok(exe)
    })
    .clone()
}

/// Builds the root-object helper (needs `cc` and libpmemobj-dev). When that fails, prints
/// a loud SKIPPED line and returns false, or panics when `CI=true`.
pub fn libpmemobj_or_skip(test_name: &str) -> bool {
    match root_tool() {
        Ok(_) => true,
        Err(e) => {
            skip(test_name, &format!("libpmemobj helper cannot be built ({e})"));
            false
        }
    }
}

/// Where the helper found or put the root object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootInfo {
    /// Offset of the root object in the pool (replica address space).
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

fn run_root_tool(
    mode: &str,
    set: &Path,
    layout: &str,
    seed: u64,
    len: usize,
) -> Result<RootInfo, String> {
    let exe = root_tool()?;
    let out = Command::new(&exe)
        .arg(mode)
        .arg(set)
        .arg(layout)
        .arg(seed.to_string())
        .arg(len.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let text = output_text(&out);
    if !out.status.success() {
        return Err(format!(
            "pmemobj_root {mode} {} ({}): {}",
            set.display(),
            out.status,
            text.trim()
        ));
    }
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(info_number)
            .ok_or_else(|| format!("pmemobj_root printed no {name}: {text}"))
    };
    Ok(RootInfo { offset: field("root_offset=")?, size: field("root_size=")? })
}

/// Opens the pool with libpmemobj (any layout), allocates a root object of `len` bytes,
/// fills it with [`root_pattern`]`(seed, len)`, persists and closes. Panics on failure.
pub fn write_root(set: &Path, seed: u64, len: usize) -> RootInfo {
    run_root_tool("write", set, "-", seed, len).unwrap_or_else(|e| panic!("{e}"))
}

/// Opens the pool with libpmemobj (any layout) and checks that its root object holds
/// [`root_pattern`]`(seed, len)`; the error is the helper's message.
pub fn verify_root(set: &Path, seed: u64, len: usize) -> Result<RootInfo, String> {
    run_root_tool("verify", set, "-", seed, len)
}

/// [`write_root`] with a layout check.
pub fn write_root_with_layout(
    set: &Path,
    layout: &str,
    seed: u64,
    len: usize,
) -> Result<RootInfo, String> {
    run_root_tool("write", set, layout, seed, len)
}

/// [`verify_root`] with a layout check.
pub fn verify_root_with_layout(
    set: &Path,
    layout: &str,
    seed: u64,
    len: usize,
) -> Result<RootInfo, String> {
    run_root_tool("verify", set, layout, seed, len)
}

/// [`libpmemobj_or_skip`] for test crates other than ckpt-poolset that include this module
/// with `#[path]`: there [`fixtures`] is the including crate's `tests/fixtures`, which has no
/// helper source, so this first builds the helper from the source embedded here (under the
/// name the helper is looked up by) when it is not built yet.
pub fn libpmemobj_or_skip_anywhere(test_name: &str) -> bool {
    // The same name as the one `root_tool` builds and looks for.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ROOT_TOOL_SRC.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let exe = dir.join(format!("pmemobj_root-{hash:016x}"));
    if !exe.is_file() {
        let built = (|| -> Result<(), String> {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let stem = format!("pmemobj_root-{hash:016x}.{}", std::process::id());
            let src = dir.join(format!("{stem}.c"));
            let tmp = dir.join(format!("{stem}.tmp"));
            fs::write(&src, ROOT_TOOL_SRC).map_err(|e| format!("{}: {e}", src.display()))?;
            let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
            let out = Command::new(&cc)
                .args(["-O2", "-Wall", "-o"])
                .arg(&tmp)
                .arg(&src)
                .arg("-lpmemobj")
                .output();
            let _ = fs::remove_file(&src);
            let out = out.map_err(|e| format!("cannot run {}: {e}", cc.to_string_lossy()))?;
            if !out.status.success() {
                return Err(format!("cc {} failed:\n{}", src.display(), output_text(&out)));
            }
            fs::rename(&tmp, &exe).map_err(|e| format!("rename to {}: {e}", exe.display()))
        })();
        if let Err(e) = built {
            skip(test_name, &format!("libpmemobj helper cannot be built ({e})"));
            return false;
        }
    }
    libpmemobj_or_skip(test_name)
}

/// Reads the root object through libpmemobj from every replica of a simple pool set, not
/// only the master that libpmemobj reads: for each replica R, the part files are copied
/// into a scratch directory and opened with a set file that lists the replicas from R on
/// (R, R+1, ..., R-1). The rotation keeps the uuid rings valid and makes R the master; the
/// copies keep libpmemobj's run-time writes out of the pool under test. The error names
/// the replica and holds the helper's message.
pub fn verify_root_in_every_replica(set: &Path, seed: u64, len: usize) -> Result<(), String> {
    let text = fs::read_to_string(set).map_err(|e| format!("{}: {e}", set.display()))?;
    let options: Vec<&str> =
        text.lines().map(str::trim).filter(|l| l.starts_with("OPTION")).collect();
    let parts = set_part_lines(set);
    let count = parts.len();
    for first in 0..count {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut out = String::from("PMEMPOOLSET\n");
        for option in &options {
            writeln!(out, "{option}").unwrap();
        }
        for k in 0..count {
            let r = (first + k) % count;
            if k > 0 {
                out.push_str("REPLICA\n");
            }
            for (p, (size, path)) in parts[r].iter().enumerate() {
                let copy = scratch.path().join(format!("r{r}p{p}"));
                fs::copy(path, &copy).map_err(|e| format!("copy {}: {e}", path.display()))?;
                writeln!(out, "{size} {}", copy.display()).unwrap();
            }
        }
        let rotated = scratch.path().join("rotated.set");
        fs::write(&rotated, out).map_err(|e| e.to_string())?;
        verify_root(&rotated, seed, len).map_err(|e| format!("replica {first}: {e}"))?;
    }
    Ok(())
}

/// Every regular file of `dir` (lock files aside) with the xxh3 of its bytes, for "nothing
/// changed" checks.
pub fn file_hashes(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.ends_with(".ckpt-lock") || !path.is_file() {
            continue;
        }
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.insert(name, (bytes.len() as u64, xxhash_rust::xxh3::xxh3_64(&bytes)));
    }
    out
}
