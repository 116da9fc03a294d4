//! `ckpt diff`: a checkpoint compared with a restored tree, then with each kind of change.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::missing_panics_doc)]

use ckpt_frame_core::{CheckpointId, SliceSource, Style, VecSink};
use ckpt_tree::diff::{DiffOptions, Difference, What, diff};
use ckpt_tree::manifest::{Kind, Owner};
use ckpt_tree::{
    CollectOptions, Collected, RestoreOptions, TreeError, WriteOptions, collect,
    restore_checkpoint, write_checkpoint,
};
use rustix::fs::{AtFlags, Timespec, Timestamps};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Bytes that do not repeat (so a window of them is found once in a raw checkpoint).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// Whether `path` can hold a `user.` extended attribute here.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).is_ok()
}

/// The source tree `tree/`: small and multi-frame files, a subdirectory, a symlink, a hard
/// link pair, a sparse file, a FIFO. Returns whether `tree/small.txt` has `user.x`.
fn make_tree(root: &Path) -> bool {
    let t = root.join("tree");
    fs::create_dir_all(t.join("sub")).unwrap();
    fs::write(t.join("small.txt"), b"hello world").unwrap();
    fs::write(t.join("multi.bin"), noise(10_000, 1)).unwrap();
    fs::write(t.join("big.bin"), noise(20_000, 2)).unwrap();
    fs::write(t.join("sub/nested.txt"), b"nested").unwrap();
    fs::write(t.join("hard_a"), b"shared inode").unwrap();
    fs::hard_link(t.join("hard_a"), t.join("hard_b")).unwrap();
    symlink("small.txt", t.join("link")).unwrap();
    let sparse = fs::File::create(t.join("sparse.img")).unwrap();
    sparse.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &[7u8; 100], 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &[9u8; 100], 700_000).unwrap();
    drop(sparse);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        t.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    set_xattr(&t.join("small.txt"), "user.x", b"one")
}

fn write(c: &Collected, style: Style) -> Vec<u8> {
    let options =
        WriteOptions { style, id: CheckpointId::from_bytes([9; 16]), threads: 1, strict: true };
    write_checkpoint(VecSink::new(), c, &options, &mut |_| {}).unwrap().0.into_inner()
}

/// A source tree, its checkpoint (4 KiB frames: files span frames) and a restored copy.
struct Setup {
    _dir: tempfile::TempDir,
    src: PathBuf,
    out: PathBuf,
    bytes: Vec<u8>,
    xattrs: bool,
    sparse: bool,
}

fn setup_with(style: Style, frame_size: u64, edit: impl FnOnce(&mut Collected)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let xattrs = make_tree(&src);
    let mut c = collect(&[src.join("tree")], &CollectOptions::new(frame_size)).unwrap();
    let sparse =
        c.manifest.entries.iter().any(|e| e.path == b"tree/sparse.img" && e.extents.is_some());
    edit(&mut c);
    let bytes = write(&c, style);
    let out = dir.path().join("out");
    let restore = RestoreOptions { same_owner: false, ..RestoreOptions::default() };
    restore_checkpoint(SliceSource::new(&bytes), &out, &restore, &|_, _| {}).unwrap();
    Setup { _dir: dir, src, out, bytes, xattrs, sparse }
}

fn setup() -> Setup {
    setup_with(Style::Lz4, 4096, |_| {})
}

impl Setup {
    fn path(&self, rel: &str) -> PathBuf {
        self.out.join(rel)
    }

    fn diff_with(&self, options: DiffOptions) -> Vec<Difference> {
        diff(SliceSource::new(&self.bytes), &self.out, &options).unwrap()
    }

    /// The differences as (path, what).
    fn found(&self) -> Vec<(String, What)> {
        self.diff_with(DiffOptions::default())
            .into_iter()
            .map(|d| (String::from_utf8(d.path).unwrap(), d.what))
            .collect()
    }
}

fn mtime_of(path: &Path) -> Timespec {
    let st = rustix::fs::statat(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec.try_into().unwrap() }
}

