//! `plan_heal_ranged`: the heal of `plan_heal` while reading only the donor's tail, index
//! and the frames that hold damage. Every plan is compared with `plan_heal`'s over the same
//! copies (genuine donors and impostors), and every read of the donor is logged, so the
//! tests show both that the proof rules are the same and which bytes were read.
// Offsets of these in-memory test checkpoints are far below usize::MAX.
#![allow(clippy::cast_possible_truncation)]

mod common;
use ckpt_frame_core::scan::{
    Depth, HealPlan, RangedHealPlan, Region, RegionKind, plan_heal, plan_heal_ranged, scan,
};
use ckpt_frame_core::{CheckpointId, Error, IoError, SliceSource, Source, Style, VecSink, Writer};
use common::*;

/// A donor that logs every read as `(offset, len)`.
struct Logged<'a> {
    inner: SliceSource<'a>,
    at: u64,
    reads: Vec<(u64, u64)>,
}

impl<'a> Logged<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { inner: SliceSource::new(bytes), at: 0, reads: Vec::new() }
    }
}

impl Source for Logged<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), IoError> {
        self.reads.push((self.at, buf.len() as u64));
        self.at += buf.len() as u64;
        self.inner.read_exact(buf)
    }
    fn total_len(&mut self) -> Result<Option<u64>, IoError> {
        self.inner.total_len()
    }
    fn seek(&mut self, offset: u64) -> Result<(), IoError> {
        self.at = offset;
        self.inner.seek(offset)
    }
}

/// Ten frames, RAW and LZ4, of noise (so an impostor with one changed byte keeps the
/// layout); `changed` flips one byte of one frame's data.
fn plan(changed: Option<(usize, usize)>) -> Plan {
    let mut plan: Plan = (0..10u64)
        .map(|i| {
            let style = if i % 2 == 0 { Style::Raw } else { Style::Lz4 };
            (style, vec![content(i + 1, 150_000, false), vec![], content(i + 50, 7_000, false)])
        })
        .collect();
    if let Some((frame, at)) = changed {
        plan[frame].1[0][at] ^= 0x5A;
    }
    plan
}

fn ranged(damaged: &[u8], donor: &[u8]) -> (Result<RangedHealPlan, Error>, Vec<(u64, u64)>) {
    let mut logged = Logged::new(donor);
    let r = plan_heal_ranged(&mut SliceSource::new(damaged), &mut logged);
    (r, logged.reads)
}

fn full(damaged: &[u8], donor: &[u8]) -> Result<HealPlan, Error> {
    plan_heal(&mut SliceSource::new(damaged), &mut SliceSource::new(donor))
}

