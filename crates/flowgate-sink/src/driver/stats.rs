//! What a sink driver has done: counts, the batch limit, and latency quantiles measured from
//! its own clock (commit latency) and the events' creation stamps (end to end).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A driver's figures so far.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DriverStats {
    /// Events received.
    pub received: u64,
    /// Events settled: committed (new or already present) or dead-lettered.
    pub committed: u64,
    /// Of the committed, rows the database already held (redeliveries of committed events).
    pub already_present: u64,
    /// Deliveries the database refused and that were handed back for another attempt.
    pub retried: u64,
    /// Events recorded as dead letters.
    pub dead_lettered: u64,
    /// Commits made.
    pub commits: u64,
    /// The batch limit now: the consumer's demand in events.
    pub batch_limit: u64,
    /// How often a slow commit cut the batch limit.
    pub batch_limit_cuts: u64,
    /// Commits that failed for a reason that may pass, and were tried again.
    pub commit_failures: u64,
    /// A failed commit is being tried again now.
    pub retrying: bool,
    /// Commit latency (the sink's commit and any dead letters), in milliseconds.
    pub commit_latency_ms_p50: f64,
    /// See `commit_latency_ms_p50`.
    pub commit_latency_ms_p99: f64,
    /// See `commit_latency_ms_p50`.
    pub commit_latency_ms_max: f64,
    /// Event creation (the producer's clock) to commit (this clock), over committed events;
    /// meaningful when both clocks agree (same host, or NTP).
    pub e2e_latency_ms_p50: f64,
    /// See `e2e_latency_ms_p50`.
    pub e2e_latency_ms_p99: f64,
    /// From the first delivery to the last commit: the time the driver had work.
    #[serde(skip)]
    pub active: Duration,
}

impl DriverStats {
    /// Committed events per second while the driver had work (idle time before the first
    /// delivery and after the last commit excluded).
    pub fn rate(&self) -> f64 {
        match self.committed {
            0 => 0.0,
            n => n as f64 / self.active.as_secs_f64().max(1e-9),
        }
    }

    /// Events per commit on average.
    pub fn mean_batch(&self) -> f64 {
        self.received as f64 / self.commits.max(1) as f64
    }
}

/// The histograms and instants behind [`DriverStats`].
pub(crate) struct Latencies {
    commit_us: Histogram<u64>,
    e2e_us: Histogram<u64>,
    first_delivery: Option<Instant>,
    last_commit: Option<Instant>,
}

impl Latencies {
    pub(crate) fn new() -> Latencies {
        // Cannot fail: the bounds are constants within hdrhistogram's limits.
        let hour = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
        Latencies {
            commit_us: hour(),
            e2e_us: hour(),
            first_delivery: None,
            last_commit: None,
        }
    }

    pub(crate) fn delivered(&mut self, at: Instant) {
        self.first_delivery.get_or_insert(at);
    }

    /// Records a commit that took `latency` and ended at `at`, of events created at
    /// `created_us` (Unix microseconds), committed at `committed_us`.
    pub(crate) fn committed(
        &mut self,
        at: Instant,
        latency: Duration,
        committed_us: u64,
        created_us: impl Iterator<Item = u64>,
    ) {
        self.last_commit = Some(at);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.commit_us.saturating_record(us.max(1));
        for created in created_us {
            self.e2e_us
                .saturating_record(committed_us.saturating_sub(created).max(1));
        }
    }

    /// Copies the quantiles and the active time into `stats`.
    pub(crate) fn fill(&self, stats: &mut DriverStats) {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
        stats.commit_latency_ms_p50 = ms(&self.commit_us, 0.5);
        stats.commit_latency_ms_p99 = ms(&self.commit_us, 0.99);
        stats.commit_latency_ms_max = self.commit_us.max() as f64 / 1e3;
        stats.e2e_latency_ms_p50 = ms(&self.e2e_us, 0.5);
        stats.e2e_latency_ms_p99 = ms(&self.e2e_us, 0.99);
        stats.active = match (self.first_delivery, self.last_commit) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
    }
}
