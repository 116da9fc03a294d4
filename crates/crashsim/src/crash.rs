//! The states a power cut could leave: at every crash point (after each op), the durable
//! state plus chosen subsets of what is pending, deduplicated by the hash of the tree.

use crate::fs::{Fs, Ino, Kind, Ns, Op, Recorded, apply_data, apply_ns, content_hash, show, walk};
use crate::{Bounds, Error, NamespaceModel};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;

/// A pending data op kept whole or, for a torn write, only in some byte ranges.
#[derive(Debug, Clone)]
struct Effect {
    op: usize,
    keep: Option<Vec<(u64, u64)>>,
}

/// One way a file's pending ops could have reached the disk.
#[derive(Debug, Clone)]
struct FileVariant {
    effects: Vec<Effect>,
    label: String,
    hash: u128,
}

/// A tree to write: relative paths, parents first, `None` for directories and the bytes
/// for files.
pub(crate) type Tree = Vec<(PathBuf, Option<Vec<u8>>)>;

/// A crash state: the tree to materialise and what it is.
pub(crate) struct State<'a> {
    /// What to write.
    pub tree: Tree,
    /// Which crash point and which choices.
    pub label: String,
    /// Ops applied before the crash.
    pub point: usize,
    /// What the operation had written to its standard output and error by then.
    pub stdout: &'a [u8],
    /// See `stdout`.
    pub stderr: &'a [u8],
}

/// What the enumeration counted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub crash_points: usize,
    pub explored: usize,
    pub distinct: usize,
    pub truncated: bool,
}

/// Up to `max` indices of `0..n`, evenly spread, first and last included.
fn sample(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    if max < 2 {
        return (0..max).collect();
    }
    let mut out: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    out.dedup();
    out
}

/// The byte ranges of a write cut at sector boundaries (absolute file offsets).
fn sectors(offset: u64, len: u64, sector: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let end = offset + len;
    let mut at = offset;
    while at < end {
        let next = ((at / sector) + 1) * sector;
        out.push((at, next.min(end)));
        at = next.min(end);
    }
    out
}

fn content(fs: &Fs, ops: &[Recorded], ino: Ino, effects: &[Effect]) -> Vec<u8> {
    let mut c = fs.inodes[ino].durable.clone();
    for e in effects {
        if let Some(r) = ops.get(e.op) {
            apply_data(&mut c, &r.op, e.keep.as_deref());
        }
    }
    c
}

fn whole(ops: &[usize]) -> Vec<Effect> {
    ops.iter().map(|&op| Effect { op, keep: None }).collect()
}

/// The variants of file `ino`'s pending ops: none kept (index 0), all kept (index 1),
/// ordered prefixes, a torn write at the end of a prefix (first sectors, all but the first,
/// only the last), and each data op lost with the later ones kept.
fn file_variants(fs: &Fs, ops: &[Recorded], ino: Ino, b: &Bounds) -> Vec<FileVariant> {
    let pending = &fs.inodes[ino].pending;
    let l = pending.len();
    let mut out: Vec<(Vec<Effect>, String)> = vec![
        (Vec::new(), "no unsynced op kept".into()),
        (whole(pending), format!("all {l} unsynced ops kept")),
    ];
    let call = |k: usize| ops.get(pending[k]).map_or("?", |r| r.call.as_str());
    if l >= 2 {
        for k in sample(l - 1, b.max_prefixes).into_iter().map(|k| k + 1) {
            out.push((whole(&pending[..k]), format!("first {k} of {l} unsynced ops kept")));
        }
    }
    for k in sample(l, b.max_prefixes) {
        let Some(Op::Write { offset, data, .. }) = ops.get(pending[k]).map(|r| &r.op) else {
            continue;
        };
        let pieces = sectors(*offset, data.len() as u64, b.sector);
        let s = pieces.len();
        if s < 2 {
            continue;
        }
        let base = whole(&pending[..k]);
        let mut cut = |keep: Vec<(u64, u64)>, what: String| {
            let mut effects = base.clone();
            effects.push(Effect { op: pending[k], keep: Some(keep) });
            let before = if k == 0 {
                String::new()
            } else {
                format!("first {k} of {l} unsynced ops kept, then ")
            };
            out.push((effects, format!("{before}{} torn: {what}", call(k))));
        };
        let mut firsts = vec![1, s / 2, s - 1];
        firsts.sort_unstable();
        firsts.dedup();
        for j in firsts.into_iter().filter(|&j| j >= 1 && j < s) {
            cut(pieces[..j].to_vec(), format!("first {j} of {s} sectors"));
        }
        cut(pieces[1..].to_vec(), format!("all {s} sectors but the first"));
        cut(pieces[s - 1..].to_vec(), format!("only the last of {s} sectors"));
    }
    if l >= 2 {
        for k in sample(l - 1, b.max_prefixes) {
            let is_data = matches!(
                ops.get(pending[k]).map(|r| &r.op),
                Some(Op::Write { .. } | Op::Zero { .. })
            );
            if !is_data {
                continue;
            }
            let effects: Vec<Effect> = pending
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != k)
                .map(|(_, &op)| Effect { op, keep: None })
                .collect();
            out.push((effects, format!("all {l} unsynced ops kept but {} (lost)", call(k))));
        }
    }
    out.into_iter()
        .map(|(effects, label)| {
            let hash = content_hash(&content(fs, ops, ino, &effects));
            FileVariant { effects, label, hash }
        })
        .collect()
}