/// The lists that decide what is written and what is refused, with why.
fn verdicts(p: &HealPlan) -> [Vec<(u64, u64, Option<&'static str>)>; 4] {
    let l = |v: &[Region]| v.iter().map(|r| (r.offset, r.len, r.problem)).collect();
    [l(&p.rewrite), l(&p.unhealable), l(&p.donor_mismatch), l(&p.unvouched)]
}

/// The frames' extents, from a scan of an intact copy.
fn frames(bytes: &[u8]) -> Vec<(u64, u64)> {
    let report = scan(&mut SliceSource::new(bytes), Depth::Stored).unwrap();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for r in report.regions.iter().filter(|r| r.frame.is_some()) {
        let f = r.frame.unwrap() as usize;
        if out.len() <= f {
            out.push((r.offset, r.end()));
        } else {
            out[f].1 = r.end();
        }
    }
    out
}

fn apply(damaged: &mut [u8], r: &RangedHealPlan) {
    for (region, bytes) in r.plan.rewrite.iter().zip(&r.rewrite_bytes) {
        damaged[region.offset as usize..region.end() as usize].copy_from_slice(bytes);
    }
}

#[test]
fn damage_in_two_frames_reads_only_those_frames_the_index_and_the_tail() {
    let good = write_vec(&plan(None));
    let fr = frames(&good);
    let index_at = fr.last().unwrap().1;
    let mut damaged = good.clone();
    damaged[(fr[2].0 + 60_000) as usize] ^= 0x10; // a RAW chunk's data
    damaged[(fr[7].0 + 3) as usize] ^= 0x01; // an LZ4 frame's header
    let (r, reads) = ranged(&damaged, &good);
    let r = r.unwrap();
    assert!(!r.whole_donor);
    // The tail, then the index, then frames 2 and 7, once each.
    let tail_at = good.len() as u64 - 64;
    assert_eq!(
        reads,
        [
            (tail_at, 64),
            (index_at, tail_at - index_at),
            (fr[2].0, fr[2].1 - fr[2].0),
            (fr[7].0, fr[7].1 - fr[7].0)
        ]
    );
    assert_eq!(r.donor_reads, 4);
    let frame_bytes = (fr[2].1 - fr[2].0) + (fr[7].1 - fr[7].0);
    assert_eq!(r.fetched_bytes(), frame_bytes + (good.len() as u64 - index_at));
    assert!(r.fetched_bytes() * 4 < good.len() as u64, "{} of {}", r.fetched_bytes(), good.len());
    assert_eq!(verdicts(&r.plan), verdicts(&full(&damaged, &good).unwrap()));
    assert_eq!(r.plan.rewrite.len(), 2);
    apply(&mut damaged, &r);
    assert!(damaged == good, "healed bit for bit");
}

#[test]
fn damaged_index_and_tail_are_healed_from_the_donor_s() {
    let good = write_vec(&plan(None));
    let index_at = frames(&good).last().unwrap().1 as usize;
    for at in [index_at + 3, index_at + 8 + 40 * 4 + 9, good.len() - 20] {
        let mut damaged = good.clone();
        damaged[at] ^= 0x80;
        let (r, reads) = ranged(&damaged, &good);
        let r = r.unwrap();
        assert_eq!(reads.len(), 2, "the tail and the index only: {reads:?}");
        assert_eq!(verdicts(&r.plan), verdicts(&full(&damaged, &good).unwrap()));
        apply(&mut damaged, &r);
        assert!(damaged == good, "healed at {at}");
    }
}

#[test]
fn a_donor_of_another_checkpoint_or_length_is_refused_before_any_frame_is_read() {
    let good = write_vec(&plan(None));
    let mut damaged = good.clone();
    damaged[1000] ^= 1;
    let mut other = Writer::new(VecSink::new(), CheckpointId::from_bytes([0xEE; 16]));
    for (style, buffers) in plan(None) {
        let mut f = other.open_frame(style).unwrap();
        for b in &buffers {
            f.add(b).unwrap();
        }
        f.close().unwrap();
    }
    other.finish().unwrap();
    let other = other.into_sink().into_inner();
    assert_eq!(other.len(), good.len());
    let (r, reads) = ranged(&damaged, &other);
    assert!(matches!(r, Err(Error::NotACopy { reason: "the copies are different checkpoints" })));
    assert_eq!(reads, [(good.len() as u64 - 64, 64)], "only the tail was read");
    let (r, reads) = ranged(&damaged, &good[..good.len() - 1]);
    assert!(matches!(r, Err(Error::NotACopy { reason: "the copies have different lengths" })));
    assert!(reads.is_empty());
}

#[test]
fn neither_index_verifies_so_the_whole_donor_is_read() {
    let good = write_vec(&plan(None));
    let mut damaged = good.clone();
    let n = damaged.len();
    damaged[n - 10] ^= 1; // the tail: this copy's index cannot be trusted either
    damaged[500] ^= 1;
    let mut donor = good.clone();
    donor[n - 12] ^= 1; // the donor's tail too
    let (r, reads) = ranged(&damaged, &donor);
    let r = r.unwrap();
    assert!(r.whole_donor);
    let total: u64 = reads.iter().map(|(_, l)| l).sum();
    assert_eq!(total, n as u64, "every donor byte read once");
    assert_eq!(verdicts(&r.plan), verdicts(&full(&damaged, &donor).unwrap()));
}

/// Random damage, healed from an impostor (one byte of one frame differs, identity and
/// length the same) and from the true copy: the ranged planner decides exactly what
/// `plan_heal` decides, never writes an impostor byte that differs from the true copy,
/// reads each donor byte at most once, and reads nothing beyond the frames that hold
/// damage (and the index and tail) unless neither copy's index verifies.
#[test]
fn random_damage_same_verdicts_as_plan_heal_and_reads_only_damaged_frames() {
    let genuine = write_vec(&plan(None));
    let fr = frames(&genuine);
    let index_at = fr.last().unwrap().1;
    let report = scan(&mut SliceSource::new(&genuine), Depth::Stored).unwrap();
    let regions = &report.regions;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let (mut partial, mut refused, mut healed) = (0, 0, 0);
    for round in 0..300 {
        let impostor = write_vec(&plan(Some((next(10) as usize, next(150_000) as usize))));
        let mut damaged = genuine.clone();
        let mut hit = Vec::new();
        for _ in 0..=next(3) {
            let r = regions[next(regions.len() as u64) as usize];
            let at = r.offset + next(r.len.min(64)) * (if next(2) == 0 { 1 } else { r.len / 64 });
            let at = at.min(r.end() - 1);
            damaged[at as usize] ^= 1 << next(8);
            hit.push(at);
        }
        for (is_impostor, donor) in [(true, &impostor), (false, &genuine)] {
            let (r, reads) = ranged(&damaged, donor);
            let f = full(&damaged, donor);
            let (r, f) = match (r, f) {
                (Ok(r), Ok(f)) => (r, f),
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "round {round}");
                    continue;
                }
                (r, f) => panic!("round {round}: ranged {r:?}, full {f:?}"),
            };
            assert_eq!(verdicts(&r.plan), verdicts(&f), "round {round}, hits {hit:?}");
            let mut seen = vec![false; donor.len()];
            for &(o, l) in &reads {
                for b in &mut seen[o as usize..(o + l) as usize] {
                    assert!(!*b, "round {round}: byte read twice");
                    *b = true;
                }
            }
            if !r.whole_donor {
                partial += 1;
                // Only frames that hold a hit (or touch a region around one), the index and
                // the tail.
                for &(o, l) in &reads {
                    let inside_index = o >= index_at;
                    let frames_read: Vec<_> =
                        fr.iter().filter(|(a, b)| *a < o + l && o < *b).collect();
                    assert!(inside_index || !frames_read.is_empty());
                }
                let damaged_frames =
                    fr.iter().filter(|(a, b)| hit.iter().any(|h| a <= h && h < b)).count();
                let read_frames = fr
                    .iter()
                    .filter(|(a, b)| reads.iter().any(|(o, l)| *a < o + l && *o < *b))
                    .count();
                // A damaged chunk header can hide a frame's end from this copy's scan when
                // its index is damaged too, so a neighbour may be read; never more.
                assert!(read_frames <= 2 * damaged_frames, "round {round}: {reads:?}");
            }
            if is_impostor {
                refused += r.plan.donor_mismatch.len();
                for (region, bytes) in r.plan.rewrite.iter().zip(&r.rewrite_bytes) {
                    let range = region.offset as usize..region.end() as usize;
                    assert!(genuine[range] == bytes[..], "round {round}: impostor bytes written");
                }
            } else {
                let mut copy = damaged.clone();
                apply(&mut copy, &r);
                if r.plan.unvouched.is_empty() && r.plan.unhealable.is_empty() {
                    assert!(copy == genuine, "round {round}");
                    healed += 1;
                }
            }
        }
    }
    assert!(partial > 400, "{partial} plans read part of the donor");
    assert!(refused > 10, "the impostor was refused {refused} times");
    assert!(healed > 200, "{healed} heals");
    let _ = RegionKind::Chunk;
}

