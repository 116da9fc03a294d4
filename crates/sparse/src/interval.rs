//! Interval algebra over byte offsets: half-open [`Interval`]s and normalised
//! [`IntervalSet`]s. Pure code, no I/O.

use std::fmt;

/// A half-open byte range `[start, end)`.
///
/// The fields are public; an interval with `end < start` can be built by hand and then
/// behaves as empty everywhere ([`Interval::len`] is 0, it contains nothing, and
/// [`IntervalSet`] drops it). [`Interval::new`] refuses such intervals.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::Interval;
///
/// let a = Interval::new(0, 8192).unwrap();
/// let b = Interval::new(4096, 12288).unwrap();
/// assert_eq!(a.len(), 8192);
/// assert!(a.contains(8191) && !a.contains(8192));
/// assert_eq!(a.intersect(&b), Interval::new(4096, 8192));
/// assert!(Interval::new(5, 4).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First byte in the range.
    pub start: u64,
    /// One past the last byte in the range.
    pub end: u64,
}

impl Interval {
    /// `[start, end)`, or `None` if `end < start`. `start == end` gives an empty interval.
    pub const fn new(start: u64, end: u64) -> Option<Self> {
        if end < start { None } else { Some(Self { start, end }) }
    }

    /// `[start, start + len)`, or `None` if the end would overflow `u64`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ckpt_sparse::Interval;
    ///
    /// assert_eq!(Interval::with_len(10, 5), Interval::new(10, 15));
    /// assert_eq!(Interval::with_len(u64::MAX, 1), None);
    /// ```
    pub const fn with_len(start: u64, len: u64) -> Option<Self> {
        match start.checked_add(len) {
            Some(end) => Some(Self { start, end }),
            None => None,
        }
    }

    /// Number of bytes in the interval (0 if `end <= start`).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the interval holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `offset` lies in `[start, end)`.
    pub const fn contains(&self, offset: u64) -> bool {
        self.start <= offset && offset < self.end
    }

    /// The bytes both intervals hold, or `None` if they share no byte (touching intervals
    /// such as `[0, 4)` and `[4, 8)` share none).
    #[must_use]
    pub fn intersect(&self, other: &Interval) -> Option<Interval> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(Interval { start, end })
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

/// A set of bytes, kept as sorted, disjoint, non-adjacent, non-empty [`Interval`]s.
///
/// Touching or overlapping intervals are merged on the way in, empty ones are dropped, so two
/// sets hold the same bytes exactly when they compare equal.
///
/// # Examples
///
/// ```
/// use ckpt_sparse::{Interval, IntervalSet};
///
/// let iv = |s, e| Interval::new(s, e).unwrap();
/// let set = IntervalSet::from_intervals([iv(8, 12), iv(0, 4), iv(4, 6), iv(9, 10)]);
/// assert_eq!(set.as_slice(), &[iv(0, 6), iv(8, 12)]);
/// assert_eq!(set.total_len(), 10);
/// assert_eq!(set.complement(iv(0, 16)).as_slice(), &[iv(6, 8), iv(12, 16)]);
/// assert_eq!(set.align_outward(8).as_slice(), &[iv(0, 16)]);
/// assert_eq!(set.split_at_grid(4), vec![iv(0, 4), iv(4, 6), iv(8, 12)]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct IntervalSet {
    /// Invariant: sorted by start, every interval non-empty, `a.end < b.start` for
    /// neighbours `a`, `b`.
    spans: Vec<Interval>,
}

