//! `Interval`/`IntervalSet` against a model: a bitmap with one entry per byte.

use ckpt_sparse::{Interval, IntervalSet};
use proptest::prelude::*;

/// Intervals are drawn inside `[0, SPAN)`; the bitmap is wider so that `align_outward` has
/// room to grow past `SPAN`.
const SPAN: u64 = 4096;
const BITS: usize = 8192;
const _: () = assert!(BITS as u64 == 2 * SPAN);

fn iv(start: u64, end: u64) -> Interval {
    Interval::new(start, end).expect("start <= end")
}

fn check_invariants(set: &IntervalSet) {
    let spans = set.as_slice();
    assert_eq!(spans.len(), set.len());
    assert_eq!(set.is_empty(), spans.is_empty());
    for s in spans {
        assert!(s.start < s.end, "empty interval {s:?} in {set:?}");
    }
    for pair in spans.windows(2) {
        assert!(
            pair[0].end < pair[1].start,
            "not sorted/disjoint/non-adjacent: {pair:?} in {set:?}"
        );
    }
    assert_eq!(set.iter().collect::<Vec<_>>(), spans);
    assert_eq!(set.total_len(), spans.iter().map(Interval::len).sum::<u64>());
}

fn bits_of(set: &IntervalSet) -> Vec<bool> {
    let mut bits = vec![false; BITS];
    for s in set.iter() {
        for b in s.start..s.end {
            bits[usize::try_from(b).unwrap()] = true;
        }
    }
    bits
}

fn bits_of_list(list: &[Interval]) -> Vec<bool> {
    let mut bits = vec![false; BITS];
    for s in list {
        for b in s.start..s.end {
            bits[usize::try_from(b).unwrap()] = true;
        }
    }
    bits
}

fn zip_bits(a: &[bool], b: &[bool], f: impl Fn(bool, bool) -> bool) -> Vec<bool> {
    a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
}

/// Checks a set against the bitmap it should hold, invariants included.
fn assert_matches(set: &IntervalSet, bits: &[bool]) {
    check_invariants(set);
    assert_eq!(bits_of(set), bits, "set {set:?}");
    // Maximal runs of the bitmap are exactly the intervals.
    let runs = bits.windows(2).filter(|w| !w[0] && w[1]).count() + usize::from(bits[0]);
    assert_eq!(set.len(), runs);
    assert_eq!(set.total_len(), bits.iter().filter(|&&b| b).count() as u64);
}

fn any_interval() -> impl Strategy<Value = Interval> {
    // Mostly short intervals so that sets have many pieces; some empty, some long.
    (0..=SPAN, prop_oneof![3 => 0u64..64, 1 => 0u64..=SPAN])
        .prop_map(|(start, len)| iv(start, (start + len).min(SPAN)))
}

fn any_list() -> impl Strategy<Value = Vec<Interval>> {
    prop::collection::vec(any_interval(), 0..40)
}

