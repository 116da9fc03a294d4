//! Checkpoints an embedded default state in memory with both styles, restores it through
//! the streaming and the indexed reader, checks every byte, and reports sizes and speed.
//!
//! ```text
//! cargo run --release -p ckpt-frame-core --example roundtrip [-- STATE_MIB] [OUT_FILE]
//! ```
//! With `OUT_FILE`, the LZ4 checkpoint is also written there (through `WriteSink`).

// Sizes and rates are only printed; f64's 52-bit mantissa is plenty for that.
#![allow(clippy::cast_precision_loss)]

use ckpt_frame_core::{
    CheckpointId, Error, Reader, SliceSink, SliceSource, Style, WriteSink, Writer,
    checkpoint_size_bound,
};
use std::time::Instant;

/// The default state: a service's in-memory tables, as a checkpointing user would hold them.
struct State {
    /// JSON-ish log lines (compressible).
    log: Vec<u8>,
    /// Model weights (incompressible).
    weights: Vec<u8>,
    /// Many small account records (the case the C original handled worst).
    accounts: Vec<Vec<u8>>,
}

fn xorshift(mut s: u64) -> impl FnMut() -> u64 {
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

fn default_state(total: usize) -> State {
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let mut log = Vec::with_capacity(total / 2 + 256);
    while log.len() < total / 2 {
        let r = next();
        log.extend_from_slice(
            format!(
                "{{\"slot\":{},\"level\":\"{}\",\"msg\":\"vote {}\",\"latency_us\":{}}}\n",
                r % 1_000_000,
                ["INFO", "WARN", "DEBUG"][(r % 3) as usize],
                r >> 40,
                r % 9000
            )
            .as_bytes(),
        );
    }
    let weights = (0..total / 4 / 8).flat_map(|_| next().to_le_bytes()).collect();
    let accounts = (0..total / 4 / 50)
        .map(|i| {
            let mut a = format!("acct-{i:08}:lamports={}:owner=", next() % 10_000_000).into_bytes();
            a.resize(50, b'.');
            a
        })
        .collect();
    State { log, weights, accounts }
}

fn frames(state: &State) -> Vec<Vec<&[u8]>> {
    vec![
        vec![state.log.as_slice()],
        vec![state.weights.as_slice()],
        state.accounts.iter().map(Vec::as_slice).collect(),
    ]
}

fn write(out: &mut [u8], style: Style, state: &State) -> Result<usize, Error> {
    let mut w = Writer::new(SliceSink::new(out), CheckpointId::generate());
    for bufs in frames(state) {
        let mut f = w.open_frame(style)?;
        f.add_all(bufs)?;
        f.close()?;
    }
    Ok(usize::try_from(w.finish()?.len).expect("fits in memory"))
}

/// Restores into `dest`, which has the shape of the state (allocated and touched once, as
/// a service restoring into its own tables would be).
fn restore(bytes: &[u8], dest: &mut [Vec<Vec<u8>>], indexed: bool) -> Result<(), Error> {
    let mut r = if indexed {
        Reader::open(SliceSource::new(bytes))?
    } else {
        Reader::new(SliceSource::new(bytes))
    };
    for (i, bufs) in dest.iter_mut().enumerate() {
        let mut f = if indexed { r.open_frame(i as u64)? } else { r.next_frame()?.expect("frame") };
        for buf in bufs.iter_mut() {
            f.read_into(buf)?;
        }
        f.close()?;
    }
    r.finish()?;
    Ok(())
}

fn verify(dest: &[Vec<Vec<u8>>], state: &State) {
    for (i, (got, want)) in dest.iter().zip(frames(state)).enumerate() {
        assert!(got.iter().map(Vec::as_slice).eq(want), "frame {i}: restored bytes differ");
    }
}

fn gbps(bytes: usize, secs: f64) -> String {
    format!("{:.2} GB/s", bytes as f64 / secs / 1e9)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let out_file = args.next();
    let state = default_state(mib << 20);
    let logical: usize = frames(&state).iter().flatten().map(|b| b.len()).sum();
    println!(
        "state: {:.1} MiB in 3 frames ({} buffers; {} of them 50-byte account records)",
        logical as f64 / f64::from(1 << 20),
        frames(&state).iter().map(Vec::len).sum::<usize>(),
        state.accounts.len()
    );
    println!(
        "{:<6} {:>12} {:>7} {:>12} {:>14} {:>14}",
        "style", "stored", "ratio", "write", "restore", "indexed"
    );
    for style in [Style::Raw, Style::Lz4] {
        let plan = frames(&state).into_iter().map(|b| (style, b.into_iter().map(<[u8]>::len)));
        let bound = usize::try_from(checkpoint_size_bound(plan).expect("bound"))?;
        // Touch every page first so the figures measure the format, not page faults.
        let mut out = vec![1u8; bound];
        let mut dest: Vec<Vec<Vec<u8>>> = frames(&state)
            .iter()
            .map(|bufs| bufs.iter().map(|b| vec![0xA5u8; b.len()]).collect())
            .collect();
        let t = Instant::now();
        let len = write(&mut out, style, &state)?;
        let w = t.elapsed().as_secs_f64();
        let t = Instant::now();
        restore(&out[..len], &mut dest, false)?;
        let r = t.elapsed().as_secs_f64();
        verify(&dest, &state);
        dest.iter_mut().flatten().for_each(|b| b.fill(0));
        let t = Instant::now();
        restore(&out[..len], &mut dest, true)?;
        let ri = t.elapsed().as_secs_f64();
        verify(&dest, &state);
        println!(
            "{:<6} {:>12} {:>7.2} {:>12} {:>14} {:>14}",
            format!("{style:?}"),
            len,
            logical as f64 / len as f64,
            gbps(logical, w),
            gbps(logical, r),
            gbps(logical, ri)
        );
        if style == Style::Lz4
            && let Some(path) = &out_file
        {
            let mut sink = WriteSink::new(std::io::BufWriter::new(std::fs::File::create(path)?));
            std::io::Write::write_all(&mut sink.0, &out[..len])?;
            std::io::Write::flush(&mut sink.0)?;
            println!("wrote the LZ4 checkpoint to {path}");
        }
    }
    println!("all bytes restored identical (streaming and indexed); one thread, in memory");
    Ok(())
}