fn set_mtime(path: &Path, t: Timespec) {
    let times = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        last_modification: t,
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Runs `change` on `path` and puts its modification time back (and its parent's).
fn keeping_mtime(path: &Path, change: impl FnOnce()) {
    let (t, parent) = (mtime_of(path), mtime_of(path.parent().unwrap()));
    change();
    set_mtime(path, t);
    set_mtime(path.parent().unwrap(), parent);
}

fn one(path: &str, what: What) -> Vec<(String, What)> {
    vec![(path.to_owned(), what)]
}

#[test]
fn an_identical_tree_has_no_differences() {
    for (style, frame_size) in [(Style::Lz4, 4096), (Style::Raw, 4096), (Style::Lz4, 1 << 20)] {
        let s = setup_with(style, frame_size, |_| {});
        assert_eq!(s.found(), [], "{style:?}, {frame_size}");
        // The source tree itself (directory times aside) is what was checkpointed, too.
        let against_source = diff(SliceSource::new(&s.bytes), &s.src, &DiffOptions::default());
        assert_eq!(against_source.unwrap(), []);
    }
}

#[test]
fn files_in_the_directory_but_not_in_the_checkpoint_are_not_reported() {
    let s = setup();
    fs::write(s.path("tree/extra.txt"), b"new").unwrap();
    fs::create_dir(s.path("tree/sub/more")).unwrap();
    assert_eq!(s.found(), []);
}

#[test]
fn same_size_content_change_is_contents() {
    let s = setup();
    let p = s.path("tree/small.txt");
    keeping_mtime(&p, || fs::write(&p, b"hello WORLD").unwrap());
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].path.as_slice(), &d[0].what), (&b"tree/small.txt"[..], &What::Contents));
    assert!(d[0].detail.contains("byte 6"), "{}", d[0].detail);
}

#[test]
fn appended_file_is_size_only() {
    let s = setup();
    let p = s.path("tree/small.txt");
    keeping_mtime(&p, || {
        let mut bytes = fs::read(&p).unwrap();
        bytes.push(b'!');
        fs::write(&p, bytes).unwrap();
    });
    assert_eq!(s.found(), one("tree/small.txt", What::Size));
}

#[test]
fn chmod_is_mode() {
    let s = setup();
    fs::set_permissions(s.path("tree/multi.bin"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(s.path("tree/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(s.path("tree/pipe"), fs::Permissions::from_mode(0o600)).unwrap();
    let found = s.found();
    assert_eq!(
        found,
        [
            ("tree/multi.bin".to_owned(), What::Mode),
            ("tree/pipe".to_owned(), What::Mode),
            ("tree/sub".to_owned(), What::Mode),
        ]
    );
}

#[test]
fn touch_is_mtime_but_not_for_directories() {
    let s = setup();
    let t = Timespec { tv_sec: 1_000_000_000, tv_nsec: 0 };
    set_mtime(&s.path("tree/big.bin"), t);
    set_mtime(&s.path("tree/link"), t);
    set_mtime(&s.path("tree/pipe"), t);
    // tar does not compare directories' times: neither does diff.
    set_mtime(&s.path("tree/sub"), t);
    // A nanosecond is a difference.
    let p = s.path("tree/small.txt");
    let mut now = mtime_of(&p);
    now.tv_nsec = (now.tv_nsec + 1) % 1_000_000_000;
    set_mtime(&p, now);
    let expected: Vec<(String, What)> =
        ["tree/big.bin", "tree/link", "tree/pipe", "tree/small.txt"]
            .iter()
            .map(|p| ((*p).to_owned(), What::Mtime))
            .collect();
    assert_eq!(s.found(), expected);
}

#[test]
fn removed_file_is_missing() {
    let s = setup();
    fs::remove_file(s.path("tree/big.bin")).unwrap();
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].path.as_slice(), &d[0].what), (&b"tree/big.bin"[..], &What::Missing));
    assert!(d[0].detail.contains("No such file"), "{}", d[0].detail);
}

#[test]
fn removed_directory_makes_everything_under_it_missing() {
    let s = setup();
    fs::remove_dir_all(s.path("tree/sub")).unwrap();
    assert_eq!(
        s.found(),
        [("tree/sub".to_owned(), What::Missing), ("tree/sub/nested.txt".to_owned(), What::Missing)]
    );
}

#[test]
fn file_replaced_by_a_directory_is_kind_only() {
    let s = setup();
    let p = s.path("tree/multi.bin");
    fs::remove_file(&p).unwrap();
    fs::create_dir(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].path.as_slice(), &d[0].what), (&b"tree/multi.bin"[..], &What::Kind));
    assert_eq!(d[0].detail, "checkpoint file, directory holds a dir");
}

