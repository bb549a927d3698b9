//! The values options take: whole seconds, byte sizes and `--limit`
//! rates, parsed with messages that say what is expected.

/// The longest timeout accepted: a day.
const MAX_SECONDS: u64 = 86_400;

/// Parses a whole number of seconds, from 1 to a day.
pub fn parse_seconds(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_SECONDS).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number of seconds from 1 to {MAX_SECONDS}")),
    }
}

/// Parses a byte size: a number with an optional K, M, G or T suffix
/// (powers of 1024; `KiB`, `MB` and similar spellings are accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("invalid size unit in {s:?} (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// The slowest `--limit`: slower than this, one full-size TCP segment
/// could take longer than the receiver's idle timeout to go out.
const MIN_RATE: u64 = 1024;

/// Parses a `--limit` rate: a size per second ([`parse_size`], optionally
/// followed by `/s`), at least 1K. Spellings that read as bits (`100Mb`,
/// `1Gbit`, `100Mbps`) are refused rather than taken as bytes.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let lower = t.to_ascii_lowercase();
    let bits = lower.contains("bit") || lower.contains("bps") || (t.ends_with('b') && !lower.ends_with("ib"));
    if bits {
        return Err(format!(
            "{s:?} looks like bits: RATE is in bytes per second (100 Mbit/s is about 12M)"
        ));
    }
    match parse_size(t) {
        Ok(n) if n >= MIN_RATE => Ok(n),
        Ok(_) => Err(format!("{s:?} is below the slowest rate, 1K (1024 bytes per second)")),
        Err(e) => Err(format!("{e} (a rate in bytes per second, such as 100M or 1G)")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100M").unwrap(), 100 << 20);
        assert_eq!(parse_rate("1G/s").unwrap(), 1 << 30);
        assert_eq!(parse_rate("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_rate("8MB").unwrap(), 8 << 20);
        assert_eq!(parse_rate("1K").unwrap(), 1024);
        assert!(parse_rate("0").unwrap_err().contains("slowest"));
        assert!(parse_rate("1000").unwrap_err().contains("slowest"));
        for bits in ["100Mb", "1Gbit", "100Mbps", "100mbit/s"] {
            assert!(parse_rate(bits).unwrap_err().contains("bits"), "{bits}");
        }
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10X").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("3k").unwrap(), 3072);
        assert!(parse_size("1X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