fn any_block() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1), Just(4096), 2u64..600]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn from_intervals_and_insert_agree_with_model(list in any_list()) {
        let set = IntervalSet::from_intervals(list.iter().copied());
        assert_matches(&set, &bits_of_list(&list));
        let mut by_insert = IntervalSet::new();
        for i in &list {
            by_insert.insert(*i);
        }
        check_invariants(&by_insert);
        prop_assert_eq!(&by_insert, &set);
        let collected: IntervalSet = list.iter().copied().collect();
        prop_assert_eq!(&collected, &set);
        let bits = bits_of_list(&list);
        for offset in (0..=SPAN + 1).step_by(7) {
            prop_assert_eq!(set.contains(offset), bits[usize::try_from(offset).unwrap()]);
        }
    }

    #[test]
    fn union_intersect_subtract_agree_with_model(a in any_list(), b in any_list()) {
        let (sa, sb) = (IntervalSet::from_intervals(a.clone()), IntervalSet::from_intervals(b.clone()));
        let (ba, bb) = (bits_of_list(&a), bits_of_list(&b));
        assert_matches(&sa.union(&sb), &zip_bits(&ba, &bb, |x, y| x || y));
        assert_matches(&sa.intersect(&sb), &zip_bits(&ba, &bb, |x, y| x && y));
        assert_matches(&sa.subtract(&sb), &zip_bits(&ba, &bb, |x, y| x && !y));
        assert_matches(&sb.subtract(&sa), &zip_bits(&ba, &bb, |x, y| y && !x));
        prop_assert_eq!(sa.union(&sb), sb.union(&sa));
        prop_assert_eq!(sa.intersect(&sb), sb.intersect(&sa));
    }

    #[test]
    fn complement_and_clip_agree_with_model(a in any_list(), w in any_interval()) {
        let set = IntervalSet::from_intervals(a.clone());
        let bits = bits_of_list(&a);
        let within = bits_of_list(&[w]);
        assert_matches(&set.complement(w), &zip_bits(&within, &bits, |x, y| x && !y));
        assert_matches(&set.clip(w), &zip_bits(&within, &bits, |x, y| x && y));
        // Complement and clip partition `within`.
        prop_assert_eq!(set.complement(w).union(&set.clip(w)), IntervalSet::from(w));
    }

    #[test]
    fn align_outward_agrees_with_model(a in any_list(), block in any_block()) {
        let set = IntervalSet::from_intervals(a.clone());
        let bits = bits_of_list(&a);
        let aligned = set.align_outward(block);
        if block <= 1 {
            prop_assert_eq!(&aligned, &set);
        }
        let mut want = vec![false; BITS];
        if block <= 1 {
            want.clone_from(&bits);
        } else {
            let block = usize::try_from(block).unwrap();
            for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
                let cell = i / block * block;
                for slot in &mut want[cell..cell + block] {
                    *slot = true;
                }
            }
        }
        assert_matches(&aligned, &want);
        if block > 1 {
            for s in aligned.iter() {
                prop_assert_eq!(s.start % block, 0);
                prop_assert_eq!(s.end % block, 0);
            }
        }
    }

    #[test]
    fn split_at_grid_agrees_with_model(a in any_list(), block in any_block()) {
        let set = IntervalSet::from_intervals(a.clone());
        let pieces = set.split_at_grid(block);
        prop_assert_eq!(bits_of_list(&pieces), bits_of_list(&a));
        for p in &pieces {
            prop_assert!(p.start < p.end);
            if let Some(cell) = p.start.checked_div(block) {
                // Each piece inside one grid cell.
                prop_assert_eq!(Some(cell), (p.end - 1).checked_div(block));
            }
        }
        for pair in pieces.windows(2) {
            prop_assert!(pair[0].end <= pair[1].start);
            if pair[0].end == pair[1].start {
                // Cut only where the grid says so.
                prop_assert!(block > 0 && pair[0].end % block == 0);
            }
        }
        prop_assert_eq!(IntervalSet::from_intervals(pieces), set);
    }
}

#[test]
fn interval_basics() {
    assert_eq!(Interval::new(5, 4), None);
    let e = iv(7, 7);
    assert!(e.is_empty() && !e.contains(7));
    assert_eq!(e.len(), 0);
    let a = iv(0, 4);
    assert_eq!(a.intersect(&iv(4, 8)), None, "touching intervals share no byte");
    assert_eq!(a.intersect(&iv(3, 8)), Some(iv(3, 4)));
    assert_eq!(a.intersect(&e), None);
    // Hand-built backwards interval behaves as empty.
    let back = Interval { start: 9, end: 3 };
    assert!(back.is_empty() && !back.contains(5));
    assert_eq!(back.len(), 0);
    assert!(IntervalSet::from(back).is_empty());
    assert_eq!(Interval::with_len(u64::MAX - 1, 1), Some(iv(u64::MAX - 1, u64::MAX)));
    assert_eq!(Interval::with_len(u64::MAX, 1), None);
    assert_eq!(iv(1, 2).to_string(), "[1, 2)");
}

