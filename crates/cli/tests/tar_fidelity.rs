//! Reference tests against GNU tar: tar-level fidelity of `ckpt write` / `ckpt restore`.
//!
//! Each test builds a small tree, takes it once through
//! `tar --xattrs --xattrs-include='*' --acls --numeric-owner -cpf` / `-xpf` (into `A`) and
//! once through `ckpt write` / `ckpt restore` (into `B`), and compares the two results stat
//! by stat: type, permission bits, owner, size, mtime, symlink target, device numbers, file
//! data, which names share an inode, every xattr, and allocation (ckpt may allocate less
//! than tar, never more).
//!
//! Tests that need root or a tool (GNU tar, `setfacl` from Debian's `acl`) print
//! `SKIP <test>: <reason>` on stderr and pass when it is missing, unless `CI=true`, where
//! they fail with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// ----------------------------------------------------------------------------------------
// Prerequisites
// ----------------------------------------------------------------------------------------

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn tool_works(tool: &str) -> bool {
    let Ok(out) = Command::new(tool).arg("--version").output() else { return false };
    out.status.success()
        && (tool != "tar" || String::from_utf8_lossy(&out.stdout).contains("GNU tar"))
}

/// Whether `test` can run: root when `root`, and every tool of `tools`. When something is
/// missing, fails the test under `CI=true`, else prints `SKIP <test>: <reason>` and says no.
fn runnable(test: &str, root: bool, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if root && !is_root() {
        missing.push("needs root (euid 0)".to_string());
    }
    for tool in tools {
        if !tool_works(tool) {
            let what = match *tool {
                "tar" => "GNU tar (Debian package tar)",
                "setfacl" => "setfacl (Debian package acl)",
                other => other,
            };
            missing.push(format!("needs {what}"));
        }
    }
    missing.is_empty() || unavailable(test, &missing.join("; "))
}

/// Whether the part `part` of the running test, which needs root, can run: when not root,
/// fails under `CI=true`, else prints a `SKIP` line and says no (the rest of the test runs).
fn root_for(part: &str) -> bool {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("tar_fidelity");
    is_root() || unavailable(&format!("{test} ({part})"), "needs root (euid 0)")
}

/// The one place that decides between skipping and failing: always returns false.
fn unavailable(test: &str, reason: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {reason} (CI=true: a missing prerequisite is a failure, not a skip)"
    );
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(io::stderr().lock(), "SKIP {test}: {reason}");
    false
}

// ----------------------------------------------------------------------------------------
// Building trees (libc where std has no call)
// ----------------------------------------------------------------------------------------

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn check_rc(rc: libc::c_int, what: &str, p: &Path) {
    assert!(rc == 0, "{what} {}: {}", p.display(), io::Error::last_os_error());
}

fn write(p: &Path, data: &[u8], mode: u32) {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(p: &Path, mode: u32) {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn lchown(p: &Path, uid: u32, gid: u32) {
    let c = cpath(p);
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    check_rc(unsafe { libc::lchown(c.as_ptr(), uid, gid) }, "lchown", p);
}

fn mkfifo(p: &Path, mode: u32) {
    let c = cpath(p);
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    check_rc(unsafe { libc::mkfifo(c.as_ptr(), mode) }, "mkfifo", p);
    chmod(p, mode);
}

fn mknod(p: &Path, kind: libc::mode_t, mode: u32, major: u32, minor: u32) {
    let c = cpath(p);
    let dev = libc::makedev(major, minor);
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    check_rc(unsafe { libc::mknod(c.as_ptr(), kind | mode, dev) }, "mknod", p);
    chmod(p, mode);
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let (c, n) = (cpath(p), CString::new(name).unwrap());
    // SAFETY: both strings are NUL-terminated and `value` is readable for its length.
    let rc =
        unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    check_rc(rc, &format!("lsetxattr {name}"), p);
}

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let c = cpath(p);
    let t = libc::timespec { tv_sec: sec, tv_nsec: nsec };
    let times = [t, t];
    // SAFETY: `c` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    let rc = unsafe {
        libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW)
    };
    check_rc(rc, "utimensat", p);
}

/// Gives every entry under `root` (and `root` itself) a distinct mtime with nanoseconds,
/// without following symlinks. Call it last: creating entries changes directories' mtimes.
fn stamp_all(root: &Path) {
    let mut paths = vec![root.to_path_buf()];
    let mut i = 0;
    while i < paths.len() {
        let p = paths[i].clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            let mut kids: Vec<_> = fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            kids.sort();
            paths.extend(kids);
        }
        i += 1;
    }
    for (n, p) in (0i64..).zip(&paths) {
        set_mtime(p, 1_500_000_000 + n * 86_399, (n * 123_456_789 + 7) % 1_000_000_000);
    }
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

// ----------------------------------------------------------------------------------------
// Running tar and ckpt
// ----------------------------------------------------------------------------------------

