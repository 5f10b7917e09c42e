//! Memory figures of a process, read from `/proc/<pid>/status` (Linux).

use std::fs;

/// Resident set size now (VmRSS) and its high-water mark (VmHWM), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rss {
    /// Resident now.
    pub now: u64,
    /// The most ever resident.
    pub peak: u64,
}

/// The calling process's RSS; zeros where `/proc` is not available.
pub fn own_rss() -> Rss {
    fs::read_to_string("/proc/self/status")
        .map(|s| parse_status(&s))
        .unwrap_or_default()
}

fn parse_status(status: &str) -> Rss {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    Rss {
        now: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_fields_into_bytes() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            parse_status(s),
            Rss {
                now: 1 << 20,
                peak: 2 << 20
            }
        );
    }

    #[test]
    fn own_rss_is_measured() {
        let r = own_rss();
        assert!(r.now > 0 && r.peak >= r.now);
    }
}
