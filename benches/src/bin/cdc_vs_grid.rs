//! `cdc_vs_grid [--size BYTES]`: compares ckpt's fixed 4 KiB block grid against
//! content-defined chunking (`FastCDC` 2020, min 2 KiB / avg 8 KiB / max 64 KiB) on the
//! bytes an incremental checkpoint would store and on the single-thread speed of cutting
//! and hashing (XXH3-64) the new file. Prints a Markdown table.
//!
//! Grid: a 4 KiB block of the new file is stored when its hash differs from the base
//! file's block at the same index, or when the base has no block there.
//! CDC: a chunk of the new file is stored when its hash is not among the base file's chunk
//! hashes (deduplication by content).

use std::collections::HashSet;
use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fastcdc::v2020::FastCDC;
use xxhash_rust::xxh3::xxh3_64;

const BLOCK: usize = 4096;
const CDC_MIN: u32 = 2 * 1024;
const CDC_AVG: u32 = 8 * 1024;
const CDC_MAX: u32 = 64 * 1024;
const INSERT_LEN: usize = 100;
const APPEND_LEN: usize = 1 << 20;
const RUNS: usize = 3;

/// Makes `len` bytes of one data kind.
type Generator = fn(usize) -> Vec<u8>;

/// Hash of every 4 KiB block, the last one at its real length.
fn grid_hashes(data: &[u8]) -> Vec<u64> {
    data.chunks(BLOCK).map(xxh3_64).collect()
}

/// `(hash, length)` of every content-defined chunk.
fn cdc_hashes(data: &[u8]) -> Vec<(u64, usize)> {
    FastCDC::new(data, CDC_MIN, CDC_AVG, CDC_MAX)
        .map(|c| (xxh3_64(&data[c.offset..c.offset + c.length]), c.length))
        .collect()
}

/// Runs `f` `RUNS` times and returns the fastest time and the last result.
fn best_of<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let r = black_box(f());
        best = best.min(start.elapsed());
        out = Some(r);
    }
    (best, out.expect("RUNS > 0"))
}

/// Bytes of `new` whose grid block differs from `base`'s block at the same index.
fn grid_stored(base: &[u64], new: &[u64], new_len: usize) -> usize {
    new.iter()
        .enumerate()
        .filter(|&(i, h)| base.get(i) != Some(h))
        .map(|(i, _)| BLOCK.min(new_len - i * BLOCK))
        .sum()
}

/// Bytes of chunks of `new` whose content hash is not among `base`'s.
fn cdc_stored(base: &HashSet<u64>, new: &[(u64, usize)]) -> usize {
    new.iter().filter(|(h, _)| !base.contains(h)).map(|&(_, len)| len).sum()
}

/// Adds 1 (wrapping) to every byte of `pct` percent of the file's 4 KiB blocks, spread
/// evenly: piece `i` of `count` sits at block `i * blocks / count`. Returns bytes changed.
fn change_in_place(data: &mut [u8], pct: usize) -> usize {
    let blocks = data.len() / BLOCK;
    let count = blocks * pct / 100;
    for i in 0..count {
        let at = (i * blocks / count) * BLOCK;
        for b in &mut data[at..at + BLOCK] {
            *b = b.wrapping_add(1);
        }
    }
    count * BLOCK
}

#[allow(clippy::cast_precision_loss)]
fn percent(part: usize, whole: usize) -> f64 {
    part as f64 * 100.0 / whole as f64
}

#[allow(clippy::cast_precision_loss)]
fn gb_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn parse_args() -> Result<usize, String> {
    let mut size = 268_435_456_usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size" => {
                let v = args.next().ok_or("--size needs a value")?;
                let n = ckpt_cli::size::parse_size(&v)?;
                size = usize::try_from(n).map_err(|_| format!("{v:?} does not fit in memory"))?;
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if size < 100 * BLOCK {
        return Err(format!("--size must be at least {} bytes", 100 * BLOCK));
    }
    Ok(size)
}

fn main() -> ExitCode {
    let size = match parse_args() {
        Ok(size) => size,
        Err(e) => {
            eprintln!("cdc_vs_grid: {e}\nusage: cdc_vs_grid [--size BYTES]");
            return ExitCode::from(2);
        }
    };

    println!(
        "File size {size} bytes; grid = fixed {BLOCK} B blocks compared by index; \
         CDC = FastCDC v2020 {CDC_MIN}/{CDC_AVG}/{CDC_MAX} B deduplicated by content; \
         XXH3-64 for both; percentages are of the new file; throughput = single thread, cut+hash of the new file, best of {RUNS}."
    );
    println!();
    println!(
        "| data | scenario | changed/added | grid stored | CDC stored | grid GB/s | CDC GB/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");

    let kinds: [(&str, Generator); 2] =
        [("random", ckpt_benches::random_bytes), ("logs", ckpt_benches::log_lines)];
    for (kind, generate) in kinds {
        let base = generate(size);
        let base_grid = grid_hashes(&base);
        let base_cdc: HashSet<u64> = cdc_hashes(&base).into_iter().map(|(h, _)| h).collect();

        let mut scenarios: Vec<(&str, Vec<u8>, usize)> = Vec::new();
        for pct in [1, 10] {
            let mut new = base.clone();
            let changed = change_in_place(&mut new, pct);
            let name = if pct == 1 { "1% in place" } else { "10% in place" };
            scenarios.push((name, new, changed));
        }
        let mid = size / 2;
        let mut inserted = Vec::with_capacity(size + INSERT_LEN);
        inserted.extend_from_slice(&base[..mid]);
        inserted.extend(b"abcdefghijklmnopqrstuvwxyz".iter().cycle().take(INSERT_LEN));
        inserted.extend_from_slice(&base[mid..]);
        scenarios.push(("100 B inserted at middle", inserted, INSERT_LEN));
        // The generators are prefix-stable, so this continues the base with new data.
        let appended = generate(size + APPEND_LEN);
        assert_eq!(appended[..size], base[..], "generator is not prefix-stable");
        scenarios.push(("1 MiB appended", appended, APPEND_LEN));

        for (name, new, changed) in scenarios {
            let (t_grid, new_grid) = best_of(|| grid_hashes(&new));
            let (t_cdc, new_cdc) = best_of(|| cdc_hashes(&new));
            let g = grid_stored(&base_grid, &new_grid, new.len());
            let c = cdc_stored(&base_cdc, &new_cdc);
            println!(
                "| {kind} | {name} | {changed} B | {:.2}% | {:.2}% | {:.2} | {:.2} |",
                percent(g, new.len()),
                percent(c, new.len()),
                gb_per_s(new.len(), t_grid),
                gb_per_s(new.len(), t_cdc),
            );
        }
    }
    ExitCode::SUCCESS
}