#[test]
fn a_symlink_where_a_directory_was_is_not_followed() {
    let s = setup();
    fs::rename(s.path("tree/sub"), s.path("tree/sub_real")).unwrap();
    symlink("sub_real", s.path("tree/sub")).unwrap();
    let d = s.diff_with(DiffOptions::default());
    let found: Vec<(&[u8], &What)> = d.iter().map(|d| (d.path.as_slice(), &d.what)).collect();
    assert_eq!(
        found,
        [(&b"tree/sub"[..], &What::Kind), (&b"tree/sub/nested.txt"[..], &What::Missing)]
    );
    assert!(d[1].detail.contains("tree/sub is a symlink"), "{}", d[1].detail);
}

#[test]
fn retargeted_symlink_is_symlink_target() {
    let s = setup();
    let p = s.path("tree/link");
    keeping_mtime(&p, || {
        fs::remove_file(&p).unwrap();
        symlink("big.bin", &p).unwrap();
    });
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].path.as_slice(), &d[0].what), (&b"tree/link"[..], &What::SymlinkTarget));
    assert_eq!(d[0].detail, "checkpoint -> small.txt, directory -> big.bin");
}

#[test]
fn a_copy_replacing_a_hard_link_is_link_target() {
    let s = setup();
    let bytes_are_linked = {
        let c = collect(&[s.src.join("tree")], &CollectOptions::new(4096)).unwrap();
        c.manifest.entries.iter().any(|e| e.kind == Kind::HardLink && e.path == b"tree/hard_b")
    };
    assert!(bytes_are_linked);
    let (a, b) = (s.path("tree/hard_a"), s.path("tree/hard_b"));
    keeping_mtime(&b, || {
        let copy = s.path("tree/copy.tmp");
        fs::copy(&a, &copy).unwrap();
        fs::rename(&copy, &b).unwrap();
    });
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].path.as_slice(), &d[0].what), (&b"tree/hard_b"[..], &What::LinkTarget));
    assert_eq!(d[0].detail, "not linked to tree/hard_a");
    // The link's target gone: the link is reported, and the target missing.
    fs::remove_file(&a).unwrap();
    assert_eq!(
        s.found(),
        [("tree/hard_a".to_owned(), What::Missing), ("tree/hard_b".to_owned(), What::LinkTarget)]
    );
}

#[test]
fn changed_xattr_is_xattrs() {
    let s = setup();
    if !s.xattrs {
        unavailable("changed_xattr_is_xattrs", "this file system does not hold user.* attributes");
        return;
    }
    let p = s.path("tree/small.txt");
    assert!(set_xattr(&p, "user.x", b"two"));
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].path.as_slice(), &d[0].what), (&b"tree/small.txt"[..], &What::Xattrs));
    assert_eq!(d[0].detail, "user.x differs");
    assert!(set_xattr(&s.path("tree/sub"), "user.y", b"new"));
    rustix::fs::lremovexattr(&p, "user.x").unwrap();
    let d = s.diff_with(DiffOptions::default());
    let details: Vec<(&[u8], &str)> =
        d.iter().map(|d| (d.path.as_slice(), d.detail.as_str())).collect();
    assert_eq!(
        details,
        [
            (&b"tree/small.txt"[..], "user.x only in the checkpoint"),
            (&b"tree/sub"[..], "user.y only in the directory"),
        ]
    );
    assert_eq!(s.diff_with(DiffOptions { xattrs: false, ..DiffOptions::default() }), []);
}

#[test]
fn a_byte_written_in_a_hole_is_contents() {
    let s = setup();
    if !s.sparse {
        unavailable(
            "a_byte_written_in_a_hole_is_contents",
            "this file system does not report holes",
        );
        return;
    }
    let p = s.path("tree/sparse.img");
    keeping_mtime(&p, || {
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[1], 300_000).unwrap();
    });
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].path.as_slice(), &d[0].what), (&b"tree/sparse.img"[..], &What::Contents));
    assert!(d[0].detail.contains("byte 300000 (a hole"), "{}", d[0].detail);
    // Past the last extent too.
    let s = setup();
    let p = s.path("tree/sparse.img");
    keeping_mtime(&p, || {
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[1], (1 << 20) - 1).unwrap();
    });
    assert_eq!(s.found(), one("tree/sparse.img", What::Contents));
}

