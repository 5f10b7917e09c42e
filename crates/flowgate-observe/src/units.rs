//! Command-line values with units: durations (`30s`, `500ms`), sizes (`8MiB`, `512B`) and
//! rates (`10000`, `10000/s`), each parsed with an error that says what would be right.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytesize::ByteSize;

/// A duration written with a unit, e.g. `30s`, `1m30s`, `250ms`. Must be greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!(
                "'{s}' is not a duration ({e}); write a number with a unit, e.g. 30s, 500ms, 2m"
            )
        })?;
        if d.is_zero() {
            return Err(format!(
                "'{s}' is zero; the duration must be greater than zero"
            ));
        }
        Ok(Span(d))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes written with a unit, e.g. `512B`, `8MiB`, `1.5GiB` (a bare number is bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b: ByteSize = s.trim().parse().map_err(|_| {
            format!("'{s}' is not a size; write a number with a unit, e.g. 512B, 64KiB, 8MiB, 1GiB")
        })?;
        Ok(Size(b.as_u64()))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", human_bytes(self.0))
    }
}

/// A rate in events per second, written `1000` or `1000/s`. Must be at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.trim().trim_end_matches("/s").replace('_', "");
        let n: u64 = digits.parse().map_err(|_| {
            format!("'{s}' is not a rate; write events per second, e.g. 1000 or 1000/s")
        })?;
        if n == 0 {
            return Err(format!(
                "'{s}' is zero; the rate must be at least 1 event/s"
            ));
        }
        Ok(Rate(n))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

/// Bytes in binary units with one decimal, e.g. `52.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    ByteSize::b(bytes).display().iec().to_string()
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_need_a_unit_and_must_be_positive() {
        assert_eq!("30s".parse::<Span>(), Ok(Span(Duration::from_secs(30))));
        assert_eq!(
            "250ms".parse::<Span>(),
            Ok(Span(Duration::from_millis(250)))
        );
        assert!("30".parse::<Span>().unwrap_err().contains("e.g. 30s"));
        assert!(
            "0s".parse::<Span>()
                .unwrap_err()
                .contains("greater than zero")
        );
    }

    #[test]
    fn sizes_accept_binary_units_and_bare_bytes() {
        assert_eq!("8MiB".parse::<Size>(), Ok(Size(8 << 20)));
        assert_eq!("512B".parse::<Size>(), Ok(Size(512)));
        assert_eq!("512".parse::<Size>(), Ok(Size(512)));
        assert!(
            "lots"
                .parse::<Size>()
                .unwrap_err()
                .contains("'lots' is not a size")
        );
    }

    #[test]
    fn rates_accept_a_per_second_suffix_and_refuse_zero() {
        assert_eq!("10000/s".parse::<Rate>(), Ok(Rate(10_000)));
        assert_eq!("10_000".parse::<Rate>(), Ok(Rate(10_000)));
        assert!("0".parse::<Rate>().unwrap_err().contains("at least 1"));
        assert!("fast".parse::<Rate>().unwrap_err().contains("not a rate"));
    }
}
