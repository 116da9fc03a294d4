//! Invariant: the interval algebra of `ckpt_sparse` (`Interval`, `IntervalSet`) agrees with a
//! model, a bitmap with one bit per byte of a small window, on every operation: building
//! (`from_intervals`, `insert`, `collect`, in any order, overlapping, touching, empty or
//! backwards intervals), `contains`, `total_len`, `span`, `union`, `intersect`, `subtract`,
//! `complement`, `clip`, `align_outward` and `split_at_grid`, and `Interval::intersect`.
//! Every set it returns is normalised: sorted, every interval non-empty, neighbours neither
//! overlapping nor touching, so that its intervals are exactly the bitmap's maximal runs.
//!
//! The window sits at offset 0, at an arbitrary offset, or at the very top of the `u64`
//! range, where intervals end at `u64::MAX` and rounding up to a grid must saturate rather
//! than overflow. Intervals lie in the window's middle; blocks for the grid operations are at
//! most the margin on either side, so that the model's grid cells stay inside the window
//! (larger blocks are checked without the model: grid-aligned results, pieces inside one grid
//! cell, nothing lost).
#![no_main]

use arbitrary::Arbitrary;
use ckpt_sparse::{Interval, IntervalSet};
use libfuzzer_sys::fuzz_target;

/// Bytes on each side of the span intervals are drawn from.
const MARGIN: u64 = 1024;
/// Bytes intervals are drawn from.
const SPAN: u64 = 4096;
/// Bits of the model: margin, span, margin.
const WIDTH: u64 = MARGIN + SPAN + MARGIN;

