//! `heal --from` with one side in object storage, against a real S3 server (`SeaweedFS`, see
//! `common/mod.rs`): a local copy healed from an object fetches only the damaged frames (by
//! the byte and request counts of `RangedObject`), and a damaged object is replaced whole
//! from a local copy only when that copy passes every check.
// Offsets of these test checkpoints are far below usize::MAX.
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::noise;

use ckpt_frame_core::scan::{Depth, Region, scan};
use ckpt_frame_core::{CheckpointId, Error, Sink, SliceSource, Source, Style, VecSink, Writer};
use ckpt_object::{
    HealError, MIN_PART_SIZE, ObjectClient, ObjectHealOutcome, ObjectSink, ObjectSource, Refusal,
    UploadOptions, heal_file_from_object, heal_object_from_file,
};
use common::{BUCKET, Weed};
use std::fs;

const KIB: usize = 1024;

/// Ten frames of about 600 KiB each (RAW and LZ4, incompressible): about 6 MiB.
fn checkpoint(id: u8) -> Vec<u8> {
    checkpoint_with(id, None)
}

/// As [`checkpoint`], with one byte of frame `changed.0`'s data at `changed.1` flipped: an
/// impostor of the same identity and length whose own checks all pass.
fn checkpoint_with(id: u8, changed: Option<(u64, usize)>) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([id; 16]));
    for i in 0..10u64 {
        let style = if i % 2 == 0 { Style::Raw } else { Style::Lz4 };
        let mut data = noise(600 * KIB + i as usize * 1000, i + 1);
        if let Some(at) = changed.filter(|(frame, _)| *frame == i).map(|(_, at)| at) {
            data[at] ^= 0x77;
        }
        let small = noise(3000, i + 100);
        let mut f = w.open_frame(style).unwrap();
        f.add(&data).unwrap();
        f.add(&small).unwrap();
        f.close().unwrap();
    }
    w.finish().unwrap();
    w.into_sink().into_inner()
}

