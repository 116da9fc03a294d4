//! Region-by-region scanning and corrective healing: every bit flip is located, and healing
//! from a good copy rewrites only the damaged regions and gives back the exact checkpoint.
// Offsets of these in-memory test checkpoints are far below usize::MAX.
#![allow(clippy::cast_possible_truncation)]

mod common;
use ckpt_frame_core::scan::{Depth, HealPlan, RegionKind, plan_heal, scan};
use ckpt_frame_core::{CheckpointId, Error, SliceSource, Style, VecSink, Writer};
use common::*;

fn small_plan() -> Plan {
    vec![
        (Style::Lz4, vec![content(1, 5, true), vec![], content(2, 300, false)]),
        (Style::Raw, vec![content(3, 33, false), vec![]]),
        (Style::Lz4, vec![content(4, 70_000, true), content(5, 17_000, true), content(6, 7, true)]),
    ]
}

fn apply(damaged: &mut [u8], good: &[u8], plan: &HealPlan) {
    for r in &plan.rewrite {
        let (a, b) = (r.offset as usize, r.end() as usize);
        damaged[a..b].copy_from_slice(&good[a..b]);
    }
}

#[test]
fn clean_scan_covers_every_byte_with_verified_regions() {
    for plan in [small_plan(), Plan::new(), matrix_like()] {
        let bytes = write_vec(&plan);
        for depth in [Depth::Stored, Depth::Decoded] {
            let report = scan(&mut SliceSource::new(&bytes), depth).unwrap();
            assert!(report.is_ok(), "{:?}", report.bad_regions().next());
            assert_eq!(report.id, Some(ID));
            let mut at = 0;
            for r in &report.regions {
                assert_eq!(r.offset, at, "regions must be contiguous");
                at = r.end();
            }
            assert_eq!(at, bytes.len() as u64);
        }
    }
}

fn matrix_like() -> Plan {
    vec![
        (Style::Lz4, (0..3000).map(|i| content(i, (i % 90) as usize, true)).collect()),
        (Style::Raw, vec![content(9, 200_000, false)]),
        (Style::Lz4, vec![content(10, 1 << 20, true)]),
    ]
}

#[test]
fn every_bit_flip_is_located_and_healed_exactly() {
    let plan = small_plan();
    let good = write_vec(&plan);
    let mut flips = 0;
    for byte in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[byte] ^= 1 << bit;
            let at = byte as u64;
            let what = format!("bit {bit} of byte {byte}");
            let report = scan(&mut SliceSource::new(&bad), Depth::Stored).unwrap();
            assert!(
                report.bad_regions().any(|r| r.offset <= at && at < r.end()),
                "{what}: no bad region contains the flip"
            );
            let heal = plan_heal(&mut SliceSource::new(&bad), &mut SliceSource::new(&good));
            let heal = heal.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(!heal.refuses_any() && heal.differ_but_verify.is_empty(), "{what}");
            assert_eq!(heal.rewrite.len(), 1, "{what}: only the damaged region is rewritten");
            assert!(heal.rewrite[0].offset <= at && at < heal.rewrite[0].end(), "{what}");
            apply(&mut bad, &good, &heal);
            assert!(bad == good, "{what}: healed copy differs");
            flips += 1;
        }
    }
    assert!(flips > 8000);
}

#[test]
fn scattered_damage_heals_only_damaged_chunks() {
    let plan = matrix_like();
    let good = write_vec(&plan);
    let report = scan(&mut SliceSource::new(&good), Depth::Decoded).unwrap();
    let chunks: Vec<_> = report.regions.iter().filter(|r| r.kind == RegionKind::Chunk).collect();
    assert!(chunks.len() > 20, "{} chunks", chunks.len());
    let mut bad = good.clone();
    let damaged: Vec<_> = chunks.iter().step_by(3).collect();
    for (k, r) in damaged.iter().enumerate() {
        // Damage the middle of the stored bytes, past the 32-byte header.
        let at = (r.offset + 32 + (r.len - 32) / 2) as usize;
        bad[at] ^= 1 << (k % 8);
    }
    let heal = plan_heal(&mut SliceSource::new(&bad), &mut SliceSource::new(&good)).unwrap();
    let rewritten: Vec<u64> = heal.rewrite.iter().map(|r| r.offset).collect();
    let expected: Vec<u64> = damaged.iter().map(|r| r.offset).collect();
    assert_eq!(rewritten, expected, "exactly the damaged chunks, nothing healthy");
    assert_eq!(heal.damaged.bad_regions().count(), damaged.len());
    apply(&mut bad, &good, &heal);
    assert!(bad == good);
    restore_indexed(SliceSource::new(&bad), &plan).assert_equals(&plan, "healed");
}

