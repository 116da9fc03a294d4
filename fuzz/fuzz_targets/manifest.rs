//! Invariant: the tree-checkpoint manifest decoder (`ckpt_tree::manifest::Manifest::decode`)
//! never panics on arbitrary bytes and never allocates more than the input justifies (entry
//! and extent counts are checked against the bytes present). A manifest that decodes:
//! - has a frame size from 1 to `MAX_FRAME_SIZE` and no path twice;
//! - holds only paths that are safe to restore (`path_problem` is `None`), sizes and targets
//!   that fit each entry's kind, modes within 0o7777, nanoseconds below 10^9, and sparse
//!   extents that are ascending, non-empty, not touching and inside the file;
//! - inherits (stored ranges) only on files, only with a parent, with stored ranges that are
//!   ascending, non-empty, not touching, each inside one content range and on the 4 KiB
//!   block grid or at that range's ends;
//! - re-encodes to exactly its input when the input is version 4 (versions 1 to 3
//!   re-encode as version 4), and decode(encode(m)) == m;
//! - gives a data layout that restore can use: `data_bytes` does not overflow and equals the
//!   sum of the entries' `data_len`; and, when it has at most `MAX_CHECKED_PIECES` pieces,
//!   `data_frames` cuts exactly each entry's `data_ranges`, in manifest order, into frames of
//!   `frame_size` bytes (the last one possibly shorter).
//!
//! Then the input drives `arbitrary` to build a manifest (mostly valid entries, some broken
//! on purpose), which must decode after encoding exactly when it satisfies the rules of the
//! format's documentation (`crates/tree/src/manifest.rs`), and then to itself.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ckpt_tree::manifest::{
    BLOCK_SIZE, Entry, Kind, MAX_FRAME_SIZE, MAX_PATH, MAX_XATTR_NAME, MAX_XATTR_VALUE, Manifest,
    Owner, ParentLink, Xattr, path_problem,
};
use libfuzzer_sys::fuzz_target;

/// Layouts with more pieces than this are not materialised by the target (a hostile manifest
/// can describe exabytes in frames of one byte; see the report in `docs/fuzzing.md`).
const MAX_CHECKED_PIECES: u128 = 1 << 16;

/// The rules a decoded entry must satisfy, as the format's documentation states them.
fn entry_problem(e: &Entry) -> Option<&'static str> {
    if let Some(p) = path_problem(&e.path) {
        return Some(p);
    }
    if e.mode > 0o7777 {
        return Some("mode");
    }
    if e.mtime_nsec >= 1_000_000_000 {
        return Some("nanoseconds");
    }
    if e.target.len() > MAX_PATH {
        return Some("target length");
    }
    let kind_ok = match e.kind {
        Kind::File => e.target.is_empty(),
        Kind::Symlink => !e.target.is_empty() && !e.target.contains(&0) && e.size == 0,
        Kind::HardLink => path_problem(&e.target).is_none() && e.size == 0,
        _ => e.target.is_empty() && e.size == 0,
    };
    if !kind_ok {
        return Some("size or target for its kind");
    }
    if e.owner.is_some_and(|o| o.uid == u32::MAX || o.gid == u32::MAX) {
        return Some("owner id 4294967295");
    }
    if e.device.is_some() != matches!(e.kind, Kind::CharDevice | Kind::BlockDevice) {
        return Some("device numbers");
    }
    let names_ok = e.xattrs.windows(2).all(|w| w[0].name < w[1].name)
        && e.xattrs.iter().all(|x| {
            !x.name.is_empty()
                && x.name.len() <= MAX_XATTR_NAME
                && !x.name.contains(&0)
                && x.value.len() <= MAX_XATTR_VALUE
        });
    if !names_ok {
        return Some("xattrs");
    }
    if let Some(stored) = &e.stored {
        if e.kind != Kind::File {
            return Some("stored ranges on an entry that is not a file");
        }
        let content = e.content_ranges();
        let mut end_of_previous: Option<u64> = None;
        for &(offset, len) in stored {
            let Some(end) = offset.checked_add(len) else { return Some("stored overflow") };
            let within = content.iter().find(|&&(o, l)| o <= offset && end <= o + l);
            let on_grid = within.is_some_and(|&(o, l)| {
                (offset % BLOCK_SIZE == 0 || offset == o) && (end % BLOCK_SIZE == 0 || end == o + l)
            });
            if len == 0 || !on_grid || end_of_previous.is_some_and(|p| p >= offset) {
                return Some("stored ranges");
            }
            end_of_previous = Some(end);
        }
    }
    match (&e.extents, e.kind) {
        (None, _) => None,
        (Some(_), kind) if kind != Kind::File => Some("extents on an entry that is not a file"),
        (Some(x), _) => {
            let mut end_of_previous: Option<u64> = None;
            for &(offset, len) in x {
                let Some(end) = offset.checked_add(len) else { return Some("extent overflow") };
                if len == 0 || end > e.size || end_of_previous.is_some_and(|p| p >= offset) {
                    return Some("extents");
                }
                end_of_previous = Some(end);
            }
            None
        }
    }
}

