//! Incremental checkpoints through the library: chains of real files on disk, restored
//! and compared with the trees they were written from, and every way a chain can be wrong.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::many_single_char_names)]

use ckpt_frame_core::{CheckpointId, Style, VecSink};
use ckpt_tree::blocks::check_table;
use ckpt_tree::chain::{Chain, ChainProblem, parent_name};
use ckpt_tree::{
    CollectOptions, RestoreOptions, TreeError, WriteOptions, collect, read_parent, restore_chain,
    restore_checkpoint, write_checkpoint, write_from_chain, write_incremental,
};
use std::path::{Path, PathBuf};

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

fn options(style: Style, id: u8) -> WriteOptions {
    WriteOptions { style, id: CheckpointId::from_bytes([id; 16]), threads: 2, strict: false }
}

/// Writes a checkpoint of `src` at `out`, on `parent` if given; returns its length.
fn write(src: &Path, out: &Path, parent: Option<&Path>, style: Style, id: u8) -> (u64, u64) {
    let c = collect(&[src.to_owned()], &CollectOptions::new(1 << 20)).unwrap();
    let (sink, summary) = match parent {
        None => write_checkpoint(VecSink::new(), &c, &options(style, id), &mut |_| {}).unwrap(),
        Some(p) => {
            let source =
                ckpt_io_backends::open_input(p, ckpt_io_backends::IoMode::Buffered).unwrap();
            let parent = read_parent(source, parent_name(out, p)).unwrap();
            write_incremental(VecSink::new(), &c, &options(style, id), &parent, &mut |_| {})
                .unwrap()
        }
    };
    std::fs::write(out, sink.into_inner()).unwrap();
    (summary.stored_bytes, summary.inherited_bytes)
}

/// Every file under `a` equals the one under `b` (bytes and set of names).
fn same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p.clone());
                }
                out.push(p.strip_prefix(root).unwrap().to_owned());
            }
        }
        out.sort();
        out
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb);
    for p in la {
        let (x, y) = (a.join(&p), b.join(&p));
        if x.is_file() {
            assert!(std::fs::read(&x).unwrap() == std::fs::read(&y).unwrap(), "{}", p.display());
        }
    }
}

struct Scene {
    _dir: tempfile::TempDir,
    root: PathBuf,
    src: PathBuf,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let src = root.join("state");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("big.bin"), noise(3 << 20, 1)).unwrap();
    std::fs::write(src.join("sub/small"), b"hello").unwrap();
    std::fs::write(src.join("sub/gone"), noise(10_000, 2)).unwrap();
    let sparse = std::fs::File::create(src.join("sparse.img")).unwrap();
    sparse.set_len(8 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &noise(100_000, 3), 1 << 20).unwrap();
    Scene { _dir: dir, root, src }
}

/// Overwrites `count` scattered 4 KiB pieces (not block-aligned) of `path`.
fn scatter(path: &Path, count: u64, seed: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    for i in 0..count {
        let at = (i * 7919 * 4096 + seed * 1000 + 123) % (len - 4096);
        f.write_all_at(&noise(4096, seed * 100 + i), at).unwrap();
    }
}

