//! Checkpoints that build on a parent (format version 2): a writer given the parent's chunk
//! checksums stores only the chunks that changed, a reader given the parent restores the
//! same bytes by every path, and every way the parent or the child can be wrong is refused
//! with an error that names it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::cast_possible_truncation)]

mod common;

use ckpt_frame_core::{
    CheckpointId, Error, ErrorKind, FrameEncoder, InheritedChunks, IoError, Misuse, ParentChunks,
    ParentReader, Reader, Sink, SliceSource, Style, VecSink, Writer, scan,
};
use common::{Plan, content};

fn id(n: u8) -> CheckpointId {
    CheckpointId::from_bytes([n; 16])
}

/// Frames mixing what the chunker treats differently: small buffers gathered into shared
/// chunks, empty ones, and large ones cut into direct chunks, in both styles.
fn state(seed: u64) -> Plan {
    vec![
        (
            Style::Raw,
            vec![
                content(seed, 100, false),
                content(seed + 1, 3000, false),
                Vec::new(),
                content(seed + 2, 700_000, false),
                content(seed + 3, 20_000, false),
            ],
        ),
        (
            Style::Lz4,
            vec![content(seed + 4, 1_200_000, true), content(seed + 5, 9, true), Vec::new()],
        ),
        (Style::Lz4, (0..300).map(|i| content(seed + 10 + i, 500, true)).collect()),
        (Style::Raw, Vec::new()),
    ]
}

/// Flips one byte at each of `spots` (frame, buffer, offset).
fn changed(plan: &Plan, spots: &[(usize, usize, usize)]) -> Plan {
    let mut out = plan.clone();
    for &(f, b, at) in spots {
        out[f].1[b][at] ^= 0x5a;
    }
    out
}

fn write(n: u8, plan: &Plan, parent: Option<&[u8]>) -> (Vec<u8>, u64) {
    let (sink, inherited) = write_into(VecSink::new(), n, plan, parent);
    (sink.into_inner(), inherited)
}

/// Writes `plan` into `sink` as checkpoint `n`, on `parent` if given; returns the sink and
/// the bytes inherited.
fn write_into<S: Sink>(sink: S, n: u8, plan: &Plan, parent: Option<&[u8]>) -> (S, u64) {
    let mut w = Writer::new(sink, id(n));
    if let Some(p) = parent {
        let mut r = Reader::open(SliceSource::new(p)).unwrap();
        w.set_parent(ParentChunks::read(&mut r).unwrap()).unwrap();
    }
    for (style, bufs) in plan {
        let mut f = w.open_frame(*style).unwrap();
        for b in bufs {
            f.add(b).unwrap();
        }
        f.close().unwrap();
    }
    w.finish().unwrap();
    let inherited = w.inherited_bytes();
    (w.into_sink(), inherited)
}

/// Restores every frame of `bytes` through `parent`, buffer by buffer with `read_into`
/// (straight into the caller's memory) or with `read_to_vec` (through the reader's).
fn restore(bytes: &[u8], parent: &mut dyn InheritedChunks, direct: bool) -> Result<Plan, Error> {
    let mut r = Reader::open(SliceSource::new(bytes))?;
    let mut out = Vec::new();
    for i in 0..r.frame_count().unwrap() {
        let mut f = r.open_frame_inheriting(i, parent)?;
        let style = f.style();
        let mut bufs = Vec::new();
        while let Some(len) = f.next_len()? {
            if direct {
                let mut b = vec![0u8; len as usize];
                f.read_into(&mut b)?;
                bufs.push(b);
            } else {
                bufs.push(f.read_to_vec()?.unwrap());
            }
        }
        f.close()?;
        out.push((style, bufs));
    }
    Ok(out)
}

fn restore_streaming(bytes: &[u8], parent: &mut dyn InheritedChunks) -> Result<Plan, Error> {
    let mut r = Reader::new(SliceSource::new(bytes));
    let mut out = Vec::new();
    while let Some(mut f) = r.next_frame_inheriting(parent)? {
        let style = f.style();
        let mut bufs = Vec::new();
        while let Some(b) = f.read_to_vec()? {
            bufs.push(b);
        }
        f.close()?;
        out.push((style, bufs));
    }
    r.finish()?;
    Ok(out)
}