/// The tree's own name: `ckpt write SRC/t` stores it as `t`, `tar -C SRC .` as `./t`.
const NAME: &str = "t";
const TAR_FLAGS: [&str; 4] = ["--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner"];

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A tempdir holding `src/t` (the tree), and the archives and restore targets beside it.
struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("src").join(NAME)).unwrap();
        Self { tmp }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
    fn src(&self) -> PathBuf {
        self.path("src")
    }
    /// A path inside the tree.
    fn at(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.src().join(NAME).join(rel)
    }
    /// `tar -cpf ARCHIVE -C src .` with the reference flags and `extra`; returns the
    /// archive and tar's output (exit status 0 checked).
    fn tar_create(&self, archive: &str, extra: &[&str]) -> (PathBuf, Output) {
        self.tar_create_raw(archive, &[&TAR_FLAGS[..], extra].concat())
    }
    /// `tar -cpf` with exactly `flags`.
    fn tar_create_raw(&self, archive: &str, flags: &[&str]) -> (PathBuf, Output) {
        let out = self.path(archive);
        let o = run(Command::new("tar")
            .args(flags)
            .arg("-cpf")
            .arg(&out)
            .arg("-C")
            .arg(self.src())
            .arg("."));
        expect_code(&o, 0, &format!("tar -c {flags:?}"));
        (out, o)
    }
    /// `tar -xpf ARCHIVE -C DEST [MEMBER...]` with the reference flags and `extra`.
    fn tar_extract(&self, archive: &Path, dest: &str, extra: &[&str], members: &[&str]) -> PathBuf {
        self.tar_extract_raw(archive, dest, &[&TAR_FLAGS[..], extra].concat(), members)
    }
    fn tar_extract_raw(
        &self,
        archive: &Path,
        dest: &str,
        flags: &[&str],
        members: &[&str],
    ) -> PathBuf {
        let d = self.path(dest);
        fs::create_dir_all(&d).unwrap();
        let o = run(Command::new("tar")
            .args(flags)
            .arg("-xpf")
            .arg(archive)
            .arg("-C")
            .arg(&d)
            .args(members));
        expect_code(&o, 0, &format!("tar -x {flags:?} {members:?}"));
        d
    }
    /// `ckpt write -o OUT EXTRA... src/t`, exit status not checked.
    fn ckpt_write(&self, out: &str, extra: &[&str]) -> (PathBuf, Output) {
        let p = self.path(out);
        let o = run(ckpt().arg("write").arg("-o").arg(&p).args(extra).arg(self.src().join(NAME)));
        (p, o)
    }
    fn ckpt_write_ok(&self, out: &str, extra: &[&str]) -> PathBuf {
        let (p, o) = self.ckpt_write(out, extra);
        expect_code(&o, 0, &format!("ckpt write {extra:?}"));
        p
    }
    /// `ckpt restore IN -C DEST EXTRA...`, exit status not checked.
    fn ckpt_restore(&self, ckpt_file: &Path, dest: &str, extra: &[&str]) -> Output {
        run(ckpt().arg("restore").arg(ckpt_file).arg("-C").arg(self.path(dest)).args(extra))
    }
    fn ckpt_restore_ok(&self, ckpt_file: &Path, dest: &str, extra: &[&str]) -> PathBuf {
        let o = self.ckpt_restore(ckpt_file, dest, extra);
        expect_code(&o, 0, &format!("ckpt restore {extra:?}"));
        self.path(dest)
    }
}

fn ckpt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
}

/// The plain reference run: tar with `tar_c`/`tar_x` extra flags into `A`, ckpt with
/// `ckpt_w`/`ckpt_r` into `B`; asserts tar reproduced the source (when `tar_is_source`) and
/// that ckpt's result equals tar's. Returns the snapshots of A and B.
fn round_trip(fx: &Fx, test: &str, flags: [&[&str]; 4], tar_is_source: bool) -> (Snap, Snap) {
    let [tar_c, tar_x, ckpt_w, ckpt_r] = flags;
    let (archive, _) = fx.tar_create("T.tar", tar_c);
    let a = snapshot(&fx.tar_extract(&archive, "A", tar_x, &[]));
    if tar_is_source {
        assert_same(
            &format!("{test} (reference check: tar vs source)"),
            ("source", &snapshot(&fx.src())),
            ("tar", &a),
        );
    }
    let c = fx.ckpt_write_ok("C.ckpt", ckpt_w);
    let b = snapshot(&fx.ckpt_restore_ok(&c, "B", ckpt_r));
    assert_same(test, ("tar", &a), ("ckpt", &b));
    (a, b)
}

const NONE: &[&str] = &[];

// ----------------------------------------------------------------------------------------
// Snapshots
// ----------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

/// What tar-level fidelity covers of one path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    kind: Kind,
    /// `st_mode & 0o7777`.
    mode: u32,
    uid: u32,
    gid: u32,
    /// Length of files and symlinks; 0 for directories (their size is file-system
    /// bookkeeping, which neither tar nor ckpt restores).
    size: u64,
    mtime: (i64, i64),
    target: Option<Vec<u8>>,
    /// (major, minor) of devices.
    rdev: Option<(u32, u32)>,
    /// xxh3 of a regular file's bytes.
    data: Option<u64>,
    /// The other names in the snapshot that share this inode (not for directories).
    links: Vec<Vec<u8>>,
    /// Every xattr (llistxattr/lgetxattr), sorted by name.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `st_blocks`: compared as "ckpt <= tar" for regular files only.
    blocks: u64,
}

/// Relative path (raw bytes, `/`-separated) to node, for everything below a directory.
type Snap = BTreeMap<Vec<u8>, Node>;

fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// An xattr value: long ones shortened to a prefix, their length and a hash.
fn show_value(v: &[u8]) -> String {
    if v.len() <= 64 {
        return show(v);
    }
    format!(
        "{}... ({} bytes, xxh3 {:016x})",
        show(&v[..32]),
        v.len(),
        xxhash_rust::xxh3::xxh3_64(v)
    )
}

impl Node {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let opt = |o: &Option<Vec<u8>>| o.as_deref().map_or_else(|| "-".into(), show);
        vec![
            ("type", format!("{:?}", self.kind)),
            ("mode", format!("{:04o}", self.mode)),
            ("uid", self.uid.to_string()),
            ("gid", self.gid.to_string()),
            ("size", self.size.to_string()),
            ("mtime", format!("{}.{:09}", self.mtime.0, self.mtime.1)),
            ("symlink target", opt(&self.target)),
            ("rdev", self.rdev.map_or_else(|| "-".into(), |(a, b)| format!("{a}:{b}"))),
            ("data (xxh3)", self.data.map_or_else(|| "-".into(), |h| format!("{h:016x}"))),
            (
                "hard links",
                format!("[{}]", self.links.iter().map(|l| show(l)).collect::<Vec<_>>().join(", ")),
            ),
            (
                "xattrs",
                format!(
                    "{{{}}}",
                    self.xattrs
                        .iter()
                        .map(|(n, v)| format!("{}={}", show(n), show_value(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ]
    }
}

/// Everything below `base` (not `base` itself), without following symlinks.
fn snapshot(base: &Path) -> Snap {
    let mut snap = Snap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    let mut todo = vec![Vec::new()];
    while let Some(rel) = todo.pop() {
        let dir =
            if rel.is_empty() { base.to_path_buf() } else { base.join(OsStr::from_bytes(&rel)) };
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let name = entry.unwrap().file_name();
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(name.as_bytes());
            let p = base.join(OsStr::from_bytes(&r));
            let md = fs::symlink_metadata(&p).unwrap();
            let node = node(&p, &md);
            if node.kind == Kind::Dir {
                todo.push(r.clone());
            } else {
                inodes.entry((md.dev(), md.ino())).or_default().push(r.clone());
            }
            snap.insert(r, node);
        }
    }
    for names in inodes.values().filter(|n| n.len() > 1) {
        for n in names {
            let mut others: Vec<_> = names.iter().filter(|o| *o != n).cloned().collect();
            others.sort();
            snap.get_mut(n).unwrap().links = others;
        }
    }
    snap
}

fn node(p: &Path, md: &fs::Metadata) -> Node {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::Char
    } else if ft.is_block_device() {
        Kind::Block
    } else {
        assert!(ft.is_socket(), "{}: unknown file type", p.display());
        Kind::Socket
    };
    Node {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: if kind == Kind::Dir { 0 } else { md.size() },
        mtime: (md.mtime(), md.mtime_nsec()),
        target: (kind == Kind::Symlink)
            .then(|| fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec()),
        rdev: matches!(kind, Kind::Char | Kind::Block)
            .then(|| (libc::major(md.rdev()), libc::minor(md.rdev()))),
        data: (kind == Kind::File).then(|| xxhash_rust::xxh3::xxh3_64(&fs::read(p).unwrap())),
        links: Vec::new(),
        xattrs: xattrs(p),
        blocks: md.blocks(),
    }
}

fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = cpath(p);
    // SAFETY: `c` is NUL-terminated; a null buffer of size 0 asks only for the length.
    let len = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    let Ok(len) = usize::try_from(len) else {
        let e = io::Error::last_os_error();
        assert!(e.raw_os_error() == Some(libc::ENOTSUP), "llistxattr {}: {e}", p.display());
        return Vec::new();
    };
    let mut names = vec![0u8; len];
    // SAFETY: `names` is writable for `names.len()` bytes.
    let got = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let got = usize::try_from(got).unwrap_or_else(|_| panic!("llistxattr {}", p.display()));
    let mut out: Vec<_> = names[..got]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| (n.to_vec(), xattr_value(p, &c, n)))
        .collect();
    out.sort();
    out
}

