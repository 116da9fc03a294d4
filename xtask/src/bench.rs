//! `cargo xtask bench`: run the comparison runners in `benches/` and rewrite their blocks of
//! `docs/performance.md`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::util::{self, Result, failed, usage};

pub const HELP: &str = "\
usage: cargo xtask bench [--quick] [--no-write] [RUNNER...]

Runs the side-by-side comparison runners in benches/ (all of them unless named):
  compare  benches/compare.sh         ckpt write/restore against lz4, zstd, cp
  sparse   benches/sparse_compare.sh  ckpt sparse copy/sync against cp, rsync
  pool     benches/pool_compare.sh    ckpt pool sync against pmempool sync
  tree     benches/tree_compare.sh    ckpt write/restore of file trees against tar | lz4, tar | zstd
  object   benches/object_compare.sh  ckpt write/restore to s3:// against rclone copy (own SeaweedFS)
  incremental benches/incremental_compare.sh  ckpt write --parent/restore of a chain against full ones
and replaces the block between `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`
in docs/performance.md with the runner's fresh Markdown (a block that is missing is
appended as a new section). Text outside the markers is never touched.

  --quick     RUNS=1, and SIZE=128M for compare (in its own WORK directory, since
              compare.sh reuses the inputs it finds); tree: RUNS=1, FILES=20000, SIZE=128M
              in its own WORK; object: RUNS=1, SIZE=256M (its inputs in its own WORK);
              the other runners have no size knob.
              The blocks then say they come from a quick run.
  --no-write  run and print, leave docs/performance.md as it was

The scripts' knobs (RUNS, SIZE, FILES, WORK, INPUTS) set in the environment are passed through and win
over --quick.";

/// One comparison runner: a script in `benches/` and its block in `docs/performance.md`.
struct Runner {
    name: &'static str,
    script: &'static str,
    /// Heading of the section appended when the doc has no block for this runner yet.
    heading: &'static str,
    /// The environment knobs the script reads.
    knobs: &'static [&'static str],
    /// What `--quick` sets (unless already set in the environment).
    quick: &'static [(&'static str, &'static str)],
    /// The script rewrites docs/performance.md itself (compare.sh does) instead of
    /// printing its tables.
    writes_doc: bool,
    /// Fixed environment (compare.sh would otherwise run the tree runner too).
    env: &'static [(&'static str, &'static str)],
}

const RUNNERS: [Runner; 6] = [
    Runner {
        name: "compare",
        script: "benches/compare.sh",
        heading: "Checkpoints",
        knobs: &["SIZE", "RUNS", "WORK"],
        quick: &[("RUNS", "1"), ("SIZE", "128M"), ("WORK", "/tmp/ckpt-compare-quick")],
        writes_doc: true,
        env: &[("TREE", "0")],
    },
    Runner {
        name: "sparse",
        script: "benches/sparse_compare.sh",
        heading: "Sparse files",
        knobs: &["RUNS", "WORK"],
        quick: &[("RUNS", "1")],
        writes_doc: false,
        env: &[],
    },
    Runner {
        name: "pool",
        script: "benches/pool_compare.sh",
        heading: "Pool sets",
        knobs: &["RUNS", "WORK"],
        quick: &[("RUNS", "1")],
        writes_doc: false,
        env: &[],
    },
    Runner {
        name: "tree",
        script: "benches/tree_compare.sh",
        heading: "Tree checkpoints against tar",
        knobs: &["FILES", "SIZE", "RUNS", "WORK"],
        quick: &[
            ("RUNS", "1"),
            ("FILES", "20000"),
            ("SIZE", "128M"),
            ("WORK", "/tmp/ckpt-tree-compare-quick"),
        ],
        writes_doc: false,
        // The script also updates a doc itself; xtask writes the real one.
        env: &[("DOC", "/tmp/ckpt-tree-compare-doc.md")],
    },
    Runner {
        name: "object",
        script: "benches/object_compare.sh",
        heading: "Object storage against rclone",
        knobs: &["SIZE", "RUNS", "WORK", "INPUTS"],
        // compare.sh's 1 GiB inputs are reused only when they have SIZE bytes: the quick
        // run generates its own 256 MiB ones in its WORK.
        quick: &[("RUNS", "1"), ("SIZE", "256M"), ("WORK", "/tmp/ckpt-object-compare-quick")],
        writes_doc: false,
        // The script also updates a doc itself; xtask writes the real one.
        env: &[("DOC", "/tmp/ckpt-object-compare-doc.md")],
    },
    Runner {
        name: "incremental",
        script: "benches/incremental_compare.sh",
        heading: "Incremental checkpoints",
        knobs: &["SIZE", "RUNS", "WORK"],
        quick: &[("RUNS", "1"), ("SIZE", "128M")],
        writes_doc: false,
        // The script also updates a doc itself; xtask writes the real one.
        env: &[("DOC", "/tmp/ckpt-incremental-compare-doc.md")],
    },
];

