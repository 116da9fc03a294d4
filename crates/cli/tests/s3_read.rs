//! The read side of `s3://` checkpoints against a real S3 server (`SeaweedFS`, started by
//! the harness of `ckpt-object`'s tests), measured by what the client fetched: `restore ...
//! PATH` fetches only the frames holding PATH; a whole restore and `verify` fetch each
//! byte once; a server killed mid-restore fails with exit status 2, an error naming the
//! endpoint, bucket, key and frame, and nothing half-restored.

#[path = "../../object/tests/common/mod.rs"]
mod common;

use common::noise;

use ckpt_frame_core::{Reader, SliceSource};
use ckpt_object::{ObjectClient, ObjectSink, RemoteCheckpoint, UploadOptions};
use ckpt_tree::manifest::Manifest;
use ckpt_tree::{CollectOptions, RestoreOptions, WriteOptions};
use common::{ACCESS_KEY, BUCKET, SECRET_KEY, Weed};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const MIB: usize = 1024 * 1024;
const TAIL: u64 = 64;
/// `ckpt-object`'s default read-ahead: one ranged `GET` per window of a frame.
const WINDOW: u64 = 4 * 1024 * 1024;

/// `src/` under `root`: ten 1.5 MiB incompressible files (with 1 MiB frames, each spans two
/// frames), a 6 MiB one, small notes (in the first data frame) and a few small files in
/// `src/sub`.
fn make_tree(root: &Path) -> PathBuf {
    let src = root.join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for i in 0..10u64 {
        fs::write(src.join(format!("part-{i:02}.bin")), noise(3 * MIB / 2, i + 1)).unwrap();
    }
    fs::write(src.join("weights.bin"), noise(6 * MIB, 99)).unwrap();
    for i in 0..5 {
        fs::write(src.join(format!("a-note-{i}.txt")), format!("note {i}\n").repeat(100)).unwrap();
    }
    fs::write(src.join("sub/config.toml"), "answer = 42\n").unwrap();
    fs::write(src.join("sub/deeper/log.txt"), "line\n".repeat(2000)).unwrap();
    src
}

/// Runs `ckpt` with the server's endpoint and keys in the environment and `RUST_LOG=info`
/// (for the "fetched N bytes in M requests" line).
fn ckpt(weed: &Weed, dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .current_dir(dir)
        .env("AWS_ENDPOINT_URL", &weed.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output()
        .expect("run ckpt");
    assert!(out.status.success(), "ckpt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `(bytes, requests)` from the CLI's "fetched N bytes in M requests" log line.
fn fetched(out: &Output) -> (u64, u64) {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains(" bytes in ")).unwrap_or_else(|| {
        panic!("no fetched line in {err}");
    });
    let words: Vec<&str> = line.split_whitespace().collect();
    let number_before = |word: &str| {
        let at = words.iter().position(|w| *w == word).expect(word);
        words[at - 1].parse::<u64>().expect("a count")
    };
    (number_before("bytes"), number_before("requests"))
}

/// The local copy's frames: `(offset, stored length)` per frame, and the manifest.
fn layout(local: &[u8]) -> (Vec<(u64, u64)>, Manifest) {
    let mut reader = Reader::open(SliceSource::new(local)).unwrap();
    let count = reader.frame_count().unwrap();
    let frames = (0..count).map(|i| reader.frame_info(i).unwrap()).map(|f| (f.offset, f.len));
    let frames: Vec<(u64, u64)> = frames.collect();
    let mut f = reader.open_frame(0).unwrap();
    let bytes = f.read_to_vec().unwrap().unwrap();
    f.close().unwrap();
    (frames, Manifest::decode(&bytes).unwrap())
}

fn same_tree(a: &Path, b: &Path) {
    for entry in fs::read_dir(a).unwrap() {
        let entry = entry.unwrap();
        let there = b.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            same_tree(&entry.path(), &there);
        } else {
            assert!(
                fs::read(entry.path()).unwrap() == fs::read(&there).unwrap(),
                "{} differs",
                there.display()
            );
        }
    }
}

#[test]
fn restore_of_some_paths_fetches_only_their_frames_and_a_whole_restore_and_verify_each_byte_once() {
    let Some(weed) = Weed::start("cli_s3_read") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_tree(tmp.path());
    let url = format!("s3://{BUCKET}/read/tree.ckpt");
    let write = ["write", "--id", ID, "--frame-size", "1M", "src", "-o"];
    ckpt(&weed, tmp.path(), &[&write[..], &[url.as_str()]].concat());
    ckpt(&weed, tmp.path(), &[&write[..], &["local.ckpt"]].concat());
    let local = fs::read(tmp.path().join("local.ckpt")).unwrap();
    let len = local.len() as u64;
    let (frames, manifest) = layout(&local);
    let index = 8 + 40 * frames.len() as u64;
    let frame_0 = frames[0].1;

    // Only `src/sub`: the frames holding its two small files.
    let chosen: BTreeSet<usize> = manifest
        .data_frames()
        .iter()
        .enumerate()
        .filter(|(_, pieces)| {
            pieces.iter().any(|p| manifest.entries[p.entry].path.starts_with(b"src/sub/"))
        })
        .map(|(k, _)| k + 1)
        .collect();
    let chosen_bytes: u64 = chosen.iter().map(|&k| frames[k].1).sum();
    let out = tmp.path().join("some");
    let restore =
        ckpt(&weed, tmp.path(), &["restore", &url, "-C", out.to_str().unwrap(), "src/sub"]);
    let (bytes, requests) = fetched(&restore);
    same_tree(&src.join("sub"), &out.join("src/sub"));
    assert!(!out.join("src/weights.bin").exists());
    // No slack needed: HEAD, tail, index, frame 0 (the manifest, once: it is kept), and
    // each chosen frame in ranged GETs bounded by its end.
    let bound = TAIL + index + frame_0 + chosen_bytes;
    eprintln!(
        "restore src/sub: {bytes} bytes in {requests} requests (frames {chosen:?}; bound \
         {bound}; object {len})"
    );
    assert_eq!(bytes, bound, "bytes fetched for src/sub");
    assert!(bytes * 20 < len, "{bytes} bytes fetched of a {len}-byte object");
    assert!(requests <= 4 + chosen.len() as u64, "{requests} requests");

    // Everything, on two threads: each byte once (frame 0 read twice, fetched once).
    let out = tmp.path().join("all");
    let restore =
        ckpt(&weed, tmp.path(), &["restore", &url, "-C", out.to_str().unwrap(), "--threads", "2"]);
    let (bytes, requests) = fetched(&restore);
    same_tree(&src, &out.join("src"));
    let bound = 3 + frames.iter().map(|f| f.1.div_ceil(WINDOW)).sum::<u64>();
    eprintln!(
        "restore all: {bytes} bytes in {requests} requests (object {len}, {} frames)",
        frames.len()
    );
    // Every frame but the last, the block table, which a restore does not need.
    let table = frames.last().unwrap().1;
    assert_eq!(bytes, len - table, "bytes fetched for a whole restore");
    assert!(requests <= bound, "{requests} requests (bound {bound})");

    // verify: streamed once; the layout check after the scan fetches nothing.
    let verify = ckpt(&weed, tmp.path(), &["verify", "--json", &url]);
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let bytes = report["fetched"]["bytes"].as_u64().unwrap();
    let requests = report["fetched"]["requests"].as_u64().unwrap();
    assert_eq!(fetched(&verify), (bytes, requests), "the log and the report agree");
    eprintln!("verify: {bytes} bytes in {requests} requests (object {len})");
    assert!(bytes <= len + TAIL + index, "{bytes} bytes fetched to verify {len}");
    assert_eq!(bytes, len);
    let bound = 3 + (len - TAIL - index).div_ceil(WINDOW) + 1;
    assert!(requests <= bound, "{requests} requests to verify (bound {bound})");

    // info and list: HEAD, tail, index and frame 0.
    let info = ckpt(&weed, tmp.path(), &["info", "--json", &url]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["id"], ID);
}

/// Every regular file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return found };
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            let sub = files_under(&entry.path());
            found.extend(sub.into_iter().map(|p| Path::new(&entry.file_name()).join(p)));
        } else {
            found.push(PathBuf::from(entry.file_name()));
        }
    }
    found
}