fn check_layout(m: &Manifest) {
    let total = m.entries.iter().map(|e| u128::from(e.data_len())).sum::<u128>();
    assert_eq!(u128::from(m.data_bytes()), total, "data_bytes differs from the sum of data_len");
    let pieces: u128 = m
        .entries
        .iter()
        .flat_map(Entry::data_ranges)
        .map(|(_, len)| u128::from(len) / u128::from(m.frame_size) + 2)
        .sum();
    if pieces > MAX_CHECKED_PIECES {
        return;
    }
    let frames = m.data_frames();
    let mut cursor =
        m.entries.iter().enumerate().flat_map(|(i, e)| {
            e.data_ranges().into_iter().map(move |(offset, len)| (i, offset, len))
        });
    let mut current: Option<(usize, u64, u64)> = None;
    for (f, frame) in frames.iter().enumerate() {
        let len: u64 = frame.iter().map(|p| p.len).sum();
        if f + 1 < frames.len() {
            assert_eq!(len, m.frame_size, "frame {f} is not full");
        } else {
            assert!(len > 0 && len <= m.frame_size, "last frame holds {len} bytes");
        }
        for p in frame {
            assert!(p.len > 0, "an empty piece");
            let (entry, offset, rest) = match current.take() {
                Some(c) => c,
                None => cursor.next().expect("a piece beyond the entries' data"),
            };
            assert_eq!((p.entry, p.offset), (entry, offset), "pieces out of order");
            assert!(p.len <= rest, "a piece past its range");
            if p.len < rest {
                current = Some((entry, offset + p.len, rest - p.len));
            }
        }
    }
    assert!(current.is_none() && cursor.next().is_none(), "data left out of the frames");
}

fn check_decode(data: &[u8]) {
    let m = match Manifest::decode(data) {
        Ok(m) => m,
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
            return;
        }
    };
    assert!(m.frame_size > 0, "a zero frame size decoded");
    assert!(m.frame_size <= MAX_FRAME_SIZE, "a frame size over the maximum decoded");
    assert!(unique_paths(&m), "a manifest with a path twice decoded");
    for (i, e) in m.entries.iter().enumerate() {
        if let Some(problem) = entry_problem(e) {
            panic!("decoded entry {i} breaks the format's rules ({problem}): {e:?}");
        }
    }
    // A hard link names an earlier entry that is neither a directory nor a hard link.
    for (i, e) in m.entries.iter().enumerate() {
        if e.kind == Kind::HardLink {
            let ok = m.entries[..i].iter().any(|t| {
                t.path == e.target && !matches!(t.kind, Kind::Dir | Kind::HardLink)
            });
            assert!(ok, "entry {i}: a hard link to no earlier linkable entry decoded");
        }
    }
    assert!(
        m.parent.is_some() || m.entries.iter().all(|e| e.stored.is_none()),
        "an entry inherits in a manifest without a parent"
    );
    let encoded = m.encode();
    if data.get(4..6) == Some(&4u16.to_le_bytes()[..]) {
        assert!(encoded == data, "a version 4 manifest re-encodes to other bytes");
    }
    assert_eq!(Manifest::decode(&encoded).as_ref(), Ok(&m), "decode(encode(m)) != m");
    check_layout(&m);
}

