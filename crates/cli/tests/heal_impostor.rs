//! `ckpt heal` from an impostor: a donor written with the same `--id` from a file that
//! differs in one byte has the damaged copy's identity and length, and its own check values
//! hold for its own bytes. Heal must refuse its chunk (exit 1, saying the donor's bytes are
//! not the ones the damaged copy's checks record, and writing nothing there), and a heal from
//! the true copy afterwards must give back the true checkpoint byte for byte.
// Offsets in these checkpoints of a few hundred kilobytes are far below usize::MAX.
#![allow(clippy::cast_possible_truncation)]

use ckpt_frame_core::SliceSource;
use ckpt_frame_core::scan::{Depth, Region, RegionKind, scan};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

const ID: &str = "5e1f5e1f5e1f5e1f0123456789abcdef";

fn ckpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt")).args(args).output().expect("run ckpt")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Writes `data` as `dir/data.bin` with a fixed modification time, and checkpoints it.
fn checkpoint(dir: &Path, data: &[u8], style: &str, out: &Path) {
    fs::create_dir_all(dir).unwrap();
    let file = dir.join("data.bin");
    fs::write(&file, data).unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fs::File::options().write(true).open(&file).unwrap().set_modified(when).unwrap();
    let args = ["write", "--id", ID, "--style", style, "-o", s(out), s(&file)];
    let res = ckpt(&args);
    assert!(res.status.success(), "{args:?}: {}", String::from_utf8_lossy(&res.stderr));
}

/// The one data chunk and the one frame footer in which `a` and `b` differ (the block
/// table, the last frame, differs too: it holds the hash of the changed block).
fn differing(a: &[u8], b: &[u8]) -> (Region, Region) {
    let report = scan(&mut SliceSource::new(a), Depth::Decoded).unwrap();
    assert!(report.is_ok());
    let table = report.regions.iter().filter_map(|r| r.frame).max();
    let found: Vec<Region> = report
        .regions
        .iter()
        .filter(|r| r.frame != table)
        .filter(|r| {
            a[r.offset as usize..r.end() as usize] != b[r.offset as usize..r.end() as usize]
        })
        .copied()
        .collect();
    match found.as_slice() {
        [chunk, footer]
            if chunk.kind == RegionKind::Chunk && footer.kind == RegionKind::FrameFooter =>
        {
            (*chunk, *footer)
        }
        other => panic!("the impostor should differ in one chunk and its footer: {other:?}"),
    }
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x24;
    fs::write(path, bytes).unwrap();
}

fn offsets(v: &serde_json::Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).collect()
}

/// Heals `damaged` from `impostor` (refused, nothing written) and then from `genuine`.
fn refuse_then_heal(damaged: &Path, impostor: &Path, genuine: &Path, chunk: Region) {
    let before = fs::read(damaged).unwrap();

    let res = ckpt(&["heal", s(damaged), "--from", s(impostor)]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    let says = format!(
        "cannot heal chunk at offset {0}: the donor's bytes at offset {0} are not the ones this \
         copy's checks record (an impostor copy?)",
        chunk.offset
    );
    assert!(err.contains(&says), "{err}");
    assert!(err.contains("not healed") && err.contains("still damaged"), "{err}");
    assert!(!err.contains("damaged in both copies"), "{err}");
    assert!(fs::read(damaged).unwrap() == before, "the impostor's bytes were written");

    let res = ckpt(&["heal", s(damaged), "--from", s(impostor), "--json"]);
    assert_eq!(res.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(offsets(&v["healed"]), Vec::<u64>::new());
    assert_eq!(offsets(&v["unhealable"]), Vec::<u64>::new());
    assert_eq!(offsets(&v["unvouched"]), Vec::<u64>::new());
    assert_eq!(offsets(&v["donor_mismatch"]), [chunk.offset]);
    let refused = &v["donor_mismatch"][0];
    assert_eq!(
        (refused["kind"].as_str(), refused["len"].as_u64()),
        (Some("chunk"), Some(chunk.len))
    );
    assert!(refused["problem"].as_str().unwrap().contains("frame footer"), "{refused}");
    assert!(fs::read(damaged).unwrap() == before, "the impostor's bytes were written");

    let res = ckpt(&["heal", s(damaged), "--from", s(impostor), "--dry-run"]);
    assert_eq!(res.status.code(), Some(1), "a dry run that would refuse a region fails too");

    let res = ckpt(&["heal", s(damaged), "--from", s(genuine), "--json"]);
    assert_eq!(res.status.code(), Some(0), "{}", String::from_utf8_lossy(&res.stderr));
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(offsets(&v["healed"]), [chunk.offset]);
    assert!(fs::read(damaged).unwrap() == fs::read(genuine).unwrap(), "not byte-identical");
    let res = ckpt(&["verify", s(damaged)]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
}

#[test]
fn heal_refuses_an_impostor_and_then_heals_from_the_true_copy() {
    for style in ["raw", "lz4"] {
        let tmp = tempfile::tempdir().unwrap();
        let data = noise(600_000, 11);
        let mut other = data.clone();
        other[400_000] ^= 0x01;
        let genuine = tmp.path().join("genuine.ckpt");
        let impostor = tmp.path().join("impostor.ckpt");
        checkpoint(&tmp.path().join("a"), &data, style, &genuine);
        checkpoint(&tmp.path().join("b"), &other, style, &impostor);
        let (g, i) = (fs::read(&genuine).unwrap(), fs::read(&impostor).unwrap());
        assert_eq!(g.len(), i.len(), "{style}: same id, same length");
        let (chunk, _) = differing(&g, &i);

        // The chunk's data damaged: its own header survives.
        let damaged = tmp.path().join("damaged.ckpt");
        fs::copy(&genuine, &damaged).unwrap();
        flip(&damaged, chunk.offset + 32 + 777);
        flip(&damaged, chunk.offset + 32 + 778);
        refuse_then_heal(&damaged, &impostor, &genuine, chunk);

        // The chunk's header damaged too (its checksum; then its stored length, after which
        // the damaged copy's own scan cannot follow the rest of the frame).
        for header_byte in [17, 5] {
            fs::copy(&genuine, &damaged).unwrap();
            flip(&damaged, chunk.offset + 32 + 777);
            flip(&damaged, chunk.offset + header_byte);
            refuse_then_heal(&damaged, &impostor, &genuine, chunk);
        }
    }
}
