//! Durations as the GC's options write them: a whole number and a unit, `30d`, `6h`, `90m`, `45s`,
//! `0s` (or a bare `0`).

use std::time::Duration;

/// `text` as a duration: digits then `s`, `m`, `h`, `d` or `w`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration: write a whole number and a unit, such as 30d, 6h, 90m or 0s");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = (text.get(..split).ok_or_else(bad)?, text.get(split..).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let total = n
        .checked_mul(seconds)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .ok_or_else(|| format!("{text:?} is longer than a hundred years"))?;
    Ok(Duration::from_secs(total))
}

/// `d` in the largest unit that writes it whole (`30d`, `90m`, `0s`).
pub fn display(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

/// A duration in milliseconds, for comparing with listing times.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "d", "5", "5x", "-1d", "1.5h", "é", "99999999999999999999d", "1000000w"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(display(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(display(Duration::from_secs(5400)), "90m");
        assert_eq!(display(Duration::ZERO), "0s");
        assert_eq!(display(Duration::from_secs(61)), "61s");
    }
}