/// Each frame's `(start, end)`.
fn frames(bytes: &[u8]) -> Vec<(u64, u64)> {
    let report = scan(&mut SliceSource::new(bytes), Depth::Stored).unwrap();
    assert!(report.is_ok());
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

/// Uploads `bytes` under `key` as they are, outside any heal.
fn put(client: &ObjectClient, key: &str, bytes: &[u8]) {
    let mut sink = ObjectSink::create(client, key, UploadOptions::default()).unwrap();
    sink.write_all(bytes).unwrap();
    sink.complete().unwrap();
}

fn get(client: &ObjectClient, key: &str) -> Vec<u8> {
    let mut object = ObjectSource::open(client, key).unwrap();
    let mut bytes = vec![0u8; object.len() as usize];
    object.read_exact(&mut bytes).unwrap();
    bytes
}

/// Parts of the S3 minimum, so that the 6 MiB copy goes up as a multipart upload.
fn small_parts() -> UploadOptions {
    UploadOptions::default().with_part_size(MIN_PART_SIZE).unwrap()
}

fn offsets(regions: &[Region]) -> Vec<u64> {
    regions.iter().map(|r| r.offset).collect()
}

#[test]
fn a_local_copy_is_healed_from_an_object_fetching_only_its_damaged_frames() {
    let Some(weed) = Weed::start("object_heal_file_from_object") else { return };
    let client = weed.client(BUCKET);
    let good = checkpoint(7);
    let fr = frames(&good);
    assert_eq!(fr.len(), 10);
    put(&client, "heal/good.ckpt", &good);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ckpt");

    // Damage in two frames: a RAW chunk's data in frame 2, an LZ4 chunk in frame 5.
    let mut damaged = good.clone();
    damaged[(fr[2].0 + 300_000) as usize] ^= 0x40;
    damaged[(fr[5].0 + 200_000) as usize] ^= 0x01;
    fs::write(&path, &damaged).unwrap();

    // A dry run fetches the same ranges and writes nothing.
    let dry = heal_file_from_object(&path, &client, "heal/good.ckpt", true).unwrap();
    assert!(!dry.rewritten && !dry.healed(true));
    assert_eq!(dry.ranged.plan.rewrite.len(), 2);
    assert!(fs::read(&path).unwrap() == damaged, "the dry run wrote");

    let outcome = heal_file_from_object(&path, &client, "heal/good.ckpt", false).unwrap();
    assert!(outcome.healed(false), "{:?}", outcome.ranged.plan);
    assert!(fs::read(&path).unwrap() == good, "healed bit for bit to the object's bytes");
    let index_and_tail = good.len() as u64 - fr[9].1;
    let damaged_frames = (fr[2].1 - fr[2].0) + (fr[5].1 - fr[5].0);
    eprintln!(
        "fetched {} bytes in {} requests of a {} byte object (damaged frames {damaged_frames}, \
         index and tail {index_and_tail})",
        outcome.bytes_fetched, outcome.requests, outcome.object_len
    );
    // Counted on the wire by the object reader, not by the planner's own tally.
    assert_eq!(outcome.bytes_fetched, outcome.ranged.fetched_bytes());
    assert_eq!(outcome.bytes_fetched, damaged_frames + index_and_tail);
    assert_eq!(outcome.requests, 1 + 2 + 2, "HEAD, tail, index and one GET per frame");
    assert!(outcome.bytes_fetched * 4 < outcome.object_len);

    // Damage to the index and the tail: only those two small ranges.
    let mut damaged = good.clone();
    let n = damaged.len();
    damaged[n - 30] ^= 0x02;
    damaged[fr[9].1 as usize + 50] ^= 0x02;
    fs::write(&path, &damaged).unwrap();
    let outcome = heal_file_from_object(&path, &client, "heal/good.ckpt", false).unwrap();
    assert!(outcome.healed(false));
    assert!(fs::read(&path).unwrap() == good);
    assert_eq!(outcome.bytes_fetched, index_and_tail);
}

#[test]
fn an_object_of_another_checkpoint_or_damaged_in_the_same_place_heals_nothing() {
    let Some(weed) = Weed::start("object_heal_refusals") else { return };
    let client = weed.client(BUCKET);
    let good = checkpoint(7);
    let fr = frames(&good);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ckpt");
    let at = (fr[4].0 + 100_000) as usize;
    let mut damaged = good.clone();
    damaged[at] ^= 0x08;
    fs::write(&path, &damaged).unwrap();

    // Another checkpoint of the same length: refused on its tail, before any frame.
    let other = checkpoint(9);
    assert_eq!(other.len(), good.len());
    put(&client, "heal/other.ckpt", &other);
    let e = heal_file_from_object(&path, &client, "heal/other.ckpt", false).unwrap_err();
    assert!(matches!(&e, HealError::Plan { error: Error::NotACopy { .. }, .. }), "{e:?}");
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("s3://ckpt-test/heal/other.ckpt"), "{e}");
    assert!(fs::read(&path).unwrap() == damaged);

    // The object is damaged in the same chunk: damaged in both copies, nothing written.
    let mut also = good.clone();
    also[at + 10] ^= 0x20;
    put(&client, "heal/also.ckpt", &also);
    let outcome = heal_file_from_object(&path, &client, "heal/also.ckpt", false).unwrap();
    assert!(!outcome.healed(false));
    assert!(outcome.ranged.plan.rewrite.is_empty());
    assert_eq!(outcome.ranged.plan.unhealable.len(), 1);
    assert!(outcome.ranged.plan.refuses_any());
    assert!(fs::read(&path).unwrap() == damaged);
    assert_eq!(outcome.bytes_fetched, (fr[4].1 - fr[4].0) + (good.len() as u64 - fr[9].1));

    // An impostor: same identity and length, one byte of frame 4's data differs, so its
    // own checks pass. The local copy's surviving chunk header refuses it.
    let impostor = checkpoint_with(7, Some((4, 100_000)));
    assert_eq!(impostor.len(), good.len());
    put(&client, "heal/impostor.ckpt", &impostor);
    let outcome = heal_file_from_object(&path, &client, "heal/impostor.ckpt", false).unwrap();
    assert!(outcome.ranged.plan.rewrite.is_empty(), "{:?}", outcome.ranged.plan.rewrite);
    assert_eq!(offsets(&outcome.ranged.plan.donor_mismatch).len(), 1);
    assert!(fs::read(&path).unwrap() == damaged);

    // A missing key: an object error naming it, exit status 2.
    let e = heal_file_from_object(&path, &client, "heal/missing.ckpt", false).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("heal/missing.ckpt"), "{e}");
}