#[test]
fn a_chain_restores_the_newest_tree_and_stores_only_what_changed() {
    for style in [Style::Raw, Style::Lz4] {
        let s = scene();
        let (a, b, c) = (s.root.join("a.ckpt"), s.root.join("b.ckpt"), s.root.join("c.ckpt"));
        let (full, _) = write(&s.src, &a, None, style, 1);
        scatter(&s.src.join("big.bin"), 8, 1);
        std::fs::write(s.src.join("sub/new"), noise(50_000, 4)).unwrap();
        std::fs::remove_file(s.src.join("sub/gone")).unwrap();
        let (inc, inherited) = write(&s.src, &b, Some(&a), style, 2);
        assert!(inc < full / 10, "{style:?}: incremental {inc} of full {full}");
        assert!(inherited > 3 << 20, "{inherited}");
        let copy_b = s.root.join("copy_b");
        copy_tree(&s.src, &copy_b);
        // Grow one file, shrink another, touch the sparse one.
        let mut big = std::fs::read(s.src.join("big.bin")).unwrap();
        big.extend_from_slice(&noise(10_001, 5));
        std::fs::write(s.src.join("big.bin"), &big).unwrap();
        std::fs::write(s.src.join("sub/new"), noise(20_000, 4)).unwrap();
        scatter(&s.src.join("sparse.img"), 2, 9);
        write(&s.src, &c, Some(&b), style, 3);

        let chain = Chain::open(&c).unwrap();
        assert_eq!(chain.links.len(), 3);
        let out = s.root.join("out_c");
        let summary =
            restore_chain(&chain, &out, &RestoreOptions::default(), 2, &|_, _| {}).unwrap();
        assert!(summary.files >= 4);
        same_tree(&s.src, &out.join("state"));
        // The middle link restores its own state.
        let out_b = s.root.join("out_b");
        restore_chain(&Chain::open(&b).unwrap(), &out_b, &RestoreOptions::default(), 1, &|_, _| {})
            .unwrap();
        same_tree(&copy_b, &out_b.join("state"));
        // A child of c, then fold and prune under it: c keeps its id and state digest, so
        // the child's chain stays valid through both.
        scatter(&s.src.join("big.bin"), 3, 11);
        let d = s.root.join("d.ckpt");
        write(&s.src, &d, Some(&c), style, 4);
        let expected_digest = chain.links[0].digest;
        let rewrite = |onto: Option<(usize, Vec<u8>)>| {
            let chain = Chain::open(&c).unwrap();
            let (sink, _) = write_from_chain(
                VecSink::new(),
                &chain,
                onto.as_ref().map(|(k, n): &(usize, Vec<u8>)| (*k, n.as_slice())),
                style,
                2,
                &mut |_| {},
            )
            .unwrap();
            std::fs::write(&c, sink.into_inner()).unwrap();
            Chain::open(&c).unwrap()
        };
        // Prune b: c now builds on a directly, and stores what it took from b.
        let pruned = rewrite(Some((2, b"a.ckpt".to_vec())));
        assert_eq!(pruned.links.len(), 2);
        assert_eq!(
            (pruned.links[0].id, pruned.links[0].digest),
            (chain.links[0].id, expected_digest)
        );
        std::fs::remove_file(&b).unwrap();
        let out = s.root.join("out_d_pruned");
        restore_chain(&Chain::open(&d).unwrap(), &out, &RestoreOptions::default(), 2, &|_, _| {})
            .unwrap();
        same_tree(&s.src, &out.join("state"));
        // Fold c: self-contained, restorable by itself; a can go.
        let folded = rewrite(None);
        assert_eq!(folded.links.len(), 1);
        assert_eq!(folded.links[0].digest, expected_digest);
        std::fs::remove_file(&a).unwrap();
        let out = s.root.join("out_c_folded");
        restore_chain(&folded, &out, &RestoreOptions::default(), 2, &|_, _| {}).unwrap();
        let out_d = s.root.join("out_d_folded");
        restore_chain(&Chain::open(&d).unwrap(), &out_d, &RestoreOptions::default(), 2, &|_, _| {})
            .unwrap();
        same_tree(&s.src, &out_d.join("state"));
        // A stream of an incremental checkpoint is refused: it needs its parent.
        let bytes = std::fs::read(&d).unwrap();
        let e = restore_checkpoint(
            ckpt_frame_core::SliceSource::new(&bytes),
            &s.root.join("streamed"),
            &RestoreOptions::default(),
            &|_, _| {},
        )
        .unwrap_err();
        assert!(matches!(e, TreeError::NeedsParent), "{e}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

/// Nothing at all under `dest` (restore created nothing, or only the empty directory).
fn nothing_restored(dest: &Path) {
    let n = std::fs::read_dir(dest).map_or(0, Iterator::count);
    assert_eq!(n, 0, "restore wrote into {}", dest.display());
}

#[test]
fn a_missing_replaced_or_damaged_parent_is_refused_before_anything_is_written() {
    let s = scene();
    let (a, b) = (s.root.join("a.ckpt"), s.root.join("b.ckpt"));
    write(&s.src, &a, None, Style::Raw, 1);
    scatter(&s.src.join("big.bin"), 4, 2);
    write(&s.src, &b, Some(&a), Style::Raw, 2);
    let original = std::fs::read(&a).unwrap();

    // Missing.
    std::fs::rename(&a, s.root.join("moved")).unwrap();
    let e = Chain::open(&b).unwrap_err();
    assert!(
        matches!(&e, TreeError::Chain { problem: ChainProblem::Missing { .. }, parent, .. } if parent == &a),
        "{e}"
    );
    assert!(e.to_string().contains("a.ckpt") && e.to_string().contains("missing"), "{e}");
    assert_eq!(e.exit_code(), 2);
    std::fs::rename(s.root.join("moved"), &a).unwrap();

    // Replaced: another checkpoint of the same tree (other id), then one with the same id
    // but other contents.
    let keep = s.root.join("keep");
    std::fs::rename(&a, &keep).unwrap();
    write(&s.src, &a, None, Style::Raw, 9);
    let e = Chain::open(&b).unwrap_err();
    assert!(matches!(&e, TreeError::Chain { problem: ChainProblem::Replaced { .. }, .. }), "{e}");
    std::fs::write(s.src.join("sub/small"), b"other").unwrap();
    write(&s.src, &a, None, Style::Raw, 1);
    let e = Chain::open(&b).unwrap_err();
    assert!(matches!(&e, TreeError::Chain { problem: ChainProblem::Replaced { .. }, .. }), "{e}");
    assert!(e.to_string().contains("replaced"), "{e}");
    std::fs::rename(&keep, &a).unwrap();

    // Damaged: a byte of the parent's inherited data flipped. The chain opens (index,
    // manifest and table are whole) but restore fails naming the parent, and publishes
    // nothing.
    let mut damaged = original.clone();
    damaged[200_000] ^= 0x40;
    std::fs::write(&a, &damaged).unwrap();
    let chain = Chain::open(&b).unwrap();
    let dest = s.root.join("out");
    let e = restore_chain(&chain, &dest, &RestoreOptions::default(), 2, &|_, _| {}).unwrap_err();
    assert!(matches!(&e, TreeError::Chain { problem: ChainProblem::Damaged { .. }, .. }), "{e}");
    assert!(e.to_string().contains("a.ckpt"), "{e}");
    let listed: Vec<_> = walk_files(&dest);
    assert!(listed.iter().all(|p| !p.ends_with("big.bin")), "{listed:?}");

    // Damaged in its index: refused when the chain is opened.
    let mut cut = original.clone();
    cut.truncate(original.len() - 10);
    std::fs::write(&a, &cut).unwrap();
    let e = Chain::open(&b).unwrap_err();
    assert!(matches!(&e, TreeError::Chain { problem: ChainProblem::Damaged { .. }, .. }), "{e}");
    nothing_restored(&s.root.join("never"));
}

fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn kinds_that_change_and_holes_that_fill_with_zeros_restore_and_fold() {
    let s = scene();
    let (a, b) = (s.root.join("a.ckpt"), s.root.join("b.ckpt"));
    std::fs::write(s.src.join("becomes_link"), noise(9000, 7)).unwrap();
    std::fs::write(s.src.join("becomes_dir"), noise(9000, 8)).unwrap();
    write(&s.src, &a, None, Style::Lz4, 1);
    // A file replaced by a symlink and by a directory; the sparse file's holes around its
    // data written densely with zeros (same bytes, so same block hashes).
    std::fs::remove_file(s.src.join("becomes_link")).unwrap();
    std::os::unix::fs::symlink("big.bin", s.src.join("becomes_link")).unwrap();
    std::fs::remove_file(s.src.join("becomes_dir")).unwrap();
    std::fs::create_dir(s.src.join("becomes_dir")).unwrap();
    std::fs::write(s.src.join("becomes_dir/inner"), b"x").unwrap();
    let dense = std::fs::read(s.src.join("sparse.img")).unwrap();
    std::fs::remove_file(s.src.join("sparse.img")).unwrap();
    std::fs::write(s.src.join("sparse.img"), &dense).unwrap();
    write(&s.src, &b, Some(&a), Style::Lz4, 2);
    let chain = Chain::open(&b).unwrap();
    let out = s.root.join("out");
    restore_chain(&chain, &out, &RestoreOptions::default(), 2, &|_, _| {}).unwrap();
    same_tree(&s.src, &out.join("state"));
    let (sink, _) =
        write_from_chain(VecSink::new(), &chain, None, Style::Raw, 2, &mut |_| {}).unwrap();
    let folded = s.root.join("folded.ckpt");
    std::fs::write(&folded, sink.into_inner()).unwrap();
    let out = s.root.join("out_folded");
    restore_chain(&Chain::open(&folded).unwrap(), &out, &RestoreOptions::default(), 2, &|_, _| {})
        .unwrap();
    same_tree(&s.src, &out.join("state"));
}

/// Rewrites the checkpoint at `path` with the same id, manifest and block table (so the
/// same state digest) but one data byte changed: every chunk check of the result passes.
fn forge_data(path: &Path, at_in_frame_1: usize) {
    use ckpt_frame_core::{Reader, SliceSource, Writer};
    let bytes = std::fs::read(path).unwrap();
    let mut r = Reader::open(SliceSource::new(&bytes)).unwrap();
    let id = r.id().unwrap();
    let count = r.frame_count().unwrap();
    let mut frames: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..count {
        let mut f = r.open_frame(i).unwrap();
        let mut buffers = Vec::new();
        while let Some(b) = f.read_to_vec().unwrap() {
            buffers.push(b);
        }
        f.close().unwrap();
        frames.push(buffers);
    }
    frames[1][0][at_in_frame_1] ^= 0x10;
    let mut w = Writer::new(VecSink::new(), id);
    for buffers in &frames {
        let mut f = w.open_frame(Style::Raw).unwrap();
        for b in buffers {
            f.add(b).unwrap();
        }
        f.close().unwrap();
    }
    w.finish().unwrap();
    std::fs::write(path, w.into_sink().into_inner()).unwrap();
}

#[test]
fn a_parent_whose_data_differs_from_its_recorded_hashes_is_refused_at_restore() {
    let s = scene();
    let (a, b) = (s.root.join("a.ckpt"), s.root.join("b.ckpt"));
    write(&s.src, &a, None, Style::Raw, 1);
    scatter(&s.src.join("big.bin"), 2, 3);
    write(&s.src, &b, Some(&a), Style::Raw, 2);
    // big.bin is the first file with data: frame 1's first buffer is its first MiB.
    forge_data(&a, 4096 * 100 + 7);
    let chain = Chain::open(&b).unwrap();
    let dest = s.root.join("out");
    let e = restore_chain(&chain, &dest, &RestoreOptions::default(), 2, &|_, _| {}).unwrap_err();
    assert!(
        matches!(
            &e,
            TreeError::Chain { problem: ChainProblem::BlockDiffers { block: 100, .. }, .. }
        ),
        "{e}"
    );
    assert!(walk_files(&dest).iter().all(|p| !p.ends_with("big.bin")));
    // Its own block table, checked against its data, names the block too; the child's
    // table agrees with the child's data.
    let forged = &chain.links[1];
    let e = check_table(forged.source().unwrap(), &forged.manifest, &forged.table).unwrap_err();
    assert!(matches!(&e, TreeError::TableMismatch { block: 100, .. }), "{e}");
    let child = &chain.links[0];
    check_table(child.source().unwrap(), &child.manifest, &child.table).unwrap();
}

#[test]
fn a_file_changed_after_it_was_listed_is_caught_even_when_nothing_of_it_is_stored() {
    let s = scene();
    let a = s.root.join("a.ckpt");
    write(&s.src, &a, None, Style::Raw, 1);
    let c = collect(std::slice::from_ref(&s.src), &CollectOptions::new(1 << 20)).unwrap();
    // Same bytes, new time: every block is inherited, yet the file changed under the write.
    let f = std::fs::File::options().write(true).open(s.src.join("big.bin")).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000))
        .unwrap();
    let source = ckpt_io_backends::open_input(&a, ckpt_io_backends::IoMode::Buffered).unwrap();
    let parent = read_parent(source, b"a.ckpt".to_vec()).unwrap();
    let strict = WriteOptions { strict: true, ..options(Style::Raw, 2) };
    let e = write_incremental(VecSink::new(), &c, &strict, &parent, &mut |_| {}).unwrap_err();
    assert!(matches!(&e, TreeError::Changed { path, .. } if path.ends_with("big.bin")), "{e}");
    let (_, summary) =
        write_incremental(VecSink::new(), &c, &options(Style::Raw, 2), &parent, &mut |_| {})
            .unwrap();
    assert!(
        summary.warnings.iter().any(|w| w.to_string().contains("big.bin")),
        "{:?}",
        summary.warnings
    );
}

#[test]
fn when_nearly_everything_changed_the_write_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("many");
    std::fs::create_dir(&src).unwrap();
    let fill = |seed: u64| {
        for i in 0..64 {
            std::fs::write(src.join(format!("f{i:02}")), noise(9000, seed * 100 + i)).unwrap();
        }
    };
    fill(1);
    let a = dir.path().join("a.ckpt");
    write(&src, &a, None, Style::Raw, 1);
    let incremental = |out: &str| {
        let c = collect(std::slice::from_ref(&src), &CollectOptions::new(1 << 20)).unwrap();
        let source = ckpt_io_backends::open_input(&a, ckpt_io_backends::IoMode::Buffered).unwrap();
        let parent = read_parent(source, b"a.ckpt".to_vec()).unwrap();
        let (sink, summary) =
            write_incremental(VecSink::new(), &c, &options(Style::Raw, 2), &parent, &mut |_| {})
                .unwrap();
        std::fs::write(dir.path().join(out), sink.into_inner()).unwrap();
        summary
    };
    // One file of 64 changed: incremental.
    std::fs::write(src.join("f07"), noise(9000, 77)).unwrap();
    let some = incremental("some.ckpt");
    assert!(!some.parent_dropped && some.inherited_bytes == 63 * 9000, "{some:?}");
    assert_eq!(Chain::open(&dir.path().join("some.ckpt")).unwrap().links.len(), 2);
    // All changed: self-contained, and it restores alone.
    fill(2);
    let all = incremental("all.ckpt");
    assert!(all.parent_dropped && all.inherited_bytes == 0, "{all:?}");
    let chain = Chain::open(&dir.path().join("all.ckpt")).unwrap();
    assert_eq!(chain.links.len(), 1);
    let out = dir.path().join("out");
    restore_chain(&chain, &out, &RestoreOptions::default(), 2, &|_, _| {}).unwrap();
    same_tree(&src, &out.join("many"));
}