#[test]
fn changes_across_frames_are_found_in_the_right_file() {
    let s = setup();
    // multi.bin spans three 4 KiB frames, shared with its neighbours in the manifest.
    for (rel, at) in [("tree/multi.bin", 8191u64), ("tree/big.bin", 19_999)] {
        let p = s.path(rel);
        keeping_mtime(&p, || {
            let f = fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
            let mut b = [0u8; 1];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, at).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, &[b[0] ^ 0x40], at).unwrap();
        });
    }
    let d = s.diff_with(DiffOptions::default());
    let found: Vec<(&[u8], &What, &str)> =
        d.iter().map(|d| (d.path.as_slice(), &d.what, d.detail.as_str())).collect();
    assert_eq!(
        found,
        [
            (&b"tree/big.bin"[..], &What::Contents, "first difference at byte 19999"),
            (&b"tree/multi.bin"[..], &What::Contents, "first difference at byte 8191"),
        ]
    );
}

#[test]
fn owners_are_compared_unless_asked_not_to() {
    // The checkpoint claims an owner the restore (without --same-owner) does not give.
    let s = setup_with(Style::Lz4, 4096, |c| {
        let e = c.manifest.entries.iter_mut().find(|e| e.path == b"tree/small.txt").unwrap();
        e.owner = Some(Owner { uid: 12_345, gid: 54_321 });
    });
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].path.as_slice(), &d[0].what), (&b"tree/small.txt"[..], &What::Owner));
    assert!(d[0].detail.starts_with("checkpoint 12345:54321, directory "), "{}", d[0].detail);
    assert_eq!(s.diff_with(DiffOptions { owners: false, ..DiffOptions::default() }), []);
}

#[test]
fn a_damaged_data_frame_is_an_error_not_a_difference() {
    let s = setup_with(Style::Raw, 4096, |_| {});
    let needle = noise(20_000, 2);
    let needle = &needle[5000..5064];
    let at = s.bytes.windows(needle.len()).position(|w| w == needle).expect("raw data");
    let mut bad = s.bytes.clone();
    bad[at + 10] ^= 1;
    let err = diff(SliceSource::new(&bad), &s.out, &DiffOptions::default()).unwrap_err();
    assert!(matches!(err, TreeError::Format(_)), "{err}");
    // Even for a file that is not compared (missing from the directory).
    fs::remove_file(s.path("tree/big.bin")).unwrap();
    let err = diff(SliceSource::new(&bad), &s.out, &DiffOptions::default()).unwrap_err();
    assert!(matches!(err, TreeError::Format(_)), "{err}");
    // A truncated checkpoint, too.
    let cut = &s.bytes[..s.bytes.len() - 7];
    assert!(diff(SliceSource::new(cut), &s.out, &DiffOptions::default()).is_err());
}

#[test]
fn a_missing_directory_to_compare_is_an_error() {
    let s = setup();
    let err =
        diff(SliceSource::new(&s.bytes), &s.path("nowhere"), &DiffOptions::default()).unwrap_err();
    assert!(matches!(err, TreeError::Io { .. }), "{err}");
}

#[test]
fn differences_display_like_tar() {
    let s = setup();
    fs::set_permissions(s.path("tree/small.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    let d = s.diff_with(DiffOptions::default());
    assert_eq!(d[0].to_string(), "tree/small.txt: Mode differs (checkpoint 0644, directory 0600)");
}

/// A test whose environment is missing: a failure under `CI=true` (CI runs on ext4, which
/// has both), otherwise a `SKIP` line written straight to stderr so a passing run shows it.
fn unavailable(test: &str, reason: &str) {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{test}: {reason} (CI=true)");
    let _ = std::io::Write::write_all(
        &mut std::io::stderr().lock(),
        format!("SKIP {test}: {reason}\n").as_bytes(),
    );
}
