//! The native pool on real files: published state, read-repair, scrub healing random
//! damage and reporting what cannot be healed, one writer at a time, and the PMDK-style
//! tools (health, sync) working on it unchanged.

use ckpt_poolset::PoolError;
use ckpt_poolset::health::check;
use ckpt_poolset::native::{Access, NativePool};
use ckpt_poolset::sync::{SyncOptions, sync};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const BS: u32 = 4096;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| u8::try_from(self.next() % 251 + 1).unwrap()).collect()
    }
}

/// A set of `replicas` replicas, each two parts of 4 MiB (so blocks straddle parts).
fn make_set(dir: &Path, replicas: usize) -> (PathBuf, Vec<Vec<PathBuf>>) {
    let mut text = String::from("PMEMPOOLSET\n");
    let mut parts = Vec::new();
    for r in 0..replicas {
        if r > 0 {
            text.push_str("REPLICA\n");
        }
        let names = vec![dir.join(format!("r{r}a")), dir.join(format!("r{r}b"))];
        for p in &names {
            writeln!(text, "4M {}", p.display()).unwrap();
        }
        parts.push(names);
    }
    let set = dir.join("native.set");
    fs::write(&set, text).unwrap();
    (set, parts)
}

/// Where block `block`'s data lies in replica `r`'s files: (file, offset).
fn block_location(pool: &NativePool, parts: &[PathBuf], block: u64) -> (PathBuf, u64) {
    let at = pool.descriptor().data_at + block * u64::from(pool.descriptor().block_size);
    // Part a: pool 0..4M (header at 0); part b: pool 4M.. from file offset 4096.
    let part_a_len = 4 << 20;
    if at < part_a_len {
        (parts[0].clone(), at)
    } else {
        (parts[1].clone(), at - part_a_len + 4096)
    }
}

fn flip(path: &Path, offset: u64) {
    let f = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], offset).unwrap();
}

#[test]
fn published_state_read_repair_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (set, parts) = make_set(dir.path(), 2);
    let mut rng = Rng(1);
    let data = rng.bytes(300_000);
    let mut writer = NativePool::create(&set, BS).unwrap();
    assert!(writer.capacity() > 7 << 20);
    writer.write_at(1000, &data).unwrap();
    // A reader sees nothing before the publish.
    let mut reader = NativePool::open(&set, Access::Read).unwrap();
    assert_eq!(reader.published().len, 0);
    let mut buf = vec![0u8; 10];
    assert!(matches!(reader.read_published(0, &mut buf), Err(PoolError::Transform(_))));
    let published = writer.publish(1000, data.len() as u64).unwrap();
    assert_eq!(published.generation, 1);
    assert_eq!(reader.reload().unwrap(), published);
    let mut back = vec![0u8; data.len()];
    reader.read_published(0, &mut back).unwrap();
    assert!(back == data);
    // A second writer is refused while the first holds the set.
    let err = NativePool::open(&set, Access::Write).unwrap_err();
    assert!(matches!(err, PoolError::Locked { .. }), "{err:?}");
    // Damage a block in replica 0: the writer reads it from replica 1 and repairs it.
    let (file, off) = block_location(&writer, &parts[0], 10);
    flip(&file, off + 17);
    let mut back = vec![0u8; data.len()];
    writer.read_at(1000, &mut back).unwrap();
    assert!(back == data);
    assert_eq!(writer.repaired(), 1);
    drop(writer);
    let mut again = NativePool::open(&set, Access::Write).unwrap();
    let report = again.scrub(&mut |_, _| {}).unwrap();
    assert_eq!(report.healed, vec![0, 0], "read-repair already fixed the copy: {report:?}");
    assert!(report.unrecoverable.is_empty());
}

