//! Whether something that fails now and then (a disk log's writes) works, as it should be
//! told: an outage is said once when it starts and once when it ends, and it ends only after
//! [`SETTLE`] without a new failure — a nearly full disk takes some writes and refuses the
//! next, and that is one outage, not many. Attempts during an outage are spaced by a
//! [`Backoff`]. Pure: time is passed in.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// How long something that worked again must go without failing before the outage ends.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The state of an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// It works.
    None,
    /// Failing since `since`; attempts spaced by `backoff`.
    Failing {
        /// When the outage began.
        since: Instant,
        /// The waits between attempts.
        backoff: Backoff,
    },
    /// It worked again at `ok_since`, after failing since `since`.
    Recovering {
        /// When the outage began.
        since: Instant,
        /// When it first worked again.
        ok_since: Instant,
    },
}

/// A change worth saying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// The outage began.
    Began,
    /// The outage ended; it lasted this long.
    Ended(Duration),
}

impl Outage {
    /// How long to wait before looking again: `None` when it works (wait for work).
    pub fn wait(&self) -> Option<Duration> {
        match self {
            Outage::None => None,
            Outage::Failing { backoff, .. } => Some(backoff.peek()),
            Outage::Recovering { .. } => Some(SETTLE),
        }
    }

    /// An attempt at `now` failed (`failed`) or worked. `retry` is the backoff a new outage
    /// starts with.
    pub fn attempt(self, failed: bool, now: Instant, retry: Backoff) -> (Outage, Option<Told>) {
        match (failed, self) {
            (true, Outage::None) => (
                Outage::Failing {
                    since: now,
                    backoff: retry,
                },
                Some(Told::Began),
            ),
            (true, Outage::Failing { since, mut backoff }) => {
                backoff.fail();
                (Outage::Failing { since, backoff }, None)
            }
            (true, Outage::Recovering { since, .. }) => (
                Outage::Failing {
                    since,
                    backoff: retry,
                },
                None,
            ),
            (false, Outage::Failing { since, .. }) => (
                Outage::Recovering {
                    since,
                    ok_since: now,
                },
                None,
            ),
            (false, recovering @ Outage::Recovering { .. }) => recovering.settle(now),
            (false, Outage::None) => (Outage::None, None),
        }
    }

    /// Nothing happened until `now`: an outage that has worked for [`SETTLE`] ends.
    pub fn settle(self, now: Instant) -> (Outage, Option<Told>) {
        match self {
            Outage::Recovering { since, ok_since }
                if now.saturating_duration_since(ok_since) >= SETTLE =>
            {
                (
                    Outage::None,
                    Some(Told::Ended(ok_since.duration_since(since))),
                )
            }
            other => (other, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flapping_outage_is_told_once_each_way_and_ends_after_it_settles() {
        #[allow(clippy::disallowed_methods)] // the one base instant; the rest is arithmetic
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let (o, told) = Outage::None.attempt(true, at(0), retry);
        assert_eq!(told, Some(Told::Began));
        let (o, told) = o.attempt(true, at(100), retry);
        assert_eq!(
            (told, o.wait()),
            (None, Some(Duration::from_millis(200))),
            "backed off"
        );
        // It works, then fails again at once: the same outage, nothing said.
        let (o, told) = o.attempt(false, at(300), retry);
        assert_eq!((told, o.wait()), (None, Some(SETTLE)));
        let (o, told) = o.attempt(true, at(350), retry);
        assert_eq!(told, None);
        let (o, _) = o.attempt(false, at(500), retry);
        assert_eq!(o.settle(at(900)).1, None, "not settled yet");
        let (o, told) = o.settle(at(1_500));
        assert_eq!(
            (o, told),
            (Outage::None, Some(Told::Ended(Duration::from_millis(500))))
        );
        assert_eq!(o.attempt(false, at(2_000), retry), (Outage::None, None));
    }
}
