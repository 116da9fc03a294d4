//! Helpers shared by the integration tests: checkpoint plans, restore checks, log capture
//! and re-executing the test binary as a child process.
#![allow(dead_code, clippy::missing_panics_doc)]

use ckpt_frame_core::{
    CheckpointId, CheckpointSummary, Reader, Sink, Source, Style, VecSink, Writer,
    checkpoint_size_bound,
};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// A prerequisite of `test` (a mount namespace, a file system) is missing: fails the test
/// under `CI=true`, where the environment must be complete, else prints
/// `SKIP <test>: <reason>` to stderr (shown even when the test passes) and returns false,
/// so the test can `return`.
pub fn unavailable(test: &str, reason: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {reason} (CI=true: a missing prerequisite is a failure, not a skip)"
    );
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr().lock(), "SKIP {test}: {reason}");
    false
}

/// xorshift64*: deterministic "random" bytes without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Text-like bytes that LZ4 compresses well.
pub fn compressible(len: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 6] = [b"alpha ", b"beta ", b"checkpoint ", b"frame ", b"42 ", b"\n"];
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        let i = usize::try_from(rng.next_u64() % 6).unwrap_or(0);
        v.extend_from_slice(words[i]);
    }
    v.truncate(len);
    v
}

/// Frames of (style, buffers).
pub type Plan = Vec<(Style, Vec<Vec<u8>>)>;

pub const MIB: usize = 1 << 20;

/// The plan of the issue: RAW and LZ4 frames with buffers of 0, 1, 4097, 65537 and
/// 1 MiB + 3 bytes, compressible and random.
pub fn standard_plan() -> Plan {
    let sizes = [0usize, 1, 4097, 65537, MIB + 3];
    let mut rng = Rng::new(0x5eed);
    let mut plan = Plan::new();
    for (f, style) in
        [Style::Raw, Style::Lz4, Style::Lz4, Style::Raw, Style::Lz4].into_iter().enumerate()
    {
        let mut bufs = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let random = (f + i) % 2 == 0;
            bufs.push(if random { rng.bytes(len) } else { compressible(len, (f * 10 + i) as u64) });
        }
        // Vary the order so that small buffers meet large ones in every position.
        bufs.rotate_left(f % sizes.len());
        plan.push((style, bufs));
    }
    // An empty frame and a frame of empty buffers.
    plan.push((Style::Lz4, Vec::new()));
    plan.push((Style::Raw, vec![Vec::new(), Vec::new()]));
    plan
}

/// A plan of `frames` frames of about `frame_len` bytes each.
pub fn big_plan(frames: usize, frame_len: usize, seed: u64) -> Plan {
    let mut rng = Rng::new(seed);
    (0..frames)
        .map(|i| {
            let style = if i % 2 == 0 { Style::Lz4 } else { Style::Raw };
            let a = rng.bytes(frame_len / 2);
            let b = compressible(frame_len - frame_len / 2, seed + i as u64);
            (style, vec![a, b])
        })
        .collect()
}

pub fn id() -> CheckpointId {
    CheckpointId::from_bytes(*b"io-backends-test")
}

pub fn size_bound(plan: &Plan) -> u64 {
    checkpoint_size_bound(plan.iter().map(|(s, bufs)| (*s, bufs.iter().map(Vec::len))))
        .expect("bound fits u64")
}

/// Writes `plan` into `sink`; gives the sink back with the summary.
pub fn write_plan<S: Sink>(sink: S, plan: &Plan) -> (S, CheckpointSummary) {
    let mut w = Writer::new(sink, id());
    for (style, bufs) in plan {
        let mut f = w.open_frame(*style).expect("open frame");
        for b in bufs {
            f.add(b).expect("add buffer");
        }
        f.close().expect("close frame");
    }
    let summary = w.finish().expect("finish");
    (w.into_sink(), summary)
}

/// The bytes of `plan` through the in-memory sink of frame-core.
pub fn reference_bytes(plan: &Plan) -> Vec<u8> {
    write_plan(VecSink::new(), plan).0.into_inner()
}

/// Asserts equality of two byte strings, naming the first difference instead of printing
/// megabytes.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{what}: {} bytes, expected {}; first difference at {:?}",
        got.len(),
        want.len(),
        first.unwrap_or(got.len().min(want.len()))
    );
}

/// Restores `plan` from `src` in order (streaming reader).
pub fn restore_streaming<S: Source>(src: S, plan: &Plan, what: &str) {
    let mut r = Reader::new(src);
    for (i, (style, bufs)) in plan.iter().enumerate() {
        let mut f =
            r.next_frame().unwrap_or_else(|e| panic!("{what}: frame {i}: {e}")).expect("frame");
        assert_eq!(f.style(), *style, "{what}: frame {i} style");
        for (j, b) in bufs.iter().enumerate() {
            let mut back = vec![0u8; b.len()];
            f.read_into(&mut back).unwrap_or_else(|e| panic!("{what}: frame {i} buffer {j}: {e}"));
            assert_same(&back, b, &format!("{what}: frame {i} buffer {j}"));
        }
        f.close().unwrap_or_else(|e| panic!("{what}: close frame {i}: {e}"));
    }
    assert!(r.next_frame().expect("end").is_none(), "{what}: no extra frames");
    let summary = r.finish().unwrap_or_else(|e| panic!("{what}: finish: {e}"));
    assert_eq!(summary.frames, plan.len() as u64);
}

/// Restores `plan` from `src` through the index, frames in reverse order (every frame is a
/// seek).
pub fn restore_indexed<S: Source>(src: S, plan: &Plan, what: &str) {
    let mut r = Reader::open(src).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    assert_eq!(r.frame_count(), Some(plan.len() as u64));
    for (i, (style, bufs)) in plan.iter().enumerate().rev() {
        let mut f = r.open_frame(i as u64).unwrap_or_else(|e| panic!("{what}: frame {i}: {e}"));
        assert_eq!(f.style(), *style);
        for (j, b) in bufs.iter().enumerate() {
            let back =
                f.read_to_vec().unwrap_or_else(|e| panic!("{what}: frame {i} buffer {j}: {e}"));
            assert_same(&back.expect("buffer"), b, &format!("{what}: frame {i} buffer {j}"));
        }
        f.close().unwrap_or_else(|e| panic!("{what}: close frame {i}: {e}"));
    }
}

/// The names in `dir` that look like temporary files of `name`.
pub fn temps_of(dir: &Path, name: &str) -> Vec<String> {
    let prefix = format!(".{name}.ckpt-tmp.");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    v.sort();
    v
}

/// Every name in `dir`.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs one test of this test binary in a child process (`--exact`), with `env` set.
pub fn self_command(test: &str, env: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Collects `tracing` events (level and fields) while `f` runs on this thread.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sub = Capture { lines: Arc::clone(&lines) };
    let out = tracing::subscriber::with_default(sub, f);
    let lines = lines.lock().expect("lock").clone();
    (out, lines)
}

struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.lines.lock().expect("lock").push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A FIFO named `fifo` in `dir` (nothing opens it, so nothing waits for a writer).
#[allow(dead_code)] // not every test binary makes one
pub fn make_fifo(dir: &std::path::Path) -> std::path::PathBuf {
    let fifo = dir.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o600),
        0,
    )
    .expect("mkfifo");
    fifo
}
