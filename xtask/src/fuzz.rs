//! `cargo xtask fuzz`: run the cargo-fuzz targets, report, minimise crashes.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result, failed, usage};

pub const HELP: &str = "\
usage: cargo xtask fuzz [TARGET...] [--secs N] [--jobs N] [--smoke]

Runs each cargo-fuzz target (all of `cargo +nightly fuzz list` when none is named) for N
seconds with the nightly toolchain, installing cargo-fuzz first if it is missing:

    cd fuzz && cargo +nightly fuzz run T corpus/T seeds/T [regressions/T] -- \\
        -max_total_time=N -malloc_limit_mb=512 -timeout=60 -print_final_stats=1 [-fork=J]

New inputs go to the git-ignored corpus/T (the first directory); seeds/T and the
committed crash inputs in regressions/T are only read, so every run replays them first.

  --secs N    seconds per target (default 60; 10 with --smoke)
  --jobs N    fuzz each target in N processes at once (default 1). This is libFuzzer's
              -fork=N: N children fuzz in parallel and the parent merges what they find
              into corpus/T and prints one status line; libFuzzer's -jobs=N would run only
              min(N, cores/2) workers at a time (one on this 2-core machine), each with
              its own log file. In fork mode the first crash stops the run, as without it.
  --smoke     every target briefly, as CI does (10 s each unless --secs is given); without
              a nightly toolchain this skips loudly, or fails when CI=true

Prints a Markdown table, a row per target: executions, exec/s, coverage (cov, ft of the last
status line), corpus size, new artifacts. A crash (an artifact under fuzz/artifacts/T/ or
a non-zero exit) is minimised with `cargo +nightly fuzz tmin`, saved as
fuzz/regressions/T/<sha1> and the steps to make it a regression test are printed; the
exit status is then 1.";

const SMOKE_SECS: u64 = 10;
const DEFAULT_SECS: u64 = 60;
/// libFuzzer flags every run gets: a malloc over 512 MiB is a bug in a decoder of hostile
/// input, and so is a single input that runs for a minute.
const LIMITS: [&str; 2] = ["-malloc_limit_mb=512", "-timeout=60"];

#[derive(Debug, PartialEq, Eq)]
struct Options {
    targets: Vec<String>,
    secs: u64,
    jobs: u32,
    smoke: bool,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut targets = Vec::new();
    let mut secs = None;
    let mut jobs = 1;
    let mut smoke = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<u64> {
            let v = inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| usage(format!("{name} needs a number")))?;
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| usage(format!("{name} {v:?}: not a positive number")))
        };
        match flag {
            "--secs" => secs = Some(value("--secs")?),
            "--jobs" => {
                jobs = u32::try_from(value("--jobs")?).map_err(|_| usage("--jobs: too many"))?;
            }
            "--smoke" => smoke = true,
            f if f.starts_with('-') => return Err(usage(format!("unknown flag {f}\n\n{HELP}"))),
            t => targets.push(t.to_string()),
        }
    }
    let secs = secs.unwrap_or(if smoke { SMOKE_SECS } else { DEFAULT_SECS });
    Ok(Options { targets, secs, jobs, smoke })
}

/// What libFuzzer's output says about one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `stat::number_of_executed_units`, or the `#N` of the last status line.
    pub executions: Option<u64>,
    /// `stat::average_exec_per_sec`, or `exec/s:` of the last status line (in fork mode:
    /// its runs over its `time:`, the rate of all processes together).
    pub exec_per_sec: Option<u64>,
    /// `cov:` of the last status line (edges covered).
    pub cov: Option<u64>,
    /// `ft:` of the last status line (features).
    pub ft: Option<u64>,
    /// `corp:` of the last status line (units in the corpus).
    pub corpus: Option<u64>,
    /// Paths from `Test unit written to PATH`.
    pub artifacts: Vec<String>,
    /// libFuzzer's `SUMMARY:` or `ERROR:` line, if it reported a failure.
    pub failure: Option<String>,
    /// Whether libFuzzer started at all (else the build or cargo-fuzz failed).
    pub started: bool,
}

