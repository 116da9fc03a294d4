//! Invariant: reading a native pool whose replicas hold arbitrary damage never panics and
//! never returns bytes that differ from what was published: `read_published` gives the
//! published bytes or an error naming a block without a verified copy; `scrub` then heals
//! every block that has a verified copy somewhere, reports the others, and afterwards every
//! block it did not report reads back equal.
//!
//! A small pool (2 replicas of one 64 KiB part, 4 KiB blocks) is created once per process
//! in a temporary directory with published content; each input restores the pristine part
//! files, applies its damage (offset, byte XOR mask) pairs to either replica — headers,
//! descriptor, control records, block table and data alike — and reads.
#![no_main]

use ckpt_poolset::native::{Access, NativePool};
use libfuzzer_sys::fuzz_target;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

const PART: usize = 64 * 1024;

struct Fixture {
    set: PathBuf,
    parts: [PathBuf; 2],
    pristine: [Vec<u8>; 2],
    content: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("ckpt-fuzz-native-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let parts = [dir.join("r0"), dir.join("r1")];
        let set = dir.join("pool.set");
        fs::write(
            &set,
            format!("PMEMPOOLSET\n64K {}\nREPLICA\n64K {}\n", parts[0].display(), parts[1].display()),
        )
        .unwrap();
        let mut pool = NativePool::create(&set, 4096).unwrap();
        let content: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        pool.write_at(0, &content).unwrap();
        pool.publish(0, content.len() as u64).unwrap();
        drop(pool);
        let pristine = [fs::read(&parts[0]).unwrap(), fs::read(&parts[1]).unwrap()];
        Fixture { set, parts, pristine, content }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    for (path, bytes) in f.parts.iter().zip(&f.pristine) {
        fs::write(path, bytes).unwrap();
    }
    // Damage: 4-byte records (replica bit + 15-bit offset, xor mask, unused).
    for rec in data.chunks_exact(4).take(64) {
        let word = u16::from_le_bytes([rec[0], rec[1]]);
        let replica = usize::from(word >> 15);
        let offset = u64::from(word & 0x7fff) * 2 % PART as u64;
        let mask = rec[2] | 1;
        let file = fs::OpenOptions::new().read(true).write(true).open(&f.parts[replica]).unwrap();
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, offset).unwrap();
        file.write_all_at(&[b[0] ^ mask], offset).unwrap();
    }
    let Ok(reader) = NativePool::open(&f.set, Access::Read) else { return };
    let published = reader.published();
    // Damaged control records may leave an older (empty) state: never a foreign one.
    assert!(published.len == 0 || published.len == f.content.len() as u64, "{published:?}");
    if published.len == 0 {
        return;
    }
    let mut got = vec![0u8; f.content.len()];
    if reader.read_published(0, &mut got).is_ok() {
        assert!(got == f.content, "a read returned bytes that were never published");
    }
    drop(reader);
    let Ok(mut writer) = NativePool::open(&f.set, Access::Write) else { return };
    let Ok(report) = writer.scrub(&mut |_, _| {}) else { return };
    let bs = 4096usize;
    for (k, chunk) in f.content.chunks(bs).enumerate() {
        let mut buf = vec![0u8; chunk.len()];
        let result = writer.read_at((k * bs) as u64, &mut buf);
        if report.unrecoverable.contains(&(k as u64)) {
            assert!(result.is_err(), "block {k} was reported unrecoverable but reads");
        } else {
            assert!(result.is_ok(), "block {k} was not reported but does not read");
            assert!(buf == chunk, "block {k} reads other bytes after scrub");
        }
    }
});
