//! `cargo xtask release`: checks, version bump, publish order, `cargo publish --dry-run`, tag.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::util::{self, Result, failed, usage};

pub const HELP: &str = "\
usage: cargo xtask release [--dry-run | --no-dry-run] [--skip-ci] [--allow-dirty] VERSION

Dry run (the default) — changes nothing:
  1. the git tree is clean (`git status --porcelain` prints nothing) and tag vVERSION is new
  2. CHANGELOG.md has a `## [VERSION]` section
  3. CI passes (`bash .ci/run`; --skip-ci skips it)
  4. shows the version bump: [workspace.package] version and the `version` of every
     workspace crate named in a dependency table, as a diff
  5. the publish order: the publishable workspace crates (publish != false) sorted by their
     dependencies on each other, in levels (a level only needs the levels above it)
  6. `cargo publish --dry-run -p A -p B ...` in that order: cargo (>= 1.90) packages them
     together and verifies each against the packages of the others, so crates whose
     siblings are not on crates.io yet still verify (publishing one alone would fail to
     resolve them). It builds in a fresh target directory, removed afterwards (a reused
     one would verify against sibling packages built by an earlier run). For a VERSION
     other than the current one this runs on a temporary clone of HEAD with the bump.
  7. the tag it would create

--no-dry-run also writes the bump (Cargo.toml files, Cargo.lock, fuzz/Cargo.lock), commits
it (\"release VERSION\") and creates the annotated tag vVERSION, all locally. It never
pushes or publishes: it prints the commands for that.

  --allow-dirty  dry run only: go on with a dirty tree (passed on to cargo publish)";

// ---------------------------------------------------------------------------------------
// Manifest text: just enough TOML for Cargo.toml files written by hand, line by line.

/// `[section]` or `[[section]]` header of a line, if it is one.
fn section_header(line: &str) -> Option<&str> {
    let t = line.trim();
    let t = t.strip_prefix('[')?;
    let end = t.find(']')?;
    Some(t[..end].trim_start_matches('[').trim())
}

/// Key of a `key = value` line (quotes removed), with the value.
fn key_value(line: &str) -> Option<(String, &str)> {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    let (k, v) = t.split_once('=')?;
    Some((k.trim().trim_matches('"').to_string(), v.trim()))
}

/// The kind of dependency table a section is, and the dependency a `[dependencies.NAME]`
/// section describes.
fn dep_section(section: &str) -> Option<(&str, Option<&str>)> {
    for kind in ["dev-dependencies", "build-dependencies", "dependencies"] {
        if section == kind || section.ends_with(&format!(".{kind}")) {
            return Some((kind, None));
        }
        if let Some(i) = section.find(&format!("{kind}.")) {
            let before = &section[..i];
            if before.is_empty() || before.ends_with('.') {
                return Some((kind, Some(&section[i + kind.len() + 1..])));
            }
        }
    }
    None
}

/// The dependency named by a dependency-table line: the key (`foo`, `foo.workspace`,
/// `"foo"`), or the `package = "..."` it renames.
fn dep_name(key: &str, value: &str) -> String {
    if let Some(p) = inline_string(value, "package") {
        return p.to_string();
    }
    key.split('.').next().unwrap_or(key).trim_matches('"').to_string()
}

/// Byte range of the string value of `key` inside an inline table (`{ a = "x", key = "y" }`).
fn inline_value_range(value: &str, key: &str) -> Option<(usize, usize)> {
    let bytes = value.as_bytes();
    let mut from = 0;
    while let Some(pos) = value[from..].find(key) {
        let at = from + pos;
        from = at + key.len();
        let before = value[..at].trim_end();
        if !(before.ends_with('{') || before.ends_with(',')) {
            continue;
        }
        let after = value[at + key.len()..].trim_start();
        let Some(rest) = after.strip_prefix('=') else {
            continue;
        };
        let rest_start = value.len() - rest.len();
        let q = rest_start + rest.find('"')?;
        if !value[rest_start..q].trim().is_empty() {
            return None;
        }
        let close = q + 1 + value[q + 1..].find('"')?;
        debug_assert!(bytes[close] == b'"');
        return Some((q + 1, close));
    }
    None
}

fn inline_string<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    inline_value_range(value, key).map(|(a, b)| &value[a..b])
}