/// Which pending namespace ops (positions in `pending_ns`) each variant keeps.
fn ns_variants(p: usize, b: &Bounds) -> Vec<Vec<usize>> {
    let prefixes = (0..=p).map(|k| (0..k).collect());
    match b.namespace {
        NamespaceModel::Journaled => prefixes.collect(),
        NamespaceModel::Independent if p <= b.max_subset_ops => {
            (0..1usize << p).map(|mask| (0..p).filter(|i| mask & (1 << i) != 0).collect()).collect()
        }
        NamespaceModel::Independent => {
            let mut out: Vec<Vec<usize>> = prefixes.collect();
            for k in 0..p {
                out.push((0..p).filter(|&i| i != k).collect());
                out.push(vec![k]);
            }
            out.sort();
            out.dedup();
            out
        }
    }
}

/// The pending files of one crash point and their variants.
struct Point<'a> {
    fs: &'a Fs,
    ops: &'a [Recorded],
    files: Vec<(Ino, Rc<Vec<FileVariant>>)>,
    index: HashMap<Ino, usize>,
}

/// A choice of file variants: every pending file at `base` (0 none, 1 all), except one
/// (position in `files`, variant).
#[derive(Debug, Clone, Copy)]
struct Choice {
    base: usize,
    over: Option<(usize, usize)>,
}

impl Point<'_> {
    fn variant(&self, ino: Ino, c: Choice) -> Option<&FileVariant> {
        let fi = *self.index.get(&ino)?;
        let vi = match c.over {
            Some((f, vi)) if f == fi => vi,
            _ => c.base,
        };
        self.files.get(fi)?.1.get(vi)
    }

    fn hash(&self, entries: &[(PathBuf, Ino)], c: Choice) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (path, ino) in entries {
            let inode = &self.fs.inodes[*ino];
            let content = match inode.kind {
                Kind::Dir => 0,
                Kind::File => self.variant(*ino, c).map_or(inode.durable_hash, |v| v.hash),
            };
            h.update(path.as_os_str().as_encoded_bytes());
            h.update(&[0, u8::from(inode.kind == Kind::Dir)]);
            h.update(&content.to_le_bytes());
        }
        h.digest128()
    }

    /// The tree to write, and what each pending file got.
    fn tree(&self, entries: &[(PathBuf, Ino)], c: Choice) -> (Tree, Vec<String>) {
        let mut tree = Vec::with_capacity(entries.len());
        let mut labels = Vec::new();
        for (path, ino) in entries {
            let inode = &self.fs.inodes[*ino];
            let data = match (inode.kind, self.variant(*ino, c)) {
                (Kind::Dir, _) => None,
                (Kind::File, Some(v)) => {
                    labels.push(format!("{}: {}", show(path), v.label));
                    Some(content(self.fs, self.ops, *ino, &v.effects))
                }
                (Kind::File, None) => Some(inode.durable.clone()),
            };
            tree.push((path.clone(), data));
        }
        (tree, labels)
    }

    /// The choices worth trying with this namespace: all dropped, all kept, and each
    /// variant of each reachable pending file with the others all dropped or all kept.
    fn choices(&self, entries: &[(PathBuf, Ino)]) -> Vec<Choice> {
        let mut out = vec![Choice { base: 0, over: None }];
        if !self.files.is_empty() {
            out.push(Choice { base: 1, over: None });
        }
        for (fi, (ino, vars)) in self.files.iter().enumerate() {
            if entries.iter().any(|(_, i)| i == ino) {
                for vi in 2..vars.len() {
                    out.push(Choice { base: 0, over: Some((fi, vi)) });
                    out.push(Choice { base: 1, over: Some((fi, vi)) });
                }
            }
        }
        out
    }
}

