//! Test 4: mmap output needs a size bound; exceeding the bound is a clear error (never a
//! panic or a SIGBUS) that leaves nothing published; the bound is truncated away at commit;
//! mapped input lends bytes without copying.

mod common;

use ckpt_frame_core::{CheckpointId, Source, Style, Writer};
use ckpt_io_backends::{BackendError, IoMode, OutputOptions, PublishSink};
use common::{assert_same, names_in, reference_bytes, size_bound, standard_plan, write_plan};

#[test]
fn mmap_without_size_bound_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c");
    let err = PublishSink::create(&path, &OutputOptions::new(IoMode::Mmap)).expect_err("no bound");
    assert!(matches!(&err, BackendError::MissingSizeBound { path: p } if *p == path), "{err:?}");
    let msg = err.to_string();
    println!("{msg}");
    assert!(msg.contains(&path.display().to_string()) && msg.contains("size bound"));
    assert!(names_in(dir.path()).is_empty(), "nothing created");
}

#[test]
fn exceeding_the_bound_is_an_error_and_publishes_nothing() {
    let plan = standard_plan();
    let reference = reference_bytes(&plan);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c");
    std::fs::write(&path, b"OLD").expect("old");
    for bound in [0, 100, reference.len() as u64 - 1] {
        let opts = OutputOptions::new(IoMode::Mmap).with_size_bound(bound);
        let sink = PublishSink::create(&path, &opts).expect("create");
        let mut w = Writer::new(sink, CheckpointId::from_bytes([1; 16]));
        let mut failure = None;
        'plan: for (style, bufs) in &plan {
            let mut f = match w.open_frame(*style) {
                Ok(f) => f,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            for b in bufs {
                if let Err(e) = f.add(b) {
                    failure = Some(e);
                    break 'plan;
                }
            }
            if let Err(e) = f.close() {
                failure = Some(e);
                break;
            }
        }
        let err = match failure {
            Some(e) => e,
            None => w.finish().expect_err("the index does not fit either"),
        };
        let inner = BackendError::in_format_error(&err).expect("a backend error inside");
        match inner {
            BackendError::SizeBoundExceeded { bound: b, needed, .. } => {
                assert_eq!(*b, bound);
                assert!(*needed > bound);
            }
            other => panic!("expected SizeBoundExceeded, got {other:?}"),
        }
        println!("bound {bound}: {err}");
        assert!(err.to_string().contains("mmap size bound"), "{err}");
        let sink = w.into_sink();
        let err = sink.commit().expect_err("an incomplete checkpoint is not published");
        assert!(matches!(err, BackendError::Aborted { .. }), "{err:?}");
        println!("commit: {err}");
        assert_eq!(std::fs::read(&path).expect("read"), b"OLD", "the previous file is untouched");
        assert_eq!(names_in(dir.path()), ["c"], "the temporary file is gone");
    }
}

#[test]
fn exact_and_generous_bounds_give_the_exact_file() {
    let plan = standard_plan();
    let reference = reference_bytes(&plan);
    let dir = tempfile::tempdir().expect("tempdir");
    let worst = size_bound(&plan);
    assert!(worst > reference.len() as u64);
    for bound in [reference.len() as u64, worst, worst * 3] {
        let path = dir.path().join(format!("c-{bound}"));
        let opts = OutputOptions::new(IoMode::Mmap).with_size_bound(bound);
        let sink = PublishSink::create(&path, &opts).expect("create");
        assert_eq!(sink.mode(), IoMode::Mmap);
        let (sink, summary) = write_plan(sink, &plan);
        assert_eq!(sink.commit().expect("commit"), summary.len);
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!(meta.len(), reference.len() as u64, "truncated to the real size");
        assert_same(&std::fs::read(&path).expect("read"), &reference, "mmap output");
    }
    // A RAW-only checkpoint's bound is exact.
    let raw: common::Plan = vec![(Style::Raw, vec![vec![5u8; 70_000], vec![]])];
    let path = dir.path().join("raw");
    let opts = OutputOptions::new(IoMode::Mmap).with_size_bound(size_bound(&raw));
    let (sink, _) = write_plan(PublishSink::create(&path, &opts).expect("create"), &raw);
    assert_eq!(sink.commit().expect("commit"), size_bound(&raw));
}

#[test]
fn mapped_input_lends_bytes_without_copying() {
    let plan = standard_plan();
    let reference = reference_bytes(&plan);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c");
    std::fs::write(&path, &reference).expect("write");
    let mut src = mapped(&path);
    let a = src.read_borrowed(100).expect("mapped sources lend").expect("read").as_ptr();
    let b = src.read_borrowed(100).expect("lend").expect("read").as_ptr();
    assert_eq!(b as usize - a as usize, 100, "both slices point into the same map");
    src.seek(reference.len() as u64 - 10).expect("seek");
    assert!(src.read_borrowed(11).expect("lend").is_err(), "past the end is an error");
    assert_same(
        src.read_borrowed(10).expect("lend").expect("tail"),
        &reference[reference.len() - 10..],
        "tail",
    );
    common::restore_indexed(mapped(&path), &plan, "mmap");
    // An empty file maps to an empty source.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").expect("write");
    let mut src = mapped(&empty);
    assert_eq!(src.total_len().expect("len"), Some(0));
}

/// A mapped source over the test's own file.
fn mapped(path: &std::path::Path) -> ckpt_io_backends::InputSource {
    // SAFETY: the test's own temporary file, which nothing changes while it is mapped.
    unsafe { ckpt_io_backends::open_input_mapped(path) }.expect("map")
}
