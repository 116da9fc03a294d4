//! `ckpt demo`: generate a realistic data set, checkpoint it, restore it, verify it, damage a
//! copy and heal it from the other, printing what each step did and how fast.

// Ratios and rates are only printed; f64's mantissa is plenty for that.
#![allow(clippy::cast_precision_loss)]

use crate::{Failure, human};
use ckpt_frame_core::Style;
use ckpt_frame_core::scan::{Depth, RegionKind, scan};
use ckpt_io_backends::{IoMode, open_input};
use ckpt_poolset::native::{Access, NativePool};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn env_failure(what: &str, path: &Path, e: &std::io::Error) -> Failure {
    Failure::usage(format!("demo: {what} {}: {e}", path.display()))
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn log_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let levels = ["INFO", "WARN", "DEBUG", "ERROR"];
    let mut out = Vec::with_capacity(len + 200);
    while out.len() < len {
        let r = rng.next();
        let line = format!(
            "{{\"ts\":{},\"level\":\"{}\",\"slot\":{},\"msg\":\"replayed {} txs\",\"latency_us\":{}}}\n",
            1_700_000_000_000u64 + (r >> 30) % 10_000_000,
            levels.get((r % 4) as usize).copied().unwrap_or("INFO"),
            (r >> 8) % 1_000_000,
            r % 512,
            (r >> 20) % 90_000
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A model-weights-like binary: f32 values drifting slowly, some exactly zero.
fn weights(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4);
    let mut v = 0.0f32;
    while out.len() < len {
        let r = rng.next();
        v = if r.is_multiple_of(7) {
            0.0
        } else {
            v + (f32::from((r % 2001) as u16) - 1000.0) / 1e6
        };
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    fs::File::create(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| env_failure("cannot write", path, &e))
}

/// Generates about `size` bytes under `root`: logs, random blobs, a mostly-zero image,
/// weights, many small files, an empty file, an empty directory and a symlink.
fn generate(root: &Path, size: u64) -> Result<u64, Failure> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    for d in ["logs", "blobs", "small", "empty-dir"] {
        fs::create_dir_all(root.join(d)).map_err(|e| env_failure("cannot create", root, &e))?;
    }
    for i in 0..4 {
        write_file(&root.join(format!("logs/node-{i}.log")), &log_text(&mut rng, size * 35 / 400))?;
    }
    write_file(&root.join("blobs/random.bin"), &random_bytes(&mut rng, size / 4))?;
    write_file(&root.join("blobs/weights.f32"), &weights(&mut rng, size / 5))?;
    let mut image = vec![0u8; size * 3 / 20];
    for island in image.chunks_mut(1 << 20).step_by(3) {
        let n = island.len().min(64 * 1024);
        island[..n].copy_from_slice(&random_bytes(&mut rng, n));
    }
    write_file(&root.join("blobs/disk.img"), &image)?;
    let small_total = size / 20;
    let mut written = 0;
    let mut i = 0;
    while written < small_total {
        let len = 512 + (rng.next() % 3584) as usize;
        write_file(&root.join(format!("small/account-{i:05}.json")), &log_text(&mut rng, len))?;
        written += len;
        i += 1;
    }
    write_file(&root.join("EMPTY"), b"")?;
    let script = root.join("run.sh");
    write_file(&script, b"#!/bin/sh\necho restored\n")?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
        .map_err(|e| env_failure("cannot chmod", &script, &e))?;
    let link = root.join("latest.log");
    symlink("logs/node-0.log", &link).map_err(|e| env_failure("cannot create", &link, &e))?;
    Ok(dir_bytes(root))
}

fn dir_bytes(root: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_bytes(&e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Compares two trees: names, kinds, bytes, permission bits and symlink targets.
fn same_tree(a: &Path, b: &Path) -> Result<(), String> {
    let list = |p: &Path| -> Result<Vec<_>, String> {
        let mut v: Vec<_> = fs::read_dir(p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        v.sort();
        Ok(v)
    };
    let (la, lb) = (list(a)?, list(b)?);
    if la != lb {
        return Err(format!("{} and {} hold different names", a.display(), b.display()));
    }
    for name in la {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).map_err(|e| e.to_string())?,
            fs::symlink_metadata(&pb).map_err(|e| e.to_string())?,
        );
        if ma.file_type() != mb.file_type() || ma.permissions().mode() != mb.permissions().mode() {
            return Err(format!("{} differs in kind or mode", pb.display()));
        }
        if ma.is_dir() {
            same_tree(&pa, &pb)?;
        } else if ma.file_type().is_symlink() {
            if fs::read_link(&pa).ok() != fs::read_link(&pb).ok() {
                return Err(format!("{} points elsewhere", pb.display()));
            }
        } else if fs::read(&pa).map_err(|e| e.to_string())?
            != fs::read(&pb).map_err(|e| e.to_string())?
        {
            return Err(format!("{} differs", pb.display()));
        }
    }
    Ok(())
}

/// Copies `ckpt` to `damaged` and flips a byte in about a dozen chunks spread over it;
/// returns how many, after checking that verify notices.
fn damage_copy(ckpt: &Path, damaged: &Path) -> Result<usize, Failure> {
    fs::copy(ckpt, damaged).map_err(|e| env_failure("cannot copy to", damaged, &e))?;
    let mut src =
        open_input(damaged, IoMode::Buffered).map_err(|e| Failure::usage(e.to_string()))?;
    let report = scan(&mut src, Depth::Stored).map_err(|e| Failure::usage(e.to_string()))?;
    let chunks: Vec<_> = report.regions.iter().filter(|r| r.kind == RegionKind::Chunk).collect();
    let mut bytes = fs::read(damaged).map_err(|e| env_failure("cannot read", damaged, &e))?;
    let mut hits = 0;
    for r in chunks.iter().step_by((chunks.len() / 12).max(1)) {
        let at = usize::try_from(r.offset + r.len / 2).unwrap_or(usize::MAX);
        if let Some(b) = bytes.get_mut(at) {
            *b ^= 0x5A;
            hits += 1;
        }
    }
    fs::write(damaged, &bytes).map_err(|e| env_failure("cannot write", damaged, &e))?;
    if crate::verify(damaged, false)? == 0 {
        return Err(Failure::bad_data("demo: damage went unnoticed"));
    }
    Ok(hits)
}

struct Step {
    what: &'static str,
    secs: f64,
    bytes: u64,
    result: String,
}

/// Flips one byte in up to `count` distinct blocks of `replica`'s copy of the published
/// checkpoint, starting at block `first` and every third block after it (wrapping; a small
/// pool has fewer blocks, and flipping a block twice would undo the damage). Returns the
/// blocks hit.
fn damage_replica(set: &Path, replica: usize, first: u64, count: u64) -> Result<Vec<u64>, Failure> {
    let pool = NativePool::open(set, Access::Read).map_err(|e| Failure::usage(e.to_string()))?;
    let (desc, published) = (pool.descriptor(), pool.published());
    drop(pool);
    let poolset = ckpt_poolset::grammar::PoolSet::from_file(set)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let extents = poolset.replica_extents(replica).unwrap_or_default();
    let bs = u64::from(desc.block_size);
    let blocks = (published.len / bs).max(1);
    let mut hit = Vec::new();
    let mut tried = std::collections::BTreeSet::new();
    for k in 0..blocks {
        if hit.len() as u64 >= count {
            break;
        }
        let block = published.start / bs + (first + 3 * k) % blocks;
        if !tried.insert(block) {
            continue;
        }
        let at = desc.data_at + block * bs + 100;
        let Some(e) = extents.iter().find(|e| e.pool_offset <= at && at < e.pool_offset + e.len)
        else {
            continue;
        };
        let path = &poolset.replicas[replica].parts[e.part].path;
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| env_failure("cannot open", path, &e))?;
        let off = e.file_offset + (at - e.pool_offset);
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).map_err(|e| env_failure("cannot read", path, &e))?;
        f.write_all_at(&[b[0] ^ 0xff], off).map_err(|e| env_failure("cannot write", path, &e))?;
        hit.push(block);
    }
    Ok(hit)
}

/// Runs one step of the tour and times it.
type Timed<'a> = dyn Fn(&'static str, u64, &mut dyn FnMut() -> Result<String, Failure>) -> Result<Step, Failure>
    + 'a;