fn open_parent(bytes: &[u8]) -> ParentReader<'_, SliceSource<'_>> {
    ParentReader::new(Reader::open(SliceSource::new(bytes)).unwrap(), None).unwrap()
}

/// Scattered one-byte changes: in a gathered chunk, in the middle and at the end of a
/// large RAW buffer, in an LZ4 buffer's chunks 1, 2 and 9 (stored chunks linked to each
/// other, and one after inherited chunks whose history it must not use), and in one small
/// LZ4 buffer.
const SPOTS: [(usize, usize, usize); 7] = [
    (0, 1, 10),
    (0, 3, 350_000),
    (0, 3, 699_999),
    (1, 0, 100_000),
    (1, 0, 140_000),
    (1, 0, 600_000),
    (2, 150, 3),
];

#[test]
fn a_child_stores_only_changed_chunks_and_restores_by_every_path() {
    let base = state(1);
    let (parent_bytes, none) = write(1, &base, None);
    assert_eq!(none, 0);
    let next = changed(&base, &SPOTS);
    let (full_bytes, _) = write(9, &next, None);
    let (child_bytes, inherited) = write(2, &next, Some(&parent_bytes));

    let logical: usize = next.iter().flat_map(|(_, b)| b).map(Vec::len).sum();
    // Seven changed chunks of at most 64 KiB each are stored; everything else is inherited.
    assert!(inherited >= (logical - 7 * 65_536) as u64, "{inherited} of {logical}");
    assert!(child_bytes.len() < 7 * 65_536 + 20_000, "child {} bytes", child_bytes.len());
    assert!(
        child_bytes.len() * 3 < full_bytes.len(),
        "{} vs {}",
        child_bytes.len(),
        full_bytes.len()
    );

    let mut parent = open_parent(&parent_bytes);
    assert_eq!(restore(&child_bytes, &mut parent, true).unwrap(), next);
    assert_eq!(restore(&child_bytes, &mut parent, false).unwrap(), next);
    assert_eq!(restore_streaming(&child_bytes, &mut parent).unwrap(), next);

    let r = Reader::open(SliceSource::new(&child_bytes)).unwrap();
    assert_eq!(r.format_version(), Some(2));
    assert_eq!(r.parent().unwrap().id, id(1));
    let mut pr = Reader::open(SliceSource::new(&parent_bytes)).unwrap();
    assert_eq!(pr.format_version(), Some(1));
    assert_eq!(r.parent().unwrap().digest, pr.lineage_digest().unwrap());

    // Unchanged state: every chunk is inherited.
    let (same, inherited) = write(3, &base, Some(&parent_bytes));
    assert_eq!(inherited, logical as u64);
    assert_eq!(restore(&same, &mut open_parent(&parent_bytes), true).unwrap(), base);
}

/// A sink that never lends memory, so the writer takes its `write_all` path.
struct NoLendSink(Vec<u8>);

impl Sink for NoLendSink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), IoError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// After a changed chunk the writer copies the next RAW chunk before it knows whether it
/// changed; an unchanged one must still become a reference, whether or not the sink lends
/// memory, and the two sinks must receive the same bytes.
#[test]
fn runs_of_changed_and_unchanged_chunks_store_exactly_the_changed_ones() {
    const CHUNK: usize = 65_536;
    let base: Plan = vec![
        (Style::Raw, vec![content(40, 24 * CHUNK, false)]),
        (Style::Lz4, vec![content(41, 24 * CHUNK, true)]),
    ];
    let (parent_bytes, _) = write(1, &base, None);
    let changed_chunks = [0usize, 2, 3, 4, 7, 9, 10, 11, 12, 13, 20, 23];
    let mut next = base.clone();
    for &c in &changed_chunks {
        next[0].1[0][c * CHUNK + 17] ^= 1;
        next[1].1[0][c * CHUNK + 17] ^= 1;
    }
    let (lent, inherited) = write_into(VecSink::new(), 2, &next, Some(&parent_bytes));
    let unchanged = (24 - changed_chunks.len()) * CHUNK;
    assert_eq!(inherited, 2 * unchanged as u64);
    let (copied, inherited_copied) =
        write_into(NoLendSink(Vec::new()), 2, &next, Some(&parent_bytes));
    assert_eq!(inherited_copied, inherited);
    let lent = lent.into_inner();
    assert!(lent == copied.0, "a lending sink and a plain one received different bytes");
    let mut parent = open_parent(&parent_bytes);
    assert_eq!(restore(&lent, &mut parent, true).unwrap(), next);
    assert_eq!(restore_streaming(&lent, &mut parent).unwrap(), next);
}