#[test]
fn scrub_heals_random_damage_and_reports_what_cannot_be_healed() {
    let dir = tempfile::tempdir().unwrap();
    let (set, parts) = make_set(dir.path(), 3);
    let mut rng = Rng(7);
    let data = rng.bytes(6 << 20);
    let mut pool = NativePool::create(&set, BS).unwrap();
    pool.write_at(0, &data).unwrap();
    pool.publish(0, data.len() as u64).unwrap();
    let blocks = data.len() as u64 / u64::from(BS);
    // Damage 40 random (replica, block) copies, never all three copies of a block.
    let mut damaged = std::collections::BTreeSet::new();
    while damaged.len() < 40 {
        let (r, b) = ((rng.next() % 3) as usize, rng.next() % blocks);
        let others = (0..3).filter(|&x| x != r && damaged.contains(&(x, b))).count();
        if others < 2 && damaged.insert((r, b)) {
            let (file, off) = block_location(&pool, &parts[r], b);
            flip(&file, off + rng.next() % u64::from(BS));
        }
    }
    let report = pool.scrub(&mut |_, _| {}).unwrap();
    let expected: Vec<u64> =
        (0..3).map(|r| damaged.iter().filter(|(x, _)| *x == r).count() as u64).collect();
    assert_eq!(report.healed, expected, "{report:?}");
    assert!(report.unrecoverable.is_empty());
    assert_eq!(report.blocks_checked, blocks);
    let again = pool.scrub(&mut |_, _| {}).unwrap();
    assert_eq!(again.healed, vec![0, 0, 0], "a second scrub finds nothing");
    let mut back = vec![0u8; data.len()];
    pool.read_at(0, &mut back).unwrap();
    assert!(back == data);

    // A block bad in every replica: reported, and no copy overwritten.
    let victim = 123;
    let mut before = Vec::new();
    for (r, replica) in parts.iter().enumerate() {
        let (file, off) = block_location(&pool, replica, victim);
        flip(&file, off + 1 + r as u64);
        let mut b = vec![0u8; BS as usize];
        fs::File::open(&file).unwrap().read_exact_at(&mut b, off).unwrap();
        before.push((file, off, b));
    }
    let report = pool.scrub(&mut |_, _| {}).unwrap();
    assert_eq!(report.unrecoverable, vec![victim], "{report:?}");
    for (file, off, b) in before {
        let mut now = vec![0u8; BS as usize];
        fs::File::open(&file).unwrap().read_exact_at(&mut now, off).unwrap();
        assert!(now == b, "an unverifiable copy was overwritten");
    }
    let mut one = vec![0u8; 10];
    let err = pool.read_at(victim * u64::from(BS), &mut one).unwrap_err();
    assert!(err.to_string().contains("block 123") && err.to_string().contains("verifies"), "{err}");
}

#[test]
fn health_and_sync_work_on_native_pools() {
    let dir = tempfile::tempdir().unwrap();
    let (set, parts) = make_set(dir.path(), 2);
    let mut rng = Rng(3);
    let data = rng.bytes(5 << 20);
    let mut pool = NativePool::create(&set, 65536).unwrap();
    pool.write_at(0, &data).unwrap();
    pool.publish(0, data.len() as u64).unwrap();
    drop(pool);
    assert!(check(&set).unwrap().is_healthy());
    fs::remove_file(&parts[1][1]).unwrap();
    fs::write(&parts[0][0], vec![0u8; 4096]).unwrap(); // wrong size AND zeroed
    let health = check(&set).unwrap();
    assert!(!health.is_healthy());
    let report = sync(&set, &SyncOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(report.rebuilt.len(), 2, "{report:?}");
    assert!(check(&set).unwrap().is_healthy());
    let reader = NativePool::open(&set, Access::Read).unwrap();
    let mut back = vec![0u8; data.len()];
    reader.read_published(0, &mut back).unwrap();
    assert!(back == data);
}

#[test]
fn misuse_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (set, parts) = make_set(dir.path(), 2);
    let err = NativePool::create(&set, 3000).unwrap_err();
    assert!(err.to_string().contains("power of two"), "{err}");
    fs::write(&parts[1][0], b"precious").unwrap();
    let err = NativePool::create(&set, BS).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(fs::read(&parts[1][0]).unwrap(), b"precious");
    fs::remove_file(&parts[1][0]).unwrap();
    let mut pool = NativePool::create(&set, BS).unwrap();
    let cap = pool.capacity();
    let err = pool.write_at(cap - 1, b"xx").unwrap_err();
    assert!(err.to_string().contains("past the pool's data area"), "{err}");
    drop(pool);
    let mut reader = NativePool::open(&set, Access::Read).unwrap();
    assert!(reader.write_at(0, b"x").unwrap_err().to_string().contains("reading only"));
    assert!(reader.publish(0, 1).is_err());
    assert!(reader.scrub(&mut |_, _| {}).is_err());
    // A file that is not a native pool.
    let other = dir.path().join("other.set");
    let plain = dir.path().join("plain");
    fs::write(&plain, vec![0u8; 8 << 20]).unwrap();
    fs::write(&other, format!("PMEMPOOLSET\n8M {}\n", plain.display())).unwrap();
    let err = NativePool::open(&other, Access::Read).unwrap_err();
    assert!(err.to_string().contains("not a native pool"), "{err}");
}
