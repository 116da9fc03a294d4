//! `ckpt write -o s3://...` publishing rules with the real binary and a real S3 server
//! (`SeaweedFS`): a write killed mid-upload leaves no object and `--resume` completes it
//! without re-sending the parts the server holds (counted by the server); `--no-clobber`
//! refuses to replace a checkpoint; misuse of the flags exits 2.

#[path = "../../object/tests/common/mod.rs"]
mod common;

use common::{ACCESS_KEY, BUCKET, SECRET_KEY, Weed};
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn command(weed: &Weed, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ckpt"));
    c.args(args)
        .current_dir(dir)
        .env("AWS_ENDPOINT_URL", &weed.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .env("CKPT_STATE_DIR", dir.join("state"));
    c
}

fn run(weed: &Weed, dir: &Path, args: &[&str]) -> Output {
    command(weed, dir, args).output().expect("run ckpt")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn noise_file(path: &Path, len: usize, seed: u64) {
    fs::write(path, common::noise(len, seed)).unwrap();
}

#[test]
fn a_killed_write_leaves_no_object_and_resume_completes_it() {
    let Some(weed) = Weed::start("cli_s3_resume") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir(dir.join("data")).unwrap();
    // About 25 parts of 8 MiB: incompressible, so the object is as large as the data.
    noise_file(&dir.join("data/blob.bin"), 200 << 20, 7);
    fs::write(dir.join("data/note.txt"), "resume me\n").unwrap();
    let url = format!("s3://{BUCKET}/runs/big.ckpt");

    let puts_at_start = weed.requests("PUT", 200);
    let mut child = command(&weed, dir, &["write", "-o", &url, "--id", ID, "data"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ckpt write");
    // Killed once the server holds two parts: no timing, the server's own count decides.
    let started = Instant::now();
    while weed.requests("PUT", 200) < puts_at_start + 2 {
        assert!(child.try_wait().unwrap().is_none(), "the write ended before it could be killed");
        assert!(started.elapsed() < Duration::from_mins(2), "no part landed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Parts whose bytes were on the wire at the kill may still land: wait until the
    // server has finished every PUT, so the resume's count below is its own.
    // A request still in a socket buffer is not in flight yet, hence the second look.
    let killed = Instant::now();
    loop {
        let before = weed.requests("PUT", 200);
        std::thread::sleep(Duration::from_millis(300));
        if weed.in_flight("PUT") == 0 && weed.requests("PUT", 200) == before {
            break;
        }
        assert!(killed.elapsed() < Duration::from_mins(1), "PUTs never finished");
    }
    let held = weed.requests("PUT", 200) - puts_at_start;

    let info = run(&weed, dir, &["info", &url]);
    assert_eq!(info.status.code(), Some(2), "no object after a kill: {}", stderr(&info));
    assert!(stderr(&info).contains("runs/big.ckpt"), "{}", stderr(&info));
    let journals = fs::read_dir(dir.join("state")).unwrap().count();
    assert_eq!(journals, 1, "the interrupted upload is journaled");

    // A different --id cannot resume this upload.
    let wrong =
        run(&weed, dir, &["write", "--resume", "-o", &url, "--id", &"1".repeat(32), "data"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains(ID), "{}", stderr(&wrong));

    let puts_before_resume = weed.requests("PUT", 200);
    let resumed = run(&weed, dir, &["write", "--resume", "-o", &url, "data"]);
    assert!(resumed.status.success(), "resume failed: {}", stderr(&resumed));
    let sent = weed.requests("PUT", 200) - puts_before_resume;
    let text = stderr(&resumed);
    let reused: u64 = text
        .split("resumed: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("resume names the parts reused: {text}"));
    let total: u64 = text
        .split(" of ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("resume names the parts: {text}"));
    eprintln!("killed after {held} parts landed; resume reused {reused} of {total}, sent {sent}");
    assert!(reused >= 2, "the parts the server held are not sent again: {text}");
    assert!(total >= 25, "{text}");
    assert_eq!(sent, total - reused, "the server saw exactly the missing parts");
    assert_eq!(fs::read_dir(dir.join("state")).unwrap().count(), 0, "journal removed");

    // The object is the checkpoint a local write with the same id gives.
    let local = dir.join("local.ckpt");
    let out = run(&weed, dir, &["write", "-o", local.to_str().unwrap(), "--id", ID, "data"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = dir.join("restored");
    let out = run(&weed, dir, &["restore", &url, "-C", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        fs::read(dir.join("data/blob.bin")).unwrap()
            == fs::read(restored.join("data/blob.bin")).unwrap()
    );
    let client = weed.client(BUCKET);
    let mut source = ckpt_object::ObjectSource::open(&client, "runs/big.ckpt").unwrap();
    let mut object = vec![0u8; usize::try_from(source.len()).unwrap()];
    ckpt_frame_core::Source::read_exact(&mut source, &mut object).unwrap();
    assert!(object == fs::read(&local).unwrap(), "resumed object differs from a local write");

    // Nothing left to resume.
    let again = run(&weed, dir, &["write", "--resume", "-o", &url, "data"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("no interrupted upload"), "{}", stderr(&again));
}

#[test]
fn no_clobber_refuses_to_replace_and_flags_need_s3() {
    let Some(weed) = Weed::start("cli_s3_no_clobber") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir(dir.join("data")).unwrap();
    fs::write(dir.join("data/a.txt"), "first\n").unwrap();
    let url = format!("s3://{BUCKET}/nc/a.ckpt");
    let out = run(&weed, dir, &["write", "--no-clobber", "-o", &url, "--id", ID, "data"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fs::write(dir.join("data/a.txt"), "second\n").unwrap();
    let out = run(&weed, dir, &["write", "--no-clobber", "-o", &url, "data"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    for needle in ["already exists", "nc/a.ckpt", weed.endpoint.as_str()] {
        assert!(stderr(&out).contains(needle), "{} lacks {needle}", stderr(&out));
    }
    let info = run(&weed, dir, &["info", &url]);
    assert!(String::from_utf8_lossy(&info.stdout).contains(ID), "the first checkpoint stays");
    let restored = dir.join("r");
    let out = run(&weed, dir, &["restore", &url, "-C", restored.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(restored.join("data/a.txt")).unwrap(), "first\n");

    for flag in ["--no-clobber", "--resume"] {
        let local = dir.join("local.ckpt");
        let out = run(&weed, dir, &["write", flag, "-o", local.to_str().unwrap(), "data"]);
        assert_eq!(out.status.code(), Some(2), "{flag} on a file: {}", stderr(&out));
        assert!(!local.exists(), "nothing written for a misused {flag}");
    }
}