/// Parses libFuzzer's output (plain or `-fork=N` mode). In fork mode the parent stops at a
/// crash and prints the child's log after `INFO: log from the inner process:`; the child's
/// status lines count only its own job, so the parent's last figures are kept.
pub fn parse_libfuzzer(output: &str) -> Stats {
    let mut s = Stats::default();
    let mut final_execs = None;
    let mut final_eps = None;
    let mut inner_log = false;
    for line in output.lines() {
        let line = line.trim_end();
        if line.starts_with("INFO: Seed:")
            || line.starts_with("INFO: Running with")
            || line.starts_with("INFO: -fork=")
        {
            s.started = true;
        }
        if line.starts_with("INFO: log from the inner process:") {
            inner_log = true;
        }
        if let Some(pos) = line.find("Test unit written to ") {
            let path = line[pos + "Test unit written to ".len()..].trim();
            if !path.is_empty() && !s.artifacts.iter().any(|a| a == path) {
                s.artifacts.push(path.to_string());
            }
        }
        if s.failure.is_none()
            && (line.starts_with("SUMMARY: ")
                || (line.starts_with("==") && line.contains("ERROR: ")))
        {
            s.failure = Some(line.to_string());
        }
        if inner_log {
            continue;
        }
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            final_execs = v.trim().parse().ok();
        }
        if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            final_eps = v.trim().parse().ok();
        }
        if let Some(st) = status_line(line) {
            s.started = true;
            s.executions = Some(st.runs);
            for (k, v) in [
                (&mut s.cov, st.cov),
                (&mut s.ft, st.ft),
                (&mut s.corpus, st.corpus),
                (&mut s.exec_per_sec, st.exec_per_sec),
            ] {
                if v.is_some() {
                    *k = v;
                }
            }
        }
    }
    if final_execs.is_some() {
        s.executions = final_execs;
    }
    if final_eps.is_some() {
        s.exec_per_sec = final_eps;
    }
    s
}

struct Status {
    runs: u64,
    cov: Option<u64>,
    ft: Option<u64>,
    corpus: Option<u64>,
    exec_per_sec: Option<u64>,
}

/// `#1234\tNEW    cov: 10 ft: 12 corp: 3/40b ... exec/s: 99 rss: 30Mb` (plain mode) or
/// `#1234: cov: 10 ft: 12 corp: 3 exec/s: 99 oom/timeout/crash: 0/0/0 time: 5s ...` (fork).
fn status_line(line: &str) -> Option<Status> {
    let rest = line.strip_prefix('#')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let after = &rest[digits..];
    if !(after.starts_with(':') || after.starts_with(char::is_whitespace)) {
        return None;
    }
    let runs = rest[..digits].parse().ok()?;
    let tokens: Vec<&str> = after.trim_start_matches(':').split_whitespace().collect();
    let num = |key: &str| -> Option<u64> {
        let i = tokens.iter().position(|t| *t == key)?;
        let v = tokens.get(i + 1)?;
        let n: String = v.chars().take_while(char::is_ascii_digit).collect();
        n.parse().ok()
    };
    let cov = num("cov:");
    let ft = num("ft:");
    if cov.is_none() && ft.is_none() {
        return None;
    }
    // A fork-mode line's exec/s is that of the job just merged; the parent's rate over all
    // its processes is the runs over the time since it started.
    let exec_per_sec = match num("time:") {
        Some(t) if after.starts_with(':') && t > 0 => Some(runs / t),
        _ => num("exec/s:"),
    };
    Some(Status { runs, cov, ft, corpus: num("corp:"), exec_per_sec })
}

/// Whether a libFuzzer output line is worth echoing live (not each NEW / REDUCE).
fn echo_line(line: &str) -> bool {
    let status = line.starts_with('#')
        && (line.contains("\tNEW ") || line.contains("\tREDUCE ") || line.contains("\tRELOAD "));
    // The recommended dictionary printed at exit, one entry a line.
    let dictionary = line.starts_with('"') && line.contains("\" # Uses: ");
    !(status || dictionary)
}

/// Whether an artifact file name marks a failure (slow units are only a report).
fn is_failure_artifact(name: &str) -> bool {
    !(name.starts_with("slow-unit-") || name.starts_with("minimized-from-"))
}

/// The outcome of one target.
struct Report {
    target: String,
    result: String,
    stats: Stats,
    /// Failure artifacts new since the run started, absolute paths.
    artifacts: Vec<PathBuf>,
    /// `(artifact, minimised file, regression file)`.
    regressions: Vec<(PathBuf, PathBuf, PathBuf)>,
    failed: bool,
}

