//! What the pipeline process tells its supervisor: one JSON line per sample on stdout,
//! every figure measured inside the pipeline at that moment.

use serde::{Deserialize, Serialize};

/// Where the pipeline is in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// The producer is producing.
    Running,
    /// The producer stopped; the consumer is committing what is left.
    Draining,
    /// Finished cleanly; this is the last sample.
    Done,
}

/// One measurement of the pipeline, cumulative since the run started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// Seconds since the pipeline started.
    pub t: f64,
    /// Where the run is.
    pub phase: Phase,
    /// Events handed to the queue (queued or dropped by policy).
    pub produced: u64,
    /// Events committed to the database.
    pub committed: u64,
    /// Events dropped by the queue's overflow policy.
    pub dropped: u64,
    /// Events queued now.
    pub queued: u64,
    /// Bytes queued now.
    pub queued_bytes: u64,
    /// The most events ever queued at once.
    pub peak_queue_depth: u64,
    /// The most bytes ever queued at once.
    pub peak_queue_bytes: u64,
    /// Resident set size of the pipeline process now (VmRSS).
    pub rss_bytes: u64,
    /// The highest resident set size so far (VmHWM).
    pub peak_rss_bytes: u64,
    /// Total seconds the producer spent waiting for credit.
    pub producer_waited_s: f64,
    /// Seconds the producer has been running (its wait ratio's denominator).
    pub producer_active_s: f64,
    /// Median creation-to-commit latency so far, in milliseconds.
    pub latency_ms_p50: f64,
    /// 99th-percentile creation-to-commit latency so far, in milliseconds.
    pub latency_ms_p99: f64,
}

impl Sample {
    /// Share of its running time the producer spent waiting for credit, 0..=1.
    pub(crate) fn producer_wait_ratio(&self) -> f64 {
        if self.producer_active_s > 0.0 {
            (self.producer_waited_s / self.producer_active_s).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}
