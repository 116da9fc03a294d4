//! Healing from an impostor: a donor with the checkpoint's identity and length whose bytes
//! differ (one byte of one file), so that its own check values hold for its own bytes. The
//! heal plan must rewrite only what the damaged copy's own surviving check values record, so
//! an impostor's chunk is refused (and says why), and a later heal from the true copy still
//! gives back the checkpoint bit for bit.
// Offsets of these in-memory test checkpoints are far below usize::MAX.
#![allow(clippy::cast_possible_truncation)]

mod common;
use ckpt_frame_core::scan::{Depth, HealPlan, Region, RegionKind, plan_heal, scan};
use ckpt_frame_core::{SliceSource, Style};
use common::*;

/// Two frames, RAW and LZ4, each with several chunks; the LZ4 data is noise, so that one
/// changed byte changes one literal and the impostor keeps the true copy's layout.
fn plan(changed: Option<(usize, usize)>) -> Plan {
    let mut plan: Plan = vec![
        (Style::Raw, vec![content(1, 100_000, false), vec![], content(2, 50_000, false)]),
        (Style::Lz4, vec![content(3, 150_000, false), content(4, 300, false)]),
    ];
    if let Some((frame, at)) = changed {
        plan[frame].1[0][at] ^= 0x5A;
    }
    plan
}

/// The true checkpoint, and an impostor written by the same writer with the same identity
/// whose `frame`'s first buffer differs in byte `at`.
fn genuine_and_impostor(frame: usize, at: usize) -> (Vec<u8>, Vec<u8>) {
    let genuine = write_vec(&plan(None));
    let impostor = write_vec(&plan(Some((frame, at))));
    assert_eq!(genuine.len(), impostor.len(), "same layout");
    (genuine, impostor)
}

fn chunks(bytes: &[u8]) -> Vec<Region> {
    let report = scan(&mut SliceSource::new(bytes), Depth::Decoded).unwrap();
    assert!(report.is_ok());
    report.regions.iter().filter(|r| r.kind == RegionKind::Chunk).copied().collect()
}

/// The one chunk and the one frame footer whose bytes differ between the true copy and the
/// impostor.
fn impostor_regions(genuine: &[u8], impostor: &[u8]) -> (Region, Region) {
    let report = scan(&mut SliceSource::new(genuine), Depth::Stored).unwrap();
    let differs = |r: &&Region| {
        let range = r.offset as usize..r.end() as usize;
        genuine[range.clone()] != impostor[range]
    };
    let found: Vec<Region> = report.regions.iter().filter(differs).copied().collect();
    match found.as_slice() {
        [chunk, footer]
            if chunk.kind == RegionKind::Chunk
                && footer.kind == RegionKind::FrameFooter
                && chunk.frame == footer.frame =>
        {
            (*chunk, *footer)
        }
        other => panic!("the impostor should differ in one chunk and its footer: {other:?}"),
    }
}

fn plan_from(damaged: &[u8], donor: &[u8]) -> HealPlan {
    plan_heal(&mut SliceSource::new(damaged), &mut SliceSource::new(donor)).unwrap()
}

fn apply(damaged: &mut [u8], donor: &[u8], plan: &HealPlan) {
    for r in &plan.rewrite {
        let (a, b) = (r.offset as usize, r.end() as usize);
        damaged[a..b].copy_from_slice(&donor[a..b]);
    }
}

fn offsets(regions: &[Region]) -> Vec<u64> {
    regions.iter().map(|r| r.offset).collect()
}

/// Heals `damaged` (a damaged true copy whose `chunk` fails its checks) from `impostor`,
/// which must be refused with `reason`, then from `genuine`, which must restore it exactly.
fn refuse_then_heal(genuine: &[u8], impostor: &[u8], mut damaged: Vec<u8>, chunk: Region) {
    let before = damaged.clone();
    let from_impostor = plan_from(&damaged, impostor);
    assert!(from_impostor.rewrite.is_empty(), "rewrote {:?}", from_impostor.rewrite);
    assert!(from_impostor.unhealable.is_empty(), "not damaged in both copies");
    assert!(from_impostor.unvouched.is_empty(), "{:?}", from_impostor.unvouched);
    assert_eq!(offsets(&from_impostor.donor_mismatch), [chunk.offset]);
    let refused = from_impostor.donor_mismatch[0];
    assert_eq!(
        (refused.kind, refused.frame, refused.len),
        (RegionKind::Chunk, chunk.frame, chunk.len)
    );
    assert_eq!(refused.problem, Some("this copy's frame footer records other chunk checksums"));
    assert!(from_impostor.refuses_any());
    // The impostor's footer records its own chunk: it differs, but this copy's verifies.
    assert!(
        from_impostor.differ_but_verify.iter().any(|r| r.kind == RegionKind::FrameFooter),
        "{:?}",
        from_impostor.differ_but_verify
    );
    apply(&mut damaged, impostor, &from_impostor);
    assert!(damaged == before, "nothing written");

    let from_genuine = plan_from(&damaged, genuine);
    assert_eq!(offsets(&from_genuine.rewrite), [chunk.offset]);
    assert!(!from_genuine.refuses_any(), "{from_genuine:?}");
    apply(&mut damaged, genuine, &from_genuine);
    assert!(damaged == genuine, "healed bit for bit");
    restore_indexed(SliceSource::new(&damaged), &plan(None)).assert_equals(&plan(None), "healed");
}