pub fn main(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{HELP}");
        return Ok(());
    }
    let opts = parse_args(args)?;
    let root = util::workspace_root();
    let fuzz_dir = root.join("fuzz");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");

    if !util::succeeds(
        Command::new("cargo").arg("+nightly").arg("--version").current_dir(&fuzz_dir),
    ) {
        let msg = "the nightly toolchain is missing (`cargo +nightly --version` fails); \
                   cargo-fuzz needs it: rustup toolchain install nightly";
        if opts.smoke && !ci {
            eprintln!("\n{}", "!".repeat(78));
            eprintln!("!! fuzz smoke SKIPPED: {msg}");
            eprintln!("!! (under CI=true this is a failure)");
            eprintln!("{}\n", "!".repeat(78));
            return Ok(());
        }
        return Err(usage(if ci {
            format!("{msg} (CI=true: the fuzz smoke step cannot be skipped)")
        } else {
            msg.to_string()
        }));
    }
    ensure_cargo_fuzz(&root, &fuzz_dir)?;

    let available = list_targets(&fuzz_dir)?;
    let targets = if opts.targets.is_empty() {
        available.clone()
    } else {
        for t in &opts.targets {
            if !available.contains(t) {
                return Err(usage(format!(
                    "no fuzz target {t:?}; cargo fuzz list has: {}",
                    available.join(", ")
                )));
            }
        }
        opts.targets.clone()
    };
    if targets.is_empty() {
        return Err(failed("cargo +nightly fuzz list printed no targets"));
    }
    eprintln!(
        "fuzz: {} target(s), {} s each, {} process(es) per target{}",
        targets.len(),
        opts.secs,
        opts.jobs,
        if opts.smoke { " (smoke)" } else { "" }
    );

    let mut reports = Vec::new();
    for t in &targets {
        reports.push(run_target(&fuzz_dir, t, &opts));
    }

    let table = render_table(&reports, &opts);
    println!("\n{table}");
    for r in &reports {
        for (artifact, minimised, regression) in &r.regressions {
            println!("{}", regression_steps(&root, &r.target, artifact, minimised, regression));
        }
    }
    let bad: Vec<&str> = reports.iter().filter(|r| r.failed).map(|r| r.target.as_str()).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(failed(format!("failing target(s): {}", bad.join(", "))))
    }
}

fn nightly(fuzz_dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly").current_dir(fuzz_dir);
    c
}

fn ensure_cargo_fuzz(root: &Path, fuzz_dir: &Path) -> Result<()> {
    if util::succeeds(nightly(fuzz_dir).args(["fuzz", "--version"])) {
        return Ok(());
    }
    eprintln!("fuzz: cargo-fuzz is missing; installing it (a few minutes the first time)");
    util::run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]).current_dir(root))
        .map_err(|e| usage(format!("cannot install cargo-fuzz: {e}")))
}

fn list_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let out = util::capture(nightly(fuzz_dir).args(["fuzz", "list"]))?;
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