const DOC: &str = "docs/performance.md";

fn marker(name: &str, edge: &str) -> String {
    format!("<!-- bench:{name}:{edge} -->")
}

/// Byte range of the first line whose trimmed text is `text`, and how many lines match.
fn find_line(doc: &str, text: &str) -> (Option<(usize, usize)>, usize) {
    let mut first = None;
    let mut count = 0;
    let mut off = 0;
    for line in doc.split_inclusive('\n') {
        if line.trim() == text {
            count += 1;
            first = first.or(Some((off, off + line.len())));
        }
        off += line.len();
    }
    (first, count)
}

/// Replaces what lies between the `NAME` markers with `body`; `Ok(None)` when the doc has
/// neither marker.
///
/// # Errors
/// A marker twice, only one of the two, or the end before the start.
fn replace_block(doc: &str, name: &str, body: &str) -> std::result::Result<Option<String>, String> {
    let (start, end) = (marker(name, "start"), marker(name, "end"));
    let (s, ns) = find_line(doc, &start);
    let (e, ne) = find_line(doc, &end);
    match (s, e) {
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => {
            Err(format!("{DOC} has only one of {start} and {end}; fix the markers by hand"))
        }
        (Some((_, s_end)), Some((e_start, _))) => {
            if ns > 1 || ne > 1 {
                return Err(format!("{DOC} has {start} or {end} more than once"));
            }
            if e_start < s_end {
                return Err(format!("{DOC}: {end} comes before {start}"));
            }
            if !doc[..s_end].ends_with('\n') {
                return Err(format!("{DOC}: {start} is the last line"));
            }
            Ok(Some(format!("{}\n{}\n\n{}", &doc[..s_end], body.trim(), &doc[e_start..])))
        }
    }
}

/// [`replace_block`], or a new `## heading` section with the block at the end of the doc.
fn upsert_block(
    doc: &str,
    name: &str,
    heading: &str,
    body: &str,
) -> std::result::Result<String, String> {
    Ok(match replace_block(doc, name, body)? {
        Some(d) => d,
        None => format!(
            "{}\n\n## {heading}\n\n{}\n\n{}\n\n{}\n",
            doc.trim_end(),
            marker(name, "start"),
            body.trim(),
            marker(name, "end")
        ),
    })
}

/// The Markdown a runner printed: from its first heading or table line to the end.
fn extract_tables(stdout: &str) -> Option<String> {
    let mut off = 0;
    for line in stdout.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('#') || t.starts_with('|') {
            return Some(stdout[off..].trim().to_string());
        }
        off += line.len();
    }
    None
}

/// A doc without compare markers (after `bash benches/compare.sh` run by hand, which
/// rewrites the file from its template): compare.sh's part is everything between the title
/// and `## Sparse files`, so the markers go back around it there.
fn wrap_compare(doc: &str, body: &str) -> String {
    let mut off = 0;
    let mut kept = "";
    for line in doc.split_inclusive('\n') {
        if line.starts_with("## Sparse files") {
            kept = &doc[off..];
            break;
        }
        off += line.len();
    }
    let block = format!(
        "# Performance\n\n{}\n\n{}\n\n{}\n",
        marker("compare", "start"),
        body.trim(),
        marker("compare", "end")
    );
    if kept.is_empty() { block } else { format!("{block}\n{kept}") }
}