fn unique_paths(m: &Manifest) -> bool {
    let mut seen = std::collections::HashSet::new();
    m.entries.iter().all(|e| seen.insert(e.path.as_slice()))
}

fn path(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    const PARTS: [&[u8]; 8] = [b"a", b"dir", b"f.txt", b"\xff\xfe", b".", b"..", b"", b"x\0y"];
    let mut out = Vec::new();
    if u.ratio(1, 16)? {
        out.push(b'/');
    }
    let n = u.int_in_range(1..=4)?;
    for i in 0..n {
        if i > 0 {
            out.push(b'/');
        }
        // Mostly safe components, some of every kind restore must refuse.
        let part = if u.ratio(7, 8)? { PARTS[u.choose_index(4)?] } else { *u.choose(&PARTS)? };
        out.extend_from_slice(part);
    }
    if u.ratio(1, 64)? {
        out.resize(MAX_PATH + 1, b'z');
    }
    Ok(out)
}

fn entry(u: &mut Unstructured<'_>) -> arbitrary::Result<Entry> {
    let kind = *u.choose(&[
        Kind::Dir,
        Kind::File,
        Kind::Symlink,
        Kind::Fifo,
        Kind::CharDevice,
        Kind::BlockDevice,
    ])?;
    let broken = u.ratio(1, 8)?;
    let mut e = Entry {
        kind,
        path: path(u)?,
        mode: if broken { u32::arbitrary(u)? } else { u.int_in_range(0..=0o7777)? },
        mtime_sec: i64::arbitrary(u)?,
        mtime_nsec: if broken { u32::arbitrary(u)? } else { u.int_in_range(0..=999_999_999)? },
        size: 0,
        target: Vec::new(),
        extents: None,
        ..Entry::default()
    };
    match kind {
        Kind::File => {
            e.size = u64::arbitrary(u)? >> u.int_in_range(0..=63)?;
            if u.ratio(1, 2)? {
                let mut x = Vec::new();
                let mut at = 0u64;
                for i in 0..u.int_in_range(0..=6)? {
                    let least = u64::from(!broken && i > 0);
                    let gap = u.int_in_range(if broken { 0..=3 } else { least..=1 << 20 })?;
                    let len = u.int_in_range(if broken { 0..=3 } else { 1..=1 << 20 })?;
                    let Some(offset) = at.checked_add(gap) else { break };
                    x.push((offset, len));
                    at = offset.saturating_add(len);
                }
                let slack = if broken { 0 } else { u.int_in_range(0..=4096)? };
                e.size = e.size.max(at).saturating_add(slack);
                e.extents = Some(x);
            }
        }
        Kind::Symlink => {
            e.target = Vec::<u8>::arbitrary(u)?;
            e.target.truncate(MAX_PATH + usize::from(broken));
        }
        Kind::CharDevice | Kind::BlockDevice => e.device = Some(<(u32, u32)>::arbitrary(u)?),
        _ => {}
    }
    if u.ratio(3, 4)? {
        let uid = if broken { u32::arbitrary(u)? } else { u.int_in_range(0..=u32::MAX - 1)? };
        e.owner = Some(Owner { uid, gid: u.int_in_range(0..=u32::MAX - 1)? });
    }
    for i in 0..u.int_in_range(0..=3)? {
        let mut name = format!("user.{i}").into_bytes();
        if broken && u.ratio(1, 4)? {
            name = Vec::<u8>::arbitrary(u)?;
        }
        let len = u.int_in_range(0..=if broken { MAX_XATTR_VALUE + 1 } else { 64 })?;
        e.xattrs.push(Xattr { name, value: vec![b'v'; len] });
    }
    if broken && u.ratio(1, 4)? {
        // One field that does not fit the kind.
        match u.int_in_range(0..=2)? {
            0 => e.size = 1,
            1 => e.target = b"t".to_vec(),
            _ => e.extents = Some(Vec::new()),
        }
    }
    Ok(e)
}