#[test]
fn a_damaged_object_is_replaced_whole_from_a_verified_local_copy() {
    let Some(weed) = Weed::start("object_heal_object_from_file") else { return };
    let client = weed.client(BUCKET);
    let good = checkpoint(7);
    let fr = frames(&good);
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.ckpt");
    fs::write(&good_path, &good).unwrap();
    let key = "heal/remote.ckpt";

    // An intact object: nothing to do.
    put(&client, key, &good);
    let outcome = heal_object_from_file(&client, key, &good_path, small_parts(), false).unwrap();
    assert!(matches!(outcome, ObjectHealOutcome::Verifies { .. }));

    let mut broken = good.clone();
    broken[(fr[3].0 + 50_000) as usize] ^= 0x10;
    broken[(fr[8].0 + 7) as usize] ^= 0x10;
    put(&client, key, &broken);

    // A damaged local donor: refused, the object unchanged.
    let bad_local = dir.path().join("bad.ckpt");
    let mut local = good.clone();
    local[(fr[6].0 + 90_000) as usize] ^= 0x01;
    fs::write(&bad_local, &local).unwrap();
    let e = heal_object_from_file(&client, key, &bad_local, small_parts(), false).unwrap_err();
    assert!(
        matches!(
            &e,
            HealError::Refused { refusal: Refusal::LocalDamaged { bad_regions: 1, .. }, .. }
        ),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 1);
    assert!(get(&client, key) == broken, "the object changed");

    // Another checkpoint: refused.
    let other_path = dir.path().join("other.ckpt");
    fs::write(&other_path, checkpoint(9)).unwrap();
    let e = heal_object_from_file(&client, key, &other_path, small_parts(), false).unwrap_err();
    assert!(matches!(&e, HealError::Refused { refusal: Refusal::OtherCheckpoint { .. }, .. }));
    assert!(get(&client, key) == broken);

    // A local copy that verifies but differs where the object verifies (an impostor that
    // is whole in itself): refused.
    let impostor = checkpoint_with(7, Some((1, 10)));
    let impostor_path = dir.path().join("impostor.ckpt");
    fs::write(&impostor_path, impostor).unwrap();
    let e = heal_object_from_file(&client, key, &impostor_path, small_parts(), false).unwrap_err();
    assert!(matches!(&e, HealError::Refused { refusal: Refusal::Disagrees { .. }, .. }), "{e:?}");
    assert!(get(&client, key) == broken);

    // A dry run: checks pass, nothing uploaded.
    let outcome = heal_object_from_file(&client, key, &good_path, small_parts(), true).unwrap();
    assert!(matches!(outcome, ObjectHealOutcome::Replaced { upload: None, .. }));
    // Frame 3's chunk; frame 8's header, and so its footer, which is checked with it.
    assert_eq!(outcome.scan().bad_regions().count(), 3);
    assert!(get(&client, key) == broken);

    // The heal: the object is the good copy again, and verifies.
    let outcome = heal_object_from_file(&client, key, &good_path, small_parts(), false).unwrap();
    let ObjectHealOutcome::Replaced { upload: Some(upload), .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(upload.bytes, good.len() as u64);
    assert_eq!(upload.parts, 2, "a multipart upload of two parts");
    assert!(get(&client, key) == good, "the object is the good copy");
    let report = scan(&mut ObjectSource::open(&client, key).unwrap(), Depth::Decoded).unwrap();
    assert!(report.is_ok());
}
