//! One writer, many readers, across processes: the writer publishes checkpoints of
//! different sizes in a loop while reader processes (this test binary run again) read the
//! published one and verify every byte. No reader may ever accept a torn or unpublished
//! checkpoint; a reader whose checkpoint was reclaimed mid-read is told to read again.

use ckpt_poolset::native::{NativePool, PublishedReader};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROLE: &str = "CKPT_SWMR_READER_SET";
const GENERATIONS: u64 = 40;
const READERS: usize = 3;

/// The content of checkpoint number `seq`: its number and length, then a pattern of both.
fn content(seq: u64) -> Vec<u8> {
    let len = 50_000 + usize::try_from(seq * 7919 % 400_000).unwrap();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(len as u64).to_le_bytes());
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x.to_le_bytes()[0]);
    }
    out
}

fn make_set(dir: &Path) -> PathBuf {
    let mut text = String::from("PMEMPOOLSET\n");
    for r in 0..2 {
        if r > 0 {
            text.push_str("REPLICA\n");
        }
        writeln!(text, "4M {}", dir.join(format!("r{r}a")).display()).unwrap();
        writeln!(text, "4M {}", dir.join(format!("r{r}b")).display()).unwrap();
    }
    let set = dir.join("swmr.set");
    std::fs::write(&set, text).unwrap();
    set
}

/// The reader role: read and verify until the writer's `done` file appears; print
/// "verified N retried M" on stdout, exit non-zero on any bad checkpoint.
fn reader(set: &Path) {
    let done = set.with_extension("done");
    let (mut verified, mut retried, mut last_seq) = (0u64, 0u64, 0u64);
    loop {
        let finished = done.exists();
        let mut r = match PublishedReader::open(set) {
            Ok(r) => r,
            Err(e) => panic!("reader cannot open the pool: {e}"),
        };
        let snapshot = r.snapshot();
        let mut bytes = Vec::new();
        match r.read_to_end(&mut bytes) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                retried += 1;
                continue;
            }
            Err(e) => panic!("reader: {e}"),
            Ok(_) => {}
        }
        if snapshot.len > 0 {
            let seq = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            assert!(bytes == content(seq), "torn or foreign checkpoint: seq {seq} {snapshot:?}");
            assert!(seq >= last_seq, "went back from {last_seq} to {seq}");
            last_seq = seq;
            verified += 1;
        }
        if finished {
            break;
        }
    }
    println!("verified {verified} retried {retried} last {last_seq}");
}

#[test]
fn readers_never_see_a_torn_or_unpublished_checkpoint() {
    if let Some(set) = std::env::var_os(ROLE) {
        reader(Path::new(&set));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let set = make_set(dir.path());
    let mut pool = NativePool::create(&set, 4096).unwrap();
    {
        let mut w = pool.begin_checkpoint().unwrap();
        w.write_all(&content(1)).unwrap();
        w.finish().unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..READERS)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "readers_never_see_a_torn_or_unpublished_checkpoint",
                    "--nocapture",
                ])
                .env(ROLE, &set)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for seq in 2..=GENERATIONS {
        let mut w = pool.begin_checkpoint().unwrap();
        // Written in pieces, so readers can catch the writer mid-way.
        for piece in content(seq).chunks(10_000) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
    }
    std::fs::write(set.with_extension("done"), b"").unwrap();
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a reader failed: {text}");
        let line = text.lines().find(|l| l.starts_with("verified")).unwrap_or_default().to_owned();
        eprintln!("reader: {line}");
        let n: u64 = line.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        assert!(n > 0, "a reader verified nothing: {text}");
        total += n;
    }
    eprintln!(
        "{GENERATIONS} generations published; {total} checkpoints verified by {READERS} readers"
    );
}