#[test]
fn damage_on_both_copies_is_reported_not_papered_over() {
    let plan = matrix_like();
    let clean = write_vec(&plan);
    let report = scan(&mut SliceSource::new(&clean), Depth::Stored).unwrap();
    let chunks: Vec<_> =
        report.regions.iter().filter(|r| r.kind == RegionKind::Chunk).copied().collect();
    let (both, only_damaged) = (chunks[5], chunks[9]);
    let mut good = clean.clone();
    let mut bad = clean.clone();
    good[(both.offset + 30) as usize] ^= 1;
    bad[(both.offset + 31) as usize] ^= 1;
    bad[(only_damaged.offset + 30) as usize] ^= 1;
    let heal = plan_heal(&mut SliceSource::new(&bad), &mut SliceSource::new(&good)).unwrap();
    assert_eq!(heal.rewrite.iter().map(|r| r.offset).collect::<Vec<_>>(), [only_damaged.offset]);
    assert_eq!(heal.unhealable.iter().map(|r| r.offset).collect::<Vec<_>>(), [both.offset]);
    apply(&mut bad, &good, &heal);
    let after = scan(&mut SliceSource::new(&bad), Depth::Decoded).unwrap();
    assert_eq!(after.bad_regions().map(|r| r.offset).collect::<Vec<_>>(), [both.offset]);
}

#[test]
fn healing_from_another_checkpoint_is_refused() {
    let plan = small_plan();
    let a = write_vec(&plan);
    let other = Writer::new(VecSink::new(), CheckpointId::from_bytes([0xEE; 16]));
    let b = write_plan(other, &plan).unwrap().into_inner();
    assert_eq!(a.len(), b.len(), "same plan, same size: only the identity differs");
    let e = plan_heal(&mut SliceSource::new(&a), &mut SliceSource::new(&b)).unwrap_err();
    assert!(matches!(e, Error::NotACopy { .. }), "{e:?}");
    assert!(e.to_string().contains("different checkpoints"), "{e}");
    let e = plan_heal(&mut SliceSource::new(&a[..a.len() - 1]), &mut SliceSource::new(&a));
    assert!(matches!(e, Err(Error::NotACopy { .. })), "{e:?}");
}

#[test]
fn without_an_index_regions_still_partition_the_checkpoint() {
    let plan = matrix_like();
    let good = write_vec(&plan);
    let clean = scan(&mut SliceSource::new(&good), Depth::Stored).unwrap();
    let chunk =
        clean.regions.iter().find(|r| r.kind == RegionKind::Chunk && r.frame == Some(0)).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 10] ^= 1; // the tail: the index cannot be trusted
    bad[(chunk.offset + 4) as usize] ^= 0x80; // frame 0's first chunk header: stored_len
    let report = scan(&mut SliceSource::new(&bad), Depth::Stored).unwrap();
    let mut at = 0;
    for r in &report.regions {
        assert_eq!(r.offset, at, "regions overlap or leave gaps: {r:?}");
        at = r.end();
    }
    assert_eq!(at, n as u64);
    assert!(
        report
            .regions
            .iter()
            .any(|r| r.frame == Some(2) && r.kind == RegionKind::FrameFooter && r.is_ok()),
        "later frames are found again"
    );
    let heal = plan_heal(&mut SliceSource::new(&bad), &mut SliceSource::new(&good)).unwrap();
    apply(&mut bad, &good, &heal);
    assert!(bad == good);
}
