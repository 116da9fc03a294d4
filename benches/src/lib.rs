//! Shared inputs for ckpt's benches and comparison runs.
//!
//! The criterion benches live in `benches/benches/`; the comparison runner against `lz4`,
//! `zstd` and `cp` arrives with the parallel issue.

/// Deterministic, compressible text resembling JSON log lines (ratio about 4-6 with LZ4).
pub fn log_lines(len: usize) -> Vec<u8> {
    let levels = ["INFO", "WARN", "DEBUG", "ERROR"];
    let paths = ["/api/v1/accounts", "/api/v1/slots", "/healthz", "/api/v2/blocks/recent"];
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut out = Vec::with_capacity(len + 256);
    let mut ts = 1_700_000_000_000_u64;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ts += state % 1000;
        let level = levels[(state % 4) as usize];
        let path = paths[((state >> 8) % 4) as usize];
        let line = format!(
            "{{\"ts\":{ts},\"level\":\"{level}\",\"path\":\"{path}\",\"status\":{},\"latency_us\":{},\"req\":\"{:016x}\"}}\n",
            200 + (state >> 16) % 4 * 100,
            (state >> 20) % 50_000,
            state
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// Deterministic incompressible bytes (xorshift).
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
