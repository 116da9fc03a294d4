//! Test 6: `rewrite_ranges` rewrites exactly the given ranges, leaves every other byte,
//! refuses ranges beyond the end without writing anything, and heals a damaged checkpoint
//! from a good copy.

mod common;

use ckpt_frame_core::{Error, Reader};
use ckpt_io_backends::{BackendError, IoMode, open_input, rewrite_ranges};
use common::{Rng, assert_same, reference_bytes, restore_indexed};

#[test]
fn rewrites_exactly_the_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    let original = Rng::new(4).bytes(100_000);
    std::fs::write(&path, &original).expect("write");
    let a = vec![0xAA; 1];
    let b = vec![0xBB; 4097];
    let c = vec![0xCC; 3];
    let ranges: [(u64, &[u8]); 4] = [(0, &a), (50_000, &b), (99_997, &c), (100_000, &[])];
    rewrite_ranges(&path, &ranges).expect("rewrite");
    let mut want = original.clone();
    want[0] = 0xAA;
    want[50_000..54_097].fill(0xBB);
    want[99_997..].fill(0xCC);
    let now = std::fs::read(&path).expect("read");
    assert_eq!(now.len(), original.len(), "the file does not grow or shrink");
    assert_same(&now, &want, "rewritten file");
}

#[test]
fn a_range_beyond_the_end_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    let original = Rng::new(5).bytes(10_000);
    std::fs::write(&path, &original).expect("write");
    let good = vec![1u8; 100];
    for (offset, len) in [(9_999u64, 2usize), (10_000, 1), (u64::MAX, 1), (20_000, 0)] {
        let bad = vec![2u8; len];
        let ranges: [(u64, &[u8]); 2] = [(0, &good), (offset, &bad)];
        let err = rewrite_ranges(&path, &ranges).expect_err("out of range");
        match &err {
            BackendError::OutOfRange { path: p, offset: o, len: l, file_len } => {
                assert_eq!((p, *o, *l, *file_len), (&path, offset, len as u64, 10_000));
            }
            other => panic!("expected OutOfRange, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("nothing was written"),
            "{msg}"
        );
        assert_same(&std::fs::read(&path).expect("read"), &original, "untouched");
    }
    println!("{}", rewrite_ranges(&path, &[(10_000, b"x")]).expect_err("past end"));
    let missing = dir.path().join("missing");
    let err = rewrite_ranges(&missing, &[]).expect_err("missing");
    assert!(matches!(err, BackendError::Open { .. }) && !missing.exists(), "never creates: {err}");
}

#[test]
fn heals_a_damaged_checkpoint_from_a_good_copy() {
    let plan = common::standard_plan();
    let good = reference_bytes(&plan);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c");
    let mut bad = good.clone();
    let at = good.len() / 3;
    bad[at..at + 5].iter_mut().for_each(|b| *b ^= 0x5A);
    std::fs::write(&path, &bad).expect("write");
    let mut r = Reader::open(open_input(&path, IoMode::Buffered).expect("open")).expect("index ok");
    let mut damaged = None;
    for i in 0..plan.len() as u64 {
        let mut f = r.open_frame(i).expect("frame");
        let res = (|| {
            while f.read_to_vec()?.is_some() {}
            f.close()
        })();
        if let Err(e) = res {
            damaged = Some(e);
            break;
        }
    }
    let e = damaged.expect("the damage is found");
    assert!(matches!(e, Error::ChecksumMismatch { .. } | Error::Corrupt { .. }), "{e}");
    let off = usize::try_from(e.offset().expect("offset")).expect("usize");
    println!("damage found: {e}");
    // Heal the whole damaged region from the good copy (a real heal rewrites the chunk).
    let lo = off.min(at);
    let hi = (at + 5).max(off + 1);
    rewrite_ranges(&path, &[(lo as u64, &good[lo..hi])]).expect("heal");
    restore_indexed(open_input(&path, IoMode::Direct).expect("open"), &plan, "healed");
    assert_same(&std::fs::read(&path).expect("read"), &good, "healed bytes");
}
