//! How much a sink should take at once, learned from its commit latency: an AIMD controller.
//!
//! After each commit the sink reports the batch size and how long the commit took. A commit
//! slower than the target halves the limit at once (multiplicative decrease: back off fast
//! when the database struggles); a commit within the target that used the whole limit raises
//! it by an eighth (gradual increase: probe for more throughput without overshooting). A
//! batch smaller than the limit says nothing about the limit, so it leaves it alone.
//!
//! The limit becomes the consumer's demand, so a database that slows down asks for less and
//! the producer feels it; one that recovers asks for more again. Pure: latencies are passed in.

use std::time::Duration;

/// The smallest increase step, so small limits still grow.
const MIN_STEP: u64 = 1;

/// Growth per good, full commit: limit / 8, i.e. +12.5%. Doubling the limit then takes about
/// six good commits, so a recovered database is back to full speed within a few seconds at
/// ten commits a second, while one bad commit undoes more than five good ones.
const GROWTH_DIVISOR: u64 = 8;

/// An AIMD batch-size limit driven by commit latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AimdLimit {
    limit: u64,
    min: u64,
    max: u64,
    target: Duration,
    decreases: u64,
}

impl AimdLimit {
    /// Starts at `initial`, kept within `min..=max` (both at least 1), aiming for commits no
    /// slower than `target`.
    pub fn new(initial: u64, min: u64, max: u64, target: Duration) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        AimdLimit {
            limit: initial.clamp(min, max),
            min,
            max,
            target,
            decreases: 0,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The latency target.
    pub fn target(&self) -> Duration {
        self.target
    }

    /// How many times the limit was cut.
    pub fn decreases(&self) -> u64 {
        self.decreases
    }

    /// Records a commit of `batch` events that took `latency`; returns the new limit.
    pub fn on_commit(&mut self, batch: u64, latency: Duration) -> u64 {
        if latency > self.target {
            self.limit = (self.limit / 2).max(self.min);
            self.decreases += 1;
        } else if batch >= self.limit {
            let step = (self.limit / GROWTH_DIVISOR).max(MIN_STEP);
            self.limit = self.limit.saturating_add(step).min(self.max);
        }
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(100);

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn fast_full_commits_grow_the_limit_to_its_maximum() {
        let mut l = AimdLimit::new(10, 1, 1_000, TARGET);
        let mut last = l.limit();
        for _ in 0..100 {
            let now = l.on_commit(l.limit(), ms(5));
            assert!(now >= last);
            last = now;
        }
        assert_eq!(l.limit(), 1_000);
    }

    #[test]
    fn one_slow_commit_halves_the_limit() {
        let mut l = AimdLimit::new(800, 1, 1_000, TARGET);
        assert_eq!(l.on_commit(800, ms(3_000)), 400);
        assert_eq!(l.decreases(), 1);
    }

    #[test]
    fn a_stall_drives_the_limit_to_its_minimum_and_recovery_brings_it_back() {
        let mut l = AimdLimit::new(1_000, 10, 1_000, TARGET);
        // A database stall: every commit takes a second.
        for _ in 0..10 {
            l.on_commit(l.limit(), ms(1_000));
        }
        assert_eq!(l.limit(), 10);
        // Recovered: commits are fast again.
        let mut commits = 0;
        while l.limit() < 1_000 {
            l.on_commit(l.limit(), ms(10));
            commits += 1;
        }
        assert!(commits < 50, "recovery took {commits} commits");
    }

    #[test]
    fn partial_batches_leave_the_limit_alone() {
        let mut l = AimdLimit::new(100, 1, 1_000, TARGET);
        assert_eq!(
            l.on_commit(20, ms(5)),
            100,
            "a quiet stream says nothing about capacity"
        );
    }

    #[test]
    fn latency_at_the_target_counts_as_good() {
        let mut l = AimdLimit::new(100, 1, 1_000, TARGET);
        assert_eq!(l.on_commit(100, TARGET), 112);
    }

    #[test]
    fn bounds_are_sane_whatever_the_arguments() {
        let l = AimdLimit::new(0, 0, 0, TARGET);
        assert_eq!(l.limit(), 1);
        let l = AimdLimit::new(5_000, 10, 100, TARGET);
        assert_eq!(l.limit(), 100);
    }

    #[test]
    fn growth_step_is_an_eighth() {
        assert_eq!(GROWTH_DIVISOR, 8);
        let mut l = AimdLimit::new(800, 1, 10_000, TARGET);
        assert_eq!(l.on_commit(800, ms(1)), 900);
    }
}