/// A donor whose tail is forged (its checks pass, it fits the length) to place an "index"
/// over the end of the last frame: the ranged planner does not fetch it (this copy's own
/// index verifies and lies elsewhere), and decides exactly what `plan_heal` decides.
#[test]
fn a_forged_donor_tail_changes_nothing_the_damaged_copy_s_records_decide() {
    use xxhash_rust::xxh3::xxh3_64;
    let good = write_vec(&plan(None));
    let fr = frames(&good);
    let n = good.len();
    let mut donor = good.clone();
    let tail_at = n - 64;
    let index_at = fr.last().unwrap().1 as usize;
    let count = u64::from_le_bytes(donor[tail_at + 8..tail_at + 16].try_into().unwrap()) + 5;
    let forged_at = index_at - 200;
    donor[tail_at..tail_at + 8].copy_from_slice(&(forged_at as u64).to_le_bytes());
    donor[tail_at + 8..tail_at + 16].copy_from_slice(&count.to_le_bytes());
    let digest = xxh3_64(&donor[forged_at..tail_at]);
    donor[tail_at + 32..tail_at + 40].copy_from_slice(&digest.to_le_bytes());
    let check = xxh3_64(&donor[tail_at..tail_at + 48]);
    donor[tail_at + 48..tail_at + 56].copy_from_slice(&check.to_le_bytes());
    // Damage in the last frame, where the forged index lies, and in frame 0.
    let mut damaged = good.clone();
    damaged[(fr[9].0 + 1000) as usize] ^= 0x04;
    damaged[(fr[0].0 + 90_000) as usize] ^= 0x04;
    let (r, reads) = ranged(&damaged, &donor);
    let r = r.unwrap();
    let f = full(&damaged, &donor).unwrap();
    assert_eq!(verdicts(&r.plan), verdicts(&f));
    // This copy's index verifies, so the forged one is not fetched: the tail, frames 0 and
    // 9, nothing else.
    assert!(!r.whole_donor);
    assert_eq!(
        reads,
        [(tail_at as u64, 64), (fr[0].0, fr[0].1 - fr[0].0), (fr[9].0, fr[9].1 - fr[9].0)]
    );
    let mut seen = vec![false; n];
    for &(o, l) in &reads {
        for b in &mut seen[o as usize..(o + l) as usize] {
            assert!(!*b, "byte read twice: {reads:?}");
            *b = true;
        }
    }
    let mut healed = damaged.clone();
    apply(&mut healed, &r);
    // The chunks are healed: the frames' own records vouch for them.
    assert_eq!(r.plan.rewrite.len(), 2, "{:?}", r.plan);
    assert!(healed[..index_at] == good[..index_at]);
}