#[test]
fn chains_resolve_through_grandparents() {
    let v1 = state(5);
    let v2 = changed(&v1, &SPOTS[..2]);
    let v3 = changed(&v2, &SPOTS[2..5]);
    let v4 = changed(&v3, &SPOTS[5..]);
    let (b1, _) = write(1, &v1, None);
    let (b2, _) = write(2, &v2, Some(&b1));
    let (b3, _) = write(3, &v3, Some(&b2));
    let (b4, _) = write(4, &v4, Some(&b3));

    let mut p1 = open_parent(&b1);
    let mut p2 =
        ParentReader::new(Reader::open(SliceSource::new(&b2)).unwrap(), Some(&mut p1)).unwrap();
    let mut p3 =
        ParentReader::new(Reader::open(SliceSource::new(&b3)).unwrap(), Some(&mut p2)).unwrap();
    assert_eq!(restore(&b4, &mut p3, true).unwrap(), v4);
    assert_eq!(restore(&b4, &mut p3, false).unwrap(), v4);
}

#[test]
fn a_different_buffer_layout_shares_only_the_chunks_that_line_up() {
    let base = state(7);
    let (parent_bytes, _) = write(1, &base, None);
    // One byte inserted at the start of frame 0's big buffer shifts its chunk grid.
    let mut next = base.clone();
    next[0].1[3].insert(0, 1);
    let (child, inherited) = write(2, &next, Some(&parent_bytes));
    let frame0: u64 = base[0].1.iter().map(|b| b.len() as u64).sum();
    let logical: u64 = base.iter().flat_map(|(_, b)| b).map(|b| b.len() as u64).sum();
    assert!(inherited <= logical - 700_000 + 65_536, "shifted chunks are stored");
    assert!(inherited >= logical - frame0, "other frames are inherited");
    assert_eq!(restore(&child, &mut open_parent(&parent_bytes), true).unwrap(), next);
    // More frames than the parent, and fewer.
    let mut more = base.clone();
    more.push((Style::Lz4, vec![content(99, 200_000, true)]));
    let (child, _) = write(3, &more, Some(&parent_bytes));
    assert_eq!(restore(&child, &mut open_parent(&parent_bytes), false).unwrap(), more);
    let fewer = base[..2].to_vec();
    let (child, _) = write(4, &fewer, Some(&parent_bytes));
    assert_eq!(restore(&child, &mut open_parent(&parent_bytes), true).unwrap(), fewer);
}

#[test]
fn a_child_read_without_its_parent_or_with_another_is_refused() {
    let base = state(11);
    let (parent_bytes, _) = write(1, &base, None);
    let next = changed(&base, &SPOTS);
    let (child, _) = write(2, &next, Some(&parent_bytes));

    // Without the parent: the first inherited chunk needs it.
    let mut r = Reader::open(SliceSource::new(&child)).unwrap();
    let mut f = r.open_frame(0).unwrap();
    let e = loop {
        match f.read_to_vec() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("frame 0 restored without its parent"),
            Err(e) => break e,
        }
    };
    assert!(matches!(e, Error::InvalidUse(Misuse::ParentNeeded { frame: 0 })), "{e:?}");

    // Another checkpoint as parent.
    let (other, _) = write(5, &base, None);
    let mut wrong = open_parent(&other);
    let e = restore(&child, &mut wrong, true).unwrap_err();
    assert!(
        matches!(e, Error::ParentMismatch { expected_id, found_id, .. } if expected_id == id(1) && found_id == id(5)),
        "{e:?}"
    );
    assert!(e.to_string().contains("wrong parent"), "{e}");
    let e = restore_streaming(&child, &mut wrong).unwrap_err();
    assert!(matches!(e, Error::ParentMismatch { .. }), "{e:?}");

    // The same id rewritten with other content: the digest differs.
    let (replaced, _) = write(1, &changed(&base, &[(2, 0, 0)]), None);
    let e = restore(&child, &mut open_parent(&replaced), true).unwrap_err();
    assert!(
        matches!(e, Error::ParentMismatch { expected_id, found_id, .. } if expected_id == found_id),
        "{e:?}"
    );
    assert!(e.to_string().contains("replaced or changed"), "{e}");

    // A version-1 checkpoint opened with a parent, and a parent that names a parent
    // opened without one.
    let mut r = Reader::open(SliceSource::new(&parent_bytes)).unwrap();
    let e = r.open_frame_inheriting(0, &mut open_parent(&other)).unwrap_err();
    assert!(matches!(e, Error::InvalidUse(Misuse::ParentPlacement)), "{e:?}");
    let e = ParentReader::new(Reader::open(SliceSource::new(&child)).unwrap(), None).unwrap_err();
    assert!(matches!(e, Error::InvalidUse(Misuse::ParentPlacement)), "{e:?}");
}

