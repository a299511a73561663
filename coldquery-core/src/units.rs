//! Durations and sizes as operators write them in flags and environment variables (SPEC §5):
//! `30` (seconds), `500ms`, `30s`, `5m`, `1h`; `1048576` (bytes), `1MiB`, `256KiB`, `1kB`.
//!
//! The errors say what was expected, so a configuration error can name the setting and the
//! accepted spellings; callers add the setting's name.

use std::time::Duration;

/// Splits `text` into its leading decimal digits and the unit that follows (spaces between
/// them allowed).
fn split(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return None;
    }
    let number = text[..digits].parse::<u64>().ok()?;
    Some((number, text[digits..].trim()))
}

/// Parses a duration: a plain integer of seconds, or an integer with one of the units
/// `ms`, `s`, `m`, `h` (also `sec`, `min`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "'{}' is not a duration: expected whole seconds (30) or a number with a unit: 500ms, 30s, 5m, 1h",
            text.trim()
        )
    };
    let (number, unit) = split(text).ok_or_else(expected)?;
    let millis_per_unit: u64 = match unit {
        "" | "s" | "sec" | "secs" => 1000,
        "ms" => 1,
        "m" | "min" | "mins" => 60_000,
        "h" => 3_600_000,
        _ => return Err(expected()),
    };
    let millis =
        number.checked_mul(millis_per_unit).ok_or_else(|| format!("'{}' is too long a duration", text.trim()))?;
    Ok(Duration::from_millis(millis))
}

/// Parses a size in bytes: a plain integer, or an integer with a unit — binary `KiB`, `MiB`,
/// `GiB` (1024-based) or decimal `kB`, `MB`, `GB` (1000-based); `B` means bytes. Units are
/// matched without regard to case except that `k`/`K` alone are decimal kilo.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let expected = || {
        format!(
            "'{}' is not a size: expected bytes (1048576) or a number with a unit: 256KiB, 1MiB, 1GiB, 1kB, 1MB",
            text.trim()
        )
    };
    let (number, unit) = split(text).ok_or_else(expected)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "k" | "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(expected()),
    };
    number
        .checked_mul(multiplier)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("'{}' is too large a size", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        let cases = [
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            (" 10 s ", Duration::from_secs(10)),
            ("2min", Duration::from_secs(120)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn durations_reject_everything_else() {
        for text in ["", "s", "-1", "1.5s", "10d", "30 seconds", "ms5", "1h30m", "99999999999999999999"] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("duration"), "{text}: {err}");
        }
        assert!(parse_duration("18446744073709551615h").unwrap_err().contains("too long"));
    }

    #[test]
    fn sizes_accept_bytes_and_units() {
        let cases = [
            ("1048576", 1_048_576),
            ("1MiB", 1_048_576),
            ("256KiB", 262_144),
            ("1kB", 1_000),
            ("2MB", 2_000_000),
            ("1GiB", 1_073_741_824),
            ("512B", 512),
            ("4 mib", 4 * 1_048_576),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn sizes_reject_everything_else() {
        for text in ["", "MiB", "-1", "1.5MiB", "1TiB", "1 megabyte", "0x10"] {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains("size"), "{text}: {err}");
        }
        assert!(parse_size("18446744073709551615GiB").unwrap_err().contains("too large"));
    }
}