#[test]
fn a_server_killed_mid_restore_fails_with_2_naming_the_frame_and_leaves_nothing_half_restored() {
    let Some(weed) = Weed::start("cli_s3_killed") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = make_tree(tmp.path());
    let key = "read/killed.ckpt";
    let url = format!("s3://{BUCKET}/{key}");

    // Written through the library: the same code path `ckpt write` takes.
    let collected =
        ckpt_tree::collect(std::slice::from_ref(&src), &CollectOptions::new(1 << 20)).unwrap();
    let options = WriteOptions {
        style: ckpt_frame_core::Style::Lz4,
        id: ID.parse().unwrap(),
        threads: 1,
        strict: true,
    };
    let sink = ObjectSink::create(&weed.client(BUCKET), key, UploadOptions::default()).unwrap();
    let (sink, summary) =
        ckpt_tree::write_checkpoint(sink, &collected, &options, &mut |_| {}).unwrap();
    sink.complete().unwrap();
    assert!(summary.frames > 10, "{summary:?}");

    // Retries bounded: the failure comes within seconds.
    let settings = weed
        .settings()
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(5))
        .with_retries(1, Duration::from_secs(2));
    let client = ObjectClient::s3(&settings, BUCKET).unwrap();
    let checkpoint = RemoteCheckpoint::open(&client, key).unwrap();
    let endpoint = weed.endpoint.clone();
    let out = tmp.path().join("out");
    // The server dies once a third of the file bytes are restored: some files are whole
    // by then, others (spanning frames, in named temporary files) are not.
    let weed = Mutex::new(weed);
    let killed_at = AtomicU64::new(0);
    let progress = |done: u64, total: u64| {
        if done >= total / 3 && done < total && killed_at.load(Ordering::Acquire) == 0 {
            weed.lock().unwrap().stop();
            killed_at.store(done, Ordering::Release);
        }
    };
    let open = || Ok::<_, ckpt_frame_core::Error>(checkpoint.source());
    let restore_options = RestoreOptions { same_owner: false, ..RestoreOptions::default() };
    let error = ckpt_tree::restore_checkpoint_parallel(open, &out, &restore_options, 2, &progress)
        .expect_err("the server died mid-restore");
    assert!(killed_at.load(Ordering::Acquire) > 0, "the server was never stopped");
    // What `ckpt restore` prints, and its exit status.
    let message = format!("{url}: {error}");
    eprintln!("ckpt: {message} (exit {})", error.exit_code());
    assert_eq!(error.exit_code(), 2, "{message}");
    for needle in [endpoint.as_str(), BUCKET, key, "fetching frame "] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }

    // Nothing half-restored: every file present is whole under its final name, no
    // temporary file is left, and the restore did stop short.
    let present = files_under(&out);
    for file in &present {
        let restored = fs::read(out.join(file)).unwrap();
        let original = fs::read(tmp.path().join(file));
        assert!(original.is_ok_and(|o| o == restored), "{} is not whole", file.display());
    }
    let all = files_under(&src);
    assert!(present.len() < all.len(), "everything was restored: {present:?}");
    eprintln!("after the failure: {} of {} files present, all whole", present.len(), all.len());
}
