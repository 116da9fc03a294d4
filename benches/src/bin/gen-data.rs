//! `gen-data KIND SIZE PATH`: writes SIZE bytes of `random` or `logs` data to PATH, for the
//! comparison runner (`benches/compare.sh`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, size, path] = args.as_slice() else {
        eprintln!("usage: gen-data random|logs SIZE PATH   (SIZE like 1G, 256M)");
        return ExitCode::from(2);
    };
    let Ok(len) = ckpt_cli_size(size) else {
        eprintln!("gen-data: {size:?} is not a size");
        return ExitCode::from(2);
    };
    let data = match kind.as_str() {
        "random" => ckpt_benches::random_bytes(len),
        "logs" => ckpt_benches::log_lines(len),
        _ => {
            eprintln!("gen-data: kind must be random or logs");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::write(path, data) {
        eprintln!("gen-data: cannot write {path}: {e}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn ckpt_cli_size(s: &str) -> Result<usize, ()> {
    let (num, shift) = match s.chars().last() {
        Some('G') => (&s[..s.len() - 1], 30),
        Some('M') => (&s[..s.len() - 1], 20),
        Some('K') => (&s[..s.len() - 1], 10),
        _ => (s, 0),
    };
    num.parse::<usize>().map(|n| n << shift).map_err(|_| ())
}
