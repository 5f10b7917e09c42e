//! How the emulated database behaves over time: steady, bursty (periodic stalls), or down
//! for a while and then back. Pure: time since the run started in, "stalled until" out.

use std::time::Duration;

use clap::ValueEnum;

/// The database's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Pattern {
    /// Always available at its rate.
    Steady,
    /// Stalls for the first second of every three (a lock, a checkpoint, a vacuum).
    Bursty,
    /// Unavailable for the first 40% of the producing time, then back at full rate.
    Down,
}

/// A bursty database's period and the stall at the start of each.
const BURST_PERIOD: Duration = Duration::from_secs(3);
const BURST_STALL: Duration = Duration::from_secs(1);

/// A down database is down for this share of the producing time (numerator / 10).
const DOWN_TENTHS: u32 = 4;

impl Pattern {
    /// The name used on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pattern::Steady => "steady",
            Pattern::Bursty => "bursty",
            Pattern::Down => "down",
        }
    }

    /// If the database is unavailable at `t` (since the run started, of a run producing for
    /// `duration`), when it is available again.
    pub(crate) fn stalled_until(self, t: Duration, duration: Duration) -> Option<Duration> {
        match self {
            Pattern::Steady => None,
            Pattern::Bursty => {
                let period = BURST_PERIOD.as_nanos();
                let into = t.as_nanos() % period;
                (into < BURST_STALL.as_nanos()).then(|| {
                    let start = t.as_nanos() - into;
                    Duration::from_nanos(
                        u64::try_from(start + BURST_STALL.as_nanos()).unwrap_or(u64::MAX),
                    )
                })
            }
            Pattern::Down => {
                let back = duration * DOWN_TENTHS / 10;
                (t < back).then_some(back)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn steady_never_stalls() {
        assert_eq!(Pattern::Steady.stalled_until(ms(0), ms(10_000)), None);
    }

    #[test]
    fn bursty_stalls_the_first_second_of_every_three() {
        let d = ms(30_000);
        assert_eq!(Pattern::Bursty.stalled_until(ms(500), d), Some(ms(1_000)));
        assert_eq!(Pattern::Bursty.stalled_until(ms(1_500), d), None);
        assert_eq!(Pattern::Bursty.stalled_until(ms(6_200), d), Some(ms(7_000)));
    }

    #[test]
    fn down_is_down_for_the_first_four_tenths() {
        let d = ms(10_000);
        assert_eq!(Pattern::Down.stalled_until(ms(100), d), Some(ms(4_000)));
        assert_eq!(Pattern::Down.stalled_until(ms(4_000), d), None);
    }
}