#[derive(Arbitrary, Debug)]
enum Origin {
    Zero,
    /// The span ends at `u64::MAX`.
    Top,
    At(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Block {
    Zero,
    One,
    PowerOfTwo(u8),
    Small(u16),
    /// Larger than the margin: checked without the model.
    Huge(u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    origin: Origin,
    a: Vec<(u16, u16)>,
    b: Vec<(u16, u16)>,
    within: (u16, u16),
    block: Block,
}

/// One bit per byte of the window, 64 to a word (word operations keep the model fast under
/// the fuzzer's comparison tracing).
#[derive(Clone, PartialEq, Eq, Debug)]
struct Bits(Vec<u64>);

impl Bits {
    fn new() -> Self {
        Self(vec![0; (WIDTH / 64) as usize])
    }
    /// Sets bits `from..to` (relative to the window).
    fn set(&mut self, from: u64, to: u64) {
        let to = to.min(WIDTH);
        let mut b = from;
        while b < to {
            let n = (64 - b % 64).min(to - b);
            let mask = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << (b % 64) };
            self.0[(b / 64) as usize] |= mask;
            b += n;
        }
    }
    fn get(&self, b: u64) -> bool {
        self.0[(b / 64) as usize] >> (b % 64) & 1 == 1
    }
    fn zip(&self, other: &Self, f: impl Fn(u64, u64) -> u64) -> Self {
        Self(self.0.iter().zip(&other.0).map(|(&x, &y)| f(x, y)).collect())
    }
    fn ones(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
    /// The maximal runs of set bits, as relative `(start, end)`.
    fn runs(&self) -> Vec<(u64, u64)> {
        let word = |b: u64| self.0[(b / 64) as usize] >> (b % 64);
        let mut out = Vec::new();
        let mut b = 0;
        while b < WIDTH {
            let w = word(b);
            if w == 0 {
                b = (b / 64 + 1) * 64;
                continue;
            }
            let start = b + u64::from(w.trailing_zeros());
            let mut end = start;
            while end < WIDTH {
                let ones = u64::from(word(end).trailing_ones());
                end += ones;
                if ones == 0 || end % 64 != 0 {
                    break;
                }
            }
            out.push((start, end));
            b = end;
        }
        out
    }
}

struct Model {
    origin: u64,
}

impl Model {
    /// An interval from fuzz input: start in the span, mostly short, some long, some empty,
    /// some backwards (`end < start`, which must behave as empty).
    fn interval(&self, (start, len): (u16, u16)) -> Interval {
        let start = MARGIN + u64::from(start) % (SPAN + 1);
        let end = match len {
            u16::MAX => start.saturating_sub(1 + u64::from(len) % 7),
            l if l & 0x8000 != 0 => start + u64::from(l & 0x7fff) % (SPAN + 1),
            l => start + u64::from(l) % 64,
        }
        .min(MARGIN + SPAN);
        Interval { start: self.origin + start, end: self.origin + end }
    }

    fn bits(&self, list: &[Interval]) -> Bits {
        let mut bits = Bits::new();
        for i in list.iter().filter(|i| i.start < i.end) {
            bits.set(i.start - self.origin, i.end - self.origin);
        }
        bits
    }

    /// Checks a set against the bitmap it should hold, normalisation included.
    fn assert_matches(&self, set: &IntervalSet, bits: &Bits, what: &str) {
        check_normalised(set, what);
        let runs: Vec<Interval> = bits
            .runs()
            .into_iter()
            .map(|(s, e)| Interval { start: self.origin + s, end: self.origin + e })
            .collect();
        assert_eq!(set.as_slice(), &runs[..], "{what}: not the model's maximal runs");
        assert_eq!(set.total_len(), bits.ones(), "{what}: total_len");
        let span =
            runs.first().zip(runs.last()).map(|(a, b)| Interval { start: a.start, end: b.end });
        assert_eq!(set.span(), span, "{what}: span");
    }

    /// The model of `align_outward(block)` for `2 <= block <= MARGIN`: every run widened to
    /// the grid cells of its first and last byte (saturating at `u64::MAX`).
    fn aligned(&self, bits: &Bits, block: u64) -> Bits {
        let mut out = Bits::new();
        let (origin, block) = (u128::from(self.origin), u128::from(block));
        for (s, e) in bits.runs() {
            let (first, last) = (origin + u128::from(s), origin + u128::from(e) - 1);
            let from = first - first % block;
            let to = (last - last % block + block).min(u128::from(u64::MAX));
            out.set((from - origin) as u64, (to - origin) as u64);
        }
        out
    }
}

fn check_normalised(set: &IntervalSet, what: &str) {
    let spans = set.as_slice();
    assert_eq!(spans.len(), set.len(), "{what}: len");
    assert_eq!(set.is_empty(), spans.is_empty(), "{what}: is_empty");
    assert!(spans.iter().all(|s| s.start < s.end), "{what}: an empty interval in {set:?}");
    for pair in spans.windows(2) {
        assert!(pair[0].end < pair[1].start, "{what}: not sorted, disjoint, apart: {pair:?}");
    }
    assert!(set.iter().eq(spans.iter().copied()), "{what}: iter differs from as_slice");
    assert!(set.into_iter().eq(spans.iter().copied()), "{what}: IntoIterator differs");
}

fn check_split(set: &IntervalSet, block: u64, what: &str) {
    let pieces = set.split_at_grid(block);
    assert_eq!(IntervalSet::from_intervals(pieces.iter().copied()), *set, "{what}: lost bytes");
    for p in &pieces {
        assert!(p.start < p.end, "{what}: an empty piece");
        if let Some(cell) = p.start.checked_div(block) {
            assert_eq!(Some(cell), (p.end - 1).checked_div(block), "{what}: {p:?} spans cells");
        }
    }
    for pair in pieces.windows(2) {
        assert!(pair[0].end <= pair[1].start, "{what}: pieces out of order");
        if pair[0].end == pair[1].start {
            assert!(block > 0 && pair[0].end % block == 0, "{what}: cut off the grid");
        }
    }
}

fuzz_target!(|input: Input| {
    let origin = match input.origin {
        Origin::Zero => 0,
        Origin::Top => u64::MAX - (MARGIN + SPAN),
        Origin::At(at) => at.min(u64::MAX - WIDTH),
    };
    let m = Model { origin };
    let a: Vec<Interval> = input.a.iter().take(64).map(|&i| m.interval(i)).collect();
    let b: Vec<Interval> = input.b.iter().take(64).map(|&i| m.interval(i)).collect();
    let (bits_a, bits_b) = (m.bits(&a), m.bits(&b));

    let sa = IntervalSet::from_intervals(a.iter().copied());
    m.assert_matches(&sa, &bits_a, "from_intervals");
    let mut by_insert = IntervalSet::new();
    for i in a.iter().rev() {
        by_insert.insert(*i);
    }
    assert_eq!(by_insert, sa, "insert (in reverse) differs from from_intervals");
    assert_eq!(a.iter().copied().collect::<IntervalSet>(), sa, "collect");
    let mut extended = IntervalSet::from_intervals(b.iter().copied());
    extended.extend(a.iter().copied());
    m.assert_matches(&extended, &bits_a.zip(&bits_b, |x, y| x | y), "extend");
    // contains() on both sides of every boundary and at a sample of other offsets.
    let boundaries =
        bits_a.runs().into_iter().flat_map(|(s, e)| [s.saturating_sub(1), s, e - 1, e]);
    for b in boundaries.chain((0..WIDTH).step_by(61)).filter(|&b| b < WIDTH) {
        // At the top of the range the window runs past u64::MAX: those offsets do not exist.
        let Some(at) = origin.checked_add(b) else { continue };
        assert_eq!(sa.contains(at), bits_a.get(b), "contains({at})");
    }
    for i in &a {
        assert_eq!(IntervalSet::from(*i).total_len(), i.len(), "From<Interval>");
    }
    for i in a.iter().take(8) {
        for j in b.iter().take(8) {
            let want = m.bits(&[*i]).zip(&m.bits(&[*j]), |x, y| x & y);
            let got = i.intersect(j).map_or_else(Bits::new, |k| m.bits(&[k]));
            assert!(got == want, "Interval::intersect({i:?}, {j:?})");
            assert!(i.intersect(j).is_none_or(|k| !k.is_empty()), "an empty intersection");
        }
    }

    let sb = IntervalSet::from_intervals(b.iter().copied());
    m.assert_matches(&sa.union(&sb), &bits_a.zip(&bits_b, |x, y| x | y), "union");
    m.assert_matches(&sa.intersect(&sb), &bits_a.zip(&bits_b, |x, y| x & y), "intersect");
    m.assert_matches(&sa.subtract(&sb), &bits_a.zip(&bits_b, |x, y| x & !y), "a - b");
    m.assert_matches(&sb.subtract(&sa), &bits_a.zip(&bits_b, |x, y| y & !x), "b - a");
    assert_eq!(sa.union(&sb), sb.union(&sa), "union is not commutative");
    assert_eq!(sa.intersect(&sb), sb.intersect(&sa), "intersect is not commutative");

    let w = m.interval(input.within);
    let bits_w = m.bits(&[w]);
    m.assert_matches(&sa.complement(w), &bits_w.zip(&bits_a, |x, y| x & !y), "complement");
    m.assert_matches(&sa.clip(w), &bits_w.zip(&bits_a, |x, y| x & y), "clip");
    if !w.is_empty() {
        assert_eq!(sa.complement(w).union(&sa.clip(w)), IntervalSet::from(w), "partition");
    }

    let block = match input.block {
        Block::Zero => 0,
        Block::One => 1,
        Block::PowerOfTwo(k) => 1 << (k % 11),
        Block::Small(n) => u64::from(n) % MARGIN + 1,
        Block::Huge(n) => n.max(MARGIN + 1),
    };
    let aligned = sa.align_outward(block);
    if block <= 1 {
        assert_eq!(aligned, sa, "align_outward({block}) changed the set");
    } else if block <= MARGIN {
        m.assert_matches(&aligned, &m.aligned(&bits_a, block), "align_outward");
    } else {
        check_normalised(&aligned, "align_outward (huge block)");
        assert_eq!(aligned.union(&sa), aligned, "align_outward lost bytes");
    }
    if block > 1 {
        for s in aligned.iter() {
            assert_eq!(s.start % block, 0, "aligned start off the grid");
            assert!(s.end % block == 0 || s.end == u64::MAX, "aligned end off the grid");
        }
    }
    check_split(&sa, block, "split_at_grid");
    check_split(&sb, block, "split_at_grid (b)");
});