fn xattr_value(p: &Path, c: &CString, name: &[u8]) -> Vec<u8> {
    let n = CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated; a null buffer of size 0 asks for the length.
    let len = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    let len = usize::try_from(len).unwrap_or_else(|_| panic!("lgetxattr {}", p.display()));
    let mut v = vec![0u8; len];
    // SAFETY: `v` is writable for `v.len()` bytes.
    let got = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    v.truncate(usize::try_from(got).unwrap_or_else(|_| panic!("lgetxattr {}", p.display())));
    v
}

/// Readable list of differences between two snapshots (empty when they agree).
fn differences((ln, left): (&str, &Snap), (rn, right): (&str, &Snap)) -> Vec<String> {
    let mut out = Vec::new();
    for (p, l) in left {
        let Some(r) = right.get(p) else {
            out.push(format!("{}: only in {ln}'s tree ({:?})", show(p), l.kind));
            continue;
        };
        for ((field, lv), (_, rv)) in l.fields().into_iter().zip(r.fields()) {
            if lv != rv {
                out.push(format!("{}: {field}: {ln} {lv}, {rn} {rv}", show(p)));
            }
        }
        if l.kind == Kind::File && r.kind == Kind::File && r.blocks > l.blocks {
            out.push(format!(
                "{}: allocation: {ln} {} blocks, {rn} {} (more)",
                show(p),
                l.blocks,
                r.blocks
            ));
        }
    }
    for (p, r) in right {
        if !left.contains_key(p) {
            out.push(format!("{}: only in {rn}'s tree ({:?})", show(p), r.kind));
        }
    }
    out
}

fn assert_same(what: &str, left: (&str, &Snap), right: (&str, &Snap)) {
    let d = differences(left, right);
    assert!(d.is_empty(), "{what}: {} difference(s):\n  {}", d.len(), d.join("\n  "));
}

fn key(rel: &str) -> Vec<u8> {
    format!("{NAME}/{rel}").into_bytes()
}

// ----------------------------------------------------------------------------------------
// Owners and privileges
// ----------------------------------------------------------------------------------------

fn owners_tree(fx: &Fx) {
    for (name, uid, gid) in [
        ("root-owned", 0, 0),
        ("user", 1000, 1000),
        ("high", 100_000, 100_001),
        ("nobody", 65_534, 65_534),
        ("mixed", 0, 4242),
        ("d/inner", 2000, 3000),
    ] {
        write(&fx.at(name), name.as_bytes(), 0o640);
        lchown(&fx.at(name), uid, gid);
    }
    lchown(&fx.at("d"), 1234, 5678);
    mkdir(&fx.at("empty-owned"), 0o750);
    lchown(&fx.at("empty-owned"), 100_000, 100_000);
    symlink("user", fx.at("link")).unwrap();
    lchown(&fx.at("link"), 4321, 8765);
    stamp_all(&fx.src());
}

