//! `gen-data KIND SIZE PATH`: writes SIZE bytes of `random` or `logs` data to PATH, for the
//! comparison runner (`benches/compare.sh`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, size, path] = args.as_slice() else {
        eprintln!("usage: gen-data random|logs SIZE PATH   (SIZE like 1G, 256M)");
        return ExitCode::from(2);
    };
    let len = match ckpt_cli::size::parse_size(size).map(usize::try_from) {
        Ok(Ok(len)) => len,
        Ok(Err(_)) => {
            eprintln!("gen-data: {size:?} does not fit in memory");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("gen-data: {e}");
            return ExitCode::from(2);
        }
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
