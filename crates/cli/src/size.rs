//! Human sizes on the command line: `4096`, `64K`, `16MiB`, `1.5G`.

/// Parses a size: a number with an optional suffix `K`, `M`, `G`, `T` (powers of 1024,
/// optionally followed by `iB` or `B`).
///
/// # Errors
/// A message naming the input when it is not a size or overflows.
///
/// # Examples
/// ```
/// use ckpt_cli::size::parse_size;
/// assert_eq!(parse_size("16MiB"), Ok(16 << 20));
/// assert_eq!(parse_size("4096"), Ok(4096));
/// assert!(parse_size("-1").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits_end);
    let shift = match suffix.trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?} is not a size (use e.g. 4096, 64K, 16MiB, 1G)")),
    };
    let bad = || format!("{text:?} is not a size (use e.g. 4096, 64K, 16MiB, 1G)");
    if number.contains('.') {
        let v: f64 = number.parse().map_err(|_| bad())?;
        let bytes =
            v * f64::from(1u32 << shift.min(30)) * f64::from(1u32 << (shift - shift.min(30)));
        if !(0.0..1.8e19).contains(&bytes) {
            return Err(format!("{text:?} is too large"));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        return Ok(bytes as u64);
    }
    let v: u64 = number.parse().map_err(|_| bad())?;
    v.checked_mul(1u64 << shift).ok_or_else(|| format!("{text:?} is too large"))
}
