//! `ckpt heal` with one copy in object storage, against a real S3 server (`SeaweedFS`,
//! started by the harness of `ckpt-object`'s tests): a local copy healed from an object
//! fetches only its damaged frames (the `--json` count is checked against the frames'
//! sizes), refusals exit 1 and write nothing, and a damaged object is replaced whole from a
//! good local copy, never from a damaged or foreign one.
// Offsets of these test checkpoints are far below usize::MAX.
#![allow(clippy::cast_possible_truncation)]

#[path = "../../object/tests/common/mod.rs"]
mod common;

use common::noise;

use ckpt_frame_core::scan::{Depth, scan};
use ckpt_frame_core::{CheckpointId, Sink, SliceSource, Source, Style, VecSink, Writer};
use ckpt_object::{ObjectClient, ObjectSink, ObjectSource, UploadOptions};
use common::{ACCESS_KEY, BUCKET, SECRET_KEY, Weed};
use std::fs;
use std::process::{Command, Output};

fn ckpt(weed: &Weed, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &weed.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .expect("run ckpt")
}

fn exits(weed: &Weed, args: &[&str], code: i32) -> (String, String) {
    let out = ckpt(weed, args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("ckpt {args:?} -> {:?}: {}", out.status.code(), stderr.trim());
    assert_eq!(out.status.code(), Some(code), "ckpt {args:?}: {stderr}");
    (stdout, stderr)
}

/// Twelve frames of about 512 KiB each, RAW and LZ4: about 6 MiB.
fn checkpoint(id: u8) -> Vec<u8> {
    let mut w = Writer::new(VecSink::new(), CheckpointId::from_bytes([id; 16]));
    for i in 0..12u64 {
        let style = if i % 3 == 0 { Style::Lz4 } else { Style::Raw };
        let data = noise(512 * 1024 + i as usize, i + 11);
        let mut f = w.open_frame(style).unwrap();
        f.add(&data).unwrap();
        f.close().unwrap();
    }
    w.finish().unwrap();
    w.into_sink().into_inner()
}

/// Each frame's `(start, end)`.
fn frames(bytes: &[u8]) -> Vec<(u64, u64)> {
    let report = scan(&mut SliceSource::new(bytes), Depth::Stored).unwrap();
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

fn json_u64(json: &str, field: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("JSON on stdout");
    v[field].as_u64().unwrap_or_else(|| panic!("{field} in {json}"))
}

#[test]
fn heal_a_local_copy_from_an_object_fetching_only_the_damaged_frames() {
    let Some(weed) = Weed::start("cli_s3_heal_local") else { return };
    let client = weed.client(BUCKET);
    let good = checkpoint(5);
    let fr = frames(&good);
    assert_eq!(fr.len(), 12);
    put(&client, "h/good.ckpt", &good);
    let url = format!("s3://{BUCKET}/h/good.ckpt");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ckpt");
    let p = path.to_str().unwrap();
    let mut damaged = good.clone();
    damaged[(fr[1].0 + 100_000) as usize] ^= 0x01;
    damaged[(fr[9].0 + 400_000) as usize] ^= 0x80;
    fs::write(&path, &damaged).unwrap();

    let (_, stderr) = exits(&weed, &["heal", p, "--from", &url, "--dry-run"], 0);
    assert!(stderr.contains("would rewrite 2 damaged regions"), "{stderr}");
    assert!(fs::read(&path).unwrap() == damaged, "a dry run wrote");

    let (stdout, _) = exits(&weed, &["heal", p, "--from", &url, "--json"], 0);
    assert!(fs::read(&path).unwrap() == good, "healed to the object's bytes");
    let fetched = json_u64(&stdout, "donor_bytes_fetched");
    let index_and_tail = good.len() as u64 - fr[11].1;
    let frames_len = (fr[1].1 - fr[1].0) + (fr[9].1 - fr[9].0);
    eprintln!("fetched {fetched} of {} bytes", good.len());
    assert_eq!(fetched, frames_len + index_and_tail);
    assert_eq!(json_u64(&stdout, "donor_len"), good.len() as u64);
    assert_eq!(json_u64(&stdout, "donor_requests"), 1 + 2 + 2);
    exits(&weed, &["verify", p], 0);

    // Human output says what it cost.
    fs::write(&path, &damaged).unwrap();
    let (_, stderr) = exits(&weed, &["heal", p, "--from", &url], 0);
    assert!(
        stderr.contains(&format!(
            "fetched {} bytes of {}",
            frames_len + index_and_tail,
            good.len()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("verifies"), "{stderr}");

    // Another checkpoint: refused as for local copies, nothing written.
    put(&client, "h/other.ckpt", &checkpoint(6));
    fs::write(&path, &damaged).unwrap();
    let other = format!("s3://{BUCKET}/h/other.ckpt");
    let (_, stderr) = exits(&weed, &["heal", p, "--from", &other], 1);
    assert!(stderr.contains("not a copy of the same checkpoint"), "{stderr}");
    assert!(fs::read(&path).unwrap() == damaged);

    // The object damaged in the same chunk: damaged in both copies, exit 1, nothing written.
    let mut also = good.clone();
    also[(fr[9].0 + 400_010) as usize] ^= 0x02;
    also[(fr[1].0 + 100_000) as usize] ^= 0x01;
    put(&client, "h/also.ckpt", &also);
    let also_url = format!("s3://{BUCKET}/h/also.ckpt");
    let (_, stderr) = exits(&weed, &["heal", p, "--from", &also_url], 1);
    assert!(stderr.contains("damaged in both copies"), "{stderr}");
    assert!(stderr.contains("still damaged"), "{stderr}");
    assert!(fs::read(&path).unwrap() == damaged);

    // Both copies remote: a usage error.
    exits(&weed, &["heal", &url, "--from", &also_url], 2);
}

#[test]
fn heal_a_damaged_object_from_a_local_copy_by_replacing_it_whole() {
    let Some(weed) = Weed::start("cli_s3_heal_object") else { return };
    let client = weed.client(BUCKET);
    let good = checkpoint(5);
    let fr = frames(&good);
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.ckpt");
    fs::write(&good_path, &good).unwrap();
    let g = good_path.to_str().unwrap();
    let mut broken = good.clone();
    broken[(fr[4].0 + 70_000) as usize] ^= 0x04;
    put(&client, "h/remote.ckpt", &broken);
    let url = format!("s3://{BUCKET}/h/remote.ckpt");
    exits(&weed, &["verify", &url], 1);

    // A damaged local donor: refused, the object unchanged.
    let bad_path = dir.path().join("bad.ckpt");
    let mut bad = good.clone();
    bad[(fr[7].0 + 5_000) as usize] ^= 0x04;
    fs::write(&bad_path, &bad).unwrap();
    let (_, stderr) = exits(&weed, &["heal", &url, "--from", bad_path.to_str().unwrap()], 1);
    assert!(stderr.contains("the local copy is damaged too"), "{stderr}");
    assert!(stderr.contains("nothing uploaded"), "{stderr}");
    assert!(get(&client, "h/remote.ckpt") == broken, "the object changed");

    // Another checkpoint: refused.
    let other_path = dir.path().join("other.ckpt");
    fs::write(&other_path, checkpoint(6)).unwrap();
    let (_, stderr) = exits(&weed, &["heal", &url, "--from", other_path.to_str().unwrap()], 1);
    assert!(stderr.contains("different checkpoints"), "{stderr}");
    assert!(get(&client, "h/remote.ckpt") == broken);

    // A dry run uploads nothing.
    let (stdout, _) = exits(&weed, &["heal", &url, "--from", g, "--dry-run", "--json"], 0);
    assert!(stdout.contains("\"would replace\""), "{stdout}");
    assert!(get(&client, "h/remote.ckpt") == broken);

    let (stdout, _) = exits(&weed, &["heal", &url, "--from", g, "--json"], 0);
    assert!(stdout.contains("\"replaced\""), "{stdout}");
    assert_eq!(json_u64(&stdout, "uploaded_bytes"), good.len() as u64);
    assert!(get(&client, "h/remote.ckpt") == good, "the object is the good copy");
    exits(&weed, &["verify", &url], 0);

    // Now intact: nothing to do.
    let (_, stderr) = exits(&weed, &["heal", &url, "--from", g], 0);
    assert!(stderr.contains("verifies; nothing uploaded"), "{stderr}");
}