/// Writes `bytes` as a new file at `path` whose `hole` (offset, length) is left unwritten.
fn write_with_hole(path: &Path, bytes: &[u8], hole: (usize, usize)) {
    use std::os::unix::fs::FileExt;
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).unwrap();
    f.set_len(bytes.len() as u64).unwrap();
    f.write_all_at(&bytes[..hole.0], 0).unwrap();
    let end = hole.0 + hole.1;
    f.write_all_at(&bytes[end..], end as u64).unwrap();
}

/// Three links where later ones punch holes into data an earlier one stores, shrink and
/// grow files, and change blocks an earlier link changed too: every byte of the restore is
/// the newest link's, never an older link's bytes where the newest has a hole or no file
/// end.
#[test]
fn holes_sizes_and_overlapping_changes_across_three_links_restore_exactly() {
    for style in [Style::Raw, Style::Lz4] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let src = root.join("state");
        std::fs::create_dir_all(&src).unwrap();
        let (f, g, h) = (src.join("f"), src.join("g"), src.join("h"));
        std::fs::write(&f, noise(2 << 20, 11)).unwrap();
        std::fs::write(&g, noise((1 << 20) + 1000, 12)).unwrap();
        std::fs::write(&h, noise(1 << 20, 13)).unwrap();
        let (a, b, c) = (root.join("a.ckpt"), root.join("b.ckpt"), root.join("c.ckpt"));
        write(&src, &a, None, style, 1);

        scatter(&f, 40, 1);
        let mut gb = std::fs::read(&g).unwrap();
        gb.truncate(600_000);
        std::fs::write(&g, &gb).unwrap();
        let mut hb = std::fs::read(&h).unwrap();
        hb.extend_from_slice(&noise(300_000, 14));
        std::fs::write(&h, &hb).unwrap();
        write(&src, &b, Some(&a), style, 2);

        scatter(&f, 40, 1);
        scatter(&f, 25, 3);
        let fb = std::fs::read(&f).unwrap();
        write_with_hole(&f, &fb, (512 << 10, 512 << 10));
        write_with_hole(&g, &gb, (4096, 200_000));
        scatter(&h, 10, 4);
        write(&src, &c, Some(&b), style, 3);

        let chain = Chain::open(&c).unwrap();
        assert_eq!(chain.links.len(), 3);
        let out = root.join("out");
        restore_chain(&chain, &out, &RestoreOptions::default(), 2, &|_, _| {}).unwrap();
        same_tree(&src, &out.join("state"));
        let (sink, _) =
            write_from_chain(VecSink::new(), &chain, None, Style::Raw, 3, &mut |_| {}).unwrap();
        let folded = root.join("folded.ckpt");
        std::fs::write(&folded, sink.into_inner()).unwrap();
        let out = root.join("out_folded");
        let folded = Chain::open(&folded).unwrap();
        restore_chain(&folded, &out, &RestoreOptions::default(), 2, &|_, _| {}).unwrap();
        same_tree(&src, &out.join("state"));
    }
}