/// The pool tour: a three-replica native pool holds a checkpoint of the logs and small
/// files; two replicas are damaged in different blocks; scrub heals them from verified
/// copies; the restore from the pool is exact.
fn pool_tour(
    work: &Path,
    data: &Path,
    steps: &mut Vec<Step>,
    timed: &Timed<'_>,
) -> Result<(), Failure> {
    let dir = work.join("pool");
    fs::create_dir_all(&dir).map_err(|e| env_failure("cannot create", &dir, &e))?;
    let sources = [data.join("logs"), data.join("small")];
    let bytes: u64 = sources.iter().map(|p| dir_bytes(p)).sum();
    // Each checkpoint takes at most half the data area; LZ4 never grows data by much.
    let part = (2 * (bytes + bytes / 16) + (16 << 20)).next_multiple_of(1 << 20);
    let set = dir.join("pool.set");
    let text = format!(
        "PMEMPOOLSET\n{part} {a}\nREPLICA\n{half} {b0}\n{half} {b1}\nREPLICA\n{part} {c}\n",
        half = part / 2 + 4096,
        a = dir.join("replica0").display(),
        b0 = dir.join("replica1.part0").display(),
        b1 = dir.join("replica1.part1").display(),
        c = dir.join("replica2").display(),
    );
    fs::write(&set, text).map_err(|e| env_failure("cannot write", &set, &e))?;
    let target = format!("pool:{}", set.display());
    steps.push(timed("pool", bytes, &mut || {
        NativePool::create(&set, ckpt_poolset::native::DEFAULT_BLOCK_SIZE)
            .map_err(|e| Failure::usage(format!("{}: {e}", set.display())))?;
        let id = ckpt_frame_core::CheckpointId::generate();
        let options = ckpt_tree::WriteOptions {
            style: Style::Lz4,
            id,
            threads: crate::all_cores(),
            strict: true,
        };
        crate::write(
            &target,
            IoMode::Buffered,
            &ckpt_tree::CollectOptions::new(4 << 20),
            &options,
            crate::object_cmd::UploadFlags::default(),
            None,
            &sources,
        )?;
        Ok(format!("checkpoint of logs/ and small/ ({}) in a 3-replica native pool", human(bytes)))
    })?);
    let mut damaged = (0u64, 0u64);
    steps.push(timed("damage", 0, &mut || {
        damaged.0 = damage_replica(&set, 1, 0, 20)?.len() as u64;
        damaged.1 = damage_replica(&set, 2, 1, 20)?.len() as u64;
        Ok(format!(
            "flipped a byte in {} blocks of replica 1 and {} others of replica 2",
            damaged.0, damaged.1
        ))
    })?);
    steps.push(timed("scrub", 3 * bytes, &mut || {
        let mut pool =
            NativePool::open(&set, Access::Write).map_err(|e| Failure::usage(e.to_string()))?;
        let report = pool.scrub(&mut |_, _| {}).map_err(|e| Failure::usage(e.to_string()))?;
        if report.healed[1] != damaged.0
            || report.healed[2] != damaged.1
            || !report.unrecoverable.is_empty()
        {
            return Err(Failure::bad_data(format!(
                "demo: scrub did not heal what was damaged: {report:?}"
            )));
        }
        Ok(format!(
            "healed {} + {} blocks from verified copies",
            report.healed[1], report.healed[2]
        ))
    })?);
    let restored = work.join("restored-from-pool");
    steps.push(timed("restore", bytes, &mut || {
        crate::restore(
            &target,
            &restored,
            IoMode::Buffered,
            1,
            &ckpt_tree::RestoreOptions::default(),
        )?;
        for src in &sources {
            let name = src.file_name().unwrap_or_default();
            same_tree(src, &restored.join(name)).map_err(|e| {
                Failure::bad_data(format!("demo: restore from the pool differs: {e}"))
            })?;
        }
        Ok("from the pool: identical to the source".into())
    })?);
    Ok(())
}