impl IntervalSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self { spans: Vec::new() }
    }

    /// The set of all bytes in the given intervals, in any order, overlapping or not.
    pub fn from_intervals(iter: impl IntoIterator<Item = Interval>) -> Self {
        let mut all: Vec<Interval> = iter.into_iter().filter(|i| !i.is_empty()).collect();
        // Stable merge sort: cheap for inputs made of a few sorted runs (union of two sets).
        all.sort_by_key(|i| i.start);
        let mut set = Self { spans: Vec::with_capacity(all.len()) };
        for i in all {
            set.push_sorted(i);
        }
        set.spans.shrink_to_fit();
        set
    }

    /// Append an interval whose start is `>=` the start of every interval already held,
    /// merging it with the last one if they overlap or touch.
    fn push_sorted(&mut self, i: Interval) {
        if i.is_empty() {
            return;
        }
        match self.spans.last_mut() {
            Some(last) if i.start <= last.end => last.end = last.end.max(i.end),
            _ => self.spans.push(i),
        }
    }

    /// Add the bytes of `i` (nothing if it is empty), merging with what it overlaps or touches.
    pub fn insert(&mut self, i: Interval) {
        if i.is_empty() {
            return;
        }
        // First interval that overlaps or touches `i` (its end reaches `i.start`).
        let first = self.spans.partition_point(|s| s.end < i.start);
        // One past the last interval that overlaps or touches `i`.
        let past = first
            + self.spans.get(first..).map_or(0, |rest| rest.partition_point(|s| s.start <= i.end));
        let mut merged = i;
        if first < past {
            if let Some(s) = self.spans.get(first) {
                merged.start = merged.start.min(s.start);
            }
            if let Some(s) = self.spans.get(past - 1) {
                merged.end = merged.end.max(s.end);
            }
        }
        // `first <= past <= len` by construction, so the range is valid.
        self.spans.splice(first..past, std::iter::once(merged));
    }

    /// The intervals, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Interval> + '_ {
        self.spans.iter().copied()
    }

    /// The intervals, in ascending order.
    pub fn as_slice(&self) -> &[Interval] {
        &self.spans
    }

    /// Number of (maximal) intervals.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the set holds no byte.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Number of bytes in the set (saturates at `u64::MAX`).
    pub fn total_len(&self) -> u64 {
        self.spans.iter().fold(0u64, |acc, i| acc.saturating_add(i.len()))
    }

    /// Whether `offset` is in the set.
    pub fn contains(&self, offset: u64) -> bool {
        let idx = self.spans.partition_point(|s| s.end <= offset);
        self.spans.get(idx).is_some_and(|s| s.contains(offset))
    }

    /// The first and last byte bounds of the set: `[first start, last end)`, or `None` when
    /// empty.
    pub fn span(&self) -> Option<Interval> {
        match (self.spans.first(), self.spans.last()) {
            (Some(a), Some(b)) => Some(Interval { start: a.start, end: b.end }),
            _ => None,
        }
    }

    /// Bytes in `self` or `other`.
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        let mut out = Self { spans: Vec::with_capacity(self.len() + other.len()) };
        let mut a = self.spans.iter().copied().peekable();
        let mut b = other.spans.iter().copied().peekable();
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if x.start <= y.start {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => None,
            };
            match next {
                Some(i) => out.push_sorted(i),
                None => break,
            }
        }
        out
    }

    /// Bytes in both `self` and `other`.
    #[must_use]
    pub fn intersect(&self, other: &Self) -> Self {
        let mut out = Self::new();
        let mut a = self.spans.iter().peekable();
        let mut b = other.spans.iter().peekable();
        while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
            if let Some(i) = x.intersect(y) {
                out.push_sorted(i);
            }
            // Advance whichever ends first; it cannot meet anything further on the other side.
            if x.end <= y.end {
                a.next();
            } else {
                b.next();
            }
        }
        out
    }

    /// Bytes in `self` but not in `other`.
    #[must_use]
    pub fn subtract(&self, other: &Self) -> Self {
        let mut out = Self::new();
        let cut = &other.spans;
        // Intervals of `other` before `first` end at or before the current start: done with.
        let mut first = 0usize;
        for a in &self.spans {
            first += cut.get(first..).map_or(0, |rest| rest.partition_point(|c| c.end <= a.start));
            let mut cursor = a.start;
            for c in cut.get(first..).unwrap_or_default() {
                if c.start >= a.end {
                    break;
                }
                if c.start > cursor {
                    out.push_sorted(Interval { start: cursor, end: c.start });
                }
                cursor = cursor.max(c.end);
                if cursor >= a.end {
                    break;
                }
            }
            if cursor < a.end {
                out.push_sorted(Interval { start: cursor, end: a.end });
            }
        }
        out
    }

    /// The bytes of `within` that are not in the set (the holes inside `within`).
    #[must_use]
    pub fn complement(&self, within: Interval) -> Self {
        Self::from(within).subtract(self)
    }

    /// The bytes of the set that lie inside `within`.
    #[must_use]
    pub fn clip(&self, within: Interval) -> Self {
        if within.is_empty() {
            return Self::new();
        }
        let first = self.spans.partition_point(|s| s.end <= within.start);
        let mut out = Self::new();
        for s in self.spans.get(first..).unwrap_or_default() {
            if s.start >= within.end {
                break;
            }
            if let Some(i) = s.intersect(&within) {
                out.spans.push(i);
            }
        }
        out
    }

    /// Each interval widened to the grid of `block`-sized cells starting at offset 0 (start
    /// rounded down, end rounded up, saturating at `u64::MAX`), then merged. `block` 0 or 1
    /// leaves the set unchanged.
    #[must_use]
    pub fn align_outward(&self, block: u64) -> Self {
        if block <= 1 {
            return self.clone();
        }
        let mut out = Self { spans: Vec::with_capacity(self.len()) };
        for s in &self.spans {
            let start = s.start - s.start % block;
            let end = s.end.checked_next_multiple_of(block).unwrap_or(u64::MAX);
            out.push_sorted(Interval { start, end });
        }
        out
    }

    /// Every interval cut at the multiples of `block`, in ascending order: each piece lies
    /// inside one grid cell. `block` 0 returns the intervals uncut.
    ///
    /// The result has one entry per grid cell touched, so a small `block` over a large set
    /// makes a long vector.
    pub fn split_at_grid(&self, block: u64) -> Vec<Interval> {
        if block == 0 {
            return self.spans.clone();
        }
        let mut out = Vec::new();
        for s in &self.spans {
            let mut cursor = s.start;
            while cursor < s.end {
                let next = (cursor / block)
                    .checked_add(1)
                    .and_then(|cell| cell.checked_mul(block))
                    .map_or(s.end, |edge| edge.min(s.end));
                out.push(Interval { start: cursor, end: next });
                cursor = next;
            }
        }
        out
    }
}