/// compare.sh writes the whole `docs/performance.md`: its title, its header, tables and
/// notes, then the old file from `## Sparse files` on (`sed -n '/^## Sparse files/,$p'`).
/// Its block is what lies between the title and that kept part.
fn extract_compare(written: &str) -> String {
    let mut body = String::new();
    for (i, line) in written.split_inclusive('\n').enumerate() {
        if i == 0 && line.trim() == "# Performance" {
            continue;
        }
        if line.starts_with("## Sparse files") {
            break;
        }
        body.push_str(line);
    }
    body.trim().to_string()
}

#[derive(Debug, PartialEq, Eq)]
struct Options {
    quick: bool,
    write: bool,
    names: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut o = Options { quick: false, write: true, names: Vec::new() };
    for a in args {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--no-write" => o.write = false,
            f if f.starts_with('-') => return Err(usage(format!("unknown flag {f}\n\n{HELP}"))),
            n if RUNNERS.iter().any(|r| r.name == n) => o.names.push(n.to_string()),
            n => {
                return Err(usage(format!(
                    "no runner {n:?}; runners: {}",
                    RUNNERS.map(|r| r.name).join(", ")
                )));
            }
        }
    }
    Ok(o)
}

pub fn main(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{HELP}");
        return Ok(());
    }
    let opts = parse_args(args)?;
    let root = util::workspace_root();
    warn_unknown_scripts(&root);
    let doc_path = root.join(DOC);
    let mut doc = util::read(&doc_path)?;
    let date = util::today_utc();
    let mut outcomes = Vec::new();

    for r in
        RUNNERS.iter().filter(|r| opts.names.is_empty() || opts.names.iter().any(|n| n == r.name))
    {
        eprintln!("\n==> bench {} ({})", r.name, r.script);
        let outcome = run_runner(&root, r, &opts, &date, &mut doc);
        if let Err(e) = &outcome {
            eprintln!("bench {}: {e}", r.name);
        }
        outcomes.push((r.name, outcome));
    }

    println!("\n### cargo xtask bench\n");
    println!("| runner | result |\n|---|---|");
    let mut bad = Vec::new();
    for (name, o) in &outcomes {
        match o {
            Ok(msg) => println!("| {name} | {msg} |"),
            Err(e) => {
                println!("| {name} | FAILED: {} |", e.to_string().replace('\n', " "));
                bad.push(*name);
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(failed(format!("runner(s) failed: {}", bad.join(", "))))
    }
}

/// Runs one runner and (unless `--no-write`) writes its block into the doc at once, so the
/// file on disk is always whole.
fn run_runner(
    root: &Path,
    r: &Runner,
    opts: &Options,
    date: &str,
    doc: &mut String,
) -> Result<String> {
    let doc_path = root.join(DOC);
    let mut cmd = Command::new("bash");
    cmd.arg(r.script).current_dir(root);
    cmd.envs(r.env.iter().copied());
    if opts.quick {
        for (k, v) in r.quick {
            if std::env::var_os(k).is_none() {
                cmd.env(k, v);
            }
        }
    }
    let knobs: Vec<String> = r
        .knobs
        .iter()
        .filter_map(|k| {
            let set = cmd
                .get_envs()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
            set.or_else(|| std::env::var(k).ok()).map(|v| format!("{k}={v} "))
        })
        .collect();
    let captured = util::run_tee(&mut cmd, &|_| true);
    let body = if r.writes_doc {
        // The script rewrote the whole file: take its part, put the rest back as it was.
        let written = util::read(&doc_path);
        util::write(&doc_path, doc)?;
        let captured = captured?;
        if !captured.status.success() {
            return Err(failed(format!("{} failed ({})", r.script, captured.status)));
        }
        extract_compare(&written?)
    } else {
        let captured = captured?;
        if !captured.status.success() {
            return Err(failed(format!("{} failed ({})", r.script, captured.status)));
        }
        extract_tables(&captured.stdout)
            .ok_or_else(|| failed(format!("{} printed no Markdown table", r.script)))?
    };
    let quick = if opts.quick { " --quick" } else { "" };
    let mut block = format!(
        "<!-- generated by `cargo xtask bench{quick}` on {date}: {}bash {} -->\n\n",
        knobs.concat(),
        r.script
    );
    if opts.quick {
        let _ = write!(
            block,
            "_Quick run (`cargo xtask bench --quick`: {}): indicative only; `cargo xtask bench` \
             gives the figures to compare._\n\n",
            knobs.concat().trim()
        );
    }
    block.push_str(&body);
    let updated = match replace_block(doc, r.name, &block).map_err(failed)? {
        Some(d) => d,
        None if r.writes_doc => wrap_compare(doc, &block),
        None => upsert_block(doc, r.name, r.heading, &block).map_err(failed)?,
    };
    if opts.write {
        util::write(&doc_path, &updated)?;
        *doc = updated;
        Ok(format!("ok, block `{}` of {DOC} rewritten", r.name))
    } else {
        Ok(format!("ok ({DOC} left as it was: --no-write)"))
    }
}

/// A script in benches/ that this task does not know is reported, not silently skipped.
fn warn_unknown_scripts(root: &Path) {
    let known: BTreeSet<&str> = RUNNERS.iter().map(|r| r.script).collect();
    if let Ok(rd) = std::fs::read_dir(root.join("benches")) {
        for e in rd.filter_map(std::result::Result::ok) {
            let name = format!("benches/{}", e.file_name().to_string_lossy());
            if Path::new(&name).extension().is_some_and(|x| x.eq_ignore_ascii_case("sh"))
                && !known.contains(name.as_str())
            {
                eprintln!(
                    "bench: warning: {name} is not one of xtask's runners (xtask/src/bench.rs); not run"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_SAMPLE: &str = "\
# Performance

<!-- bench:compare:start -->

Measured by `SIZE=1G RUNS=3 bash benches/compare.sh` on 2026-11-22.

### random data (1073741824 bytes)

| command | best seconds |
|---|---|
| ckpt write | 0.974 |

## Notes

- hand-kept notes of the script
<!-- bench:compare:end -->

## Sparse files

Hand-written intro that must survive.

<!-- bench:sparse:start -->

### First copy

| input | command | best seconds | ratio to cp |
|---|---|---|---|
| scattered | cp | 1.064 | 1.00 |

<!-- bench:sparse:end -->

Hand-written analysis that must survive.
";

    #[test]
    fn replaces_only_between_markers() {
        let fresh = "### First copy\n\n| input | command |\n|---|---|\n| worst | cp |\n";
        let out = replace_block(DOC_SAMPLE, "sparse", fresh).unwrap().unwrap();
        assert!(out.contains("| worst | cp |\n\n<!-- bench:sparse:end -->\n"));
        assert!(!out.contains("| scattered | cp | 1.064"));
        assert!(out.starts_with("# Performance\n\n<!-- bench:compare:start -->"));
        assert!(out.contains(
            "Hand-written intro that must survive.\n\n<!-- bench:sparse:start -->\n\n### First copy"
        ));
        assert!(
            out.ends_with(
                "<!-- bench:sparse:end -->\n\nHand-written analysis that must survive.\n"
            )
        );
        // Idempotent, and the compare block untouched.
        assert_eq!(replace_block(&out, "sparse", fresh).unwrap().unwrap(), out);
        let before = DOC_SAMPLE.split("<!-- bench:compare:end -->").next().unwrap();
        assert!(out.starts_with(before));
    }

    #[test]
    fn same_body_gives_the_same_doc() {
        let body = "### First copy\n\n| input | command | best seconds | ratio to cp |\n|---|---|---|---|\n| scattered | cp | 1.064 | 1.00 |";
        assert_eq!(replace_block(DOC_SAMPLE, "sparse", body).unwrap().unwrap(), DOC_SAMPLE);
    }

    #[test]
    fn missing_block_is_appended() {
        assert_eq!(replace_block(DOC_SAMPLE, "pool", "x").unwrap(), None);
        let out = upsert_block(DOC_SAMPLE, "pool", "Pool set repair", "| a |\n|---|\n").unwrap();
        assert!(out.starts_with(DOC_SAMPLE.trim_end()));
        assert!(out.ends_with(
            "must survive.\n\n## Pool set repair\n\n<!-- bench:pool:start -->\n\n| a |\n|---|\n\n<!-- bench:pool:end -->\n"
        ));
        // Once appended, the next run replaces it in place.
        let again = upsert_block(&out, "pool", "Pool set repair", "| b |\n|---|").unwrap();
        assert_eq!(again, out.replace("| a |", "| b |"));
    }

    #[test]
    fn broken_markers_are_errors() {
        let only_start = DOC_SAMPLE.replace("<!-- bench:sparse:end -->", "");
        assert!(replace_block(&only_start, "sparse", "x").is_err());
        let twice = format!("{DOC_SAMPLE}\n<!-- bench:sparse:start -->\n");
        assert!(replace_block(&twice, "sparse", "x").is_err());
        let reversed = "<!-- bench:a:end -->\ntext\n<!-- bench:a:start -->\n";
        assert!(replace_block(reversed, "a", "x").is_err());
    }

    #[test]
    fn compare_part_of_the_scripts_doc() {
        let written = "# Performance\n\nMeasured by `SIZE=128M RUNS=1 bash benches/compare.sh`.\n\n### random data (1 bytes)\n\n| a |\n|---|\n\n\n## Notes\n\n- n\n\n## Sparse files\n\nold sparse text\n<!-- bench:sparse:start -->\n";
        assert_eq!(
            extract_compare(written),
            "Measured by `SIZE=128M RUNS=1 bash benches/compare.sh`.\n\n### random data (1 bytes)\n\n| a |\n|---|\n\n\n## Notes\n\n- n"
        );
        // Put back into the doc, the kept sparse part is unchanged.
        let out = replace_block(DOC_SAMPLE, "compare", &extract_compare(written)).unwrap().unwrap();
        assert!(out.contains(
            "- n\n\n<!-- bench:compare:end -->\n\n## Sparse files\n\nHand-written intro"
        ));
        assert!(!out.contains("0.974"));
    }

    #[test]
    fn markers_come_back_after_compare_sh_ran_alone() {
        // What compare.sh leaves: its own template, then the kept part from `## Sparse files`.
        let by_script = "# Performance\n\nMeasured by x.\n\n## Notes\n\n- n\n\n## Sparse files\n\nintro\n\n<!-- bench:sparse:start -->\n\n| t |\n\n<!-- bench:sparse:end -->\n";
        assert_eq!(replace_block(by_script, "compare", "x").unwrap(), None);
        let fresh = extract_compare(by_script);
        let out = wrap_compare(by_script, &fresh);
        assert_eq!(
            out,
            "# Performance\n\n<!-- bench:compare:start -->\n\nMeasured by x.\n\n## Notes\n\n- n\n\n<!-- bench:compare:end -->\n\n## Sparse files\n\nintro\n\n<!-- bench:sparse:start -->\n\n| t |\n\n<!-- bench:sparse:end -->\n"
        );
        // From then on it is an ordinary block.
        assert_eq!(replace_block(&out, "compare", &fresh).unwrap().unwrap(), out);
    }

    #[test]
    fn tables_from_script_output() {
        let out = "building...\n### Rebuilding replica data\n\n| rebuilt | command |\n|---|---|\n| part | pmempool sync |\n\n";
        assert_eq!(
            extract_tables(out).unwrap(),
            "### Rebuilding replica data\n\n| rebuilt | command |\n|---|---|\n| part | pmempool sync |"
        );
        assert_eq!(extract_tables("no tables\n"), None);
    }

    #[test]
    fn real_doc_has_well_formed_blocks() {
        let doc = util::read(&util::workspace_root().join(DOC)).unwrap();
        for name in ["compare", "sparse", "pool", "object"] {
            let out = replace_block(&doc, name, "BODY").unwrap();
            assert!(out.is_some(), "{DOC} has no block {name}");
        }
    }

    #[test]
    fn arguments() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>());
        assert_eq!(
            a(&["--quick", "sparse"]).unwrap(),
            Options { quick: true, write: true, names: vec!["sparse".into()] }
        );
        assert!(!a(&["--no-write"]).unwrap().write);
        assert!(a(&["nope"]).is_err());
        assert!(a(&["--nope"]).is_err());
    }
}