#[test]
fn a_damaged_or_truncated_parent_is_named_as_the_parent() {
    let base = state(13);
    let (parent_bytes, _) = write(1, &base, None);
    let next = changed(&base, &SPOTS);
    let (child, _) = write(2, &next, Some(&parent_bytes));

    // A bit flip in the data of a chunk the child inherits (frame 0's big buffer starts
    // after the 40-byte frame header and a 3100-byte gathered chunk with its header).
    let mut damaged = parent_bytes.clone();
    damaged[40 + 32 + 3100 + 3 + 32 + 1000] ^= 1;
    let e = restore(&child, &mut open_parent(&damaged), true).unwrap_err();
    match &e {
        Error::Parent { frame: 0, error, .. } => {
            assert_eq!(error.kind(), ErrorKind::ChecksumMismatch, "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("inherited from the parent"), "{e}");

    // Truncated, or a footer damaged: opening the parent fails.
    let cut = &parent_bytes[..parent_bytes.len() - 1];
    assert!(Reader::open(SliceSource::new(cut)).is_err());
    let mut bad_footer = parent_bytes.clone();
    let mut r = Reader::open(SliceSource::new(&parent_bytes)).unwrap();
    let info = r.frame_info(0).unwrap();
    bad_footer[(info.offset + info.len - 20) as usize] ^= 1;
    let e =
        ParentReader::new(Reader::open(SliceSource::new(&bad_footer)).unwrap(), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e:?}");
    let e =
        ParentChunks::read(&mut Reader::open(SliceSource::new(&bad_footer)).unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChecksumMismatch, "{e:?}");
    let _ = r.lineage_digest().unwrap();
}

/// Byte offset of the first chunk header of frame `frame` whose stored length is 0 (an
/// inherited chunk), found by walking the chunk headers.
fn first_inherited_chunk(bytes: &[u8], frame: u64) -> usize {
    let r = Reader::open(SliceSource::new(bytes)).unwrap();
    let info = r.frame_info(frame).unwrap();
    let mut at = info.offset as usize + 40;
    loop {
        let h = &bytes[at..at + 32];
        let logical = u32::from_le_bytes(h[0..4].try_into().unwrap());
        let stored = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let table = u32::from_le_bytes(h[12..16].try_into().unwrap()) as usize;
        if stored == 0 && logical > 0 {
            return at;
        }
        at += 32 + stored + table;
    }
}

fn reseal_chunk_header(bytes: &mut [u8], at: usize) {
    let table = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap()) as usize;
    let mut covered = bytes[at..at + 24].to_vec();
    covered.extend_from_slice(&bytes[at + 32..at + 32 + table]);
    let check = xxhash_rust::xxh3::xxh3_64(&covered);
    bytes[at + 24..at + 32].copy_from_slice(&check.to_le_bytes());
}

#[test]
fn a_hostile_child_cannot_take_other_bytes_from_its_parent() {
    let base = state(17);
    let (parent_bytes, _) = write(1, &base, None);
    let next = changed(&base, &SPOTS);
    let (child, _) = write(2, &next, Some(&parent_bytes));
    let at = first_inherited_chunk(&child, 0);

    // The inherited chunk claims another checksum (header resealed): the parent's bytes
    // do not match it.
    let mut forged = child.clone();
    forged[at + 16] ^= 1;
    reseal_chunk_header(&mut forged, at);
    let e = restore(&forged, &mut open_parent(&parent_bytes), true).unwrap_err();
    assert!(
        matches!(e, Error::ChecksumMismatch { what: "chunk inherited from the parent", .. }),
        "{e:?}"
    );

    // It claims another length: the parent's chunk is not that long.
    let mut forged = child.clone();
    let len = u32::from_le_bytes(forged[at..at + 4].try_into().unwrap());
    forged[at..at + 4].copy_from_slice(&(len - 1).to_le_bytes());
    reseal_chunk_header(&mut forged, at);
    let e = restore(&forged, &mut open_parent(&parent_bytes), true).unwrap_err();
    assert!(matches!(e, Error::Parent { .. } | Error::Corrupt { .. }), "{e:?}");

    // Frame 3 of the parent has no chunks: a child frame there that inherits one.
    let mut plan = base.clone();
    plan[3].1.push(vec![1; 10]);
    let (with_chunk, _) = write(1, &plan, None);
    let (child_of_it, _) = write(2, &plan, Some(&with_chunk));
    // Read with the real parent it restores; with a same-id parent whose frame 3 is empty
    // the identity check refuses first.
    assert_eq!(restore(&child_of_it, &mut open_parent(&with_chunk), true).unwrap(), plan);
    let e = restore(&child_of_it, &mut open_parent(&parent_bytes), true).unwrap_err();
    assert!(matches!(e, Error::ParentMismatch { .. }), "{e:?}");

    // A stored length of 0 is impossible in a version-1 frame.
    let mut v1 = parent_bytes.clone();
    let first = 40;
    v1[first + 4..first + 8].copy_from_slice(&0u32.to_le_bytes());
    let e = restore(&v1, &mut open_parent(&parent_bytes), true).unwrap_err();
    assert!(matches!(e, Error::InvalidUse(Misuse::ParentPlacement)), "{e:?}");
    let mut r = Reader::open(SliceSource::new(&v1)).unwrap();
    let e = r.open_frame(0).unwrap().read_to_vec().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e:?}");
}

#[test]
fn writer_misuse_with_a_parent_is_refused() {
    let base = state(19);
    let (parent_bytes, _) = write(1, &base, None);
    let sums =
        ParentChunks::read(&mut Reader::open(SliceSource::new(&parent_bytes)).unwrap()).unwrap();
    assert_eq!(sums.id(), id(1));
    assert_eq!(sums.frame_count(), 4);

    let mut w = Writer::new(VecSink::new(), id(1));
    assert!(matches!(w.set_parent(sums.clone()), Err(Error::InvalidUse(Misuse::OwnParent))));
    let mut w = Writer::new(VecSink::new(), id(2));
    w.open_frame(Style::Raw).unwrap().close().unwrap();
    assert!(matches!(w.set_parent(sums.clone()), Err(Error::InvalidUse(Misuse::ParentPlacement))));
    let mut w = Writer::new(VecSink::new(), id(2));
    w.set_parent(sums.clone()).unwrap();
    assert!(matches!(w.set_parent(sums), Err(Error::InvalidUse(Misuse::ParentPlacement))));
    // Frames encoded elsewhere are version 1: they do not fit a checkpoint with a parent.
    let mut enc = FrameEncoder::new(id(2));
    let mut out = Vec::new();
    let frame = enc.encode(0, Style::Raw, &[b"x"], &mut out).unwrap();
    assert!(matches!(w.append_encoded(&out, &frame), Err(Error::InvalidUse(Misuse::ForeignFrame))));
    // A streaming reader cannot list a parent's chunks.
    let mut streaming = Reader::new(SliceSource::new(&parent_bytes));
    assert!(ParentChunks::read(&mut streaming).is_err());
}

#[test]
fn the_region_scan_refuses_a_version_2_checkpoint_by_version() {
    let base = state(23);
    let (parent_bytes, _) = write(1, &base, None);
    let (child, _) = write(2, &changed(&base, &SPOTS), Some(&parent_bytes));
    let e = scan::scan(&mut SliceSource::new(&child), scan::Depth::Stored).unwrap_err();
    assert!(matches!(e, Error::VersionMismatch { found: 2, .. }), "{e:?}");
}
