//! Invariant: `ckpt_poolset::grammar::parse_bytes` on arbitrary bytes never panics and
//! never touches the filesystem; its error names a line of the input and a column inside
//! that line (1-based), and displays without panicking.
//! It agrees with `parse` on UTF-8 text. A set that parses:
//! - has at least one replica, none empty, every part size in 1..=2^63-1, every path
//!   absolute, no path twice;
//! - writes back with `to_text` (always `Ok`: a parsed path fits on a poolset line), and the
//!   text re-parses to an equal set and is a fixed point (`to_text` of the re-parsed set is
//!   the same text);
//! - has consistent size math: per replica, `replica_extents` gives one extent per part,
//!   contiguous from `header_size(0)` (each starts where the previous ends), each at file
//!   offset `header_size(part)`, inside its part file, with length `part_usable_size`; the
//!   lengths sum to `replica_usable_size`; `replica_size` is that sum plus the first header;
//!   `pool_size` and `pool_usable_size` are the minima over replicas; `validate` against
//!   PMDK's limits returns without panicking.
#![no_main]

use ckpt_poolset::grammar::{Limits, MAX_PART_SIZE, PART_ALIGNMENT, PoolSet, parse, parse_bytes};
use libfuzzer_sys::fuzz_target;

fn check_sizes(set: &PoolSet) {
    assert!(!set.replicas.is_empty(), "a parsed set without replicas");
    let mut min_size = u64::MAX;
    let mut min_usable = u64::MAX;
    for (r, replica) in set.replicas.iter().enumerate() {
        assert!(!replica.parts.is_empty(), "replica {r} has no parts");
        let extents = set.replica_extents(r).expect("extents of an existing replica");
        assert_eq!(extents.len(), replica.parts.len(), "one extent per part");
        let mut at = set.header_size(0);
        let mut sum = 0u64;
        for (p, (e, part)) in extents.iter().zip(&replica.parts).enumerate() {
            assert!(part.size >= 1 && part.size <= MAX_PART_SIZE, "part size out of range");
            assert!(part.path.is_absolute(), "a relative part path parsed");
            assert_eq!(e.part, p);
            assert_eq!(e.pool_offset, at, "replica {r} part {p}: extents not contiguous");
            assert_eq!(e.file_offset, set.header_size(p));
            assert_eq!(set.part_header_size(r, p), Some(set.header_size(p)));
            assert_eq!(Some(e.len), set.part_usable_size(r, p));
            let aligned = part.size / PART_ALIGNMENT * PART_ALIGNMENT;
            assert_eq!(e.len, aligned.saturating_sub(set.header_size(p)));
            assert!(e.file_offset + e.len <= part.size.max(e.file_offset), "extent past its part");
            at = at.checked_add(e.len).expect("pool offsets overflow");
            sum = sum.checked_add(e.len).expect("usable size overflows");
        }
        assert_eq!(set.part_usable_size(r, replica.parts.len()), None);
        assert_eq!(set.replica_usable_size(r), Some(sum), "replica {r}: sum of extents");
        let size = set.replica_size(r).expect("size of an existing replica");
        assert_eq!(size, sum + set.header_size(0), "replica {r}: size");
        assert_eq!(size, at, "replica {r}: extents do not end at the replica size");
        assert_eq!(set.replica_reservation_size(r), Some(size), "a parsed set has no directories");
        min_size = min_size.min(size);
        min_usable = min_usable.min(sum);
    }
    let r = set.replicas.len();
    assert_eq!(set.replica_extents(r), None);
    assert_eq!((set.replica_size(r), set.replica_usable_size(r)), (None, None));
    assert_eq!(set.pool_size(), min_size);
    assert_eq!(set.pool_usable_size(), min_usable);
    let _ = set.validate(&Limits::PMEMOBJ);
    let _ = set.validate(&Limits { min_part: 0, min_pool: 0 });
}

fn check_paths(set: &PoolSet) {
    let mut seen = std::collections::HashSet::new();
    for part in set.replicas.iter().flat_map(|r| &r.parts) {
        assert!(seen.insert(part.path.clone()), "{} twice in a parsed set", part.path.display());
    }
    assert!(!set.is_directory_based(), "parse found directories without the filesystem");
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        match (parse(text), &parsed) {
            (Ok(a), Ok(b)) => assert_eq!(&a, b, "parse and parse_bytes disagree"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "different errors"),
            (a, b) => panic!("parse gave {a:?} but parse_bytes {b:?}"),
        }
    }
    let set = match parsed {
        Ok(set) => set,
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
            let (line, column) = e.position().unwrap_or_else(|| panic!("no position: {e}"));
            let text = data.split(|&b| b == b'\n').nth(line - 1);
            let text = text.unwrap_or_else(|| panic!("line {line} is past the input: {e}"));
            let chars = String::from_utf8_lossy(text).chars().count();
            assert!((1..=chars + 1).contains(&column), "column {column} of {chars}: {e}");
            return;
        }
    };
    check_paths(&set);
    check_sizes(&set);
    let text = set.to_text().unwrap_or_else(|e| panic!("a parsed set does not write back: {e}"));
    let again = parse(&text).unwrap_or_else(|e| panic!("to_text wrote text that fails: {e}"));
    assert_eq!(again, set, "the written text parses to another set");
    assert_eq!(again.to_text().expect("to_text of the re-parsed set"), text, "not a fixed point");
});