/// Walks every crash point of `ops` from `initial` and calls `visit` once per distinct
/// state (tree and output so far).
///
/// # Errors
/// Whatever `visit` returns.
pub(crate) fn enumerate(
    initial: &Fs,
    ops: &[Recorded],
    b: &Bounds,
    visit: &mut dyn FnMut(&State<'_>) -> Result<(), Error>,
) -> Result<Counts, Error> {
    let mut counts = Counts::default();
    let mut seen: HashSet<(u128, usize, usize)> = HashSet::new();
    let mut cache: HashMap<(Ino, u64, usize), Rc<Vec<FileVariant>>> = HashMap::new();
    let mut fs = initial.clone();
    fs.journaled = b.namespace == NamespaceModel::Journaled;
    for point in 0..=ops.len() {
        if point > 0 {
            fs.step(ops, point - 1);
        }
        counts.crash_points += 1;
        let mut files = Vec::new();
        for (ino, inode) in fs.inodes.iter().enumerate() {
            if inode.kind == Kind::File && !inode.pending.is_empty() {
                let key = (ino, inode.generation, inode.pending.len());
                let v = cache
                    .entry(key)
                    .or_insert_with(|| Rc::new(file_variants(&fs, ops, ino, b)))
                    .clone();
                files.push((ino, v));
            }
        }
        cache
            .retain(|k, _| fs.inodes[k.0].generation == k.1 && fs.inodes[k.0].pending.len() == k.2);
        let index = files.iter().enumerate().map(|(i, (ino, _))| (*ino, i)).collect();
        let at = Point { fs: &fs, ops, files, index };
        for applied in ns_variants(fs.pending_ns.len(), b) {
            let mut ns: Ns = fs.dur.clone();
            for &i in &applied {
                if let Some(r) = fs.pending_ns.get(i).and_then(|p| ops.get(p.op)) {
                    apply_ns(&mut ns, &r.op);
                }
            }
            let mut entries: Vec<(PathBuf, Ino)> = Vec::new();
            walk(&ns, &mut |p, ino| entries.push((p.to_path_buf(), ino)));
            for c in at.choices(&entries) {
                counts.explored += 1;
                if !seen.insert((at.hash(&entries, c), fs.stdout.len(), fs.stderr.len())) {
                    continue;
                }
                counts.distinct += 1;
                let (tree, labels) = at.tree(&entries, c);
                let label = describe(&fs, ops, point, &applied, &labels);
                visit(&State { tree, label, point, stdout: &fs.stdout, stderr: &fs.stderr })?;
                if counts.distinct >= b.max_distinct {
                    counts.truncated = true;
                    return Ok(counts);
                }
            }
        }
    }
    Ok(counts)
}

fn describe(
    fs: &Fs,
    ops: &[Recorded],
    point: usize,
    applied: &[usize],
    files: &[String],
) -> String {
    let mut s = match point.checked_sub(1).and_then(|i| ops.get(i)) {
        Some(last) => format!("crash after op {point} of {} ({last})", ops.len()),
        None => format!("crash before op 1 of {}", ops.len()),
    };
    if !fs.pending_ns.is_empty() {
        let (mut kept, mut lost) = (Vec::new(), Vec::new());
        for (i, p) in fs.pending_ns.iter().enumerate() {
            let call = ops.get(p.op).map_or("?", |r| r.call.as_str());
            if applied.contains(&i) { kept.push(call) } else { lost.push(call) }
        }
        let _ =
            write!(s, "; unsynced names: kept [{}], lost [{}]", kept.join(", "), lost.join(", "));
    }
    if !files.is_empty() {
        s.push_str("; unsynced data: ");
        s.push_str(&files.join("; "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_follow_absolute_boundaries() {
        assert_eq!(sectors(100, 1000, 512), vec![(100, 512), (512, 1024), (1024, 1100)]);
        assert_eq!(sectors(0, 512, 512), vec![(0, 512)]);
    }

    #[test]
    fn samples_keep_both_ends() {
        assert_eq!(sample(3, 16), vec![0, 1, 2]);
        let s = sample(100, 5);
        assert_eq!((s[0], *s.last().unwrap(), s.len()), (0, 99, 5));
    }

    #[test]
    fn namespace_subsets_are_bounded() {
        let b = Bounds::default();
        assert_eq!(ns_variants(3, &b).len(), 8);
        let many = ns_variants(10, &b);
        assert!(many.len() < 40 && many.contains(&vec![]) && many.contains(&(0..10).collect()));
        let ordered = Bounds { namespace: NamespaceModel::Journaled, ..Bounds::default() };
        assert_eq!(ns_variants(3, &ordered).len(), 4);
    }
}
