//! `ckpt` on `s3://` checkpoints against a real S3 server (`SeaweedFS`, started by the
//! harness of `ckpt-object`'s tests): write, restore, verify, info and list; identical
//! bytes to a local write; exit status 2 naming endpoint, bucket and key on errors.

#[path = "../../object/tests/common/mod.rs"]
mod common;

use ckpt_frame_core::Source;
use ckpt_object::ObjectSource;
use common::{ACCESS_KEY, BUCKET, SECRET_KEY, Weed};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

thread_local! {
    static WORKDIR: std::cell::RefCell<std::path::PathBuf> = std::cell::RefCell::new(std::env::temp_dir());
}

const ID: &str = "00112233445566778899aabbccddeeff";

/// Runs `ckpt` in `weed`'s neighbourhood: the test's directory is the working directory
/// (checkpoints store relative paths).
fn ckpt(weed: &Weed, secret: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .current_dir(WORKDIR.with(|w| w.borrow().clone()))
        .env("AWS_ENDPOINT_URL", &weed.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .env("CKPT_STATE_DIR", WORKDIR.with(|w| w.borrow().join("ckpt-state")))
        .output()
        .expect("run ckpt")
}

fn ok(weed: &Weed, args: &[&str]) -> Output {
    let out = ckpt(weed, SECRET_KEY, args);
    assert!(out.status.success(), "ckpt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn fails_with_2(weed: &Weed, secret: &str, args: &[&str], needles: &[&str]) {
    let out = ckpt(weed, secret, args);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("ckpt {args:?} -> exit {:?}: {}", out.status.code(), err.trim());
    assert_eq!(out.status.code(), Some(2), "ckpt {args:?}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "ckpt {args:?}: {err:?} lacks {needle:?}");
    }
}

fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..20 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[5]
        })
        .collect();
    fs::write(root.join("weights.bin"), &noise).unwrap();
    fs::write(root.join("sub/config.toml"), "answer = 42\n").unwrap();
    fs::write(root.join("sub/deeper/log.txt"), "line\n".repeat(50_000)).unwrap();
    fs::write(root.join("empty"), "").unwrap();
}

#[test]
fn write_restore_verify_info_list_on_s3_and_clear_errors() {
    let Some(weed) = Weed::start("cli_s3") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    WORKDIR.with(|w| *w.borrow_mut() = tmp.path().to_owned());
    let src_arg = "src";
    let url = format!("s3://{BUCKET}/trees/a.ckpt");

    ok(&weed, &["write", "-o", &url, "--id", ID, src_arg]);
    let local = tmp.path().join("local.ckpt");
    ok(&weed, &["write", "-o", local.to_str().unwrap(), "--id", ID, src_arg]);
    let local_bytes = fs::read(&local).unwrap();
    let client = weed.client(BUCKET);
    let mut object = ObjectSource::open(&client, "trees/a.ckpt").unwrap();
    let mut object_bytes = vec![0u8; usize::try_from(object.len()).unwrap()];
    object.read_exact(&mut object_bytes).unwrap();
    assert!(object_bytes == local_bytes, "the object differs from the local write");

    let out = tmp.path().join("out");
    ok(&weed, &["restore", &url, "-C", out.to_str().unwrap()]);
    for file in ["weights.bin", "sub/config.toml", "sub/deeper/log.txt", "empty"] {
        assert!(
            fs::read(src.join(file)).unwrap() == fs::read(out.join("src").join(file)).unwrap(),
            "{file} differs after restore"
        );
    }
    ok(&weed, &["verify", &url]);
    let info = ok(&weed, &["info", &url]);
    assert!(String::from_utf8_lossy(&info.stdout).contains(ID), "info names the id");
    let list = ok(&weed, &["list", &url]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("config.toml"));

    let missing = format!("s3://{BUCKET}/trees/missing.ckpt");
    fails_with_2(
        &weed,
        SECRET_KEY,
        &["restore", &missing, "-C", out.to_str().unwrap()],
        &[&weed.endpoint, "trees/missing.ckpt"],
    );
    fails_with_2(
        &weed,
        SECRET_KEY,
        &["info", "s3://no-such-bucket/x.ckpt"],
        &[&weed.endpoint, "no-such-bucket"],
    );
    fails_with_2(&weed, "wrong-secret", &["verify", &url], &[&weed.endpoint, "trees/a.ckpt"]);
    fails_with_2(
        &weed,
        "wrong-secret",
        &["write", "-o", &format!("s3://{BUCKET}/trees/b.ckpt"), src_arg],
        &[&weed.endpoint, "trees/b.ckpt"],
    );
    fails_with_2(&weed, SECRET_KEY, &["info", "s3://bucket-only"], &["s3://bucket-only"]);
}