#[test]
fn owners_uid_gid_restored_numerically_as_root() {
    if !runnable("owners_uid_gid_restored_numerically_as_root", true, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    owners_tree(&fx);
    let (_, b) = round_trip(&fx, "owners (uid/gid)", [NONE; 4], true);
    assert_eq!((b[&key("high")].uid, b[&key("high")].gid), (100_000, 100_001));
    assert_eq!((b[&key("link")].uid, b[&key("link")].gid), (4321, 8765), "symlink owner");
}

#[test]
fn no_same_owner_leaves_files_to_the_restoring_user() {
    if !runnable("no_same_owner_leaves_files_to_the_restoring_user", true, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    owners_tree(&fx);
    let flags = [NONE, &["--no-same-owner"][..], NONE, &["--no-same-owner"][..]];
    let (_, b) = round_trip(&fx, "--no-same-owner", flags, false);
    // SAFETY: geteuid/getegid have no preconditions.
    let me = unsafe { (libc::geteuid(), libc::getegid()) };
    for (p, n) in &b {
        assert_eq!((n.uid, n.gid), me, "{} not owned by the restoring user", show(p));
    }
}

/// Setuid/setgid files of other owners; with `dirs`, also a setgid and a sticky directory.
fn setid_tree(fx: &Fx, dirs: bool) {
    for (name, uid, gid, mode) in [
        ("suid", 1000, 1000, 0o4755),
        ("sgid", 1000, 2000, 0o2755),
        ("both", 100_000, 100_000, 0o6711),
        ("plain", 1000, 1000, 0o755),
    ] {
        write(&fx.at(name), b"#!/bin/sh\n", 0o755);
        lchown(&fx.at(name), uid, gid);
        chmod(&fx.at(name), mode); // after chown, which clears the set-id bits
    }
    if dirs {
        mkdir(&fx.at("sgid-dir"), 0o755);
        write(&fx.at("sgid-dir/inside"), b"x", 0o644);
        lchown(&fx.at("sgid-dir/inside"), 1000, 3000);
        lchown(&fx.at("sgid-dir"), 1000, 3000);
        chmod(&fx.at("sgid-dir"), 0o2775);
        mkdir(&fx.at("sticky"), 0o755);
        lchown(&fx.at("sticky"), 1000, 1000);
        chmod(&fx.at("sticky"), 0o1777);
    }
    stamp_all(&fx.src());
}

#[test]
fn setuid_setgid_kept_with_their_owner_as_root() {
    if !runnable("setuid_setgid_kept_with_their_owner_as_root", true, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    setid_tree(&fx, true);
    let (_, b) = round_trip(&fx, "setuid/setgid with owners", [NONE; 4], true);
    assert_eq!(b[&key("both")].mode, 0o6711);
}

#[test]
fn setuid_setgid_dropped_with_no_same_owner() {
    if !runnable("setuid_setgid_dropped_with_no_same_owner", true, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    setid_tree(&fx, false);
    let (archive, _) = fx.tar_create("T.tar", NONE);
    let mut expected = snapshot(&fx.tar_extract(&archive, "A", &["--no-same-owner"], &[]));
    // GNU tar keeps the bits here (as root, on files it chowned to root); ckpt's rule is
    // stricter: no setuid/setgid on a file whose owner was not restored.
    assert_eq!(expected[&key("suid")].mode, 0o4755, "reference: tar 1.34 keeps setuid");
    for n in expected.values_mut() {
        n.mode &= !0o6000;
    }
    let c = fx.ckpt_write_ok("C.ckpt", NONE);
    let b = snapshot(&fx.ckpt_restore_ok(&c, "B", &["--no-same-owner"]));
    assert_same(
        "setuid/setgid with --no-same-owner",
        ("tar minus set-id bits", &expected),
        ("ckpt", &b),
    );
}

// ----------------------------------------------------------------------------------------
// Hard links, xattrs, ACLs
// ----------------------------------------------------------------------------------------

#[test]
fn hard_links_restored_as_one_inode_and_stored_once() {
    if !runnable("hard_links_restored_as_one_inode_and_stored_once", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    let data = noise(1 << 20, 3);
    write(&fx.at("a"), &data, 0o640);
    fs::create_dir_all(fx.at("sub")).unwrap();
    fs::hard_link(fx.at("a"), fx.at("sub/b")).unwrap();
    fs::hard_link(fx.at("a"), fx.at("c")).unwrap();
    write(&fx.at("x"), b"small pair", 0o600);
    fs::hard_link(fx.at("x"), fx.at("sub/y")).unwrap();
    // A second name outside the tree: stored as a plain file.
    write(&fx.at("half"), b"one name inside", 0o644);
    fs::hard_link(fx.at("half"), fx.path("outside-name")).unwrap();
    stamp_all(&fx.src());

    let (_, b) = round_trip(&fx, "hard links", [NONE; 4], true);
    let a_links: Vec<&[u8]> = b[&key("a")].links.iter().map(Vec::as_slice).collect();
    assert_eq!(a_links, [&b"t/c"[..], b"t/sub/b"], "three names, one inode");
    assert!(b[&key("half")].links.is_empty());
    let stored = fs::metadata(fx.path("C.ckpt")).unwrap().len();
    let limit = data.len() as u64 * 3 / 2;
    assert!(
        stored < limit,
        "checkpoint is {stored} bytes for 1 MiB held by 3 names: data stored more than once"
    );
}

/// The raw `security.capability` value `setcap cap_net_raw+ep` writes (VFS caps v2).
const CAP_NET_RAW_EP: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[test]
fn xattrs_user_trusted_and_security_capability() {
    if !runnable("xattrs_user_trusted_and_security_capability", true, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    write(&fx.at("f"), b"with xattrs", 0o644);
    set_xattr(&fx.at("f"), "user.one", b"1");
    set_xattr(&fx.at("f"), "user.empty", b"");
    set_xattr(&fx.at("f"), "user.binary", &[0, 255, b'\n', 0]);
    set_xattr(&fx.at("f"), "user.big", &noise(2000, 9));
    set_xattr(&fx.at("f"), "trusted.t", b"trusted value");
    write(&fx.at("cap"), b"\x7fELF pretend", 0o755);
    lchown(&fx.at("cap"), 1000, 1000);
    chmod(&fx.at("cap"), 0o755);
    set_xattr(&fx.at("cap"), "security.capability", &CAP_NET_RAW_EP); // after chown, which drops it
    mkdir(&fx.at("d"), 0o755);
    set_xattr(&fx.at("d"), "user.dir", b"on a directory");
    symlink("f", fx.at("l")).unwrap();
    set_xattr(&fx.at("l"), "trusted.sym", b"on a symlink");
    stamp_all(&fx.src());

    let (_, b) = round_trip(&fx, "xattrs", [NONE; 4], true);
    let cap = &b[&key("cap")];
    assert!(
        cap.xattrs.iter().any(|(n, _)| n == b"security.capability"),
        "capability lost: {cap:?}"
    );
}

#[test]
fn no_xattrs_flags_drop_xattrs_like_tar_without_xattrs() {
    if !runnable("no_xattrs_flags_drop_xattrs_like_tar_without_xattrs", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    write(&fx.at("f"), b"with xattrs", 0o644);
    set_xattr(&fx.at("f"), "user.one", b"1");
    mkdir(&fx.at("d"), 0o700);
    set_xattr(&fx.at("d"), "user.dir", b"2");
    stamp_all(&fx.src());
    let (archive, _) = fx.tar_create_raw("T.tar", &["--numeric-owner", "--format=posix"]);
    let a = snapshot(&fx.tar_extract_raw(&archive, "A", &["--numeric-owner"], &[]));
    assert!(a.values().all(|n| n.xattrs.is_empty()), "reference: tar without --xattrs");
    let c = fx.ckpt_write_ok("C.ckpt", &["--no-xattrs"]);
    let b = snapshot(&fx.ckpt_restore_ok(&c, "B", NONE));
    assert_same("write --no-xattrs", ("tar", &a), ("ckpt", &b));
    let c = fx.ckpt_write_ok("C2.ckpt", NONE);
    let b = snapshot(&fx.ckpt_restore_ok(&c, "B2", &["--no-xattrs"]));
    assert_same("restore --no-xattrs", ("tar", &a), ("ckpt", &b));
}

fn setfacl(args: &[&str], p: &Path) {
    let o = run(Command::new("setfacl").args(args).arg(p));
    expect_code(&o, 0, &format!("setfacl {args:?} {}", p.display()));
}

#[test]
fn posix_acls_access_and_default() {
    if !runnable("posix_acls_access_and_default", false, &["tar", "setfacl"]) {
        return;
    }
    let fx = Fx::new();
    write(&fx.at("f"), b"acl'd", 0o640);
    setfacl(&["-m", "u:1234:rw,g:4321:r"], &fx.at("f"));
    mkdir(&fx.at("d"), 0o750);
    setfacl(&["-m", "u:1234:rwx"], &fx.at("d"));
    setfacl(&["-d", "-m", "u:1234:rx,g:77:rwx,o::-"], &fx.at("d"));
    // Created after the default ACL: inherits it.
    write(&fx.at("d/inherited"), b"i", 0o640);
    fs::create_dir(fx.at("d/subdir")).unwrap();
    // Inherits, then loses every ACL: restore must not leave an inherited one on it.
    write(&fx.at("d/plain"), b"p", 0o640);
    setfacl(&["-b"], &fx.at("d/plain"));
    chmod(&fx.at("d/plain"), 0o604);
    stamp_all(&fx.src());
    let has = |s: &Snap, p: &str, name: &[u8]| s[&key(p)].xattrs.iter().any(|(n, _)| n == name);

    let (a, _) = round_trip(&fx, "POSIX ACLs", [NONE; 4], true);
    assert!(has(&a, "f", b"system.posix_acl_access"), "reference: access ACL");
    assert!(has(&a, "d", b"system.posix_acl_default"), "reference: default ACL");
    assert!(has(&a, "d/subdir", b"system.posix_acl_default"), "reference: inherited default");
    assert!(!has(&a, "d/plain", b"system.posix_acl_access"), "reference: no ACL on d/plain");
}

// ----------------------------------------------------------------------------------------
// Special files
// ----------------------------------------------------------------------------------------

#[test]
fn fifos_round_trip() {
    if !runnable("fifos_round_trip", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    mkfifo(&fx.at("p"), 0o640);
    fs::create_dir(fx.at("sub")).unwrap();
    mkfifo(&fx.at("sub/q"), 0o600);
    write(&fx.at("f"), b"beside the fifos", 0o644);
    stamp_all(&fx.src());
    let (_, b) = round_trip(&fx, "FIFOs", [NONE; 4], true);
    assert_eq!(b[&key("sub/q")].kind, Kind::Fifo);
}

#[test]
fn char_and_block_devices_as_root() {
    if !runnable("char_and_block_devices_as_root", true, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    mknod(&fx.at("null"), libc::S_IFCHR, 0o666, 1, 3);
    mknod(&fx.at("big-minor"), libc::S_IFCHR, 0o600, 259, 70_000);
    mknod(&fx.at("loop"), libc::S_IFBLK, 0o660, 7, 200);
    lchown(&fx.at("loop"), 0, 6);
    chmod(&fx.at("loop"), 0o660);
    stamp_all(&fx.src());
    let (_, b) = round_trip(&fx, "devices", [NONE; 4], true);
    assert_eq!((b[&key("loop")].kind, b[&key("loop")].rdev), (Kind::Block, Some((7, 200))));
}

#[test]
fn unix_sockets_are_skipped_with_a_warning() {
    if !runnable("unix_sockets_are_skipped_with_a_warning", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    write(&fx.at("f"), b"regular", 0o644);
    fs::create_dir(fx.at("sub")).unwrap();
    let _l1 = UnixListener::bind(fx.at("sock")).unwrap();
    let _l2 = UnixListener::bind(fx.at("sub/sock2")).unwrap();
    stamp_all(&fx.src());
    let (archive, tar_out) = fx.tar_create("T.tar", NONE);
    assert!(stderr(&tar_out).contains("socket ignored"), "reference: {}", stderr(&tar_out));
    let a = snapshot(&fx.tar_extract(&archive, "A", NONE, &[]));
    let (c, out) = fx.ckpt_write("C.ckpt", NONE);
    expect_code(&out, 0, "ckpt write of a tree with sockets");
    assert!(stderr(&out).contains("socket"), "no warning naming the socket: {}", stderr(&out));
    let b = snapshot(&fx.ckpt_restore_ok(&c, "B", NONE));
    assert_same("sockets", ("tar", &a), ("ckpt", &b));
    assert!(!b.contains_key(&key("sock")));
}

#[test]
fn symlink_mtimes_round_trip() {
    if !runnable("symlink_mtimes_round_trip", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    write(&fx.at("f"), b"target", 0o644);
    mkdir(&fx.at("d"), 0o755);
    symlink("f", fx.at("to-file")).unwrap();
    symlink("d", fx.at("to-dir")).unwrap();
    symlink("/nonexistent/target", fx.at("dangling")).unwrap();
    symlink("../f", fx.at("d/up")).unwrap();
    stamp_all(&fx.src());
    // Distinct from the targets' mtimes, so following a link when setting times shows.
    set_mtime(&fx.at("to-file"), 1_234_567_890, 999_999_999);
    set_mtime(&fx.at("to-dir"), 86_400, 1);
    round_trip(&fx, "symlink mtimes", [NONE; 4], true);
}

#[test]
fn sparse_files_keep_their_holes() {
    if !runnable("sparse_files_keep_their_holes", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    let mut holey = vec![0u8; 8 << 20];
    holey[..4096].copy_from_slice(&noise(4096, 1));
    holey[4 << 20..(4 << 20) + 8192].copy_from_slice(&noise(8192, 2));
    let end = holey.len() - 100;
    holey[end..].copy_from_slice(&noise(100, 3));
    write_sparse(&fx.at("holey"), &holey);
    write_sparse(&fx.at("all-hole"), &vec![0u8; 4 << 20]);
    write_sparse(&fx.at("tail-only"), &[&vec![0u8; 1 << 20][..], b"end"].concat());
    write(&fx.at("dense"), &noise(65_536, 4), 0o644);
    stamp_all(&fx.src());
    let (a, _) = round_trip(&fx, "sparse files", [&["--sparse"][..], NONE, NONE, NONE], true);
    let src = snapshot(&fx.src());
    if src[&key("holey")].blocks * 512 < 1 << 20 {
        // The file system makes holes: tar's --sparse must have kept them.
        assert!(a[&key("holey")].blocks * 512 < 1 << 20, "reference: tar --sparse kept holes");
    }
}

/// Writes only the non-zero 4 KiB blocks of `data`, leaving holes.
fn write_sparse(p: &Path, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(p).unwrap();
    f.set_len(data.len() as u64).unwrap();
    for (i, block) in data.chunks(4096).enumerate() {
        if block.iter().any(|b| *b != 0) {
            f.write_all_at(block, (i * 4096) as u64).unwrap();
        }
    }
    chmod(p, 0o644);
}

// ----------------------------------------------------------------------------------------
// Names and directories
// ----------------------------------------------------------------------------------------

#[test]
fn odd_names_round_trip() {
    if !runnable("odd_names_round_trip", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    let long = "l".repeat(255);
    let names: Vec<&[u8]> = vec![
        b"with space",
        b"new\nline",
        b"caf\xe9 (latin-1, not UTF-8)",
        b"tab\there",
        b"-leading-dash",
        b"star*?[x]",
        b"back\\slash",
        "\u{fc}n\u{ef}c\u{f8}d\u{e9}".as_bytes(),
        b"trailing space ",
        b" leading space",
        b"quote\"'",
        b"...",
        b".hidden",
        b"dir with space/inner\nnewline",
        long.as_bytes(),
    ];
    for (i, n) in names.iter().enumerate() {
        write(&fx.at(OsStr::from_bytes(n)), format!("file {i}").as_bytes(), 0o644);
    }
    let deep: PathBuf =
        (0..12).map(|i| format!("deep-directory-level-{i:02}-{}", "d".repeat(20))).collect();
    write(&fx.at(deep.join("leaf")), b"deep", 0o600);
    symlink(
        OsStr::from_bytes(b"caf\xe9 (latin-1, not UTF-8)"),
        fx.at(OsStr::from_bytes(b"link\xff")),
    )
    .unwrap();
    stamp_all(&fx.src());
    round_trip(&fx, "odd names", [NONE; 4], true);
}

#[test]
fn empty_directories_round_trip() {
    if !runnable("empty_directories_round_trip", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    mkdir(&fx.at("e1"), 0o755);
    mkdir(&fx.at("e2/e3/e4"), 0o755);
    mkdir(&fx.at("private"), 0o700);
    mkdir(&fx.at("sticky"), 0o1777);
    mkdir(&fx.at("ro/inner"), 0o750);
    chmod(&fx.at("ro"), 0o555);
    stamp_all(&fx.src());
    round_trip(&fx, "empty directories", [NONE; 4], true);
}

// ----------------------------------------------------------------------------------------
// Restoring into existing trees, subsets
// ----------------------------------------------------------------------------------------

/// Files, modes, symlinks, hard links, a FIFO, an empty directory, a user xattr; other
/// owners when root.
fn rich_tree(fx: &Fx) {
    write(&fx.at("f.txt"), b"new version\n", 0o644);
    set_xattr(&fx.at("f.txt"), "user.note", b"x");
    write(&fx.at("ro.txt"), b"read only\n", 0o444);
    write(&fx.at("run.sh"), b"#!/bin/sh\n", 0o755);
    write(&fx.at("sub/deep/g.bin"), &noise(100_000, 5), 0o600);
    write(&fx.at("hard1"), b"linked\n", 0o644);
    fs::hard_link(fx.at("hard1"), fx.at("sub/hard2")).unwrap();
    symlink("f.txt", fx.at("link")).unwrap();
    symlink("nowhere", fx.at("dangling")).unwrap();
    mkfifo(&fx.at("fifo"), 0o644);
    mkdir(&fx.at("empty"), 0o755);
    if root_for("other owners in the tree") {
        lchown(&fx.at("run.sh"), 1000, 1000);
        chmod(&fx.at("run.sh"), 0o755);
        lchown(&fx.at("sub"), 2000, 2000);
    }
    stamp_all(&fx.src());
}

#[test]
fn restore_twice_into_the_same_directory() {
    if !runnable("restore_twice_into_the_same_directory", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    rich_tree(&fx);
    let (archive, _) = fx.tar_create("T.tar", NONE);
    fx.tar_extract(&archive, "A", NONE, &[]);
    let a = snapshot(&fx.tar_extract(&archive, "A", NONE, &[]));
    assert_same("reference: tar twice vs source", ("source", &snapshot(&fx.src())), ("tar", &a));
    let c = fx.ckpt_write_ok("C.ckpt", NONE);
    let first = snapshot(&fx.ckpt_restore_ok(&c, "B", NONE));
    let second = snapshot(&fx.ckpt_restore_ok(&c, "B", NONE));
    assert_same("restore twice: second vs first", ("first", &first), ("second", &second));
    assert_same("restore twice", ("tar", &a), ("ckpt", &second));
}

/// What an older restore and other programs left in a destination.
fn populate(dest: &Path) {
    let t = dest.join(NAME);
    write(&dest.join("unrelated.txt"), b"keep me\n", 0o600);
    write(&dest.join("outside.txt"), b"outside the tree\n", 0o644);
    write(&t.join("extra.txt"), b"not in the checkpoint\n", 0o640);
    write(&t.join("f.txt"), b"an old version, longer than the new one\n", 0o600);
    write(&t.join("link"), b"a file where the checkpoint has a symlink\n", 0o644);
    symlink("../outside.txt", t.join("hard1")).unwrap(); // must be replaced, not written through
    write(&t.join("sub/stale.txt"), b"stale\n", 0o644);
    chmod(&t.join("sub"), 0o700);
    stamp_all(dest);
}

#[test]
fn restore_into_a_non_empty_directory() {
    if !runnable("restore_into_a_non_empty_directory", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    rich_tree(&fx);
    let (archive, _) = fx.tar_create("T.tar", NONE);
    populate(&fx.path("A"));
    populate(&fx.path("B"));
    let a = snapshot(&fx.tar_extract(&archive, "A", NONE, &[]));
    assert_eq!(fs::read(fx.path("A/unrelated.txt")).unwrap(), b"keep me\n", "reference");
    assert_eq!(fs::read(fx.path("A/outside.txt")).unwrap(), b"outside the tree\n", "reference");
    let c = fx.ckpt_write_ok("C.ckpt", NONE);
    let b = snapshot(&fx.ckpt_restore_ok(&c, "B", NONE));
    assert_same("restore into a non-empty directory", ("tar", &a), ("ckpt", &b));
    assert_eq!(fs::read(fx.path("B/t/f.txt")).unwrap(), b"new version\n");
}

#[test]
fn restore_of_selected_paths_matches_tar_members() {
    if !runnable("restore_of_selected_paths_matches_tar_members", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    write(&fx.at("keep/a.txt"), b"a", 0o644);
    write(&fx.at("keep/deep/b.txt"), b"b", 0o600);
    symlink("a.txt", fx.at("keep/l")).unwrap();
    mkdir(&fx.at("keep/empty"), 0o700);
    write(&fx.at("keepsake.txt"), b"shares a prefix, not selected", 0o644);
    write(&fx.at("file2"), b"selected file", 0o640);
    write(&fx.at("other/c.txt"), b"not selected", 0o644);
    write(&fx.at("other2.txt"), b"not selected", 0o644);
    stamp_all(&fx.src());
    let (archive, _) = fx.tar_create("T.tar", NONE);
    let a = snapshot(&fx.tar_extract(&archive, "A", NONE, &["./t/keep", "./t/file2"]));
    let c = fx.ckpt_write_ok("C.ckpt", NONE);
    let b = snapshot(&fx.ckpt_restore_ok(&c, "B", &["t/keep", "t/file2"]));
    let names = |s: &Snap| s.keys().map(|k| show(k)).collect::<Vec<_>>();
    assert_eq!(names(&b), names(&a), "restored paths: ckpt vs tar");
    // Directories above the selection are created by both, with metadata neither promises.
    let selected = |k: &Vec<u8>| k.starts_with(b"t/keep/") || k == b"t/keep" || k == b"t/file2";
    let pick = |s: &Snap| {
        s.iter().filter(|(k, _)| selected(k)).map(|(k, v)| (k.clone(), v.clone())).collect::<Snap>()
    };
    assert_same("restore PATH...", ("tar", &pick(&a)), ("ckpt", &pick(&b)));
}

// ----------------------------------------------------------------------------------------
// Selection at write time
// ----------------------------------------------------------------------------------------

#[test]
fn exclude_patterns_match_tar_exclude() {
    if !runnable("exclude_patterns_match_tar_exclude", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    for f in [
        "keep.c",
        "a.o",
        "sub/b.o",
        "d.o/inside.c",
        "cache/x",
        "sub/cache",
        "cachet",
        "top.tmp",
        "sub/x.tmp",
        "sub/deep/y.tmp",
        "other/sub/z.tmp",
        "subx/w.tmp",
    ] {
        write(&fx.at(f), f.as_bytes(), 0o644);
    }
    stamp_all(&fx.src());
    let all = snapshot(&fx.src());
    let cases: [(&[&str], &[&str]); 4] = [
        (&["*.o"], &["a.o", "sub/b.o", "d.o", "d.o/inside.c"]),
        (&["cache"], &["cache", "cache/x", "sub/cache"]),
        (&["sub/*.tmp"], &["sub/x.tmp", "sub/deep/y.tmp", "other/sub/z.tmp"]),
        (&["*.o", "cache", "sub/*.tmp"], &[]),
    ];
    for (i, (patterns, gone)) in cases.iter().enumerate() {
        let tar_flags: Vec<String> = patterns.iter().map(|p| format!("--exclude={p}")).collect();
        let tar_flags: Vec<&str> = tar_flags.iter().map(String::as_str).collect();
        let (archive, _) = fx.tar_create(&format!("T{i}.tar"), &tar_flags);
        let a = snapshot(&fx.tar_extract(&archive, &format!("A{i}"), NONE, &[]));
        for g in *gone {
            assert!(
                all.contains_key(&key(g)) && !a.contains_key(&key(g)),
                "reference: tar {patterns:?} keeps {g}"
            );
        }
        let ckpt_flags: Vec<&str> = patterns.iter().flat_map(|p| ["--exclude", p]).collect();
        let c = fx.ckpt_write_ok(&format!("C{i}.ckpt"), &ckpt_flags);
        let b = snapshot(&fx.ckpt_restore_ok(&c, &format!("B{i}"), NONE));
        assert_same(&format!("--exclude {patterns:?}"), ("tar", &a), ("ckpt", &b));
    }
}

/// A tmpfs mounted for the length of a test.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let c = cpath(&self.0);
        // SAFETY: `c` is a NUL-terminated path; a failed unmount is only reported.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!("umount {}: {}", self.0.display(), io::Error::last_os_error());
        }
    }
}

fn mount_tmpfs(at: &Path) -> io::Result<Mount> {
    let (what, fstype) = (CString::new("ckpt-test").unwrap(), CString::new("tmpfs").unwrap());
    let (target, data) = (cpath(at), CString::new("mode=0750,size=4m").unwrap());
    // SAFETY: every argument is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(what.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, data.as_ptr().cast())
    };
    if rc == 0 { Ok(Mount(at.to_path_buf())) } else { Err(io::Error::last_os_error()) }
}

#[test]
fn one_file_system_keeps_the_mount_point_but_not_its_contents() {
    let test = "one_file_system_keeps_the_mount_point_but_not_its_contents";
    if !runnable(test, true, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    write(&fx.at("a.txt"), b"on the first file system", 0o644);
    write(&fx.at("sub/b.txt"), b"also", 0o644);
    mkdir(&fx.at("mnt"), 0o755);
    let _mount = match mount_tmpfs(&fx.at("mnt")) {
        Ok(m) => m,
        Err(e) => {
            unavailable(test, &format!("cannot mount a tmpfs: {e}"));
            return;
        }
    };
    write(&fx.at("mnt/inside.txt"), b"on the tmpfs", 0o644);
    write(&fx.at("mnt/dir/deeper.txt"), b"on the tmpfs", 0o644);
    stamp_all(&fx.src());
    let flags = [&["--one-file-system"][..], NONE, &["--one-file-system"][..], NONE];
    let (a, b) = round_trip(&fx, "--one-file-system", flags, false);
    assert!(a.contains_key(&key("mnt")) && !a.contains_key(&key("mnt/inside.txt")), "reference");
    assert_eq!(a[&key("mnt")].mode, 0o750, "reference: the tmpfs root's own metadata");
    assert!(b.contains_key(&key("sub/b.txt")));
}

// ----------------------------------------------------------------------------------------
// diff and list
// ----------------------------------------------------------------------------------------

/// The same changes to a restored tree, for `tar -d` and `ckpt diff`.
fn mutate(dest: &Path) -> Vec<&'static str> {
    let t = dest.join(NAME);
    let mut changed = vec!["touched.txt", "grown.txt", "chmodded.txt", "sneaky.txt"];
    let md = fs::metadata(t.join("touched.txt")).unwrap();
    set_mtime(&t.join("touched.txt"), md.mtime() + 100, md.mtime_nsec());
    fs::write(t.join("grown.txt"), b"grown: longer than before\n").unwrap();
    chmod(&t.join("chmodded.txt"), 0o600);
    // Same size, same mtime, other bytes: only reading the data finds it.
    let md = fs::metadata(t.join("sneaky.txt")).unwrap();
    fs::write(t.join("sneaky.txt"), b"SNEAKY\n").unwrap();
    set_mtime(&t.join("sneaky.txt"), md.mtime(), md.mtime_nsec());
    if root_for("an owner change for diff to find") {
        lchown(&t.join("chowned.txt"), 4242, 4242);
        changed.push("chowned.txt");
    }
    changed
}

#[test]
fn diff_names_the_paths_tar_compare_names() {
    if !runnable("diff_names_the_paths_tar_compare_names", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    for f in
        ["touched.txt", "grown.txt", "chmodded.txt", "chowned.txt", "same.txt", "sub/other.txt"]
    {
        write(&fx.at(f), b"content\n", 0o644);
    }
    write(&fx.at("sneaky.txt"), b"sneaky\n", 0o644);
    symlink("same.txt", fx.at("link")).unwrap();
    stamp_all(&fx.src());
    let (archive, _) = fx.tar_create("T.tar", NONE);
    let a = fx.tar_extract(&archive, "A", NONE, &[]);
    let c = fx.ckpt_write_ok("C.ckpt", NONE);
    let b = fx.ckpt_restore_ok(&c, "B", NONE);
    let tar_d =
        || run(Command::new("tar").args(TAR_FLAGS).arg("-df").arg(&archive).arg("-C").arg(&a));
    let ckpt_diff = || run(ckpt().arg("diff").arg(&c).arg(&b));
    expect_code(&tar_d(), 0, "reference: tar -d right after extraction");
    expect_code(&ckpt_diff(), 0, "ckpt diff right after restore");

    let changed = mutate(&a);
    assert_eq!(mutate(&b), changed);
    let out = tar_d();
    expect_code(&out, 1, "reference: tar -d after changes");
    let tar_named: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("./t/").and_then(|l| l.split_once(": ")).map(|(p, _)| p.to_string())
        })
        .collect();
    let expected: BTreeSet<String> = changed.iter().map(ToString::to_string).collect();
    assert_eq!(
        tar_named,
        expected,
        "reference: tar -d output {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ckpt_diff();
    expect_code(&out, 1, "ckpt diff after changes");
    let text = String::from_utf8_lossy(&out.stdout);
    for p in &changed {
        assert!(
            text.contains(&format!("t/{p}")),
            "ckpt diff does not name t/{p} (tar -d does):\n{text}"
        );
    }
    for p in ["t/same.txt", "t/sub/other.txt", "t/link"] {
        assert!(!text.contains(p), "ckpt diff names unchanged {p}:\n{text}");
    }
}

/// The one-letter type of a `ckpt list --json` entry's type name, as `tar -tv` prints it.
fn type_letter(name: &str) -> char {
    let n = name.to_ascii_lowercase();
    if n.contains("dir") {
        'd'
    } else if n.contains("sym") {
        'l'
    } else if n.contains("fifo") || n.contains("pipe") {
        'p'
    } else if n.contains("char") {
        'c'
    } else if n.contains("block") {
        'b'
    } else if n.contains("hard") || n.contains("file") || n.contains("reg") {
        '-'
    } else {
        '?'
    }
}

#[test]
fn list_json_paths_and_types_match_tar_listing() {
    if !runnable("list_json_paths_and_types_match_tar_listing", false, &["tar"]) {
        return;
    }
    let fx = Fx::new();
    rich_tree(&fx);
    if root_for("device nodes in the listing") {
        mknod(&fx.at("null"), libc::S_IFCHR, 0o666, 1, 3);
        mknod(&fx.at("loop"), libc::S_IFBLK, 0o660, 7, 200);
    }
    let (archive, _) = fx.tar_create("T.tar", NONE);
    let names = run(Command::new("tar").arg("-tf").arg(&archive));
    let long = run(Command::new("tar").arg("-tvf").arg(&archive));
    expect_code(&long, 0, "reference: tar -tvf");
    let tar: BTreeMap<String, char> = String::from_utf8_lossy(&names.stdout)
        .lines()
        .zip(String::from_utf8_lossy(&long.stdout).lines())
        .filter_map(|(n, l)| {
            let n = n.strip_prefix("./")?.trim_end_matches('/');
            // A hard link's second name is listed as 'h'; which name comes first is the
            // walker's choice, so both count as files.
            let t = match l.chars().next()? {
                'h' => '-',
                t => t,
            };
            (!n.is_empty()).then(|| (n.to_string(), t))
        })
        .collect();
    assert!(tar.len() > 10, "reference: tar -tvf listed {tar:?}");

    let c = fx.ckpt_write_ok("C.ckpt", NONE);
    let out = run(ckpt().arg("list").arg(&c).arg("--json"));
    expect_code(&out, 0, "ckpt list --json");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("ckpt list --json prints JSON");
    let entries = v
        .as_array()
        .or_else(|| v.get("entries").and_then(serde_json::Value::as_array))
        .unwrap_or_else(|| {
            panic!("ckpt list --json: neither an array nor {{\"entries\": [...]}}: {v}")
        });
    let ours: BTreeMap<String, char> = entries
        .iter()
        .map(|e| {
            let path = e["path"].as_str().unwrap_or_else(|| panic!("entry without \"path\": {e}"));
            let kind = e.get("type").or_else(|| e.get("kind")).and_then(serde_json::Value::as_str);
            let kind = kind.unwrap_or_else(|| panic!("entry without \"type\"/\"kind\": {e}"));
            (path.trim_end_matches('/').to_string(), type_letter(kind))
        })
        .collect();
    assert_eq!(ours, tar, "ckpt list --json (path -> type) vs tar -tvf");

    let out = run(ckpt().arg("list").arg(&c).arg("--long"));
    expect_code(&out, 0, "ckpt list --long");
    let text = String::from_utf8_lossy(&out.stdout);
    for p in tar.keys() {
        assert!(text.contains(p.as_str()), "ckpt list --long lacks {p}:\n{text}");
    }
}
