//! The length table of a chunk: the lengths of the buffers that start in the chunk, as
//! runs of `(length, count)` in LEB128 varints. Keeping lengths out of the data stream lets
//! many small buffers compress exactly like one large buffer.
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

/// Most buffers that may start in one chunk; the writer ends a chunk early at this count.
pub const STARTS_MAX: u32 = 16_384;
/// Largest table a chunk may carry: every start its own run of a 10-byte length and a
/// 3-byte count.
pub const TABLE_MAX: usize = STARTS_MAX as usize * 13;

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut alloc::vec::Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
}

/// Builds a chunk's table one buffer length at a time. With `bytes: None` it only counts
/// (for size bounds), so the bound and the writer cannot disagree.
#[derive(Debug, Default, Clone)]
pub struct TableBuilder {
    starts: u32,
    run: Option<(u64, u64)>,
    closed_len: usize,
}

impl TableBuilder {
    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn is_full(&self) -> bool {
        self.starts >= STARTS_MAX
    }

    /// Adds a buffer length; a finished run is appended to `out` if given.
    pub fn push(&mut self, len: u64, out: Option<&mut alloc::vec::Vec<u8>>) {
        self.starts += 1;
        match &mut self.run {
            Some((l, c)) if *l == len => *c += 1,
            run => {
                if let Some((l, c)) = run.take() {
                    self.closed_len += varint_len(l) + varint_len(c);
                    if let Some(out) = out {
                        put_varint(out, l);
                        put_varint(out, c);
                    }
                }
                *run = Some((len, 1));
            }
        }
    }

    /// Ends the table: appends the open run to `out` if given, returns the table's length
    /// and start count, and resets for the next chunk.
    pub fn finish(&mut self, out: Option<&mut alloc::vec::Vec<u8>>) -> (usize, u32) {
        let mut len = self.closed_len;
        if let Some((l, c)) = self.run.take() {
            len += varint_len(l) + varint_len(c);
            if let Some(out) = out {
                put_varint(out, l);
                put_varint(out, c);
            }
        }
        let starts = self.starts;
        *self = Self::default();
        (len, starts)
    }
}

/// Why a table does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableError;

/// Reads buffer lengths back from a chunk's table, checking it as it goes.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableCursor {
    at: usize,
    run_len: u64,
    run_left: u64,
    starts_left: u32,
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, TableError> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *bytes.get(*at).ok_or(TableError)?;
        *at += 1;
        let part = u64::from(b & 0x7F);
        if shift == 63 && part > 1 {
            return Err(TableError);
        }
        v |= part << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(TableError)
}

impl TableCursor {
    pub fn new(starts: u32) -> Self {
        Self { at: 0, run_len: 0, run_left: 0, starts_left: starts }
    }

    pub fn starts_left(&self) -> u32 {
        self.starts_left
    }

    /// The next buffer length, or `None` when every start was read.
    pub fn next(&mut self, table: &[u8]) -> Result<Option<u64>, TableError> {
        if self.starts_left == 0 {
            return Ok(None);
        }
        if self.run_left == 0 {
            self.run_len = get_varint(table, &mut self.at)?;
            self.run_left = get_varint(table, &mut self.at)?;
            if self.run_left == 0 || self.run_left > u64::from(self.starts_left) {
                return Err(TableError);
            }
        }
        self.run_left -= 1;
        self.starts_left -= 1;
        Ok(Some(self.run_len))
    }

    /// Whether the table was read exactly to its end.
    pub fn is_exhausted(&self, table: &[u8]) -> bool {
        self.starts_left == 0 && self.run_left == 0 && self.at == table.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn round_trip(lens: &[u64]) -> Vec<u8> {
        let mut b = TableBuilder::default();
        let mut counted = TableBuilder::default();
        let mut out = Vec::new();
        for &l in lens {
            b.push(l, Some(&mut out));
            counted.push(l, None);
        }
        let (len, starts) = b.finish(Some(&mut out));
        assert_eq!(counted.finish(None), (len, starts));
        assert_eq!((len, starts as usize), (out.len(), lens.len()));
        let mut c = TableCursor::new(starts);
        let back: Vec<u64> = core::iter::from_fn(|| c.next(&out).unwrap()).collect();
        assert_eq!(back, lens);
        assert!(c.is_exhausted(&out));
        out
    }

    #[test]
    fn runs_compress_equal_lengths() {
        assert_eq!(round_trip(&[50; 1300]).len(), 1 + 2);
        round_trip(&[0, 0, 1, u64::MAX, 127, 128, 128, 16_384, 0]);
        round_trip(&[]);
    }

    #[test]
    fn bad_tables_are_errors() {
        let good = round_trip(&[5, 5, 7]);
        for len in 0..good.len() {
            let mut c = TableCursor::new(3);
            let r: Result<Vec<_>, _> =
                core::iter::from_fn(|| c.next(&good[..len]).transpose()).collect();
            assert!(r.is_err() || !c.is_exhausted(&good[..len]), "cut at {len}");
        }
        // A run longer than the starts left, a zero count, an over-long varint.
        assert!(TableCursor::new(1).next(&[5, 2]).is_err());
        assert!(TableCursor::new(1).next(&[5, 0]).is_err());
        assert!(TableCursor::new(1).next(&[0xFF; 11]).is_err());
    }
}