#[test]
fn an_impostor_s_chunk_is_refused_and_the_true_copy_heals() {
    // One changed byte in each frame: RAW, and LZ4 (a literal in a linked block).
    for (frame, at) in [(0, 70_000), (1, 100_000)] {
        let (genuine, impostor) = genuine_and_impostor(frame, at);
        let (chunk, _) = impostor_regions(&genuine, &impostor);
        assert_eq!(chunk.frame, Some(frame as u64));
        let (data, head) = ((chunk.offset + 32 + 1000) as usize, chunk.offset as usize);

        // Damage to the chunk's data: its own header survives and records the true bytes.
        let mut damaged = genuine.clone();
        damaged[data] ^= 0xFF;
        damaged[data + 1] ^= 0x0F;
        refuse_then_heal(&genuine, &impostor, damaged.clone(), chunk);

        // Damage to the header too: its checksum, or its stored length, after which the
        // damaged copy's own scan cannot follow the rest of the frame. Then the frame
        // footer is what records the chunk.
        for header_byte in [16, 4] {
            let mut damaged = damaged.clone();
            damaged[head + header_byte] ^= 0x40;
            refuse_then_heal(&genuine, &impostor, damaged, chunk);
        }
    }
}

#[test]
fn with_the_footer_damaged_too_nothing_vouches_for_the_impostor() {
    let (genuine, impostor) = genuine_and_impostor(0, 70_000);
    let (chunk, footer) = impostor_regions(&genuine, &impostor);
    let mut damaged = genuine.clone();
    damaged[(chunk.offset + 32 + 500) as usize] ^= 1;
    damaged[(chunk.offset + 20) as usize] ^= 1; // the chunk header's checksum
    damaged[(footer.offset + 44) as usize] ^= 1; // the footer's digest
    let before = damaged.clone();
    let p = plan_from(&damaged, &impostor);
    assert!(p.rewrite.is_empty(), "{:?}", p.rewrite);
    assert_eq!(offsets(&p.unvouched), [chunk.offset, footer.offset]);
    assert!(p.donor_mismatch.is_empty() && p.unhealable.is_empty());
    let why: Vec<_> = p.unvouched.iter().map(|r| r.problem.unwrap()).collect();
    assert!(why[0].contains("frame footer") && why[0].contains("damaged too"), "{why:?}");
    assert!(why[1].contains("chunks"), "{why:?}");
    apply(&mut damaged, &impostor, &p);
    assert!(damaged == before);

    // The true copy cannot be told from the impostor here either: the chunk's data, header
    // and footer are all damaged, so nothing left records the chunk.
    let p = plan_from(&damaged, &genuine);
    assert!(p.rewrite.is_empty() && p.unvouched.len() == 2, "{p:?}");

    // With the chunk's data intact, its own bytes record its header (RAW), and the chunks
    // then record the footer: the true copy heals, the impostor still does not.
    let mut damaged = genuine.clone();
    damaged[(chunk.offset + 20) as usize] ^= 1;
    damaged[(footer.offset + 44) as usize] ^= 1;
    let p = plan_from(&damaged, &impostor);
    assert!(p.rewrite.is_empty(), "{:?}", p.rewrite);
    let p = plan_from(&damaged, &genuine);
    assert_eq!(offsets(&p.rewrite), [chunk.offset, footer.offset]);
    apply(&mut damaged, &genuine, &p);
    assert!(damaged == genuine);
}