#[test]
fn empty_sets() {
    let empty = IntervalSet::new();
    assert!(empty.is_empty());
    assert_eq!((empty.len(), empty.total_len()), (0, 0));
    assert!(!empty.contains(0));
    assert_eq!(empty.span(), None);
    let x = IntervalSet::from(iv(10, 20));
    assert_eq!(empty.union(&x), x);
    assert_eq!(x.union(&empty), x);
    assert!(empty.intersect(&x).is_empty());
    assert!(empty.subtract(&x).is_empty());
    assert_eq!(x.subtract(&empty), x);
    assert_eq!(empty.complement(iv(0, 5)), IntervalSet::from(iv(0, 5)));
    assert!(x.complement(iv(3, 3)).is_empty());
    assert!(x.clip(iv(15, 15)).is_empty());
    assert!(empty.align_outward(4096).is_empty());
    assert!(empty.split_at_grid(4096).is_empty());
    assert!(IntervalSet::from_intervals([iv(1, 1), iv(5, 5)]).is_empty());
}

#[test]
fn touching_intervals_merge() {
    let set = IntervalSet::from_intervals([iv(4, 8), iv(0, 4), iv(8, 8), iv(8, 9)]);
    assert_eq!(set.as_slice(), &[iv(0, 9)]);
    let a = IntervalSet::from(iv(0, 4));
    let b = IntervalSet::from(iv(4, 8));
    assert_eq!(a.union(&b).as_slice(), &[iv(0, 8)]);
    assert!(a.intersect(&b).is_empty());
    assert_eq!(a.subtract(&b), a);
    // Alignment makes neighbours touch; they merge.
    let c = IntervalSet::from_intervals([iv(1, 2), iv(5, 6)]);
    assert_eq!(c.align_outward(4).as_slice(), &[iv(0, 8)]);
    assert_eq!(c.span(), Some(iv(1, 6)));
}

#[test]
fn u64_max_ends() {
    let top = iv(u64::MAX - 10, u64::MAX);
    let set = IntervalSet::from_intervals([top, iv(0, 1)]);
    assert_eq!(set.total_len(), 11);
    assert!(set.contains(u64::MAX - 1));
    assert!(!set.contains(u64::MAX));
    let all = iv(0, u64::MAX);
    assert_eq!(set.complement(all).as_slice(), &[iv(1, u64::MAX - 10)]);
    assert_eq!(set.clip(all), set);
    assert_eq!(IntervalSet::from(all).total_len(), u64::MAX);
    // Rounding the end up would overflow: it saturates.
    assert_eq!(set.align_outward(4096).as_slice(), &[iv(0, 4096), iv(u64::MAX - 4095, u64::MAX)]);
    assert_eq!(set.align_outward(u64::MAX).as_slice(), &[iv(0, u64::MAX)]);
    // The last grid cell is cut short at u64::MAX.
    assert_eq!(
        IntervalSet::from(top).split_at_grid(8),
        vec![iv(u64::MAX - 10, u64::MAX - 7), iv(u64::MAX - 7, u64::MAX)]
    );
    assert_eq!(
        IntervalSet::from(all).split_at_grid(1 << 63),
        vec![iv(0, 1 << 63), iv(1 << 63, u64::MAX)]
    );
    let mut grow = IntervalSet::from(iv(u64::MAX - 1, u64::MAX));
    grow.insert(iv(5, u64::MAX - 1));
    assert_eq!(grow.as_slice(), &[iv(5, u64::MAX)]);
    assert_eq!(grow.subtract(&IntervalSet::from(all)), IntervalSet::new());
}

#[test]
fn insert_spanning_many() {
    let mut set = IntervalSet::from_intervals((0..10).map(|i| iv(i * 10, i * 10 + 5)));
    assert_eq!(set.len(), 10);
    set.insert(iv(12, 61));
    assert_eq!(set.as_slice(), &[iv(0, 5), iv(10, 65), iv(70, 75), iv(80, 85), iv(90, 95)]);
    set.insert(iv(95, 100));
    assert_eq!(set.as_slice().last(), Some(&iv(90, 100)));
    set.insert(iv(200, 201));
    assert_eq!(set.as_slice().last(), Some(&iv(200, 201)));
    set.insert(iv(0, 1000));
    assert_eq!(set.as_slice(), &[iv(0, 1000)]);
}