fn built(u: &mut Unstructured<'_>) -> arbitrary::Result<Manifest> {
    let frame_size = if u.ratio(1, 32)? {
        *u.choose(&[0, MAX_FRAME_SIZE, MAX_FRAME_SIZE + 1, u64::MAX])?
    } else {
        u.int_in_range(1..=1u64 << 24)?
    };
    let mut entries = Vec::new();
    u.arbitrary_loop(None, Some(32), |u| {
        entries.push(entry(u)?);
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    let parent = if u.ratio(1, 4)? {
        let mut name = Vec::<u8>::arbitrary(u)?;
        name.truncate(MAX_PATH);
        Some(ParentLink { id: <[u8; 16]>::arbitrary(u)?, digest: u64::arbitrary(u)?, name })
    } else {
        None
    };
    for e in &mut entries {
        let broken = u.ratio(1, 16)?;
        if (parent.is_some() || broken) && u.ratio(1, 2)? {
            e.stored = Some(stored_ranges(u, e, broken)?);
        }
    }
    Ok(Manifest { frame_size, entries, parent })
}

/// Stored ranges for `e`: whole grid blocks of its content ranges (some broken on purpose).
fn stored_ranges(
    u: &mut Unstructured<'_>,
    e: &Entry,
    broken: bool,
) -> arbitrary::Result<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (o, l) in e.content_ranges() {
        let end = o.saturating_add(l);
        let mut at = o;
        for _ in 0..u.int_in_range(0..=3)? {
            let skip = u.int_in_range(0..=4u64)? * BLOCK_SIZE;
            let start = at.saturating_add(skip);
            let start = if start == o { o } else { start - start % BLOCK_SIZE };
            let len = u.int_in_range(1..=4u64)? * BLOCK_SIZE;
            let stop = start.saturating_add(len);
            let stop = if stop >= end { end } else { stop - stop % BLOCK_SIZE };
            if start < at || start >= stop {
                break;
            }
            if out.last().is_some_and(|&(po, pl)| po + pl >= start) {
                break;
            }
            out.push((start, stop - start));
            at = stop.saturating_add(1);
        }
    }
    if broken && u.ratio(1, 2)? {
        out.push((u64::arbitrary(u)?, u64::arbitrary(u)?));
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    check_decode(data);
    if let Ok(m) = built(&mut Unstructured::new(data)) {
        // The stored data of all files together must fit a u64 (the decoder refuses a total
        // that overflows, which no real tree can have).
        let total_fits =
            m.entries.iter().try_fold(0u64, |total, e| total.checked_add(e.data_len())).is_some();
        let valid = m.frame_size > 0
            && (m.parent.is_some() || m.entries.iter().all(|e| e.stored.is_none()))
            && m.parent.as_ref().is_none_or(|p| !p.name.is_empty() && !p.name.contains(&0))
            && m.frame_size <= MAX_FRAME_SIZE
            && unique_paths(&m)
            && total_fits
            && m.entries.iter().all(|e| entry_problem(e).is_none());
        match Manifest::decode(&m.encode()) {
            Ok(back) => {
                assert!(valid, "a manifest against the rules decodes: {m:?}");
                assert_eq!(back, m, "a built manifest does not survive encode -> decode");
                check_layout(&back);
            }
            Err(e) => assert!(!valid, "a valid manifest is refused ({e}): {m:?}"),
        }
    }
});