/// A plain `"string"` value.
fn plain_string(value: &str) -> Option<&str> {
    let v = value.trim();
    let v = v.strip_prefix('"')?;
    Some(&v[..v.find('"')?])
}

/// What the release needs to know of one package manifest.
#[derive(Debug, Default, PartialEq, Eq)]
struct Package {
    name: String,
    /// `Some(v)` for `version = "v"`; `None` for `version.workspace = true`.
    version: Option<String>,
    publish: bool,
    /// Names of its normal and build dependencies.
    deps: BTreeSet<String>,
    /// Names of its dev-dependencies.
    dev_deps: BTreeSet<String>,
}

fn parse_package(text: &str) -> Package {
    let mut p = Package { publish: true, ..Package::default() };
    let mut section = String::new();
    for line in text.lines() {
        if let Some(s) = section_header(line) {
            section = s.to_string();
            if let Some((kind, Some(name))) = dep_section(&section) {
                let set = if kind == "dev-dependencies" { &mut p.dev_deps } else { &mut p.deps };
                set.insert(name.trim_matches('"').to_string());
            }
            continue;
        }
        let Some((key, value)) = key_value(line) else {
            continue;
        };
        if section == "package" {
            match key.as_str() {
                "name" => p.name = plain_string(value).unwrap_or_default().to_string(),
                "version" => p.version = plain_string(value).map(String::from),
                "publish" => p.publish = value != "false" && value != "[]",
                _ => {}
            }
        } else if let Some((kind, None)) = dep_section(&section) {
            let set = if kind == "dev-dependencies" { &mut p.dev_deps } else { &mut p.deps };
            set.insert(dep_name(&key, value));
        }
    }
    p
}

/// `[workspace] members` (globs `dir/*` expanded) and `[workspace.package] version`.
fn parse_workspace(text: &str) -> (Vec<String>, Option<String>) {
    let mut members = Vec::new();
    let mut version = None;
    let mut section = String::new();
    let mut in_members = false;
    for line in text.lines() {
        if in_members {
            let (items, done) = match line.split_once(']') {
                Some((items, _)) => (items, true),
                None => (line, false),
            };
            members.extend(quoted(items));
            in_members = !done;
            continue;
        }
        if let Some(s) = section_header(line) {
            section = s.to_string();
            continue;
        }
        let Some((key, value)) = key_value(line) else {
            continue;
        };
        if section == "workspace" && key == "members" {
            let v = value.trim_start_matches('[');
            if let Some((items, _)) = v.split_once(']') {
                members.extend(quoted(items));
            } else {
                members.extend(quoted(v));
                in_members = true;
            }
        } else if section == "workspace.package" && key == "version" {
            version = plain_string(value).map(String::from);
        }
    }
    (members, version)
}

fn quoted(s: &str) -> Vec<String> {
    s.split('"').skip(1).step_by(2).map(String::from).collect()
}