pub(crate) fn run(dir: Option<&Path>, size: u64) -> Result<u8, Failure> {
    // Held until the end: dropping it removes the temporary work directory.
    let mut temp = None;
    let work: PathBuf = if let Some(d) = dir {
        fs::create_dir_all(d).map_err(|e| env_failure("cannot create", d, &e))?;
        d.to_path_buf()
    } else {
        let t = tempfile::Builder::new().prefix("ckpt-demo-").tempdir().map_err(|e| {
            Failure::usage(format!("demo: cannot create a temporary directory: {e}"))
        })?;
        temp.insert(t).path().to_path_buf()
    };
    let data = work.join("data");
    if data.exists() {
        return Err(Failure::usage(format!(
            "demo: {} exists; pick an empty --dir",
            data.display()
        )));
    }
    fs::create_dir_all(&data).map_err(|e| env_failure("cannot create", &data, &e))?;
    println!("ckpt demo in {} ({} of generated data)", work.display(), human(size));
    let mut steps = Vec::new();
    let timed =
        |what, bytes, f: &mut dyn FnMut() -> Result<String, Failure>| -> Result<Step, Failure> {
            let t = Instant::now();
            let result = f()?;
            Ok(Step { what, secs: t.elapsed().as_secs_f64(), bytes, result })
        };
    let mut total = 0;
    steps.push(timed("generate", 0, &mut || {
        total = generate(&data, size)?;
        Ok(format!("{} in logs, random, weights, a sparse-ish image, small files", human(total)))
    })?);
    let ckpt = work.join("demo.ckpt");
    let ckpt_s = ckpt.to_string_lossy().into_owned();
    steps.push(timed("write", total, &mut || {
        let id = ckpt_frame_core::CheckpointId::generate();
        let options = ckpt_tree::WriteOptions {
            style: Style::Lz4,
            id,
            threads: crate::all_cores(),
            strict: true,
        };
        let collect = ckpt_tree::CollectOptions::new(16 << 20);
        crate::write(
            &ckpt_s,
            IoMode::Buffered,
            &collect,
            &options,
            crate::object_cmd::UploadFlags::default(),
            None,
            std::slice::from_ref(&data),
        )?;
        let stored = fs::metadata(&ckpt).map_or(0, |m| m.len());
        Ok(format!("{} stored, ratio {:.2}", human(stored), total as f64 / stored.max(1) as f64))
    })?);
    let restored = work.join("restored");
    steps.push(timed("restore", total, &mut || {
        crate::restore(
            &ckpt_s,
            &restored,
            IoMode::Buffered,
            crate::all_cores(),
            &ckpt_tree::RestoreOptions::default(),
        )?;
        Ok(format!("into {}", restored.display()))
    })?);
    steps.push(timed("compare", 2 * total, &mut || {
        same_tree(&data, &restored.join("data"))
            .map_err(|e| Failure::bad_data(format!("demo: restored tree differs: {e}")))?;
        Ok("restored tree identical to the source: bytes, modes, symlinks".into())
    })?);
    steps.push(timed("verify", total, &mut || match crate::verify(&ckpt, false)? {
        0 => Ok("every chunk verifies".into()),
        _ => Err(Failure::bad_data("demo: the fresh checkpoint does not verify")),
    })?);
    let damaged = work.join("damaged.ckpt");
    let mut hits = 0;
    steps.push(timed("damage", 0, &mut || {
        hits = damage_copy(&ckpt, &damaged)?;
        Ok(format!("flipped a byte in {hits} chunks of a copy; verify names each"))
    })?);
    steps.push(timed("heal", 0, &mut || match crate::heal(&damaged, &ckpt, false, false)? {
        0 => Ok(format!("rewrote the {hits} damaged chunks from demo.ckpt; it verifies again")),
        _ => Err(Failure::bad_data("demo: heal did not restore the damaged copy")),
    })?);
    pool_tour(&work, &data, &mut steps, &timed)?;
    println!("\n{:<9} {:>9} {:>11}  result", "step", "seconds", "throughput");
    for s in &steps {
        let rate = if s.bytes > 0 && s.secs > 0.0 {
            format!("{:.0} MB/s", s.bytes as f64 / s.secs / 1e6)
        } else {
            String::from("-")
        };
        println!("{:<9} {:>9.2} {:>11}  {}", s.what, s.secs, rate, s.result);
    }
    println!(
        "\n(write on {} threads, the rest on one; `ckpt --help` for the commands)",
        crate::all_cores()
    );
    Ok(0)
}