#[test]
fn damaged_in_both_copies_only_when_the_donor_s_region_is_damaged() {
    let genuine = write_vec(&plan(None));
    let all = chunks(&genuine);
    let (frame0, frame1): (Vec<Region>, Vec<Region>) = all.iter().partition(|r| r.frame == Some(0));
    // The donor's frame 0 has a damaged chunk header (its scan cannot follow the rest of the
    // frame); the damaged copy's frame 0 is intact, its frame 1 is not.
    let mut donor = genuine.clone();
    donor[(frame0[0].offset + 4) as usize] ^= 0x80;
    let mut damaged = genuine.clone();
    damaged[(frame1[1].offset + 40) as usize] ^= 1;
    let p = plan_from(&damaged, &donor);
    assert!(p.unhealable.is_empty(), "frame 0 verifies in the damaged copy: {:?}", p.unhealable);
    assert!(p.differ_but_verify.iter().any(|r| r.offset == frame0[0].offset));
    assert_eq!(offsets(&p.rewrite), [frame1[1].offset]);
    apply(&mut damaged, &donor, &p);
    assert!(damaged == genuine);

    // The same chunk damaged in both: unhealable, and said so.
    let mut donor = genuine.clone();
    donor[(frame1[1].offset + 41) as usize] ^= 1;
    let mut damaged = genuine.clone();
    damaged[(frame1[1].offset + 40) as usize] ^= 1;
    let p = plan_from(&damaged, &donor);
    assert_eq!(offsets(&p.unhealable), [frame1[1].offset]);
    assert!(p.rewrite.is_empty() && p.donor_mismatch.is_empty() && p.unvouched.is_empty());
}

#[test]
fn every_structure_damaged_alone_heals_from_the_true_copy_and_never_from_the_impostor() {
    // The impostor differs in one chunk and one footer; damage anywhere in the true copy
    // heals from it exactly, and from the impostor only where the impostor's bytes are the
    // true ones.
    let (genuine, impostor) = genuine_and_impostor(0, 70_000);
    let report = scan(&mut SliceSource::new(&genuine), Depth::Stored).unwrap();
    for r in &report.regions {
        for at in [r.offset, r.offset + r.len / 2, r.end() - 1] {
            let mut damaged = genuine.clone();
            damaged[at as usize] ^= 0x10;
            let what = format!("{} at {} (byte {at})", r.kind.name(), r.offset);
            let p = plan_from(&damaged, &impostor);
            let mut healed = damaged.clone();
            apply(&mut healed, &impostor, &p);
            let same = genuine[r.offset as usize..r.end() as usize]
                == impostor[r.offset as usize..r.end() as usize];
            if same {
                assert!(healed == genuine, "{what}: the impostor's bytes are the true ones here");
            } else {
                assert!(healed == damaged, "{what}: the impostor's region was written");
                assert_eq!(offsets(&p.donor_mismatch), [r.offset], "{what}");
            }
            let p = plan_from(&damaged, &genuine);
            assert!(!p.refuses_any(), "{what}: {p:?}");
            apply(&mut damaged, &genuine, &p);
            assert!(damaged == genuine, "{what}");
        }
    }
}

#[test]
fn random_damage_never_lets_the_impostor_s_bytes_in() {
    // Damage of one to four regions of the true copy at a time, anywhere (headers, chunks,
    // footers, index, tail): whatever a heal from the impostor rewrites must be bytes the
    // impostor shares with the true copy; and a heal from the true copy leaves no region it
    // rewrote different from the true copy, and refuses nothing as "damaged in both".
    let (genuine, impostor) = genuine_and_impostor(1, 100_000);
    let report = scan(&mut SliceSource::new(&genuine), Depth::Stored).unwrap();
    let regions = &report.regions;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut refused = 0;
    for round in 0..1500 {
        let mut damaged = genuine.clone();
        for _ in 0..=next(4) {
            let r = regions[next(regions.len() as u64) as usize];
            let at = r.offset + next(r.len.min(64)) * (if next(2) == 0 { 1 } else { r.len / 64 });
            damaged[at.min(r.end() - 1) as usize] ^= 1 << next(8);
        }
        // With the tail and every frame header damaged, the copy's identity is unknown.
        let heal =
            |donor: &[u8]| plan_heal(&mut SliceSource::new(&damaged), &mut SliceSource::new(donor));
        let Ok(p) = heal(&impostor) else { continue };
        for r in &p.rewrite {
            let range = r.offset as usize..r.end() as usize;
            assert!(genuine[range.clone()] == impostor[range], "round {round}: wrote {r:?}");
        }
        refused += p.donor_mismatch.len();
        let p = heal(&genuine).unwrap();
        assert!(p.unhealable.is_empty() && p.donor_mismatch.is_empty(), "round {round}: {p:?}");
        apply(&mut damaged, &genuine, &p);
        if p.unvouched.is_empty() {
            assert!(damaged == genuine, "round {round}");
        }
    }
    assert!(refused > 50, "the impostor's regions were hit {refused} times");
}