/// The manifest with every version that names the release bumped to `new`: `version` of
/// `[package]` / `[workspace.package]` when it is a literal, and the `version` of each
/// dependency on one of `crates` (inline tables and `[dependencies.NAME]` sections).
/// Everything else, comments and layout included, is left byte for byte.
fn bump_manifest(text: &str, crates: &BTreeSet<String>, new: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut section = String::new();
    for line in text.split_inclusive('\n') {
        if let Some(s) = section_header(line) {
            section = s.to_string();
            out.push_str(line);
            continue;
        }
        let Some((key, value)) = key_value(line) else {
            out.push_str(line);
            continue;
        };
        let value_at = line.len() - line.trim_start().len() + line.trim().len() - value.len();
        let range = match dep_section(&section) {
            _ if (section == "package" || section == "workspace.package") && key == "version" => {
                plain_string(value).map(|v| {
                    let a = value_at + value.find('"').unwrap_or(0) + 1;
                    (a, a + v.len())
                })
            }
            Some((_, Some(name))) if key == "version" && crates.contains(name) => {
                plain_string(value).map(|v| {
                    let a = value_at + value.find('"').unwrap_or(0) + 1;
                    (a, a + v.len())
                })
            }
            Some((_, None)) if crates.contains(&dep_name(&key, value)) => {
                inline_value_range(value, "version").map(|(a, b)| (value_at + a, value_at + b))
            }
            _ => None,
        };
        match range {
            Some((a, b)) => {
                out.push_str(&line[..a]);
                out.push_str(new);
                out.push_str(&line[b..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Every version requirement on one of `crates` in a manifest, with the line number.
fn sibling_requirements(text: &str, crates: &BTreeSet<String>) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(s) = section_header(line) {
            section = s.to_string();
            continue;
        }
        let Some((key, value)) = key_value(line) else {
            continue;
        };
        match dep_section(&section) {
            Some((_, Some(name))) if key == "version" && crates.contains(name) => {
                if let Some(v) = plain_string(value) {
                    out.push((i + 1, name.to_string(), v.to_string()));
                }
            }
            Some((_, None)) => {
                let name = dep_name(&key, value);
                if crates.contains(&name)
                    && let Some(v) = inline_string(value, "version")
                {
                    out.push((i + 1, name, v.to_string()));
                }
            }
            _ => {}
        }
    }
    out
}

/// Lines that differ between two texts of the same line count, as a small diff.
fn line_diff(path: &str, old: &str, new: &str) -> String {
    let mut d = String::new();
    for (i, (a, b)) in old.lines().zip(new.lines()).enumerate() {
        if a != b {
            let _ = write!(d, "{path}:{}\n-{a}\n+{b}\n", i + 1);
        }
    }
    d
}

/// Publish order: Kahn's algorithm in levels; a level holds the crates whose dependencies
/// among `graph` are all in earlier levels, sorted by name.
///
/// # Errors
/// A dependency cycle, naming the crates on it.
fn publish_levels(
    graph: &BTreeMap<String, BTreeSet<String>>,
) -> std::result::Result<Vec<Vec<String>>, String> {
    let mut left: BTreeMap<&str, BTreeSet<&str>> = graph
        .iter()
        .map(|(k, deps)| {
            let inside = deps
                .iter()
                .filter(|d| graph.contains_key(*d) && *d != k)
                .map(String::as_str)
                .collect();
            (k.as_str(), inside)
        })
        .collect();
    let mut levels = Vec::new();
    while !left.is_empty() {
        let ready: Vec<&str> =
            left.iter().filter(|(_, deps)| deps.is_empty()).map(|(k, _)| *k).collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = left.keys().copied().collect();
            return Err(format!("dependency cycle among {}", stuck.join(", ")));
        }
        for k in &ready {
            left.remove(k);
        }
        for deps in left.values_mut() {
            for k in &ready {
                deps.remove(k);
            }
        }
        levels.push(ready.into_iter().map(String::from).collect());
    }
    Ok(levels)
}

fn valid_version(v: &str) -> bool {
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.split('.').all(|id| {
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        })
}

fn changelog_has(text: &str, version: &str) -> bool {
    let heading = format!("## [{version}]");
    text.lines().any(|l| l.trim_end() == heading || l.starts_with(&format!("{heading} ")))
}

// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct Options {
    version: String,
    dry_run: bool,
    skip_ci: bool,
    allow_dirty: bool,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut version = None;
    let mut o =
        Options { version: String::new(), dry_run: true, skip_ci: false, allow_dirty: false };
    for a in args {
        match a.as_str() {
            "--dry-run" => o.dry_run = true,
            "--no-dry-run" => o.dry_run = false,
            "--skip-ci" => o.skip_ci = true,
            "--allow-dirty" => o.allow_dirty = true,
            f if f.starts_with('-') => return Err(usage(format!("unknown flag {f}\n\n{HELP}"))),
            v if version.is_none() => version = Some(v.to_string()),
            v => return Err(usage(format!("one VERSION only (got {v:?} too)"))),
        }
    }
    o.version = version.ok_or_else(|| usage(format!("VERSION is missing\n\n{HELP}")))?;
    let v = o.version.trim_start_matches('v').to_string();
    if !valid_version(&v) {
        return Err(usage(format!("{:?} is not a semver version (1.2.3)", o.version)));
    }
    o.version = v;
    if o.allow_dirty && !o.dry_run {
        return Err(usage("--allow-dirty is for dry runs only"));
    }
    Ok(o)
}

/// One workspace member: its manifest path (relative) and what it says.
struct Member {
    manifest: String,
    text: String,
    package: Package,
}

fn load_members(root: &Path, ws_text: &str) -> Result<Vec<Member>> {
    let (patterns, _) = parse_workspace(ws_text);
    let mut dirs = Vec::new();
    for m in patterns {
        if let Some(parent) = m.strip_suffix("/*") {
            let rd = std::fs::read_dir(root.join(parent))
                .map_err(|e| usage(format!("cannot list {parent}: {e}")))?;
            let mut found: Vec<String> = rd
                .filter_map(std::result::Result::ok)
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .map(|e| format!("{parent}/{}", e.file_name().to_string_lossy()))
                .collect();
            found.sort();
            dirs.extend(found);
        } else {
            dirs.push(m);
        }
    }
    dirs.iter()
        .map(|d| {
            let manifest = format!("{d}/Cargo.toml");
            let text = util::read(&root.join(&manifest))?;
            let package = parse_package(&text);
            Ok(Member { manifest, text, package })
        })
        .collect()
}

fn git(root: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(root);
    c
}

fn step(n: u32, what: &str) {
    println!("\n==> release {n}/7: {what}");
}

pub fn main(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{HELP}");
        return Ok(());
    }
    let o = parse_args(args)?;
    let root = util::workspace_root();
    let tag = format!("v{}", o.version);
    println!(
        "release {}: {}",
        o.version,
        if o.dry_run {
            "dry run (nothing is written, committed, tagged, pushed or published)"
        } else {
            "writing the bump, committing and tagging locally (nothing is pushed or published)"
        }
    );
    preflight(&root, &o, &tag)?;
    let plan = plan_bump(&root, &o.version)?;
    let order = publish_order(&plan)?;
    let bumped = plan.bumps();
    if !o.dry_run && bumped {
        for (path, _, new) in &plan.files {
            util::write(&root.join(path), new)?;
        }
        refresh_lockfiles(&root)?;
        println!("wrote the bump and refreshed Cargo.lock and fuzz/Cargo.lock");
    }
    publish_dry_run(&root, &o, &plan, &order)?;
    finish(&root, &o, &tag, bumped, &order)
}

/// Steps 1 to 3: clean tree, new tag, changelog section, CI.
fn preflight(root: &Path, o: &Options, tag: &str) -> Result<()> {
    step(1, "clean git tree, new tag");
    let status = util::capture(git(root).args(["status", "--porcelain"]))?;
    if status.trim().is_empty() {
        println!("clean");
    } else {
        let msg = format!("the git tree is not clean:\n{}", status.trim_end());
        if o.allow_dirty {
            println!("warning (--allow-dirty): {msg}");
        } else {
            return Err(failed(msg));
        }
    }
    if util::succeeds(git(root).args(["rev-parse", "-q", "--verify", &format!("refs/tags/{tag}")]))
    {
        return Err(failed(format!("tag {tag} exists already")));
    }
    println!("tag {tag} does not exist yet");

    step(2, "CHANGELOG.md");
    let changelog = util::read(&root.join("CHANGELOG.md"))?;
    if !changelog_has(&changelog, &o.version) {
        return Err(failed(format!(
            "CHANGELOG.md has no `## [{}]` section; add one (Keep a Changelog) first",
            o.version
        )));
    }
    println!("CHANGELOG.md has ## [{}]", o.version);

    step(3, "CI (bash .ci/run)");
    if o.skip_ci {
        println!("skipped (--skip-ci)");
        Ok(())
    } else {
        util::run(Command::new("bash").arg(".ci/run").current_dir(root))
    }
}

/// The workspace's manifests before and after the bump.
struct Plan {
    members: Vec<Member>,
    names: BTreeSet<String>,
    /// `(path, old text, new text)`, the root manifest first.
    files: Vec<(String, String, String)>,
}

impl Plan {
    fn bumps(&self) -> bool {
        self.files.iter().any(|(_, old, new)| old != new)
    }
}

/// Step 4: the bump, shown as a diff and checked for consistency.
fn plan_bump(root: &Path, version: &str) -> Result<Plan> {
    step(4, "version bump");
    let ws_text = util::read(&root.join("Cargo.toml"))?;
    let (_, ws_version) = parse_workspace(&ws_text);
    let members = load_members(root, &ws_text)?;
    let names: BTreeSet<String> = members.iter().map(|m| m.package.name.clone()).collect();
    let current: BTreeSet<String> = members
        .iter()
        .filter(|m| m.package.publish)
        .filter_map(|m| m.package.version.clone().or_else(|| ws_version.clone()))
        .collect();
    println!(
        "current version(s) of the publishable crates: {}",
        current.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    let mut files =
        vec![("Cargo.toml".to_string(), ws_text.clone(), bump_manifest(&ws_text, &names, version))];
    for m in &members {
        files.push((m.manifest.clone(), m.text.clone(), bump_manifest(&m.text, &names, version)));
    }
    let diff: String = files.iter().map(|(path, old, new)| line_diff(path, old, new)).collect();
    if diff.is_empty() {
        println!("every version is {version} already: nothing to bump");
    } else {
        print!("{diff}");
    }
    check_bumped(&files, &names, version)?;
    Ok(Plan { members, names, files })
}

/// Step 5: the publishable crates in dependency order. Normal and build dependencies on
/// each other order them; so do dev-dependencies on publishable siblings (the published
/// manifest keeps them), unless that makes a cycle. Dev-dependencies on unpublished
/// workspace crates are fine: cargo drops path-only dev-dependencies when it packages.
fn publish_order(plan: &Plan) -> Result<Vec<String>> {
    step(5, "publish order");
    let publishable: BTreeSet<&str> = plan
        .members
        .iter()
        .filter(|m| m.package.publish)
        .map(|m| m.package.name.as_str())
        .collect();
    let mut strict = BTreeMap::new();
    let mut with_dev = BTreeMap::new();
    for m in plan.members.iter().filter(|m| m.package.publish) {
        for d in &m.package.deps {
            if plan.names.contains(d) && !publishable.contains(d.as_str()) {
                return Err(failed(format!(
                    "{} depends on {d}, which has publish = false",
                    m.package.name
                )));
            }
        }
        let dev = m.package.dev_deps.iter().filter(|d| publishable.contains(d.as_str()));
        strict.insert(m.package.name.clone(), m.package.deps.clone());
        with_dev.insert(
            m.package.name.clone(),
            m.package.deps.iter().chain(dev).cloned().collect::<BTreeSet<_>>(),
        );
    }
    let levels = match publish_levels(&with_dev) {
        Ok(levels) => levels,
        Err(e) => {
            println!("warning: with dev-dependencies: {e}; ordering by the others only");
            publish_levels(&strict).map_err(failed)?
        }
    };
    for (i, level) in levels.iter().enumerate() {
        println!("level {}: {}", i + 1, level.join(", "));
    }
    let order = levels.concat();
    println!("publish order: {}", order.join(" -> "));
    Ok(order)
}

/// Step 6: `cargo publish --dry-run -p A -p B ...`, with a target directory of its own that
/// is removed afterwards. Cargo verifies each package against the others through a local
/// registry, and takes a registry package it has built once (same name, same version) for
/// unchanged: in a reused target directory a later run would compile against the sibling
/// crates of an earlier one.
fn publish_dry_run(root: &Path, o: &Options, plan: &Plan, order: &[String]) -> Result<()> {
    step(6, "cargo publish --dry-run (every crate, in order)");
    let scratch = std::env::temp_dir().join(format!("ckpt-release-{}", std::process::id()));
    let target = scratch.join("target");
    let mut publish = Command::new("cargo");
    publish.args(["publish", "--dry-run"]);
    for c in order {
        publish.args(["-p", c]);
    }
    publish.env("CARGO_TARGET_DIR", &target);
    let bumped = plan.bumps();
    if o.allow_dirty || bumped {
        publish.arg("--allow-dirty");
    }
    let result = if o.dry_run && bumped {
        publish_in_clone(root, &scratch.join("clone"), &plan.files, &mut publish)
    } else {
        util::run(publish.current_dir(root))
    };
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Step 7: commit and tag (or say what would be), then the manual steps.
fn finish(root: &Path, o: &Options, tag: &str, bumped: bool, order: &[String]) -> Result<()> {
    step(7, "tag");
    let version = &o.version;
    if o.dry_run {
        println!(
            "would {}create the annotated tag {tag} (\"ckpt {version}\")",
            if bumped {
                format!("commit the bump as \"release {version}\" and ")
            } else {
                String::new()
            }
        );
    } else {
        if bumped {
            util::run(git(root).args(["commit", "-a", "-m", &format!("release {version}")]))?;
        }
        util::run(git(root).args(["tag", "-a", tag, "-m", &format!("ckpt {version}")]))?;
        println!("created tag {tag}");
    }
    println!("\nPushing and publishing stay manual:");
    println!("  git push origin HEAD {tag}");
    println!(
        "  cargo publish {}   # cargo uploads them in dependency order",
        order.iter().map(|c| format!("-p {c}")).collect::<Vec<_>>().join(" ")
    );
    println!("\nrelease {version}: {}", if o.dry_run { "dry run passed" } else { "done locally" });
    Ok(())
}

/// After the bump, every publishable crate and every requirement on one says `version`.
fn check_bumped(
    files: &[(String, String, String)],
    names: &BTreeSet<String>,
    version: &str,
) -> Result<()> {
    let mut bad = Vec::new();
    let ws_version = files.first().and_then(|(_, _, new)| parse_workspace(new).1);
    for (path, _, new) in files {
        if path != "Cargo.toml" {
            let p = parse_package(new);
            let v = p.version.clone().or_else(|| ws_version.clone());
            if p.publish && v.as_deref() != Some(version) {
                bad.push(format!("{path}: {} is at {v:?}", p.name));
            }
        }
        for (line, dep, req) in sibling_requirements(new, names) {
            if req.trim_start_matches(['=', '^']) != version {
                bad.push(format!("{path}:{line}: {dep} = {req:?}"));
            }
        }
    }
    if bad.is_empty() {
        println!(
            "after the bump every publishable crate and every requirement on one is {version}"
        );
        Ok(())
    } else {
        Err(failed(format!("inconsistent versions after the bump:\n  {}", bad.join("\n  "))))
    }
}

fn refresh_lockfiles(root: &Path) -> Result<()> {
    util::run(
        Command::new("cargo").args(["update", "--workspace", "--offline"]).current_dir(root),
    )?;
    let fuzz = root.join("fuzz/Cargo.toml");
    if fuzz.is_file() {
        // Resolving rewrites the versions of the path dependencies in fuzz/Cargo.lock.
        util::capture(
            Command::new("cargo")
                .args(["metadata", "--offline", "--format-version", "1", "--manifest-path"])
                .arg(&fuzz)
                .current_dir(root),
        )?;
    }
    Ok(())
}

/// A dry run of a version other than the current one: clone HEAD (committed work only),
/// apply the bump there and run `cargo publish --dry-run` on the clone.
fn publish_in_clone(
    root: &Path,
    clone: &Path,
    files: &[(String, String, String)],
    publish: &mut Command,
) -> Result<()> {
    println!(
        "(VERSION differs from the current one: applying the bump to a clone of HEAD at {})",
        clone.display()
    );
    util::run(
        Command::new("git").args(["clone", "--quiet", "--no-hardlinks"]).arg(root).arg(clone),
    )?;
    for (path, _, new) in files {
        util::write(&clone.join(path), new)?;
    }
    refresh_lockfiles(clone)?;
    util::run(publish.current_dir(clone))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = r#"[workspace]
resolver = "3"
members = [
    "crates/a",
    "crates/b",
    "xtask",
]
exclude = ["fuzz"]

[workspace.package]
version = "0.1.0"   # the one version of every crate
edition = "2024"
rust-version = "1.95"

[workspace.dependencies]
ckpt-a = { path = "crates/a", version = "0.1.0", default-features = false }
ckpt-b = { path = "crates/b", version = "0.1.0" }
other = { version = "0.1.0" }
rustix = { version = "1.1", features = ["fs"] }
"#;

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn bumps_workspace_version_and_sibling_requirements_only() {
        let out = bump_manifest(WS, &names(&["ckpt-a", "ckpt-b", "xtask"]), "0.2.0");
        let expected = WS
            .replace("version = \"0.1.0\"   # the one", "version = \"0.2.0\"   # the one")
            .replace(
                "ckpt-a = { path = \"crates/a\", version = \"0.1.0\"",
                "ckpt-a = { path = \"crates/a\", version = \"0.2.0\"",
            )
            .replace(
                "ckpt-b = { path = \"crates/b\", version = \"0.1.0\"",
                "ckpt-b = { path = \"crates/b\", version = \"0.2.0\"",
            );
        assert_eq!(out, expected);
        // `other` (not a workspace crate) and rust-version are left alone.
        assert!(out.contains("other = { version = \"0.1.0\" }"));
        assert!(out.contains("rust-version = \"1.95\""));
        assert_eq!(line_diff("Cargo.toml", WS, &out).matches("\n-").count(), 3);
        // Bumping to the same version changes nothing.
        assert_eq!(bump_manifest(&out, &names(&["ckpt-a", "ckpt-b"]), "0.2.0"), out);
    }

    #[test]
    fn bumps_member_manifests() {
        let member = r#"[package]
name = "ckpt-c"
version = "0.1.0"
edition.workspace = true

[dependencies]
ckpt-a = { workspace = true, features = ["std"] }
ckpt-b = { path = "../b", version = "=0.1.0" }
serde = { version = "1", package = "serde" }

[dependencies.ckpt-x]
path = "../x"
version = "0.1.0"

[dev-dependencies]
ckpt-b = { version = "0.1.0", path = "../b" }
"#;
        let crates = names(&["ckpt-a", "ckpt-b", "ckpt-c", "ckpt-x"]);
        let out = bump_manifest(member, &crates, "1.0.0-rc.1");
        assert_eq!(out.matches("1.0.0-rc.1").count(), 4, "{out}");
        assert!(out.contains("serde = { version = \"1\", package = \"serde\" }"));
        assert!(out.contains("ckpt-b = { path = \"../b\", version = \"1.0.0-rc.1\" }"));
        let reqs = sibling_requirements(&out, &crates);
        assert_eq!(reqs.len(), 3);
        assert!(reqs.iter().all(|(_, _, v)| v == "1.0.0-rc.1"));
        let p = parse_package(&out);
        assert_eq!(p.name, "ckpt-c");
        assert_eq!(p.version.as_deref(), Some("1.0.0-rc.1"));
        assert!(p.publish);
        assert_eq!(p.deps, names(&["ckpt-a", "ckpt-b", "ckpt-x", "serde"]));
        assert_eq!(p.dev_deps, names(&["ckpt-b"]));
    }

    #[test]
    fn workspace_members_and_version() {
        let (members, version) = parse_workspace(WS);
        assert_eq!(members, ["crates/a", "crates/b", "xtask"]);
        assert_eq!(version.as_deref(), Some("0.1.0"));
        let (members, _) = parse_workspace("[workspace]\nmembers = [\"a\", \"b/*\"]\n");
        assert_eq!(members, ["a", "b/*"]);
    }

    #[test]
    fn package_fields() {
        let p = parse_package(
            "[package]\nname = \"xtask\"\nversion.workspace = true\npublish = false\n\n[dependencies]\n\n[lints]\nworkspace = true\n",
        );
        assert_eq!(p.name, "xtask");
        assert_eq!(p.version, None);
        assert!(!p.publish);
        assert!(p.deps.is_empty());
        let p = parse_package(
            "[package]\nname = \"x\"\n[target.'cfg(unix)'.dependencies]\nlibc = \"0.2\"\n[build-dependencies]\ncc.workspace = true\n",
        );
        assert_eq!(p.deps, names(&["cc", "libc"]));
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        edges.iter().map(|(k, deps)| ((*k).to_string(), names(deps))).collect()
    }

    #[test]
    fn topological_order_of_the_ckpt_crates() {
        let g = graph(&[
            (
                "ckpt-cli",
                &[
                    "ckpt-frame-core",
                    "ckpt-io-backends",
                    "ckpt-parallel",
                    "ckpt-poolset",
                    "ckpt-sparse",
                    "clap",
                ],
            ),
            ("ckpt-frame-core", &["lz4-sys", "xxhash-rust", "proptest"]),
            ("ckpt-io-backends", &["ckpt-frame-core", "rustix"]),
            ("ckpt-parallel", &["ckpt-frame-core", "rayon"]),
            ("ckpt-poolset", &["xxhash-rust"]),
            ("ckpt-sparse", &["libc"]),
        ]);
        let levels = publish_levels(&g).unwrap();
        assert_eq!(
            levels,
            vec![
                vec!["ckpt-frame-core", "ckpt-poolset", "ckpt-sparse"],
                vec!["ckpt-io-backends", "ckpt-parallel"],
                vec!["ckpt-cli"],
            ]
        );
        // Every crate comes after all of its dependencies.
        let order = levels.concat();
        for (k, deps) in &g {
            let at = order.iter().position(|c| c == k).unwrap();
            for d in deps.iter().filter(|d| g.contains_key(*d)) {
                assert!(order.iter().position(|c| c == d).unwrap() < at, "{d} before {k}");
            }
        }
    }

    #[test]
    fn a_chain_and_a_cycle() {
        let g = graph(&[("c", &["b"]), ("b", &["a"]), ("a", &["a"])]);
        assert_eq!(publish_levels(&g).unwrap(), vec![vec!["a"], vec!["b"], vec!["c"]]);
        let cyc = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        let e = publish_levels(&cyc).unwrap_err();
        assert_eq!(e, "dependency cycle among a, b, c");
    }

    #[test]
    fn versions_and_changelog() {
        for v in ["0.1.0", "1.2.3", "10.0.0-rc.1", "0.0.1-alpha-2"] {
            assert!(valid_version(v), "{v}");
        }
        for v in ["0.1", "01.0.0", "1.2.3-", "a.b.c", "1.2.3.4", ""] {
            assert!(!valid_version(v), "{v}");
        }
        let cl = "# Changelog\n\n## [Unreleased]\n\n## [0.1.0] - 2026-11-22\n\n### Added\n";
        assert!(changelog_has(cl, "0.1.0"));
        assert!(!changelog_has(cl, "0.1.1"));
        assert!(!changelog_has("## [0.1.0-rc.1] - x\n", "0.1.0"));
    }

    #[test]
    fn arguments() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>());
        let o = a(&["0.1.0"]).unwrap();
        assert!(o.dry_run && !o.skip_ci && !o.allow_dirty);
        assert_eq!(a(&["--no-dry-run", "v1.0.0"]).unwrap().version, "1.0.0");
        assert!(!a(&["--no-dry-run", "1.0.0"]).unwrap().dry_run);
        assert!(a(&[]).is_err());
        assert!(a(&["1.0"]).is_err());
        assert!(a(&["--no-dry-run", "--allow-dirty", "1.0.0"]).is_err());
        assert!(a(&["1.0.0", "2.0.0"]).is_err());
    }

    #[test]
    fn the_real_workspace_is_consistent() {
        let root = util::workspace_root();
        let ws = util::read(&root.join("Cargo.toml")).unwrap();
        let members = load_members(&root, &ws).unwrap();
        let names: BTreeSet<String> = members.iter().map(|m| m.package.name.clone()).collect();
        assert!(names.contains("ckpt-frame-core") && names.contains("xtask"));
        let graph: BTreeMap<String, BTreeSet<String>> = members
            .iter()
            .filter(|m| m.package.publish)
            .map(|m| (m.package.name.clone(), m.package.deps.clone()))
            .collect();
        let order = publish_levels(&graph).unwrap().concat();
        assert_eq!(order.first().map(String::as_str), Some("ckpt-frame-core"));
        assert!(!order.contains(&"xtask".to_string()));
        // Bumping to the current version is a no-op.
        let (_, v) = parse_workspace(&ws);
        let v = v.unwrap();
        assert_eq!(bump_manifest(&ws, &names, &v), ws);
    }
}