impl From<Interval> for IntervalSet {
    fn from(i: Interval) -> Self {
        let mut set = Self::new();
        set.push_sorted(i);
        set
    }
}

impl FromIterator<Interval> for IntervalSet {
    fn from_iter<T: IntoIterator<Item = Interval>>(iter: T) -> Self {
        Self::from_intervals(iter)
    }
}

impl Extend<Interval> for IntervalSet {
    fn extend<T: IntoIterator<Item = Interval>>(&mut self, iter: T) {
        for i in iter {
            self.insert(i);
        }
    }
}

impl<'a> IntoIterator for &'a IntervalSet {
    type Item = Interval;
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, Interval>>;

    fn into_iter(self) -> Self::IntoIter {
        self.spans.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(s: u64, e: u64) -> Interval {
        Interval { start: s, end: e }
    }

    #[test]
    fn insert_merges_touching_and_overlapping() {
        let mut set = IntervalSet::new();
        set.insert(iv(10, 20));
        set.insert(iv(30, 40));
        set.insert(iv(20, 30));
        assert_eq!(set.as_slice(), &[iv(10, 40)]);
        set.insert(iv(0, 5));
        set.insert(iv(50, 60));
        set.insert(iv(3, 55));
        assert_eq!(set.as_slice(), &[iv(0, 60)]);
        set.insert(iv(7, 7));
        assert_eq!(set.as_slice(), &[iv(0, 60)]);
        set.insert(iv(61, 62));
        assert_eq!(set.as_slice(), &[iv(0, 60), iv(61, 62)]);
    }

    #[test]
    fn split_at_top_of_range() {
        let set = IntervalSet::from(iv(u64::MAX - 5, u64::MAX));
        let pieces = set.split_at_grid(1 << 63);
        assert_eq!(pieces, vec![iv(u64::MAX - 5, u64::MAX)]);
        assert_eq!(set.align_outward(4096).as_slice(), &[iv(u64::MAX - 4095, u64::MAX)]);
    }
}