fn list_dir(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(std::result::Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn run_target(fuzz_dir: &Path, target: &str, opts: &Options) -> Report {
    eprintln!("\n==> fuzz {target}");
    let mut report = Report {
        target: target.to_string(),
        result: String::new(),
        stats: Stats::default(),
        artifacts: Vec::new(),
        regressions: Vec::new(),
        failed: true,
    };
    // Build first, so that a build failure is told apart from a crash.
    if let Err(e) = util::run(nightly(fuzz_dir).args(["fuzz", "build", target])) {
        eprintln!("fuzz {target}: {e}");
        report.result = "build failed".into();
        return report;
    }
    let corpus = format!("corpus/{target}");
    let artifacts_dir = fuzz_dir.join("artifacts").join(target);
    for d in [fuzz_dir.join(&corpus), artifacts_dir.clone()] {
        if let Err(e) = std::fs::create_dir_all(&d) {
            report.result = format!("cannot create {}: {e}", d.display());
            return report;
        }
    }
    let before = list_dir(&artifacts_dir);
    let mut cmd = nightly(fuzz_dir);
    cmd.args(["fuzz", "run", target, &corpus]);
    for extra in [format!("seeds/{target}"), format!("regressions/{target}")] {
        if fuzz_dir.join(&extra).is_dir() {
            cmd.arg(extra);
        }
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={}", opts.secs))
        .args(LIMITS)
        .arg("-print_final_stats=1");
    if opts.jobs > 1 {
        cmd.arg(format!("-fork={}", opts.jobs));
    }
    let captured = match util::run_tee(&mut cmd, &echo_line) {
        Ok(c) => c,
        Err(e) => {
            report.result = e.to_string();
            return report;
        }
    };
    report.stats = parse_libfuzzer(&format!("{}\n{}", captured.stderr, captured.stdout));

    let mut names: BTreeSet<String> = list_dir(&artifacts_dir)
        .difference(&before)
        .filter(|n| is_failure_artifact(n))
        .cloned()
        .collect();
    for a in &report.stats.artifacts {
        if let Some(n) = Path::new(a).file_name() {
            let n = n.to_string_lossy().into_owned();
            if is_failure_artifact(&n) && artifacts_dir.join(&n).is_file() {
                names.insert(n);
            }
        }
    }
    report.artifacts = names.iter().map(|n| artifacts_dir.join(n)).collect();

    let ok = captured.status.success() && report.artifacts.is_empty();
    report.failed = !ok;
    report.result = if ok {
        "ok".into()
    } else if !report.stats.started {
        format!("error: libFuzzer did not start ({})", captured.status)
    } else if report.artifacts.is_empty() {
        format!("failed ({}), no artifact", captured.status)
    } else {
        let kinds: BTreeSet<&str> =
            names.iter().map(|n| n.split('-').next().unwrap_or("crash")).collect();
        format!("FAILED: {}", kinds.into_iter().collect::<Vec<_>>().join(", "))
    };
    for artifact in report.artifacts.clone() {
        match minimise(fuzz_dir, target, &artifact) {
            Ok(pair) => report.regressions.push(pair),
            Err(e) => eprintln!("fuzz {target}: {e}"),
        }
    }
    report
}

/// `cargo fuzz tmin`, then the smallest reproducer saved as `fuzz/regressions/T/<sha1>`.
fn minimise(fuzz_dir: &Path, target: &str, artifact: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let is_timeout =
        artifact.file_name().is_some_and(|n| n.to_string_lossy().starts_with("timeout-"));
    let minimised = if is_timeout {
        // Each tmin step would wait out the timeout again, up to 255 times.
        eprintln!("fuzz {target}: {} is a timeout; not minimised", artifact.display());
        None
    } else {
        eprintln!("\n==> minimise {}", artifact.display());
        let started = std::time::SystemTime::now();
        let mut cmd = nightly(fuzz_dir);
        cmd.args(["fuzz", "tmin", target]).arg(artifact).arg("--").args(LIMITS);
        match util::run_tee(&mut cmd, &|_| true) {
            Ok(c) => minimised_path(&c.stderr)
                .map(|p| fuzz_dir.join(p))
                .filter(|p| p.is_file())
                .or_else(|| newest_minimised(artifact, started)),
            Err(e) => {
                eprintln!("fuzz {target}: tmin: {e}");
                None
            }
        }
    };
    let minimised = minimised.unwrap_or_else(|| {
        eprintln!("fuzz {target}: tmin gave no smaller input; keeping the artifact as it is");
        artifact.to_path_buf()
    });
    let bytes = std::fs::read(&minimised)
        .map_err(|e| failed(format!("cannot read {}: {e}", minimised.display())))?;
    let dir = fuzz_dir.join("regressions").join(target);
    std::fs::create_dir_all(&dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let dest = dir.join(util::sha1_hex(&bytes));
    std::fs::write(&dest, &bytes)
        .map_err(|e| failed(format!("cannot write {}: {e}", dest.display())))?;
    Ok((artifact.to_path_buf(), minimised, dest))
}

/// The path cargo-fuzz prints after `Minimized artifact:`.
fn minimised_path(tmin_stderr: &str) -> Option<PathBuf> {
    let mut lines = tmin_stderr.lines();
    lines.find(|l| l.trim() == "Minimized artifact:")?;
    lines.map(str::trim).find(|l| !l.is_empty()).map(PathBuf::from)
}

fn newest_minimised(artifact: &Path, since: std::time::SystemTime) -> Option<PathBuf> {
    let dir = artifact.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("minimized-from-"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(m, _)| *m >= since)
        .max()
        .map(|(_, p)| p)
}

fn cell(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

fn render_table(reports: &[Report], opts: &Options) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### Fuzzing: {} s per target, {} process(es) each{}\n",
        opts.secs,
        opts.jobs,
        if opts.smoke { " (smoke)" } else { "" }
    );
    t.push_str("| target | result | executions | exec/s | cov | ft | corpus | new artifacts |\n");
    t.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        let arts = if r.artifacts.is_empty() {
            "-".to_string()
        } else {
            r.artifacts
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| format!("`{}`", n.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.target,
            r.result,
            cell(r.stats.executions),
            cell(r.stats.exec_per_sec),
            cell(r.stats.cov),
            cell(r.stats.ft),
            cell(r.stats.corpus),
            arts
        );
    }
    t
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn regression_steps(
    root: &Path,
    target: &str,
    artifact: &Path,
    minimised: &Path,
    regression: &Path,
) -> String {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let reg = rel(root, regression);
    let name =
        regression.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    format!(
        "\n{target}: crash input {} ({} bytes), minimised to {} ({} bytes), saved as {reg}.\n\
         To turn it into a regression test:\n\
         1. Reproduce: cd fuzz && cargo +nightly fuzz run {target} regressions/{target}/{name}\n\
         2. Commit {reg}: every later `cargo xtask fuzz` (and the CI smoke) replays\n   \
            fuzz/regressions/{target}/ before fuzzing, so the crash stays covered.\n\
         3. Add a #[test] in the crate the target exercises that runs the body of\n   \
            fuzz/fuzz_targets/{target}.rs on every file of fuzz/regressions/{target}/\n   \
            (std::fs::read_dir(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../../fuzz/regressions/{target}\"))),\n   \
            so that `cargo test` on the stable toolchain fails until the bug is fixed.\n\
         4. Fix the bug; then `cargo xtask fuzz {target} --smoke` and `cargo test` pass.",
        rel(root, artifact),
        size(artifact),
        rel(root, minimised),
        size(minimised),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "\
INFO: Running with entropic power schedule (0xFF, 100).
INFO: Seed: 1234567
INFO: Loaded 1 modules   (5123 inline 8-bit counters): 5123 [0x55, 0x56),
INFO:       19 files found in corpus/restore_arbitrary
INFO: -max_len is not provided; libFuzzer will not generate inputs larger than 4096 bytes
#2\tINITED cov: 412 ft: 980 corp: 17/2281b exec/s: 0 rss: 41Mb
#1024\tNEW    cov: 415 ft: 990 corp: 18/2301b lim: 4 exec/s: 512 rss: 42Mb L: 20/300 MS: 2 ShuffleBytes-ChangeBit-
#65536\tpulse  cov: 420 ft: 1011 corp: 25/3kb lim: 652 exec/s: 6553 rss: 60Mb
#98765\tDONE   cov: 421 ft: 1020 corp: 26/3150b lim: 652 exec/s: 9876 rss: 61Mb
Done 98765 runs in 11 second(s)
stat::number_of_executed_units: 98770
stat::average_exec_per_sec:     8979
stat::new_units_added:          9
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              61
";

    #[test]
    fn plain_run() {
        let s = parse_libfuzzer(PLAIN);
        assert_eq!(
            s,
            Stats {
                executions: Some(98_770),
                exec_per_sec: Some(8979),
                cov: Some(421),
                ft: Some(1020),
                corpus: Some(26),
                artifacts: vec![],
                failure: None,
                started: true,
            }
        );
    }

    #[test]
    fn crash_in_plain_mode() {
        let out = "\
INFO: Seed: 42
#2\tINITED cov: 10 ft: 11 corp: 3/30b exec/s: 0 rss: 30Mb
#77\tNEW    cov: 12 ft: 14 corp: 4/31b lim: 4 exec/s: 0 rss: 30Mb L: 1/1 MS: 1 ChangeBit-
thread '<unnamed>' panicked at fuzz_targets/restore_arbitrary.rs:10:5:
boom
==4242== ERROR: libFuzzer: deadly signal
    #0 0x55d in __sanitizer_print_stack_trace
NOTE: libFuzzer has rudimentary signal handlers.
SUMMARY: libFuzzer: deadly signal
MS: 1 ChangeBit-; base unit: 0000
artifact_prefix='/w/fuzz/artifacts/restore_arbitrary/'; Test unit written to /w/fuzz/artifacts/restore_arbitrary/crash-da39a3ee5e6b4b0d3255bfef95601890afd80709
Base64:
";
        let s = parse_libfuzzer(out);
        assert_eq!(s.executions, Some(77));
        assert_eq!(s.cov, Some(12));
        assert_eq!(s.ft, Some(14));
        assert_eq!(
            s.artifacts,
            vec![
                "/w/fuzz/artifacts/restore_arbitrary/crash-da39a3ee5e6b4b0d3255bfef95601890afd80709"
            ]
        );
        assert_eq!(s.failure.as_deref(), Some("==4242== ERROR: libFuzzer: deadly signal"));
        // A stack frame line (`    #0 0x55d ...`) is not a status line.
        assert!(status_line("#0 0x55d in foo").is_none());
        assert!(status_line("###### Recommended dictionary. ######").is_none());
    }

    #[test]
    fn fork_mode_keeps_the_parents_figures() {
        let out = "\
INFO: Seed: 7
INFO: -fork=2: fuzzing in separate process(s)
INFO: -fork=2: 19 seed inputs, starting to fuzz in /tmp/libFuzzerTemp.FuzzWithFork1.dir
#5000: cov: 400 ft: 900 corp: 19 exec/s: 2500 oom/timeout/crash: 0/0/0 time: 3s job: 1 dft_time: 0
#12000: cov: 410 ft: 950 corp: 21 exec/s: 3500 oom/timeout/crash: 0/0/1 time: 5s job: 2 dft_time: 0
INFO: log from the inner process:
INFO: Seed: 8
#2\tINITED cov: 300 ft: 500 corp: 19/2kb exec/s: 0 rss: 40Mb
==99== ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6
SUMMARY: AddressSanitizer: heap-buffer-overflow src/x.rs:3 in f
artifact_prefix='a/'; Test unit written to a/crash-abc
stat::number_of_executed_units: 3
INFO: exiting: 1 time: 5s
";
        let s = parse_libfuzzer(out);
        assert_eq!(s.executions, Some(12_000));
        assert_eq!(s.exec_per_sec, Some(2400), "12000 runs in 5 s over both processes");
        assert_eq!(s.cov, Some(410));
        assert_eq!(s.ft, Some(950));
        assert_eq!(s.corpus, Some(21));
        assert_eq!(s.artifacts, vec!["a/crash-abc"]);
        assert!(s.failure.unwrap().contains("heap-buffer-overflow"));
        assert!(s.started);
    }

    #[test]
    fn build_failure_is_not_a_start() {
        let s = parse_libfuzzer("error[E0425]: cannot find value `x`\nerror: could not compile\n");
        assert!(!s.started);
        assert_eq!(s.executions, None);
    }

    #[test]
    fn tmin_output() {
        let err = "\
CRASH_MIN: minimizing crash input: 'artifacts/t/crash-1' (40 bytes)
CRASH_MIN: failed to minimize beyond artifacts/t/minimized-from-1 (3 bytes), exiting

────────────────────────────────────────────────────────────────────────────────

Minimized artifact:

\tartifacts/t/minimized-from-1

Output of `std::fmt::Debug`:
";
        assert_eq!(minimised_path(err), Some(PathBuf::from("artifacts/t/minimized-from-1")));
        assert_eq!(minimised_path("nothing here"), None);
    }

    #[test]
    fn echo_filter() {
        assert!(!echo_line("#1024\tNEW    cov: 415 ft: 990\n"));
        assert!(!echo_line("#1030\tREDUCE cov: 415 ft: 990\n"));
        assert!(echo_line("#65536\tpulse  cov: 420\n"));
        assert!(echo_line("INFO: Seed: 1\n"));
        assert!(!echo_line("\"\\000\\010\" # Uses: 212\n"));
    }

    #[test]
    fn artifacts_that_count() {
        assert!(is_failure_artifact("crash-00ff"));
        assert!(is_failure_artifact("oom-00ff"));
        assert!(is_failure_artifact("timeout-00ff"));
        assert!(is_failure_artifact("leak-00ff"));
        assert!(!is_failure_artifact("slow-unit-00ff"));
        assert!(!is_failure_artifact("minimized-from-00ff"));
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_args(&strings(&["--smoke"])).unwrap(),
            Options { targets: vec![], secs: SMOKE_SECS, jobs: 1, smoke: true }
        );
        assert_eq!(
            parse_args(&strings(&["a", "--secs", "300", "--jobs=2", "b"])).unwrap(),
            Options { targets: strings(&["a", "b"]), secs: 300, jobs: 2, smoke: false }
        );
        assert_eq!(parse_args(&[]).unwrap().secs, DEFAULT_SECS);
        assert!(parse_args(&strings(&["--secs"])).is_err());
        assert!(parse_args(&strings(&["--secs", "0"])).is_err());
        assert!(parse_args(&strings(&["--bogus"])).is_err());
    }
}
